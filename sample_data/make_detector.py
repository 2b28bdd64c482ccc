"""Train the sample detector on sample_data's COCO boxes and save it as TorchScript with torchvision-style output.

    .venv/bin/python sample_data/make_detector.py            # the model (+ sidecar) and the out-of-fold detections
    .venv/bin/python sample_data/make_detector.py --only model   # sample_data/model/detector.ts.pt + sidecar + record
    .venv/bin/python sample_data/make_detector.py --only oof --jobs 2   # sample_data/detections_oof.json + record
    .venv/bin/python sample_data/make_detector.py --out DIR --detections FILE

A small CenterNet-style detector (no torchvision), trained from scratch on the 245 readable train-split images (the
annotations as they are, planted box errors included). The backbone goes down to stride 16 (a 3x3 stem at stride 2,
then stride 4, 8, 16 with residual blocks, one dilated), so that a heatmap cell sees the whole shape (the largest
is 58 px at 128 x 96); the stride-16 features are upsampled and added to the stride-8 ones, and three heads predict
at stride 8 a per-class centre heatmap, the box size and the centre's offset inside its cell. Loss: a focal loss
on Gaussian centre heatmaps, L1 on the sizes and offsets at the centres. Augmented per batch: random horizontal and
vertical flips, a random zoom (``ZOOM``) and shift through one affine resample (boxes moved with it; boxes mostly
pushed out of the picture dropped), brightness/contrast/colour jitter and a few grey images; an image with a rare
class is seen more often per epoch (repeat-factor sampling: the 4 with a hexagon, 6 times). AdamW with a one-cycle
learning rate for ``EPOCHS`` epochs. Seeded, one CPU thread: the same file on every run on one machine; the time
taken is in ``detector.training.json``. The saved module decodes its heatmap itself (3x3 max-pool peaks, the
``MAX_DETECTIONS`` best above ``MIN_SCORE``), so it returns per image ``{"boxes": (m, 4) x0 y0 x1 y1 in input
pixels, "labels": (m,), "scores": (m,)}``, as torchvision detectors do.

Input: the sidecar's stretch resize to 128 x 96 px (a 2x downscale of the 256 x 192 sample images), mean 0 and std 1
(pixels 0..1); inspect_core maps the boxes back to source pixels. Its figures on sample_data are in BENCHMARKS.md.
Also writes ``detector.training.json`` (what was trained, the losses, the time taken).

Out-of-fold detections (``--only oof``): a model's boxes on its own training images repeat the annotations it
learnt, planted errors included, so they hide the errors to find. All readable images with boxes (every split) are
dealt into ``FOLDS`` folds (seeded; the images of each class spread over the folds); per fold a model is trained by
the same ``train`` on the other folds' images and predicts its own fold's, written as one COCO results JSON
(``file_name``, ``category_id``, ``bbox`` xywh source px, ``score``; for ``score --detections``), with the fold
record ``model/detector.oof.json`` (each fold model's training and predicted images, losses, time). Predictions go
down to ``OOF_MIN_SCORE``, and small boxes come from a second pass at 2 x the input size (see ``predict``).
``--fold-models DIR`` keeps the fold networks; ``--reuse-fold-models`` re-predicts with them without training.
A fold model sees more than the full-train one, since its faint boxes are what finds the errors: ``OOF_EPOCHS``
epochs, on the images loaded at ``OOF_SCALE`` x the input size, each batch a random window of them at the input size
(objects at 0.8x to 2.5x their input scale: ``OOF_ZOOM``). On sample_data, recall of the planted box errors in the
top 2 x planted went from 7 of 12 (2 folds, 70 epochs, whole images) to 7 (2 folds, windows), 8 (4 folds, 70
epochs), 10 (4 folds, 120 epochs: these settings) and back to 8 at 200 epochs (they learn the planted errors):
BENCHMARKS.md, "Detection triage".
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from inspect_core.loaders import load_dataset  # noqa: E402
from inspect_core.model.preprocess import Preprocess, image_to_array, load_image_file  # noqa: E402
from inspect_core.model.tasks.detection import boxes_to_source  # noqa: E402

SEED = 0
EPOCHS = 70                     # the full-train model
FOLDS = 4                       # out-of-fold detections: each image predicted by the model not trained on it
OOF_EPOCHS = 120                # each fold model (trained on 3 / 4 of the images, on 2 x input windows)
BATCH = 16
LR = 3e-3
CLASS_NAMES = ["circle", "square", "triangle", "star", "hexagon"]
INPUT_SIZE = (128, 96)          # (width, height) px
STRIDE = 8                      # input pixels per heatmap cell
MAX_DETECTIONS = 20             # per image, highest score first
MIN_SCORE = 0.25
SMALL_BELOW_PX = 22             # out-of-fold detections: boxes under this (input px) from a 2 x input pass
OOF_MIN_SCORE = 0.1             # out-of-fold detections: the score floor (faint but aligned boxes count)
OOF_SCALE = 2                   # fold models train on random windows of the images at 2 x the input size
OOF_ZOOM = (0.4, 1.25)          # ... each window 1 / (2 x zoom) of the picture: objects at 0.8x to 2.5x input scale
ZOOM = (0.8, 1.25)              # random zoom of a training batch's images (objects that much larger)
RARE_CLASS_IMAGES = 0.5         # an image with a class on fewer than this fraction of images is seen more often
MAX_REPEAT = 8
SIDECAR = {"input_size": list(INPUT_SIZE), "class_names": CLASS_NAMES, "resize": "stretch",
           "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "channel_order": "RGB", "interpolation": "bilinear",
           "task": "detection"}


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


class Residual(nn.Module):
    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.a = _conv(c, c, 1, dilation)
        self.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, dilation, dilation, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.b(self.a(x)))


def _up2_nearest(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``F.interpolate(x, size=(rows, cols), mode="nearest")`` where rows, cols are 2n or 2n - 1 of x's (a stride-2
    level's): the same values, but TorchScript saves no call of ``interpolate``, whose scripted body in one torch
    version names operators an older torch cannot load (the file then loads on torch 2.11, as on a GPU box)."""
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[:, :, :rows, :cols]


