"""Re-scan of an unchanged folder, and peak memory of the cold scans at N/2 and N images.

    .venv/bin/python bench/bench_rescan.py --n 100000 --runs 3

Makes N small distinct JPEGs (160x120 smooth random colour fields) once. Then, each in a fresh process so that peak
memory is that scan's alone: a cold scan (fresh workspace) of N/2 and of N images, recording peak RSS of
the scanning process and of its largest worker; then re-scans of the unchanged N-image folder (same
workspace) timed end to end (list + stat + cache read + every check + save). The memory figure for a
million images is measured, not projected, by bench_memory.py (the growth is not linear at small N: fixed
costs such as the near-duplicate index start above 8,000 images).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
import inspect_core
t = time.perf_counter()
r = inspect_core.scan({root!r}, workspace={ws!r})
dt = time.perf_counter() - t
print(json.dumps({{"s": dt, "files_read": r.summary["files_read"], "n": r.summary["n_images"],
  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def make_folder(folder: Path, n: int) -> Path:
    marker = folder / f".made_{n}"
    if marker.exists():
        return folder
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        # distinct images: a random low-resolution colour field, upsampled (smooth, photo-like statistics)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((160, 120), Image.Resampling.BICUBIC)
        sub = folder / f"class_{k % 10}"
        sub.mkdir(exist_ok=True)
        im.save(sub / f"img_{k:07d}.jpg", quality=85)
    marker.touch()
    return folder


def run_child(root: Path, ws: str) -> dict:
    code = CHILD.format(root=str(root), ws=ws)
    # run from the checkout: `python -c` imports its inspect_core first
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=HERE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    half_root = make_folder(HERE / ".data" / f"rescan_{args.n // 2}", args.n // 2)
    root = make_folder(HERE / ".data" / f"rescan_{args.n}", args.n)
    cold_half = run_child(half_root, tempfile.mkdtemp(prefix="bench-ws-"))
    ws = tempfile.mkdtemp(prefix="bench-ws-")
    cold = run_child(root, ws)
    rescans = [run_child(root, ws) for _ in range(args.runs)]
    assert all(r["files_read"] == 0 for r in rescans), rescans
    res = {"n_images": args.n, "cold_scan_s": cold["s"], "cold_img_per_s": args.n / cold["s"],
           "rescan_s": [r["s"] for r in rescans], "rescan_median_s": statistics.median(r["s"] for r in rescans),
           "peak_rss_mb_half": cold_half["rss_mb"], "peak_rss_mb": cold["rss_mb"],
           "worker_peak_rss_mb": cold["worker_rss_mb"],
           "rescan_peak_rss_mb": max(r["rss_mb"] for r in rescans)}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "rescan.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
