"""Make the Dataset Inspector sample dataset: shapes on photo textures, with planted problems.

Run:  .venv/bin/python sample_data/make_sample_data.py [--out DIR]

Writes (into DIR, default: the folder of this script):
  train/ val/ test/      images in <split>/<class>/ folders (JPEG 256x192, q85; a few planted odd files)
  annotations.json       COCO boxes for every drawn object (file_name == image_id), with planted box errors
  detections.json        simulated detector output (COCO results) for those boxes (make_detections.py)
  classes.txt            the class list, one per line
  PLANTED.csv            image_id,check: every planted problem the tools should report
  README.md              short description and a summary of the planted problems

Fully deterministic (seeded numpy RNG, no timestamps): running it twice gives byte-identical
files. It deletes and rewrites only the paths above; it never touches model/ or itself.
Backgrounds are crops of the photos that scikit-image ships (no network needed).
"""
from __future__ import annotations

import argparse
import colorsys
import csv
import io
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SEED = 20261123
CLASSES = ["circle", "square", "triangle", "star", "hexagon"]
COMMON_CLASSES = CLASSES[:4]
RARE_CLASS = "hexagon"
IMAGE_SIZE = (256, 192)  # (width, height) in px
JPEG_QUALITY = 85
SUPERSAMPLE = 4
# images per (class, split) before planting; the rare class has only a handful
COUNTS = {"train": 60, "val": 13, "test": 13}
RARE_COUNTS = {"train": 4, "val": 1, "test": 1}
SPLITS = ["train", "val", "test"]
# what this script owns inside the output folder (deleted and rewritten on every run)
OWNED = ["train", "val", "test", "annotations.json", "detections.json", "classes.txt", "PLANTED.csv", "README.md"]

COLOUR_SOURCES = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"]
GREY_SOURCES = ["camera", "coins", "brick", "grass", "gravel", "moon", "clock"]


# ----------------------------------------------------------------------------- drawing


