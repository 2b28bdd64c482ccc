"""Build the sample detector: a TorchScript module with torchvision-style output for sample_data's COCO boxes.

    .venv/bin/python sample_data/make_detector.py            # writes sample_data/model/detector.ts.pt + sidecar
    .venv/bin/python sample_data/make_detector.py --out DIR

NOT a trained network: a scripted module that finds objects by a fixed image operation, so that it needs no
torchvision, no training time and no download. The sample objects are drawn in saturated colours (HSV saturation
0.55-1, value 0.65-1) on photo backgrounds, so the module thresholds saturation and brightness, cleans the mask
(a 3x3 opening), labels its connected components (iterated 3x3 max-pooling of pixel indices inside the mask), and
gives one box per component of at least ``MIN_AREA_PX`` input pixels. The class is guessed from how much of its
box the component fills (square ~1, circle ~0.79, hexagon ~0.7, triangle ~0.55, star below); the score rises with
the component's area and its saturation. It is a weak detector (saturated parts of the photos become boxes); its
figures on sample_data are in BENCHMARKS.md. What it is for: a real model file that goes through the detector path
of the model wing (pipeline, resize and back, triage), deterministic, in under 100 kB.

Input: the sidecar's stretch resize to 128 x 96 px (a 2x downscale of the 256 x 192 sample images), mean 0 and std 1
(pixels 0..1); output boxes are x0 y0 x1 y1 in those input pixels, mapped back by inspect_core. Deterministic: the
same file on every run (no randomness; TorchScript serialisation of fixed code and constants).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CLASS_NAMES = ["circle", "square", "triangle", "star", "hexagon"]
INPUT_SIZE = (128, 96)          # (width, height) px
MIN_AREA_PX = 30                # components smaller than this (input pixels) are no object
MAX_DETECTIONS = 20             # per image, highest score first
SIDECAR = {"input_size": list(INPUT_SIZE), "class_names": CLASS_NAMES, "resize": "stretch",
           "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "channel_order": "RGB", "interpolation": "bilinear",
           "task": "detection"}


class SaturationDetector(nn.Module):
    """(B, 3, H, W) pixels in 0..1 -> per image {"boxes": (m, 4) xyxy input px, "labels": (m,), "scores": (m,)}."""

    def __init__(self, sat_min: float = 0.5, value_min: float = 0.45, min_area_px: int = MIN_AREA_PX,
                 max_detections: int = MAX_DETECTIONS, max_iterations: int = 160):
        super().__init__()
        self.sat_min = sat_min
        self.value_min = value_min
        self.min_area_px = min_area_px
        self.max_detections = max_detections
        self.max_iterations = max_iterations
        # fill ratio (component area / box area) thresholds, high to low, and the label each gives
        self.register_buffer("fill_edges", torch.tensor([0.86, 0.73, 0.67, 0.45, 0.0]))
        self.register_buffer("fill_labels", torch.tensor([1, 0, 4, 2, 3], dtype=torch.long))

    def components(self, mask: torch.Tensor) -> torch.Tensor:
        """Connected components (8-neighbour) of a (H, W) bool mask: each pixel -> 1 + the largest flat index in
        its component (0 outside)."""
        h, w = mask.shape
        m = mask.to(torch.float32)
        lab = torch.arange(1, h * w + 1, dtype=torch.float32, device=mask.device).reshape(h, w) * m
        for _ in range(self.max_iterations):
            new = F.max_pool2d(lab[None, None], 3, 1, 1)[0, 0] * m
            if bool(torch.equal(new, lab)):
                break
            lab = new
        return lab.to(torch.long)

    def one_image(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mx = x.max(dim=0).values
        mn = x.min(dim=0).values
        sat = (mx - mn) / mx.clamp_min(1e-3)
        mask = ((sat > self.sat_min) & (mx > self.value_min)).to(torch.float32)
        mask = -F.max_pool2d(-F.max_pool2d(mask[None, None], 3, 1, 1), 3, 1, 1)    # closing: fill the outline gaps
        mask = F.max_pool2d(-F.max_pool2d(-mask, 3, 1, 1), 3, 1, 1)[0, 0] > 0.5    # opening: drop specks
        h, w = mask.shape
        lab = self.components(mask).reshape(-1)
        inside = lab > 0
        idx = lab[inside] - 1
        n = h * w
        cols = (torch.arange(n, device=x.device) % w).to(torch.float32)[inside]
        rows = torch.div(torch.arange(n, device=x.device), w, rounding_mode="floor").to(torch.float32)[inside]
        big = float(n + 1)
        x0 = torch.full((n,), big, device=x.device).scatter_reduce(0, idx, cols, "amin")
        y0 = torch.full((n,), big, device=x.device).scatter_reduce(0, idx, rows, "amin")
        x1 = torch.full((n,), -1.0, device=x.device).scatter_reduce(0, idx, cols + 1, "amax")
        y1 = torch.full((n,), -1.0, device=x.device).scatter_reduce(0, idx, rows + 1, "amax")
        area = torch.zeros(n, device=x.device).scatter_add(0, idx, torch.ones_like(cols))
        sat_sum = torch.zeros(n, device=x.device).scatter_add(0, idx, sat.reshape(-1)[inside])
        keep = torch.nonzero(area >= self.min_area_px).reshape(-1)
        area, sat_mean = area[keep], sat_sum[keep] / area[keep].clamp_min(1.0)
        boxes = torch.stack([x0[keep], y0[keep], x1[keep], y1[keep]], dim=1)
        fill = area / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp_min(1.0)
        which = (fill[:, None] >= self.fill_edges[None, :]).to(torch.long).argmax(dim=1)
        labels = self.fill_labels[which]
        scores = (1.0 - torch.exp(-area / 400.0)) * sat_mean.clamp(0.0, 1.0)
        order = torch.argsort(scores, descending=True)[: self.max_detections]
        return {"boxes": boxes[order], "labels": labels[order], "scores": scores[order]}

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [self.one_image(x[k]) for k in range(x.shape[0])]


def build(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    module = torch.jit.script(SaturationDetector().eval())
    model_path = out_dir / "detector.ts.pt"
    torch.jit.save(module, str(model_path))
    sidecar = out_dir / "detector.preprocess.json"
    sidecar.write_text(json.dumps(SIDECAR, indent=2) + "\n", encoding="utf-8")
    return [model_path, sidecar]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "model"))
    for path in build(Path(parser.parse_args().out)):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