class CentreNet(nn.Module):
    """(B, 3, H, W) -> per-class heatmap logits, box sizes and centre offsets in cells, each at H/8 x W/8."""

    def __init__(self, n_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.s4 = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), Residual(32))
        self.s8 = nn.Sequential(_conv(32, 64, 2), Residual(64), Residual(64, 2))
        self.s16 = nn.Sequential(_conv(64, 96, 2), Residual(96, 2))
        self.lateral = nn.Conv2d(96, 64, 1)
        self.merge = _conv(64, 64)
        self.head = _conv(64, 64)
        self.heatmap = nn.Conv2d(64, n_classes, 1)
        self.size = nn.Conv2d(64, 2, 1)
        self.offset = nn.Conv2d(64, 2, 1)
        nn.init.constant_(self.heatmap.bias, -2.2)          # a prior of ~0.1 objectness: a stable start

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8 = self.s8(self.s4(x))
        f16 = self.s16(f8)
        f = self.head(self.merge(f8 + _up2_nearest(self.lateral(f16), f8.shape[-2], f8.shape[-1])))
        return self.heatmap(f), self.size(f), self.offset(f)


class Detector(nn.Module):
    """``CentreNet`` + its decoding: per image a dict of boxes (x0 y0 x1 y1 input px), labels and scores."""

    def __init__(self, net: CentreNet, stride: int = STRIDE, max_detections: int = MAX_DETECTIONS,
                 min_score: float = MIN_SCORE):
        super().__init__()
        self.net = net
        self.stride = stride
        self.max_detections = max_detections
        self.min_score = min_score

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        logits, size, offset = self.net(x)
        heat = logits.sigmoid()
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat).to(heat.dtype)
        b, c, h, w = heat.shape
        out: list[dict[str, torch.Tensor]] = []
        for i in range(b):
            scores, idx = peaks[i].reshape(-1).topk(min(self.max_detections, c * h * w))
            keep = scores > self.min_score
            scores, idx = scores[keep], idx[keep]
            labels = torch.div(idx, h * w, rounding_mode="floor")
            cell = idx % (h * w)
            cy = (torch.div(cell, w, rounding_mode="floor").to(x.dtype) + offset[i, 1].reshape(-1)[cell]) * self.stride
            cx = ((cell % w).to(x.dtype) + offset[i, 0].reshape(-1)[cell]) * self.stride
            bw = size[i, 0].reshape(-1)[cell].clamp_min(0.1) * self.stride
            bh = size[i, 1].reshape(-1)[cell].clamp_min(0.1) * self.stride
            boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
            out.append({"boxes": boxes, "labels": labels, "scores": scores})
        return out


