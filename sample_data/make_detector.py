"""Train the sample detector on sample_data's COCO boxes and save it as TorchScript with torchvision-style output.

    .venv/bin/python sample_data/make_detector.py            # writes sample_data/model/detector.ts.pt + sidecar
    .venv/bin/python sample_data/make_detector.py --out DIR

A tiny CenterNet-style detector (no torchvision): five 3x3 conv layers (stride 4 overall) with a per-class centre
heatmap head and a box-size head, trained from scratch on the 245 readable train-split images (the annotations as
they are, planted box errors included) for ``EPOCHS`` epochs with AdamW, a focal loss on Gaussian centre heatmaps and
an L1 loss on the sizes at the centres, random horizontal flips. Seeded, one CPU thread: about 80 s on the 2-core dev
box, and the same file on every run on one machine. The saved module decodes its heatmap itself (3x3 max-pool
peaks, the ``MAX_DETECTIONS`` best above ``MIN_SCORE``), so it returns per image ``{"boxes": (m, 4) x0 y0 x1 y1 in
input pixels, "labels": (m,), "scores": (m,)}``, as torchvision detectors do.

Input: the sidecar's stretch resize to 128 x 96 px (a 2x downscale of the 256 x 192 sample images), mean 0 and std 1
(pixels 0..1); inspect_core maps the boxes back to source pixels. A small model on 245 images: its figures on
sample_data (held-out AP50 about 0.4) are in BENCHMARKS.md. Also writes ``detector.training.json`` (what was
trained, the losses, the time taken).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from inspect_core.loaders import load_dataset  # noqa: E402
from inspect_core.model.preprocess import Preprocess, image_to_array, load_image_file  # noqa: E402

SEED = 0
EPOCHS = 40
BATCH = 32
CLASS_NAMES = ["circle", "square", "triangle", "star", "hexagon"]
INPUT_SIZE = (128, 96)          # (width, height) px
STRIDE = 4                      # input pixels per heatmap cell
MAX_DETECTIONS = 20             # per image, highest score first
MIN_SCORE = 0.05
SIDECAR = {"input_size": list(INPUT_SIZE), "class_names": CLASS_NAMES, "resize": "stretch",
           "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "channel_order": "RGB", "interpolation": "bilinear",
           "task": "detection"}


def _block(c_in: int, c_out: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.ReLU())


class CentreNet(nn.Module):
    """(B, 3, H, W) -> (class heatmap logits (B, 5, H/4, W/4), box sizes in cells (B, 2, H/4, W/4))."""

    def __init__(self, n_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.body = nn.Sequential(_block(3, 16, 2), _block(16, 32, 2), _block(32, 32, 1), _block(32, 48, 1),
                                  _block(48, 48, 1))
        self.heatmap = nn.Conv2d(48, n_classes, 1)
        self.size = nn.Conv2d(48, 2, 1)
        nn.init.constant_(self.heatmap.bias, -2.2)          # a prior of ~0.1 objectness: a stable start

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.heatmap(f), self.size(f)


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
        logits, size = self.net(x)
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
            cy = (torch.div(cell, w, rounding_mode="floor").to(x.dtype) + 0.5) * self.stride
            cx = ((cell % w).to(x.dtype) + 0.5) * self.stride
            bw = size[i, 0].reshape(-1)[cell].clamp_min(0.1) * self.stride
            bh = size[i, 1].reshape(-1)[cell].clamp_min(0.1) * self.stride
            boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
            out.append({"boxes": boxes, "labels": labels, "scores": scores})
        return out


def training_set(root: Path):
    """The train split's readable images as the model sees them, with centre heatmaps, sizes and centre masks."""
    spec = Preprocess.from_dict(SIDECAR)
    ds = load_dataset(root)
    ann = ds.annotations
    width, height = INPUT_SIZE
    gw, gh = width // STRIDE, height // STRIDE
    yy, xx = np.mgrid[0:gh, 0:gw]
    xs, heats, sizes, masks = [], [], [], []
    for image_id in ds.images.loc[ds.images["split"].astype(str) == "train", "image_id"]:
        try:
            image = load_image_file(ds.path_of(image_id))
        except Exception:  # noqa: BLE001 - the planted broken files are left out
            continue
        sx, sy = width / image.size[0], height / image.size[1]
        heat = np.zeros((len(CLASS_NAMES), gh, gw), np.float32)
        size = np.zeros((2, gh, gw), np.float32)
        mask = np.zeros((gh, gw), np.float32)
        for r in ann.loc[ann["image_id"] == image_id].itertuples():
            if r.category not in CLASS_NAMES or not (r.box_w_px > 0 and r.box_h_px > 0):
                continue
            bw, bh = r.box_w_px * sx, r.box_h_px * sy
            cx, cy = (r.box_x_px + r.box_w_px / 2) * sx / STRIDE, (r.box_y_px + r.box_h_px / 2) * sy / STRIDE
            ix, iy = min(gw - 1, max(0, int(cx))), min(gh - 1, max(0, int(cy)))
            sigma = max(0.5, min(bw, bh) / STRIDE / 6)
            k = CLASS_NAMES.index(r.category)
            heat[k] = np.maximum(heat[k], np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma * sigma)))
            size[:, iy, ix] = (bw / STRIDE, bh / STRIDE)
            mask[iy, ix] = 1.0
        xs.append(image_to_array(image, spec))
        heats.append(heat)
        sizes.append(size)
        masks.append(mask)
    return tuple(torch.from_numpy(np.stack(a)) for a in (xs, heats, sizes, masks))


def train(root: Path) -> tuple[CentreNet, dict]:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    x_all, heat_all, size_all, mask_all = training_set(root)
    net = CentreNet()
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-4)
    losses = []
    n = len(x_all)
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, BATCH):
            b = order[start:start + BATCH]
            x, heat, size, mask = x_all[b], heat_all[b], size_all[b], mask_all[b]
            if torch.rand(1).item() < 0.5:
                x, heat, size, mask = x.flip(-1), heat.flip(-1), size.flip(-1), mask.flip(-1)
            logits, pred_size = net(x)
            p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
            centre = heat.eq(1).to(p.dtype)
            focal = -(centre * (1 - p) ** 2 * p.log()
                      + (1 - centre) * (1 - heat) ** 4 * p ** 2 * (1 - p).log()).sum() / centre.sum().clamp_min(1)
            l1 = (F.l1_loss(pred_size, size, reduction="none") * mask[:, None]).sum() / mask.sum().clamp_min(1)
            loss = focal + 0.1 * l1
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        losses.append(round(total / n, 4))
    net.eval()
    return net, {"images": n, "epochs": EPOCHS, "batch": BATCH, "seed": SEED, "loss_per_epoch": losses,
                 "elapsed_s": round(time.perf_counter() - t0, 1)}


def build(out_dir: Path, root: Path = REPO / "sample_data") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    net, record = train(root)
    module = torch.jit.script(Detector(net).eval())
    model_path = out_dir / "detector.ts.pt"
    torch.jit.save(module, str(model_path))
    sidecar = out_dir / "detector.preprocess.json"
    sidecar.write_text(json.dumps(SIDECAR, indent=2) + "\n", encoding="utf-8")
    record_path = out_dir / "detector.training.json"
    record_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return [model_path, sidecar, record_path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "model"))
    for path in build(Path(parser.parse_args().out)):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