def load_textures() -> list[np.ndarray]:
    """Photos shipped inside scikit-image (offline), as float32 RGB arrays in 0..255.

    Grey photos are returned as (rows, cols) arrays; they are tinted per background.
    """
    import skimage.data as skd

    textures = []
    for name in COLOUR_SOURCES + GREY_SOURCES:
        arr = np.asarray(getattr(skd, name)(), dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[..., :3]
        textures.append(arr)
    return textures


def make_background(rng: np.random.Generator, textures: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """A textured background of `size` (width, height): random crop, flip, rescale of a photo.

    Brightness and contrast are normalised into an ordinary range so that only the planted
    images are dark / overexposed / low-contrast.
    """
    width_px, height_px = size
    src = textures[int(rng.integers(len(textures)))]
    is_texture = src.ndim == 2  # the grey photos; upside-down is fine for them, not for faces
    if src.ndim == 2:  # tint a grey photo so the dataset stays a colour dataset
        hue = rng.uniform(0, 1)
        tint = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.3, 0.55), 1.0), dtype=np.float32)
        src = src[..., None] * tint[None, None, :] / tint.mean()
    src_rows, src_cols = src.shape[:2]
    scale = rng.uniform(0.7, 1.5)
    crop_w = min(width_px * scale, src_cols * 2.9)
    crop_h = min(height_px * scale, src_rows * 2.9)
    # mirror-pad so big crops (and the wide odd-size image) always fit
    pad_rows = int(max(0, crop_h - src_rows) // 2 + 2)
    pad_cols = int(max(0, crop_w - src_cols) // 2 + 2)
    if pad_rows or pad_cols:
        src = np.pad(src, ((pad_rows, pad_rows), (pad_cols, pad_cols), (0, 0)), mode="reflect")
    src_rows, src_cols = src.shape[:2]
    x0 = rng.uniform(0, max(0.0, src_cols - crop_w))
    y0 = rng.uniform(0, max(0.0, src_rows - crop_h))
    img = Image.fromarray(np.clip(src, 0, 255).astype(np.uint8))
    img = img.resize(size, Image.BILINEAR, box=(x0, y0, x0 + crop_w, y0 + crop_h))
    if rng.uniform() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.uniform() < 0.3 and is_texture:
        img = img.transpose(Image.FLIP_TOP_BOTTOM)
    arr = np.asarray(img, dtype=np.float32)
    lum = arr.mean(axis=2)
    gain = min(3.0, rng.uniform(30, 42) / max(float(lum.std()), 1e-3))
    target_mean = rng.uniform(95, 155)
    arr = (arr - lum.mean()) * gain + target_mean
    # soften saturation a little so the object stands out
    grey = arr.mean(axis=2, keepdims=True)
    arr = grey + (arr - grey) * 0.75
    return np.clip(arr, 0, 255)


def shape_points(shape: str, cx: float, cy: float, r: float, rot_deg: float, rng=None) -> list[tuple[float, float]]:
    """Vertices of a shape of 'radius' r around (cx, cy), rotated by rot_deg."""
    rot = np.deg2rad(rot_deg)
    if shape == "circle":
        ang = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        rad = np.full_like(ang, r)
    elif shape == "square":
        ang = np.deg2rad([45, 135, 225, 315]) + rot
        rad = np.full(4, r)
    elif shape == "triangle":
        ang = np.deg2rad([-90, 30, 150]) + rot
        rad = np.full(3, r * 1.12)
    elif shape == "star":
        ang = np.deg2rad(-90 + 36 * np.arange(10)) + rot
        rad = np.where(np.arange(10) % 2 == 0, r * 1.1, r * 0.45)
    elif shape == "hexagon":
        ang = np.deg2rad(60 * np.arange(6)) + rot
        rad = np.full(6, r)
    elif shape == "blob":  # the planted unknown class: a lumpy irregular shape
        ang = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        ph = rng.uniform(0, 2 * np.pi, 3)
        rad = r * (1 + 0.22 * np.sin(2 * ang + ph[0]) + 0.15 * np.sin(3 * ang + ph[1]) + 0.08 * np.sin(5 * ang + ph[2]))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(float(cx + q * np.cos(a)), float(cy + q * np.sin(a))) for a, q in zip(ang, rad)]


def random_colour(rng: np.random.Generator) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.65, 1.0))
    return np.array(rgb, dtype=np.float32) * 255


def draw_object(arr: np.ndarray, shape: str, cx: float, cy: float, r: float, rot_deg: float,
                colour: np.ndarray, rng: np.random.Generator, flat: bool = False) -> list[int] | None:
    """Draw one shaded, outlined object into arr (float RGB) in place; return its tight box [x, y, w, h]."""
    height_px, width_px = arr.shape[:2]
    ss = SUPERSAMPLE
    pts = shape_points(shape, cx, cy, r, rot_deg, rng)
    pts_ss = [(x * ss, y * ss) for x, y in pts]
    fill_ss = Image.new("L", (width_px * ss, height_px * ss), 0)
    ImageDraw.Draw(fill_ss).polygon(pts_ss, fill=255)
    stroke_ss = Image.new("L", fill_ss.size, 0)
    ImageDraw.Draw(stroke_ss).line(pts_ss + [pts_ss[0]], fill=255, width=int(2.6 * ss * (1.0 if r > 25 else 0.7)),
                                   joint="curve")
    stroke_ss = Image.fromarray(np.minimum(np.asarray(stroke_ss), np.asarray(fill_ss)))
    alpha = np.asarray(fill_ss.resize((width_px, height_px), Image.BOX), dtype=np.float32) / 255
    stroke = np.asarray(stroke_ss.resize((width_px, height_px), Image.BOX), dtype=np.float32) / 255
    if alpha.max() < 0.5:
        return None
    yy, xx = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    if flat:
        fill = np.broadcast_to(colour, arr.shape)
    else:
        # drop shadow
        shadow = Image.fromarray((alpha * 255).astype(np.uint8))
        shadow = shadow.transform(shadow.size, Image.AFFINE, (1, 0, -0.06 * r - 2, 0, 1, -0.08 * r - 2))
        shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32) / 255
        arr *= (1 - 0.45 * shadow)[..., None]
        # light from the top left + a soft highlight
        t = ((xx - cx) * -0.6 + (yy - cy) * -0.8) / r
        shade = 0.88 + 0.22 * t
        hl = np.exp(-((xx - cx + 0.35 * r) ** 2 + (yy - cy + 0.35 * r) ** 2) / (2 * (0.3 * r) ** 2))
        fill = colour[None, None, :] * shade[..., None] + (255 - colour[None, None, :]) * 0.45 * hl[..., None]
    arr[:] = arr * (1 - alpha[..., None]) + fill * alpha[..., None]
    outline = colour * 0.35
    arr[:] = arr * (1 - stroke[..., None]) + outline[None, None, :] * stroke[..., None]
    ys, xs = np.nonzero(alpha >= 0.5)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    return [x0, y0, x1 - x0, y1 - y0]