class Images(NamedTuple):
    """Images as the model sees them: ids, the (n, 3, H, W) input batch, per image its boxes as rows of (x0, y0, x1,
    y1 in input px, class index), and the source (width, height) px for mapping boxes back."""
    image_ids: list[str]
    x: torch.Tensor
    boxes: list[np.ndarray]
    source_sizes: list[tuple[int, int]]

    def subset(self, rows) -> Images:
        rows = list(rows)
        return Images([self.image_ids[i] for i in rows], self.x[rows], [self.boxes[i] for i in rows],
                      [self.source_sizes[i] for i in rows])


def load_images(root: Path, splits: tuple[str, ...] | None = ("train",), with_boxes_only: bool = False,
                scale: int = 1) -> tuple[Images, list[str]]:
    """The readable images of ``splits`` (None: all), optionally only those with annotated boxes, as ``Images`` at
    ``scale`` x the model's input size; and the image ids left out because they cannot be read (the planted broken
    files)."""
    width, height = INPUT_SIZE[0] * scale, INPUT_SIZE[1] * scale
    spec = Preprocess.from_dict({**SIDECAR, "input_size": [width, height]})
    ds = load_dataset(root)
    ann = ds.annotations
    ids, xs, boxes, sizes, unreadable = [], [], [], [], []
    images = ds.images if splits is None else ds.images.loc[ds.images["split"].astype(str).isin(splits)]
    for image_id in images["image_id"]:
        mine = ann.loc[ann["image_id"] == image_id]
        if with_boxes_only and not len(mine):
            continue
        try:
            image = load_image_file(ds.path_of(image_id))
        except Exception:  # noqa: BLE001 - the planted broken files are left out
            unreadable.append(str(image_id))
            continue
        sx, sy = width / image.size[0], height / image.size[1]
        rows = [(r.box_x_px * sx, r.box_y_px * sy, (r.box_x_px + r.box_w_px) * sx, (r.box_y_px + r.box_h_px) * sy,
                 CLASS_NAMES.index(r.category))
                for r in mine.itertuples() if r.category in CLASS_NAMES and r.box_w_px > 0 and r.box_h_px > 0]
        ids.append(str(image_id))
        xs.append(image_to_array(image, spec))
        boxes.append(np.array(rows, np.float32).reshape(-1, 5))
        sizes.append((int(image.size[0]), int(image.size[1])))
    return Images(ids, torch.from_numpy(np.stack(xs)), boxes, sizes), unreadable


