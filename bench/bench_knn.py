"""Embedding kNN (the Model triage sanity checks' near duplicates and outliers): speed and recall.

    .venv/bin/python bench/bench_knn.py [--sizes 10000 100000 1000000] [--dims 512] [--runs 3]
        [--compare-exact-max 100000]

Embeddings are synthetic, shaped like a trained network's: 1,000 clusters, each spread along 8 directions,
plus noise, with planted exact duplicates (0.1% of rows) and planted outliers (0.01%, far from every
cluster). For each size it times ``inspect_core.model.knn.knn`` as the app calls it (exact up to
``EXACT_MAX_ROWS`` rows, the inverted file above) and ``sanity.embedding_findings``, and measures the
inverted file's recall: the share of the true 5 nearest neighbours it returns, on 2,000 random rows whose true
neighbours are found by brute force against all rows. At the exact-search sizes the inverted file is also run
(forced) to compare, and up to --compare-exact-max rows the findings (near-duplicate pairs, outliers) are also
computed once with the exact search, to count what the inverted file adds or misses. Writes
bench/results/knn.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from inspect_core.model import knn as K  # noqa: E402
from inspect_core.model.sanity import embedding_findings  # noqa: E402

CHECK_ROWS = 2000


def synthetic(n: int, dims: int, seed: int = 0, n_clusters: int = 1000, chunk: int = 50_000):
    """(embeddings float32, planted duplicate pairs, planted outlier rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dims)).astype(np.float32)
    spread = rng.standard_normal((n_clusters, 8, dims)).astype(np.float32) * 0.3
    emb = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        cluster = rng.integers(0, n_clusters, stop - start)
        coef = rng.standard_normal((stop - start, 8)).astype(np.float32)
        emb[start:stop] = (centres[cluster] + np.einsum("nk,nkd->nd", coef, spread[cluster])
                           + rng.standard_normal((stop - start, dims)).astype(np.float32) * 0.05)
    rows = rng.permutation(n)
    n_dup, n_out = max(1, n // 1000), max(1, n // 10_000)
    copies, originals = rows[:n_dup], rows[n_dup:2 * n_dup]
    emb[copies] = emb[originals]
    outliers = rows[2 * n_dup:2 * n_dup + n_out]
    emb[outliers] = rng.standard_normal((n_out, dims)).astype(np.float32) * 20
    return emb, {frozenset((int(a), int(b))) for a, b in zip(copies, originals)}, set(int(i) for i in outliers)


def true_neighbours(emb: np.ndarray, rows: np.ndarray, k: int = 5) -> np.ndarray:
    """Brute force against all rows, for ``rows`` only (nearest first)."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    out = []
    for start in range(0, len(rows), 100):
        q = rows[start:start + 100]
        d = 1.0 - unit[q] @ unit.T
        d[np.arange(len(q)), q] = np.inf
        part = np.argpartition(d, k, axis=1)[:, :k]
        out.append(np.take_along_axis(part, np.argsort(np.take_along_axis(d, part, 1), axis=1, kind="stable"), 1))
    return np.concatenate(out)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


def timed(fn, runs: int):
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compare-exact-max", type=int, default=100_000,
                    help="also run the exact findings (once) up to this many rows, to compare")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "knn.json"))
    args = ap.parse_args(argv)
    results = []
    for n in args.sizes:
        emb, dup_pairs, outlier_rows = synthetic(n, args.dims)
        check = np.random.default_rng(1).choice(n, size=min(n, CHECK_ROWS), replace=False)
        truth = true_neighbours(emb, check)
        modes = ["app"] + (["inverted file (forced)"] if n <= K.EXACT_MAX_ROWS else [])
        for mode in modes:
            limit = 0 if mode.startswith("inverted") else None
            knn_s, (dist, idx) = timed(lambda: K.knn(emb, 5, exact_max_rows=limit), args.runs)
            row = {"n": n, "dims": args.dims, "search": ("exact" if n <= K.EXACT_MAX_ROWS and limit is None
                                                         else "inverted file"),
                   "knn_s": round(knn_s, 3), "runs": args.runs,
                   "recall_at_5": round(recall(idx[check], truth), 4),
                   "nearest_found": round(float(np.mean(idx[check, 0] == truth[:, 0])), 4)}
            found = {frozenset((i, int(idx[i, 0]))) for i in range(n) if dist[i, 0] <= 1e-3}
            row["planted_duplicates_found"] = f"{len(dup_pairs & found)}/{len(dup_pairs)}"
            if mode == "app":
                ids = np.arange(n).astype(str)
                findings_s, (dups, outliers) = timed(lambda: embedding_findings(ids, emb), 1)
                flagged = set(outliers["image_id"].astype(int))
                row.update(findings_s=round(findings_s, 3), outliers_flagged=len(flagged),
                           planted_outliers_flagged=f"{len(flagged & outlier_rows)}/{len(outlier_rows)}")
                if n > K.EXACT_MAX_ROWS and n <= args.compare_exact_max:
                    # the same findings from the exact search (once: it is the slow path)
                    limit = K.EXACT_MAX_ROWS
                    K.EXACT_MAX_ROWS = n
                    try:
                        exact_s, (e_dups, e_out) = timed(lambda: embedding_findings(ids, emb), 1)
                    finally:
                        K.EXACT_MAX_ROWS = limit
                    e_flagged = set(e_out["image_id"].astype(int))
                    pairs = {frozenset(p) for p in dups[["image_id", "neighbour_id"]].itertuples(index=False)}
                    e_pairs = {frozenset(p) for p in e_dups[["image_id", "neighbour_id"]].itertuples(index=False)}
                    row.update(exact_findings_s=round(exact_s, 3),
                               outliers_vs_exact=f"{len(flagged & e_flagged)} same, {len(flagged - e_flagged)} extra, "
                                                 f"{len(e_flagged - flagged)} missed",
                               duplicate_pairs_vs_exact=f"{len(pairs & e_pairs)} same, {len(pairs - e_pairs)} extra, "
                                                        f"{len(e_pairs - pairs)} missed")
            results.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("\n| N x dims | search | kNN s (median) | recall@5 | nearest found | planted duplicates found |"
          " embedding_findings s | planted outliers flagged (all flagged) | outliers vs exact search |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['n']:,} x {r['dims']} | {r['search']} | {r['knn_s']:.2f} | {r['recall_at_5']:.4f} | "
              f"{r['nearest_found']:.4f} | {r['planted_duplicates_found']} | {r.get('findings_s', '-')} | "
              f"{r.get('planted_outliers_flagged', '-')} ({r.get('outliers_flagged', '-')}) | "
              f"{r.get('outliers_vs_exact', '-')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
