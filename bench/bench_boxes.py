"""Duplicate-box check on one image with many boxes: time and peak memory, each case in a fresh process.

    .venv/bin/python -m bench.bench_boxes [--n 100000] [--runs 3]

Cases (all boxes on one 4000 x 3000 px image, one category):
  random     boxes of 5-200 px anywhere, 1% of them planted as near copies (IoU >= 0.9) of others
  crowded    boxes of 20-40 px packed into a 400 x 300 px corner (about 30 boxes overlap any one)
  identical  the same box n times (a label file repeated)
  dense      n boxes a hair apart (every pair a duplicate): more comparisons than the per-image cap, so the image
             is left unchecked with a too_many_boxes finding
Peak memory is the child's peak RSS (ru_maxrss), which includes the interpreter, numpy and pandas (about 110 MB).
Writes bench/results/boxes.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def make_boxes(case: str, n: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    if case == "random":
        w, h = rng.uniform(5, 200, n), rng.uniform(5, 200, n)
        x, y = rng.uniform(0, 4000, n), rng.uniform(0, 3000, n)
        k = n // 100
        src = rng.integers(k, n, k)
        x[:k], y[:k], w[:k], h[:k] = x[src] + 0.01 * w[src], y[src], w[src], h[src]
    elif case == "crowded":
        w, h = rng.uniform(20, 40, n), rng.uniform(20, 40, n)
        x, y = rng.uniform(0, 400, n), rng.uniform(0, 300, n)
    elif case == "identical":
        x, y, w, h = (np.full(n, v, float) for v in (100, 100, 50, 50))
    else:  # dense
        x = 100 + np.arange(n) * 1e-6
        y, w, h = (np.full(n, v, float) for v in (100, 50, 50))
    return pd.DataFrame({"ann_id": np.arange(n), "image_id": "one.jpg",
                         "category_id": pd.array(np.zeros(n, int), dtype="Int64"),
                         "box_x_px": x, "box_y_px": y, "box_w_px": w, "box_h_px": h})


def _child(case: str, n: int, queue) -> None:
    from inspect_core.checks.annotation import duplicate_box_pairs

    boxes = make_boxes(case, n)
    t0 = time.perf_counter()
    pairs = duplicate_box_pairs(boxes)
    elapsed_s = time.perf_counter() - t0
    queue.put({"elapsed_s": elapsed_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "pairs": int(len(pairs)), "unchecked_images": len(pairs.attrs.get("unchecked", {}))})


def run_once(case: str, n: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(case, n, queue))
    proc.start()
    out = queue.get(timeout=600)
    proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=["random", "crowded", "identical", "dense"])
    args = ap.parse_args()
    report = {}
    for case in args.cases:
        runs = [run_once(case, args.n) for _ in range(args.runs)]
        report[case] = {"n_boxes": args.n, "median_s": round(statistics.median(r["elapsed_s"] for r in runs), 3),
                        "runs_s": [round(r["elapsed_s"], 3) for r in runs],
                        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
                        "pairs": runs[0]["pairs"], "unchecked_images": runs[0]["unchecked_images"]}
        print(case, json.dumps(report[case]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "boxes.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