def augment(x: torch.Tensor, boxes: list[np.ndarray], gen: torch.Generator, scale: int = 1,
            zoom_range: tuple[float, float] = ZOOM):
    """One random flip/zoom/shift per image (one affine resample; its boxes moved with it) and colour jitter. The
    output is always the model's input size; ``x`` (its ``boxes`` in its pixels) may be ``scale`` x that size, and
    then a window of it is cut at a random place (zoom 1/``scale``: the whole picture; 1: a crop at full resolution)."""
    n = len(x)
    width, height = INPUT_SIZE
    u = torch.rand(n, 8, generator=gen)
    zoom = zoom_range[0] * (zoom_range[1] / zoom_range[0]) ** u[:, 0]
    fx, fy = torch.where(u[:, 1] < 0.5, -1.0, 1.0), torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    if scale == 1:
        tx, ty = (u[:, 3] - 0.5) * 0.3, (u[:, 4] - 0.5) * 0.3      # shift, in halves of the picture
    else:
        window = 1 / (scale * zoom)                                 # the part of the picture seen, per side
        room = (1 - window).clamp_min(0) + 0.15                     # how far the window's centre may move
        tx, ty = (2 * u[:, 3] - 1) * room, (2 * u[:, 4] - 1) * room
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = fx / (zoom * scale), tx
    theta[:, 1, 1], theta[:, 1, 2] = fy / (zoom * scale), ty
    grid = F.affine_grid(theta, [n, x.shape[1], height, width], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # colour: brightness, contrast, per-channel gain, and 10 % grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (0.7 + 0.6 * u[:, 5]).view(n, 1, 1, 1)
    gain = 0.85 + 0.3 * torch.rand(n, 3, 1, 1, generator=gen)
    x = ((x - mean) * contrast + mean) * (0.75 + 0.5 * u[:, 6]).view(n, 1, 1, 1) * gain
    grey = (u[:, 7] < 0.1).view(n, 1, 1, 1)
    x = torch.where(grey, x.mean(dim=1, keepdim=True).expand_as(x), x).clamp(0, 1)
    out = []
    for k, b in enumerate(boxes):
        z, sx, sy = float(zoom[k]) * scale, float(fx[k]), float(fy[k])
        nx = (2 * b[:, [0, 2]] / (width * scale) - 1 - float(tx[k])) * z * sx      # input -> output normalised
        ny = (2 * b[:, [1, 3]] / (height * scale) - 1 - float(ty[k])) * z * sy
        x0, x1 = (np.minimum(nx[:, 0], nx[:, 1]) + 1) * width / 2, (np.maximum(nx[:, 0], nx[:, 1]) + 1) * width / 2
        y0, y1 = (np.minimum(ny[:, 0], ny[:, 1]) + 1) * height / 2, (np.maximum(ny[:, 0], ny[:, 1]) + 1) * height / 2
        cx0, cy0, cx1, cy1 = x0.clip(0, width), y0.clip(0, height), x1.clip(0, width), y1.clip(0, height)
        kept = (cx1 - cx0) * (cy1 - cy0) >= 0.6 * (x1 - x0) * (y1 - y0)
        out.append(np.stack([cx0, cy0, cx1, cy1, b[:, 4]], 1)[kept])
    return x, out


def targets(boxes: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
    """Per image: Gaussian centre heatmaps per class, sizes and offsets (cells) at the centres, the centre mask."""
    width, height = INPUT_SIZE
    gw, gh = width // STRIDE, height // STRIDE
    yy, xx = np.mgrid[0:gh, 0:gw]
    n = len(boxes)
    heat = np.zeros((n, len(CLASS_NAMES), gh, gw), np.float32)
    size = np.zeros((n, 2, gh, gw), np.float32)
    offset = np.zeros((n, 2, gh, gw), np.float32)
    mask = np.zeros((n, gh, gw), np.float32)
    for i, b in enumerate(boxes):
        for x0, y0, x1, y1, k in b:
            bw, bh = x1 - x0, y1 - y0
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            ix, iy = min(gw - 1, max(0, int(cx))), min(gh - 1, max(0, int(cy)))
            sigma = max(0.5, min(bw, bh) / STRIDE / 6)
            heat[i, int(k)] = np.maximum(heat[i, int(k)], np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma ** 2)))
            size[i, :, iy, ix] = (bw / STRIDE, bh / STRIDE)
            offset[i, :, iy, ix] = (cx - ix, cy - iy)
            mask[i, iy, ix] = 1.0
    return tuple(torch.from_numpy(a) for a in (heat, size, offset, mask))


def repeat_factors(boxes: list[np.ndarray]) -> np.ndarray:
    """How many times each image is seen per epoch: sqrt(RARE_CLASS_IMAGES / f) for the rarest class on it (f: the
    fraction of images with that class), rounded, 1 to MAX_REPEAT (repeat-factor sampling, as LVIS does)."""
    has = np.array([[int(k) in set(b[:, 4].astype(int)) for k in range(len(CLASS_NAMES))] for b in boxes])
    f = has.mean(axis=0).clip(1e-6)
    per_class = np.clip(np.round(np.sqrt(RARE_CLASS_IMAGES / f)), 1, MAX_REPEAT)
    return np.array([int(per_class[h].max()) if h.any() else 1 for h in has])


