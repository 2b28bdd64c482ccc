"""Model triage speed on a predictions file for 100,000 (or 1,000,000) images (server side, no browser).

    .venv/bin/python bench/bench_triage.py [--n-images 100000] [--repeats 5] [--no-profile]

Builds the synthetic scan of bench_gallery.py (``synthetic_scan``: N images, 20 imbalanced classes, splits
80/10/10; image files are hard links to 64 real 640x480 JPEGs under bench/.data/gallery/, shared with that
benchmark, so the worst-loss grid really decodes thumbnails) and a predictions file (Parquet: image_id plus one
prob_<class> column per class). The probabilities come from a seeded Dirichlet model: every image has a true
class (its label, except ~5% planted label flips whose true class is another one); the model puts a Dirichlet
peak of random sharpness on the true class 87% of the time and on a wrong class otherwise (half the time the
"next" class, a confusable neighbour), so its top class is the true one ~85% of the time. Then it times, as
the median of --repeats runs:
  1. the logic alone, as the CLI and the page run it (``inspect_core.model.triage``): ``score`` with the
     predictions file (read + align + per-image table), then ``triage`` on those scores (label issues with
     confident learning, metrics: headline + per class + confusion matrix, sanity: baselines + per-class alarms),
     and each of triage's steps (``TriageResult.timings_s``);
  2. the whole Model triage page script under Streamlit's AppTest (server side, no browser), in a process of
     its own (``bench_triage_page.py``: this script imports neither Streamlit nor ``inspect_core.ui``), each
     AppTest run on a fresh session with the workspace thumbnails removed: the first open with the predictions
     file (read, score, rank, draw; 24 thumbnails decoded), the rerun after choosing one Given class, the rerun
     after turning on "Only flagged labels" (both also decode the thumbnails of the new grid); and the page's
     ``filter_scores`` (one given class + only flagged labels) alone;
  3. the peak RSS (``resource.getrusage``) of this process after the logic and of the page process.
With profiling on (the default) one more AppTest session runs with cProfile around the first open and around
the slower of the two reruns (the script's thread only: AppTest runs the page in a thread of its own); the top
25 entries of each by cumulative time are saved. ``--no-page`` times the logic alone.

The app is given the synthetic scan as bench_gallery.py does: ``inspect_core.load_scan`` is replaced by a
function returning it, so ``state.require_scan`` finds it for the dataset root.
Writes bench/results/triage_<N>.json and rewrites bench/results/triage.md from every triage_*.json there
(one table per N).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from synthetic import make_files, median_s, synthetic_scan  # noqa: E402

from inspect_core.model.triage import score, triage  # noqa: E402

GIVEN_CLASS = "class_03"          # the class chosen in the page's Given class filter (bench_triage_page.py)
BUDGET_S = 1.0                    # a page step slower than this is reported as slow
STEP_NAMES = {"first": "first open with the predictions file (read, score, rank, draw)",
              "given": f"rerun after Given class = {GIVEN_CLASS}",
              "flagged": "rerun after Only flagged labels on"}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # ru_maxrss is KiB on Linux


def synthetic_predictions(images: pd.DataFrame, classes: list[str], path: Path, *, seed: int = 1,
                          peak_on_true: float = 0.87, flip_rate: float = 0.05) -> dict:
    """Write a Parquet predictions file for ``images`` (image_id, prob_<class>); returns what was planted.

    True class = the given label, except a ``flip_rate`` share of images whose true class is another one
    (planted label flips). The model's Dirichlet peak is on the true class with probability ``peak_on_true``,
    otherwise on the true class's neighbour (half the time) or a random other class; an unsharp peak is sometimes
    not the top class, so the model is right ~85% of the time.
    """
    rng = np.random.default_rng(seed)
    n, c = len(images), len(classes)
    index = {name: k for k, name in enumerate(classes)}
    given = np.array([index[str(v)] for v in images["label"]], dtype=np.int64)
    flip = rng.random(n) < flip_rate
    true = given.copy()
    true[flip] = (given[flip] + rng.integers(1, c, int(flip.sum()))) % c
    right = rng.random(n) < peak_on_true
    other = np.where(rng.random(n) < 0.5, 1, rng.integers(1, c, n))
    peak = np.where(right, true, (true + other) % c)
    alpha = np.full((n, c), 0.2)
    alpha[np.arange(n), peak] += 1.0 + rng.gamma(3.0, 3.0, n)     # peak sharpness varies: some unsure images
    g = rng.gamma(alpha).astype(np.float64)
    probs = (g / g.sum(axis=1, keepdims=True)).astype(np.float32)
    frame = pd.DataFrame(probs, columns=[f"prob_{name}" for name in classes])
    frame.insert(0, "image_id", images["image_id"].astype(str).to_numpy())
    frame.to_parquet(path, index=False)
    pred = probs.argmax(axis=1)
    return {"flipped_ids": set(images["image_id"].astype(str).to_numpy()[flip]),
            "accuracy_vs_true": float((pred == true).mean()), "accuracy_vs_given": float((pred == given).mean()),
            "n_flipped": int(flip.sum())}


# -- report ------------------------------------------------------------------------------------------
def write_markdown(results_dir: Path, out: Path) -> str:
    """triage.md from every triage_<N>.json in ``results_dir``, smallest N first."""
    runs = []
    for p in results_dir.glob("triage_*.json"):
        try:
            runs.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    runs.sort(key=lambda r: r["n_images"])
    lines = ["# Model triage speed on a predictions file", "",
             "Server side (no browser): the page logic alone, and the whole page script under Streamlit's AppTest. "
             "Written by `bench/bench_triage.py` (its docstring says how the data are made). "
             f"A page step over {BUDGET_S:g} s is marked slow.", ""]
    for r in runs:
        lines += [f"## {r['n_images']:,} images", "",
                  f"Command: `{r['command']}`  ", f"Machine: {r['machine']}; total run time {r['total_s']:.0f} s.  ",
                  f"Data: {r['data']}  ",
                  f"Median of {r['repeats']} runs (AppTest rows: median of {r['page_runs']} fresh sessions after one "
                  f"warm-up session). Peak RSS: {r['peak_rss_gib_logic']:.2f} GiB after the logic, "
                  f"{r['peak_rss_gib_apptest']:.2f} GiB after the AppTest runs.", "",
                  "| what | median (s) |", "|---|---:|"]
        for name, sec in r["rows"]:
            slow = " (slow)" if name.startswith("page") and sec > BUDGET_S else ""
            lines.append(f"| {name} | {sec:.3f}{slow} |")
        lines.append(f"| peak RSS after the AppTest runs (GiB) | {r['peak_rss_gib_apptest']:.2f} |")
        for step, prof in (r.get("profiles") or {}).items():
            lines += ["", f"cProfile of the page step \"{STEP_NAMES[step]}\" (one more session), top 25 by "
                          "cumulative time (the script thread only; the first ~9 rows are Streamlit's runner "
                          "around the page):", "", "```", prof, "```"]
        lines.append("")
    text = "\n".join(lines)
    out.write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=str(REPO / "bench" / ".data" / "gallery"),
                    help="where the hard-linked image files live (shared with bench_gallery.py)")
    ap.add_argument("--results", default=str(REPO / "bench" / "results"))
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile session")
    ap.add_argument("--no-page", action="store_true", help="time the logic alone (no AppTest sessions)")
    args = ap.parse_args()
    t_start = time.perf_counter()

    root = Path(args.data) / f"root_{args.n_images}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-triage-"))
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
    workspace = tmp / "ws"
    t0 = time.perf_counter()
    scan = synthetic_scan(args.n_images, root.resolve() if root.exists() else root, workspace)
    make_files(root, scan.images["image_id"].tolist())
    scan.dataset.root = root.resolve()
    classes = list(scan.dataset.classes)
    pred_path = tmp / "predictions.parquet"
    planted = synthetic_predictions(scan.images, classes, pred_path)
    setup_s = time.perf_counter() - t0
    print(f"setup {setup_s:.1f} s: {args.n_images:,} images, predictions {pred_path.stat().st_size / 2**20:.0f} MiB; "
          f"model accuracy {planted['accuracy_vs_true']:.1%} (true), {planted['accuracy_vs_given']:.1%} (given labels)",
          flush=True)
    rows: list[tuple[str, float]] = []

    # 1. the logic alone: what the CLI and the page call
    images = scan.images
    options = {"dataset_classes": classes}
    m, _ = median_s(lambda: score(images, predictions=pred_path, predictions_options=options), args.repeats)
    rows.append(("logic: score with the predictions file (read Parquet, align by image_id, per-image table)", m))
    scores = score(images, predictions=pred_path, predictions_options=options)
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        found = triage(images, scores=scores, embedding_findings=False)
        runs.append((time.perf_counter() - t0, found.timings_s))
    rows.append(("logic: triage on the scores (label issues + metrics + baselines + alarms)",
                 statistics.median(r[0] for r in runs)))
    for step in ("label_issues", "metrics", "sanity"):
        rows.append((f"logic: triage step {step}", statistics.median(r[1][step] for r in runs)))
    for name, sec in rows:
        print(f"{sec:8.3f} s  {name}", flush=True)
    rss_logic = peak_rss_gib()
    issues = found.issues
    flagged = set(issues.loc[issues["cl_issue"], "image_id"].astype(str))
    quality = {"n_flagged": len(flagged), "n_planted": planted["n_flipped"],
               "planted_found": len(flagged & planted["flipped_ids"])}
    del found, issues, scores

    # 2. the page under AppTest, in a process of its own
    page = {"rows": [], "sessions": [], "page_runs": 0, "peak_rss_gib_apptest": float("nan"), "profiles": {}}
    if not args.no_page:
        page_json = tmp / "page.json"
        cmd = [sys.executable, str(HERE / "bench_triage_page.py"), "--n-images", str(args.n_images),
               "--repeats", str(args.repeats), "--data", str(args.data), "--predictions", str(pred_path),
               "--workspace", str(workspace), "--out", str(page_json)] + (["--no-profile"] if args.no_profile else [])
        subprocess.run(cmd, check=True)
        page = json.loads(page_json.read_text())
        rows += [tuple(r) for r in page["rows"]]

    total_s = time.perf_counter() - t_start
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    command = (f".venv/bin/python bench/bench_triage.py --n-images {args.n_images} --repeats {args.repeats}"
               + (" --no-page" if args.no_page else ""))
    record = {
        "n_images": args.n_images, "repeats": args.repeats, "page_runs": page["page_runs"], "command": command,
        "machine": f"{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "data": (f"{args.n_images:,} images, {len(classes)} classes; predictions Parquet "
                 f"{pred_path.stat().st_size / 2**20:.0f} MiB; model accuracy {planted['accuracy_vs_true']:.1%} "
                 f"against the true classes, {planted['accuracy_vs_given']:.1%} against the given labels; "
                 f"{quality['n_planted']:,} planted flips, {quality['n_flagged']:,} confident-learning flags of "
                 f"which {quality['planted_found']:,} planted (setup {setup_s:.0f} s, not timed)"),
        "setup_s": setup_s, "total_s": total_s, "rows": rows, "sessions": page["sessions"],
        "peak_rss_gib_logic": rss_logic, "peak_rss_gib_apptest": page["peak_rss_gib_apptest"], "quality": quality,
        "profiles": page["profiles"],
    }
    (results_dir / f"triage_{args.n_images}.json").write_text(json.dumps(record, indent=1) + "\n")
    text = write_markdown(results_dir, results_dir / "triage.md")
    sys.stdout.write(text)
    print(f"total {total_s:.0f} s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
