"""Near-duplicate search: recall on real photos, and speed at a million signatures.

    .venv/bin/python bench/bench_neardup.py recall            # real photos + edited copies, through the full scan
    .venv/bin/python bench/bench_neardup.py million --n 1000000 --runs 3

recall: distinct images (non-overlapping tiles of the photos scikit-image ships, bench/photos.py) and one
edited copy of each (crop <= 5% per side, resize 50-100%, brightness +/-15%, saturation +/-30%, JPEG
q50-90), scanned by inspect_core.scan; recall = edited copies found as a duplicate of their original;
false pairs = every other pair reported.

million: N synthetic signatures (smooth random 16x16 images, the same descriptor construction as the
scan; random pHashes), with the real (original, edited) signature pairs from the recall set planted among
them; times CheckContext.pairs (exact-hash groups + near search + confirmation) and checks every planted
pair is found. Peak RSS is reported.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

from photos import distinct_tiles, edit, load_photos, write_jpegs  # noqa: E402


def recall_set(folder: Path) -> Path:
    if (folder / ".made").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(7)
    tiles = distinct_tiles(load_photos(), grid=4)
    write_jpegs(tiles, folder / "orig", "img")
    write_jpegs([edit(t, rng) for t in tiles], folder / "edit", "img")
    (folder / ".made").touch()
    return folder


def run_recall() -> dict:
    import inspect_core

    root = recall_set(HERE / ".data" / "neardup_recall")
    ws = tempfile.mkdtemp(prefix="bench-ws-")
    result = inspect_core.scan(root, workspace=ws)
    shutil.rmtree(ws, ignore_errors=True)
    pairs = result.pairs
    n = int((result.images["image_id"].str.startswith("orig/")).sum())
    found_true = set()
    false_pairs = []
    for a, b, kind, score, ph in zip(pairs["image_id_a"], pairs["image_id_b"], pairs["kind"], pairs["score"],
                                     pairs["phash_distance"]):
        na, nb = a.split("/")[1], b.split("/")[1]
        if na == nb and a.split("/")[0] != b.split("/")[0]:
            found_true.add(na)
        else:
            false_pairs.append((a, b, kind, round(float(score), 3), int(ph)))
    res = {"n_originals": n, "n_true_pairs": n, "found": len(found_true), "recall": len(found_true) / n,
           "false_pairs": len(false_pairs), "candidate_pairs_total": n * (2 * n - 1),
           "false_pair_examples": false_pairs[:10]}
    return res


def smooth_descriptors(n: int, rng: np.random.Generator, chunk: int = 200_000) -> np.ndarray:
    """Descriptors of random smooth images: random low-frequency cosine fields on a 16x16 grid plus noise."""
    from inspect_core.filescan import DESC_SIDE

    side = DESC_SIDE
    xs = np.arange(side)
    basis = []
    for u in range(6):
        for v in range(6):
            if u == v == 0:
                continue
            basis.append(np.outer(np.cos(np.pi * u * (2 * xs + 1) / (2 * side)),
                                  np.cos(np.pi * v * (2 * xs + 1) / (2 * side))).ravel())
    basis = np.array(basis, np.float32)
    weights = (1.0 / (1.0 + np.array([u + v for u in range(6) for v in range(6) if u or v], np.float32)))
    out = np.empty((n, side * side), np.int8)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        coef = rng.standard_normal((m, len(basis))).astype(np.float32) * weights
        x = coef @ basis + 0.05 * rng.standard_normal((m, side * side)).astype(np.float32)
        x -= x.mean(1, keepdims=True)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + m] = np.round(x * 127).astype(np.int8)
    return out


def run_million(n: int, runs: int) -> dict:
    import inspect_core
    from inspect_core.checks.context import CheckContext

    root = recall_set(HERE / ".data" / "neardup_recall")
    ws = tempfile.mkdtemp(prefix="bench-ws-")
    real = inspect_core.scan(root, workspace=ws)
    shutil.rmtree(ws, ignore_errors=True)
    img = real.images.set_index("image_id")
    names = sorted(i.split("/")[1] for i in img.index if i.startswith("orig/"))
    pos = {i: k for k, i in enumerate(real.images["image_id"])}
    planted_a = np.array([pos[f"orig/{x}"] for x in names])
    planted_b = np.array([pos[f"edit/{x}"] for x in names])
    # which planted pairs the rule itself accepts (the search must find all of those)
    rule_pairs = set()
    for a, b in zip(real.pairs["image_id_a"], real.pairs["image_id_b"]):
        if a.split("/")[1] == b.split("/")[1]:
            rule_pairs.add(a.split("/")[1])
    rng = np.random.default_rng(0)
    n_real = len(real.images)
    n_syn = n - n_real
    desc = np.concatenate([smooth_descriptors(n_syn, rng), real.desc])
    phash = np.concatenate([rng.integers(-(2 ** 63), 2 ** 63 - 1, n_syn, dtype=np.int64),
                            real.images["phash"].to_numpy(np.int64)])
    content = np.concatenate([rng.integers(0, 2 ** 62, n_syn), np.arange(n_real) + 2 ** 62])
    images = pd.DataFrame({
        "image_id": pd.Series([f"s/{k}" for k in range(n_syn)] + real.images["image_id"].tolist(), dtype="str"),
        "label": pd.Series(["x"] * n, dtype="str"), "split": pd.Series(["train"] * n, dtype="str"),
        "content_hash": pd.Series(content.astype(str), dtype="str"),
        "pixel_hash": pd.Series((content + 1).astype(str), dtype="str"),
        "error_kind": pd.Series([pd.NA] * n, dtype="str"),
        "file_size_bytes": np.full(n, 1000, np.int64), "phash": phash,
    })
    # the signals the near-duplicate rule reads (size band, near-uniform): the real rows' own, camera-size
    # photo-like values for the synthetic ones
    for col, syn_value in (("width_px", 640), ("height_px", 480), ("entropy_bits", 6.0), ("contrast", 0.2)):
        images[col] = np.concatenate([np.full(n_syn, syn_value), real.images[col].to_numpy()])
    offset = n_syn
    times = []
    for _ in range(runs):
        ctx = CheckContext(images=images, desc=desc, annotations=pd.DataFrame(), classes=["x"],
                           has_image_labels=True, has_boxes=False)
        t = time.perf_counter()
        pairs = ctx.pairs
        times.append(time.perf_counter() - t)
    ids_a, ids_b = pairs["image_id_a"].tolist(), pairs["image_id_b"].tolist()
    found = {a.split("/")[1] for a, b in zip(ids_a, ids_b)
             if a.startswith(("orig/", "edit/")) and b.startswith(("orig/", "edit/"))
             and a.split("/")[1] == b.split("/")[1] and a.split("/")[0] != b.split("/")[0]}
    missed = sorted(rule_pairs - found)
    _ = planted_a, planted_b, offset
    syn_pairs = sum(1 for a, b in zip(ids_a, ids_b) if a.startswith("s/") or b.startswith("s/"))
    return {"n_signatures": n, "runs": runs, "pairs_s": times, "median_s": statistics.median(times),
            "planted_pairs": len(names), "planted_pairs_the_rule_accepts": len(rule_pairs),
            "planted_found": len(rule_pairs) - len(missed), "missed": missed,
            "pairs_involving_synthetic": syn_pairs,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["recall", "million"])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    res = run_recall() if args.what == "recall" else run_million(args.n, args.runs)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"neardup_{args.what}.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