def train(images: Images, seed: int = SEED, epochs: int = EPOCHS, scale: int = 1,
          zoom_range: tuple[float, float] = ZOOM) -> tuple[CentreNet, dict]:
    """The one training loop (the full model and every fold model): a fresh ``CentreNet`` fitted to ``images``
    (loaded at ``scale`` x the input size; each batch a random window of them at the input size, see ``augment``)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    t0, cpu0 = time.perf_counter(), time.process_time()
    x_all, boxes_all = images.x, images.boxes
    net = CentreNet()
    opt = torch.optim.AdamW(net.parameters(), LR, weight_decay=1e-4)
    repeats = repeat_factors(boxes_all)
    pool = torch.from_numpy(np.repeat(np.arange(len(x_all)), repeats))
    n = len(pool)
    steps = epochs * math.ceil(n / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps, pct_start=0.15)
    losses = []
    for _ in range(epochs):
        net.train()
        order = pool[torch.randperm(n, generator=gen)]
        total = 0.0
        for start in range(0, n, BATCH):
            b = order[start:start + BATCH]
            x, boxes = augment(x_all[b], [boxes_all[i] for i in b.tolist()], gen, scale, zoom_range)
            heat, size, offset, mask = targets(boxes)
            logits, pred_size, pred_offset = net(x)
            p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
            centre = heat.eq(1).to(p.dtype)
            focal = -(centre * (1 - p) ** 2 * p.log()
                      + (1 - centre) * (1 - heat) ** 4 * p ** 2 * (1 - p).log()).sum() / centre.sum().clamp_min(1)
            m = mask[:, None]
            l1 = (F.l1_loss(pred_size, size, reduction="none") * m).sum() / mask.sum().clamp_min(1)
            l1_off = (F.l1_loss(pred_offset, offset, reduction="none") * m).sum() / mask.sum().clamp_min(1)
            loss = focal + 0.1 * l1 + l1_off
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        losses.append(round(total / n, 4))
    net.eval()
    return net, {"images": len(x_all), "images_per_epoch": n, "epochs": epochs, "batch": BATCH, "seed": seed,
                 "scale": scale, "zoom_range": list(zoom_range),
                 "loss_per_epoch": losses, "elapsed_s": round(time.perf_counter() - t0, 1),
                 "cpu_s": round(time.process_time() - cpu0, 1)}


def assign_folds(images: Images, folds: int, seed: int = SEED) -> list[int]:
    """Per image its fold (0 .. folds - 1): images sorted by the rarest class on them (then at random, seeded) and
    dealt round-robin, so that every fold holds its share of each class, the rare hexagon included."""
    per_class = np.zeros(len(CLASS_NAMES))
    for b in images.boxes:
        per_class[np.unique(b[:, 4].astype(int))] += 1
    rarest = [min((per_class[int(k)] for k in b[:, 4]), default=np.inf) for b in images.boxes]
    shuffle = np.random.default_rng(seed).permutation(len(images.image_ids))
    order = sorted(range(len(rarest)), key=lambda i: (rarest[i], shuffle[i]))
    fold = [0] * len(order)
    for position, i in enumerate(order):
        fold[i] = position % folds
    return fold


def _decode(net: CentreNet, images: Images, scale: int, min_score: float) -> list[tuple[np.ndarray, ...]]:
    """Per image (xywh source px, class index, score, longest side in px of the normal input) of its decoded boxes."""
    spec = Preprocess.from_dict({**SIDECAR, "input_size": [INPUT_SIZE[0] * scale, INPUT_SIZE[1] * scale]})
    detector = Detector(net, min_score=min_score).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images.image_ids), 32):
            rows = range(start, min(start + 32, len(images.image_ids)))
            for i, det in zip(rows, detector(images.x[list(rows)])):
                side = (det["boxes"][:, 2:] - det["boxes"][:, :2]).amax(dim=1) / scale
                out.append((boxes_to_source(det["boxes"].numpy(), images.source_sizes[i], spec),
                            det["labels"].numpy(), det["scores"].numpy(), side.numpy()))
    return out


def _overlaps(a: np.ndarray, b: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Per xywh box of ``a``: does a box of ``b`` overlap it at IoU >= ``iou``."""
    if not len(a) or not len(b):
        return np.zeros(len(a), bool)
    x0, y0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return (inter >= iou * np.maximum(union, 1e-9)).any(axis=1)