def boxes_overlap(a, b, margin=4) -> bool:
    return not (a[0] + a[2] + margin <= b[0] or b[0] + b[2] + margin <= a[0]
                or a[1] + a[3] + margin <= b[1] or b[1] + b[3] + margin <= a[1])


def render(rng: np.random.Generator, textures, main_shape: str, size=IMAGE_SIZE, flat: bool = False,
           n_extra: int | None = None) -> tuple[np.ndarray, list[tuple[str, list[int]]]]:
    """One image: a main object of `main_shape` plus 0-2 small extra objects. Returns (uint8 RGB, objects)."""
    width_px, height_px = size
    if flat:  # nearly uniform background: the planted low-information image
        arr = np.empty((height_px, width_px, 3), np.float32)
        arr[:] = random_colour(rng) * 0.25 + 25
    else:
        arr = make_background(rng, textures, size)
    objects: list[tuple[str, list[int]]] = []
    r = rng.uniform(30, min(62, height_px * 0.36)) if not flat else height_px * 0.34
    margin = r * 1.15 + 6
    cx = rng.uniform(margin, width_px - margin)
    cy = rng.uniform(margin, height_px - margin)
    rot = 0.0 if main_shape == "circle" else rng.uniform(-20, 20)
    colour = random_colour(rng) if not flat else np.array([250, 225, 120], np.float32)
    box = draw_object(arr, main_shape, cx, cy, r, rot, colour, rng, flat=flat)
    objects.append((main_shape, box))
    if n_extra is None:
        n_extra = int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))
    for _ in range(n_extra):
        for _try in range(30):
            shape = COMMON_CLASSES[int(rng.integers(len(COMMON_CLASSES)))]
            er = rng.uniform(11, 20)
            em = er * 1.15 + 4
            ex, ey = rng.uniform(em, width_px - em), rng.uniform(em, height_px - em)
            guess = [int(ex - er * 1.15), int(ey - er * 1.15), int(er * 2.3), int(er * 2.3)]
            if any(boxes_overlap(guess, b, margin=6) for _, b in objects):
                continue
            erot = 0.0 if shape == "circle" else rng.uniform(-25, 25)
            ebox = draw_object(arr, shape, ex, ey, er, erot, random_colour(rng), rng, flat=flat)
            if ebox is not None:
                objects.append((shape, ebox))
            break
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8), objects


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg(arr_or_img, quality: int = JPEG_QUALITY) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    return encode(img, "JPEG", quality=quality)


# ----------------------------------------------------------------------------- dataset


@dataclass
class Item:
    split: str
    folder: str | None          # label folder (None = directly in the split folder)
    shape: str                  # what is really drawn (main object)
    arr: np.ndarray | None      # RGB pixels (None for files that are not images)
    objects: list               # [(category, [x, y, w, h])]
    ext: str = ".jpg"
    data: bytes | None = None   # final file bytes (set when written)
    size: tuple[int, int] = IMAGE_SIZE  # (width, height) written to annotations.json
    name: str | None = None     # file stem; assigned at the end
    image_id: str = ""
    checks: list = field(default_factory=list)   # planted checks for PLANTED.csv
    ann_extra: list = field(default_factory=list)  # extra raw annotations (planted)
    in_coco: bool = True
    tag: str = ""               # what was planted (for README)


