"""Label-issue ranking: inspect_core's confident learning (and loss ranking) against cleanlab's
``find_label_issues`` on the SAME probabilities, with known injected label flips.

    .venv/bin/pip install -r bench/requirements.txt     # cleanlab (AGPL): bench only, never imported by the app
    .venv/bin/python bench/bench_label_issues.py --runs 5

Three methods on each scenario: ours (``select="posterior"``, the default), ours with ``select="margin"`` (the
paper's prune-by-noise-rate rule, which cleanlab also implements), and cleanlab's ``find_label_issues``
(defaults). Precision / recall of the flagged set against the true flips, pooled over --runs seeds (sum of
true positives / sum of flags), and the number of seeds in which ours is below cleanlab in precision or recall.

- main: synthetic out-of-sample probabilities (10 classes, 10,000 examples, varied difficulty, balanced and
  imbalanced classes, uniform and pairwise flips at 5-20%); also the loss ranking scored as precision at
  K = number of flips, and the number of examples flagged by only one of ours-margin / cleanlab (median).
- robustness: other probability and noise shapes, to check the posterior's assumptions do not carry it:
  over- and underconfident probabilities (logits x2, x0.5: label smoothing), sparse random noise (each class
  flips into 1-3 others with random weights), 3 to 100 classes.
- the sample dataset scored by the sample model (planted mislabels from PLANTED.csv).
Writes bench/results/label_issues.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

import numpy as np  # noqa: E402


def synthetic(n: int, n_classes: int, noise: float, seed: int, imbalanced: bool, pairwise: bool):
    rng = np.random.default_rng(seed)
    prior = np.ones(n_classes)
    if imbalanced:
        prior = np.geomspace(1.0, 0.1, n_classes)
    prior = prior / prior.sum()
    true = rng.choice(n_classes, size=n, p=prior)
    difficulty = rng.gamma(2.0, 1.2, n)                          # margin of the true class varies per example
    logits = rng.normal(0.0, 1.0, (n, n_classes))
    logits[np.arange(n), true] += difficulty
    if pairwise:                                                 # confusable neighbour classes
        logits[np.arange(n), (true + 1) % n_classes] += 0.5 * rng.random(n)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    given = true.copy()
    flip = rng.random(n) < noise
    if pairwise:
        given[flip] = (true[flip] + 1) % n_classes
    else:
        given[flip] = (true[flip] + rng.integers(1, n_classes, flip.sum())) % n_classes
    return probs, given, flip


def family(n: int, n_classes: int, noise: float, seed: int, temperature: float, flips: str, imbalanced: bool):
    """Robustness scenarios: logits scaled by ``temperature`` (2: overconfident, 0.5: underconfident); flips
    "uniform" or "sparse" (each class flips into 1-3 random others with random weights)."""
    rng = np.random.default_rng(seed)
    prior = np.geomspace(1.0, 0.1, n_classes) if imbalanced else np.ones(n_classes)
    prior = prior / prior.sum()
    true = rng.choice(n_classes, size=n, p=prior)
    logits = rng.normal(0.0, 1.0, (n, n_classes))
    logits[np.arange(n), true] += rng.gamma(2.0, 1.2, n)
    logits *= temperature
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    given = true.copy()
    flip = rng.random(n) < noise
    if flips == "uniform":
        given[flip] = (true[flip] + rng.integers(1, n_classes, flip.sum())) % n_classes
    else:
        to = np.zeros((n_classes, n_classes))
        for j in range(n_classes):
            others = [c for c in range(n_classes) if c != j]
            chosen = rng.choice(others, size=int(rng.integers(1, min(4, n_classes))), replace=False)
            weights = rng.random(len(chosen))
            to[j, chosen] = weights / weights.sum()
        cum = to.cumsum(axis=1)
        pick = rng.random(n)
        for idx in np.flatnonzero(flip):
            given[idx] = min(int(np.searchsorted(cum[true[idx]], pick[idx], side="right")), n_classes - 1)
    return probs, given, flip


ROBUSTNESS = [  # (classes, temperature, flips, imbalanced)
    (10, 2.0, "uniform", False), (10, 0.5, "uniform", False), (10, 0.5, "sparse", True),
    (10, 1.0, "sparse", False), (10, 1.0, "sparse", True), (10, 2.0, "sparse", False),
    (50, 1.0, "uniform", False), (50, 1.0, "sparse", True), (3, 1.0, "sparse", False),
    (3, 2.0, "uniform", True), (100, 2.0, "sparse", True),
]


def prf(found: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((found & truth).sum())
    precision = tp / max(1, int(found.sum()))
    recall = tp / max(1, int(truth.sum()))
    f1 = 2 * precision * recall / max(1e-12, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "n_flagged": int(found.sum()), "tp": tp,
            "n_true": int(truth.sum())}


def loss_topk(probs, given, truth) -> dict:
    loss = -np.log(np.clip(probs[np.arange(len(given)), given], 1e-12, 1))
    k = int(truth.sum())
    top = np.zeros(len(given), dtype=bool)
    top[np.argsort(-loss, kind="stable")[:k]] = True
    return prf(top, truth)


def run_both(probs, given, truth) -> dict:
    from cleanlab.filter import find_label_issues

    from inspect_core.model.label_issues import find_issues_confident_learning
    t = time.perf_counter()
    ours = find_issues_confident_learning(probs, given).issue_mask
    t_ours = time.perf_counter() - t
    margin = find_issues_confident_learning(probs, given, select="margin").issue_mask
    t = time.perf_counter()
    theirs = find_label_issues(labels=given, pred_probs=probs, n_jobs=1)
    t_cl = time.perf_counter() - t
    return {"ours": {**prf(ours, truth), "time_s": t_ours}, "ours_margin": prf(margin, truth),
            "cleanlab": {**prf(theirs, truth), "time_s": t_cl},
            "ours_loss_top_k": loss_topk(probs, given, truth),
            "set_difference": {"only_ours_margin": int((margin & ~theirs).sum()),
                               "only_cleanlab": int((theirs & ~margin).sum())}}


def pooled(results: list[dict]) -> dict:
    """Precision / recall pooled over seeds (sum of true positives over sum of flags / of flips), median times
    and set differences, and in how many seeds each of ours is below cleanlab in precision or recall."""
    out = {}
    n_true = sum(r["cleanlab"]["n_true"] for r in results)
    for method in ("ours", "ours_margin", "cleanlab", "ours_loss_top_k"):
        tp = sum(r[method]["tp"] for r in results)
        flagged = sum(r[method]["n_flagged"] for r in results)
        out[method] = {"precision": round(tp / max(1, flagged), 4), "recall": round(tp / max(1, n_true), 4),
                       "n_flagged": flagged, "tp": tp}
        if "time_s" in results[0][method]:
            out[method]["time_s"] = round(statistics.median(r[method]["time_s"] for r in results), 4)
        if method.endswith("_top_k"):
            continue
        if method != "cleanlab":
            out[method]["seeds_below_cleanlab"] = sum(
                r[method]["precision"] < r["cleanlab"]["precision"] or r[method]["recall"] < r["cleanlab"]["recall"]
                for r in results)
    out["set_difference"] = {k: statistics.median(r["set_difference"][k] for r in results)
                             for k in results[0]["set_difference"]}
    out["seeds"] = len(results)
    return out


def scale(n: int, n_classes: int, runs: int) -> dict:
    """Seconds per call, ours and cleanlab, on one large synthetic set (median of ``runs``)."""
    from cleanlab.filter import find_label_issues

    from inspect_core.model.label_issues import find_issues_confident_learning
    probs, given, _ = family(n, n_classes, 0.1, 0, 1.0, "uniform", False)
    times = {"ours": [], "cleanlab": []}
    for _ in range(runs):
        t = time.perf_counter()
        find_issues_confident_learning(probs, given)
        times["ours"].append(time.perf_counter() - t)
        t = time.perf_counter()
        find_label_issues(labels=given, pred_probs=probs, n_jobs=1)
        times["cleanlab"].append(time.perf_counter() - t)
    return {"n": n, "n_classes": n_classes, **{k: round(statistics.median(v), 2) for k, v in times.items()},
            "runs_s": {k: [round(x, 2) for x in v] for k, v in times.items()}}


def sample_scenario() -> dict | None:
    import pandas as pd

    from inspect_core.loaders import load_dataset
    from inspect_core.model.models import load_model
    from inspect_core.model.preprocess import read_preprocess
    from inspect_core.model.pipeline import score_dataset
    root = HERE.parent / "sample_data"
    if not (root / "model" / "model.pt2").exists():
        return None
    ds = load_dataset(root)
    spec = read_preprocess(root / "model" / "model.preprocess.json")
    res = score_dataset(load_model(root / "model" / "model.pt2", spec, device="cpu"), root, ds.images, workers=0)
    t = res.table
    ok = (t["label_index"] >= 0).to_numpy() & t["error"].isna().to_numpy()
    planted = pd.read_csv(root / "PLANTED.csv")
    mislabeled = set(planted.loc[planted["check"] == "mislabeled", "image_id"])
    truth = t["image_id"].isin(mislabeled).to_numpy()[ok]
    probs = res.probs[ok].astype(np.float64)
    probs /= probs.sum(1, keepdims=True)
    out = run_both(probs, t["label_index"].to_numpy()[ok], truth)
    out["n_images"] = int(ok.sum())
    out["n_planted"] = int(truth.sum())
    return out


def cleanlab_version() -> str | None:
    """cleanlab's version, or None (after saying how to install it) when it is not installed."""
    try:
        import cleanlab
    except ImportError:
        sys.stderr.write("error: cleanlab is not installed; .venv/bin/pip install -r bench/requirements.txt\n")
        return None
    return cleanlab.__version__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--out", default=str(HERE / "results" / "label_issues.json"))
    ap.add_argument("--scale-n", type=int, default=1_000_000, help="examples for the timing at scale")
    ap.add_argument("--scale-classes", type=int, default=100)
    args = ap.parse_args(argv)
    version = cleanlab_version()
    if version is None:
        return 2
    scenarios = []
    for imbalanced in (False, True):
        for pairwise in (False, True):
            for noise in (0.05, 0.1, 0.2):
                runs = [run_both(*synthetic(args.n, args.classes, noise, seed, imbalanced, pairwise))
                        for seed in range(args.runs)]
                scenarios.append({"noise": noise, "imbalanced": imbalanced, "flips": "pairwise" if pairwise else "uniform",
                                  **pooled(runs)})
    robustness = []
    for n_classes, temperature, flips, imbalanced in ROBUSTNESS:
        for noise in (0.05, 0.2):
            runs = [run_both(*family(args.n, n_classes, noise, seed, temperature, flips, imbalanced))
                    for seed in range(args.runs)]
            robustness.append({"classes": n_classes, "temperature": temperature, "flips": flips,
                               "imbalanced": imbalanced, "noise": noise, **pooled(runs)})
    result = {"cleanlab_version": version, "n": args.n, "n_classes": args.classes, "runs": args.runs,
              "synthetic": scenarios, "robustness": robustness, "sample_data": sample_scenario(),
              "scale": scale(args.scale_n, args.scale_classes, runs=3),
              "command": "python bench/bench_label_issues.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    def cells(s):
        o, m, c = s["ours"], s["ours_margin"], s["cleanlab"]
        return (f"{o['precision']:.4f} | {o['recall']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} | "
                f"{c['precision']:.4f} | {c['recall']:.4f} | {o['seeds_below_cleanlab']}/{s['seeds']}")
    lines = ["| classes | flips | noise | ours P | ours R | ours-margin P | ours-margin R | cleanlab P | cleanlab R | "
             "seeds ours < cleanlab | only margin / only cleanlab | loss top-K P=R |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in scenarios:
        d = s["set_difference"]
        lines.append(f"| {'imbalanced' if s['imbalanced'] else 'balanced'} | {s['flips']} | {s['noise']:.0%} | "
                     f"{cells(s)} | {d['only_ours_margin']:g} / {d['only_cleanlab']:g} | "
                     f"{s['ours_loss_top_k']['precision']:.3f} |")
    lines += ["", "| classes | probabilities | flips | noise | ours P | ours R | ours-margin P | ours-margin R | "
              "cleanlab P | cleanlab R | seeds ours < cleanlab |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    conf = {2.0: "overconfident (x2)", 0.5: "underconfident (x0.5)", 1.0: "as drawn"}
    for s in robustness:
        lines.append(f"| {s['classes']}{' imbalanced' if s['imbalanced'] else ''} | {conf[s['temperature']]} | "
                     f"{s['flips']} | {s['noise']:.0%} | {cells(s)} |")
    sys.stdout.write("\n".join(lines) + "\n")
    if result["sample_data"]:
        s = result["sample_data"]
        sys.stdout.write(f"sample_data ({s['n_planted']} planted of {s['n_images']}): "
                         + "; ".join(f"{m} P {s[m]['precision']:.3f} R {s[m]['recall']:.3f} ({s[m]['n_flagged']} flagged)"
                                     for m in ("ours", "ours_margin", "cleanlab"))
                         + f"; loss top-K recall {s['ours_loss_top_k']['recall']:.3f}\n")
    sc = result["scale"]
    sys.stdout.write(f"{sc['n']:,} examples x {sc['n_classes']} classes: ours {sc['ours']} s, cleanlab {sc['cleanlab']} s "
                     f"(median of {len(sc['runs_s']['ours'])})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
