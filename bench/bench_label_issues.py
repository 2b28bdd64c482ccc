"""Label-issue ranking: inspect_core's confident learning (and loss ranking) against cleanlab's
``find_label_issues`` on the SAME probabilities, with known injected label flips.

    .venv/bin/pip install -r bench/requirements.txt     # cleanlab (AGPL): bench only, never imported by the app
    .venv/bin/python bench/bench_label_issues.py --runs 5

Scenarios: synthetic out-of-sample probabilities (10 classes, 10,000 examples, varied difficulty, balanced and
imbalanced classes, uniform and pairwise flips at 5-20%), and the sample dataset scored by the sample model
(planted mislabels from PLANTED.csv). Precision / recall of the flagged set against the true flips; loss
ranking scored as precision at K = number of flips. Medians over --runs seeds, also of the number of examples
flagged by only one of the two. Writes bench/results/label_issues.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

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


def prf(found: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((found & truth).sum())
    precision = tp / max(1, int(found.sum()))
    recall = tp / max(1, int(truth.sum()))
    f1 = 2 * precision * recall / max(1e-12, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "n_flagged": int(found.sum())}


def loss_topk(probs, given, truth) -> dict:
    loss = -np.log(np.clip(probs[np.arange(len(given)), given], 1e-12, 1))
    k = int(truth.sum())
    top = np.zeros(len(given), dtype=bool)
    top[np.argsort(-loss, kind="stable")[:k]] = True
    return prf(top, truth)


def run_both(probs, given, truth) -> dict:
    from cleanlab.filter import find_label_issues

    from inspect_core.label_issues import find_issues_confident_learning
    t = time.perf_counter()
    ours = find_issues_confident_learning(probs, given).issue_mask
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    theirs = find_label_issues(labels=given, pred_probs=probs, n_jobs=1)
    t_cl = time.perf_counter() - t
    return {"ours": {**prf(ours, truth), "time_s": t_ours}, "cleanlab": {**prf(theirs, truth), "time_s": t_cl},
            "ours_loss_top_k": loss_topk(probs, given, truth),
            "set_difference": {"only_ours": int((ours & ~theirs).sum()), "only_cleanlab": int((theirs & ~ours).sum())}}


def median_of(results: list[dict]) -> dict:
    out = {}
    for method in results[0]:
        out[method] = {k: round(statistics.median(r[method][k] for r in results), 4) for k in results[0][method]}
    return out


def sample_scenario() -> dict | None:
    import pandas as pd

    from inspect_core.loaders import load_dataset
    from inspect_core.models import load_model
    from inspect_core.preprocess import read_preprocess
    from inspect_core.scoring import score_dataset
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--out", default=str(HERE / "results" / "label_issues.json"))
    args = ap.parse_args(argv)
    try:
        import cleanlab
    except ImportError:
        sys.stderr.write("error: cleanlab is not installed; .venv/bin/pip install -r bench/requirements.txt\n")
        return 2
    scenarios = []
    for imbalanced in (False, True):
        for pairwise in (False, True):
            for noise in (0.05, 0.1, 0.2):
                runs = [run_both(*synthetic(args.n, args.classes, noise, seed, imbalanced, pairwise))
                        for seed in range(args.runs)]
                med = median_of(runs)
                scenarios.append({"noise": noise, "imbalanced": imbalanced, "flips": "pairwise" if pairwise else "uniform",
                                  **med})
    result = {"cleanlab_version": cleanlab.__version__, "n": args.n, "n_classes": args.classes, "runs": args.runs,
              "synthetic": scenarios, "sample_data": sample_scenario(),
              "command": "python bench/bench_label_issues.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| classes | flips | noise | ours P | ours R | cleanlab P | cleanlab R | only ours / only cleanlab | "
             "loss top-K P=R |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in scenarios:
        d = s["set_difference"]
        lines.append(f"| {'imbalanced' if s['imbalanced'] else 'balanced'} | {s['flips']} | {s['noise']:.0%} | "
                     f"{s['ours']['precision']:.4f} | {s['ours']['recall']:.4f} | {s['cleanlab']['precision']:.4f} | "
                     f"{s['cleanlab']['recall']:.4f} | {d['only_ours']:g} / {d['only_cleanlab']:g} | "
                     f"{s['ours_loss_top_k']['precision']:.3f} |")
    sys.stdout.write("\n".join(lines) + "\n")
    if result["sample_data"]:
        s = result["sample_data"]
        sys.stdout.write(f"sample_data ({s['n_planted']} planted of {s['n_images']}): ours P {s['ours']['precision']:.3f} "
                         f"R {s['ours']['recall']:.3f}; cleanlab P {s['cleanlab']['precision']:.3f} "
                         f"R {s['cleanlab']['recall']:.3f}; loss top-K {s['ours_loss_top_k']['recall']:.3f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