def build(rng: np.random.Generator) -> tuple[list[Item], list[dict], list[tuple[str, str]], list[tuple[str, str]]]:
    textures = load_textures()
    items: list[Item] = []
    for split in SPLITS:
        for cls in CLASSES:
            n = RARE_COUNTS[split] if cls == RARE_CLASS else COUNTS[split]
            for _ in range(n):
                arr, objs = render(rng, textures, cls)
                items.append(Item(split, cls, cls, arr, objs))

    used: set[int] = set()

    def pick(split: str, folder: str | None = None, need_extra: bool = False) -> Item:
        """A not yet planted normal item of a common class in `split` (optionally of one class)."""
        pool = [i for i, it in enumerate(items) if i not in used and it.split == split and it.shape != RARE_CLASS
                and (folder is None or it.folder == folder) and (not need_extra or len(it.objects) > 1)]
        i = pool[int(rng.integers(len(pool)))]
        used.add(i)
        return items[i]

    def plant(it: Item, tag: str, *checks: str) -> Item:
        it.tag = tag
        it.checks.extend(checks)
        return it

    def as_float(it: Item) -> np.ndarray:
        return it.arr.astype(np.float32)

    def to_u8(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    extra_files: list[tuple[str, str]] = []   # (image_id, check) rows not tied to an Item
    extra_coco: list[dict] = []               # image entries (+ boxes) for files that do not exist

    # ---- integrity
    it = plant(pick("train", "circle"), "JPEG cut to 55% of its bytes", "truncated")
    full = jpeg(it.arr)
    it.data = full[: int(len(full) * 0.55)]
    it = plant(pick("val", "square"), "0-byte .jpg", "empty_file")
    it.data = b""
    it = plant(pick("test", "triangle"), "text file named .jpg", "unreadable")
    it.data = b"This is not an image. It is a text file with a .jpg name.\n" * 3
    it = plant(pick("test", "star"), "PNG bytes in a .jpg file", "format_mismatch")
    it.data = encode(Image.fromarray(it.arr), "PNG")

    # ---- duplicates / leakage
    a = plant(pick("train", "star"), "byte-identical pair (same folder, two names)", "exact_duplicate")
    a.data = jpeg(a.arr)
    b = Item("train", "star", a.shape, a.arr, list(a.objects), data=a.data)
    plant(b, "byte-identical pair (same folder, two names)", "exact_duplicate")
    items.append(b)
    src = plant(pick("train", "circle"), "near copy in test/ under another label",
                "near_duplicate", "split_leakage", "conflicting_labels")
    h, w = src.arr.shape[:2]
    cut_x, cut_y = int(round(w * 0.02)), int(round(h * 0.02))
    crop = Image.fromarray(src.arr).crop((cut_x, cut_y, w - cut_x, h - cut_y))
    new_size = (int(round(w * 0.9)), int(round(h * 0.9)))
    fx, fy = new_size[0] / crop.width, new_size[1] / crop.height
    shifted = to_u8(np.asarray(crop.resize(new_size, Image.BILINEAR), np.float32) + np.array([9, 2, -7]))
    objs = []
    for cat, (x, y, bw, bh) in src.objects:
        x0, y0 = max(0, x - cut_x) * fx, max(0, y - cut_y) * fy
        x1 = min(crop.width, x + bw - cut_x) * fx
        y1 = min(crop.height, y + bh - cut_y) * fy
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            objs.append((cat, [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)]))
    wrong = "square"
    copy = Item("test", wrong, src.shape, shifted, objs, size=new_size)
    copy.data = jpeg(shifted, quality=70)
    plant(copy, "near copy (q70, 90% size, 4% crop, colour shift) of a train circle, filed as square",
          "near_duplicate", "split_leakage", "conflicting_labels", "mislabeled")
    items.append(copy)

    # ---- labels
    arr, objs = render(rng, textures, "circle")
    items.append(plant(Item("train", None, "circle", arr, objs), "image directly in train/", "missing_label"))
    arr, objs = render(rng, textures, "blob", n_extra=1)
    blob = Item("val", "blob", "blob", arr, objs[1:])  # the blob has no box: 'blob' is not a category
    items.append(plant(blob, "class folder 'blob' not in classes.txt", "unknown_label"))

    # ---- annotations
    it = plant(pick("train", "square"), "box widened past the right edge", "box_outside_image")
    cat, (x, y, bw, bh) = it.objects[0]
    it.objects[0] = (cat, [x, y, it.size[0] - x + 25, bh])
    it = plant(pick("train", "triangle", need_extra=True), "zero-width box", "box_degenerate")
    cat, (x, y, bw, bh) = it.objects[1]
    it.objects[1] = (cat, [x, y, 0, bh])
    it = plant(pick("train", "circle", need_extra=True), "box with category_id 99", "box_unknown_category")
    cat, box = it.objects[1]
    it.objects = [it.objects[0]] + it.objects[2:]
    it.ann_extra.append({"category_id": 99, "bbox": box})
    it = plant(pick("val", "star"), "same box listed twice", "box_duplicate")
    it.objects.append(it.objects[0])
    it = plant(pick("train", "square"), "image with no boxes in annotations.json", "no_boxes")
    it.objects = []
    missing_id = "train/circle/circle_9999.jpg"
    extra_coco.append({"file_name": missing_id, "size": IMAGE_SIZE, "boxes": [("circle", [40, 30, 90, 90])]})
    extra_files.append((missing_id, "box_missing_image"))
    outside_id = "../outside.jpg"
    extra_coco.append({"file_name": outside_id, "size": IMAGE_SIZE, "boxes": [("square", [20, 20, 60, 60])]})
    extra_files.append((outside_id, "path_outside_root"))

    # ---- image properties
    # brightness shifts keep as much contrast as the range allows (clipping like a real exposure error)
    it = plant(pick("train", "square"), "very dark (mean ~25/255)", "dark")
    f = as_float(it)
    it.arr = to_u8((f - f.mean()) * 0.5 + 25)
    it = plant(pick("val", "circle"), "overexposed (mean ~230/255, highlights clipped)", "overexposed")
    f = as_float(it)
    it.arr = to_u8((f - f.mean()) * 0.55 + 234)
    it = plant(pick("test", "square"), "low contrast (flattened to grey, std ~7)", "low_contrast")
    f = as_float(it)
    it.arr = to_u8((f - f.mean()) * 0.2 + 128)
    it = plant(pick("train", "triangle"), "Gaussian blur radius 4", "blurry")
    it.arr = np.asarray(Image.fromarray(it.arr).filter(ImageFilter.GaussianBlur(4)))
    it = plant(pick("val", "triangle"), "flat background, flat shapes", "low_information")
    it.arr, it.objects = render(rng, textures, "triangle", flat=True, n_extra=0)
    it = plant(pick("test", "circle"), "1200x90 px strip", "odd_size", "odd_aspect_ratio")
    it.arr, it.objects = render(rng, textures, "circle", size=(1200, 90), n_extra=2)
    it.size = (1200, 90)
    it = plant(pick("train", "star"), "grayscale JPEG (mode L)", "grayscale")
    it.data = jpeg(Image.fromarray(it.arr).convert("L"))

    # ---- odd modes (must not crash a scan; not findings by themselves)
    it = plant(pick("train", "square"), "CMYK JPEG")
    it.data = jpeg(Image.fromarray(it.arr).convert("CMYK"))
    it = plant(pick("val", "star"), "RGBA PNG, transparent corners")
    it.ext = ".png"
    alpha = np.full(it.arr.shape[:2], 255, np.uint8)
    yy, xx = np.mgrid[0 : alpha.shape[0], 0 : alpha.shape[1]]
    corner = np.minimum(np.minimum(xx, alpha.shape[1] - 1 - xx), np.minimum(yy, alpha.shape[0] - 1 - yy)) < 6
    alpha[corner] = 0
    it.data = encode(Image.fromarray(np.dstack([it.arr, alpha])), "PNG")
    it = plant(pick("test", "triangle"), "palette PNG with a transparent index")
    it.ext = ".png"
    pal = Image.fromarray(it.arr).quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    idx = np.asarray(pal).copy()
    idx[corner] = 255
    palette = pal.getpalette()[: 255 * 3] + [0, 0, 0]
    pimg = Image.frombytes("P", (idx.shape[1], idx.shape[0]), idx.tobytes())
    pimg.putpalette(palette)
    it.data = encode(pimg, "PNG", transparency=255)
    it = plant(pick("train", "circle"), "animated GIF, 3 frames")
    it.ext = ".gif"
    frames = [Image.fromarray(np.roll(it.arr, k * 3, axis=1)).quantize(colors=128, dither=Image.Dither.NONE)
              for k in range(3)]
    it.data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    it = plant(pick("train", "triangle"), "16-bit grayscale PNG", "grayscale")
    it.ext = ".png"
    grey16 = (np.asarray(Image.fromarray(it.arr).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    it.data = encode(Image.fromarray(grey16), "PNG")

    # ---- mislabeled (for model triage; a scan cannot see these)
    for split in ["train"] * 5 + ["val"] * 2 + ["test"]:
        it = pick(split)
        others = [c for c in COMMON_CLASSES if c != it.shape]
        it.folder = others[int(rng.integers(len(others)))]
        plant(it, f"a {it.shape} filed as {it.folder}", "mislabeled")

    # ---- names: <folder>_<nnnn> numbered per folder across splits, in split order, shuffled within a split
    counters: Counter = Counter()
    for split in SPLITS:
        in_split = [x for x in items if x.split == split]
        for k in rng.permutation(len(in_split)):
            it = in_split[int(k)]
            stem = it.folder or "img"
            counters[stem] += 1
            it.name = f"{stem}_{counters[stem]:04d}"
            parts = [it.split] + ([it.folder] if it.folder else []) + [it.name + it.ext]
            it.image_id = "/".join(parts)
    items.sort(key=lambda x: (SPLITS.index(x.split), x.image_id))
    for it in items:
        if it.data is None:
            it.data = jpeg(it.arr)
    planted = [(it.image_id, c) for it in items for c in it.checks] + extra_files
    planted.append(("", "rare_class"))
    planted.append(("", "class_imbalance"))
    return items, extra_coco, planted, [(it.image_id, it.tag) for it in items if it.tag]


def coco(items: list[Item], extra_coco: list[dict]) -> dict:
    cat_id = {c: i + 1 for i, c in enumerate(CLASSES)}
    images, anns = [], []
    entries = [(it.image_id, it.size, it.objects, it.ann_extra) for it in items if it.in_coco]
    entries += [(e["file_name"], e["size"], e["boxes"], []) for e in extra_coco]
    for img_id, (file_name, size, objects, ann_extra) in enumerate(entries, start=1):
        images.append({"id": img_id, "file_name": file_name, "width": size[0], "height": size[1]})
        raw = [{"category_id": cat_id[c], "bbox": b} for c, b in objects] + ann_extra
        for r in raw:
            bbox = [float(v) for v in r["bbox"]]
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": r["category_id"], "bbox": bbox,
                         "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0})
    return {
        "info": {"description": "Dataset Inspector sample data (shapes on photo textures, planted problems)",
                 "version": "1.0", "contributor": "sample_data/make_sample_data.py"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": cat_id[c], "name": c, "supercategory": "shape"} for c in CLASSES],
    }


def readme(items: list[Item], planted: list[tuple[str, str]], tags: list[tuple[str, str]], total_bytes: int) -> str:
    per_split = Counter(it.split for it in items)
    per_class = Counter(it.folder for it in items if it.folder)
    rows = "\n".join(f"| `{i}` | {t} | {', '.join(c for j, c in planted if j == i) or '(odd mode only)'} |"
                     for i, t in tags)
    checks = Counter(c for _, c in planted)
    check_line = ", ".join(f"{c} {n}" for c, n in sorted(checks.items()))
    return f"""# Sample data

A small image-classification + boxes dataset for trying Dataset Inspector, with planted problems
of every kind the inspector looks for. Everything here except `model/` is generated by
`make_sample_data.py` (seeded, byte-identical on every run):

    .venv/bin/python sample_data/make_sample_data.py            # rewrites this folder
    .venv/bin/python sample_data/make_sample_data.py --out DIR  # writes a copy elsewhere

How it is made: each image is a crop (random position, scale, flips) of a photo shipped with
scikit-image (astronaut, coffee, chelsea, rocket, immunohistochemistry; camera, coins, brick, grass,
gravel, moon, clock tinted), brightness/contrast normalised, with one shaded, outlined main
object drawn on it (the image label) and 0-2 smaller extra objects. Classes (`classes.txt`):
{", ".join(CLASSES)}; `{RARE_CLASS}` is deliberately rare. Images are 256x192 JPEG q85 unless planted.

- `<split>/<class>/*.jpg`: {len(items)} files; splits {dict(sorted(per_split.items()))}
- files per class folder: {dict(sorted(per_class.items()))}
- `annotations.json`: COCO boxes (`file_name` is the image_id, bbox is [x, y, w, h] px) for every drawn object
- `detections.json`: detector output for those boxes (COCO results), SIMULATED from the true boxes with
  realistic noise by `make_detections.py`; the annotations carry planted box errors (missing_box,
  badly_placed_box, wrong_box_class, spurious_box) that detection triage should find
- `PLANTED.csv`: `image_id,check`, one row per planted finding ({len(planted)} rows); check names are
  those of the inspect_core contract plus `mislabeled` (found by model triage, not by the scan).
  Dataset-level rows (rare class / imbalance) have an empty image_id.
- size on disk: {total_bytes / 1e6:.1f} MB
- `model/` (not made by this script): a small CNN trained on the train split by `train_sample_model.py`
  (seeded, CPU, under 2 minutes), saved as TorchScript (`model.ts.pt`), `torch.export` (`model.pt2`) and a
  state dict (`model_state.pt`, factory `inspect_core.sample_model:make_model`), with its preprocessing in
  `model.preprocess.json`; its worst-loss list surfaces the `mislabeled` rows

Planted rows per check: {check_line}

| image_id | what was done | checks |
|---|---|---|
{rows}
| `train/circle/circle_9999.jpg` | entry + box in annotations.json, no file | box_missing_image |
| `../outside.jpg` | entry in annotations.json pointing outside the root | path_outside_root |
| (dataset) | `{RARE_CLASS}` has only {per_class[RARE_CLASS]} images | rare_class, class_imbalance |

Odd modes (CMYK JPEG, RGBA PNG, palette PNG with transparency, animated GIF, 16-bit grey PNG) must
not crash a scan; only the 16-bit grey PNG is a finding (grayscale).
"""


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=here, help="output folder (default: this script's folder)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(SEED)
    items, extra_coco, planted, tags = build(rng)

    for name in OWNED:  # delete only what this script owns
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for it in items:
        path = out / it.image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(it.data)
    (out / "classes.txt").write_text("".join(c + "\n" for c in CLASSES), encoding="utf-8")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_detections import plant_and_predict  # detection triage (issue 13): planted box errors + predictions
    boxes, detections, det_planted = plant_and_predict(coco(items, extra_coco), {i for i, _ in planted})
    planted = planted + det_planted
    (out / "annotations.json").write_text(json.dumps(boxes, indent=1) + "\n", encoding="utf-8")
    (out / "detections.json").write_text(json.dumps(detections) + "\n", encoding="utf-8")
    with open(out / "PLANTED.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image_id", "check"])
        w.writerows(planted)
    total = sum(p.stat().st_size for name in OWNED for p in ([out / name] if (out / name).is_file()
                else (out / name).rglob("*")) if p.is_file())
    (out / "README.md").write_text(readme(items, planted, tags, total), encoding="utf-8")
    print(f"wrote {len(items)} image files, {len(planted)} planted rows, {total / 1e6:.2f} MB into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
