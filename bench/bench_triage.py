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
  1. the logic alone: ``score_predictions`` (read + align + per-image table), ``model_triage.make_entry``
     (rank_label_issues with confident learning + confusion matrix + image_id positions), ``filter_scores``
     (one given class + only flagged labels), ``per_class_metrics``, ``sanity.baselines``;
  2. the whole Model triage page script under Streamlit's AppTest (server side, no browser), each AppTest
     run on a fresh session with the workspace thumbnails removed: the first open with the predictions file
     (read, score, rank, draw; 24 thumbnails decoded), the rerun after choosing one Given class, the rerun after
     turning on "Only flagged labels" (both also decode the thumbnails of the new grid);
  3. the process's peak RSS (``resource.getrusage``) after the logic and after the AppTest runs.
With profiling on (the default) one more AppTest session runs with cProfile around the first open and around
the slower of the two reruns (the script's thread only: AppTest runs the page in a thread of its own); the top
25 entries of each by cumulative time are saved.

The app is given the synthetic scan as bench_gallery.py does: ``inspect_core.load_scan`` is replaced by a
function returning it, so ``state.require_scan`` finds it for the dataset root.
Writes bench/results/triage_<N>.json and rewrites bench/results/triage.md from every triage_*.json there
(one table per N).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from bench_gallery import make_files, median_s, synthetic_scan  # noqa: E402

from inspect_core.model.sanity import baselines  # noqa: E402
from inspect_core.model.scoring import per_class_metrics, score_predictions  # noqa: E402
from inspect_core.ui import model_triage as mt  # noqa: E402

PAGE = "pages/5_Model_triage.py"
GIVEN_CLASS = "class_03"          # the class chosen in the Given class filter (about 8% of the images)
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


# -- the page under AppTest -------------------------------------------------------------------------
class ScriptProfiler:
    """cProfile around the page script's own thread: AppTest runs each script run in a new thread, which a
    Profile enabled in the calling thread does not see. While ``active`` holds a Profile, every script run is
    profiled into it."""

    def __init__(self) -> None:
        from streamlit.testing.v1 import local_script_runner as lsr
        self.active: cProfile.Profile | None = None
        original = lsr.LocalScriptRunner._run_script_thread
        me = self

        def run_script_thread(runner):
            prof = me.active
            if prof is None:
                return original(runner)
            prof.enable()
            try:
                return original(runner)
            finally:
                prof.disable()
        lsr.LocalScriptRunner._run_script_thread = run_script_thread


def texts(at) -> str:
    return "\n".join(str(e.value) for e in list(at.text) + list(at.caption) + list(at.info) + list(at.error)
                     + list(at.warning))


def page_session(root: Path, pred_path: Path, workspace: Path, expect: dict, timeout_s: float,
                 profiler: ScriptProfiler | None = None, profile_steps: tuple[str, ...] = ()) -> dict:
    """One fresh app session on the Model triage page; seconds of each timed ``at.run()`` (and under
    "profile_<step>" a cProfile.Profile of each of ``profile_steps``)."""
    from streamlit.testing.v1 import AppTest
    shutil.rmtree(workspace / "thumbs", ignore_errors=True)
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=timeout_s)
    at.session_state["di_root"] = str(root)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    at.segmented_control(key="di_mt_source").set_value("Predictions file").run()
    assert not at.exception, at.exception
    out: dict = {}

    def timed(step: str) -> None:
        prof = cProfile.Profile() if profiler is not None and step in profile_steps else None
        if prof is not None:
            profiler.active = prof
        t0 = time.perf_counter()
        try:
            at.run()
        finally:
            out[step] = time.perf_counter() - t0
            if prof is not None:
                profiler.active = None
                out["profile_" + step] = prof
        assert not at.exception, f"{step}: {at.exception}"

    at.text_input(key="di_mt_pred").set_value(str(pred_path))
    timed("first")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics.get("Scored images") == f"{expect['n_scored']:,}", (metrics, texts(at))
    assert len([b for b in at.button if b.label == "Open"]) == 24, "the worst-loss grid is not shown"
    at.multiselect(key="di_mt_f_given").set_value([GIVEN_CLASS])
    timed("given")
    assert f"{expect['n_given']:,} scored images match" in texts(at), "the Given class filter did not apply"
    at.toggle(key="di_mt_f_flag").set_value(True)
    timed("flagged")
    assert f"{expect['n_given_flagged']:,} scored images match" in texts(at), "Only flagged labels did not apply"
    return out