def predict(net: CentreNet, images: Images, categories: dict[str, int], fine: Images | None = None,
            min_score: float = MIN_SCORE) -> list[dict]:
    """The decoded boxes of ``net`` on ``images`` as COCO results (``file_name``, ``category_id``, ``bbox`` xywh in
    source px, ``score``), through the saved model's decoding and the sidecar's inverse resize. With ``fine`` (the
    same images at 2 x the input size), two scales for the small objects (longest side under ``SMALL_BELOW_PX`` of
    the normal input), which the normal pass often misses or cannot tell the class of: the small boxes of the fine
    pass (where a small shape looks as big as the shapes the net tells apart best), the normal pass's small boxes
    where the fine pass found none, and the normal pass's large boxes."""
    out = []
    coarse = _decode(net, images, 1, min_score)
    fine_boxes = _decode(net, fine, 2, min_score) if fine is not None else [None] * len(coarse)
    for image_id, (box, label, score, side), f in zip(images.image_ids, coarse, fine_boxes):
        if f is not None:
            small_fine = f[3] < SMALL_BELOW_PX
            keep_coarse = (side >= SMALL_BELOW_PX) | ~_overlaps(box, f[0][small_fine])
            box, label, score = (np.concatenate([box[keep_coarse], f[0][small_fine]]),
                                 np.concatenate([label[keep_coarse], f[1][small_fine]]),
                                 np.concatenate([score[keep_coarse], f[2][small_fine]]))
        for b, k, sc in sorted(zip(box, label.tolist(), score.tolist()), key=lambda r: -r[2]):
            out.append({"file_name": image_id, "category_id": categories[CLASS_NAMES[k]],
                        "bbox": [round(float(v), 2) for v in b], "score": round(float(sc), 4)})
    return out


def _fold_job(args) -> tuple[int, list[dict], dict]:
    """Train fold ``k``'s model on the other folds' images and predict fold ``k``'s (run in its own process). With
    ``model_dir``, the network's state dict and training record are saved there as ``fold{k}_of_{folds}.pt/.json``;
    with ``reuse``, those saved by an earlier run are loaded instead of training (checked against this fold)."""
    root, folds, k, seed, epochs, model_dir, reuse = args
    images, _ = load_images(root, splits=None, with_boxes_only=True)
    fold = assign_folds(images, folds, seed)
    trained_on = [images.image_ids[i] for i, f in enumerate(fold) if f != k]
    held = images.subset(i for i, f in enumerate(fold) if f == k)
    state_path = Path(model_dir or ".") / f"fold{k}_of_{folds}.pt"
    if reuse:
        net = CentreNet()
        net.load_state_dict(torch.load(state_path))
        net.eval()
        record = json.loads(state_path.with_suffix(".json").read_text(encoding="utf-8"))
        if (record["trained_on"], record["seed"], record["epochs"]) != (trained_on, seed, epochs):
            raise SystemExit(f"{state_path} was trained on other images, seed or epochs: train it again (run "
                             "without --reuse-fold-models)")
    else:
        fine_all, _ = load_images(root, splits=None, with_boxes_only=True, scale=OOF_SCALE)
        net, record = train(fine_all.subset(i for i, f in enumerate(fold) if f != k), seed, epochs, OOF_SCALE,
                            OOF_ZOOM)
        record.update(fold=k, trained_on=trained_on, predicted=held.image_ids)
        if model_dir is not None:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), state_path)
            state_path.with_suffix(".json").write_text(json.dumps(record) + "\n", encoding="utf-8")
    fine, _ = load_images(root, splits=None, with_boxes_only=True, scale=2)
    fine = fine.subset(i for i, f in enumerate(fold) if f == k)
    assert fine.image_ids == held.image_ids
    return k, predict(net, held, _categories(root), fine, OOF_MIN_SCORE), record


def _categories(root: Path) -> dict[str, int]:
    coco = json.loads((root / "annotations.json").read_text(encoding="utf-8"))
    return {c["name"]: int(c["id"]) for c in coco["categories"]}


