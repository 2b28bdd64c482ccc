"""Model unit tests at scale: a 50-test suite on 1,000,000 scored images (target <= 5 s) and slice discovery over
them (target <= 60 s). Synthetic images table (label, split, brightness, width_px, n_boxes, a metadata column,
finding flags) and scores (10 classes, a planted weak slice), seeded; times are medians of --repeats runs.

    .venv/bin/python bench/bench_suite.py                 # 1,000,000 images, 3 repeats
    .venv/bin/python bench/bench_suite.py --n 100000 --repeats 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd


from inspect_core.suite.discover import discover
from inspect_core.suite.metrics import ScoreArrays
from inspect_core.suite.runner import run_suite
from inspect_core.suite.slices import SliceData
from inspect_core.suite.spec import parse_suite

CLASSES = [f"class_{k}" for k in range(10)]


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    images = pd.DataFrame({
        "image_id": pd.array([f"split/c/img_{i:07d}.jpg" for i in range(n)], dtype="string"),
        "label": pd.Categorical.from_codes(y, CLASSES).astype("string"),
        "split": pd.array(np.array(["train", "val", "test"])[rng.integers(0, 3, n)], dtype="string"),
        "brightness": rng.uniform(0, 1, n), "contrast": rng.uniform(0, 1, n),
        "width_px": rng.integers(64, 2048, n), "height_px": rng.integers(64, 2048, n),
        "n_boxes": rng.integers(0, 5, n),
        "meta_camera": pd.array(np.array(["A", "B", "C", "D"])[rng.integers(0, 4, n)], dtype="string"),
        "is_dark": rng.random(n) < 0.02, "is_blurry": rng.random(n) < 0.03, "is_near_duplicate": rng.random(n) < 0.01,
    })
    p_right = np.where((y == 3) & (images["brightness"].to_numpy() < 0.25), 0.6, 0.9)
    right = rng.random(n) < p_right
    pred = np.where(right, y, (y + rng.integers(1, len(CLASSES), n)) % len(CLASSES))
    probs = rng.dirichlet(np.ones(len(CLASSES)), n).astype(np.float32) * 0.3
    probs[np.arange(n), pred] += 0.7
    loss = -np.log(probs[np.arange(n), y].astype(np.float64))
    scores = ScoreArrays(CLASSES, y.astype(np.int64), pred.astype(np.int64), probs, loss)
    flagged = np.flatnonzero(images["is_dark"].to_numpy())
    findings = pd.DataFrame({"image_id": images["image_id"].to_numpy()[flagged], "check": "dark",
                             "family": "exposure"})
    return images, scores, findings


def suite_text() -> str:
    """50 tests over 10 slices: every metric kind."""
    slices = {
        "val": "{where: {split: val}}", "test": "{where: {split: [val, test]}}",
        "dark5": "{lowest: {column: brightness, share: 0.05}}",
        "bright5": "{highest: {column: brightness, share: 0.05}}",
        "big": "{where: {width_px: {min: 1024}}}", "crowded": "{where: {n_boxes: [3, 4]}}",
        "cam_a": "{where: {meta_camera: A}}", "dark_flag": "{finding: dark}",
        "c3_dark": "{all_of: [dark5], where: {label: class_3}}", "val_or_big": "{any_of: [val, big]}",
    }
    lines = ["slices:"] + [f"  {k}: {v}" for k, v in slices.items()] + ["tests:"]
    names = list(slices)
    metrics = ["accuracy", "top_k_accuracy", "mean_loss", "recall", "precision", "f1", "ece", "finding_count",
               "finding_share", "accuracy"]
    for i in range(50):
        m = metrics[i % len(metrics)]
        s = names[i % len(names)]
        extra = {"top_k_accuracy": ", k: 3", "recall": f", class: class_{i % 10}",
                 "precision": f", class: class_{i % 10}",
                 "f1": f", class: class_{i % 10}", "finding_count": ", check: dark",
                 "finding_share": ", check: exposure"}.get(m, "")
        bound = "max: 10" if m in ("mean_loss", "ece", "finding_count", "finding_share") else "min: 0.5"
        lines.append(f"  - {{name: t{i:02d}, slice: {s}, metric: {m}{extra}, {bound}}}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    images, scores, findings = make_data(args.n)
    print(f"made {args.n:,} images in {time.perf_counter() - t0:.1f} s")
    suite = parse_suite(suite_text())
    suite_s, disc_s = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fresh = ScoreArrays(scores.class_names, scores.label_index, scores.pred_index, scores.probs, scores.loss)
        run = run_suite(suite, SliceData(images, None, findings, None), fresh)   # nothing cached between runs
        suite_s.append(time.perf_counter() - t)
    print(f"suite of {len(suite.tests)} tests on {args.n:,} images: median {statistics.median(suite_s):.2f} s "
          f"(runs {', '.join(f'{s:.2f}' for s in suite_s)}); statuses {run.results['status'].value_counts().to_dict()}")
    for _ in range(args.repeats):
        t = time.perf_counter()
        found = discover(images, scores, findings)
        disc_s.append(time.perf_counter() - t)
    top = found.proposals.iloc[0] if len(found.proposals) else None
    print(f"slice discovery over {args.n:,} images ({found.n_tested} candidates): median "
          f"{statistics.median(disc_s):.2f} s (runs {', '.join(f'{s:.2f}' for s in disc_s)}); "
          f"{len(found.proposals)} proposals, first: {top['slice'] if top is not None else '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