def profile_text(prof: cProfile.Profile, n: int = 25) -> str:
    """The top ``n`` entries by cumulative time (the first ~9 are Streamlit's script runner around the page)."""
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(n)
    lines = buf.getvalue().strip().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    head = next((ln.strip() for ln in lines if "function calls" in ln), "")
    return "\n".join([head, ""] + lines[start:])


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

    # 1. the logic alone
    images = scan.images
    m, _ = median_s(lambda: score_predictions(pred_path, images, dataset_classes=classes), args.repeats)
    rows.append(("logic: score_predictions (read Parquet, align by image_id, per-image table)", m))
    result = score_predictions(pred_path, images, dataset_classes=classes)
    m, _ = median_s(lambda: mt.make_entry(result, "bench"), args.repeats)
    rows.append(("logic: make_entry (rank_label_issues + confusion matrix + positions)", m))
    entry = mt.make_entry(result, "bench")
    issues = entry["issues"]
    m, _ = median_s(lambda: mt.filter_scores(issues, given=[GIVEN_CLASS], only_flagged=True), args.repeats)
    rows.append((f"logic: filter_scores (given {GIVEN_CLASS} + only flagged)", m))
    m, _ = median_s(lambda: per_class_metrics(result.table, result.class_names), args.repeats)
    rows.append(("logic: per_class_metrics", m))
    m, _ = median_s(lambda: baselines(result.table, result.class_names), args.repeats)
    rows.append(("logic: sanity.baselines", m))
    for name, sec in rows:
        print(f"{sec:8.3f} s  {name}", flush=True)
    rss_logic = peak_rss_gib()
    flagged = set(issues.loc[issues["cl_issue"], "image_id"].astype(str))
    expect = {"n_scored": int(result.table["error"].isna().sum()),
              "n_given": int((issues["given_label"] == GIVEN_CLASS).sum()),
              "n_given_flagged": len(mt.filter_scores(issues, given=[GIVEN_CLASS], only_flagged=True))}
    quality = {"n_flagged": len(flagged), "n_planted": planted["n_flipped"],
               "planted_found": len(flagged & planted["flipped_ids"])}
    del entry, issues, result

    # 2. the page under AppTest; the app finds the synthetic scan (as in bench_gallery.py)
    import inspect_core
    inspect_core.load_scan = lambda ws: scan
    profiler = None if args.no_profile else ScriptProfiler()
    timeout_s = max(120.0, args.n_images / 1000.0)
    page_session(scan.dataset.root, pred_path, workspace, expect, timeout_s)   # warm imports and caches
    page_runs = max(3, args.repeats)
    sessions = []
    for _ in range(page_runs):
        sessions.append(page_session(scan.dataset.root, pred_path, workspace, expect, timeout_s))
        print("page:", {k: round(v, 3) for k, v in sessions[-1].items()}, flush=True)
    medians = {step: statistics.median(s[step] for s in sessions) for step in STEP_NAMES}
    rows += [("page: " + name, medians[step]) for step, name in STEP_NAMES.items()]
    rss_apptest = peak_rss_gib()

    profiles = {}
    if profiler is not None:
        steps = ("first", max(("given", "flagged"), key=lambda s: medians[s]))   # and the slower rerun
        prof = page_session(scan.dataset.root, pred_path, workspace, expect, timeout_s, profiler, steps)
        profiles = {step: profile_text(prof["profile_" + step]) for step in steps}
        for text in profiles.values():
            print(text, flush=True)

    total_s = time.perf_counter() - t_start
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    command = f".venv/bin/python bench/bench_triage.py --n-images {args.n_images} --repeats {args.repeats}"
    record = {
        "n_images": args.n_images, "repeats": args.repeats, "page_runs": page_runs, "command": command,
        "machine": f"{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}",
        "data": (f"{args.n_images:,} images, {len(classes)} classes; predictions Parquet "
                 f"{pred_path.stat().st_size / 2**20:.0f} MiB; model accuracy {planted['accuracy_vs_true']:.1%} "
                 f"against the true classes, {planted['accuracy_vs_given']:.1%} against the given labels; "
                 f"{quality['n_planted']:,} planted flips, {quality['n_flagged']:,} confident-learning flags of "
                 f"which {quality['planted_found']:,} planted (setup {setup_s:.0f} s, not timed)"),
        "setup_s": setup_s, "total_s": total_s, "rows": rows, "sessions": sessions,
        "peak_rss_gib_logic": rss_logic, "peak_rss_gib_apptest": rss_apptest, "quality": quality,
        "profiles": profiles,
    }
    (results_dir / f"triage_{args.n_images}.json").write_text(json.dumps(record, indent=1) + "\n")
    text = write_markdown(results_dir, results_dir / "triage.md")
    sys.stdout.write(text)
    print(f"total {total_s:.0f} s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
