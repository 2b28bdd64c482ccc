"""Cold-scan throughput: inspect_core against CleanVision on the same JPEGs, in the same run.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/bench_scan.py --n 2000 --runs 3

Makes N 640x480 JPEGs from real photos (bench/photos.py) once, then alternates: our cold scan (a fresh
workspace, so every file is read) and CleanVision's Imagelab.find_issues() with its default issue types.
Both see the same files in the OS page cache. Prints medians and the ratio; writes bench/results/scan.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from photos import crops_folder  # noqa: E402



def time_ours(root: Path, workers: int) -> float:
    import inspect_core

    ws = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    t = time.perf_counter()
    result = inspect_core.scan(root, workspace=ws, workers=workers)
    dt = time.perf_counter() - t
    assert result.summary["files_read"] == result.summary["n_images"]
    shutil.rmtree(ws, ignore_errors=True)
    return dt


def time_cleanvision(root: Path) -> float:
    import logging
    import os

    from cleanvision import Imagelab

    logging.disable(logging.WARNING)
    devnull = open(os.devnull, "w")
    old_out, old_err = sys.stdout, sys.stderr
    t = time.perf_counter()
    try:
        sys.stdout = sys.stderr = devnull  # its progress bars cost it a little; silence them
        lab = Imagelab(data_path=str(root / "all"))
        lab.find_issues()
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-peer", action="store_true", help="time only inspect_core")
    args = ap.parse_args()
    root = crops_folder(HERE / ".data" / f"scan_{args.n}", args.n, seed=1)
    ours, peer = [], []
    for _ in range(args.runs):
        ours.append(time_ours(root, args.workers))
        if not args.no_peer:
            peer.append(time_cleanvision(root))
    res = {"n_images": args.n, "image_size": "640x480 JPEG q90", "runs": args.runs,
           "ours_s": ours, "ours_median_s": statistics.median(ours),
           "ours_img_per_s": args.n / statistics.median(ours)}
    if peer:
        res.update({"cleanvision_s": peer, "cleanvision_median_s": statistics.median(peer),
                    "cleanvision_img_per_s": args.n / statistics.median(peer),
                    "ratio_ours_over_cleanvision": statistics.median(peer) / statistics.median(ours)})
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "scan.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
