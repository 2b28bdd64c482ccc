"""Informational, on a CUDA machine with torchvision: how fast nvJPEG (torchvision.io.decode_jpeg on the GPU)
decodes the bench's 640x480 JPEGs, against Pillow on one core, and how far its pixels are from Pillow's.
Not used by the product (torchvision is not a dependency); it says what GPU decoding would buy.

    python bench/gpu_decode_probe.py DATA_DIR [--n 2048]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args(argv)
    files = sorted(Path(args.data).rglob("*.jpg"))[: args.n]
    blobs = [f.read_bytes() for f in files]
    out: dict = {"n": len(files)}
    t = time.perf_counter()
    for f in files[:256]:
        with Image.open(f) as im:
            im.convert("RGB").load()
    out["pillow_one_core_img_per_s"] = round(256 / (time.perf_counter() - t), 1)
    try:
        from torchvision.io import decode_jpeg
    except Exception as exc:  # noqa: BLE001
        out["torchvision"] = f"not importable: {exc}"
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    datas = [torch.frombuffer(b, dtype=torch.uint8) for b in blobs]
    decode_jpeg(datas[: args.batch], device="cuda")
    torch.cuda.synchronize()
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        for s in range(0, len(datas), args.batch):
            decode_jpeg(datas[s:s + args.batch], device="cuda")
        torch.cuda.synchronize()
        runs.append(len(datas) / (time.perf_counter() - t))
    out["nvjpeg_img_per_s_median"] = round(statistics.median(runs), 1)
    diffs = []
    for f, d in zip(files[:32], datas[:32]):
        gpu = decode_jpeg(d, device="cuda").permute(1, 2, 0).cpu().numpy().astype(np.int16)
        with Image.open(f) as im:
            cpu = np.asarray(im.convert("RGB"), dtype=np.int16)
        diffs.append((np.abs(gpu - cpu).mean(), np.abs(gpu - cpu).max()))
    out["pixels_vs_pillow_mean_abs"] = round(float(np.mean([d[0] for d in diffs])), 3)
    out["pixels_vs_pillow_max_abs"] = int(max(d[1] for d in diffs))
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