def build_oof(detections_path: Path, record_path: Path, root: Path = REPO / "sample_data", folds: int = FOLDS,
              seed: int = SEED, epochs: int = OOF_EPOCHS, jobs: int = 1, model_dir: Path | None = None,
              reuse: bool = False) -> list[Path]:
    """Out-of-fold detections: every readable image with boxes (all splits) is predicted by the one fold model
    that was not trained on it. Writes the COCO results JSON and the fold record (what each fold model was trained
    on and predicted, its losses and time). ``jobs`` > 1 trains folds in parallel processes (the same files);
    ``model_dir``: where each fold network and its record are saved (none by default), or, with ``reuse``, read
    from instead of training (to re-predict without retraining)."""
    t0 = time.perf_counter()
    images, unreadable = load_images(root, splits=None, with_boxes_only=True)
    fold = assign_folds(images, folds, seed)
    args = [(root, folds, k, seed, epochs, model_dir, reuse) for k in range(folds)]
    if jobs > 1:
        import multiprocessing
        with multiprocessing.get_context("spawn").Pool(min(jobs, folds)) as pool:
            results = pool.map(_fold_job, args)
    else:
        results = [_fold_job(a) for a in args]
    results.sort(key=lambda r: r[0])
    detections = [d for _, dets, _ in results for d in dets]
    detections_path.parent.mkdir(parents=True, exist_ok=True)
    detections_path.write_text(json.dumps(detections) + "\n", encoding="utf-8")
    record = {"folds": folds, "seed": seed, "epochs": epochs, "images": len(images.image_ids),
              "unreadable_left_out": unreadable, "detections": len(detections),
              "fold_of_image": dict(zip(images.image_ids, fold)),
              "small_below_px": SMALL_BELOW_PX, "min_score": OOF_MIN_SCORE,
              "training_cpu_s": round(sum(r["cpu_s"] for _, _, r in results), 1),
              "reused_fold_models": reuse, "run_elapsed_s": round(time.perf_counter() - t0, 1),
              "fold_models": [r for _, _, r in results]}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return [detections_path, record_path]


def build(out_dir: Path, root: Path = REPO / "sample_data", epochs: int = EPOCHS) -> list[Path]:
    """The full-train detector (the train split's images) as TorchScript, its sidecar and training record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images, _ = load_images(root, splits=("train",))
    net, record = train(images, epochs=epochs)
    module = torch.jit.script(Detector(net).eval())
    model_path = out_dir / "detector.ts.pt"
    torch.jit.save(module, str(model_path))
    sidecar = out_dir / "detector.preprocess.json"
    sidecar.write_text(json.dumps(SIDECAR, indent=2) + "\n", encoding="utf-8")
    record_path = out_dir / "detector.training.json"
    record_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return [model_path, sidecar, record_path]


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(here / "model"), help="folder of the model files and records")
    parser.add_argument("--only", choices=["model", "oof"], help="make only the full-train model, or only the "
                        "out-of-fold detections (default: both)")
    parser.add_argument("--folds", type=int, default=FOLDS, help=f"folds of the out-of-fold detections ({FOLDS})")
    parser.add_argument("--detections", default=str(here / "detections_oof.json"),
                        help="where the out-of-fold COCO results JSON goes")
    parser.add_argument("--epochs", type=int, help=f"training epochs of each model (the full-train model {EPOCHS}, "
                        f"each fold model {OOF_EPOCHS})")
    parser.add_argument("--fold-models", help="also save each fold network (state dict + record) in this folder")
    parser.add_argument("--reuse-fold-models", action="store_true",
                        help="predict with the fold networks saved in --fold-models instead of training them")
    parser.add_argument("--jobs", type=int, default=1, help="fold models trained at once, one process each")
    args = parser.parse_args()
    out = Path(args.out)
    paths = [] if args.only == "oof" else build(out, epochs=args.epochs or EPOCHS)
    if args.only != "model":
        paths += build_oof(Path(args.detections), out / "detector.oof.json", folds=args.folds,
                           epochs=args.epochs or OOF_EPOCHS,
                           jobs=args.jobs,
                           model_dir=args.fold_models and Path(args.fold_models), reuse=args.reuse_fold_models)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
