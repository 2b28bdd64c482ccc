"""Real photos for benchmarks: the photographs that scikit-image ships, cut into distinct images.

Shared by bench_scan.py and bench_neardup.py. Deterministic (seeded).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# "cat" is left out: it is the same photograph as "chelsea".
PHOTO_NAMES = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry",
               "hubble_deep_field", "retina", "moon", "page", "text", "clock", "horse", "brick", "grass",
               "gravel", "cell", "colorwheel", "eagle", "kidney", "lily", "microaneurysms", "skin"]


def load_photos() -> list[Image.Image]:
    from skimage import data

    out = []
    for name in PHOTO_NAMES:
        try:
            a = getattr(data, name)()
        except Exception:  # noqa: BLE001 - some need a download: skip them offline
            continue
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.dtype != np.uint8:
            a = (255 * (a - a.min()) / (np.ptp(a) + 1e-9)).astype(np.uint8)
        if a.ndim == 3 and a.shape[0] < 10:
            continue
        if a.ndim == 3 and a.shape[2] > 3:
            a = a[..., :3]
        out.append(Image.fromarray(a).convert("RGB"))
    return out


def random_crops(photos, n: int, size=(640, 480), seed: int = 0) -> list[Image.Image]:
    """n images of ``size`` (width, height): random crops (30-100% of the photo), flips and colour jitter."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        im = photos[k % len(photos)]
        w, h = im.size
        s = rng.uniform(0.3, 1.0)
        cw, ch = max(16, int(w * s)), max(16, int(h * s))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        c = im.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            c = c.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        c = ImageEnhance.Color(c).enhance(rng.uniform(0.6, 1.4))
        out.append(c)
    return out


def distinct_tiles(photos, grid: int = 3, size=(640, 480)) -> list[Image.Image]:
    """Non-overlapping tiles of each photo (grid x grid) plus the whole photo: images that are not duplicates."""
    out = []
    for im in photos:
        w, h = im.size
        for gx in range(grid):
            for gy in range(grid):
                out.append(im.crop((gx * w // grid, gy * h // grid, (gx + 1) * w // grid, (gy + 1) * h // grid))
                           .resize(size, Image.Resampling.BILINEAR))
        out.append(im.resize(size, Image.Resampling.BILINEAR))
    return out


def edit(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A near duplicate: crop up to 5% per side, resize to 50-100%, brightness +/-15%, saturation +/-30%,
    re-encode as JPEG at quality 50-90."""
    w, h = im.size
    cf = rng.uniform(0.0, 0.05)
    box = (int(w * cf * rng.random()), int(h * cf * rng.random()),
           w - int(w * cf * rng.random()), h - int(h * cf * rng.random()))
    im = im.crop(box)
    s = rng.uniform(0.5, 1.0)
    im = im.resize((max(8, int(im.size[0] * s)), max(8, int(im.size[1] * s))), Image.Resampling.BILINEAR)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.85, 1.15))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(50, 91)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def write_jpegs(images, folder: Path, prefix: str = "img", quality: int = 90) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k, im in enumerate(images):
        name = f"{prefix}_{k:06d}.jpg"
        im.save(folder / name, "JPEG", quality=quality)
        names.append(name)
    return names


def sample_photos() -> list[Image.Image]:
    """The scikit-image photos plus the two scikit-learn ships (china, flower): every real photograph
    available offline."""
    out = load_photos()
    try:
        from sklearn.datasets import load_sample_images

        out += [Image.fromarray(a).convert("RGB") for a in load_sample_images().images]
    except Exception:  # noqa: BLE001 - scikit-learn is optional
        pass
    return out


EDIT_KINDS = ("jpeg", "resize", "crop", "colour", "all", "flip")


def edit_as(im: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One near duplicate of ``im`` made by one edit a user meets: ``jpeg`` re-encode (q50-90), ``resize``
    (50-100%, at least 16 px), ``crop`` (up to 5% per side), ``colour`` (brightness +/-15%, saturation +/-30%),
    ``all`` (the four together, as ``edit``), ``flip`` (left-right mirror)."""
    if kind == "all":
        return edit(im, rng)
    if kind == "flip":
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if kind == "colour":
        im = ImageEnhance.Brightness(im).enhance(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) + 1)
        return ImageEnhance.Color(im).enhance(rng.choice([-1, 1]) * rng.uniform(0.1, 0.3) + 1)
    if kind == "crop":
        w, h = im.size
        f = rng.uniform(0.02, 0.05, 4)
        return im.crop((int(w * f[0]), int(h * f[1]), w - int(w * f[2]), h - int(h * f[3])))
    if kind == "resize":
        s = rng.uniform(0.5, 0.9)
        return im.resize((max(16, int(im.size[0] * s)), max(16, int(im.size[1] * s))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(50, 91)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def crops_folder(folder: Path, n: int, seed: int) -> Path:
    """``folder/all`` holding ``n`` random 640x480 JPEG crops of the photos (made once: a marker file says so)."""
    import shutil
    marker = folder / f".made_{n}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    write_jpegs(random_crops(load_photos(), n, seed=seed), folder / "all")
    marker.touch()
    return folder
