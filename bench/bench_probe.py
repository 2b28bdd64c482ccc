"""The K-fold linear probe (inspect_core/model/probe.py): its cost at 1,000,000 x 512, and what it changes for label
issues on a training split, on real images.

    PYTHONPATH=. .venv/bin/python bench/bench_probe.py cost --n 1000000 --dim 512 --runs 3
    PYTHONPATH=. .venv/bin/python bench/bench_probe.py train-split --seeds 5

cost: synthetic clustered embeddings (10 classes), the whole out_of_fold_probs call, median of the runs.

train-split: real images (the 1,797 handwritten digits scikit-learn ships, 8x8 px, no download), 70% as the
training split with 10% of its labels flipped (uniformly to another class), 30% held out. A small MLP is trained
on the training split as given (flips included) until it fits it (the usual case: a network memorises its
training labels), then confident learning (inspect_core.model.label_issues) flags label errors on the training split
twice: from the network's own, in-sample probabilities, and from the probe's out-of-fold probabilities on the
network's hidden-layer embeddings. Precision and recall of the flags against the flipped rows, per seed and the
median over the seeds, for networks trained 40, 150 and 400 epochs: from one that has not fitted the flips yet
to one that has memorised every training label.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from inspect_core.model.label_issues import find_issues_confident_learning
from inspect_core.model.probe import out_of_fold_probs

HERE = Path(__file__).resolve().parent


def cost(n: int, dim: int, runs: int) -> dict:
    rng = np.random.default_rng(0)
    n_classes = 10
    centres = rng.normal(0, 1, (n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    emb = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        emb[s:s + 100_000] = centres[labels[s:s + 100_000]] + rng.normal(0, 4.0, (min(100_000, n - s), dim))
    times, acc = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        res = out_of_fold_probs(emb, labels, n_classes)
        times.append(time.perf_counter() - t0)
        acc = res.accuracy
    return {"n": n, "dim": dim, "runs_s": [round(t, 2) for t in times], "median_s": round(statistics.median(times), 2),
            "out_of_fold_accuracy": round(acc, 4)}


def _train_mlp(x, y, n_classes: int, seed: int, epochs: int = 400):
    import torch
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, n_classes))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net


def _flags_pr(probs, given, flipped) -> dict:
    issue = find_issues_confident_learning(probs, given).issue_mask
    tp = int((issue & flipped).sum())
    return {"flags": int(issue.sum()), "precision": round(tp / max(int(issue.sum()), 1), 4),
            "recall": round(tp / max(int(flipped.sum()), 1), 4)}


def train_split(seeds: int, flip_rate: float = 0.10, epochs=(40, 150, 400)) -> dict:
    import torch
    from sklearn.datasets import load_digits
    digits = load_digits()
    x_all = (digits.data / 16.0).astype(np.float32)
    y_all = digits.target.astype(np.int64)
    out = {"dataset": "sklearn load_digits (1,797 real 8x8 handwritten digits)", "flip_rate": flip_rate, "seeds": []}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y_all))
        train = order[: int(0.7 * len(order))]
        x, y_true = x_all[train], y_all[train]
        given = y_true.copy()
        flip = rng.choice(len(given), int(flip_rate * len(given)), replace=False)
        given[flip] = (given[flip] + rng.integers(1, 10, len(flip))) % 10
        flipped = given != y_true
        for n_epochs in epochs:
            net = _train_mlp(x, given, 10, seed, n_epochs)
            with torch.no_grad():
                xt = torch.from_numpy(x)
                in_sample = torch.softmax(net(xt), 1).numpy()
                emb = net[:4](xt).numpy()                       # the 64-d input of the last linear layer
            probe = out_of_fold_probs(emb, given, 10)
            row = {"seed": seed, "epochs": n_epochs, "n_train": len(given), "n_flipped": int(flipped.sum()),
                   "net_fit_to_given_labels": round(float((in_sample.argmax(1) == given).mean()), 4),
                   "in_sample": _flags_pr(in_sample, given, flipped),
                   "probe": {**_flags_pr(probe.probs, given, flipped), "elapsed_s": round(probe.elapsed_s, 2)}}
            out["seeds"].append(row)
            sys.stdout.write(json.dumps(row) + "\n")
    out["median_by_epochs"] = {}
    for n_epochs in epochs:
        rows = [r for r in out["seeds"] if r["epochs"] == n_epochs]
        out["median_by_epochs"][n_epochs] = {
            "net_fit_to_given_labels": statistics.median(r["net_fit_to_given_labels"] for r in rows),
            **{kind: {m: statistics.median(r[kind][m] for r in rows) for m in ("flags", "precision", "recall")}
               for kind in ("in_sample", "probe")}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("cost", "train-split"))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    res = cost(args.n, args.dim, args.runs) if args.what == "cost" else train_split(args.seeds)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"probe_{args.what.replace('-', '_')}.json").write_text(json.dumps(res, indent=1) + "\n")
    sys.stdout.write(json.dumps({k: v for k, v in res.items() if k != "seeds"}, indent=1) + "\n")


if __name__ == "__main__":
    main()
