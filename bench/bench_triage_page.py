"""The Model triage page under Streamlit's AppTest (server side, no browser): run by ``bench_triage.py`` in a
process of its own, so that the core bench imports neither Streamlit nor ``inspect_core.ui``.

    .venv/bin/python bench/bench_triage_page.py --n-images N --predictions FILE --workspace DIR --out FILE.json

Builds the same synthetic scan as bench_triage.py (``synthetic.synthetic_scan``; the image files must exist under
--data) and times, on fresh app sessions (one warm-up session first): the first open with the predictions file
(read, score, rank, draw; 24 thumbnails decoded), the rerun after choosing one Given class, the rerun after turning
on "Only flagged labels" (both also decode the thumbnails of the new grid); and ``filter_scores`` alone. With
profiling on, one more session runs with cProfile around the first open and the slower rerun. Writes the seconds,
the peak RSS and the profiles as JSON to --out.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import shutil
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from repo_files import import_file  # noqa: E402
from synthetic import median_s, synthetic_scan  # noqa: E402

grid_support = import_file(REPO / "tests" / "grid_support.py")   # reads the one-element grid's tiles

from inspect_core.model.triage import triage  # noqa: E402
from inspect_core.ui import model_triage as mt  # noqa: E402

PAGE = "pages/5_Model_triage.py"
GIVEN_CLASS = "class_03"          # the class chosen in the Given class filter (about 8% of the images)
STEP_NAMES = {"first": "first open with the predictions file (read, score, rank, draw)",
              "given": f"rerun after Given class = {GIVEN_CLASS}",
              "flagged": "rerun after Only flagged labels on"}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # ru_maxrss is KiB on Linux


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
    assert len(grid_support.tile_ids(at, "di_mt_open_grid")) == 24, "the worst-loss grid is not shown"
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



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=str(REPO / "bench" / ".data" / "gallery"))
    ap.add_argument("--predictions", required=True, help="the predictions file bench_triage.py wrote")
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--out", required=True, help="JSON file for the results")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    root = (Path(args.data) / f"root_{args.n_images}").resolve()
    scan = synthetic_scan(args.n_images, root, Path(args.workspace))
    pred_path = Path(args.predictions)
    found = triage(scan.images, predictions=pred_path,
                   predictions_options={"dataset_classes": list(scan.dataset.classes)}, embedding_findings=False)
    issues = found.issues
    m, _ = median_s(lambda: mt.filter_scores(issues, given=[GIVEN_CLASS], only_flagged=True), args.repeats)
    rows = [(f"logic: filter_scores (given {GIVEN_CLASS} + only flagged)", m)]
    expect = {"n_scored": found.headline["n_scored"],
              "n_given": int((issues["given_label"] == GIVEN_CLASS).sum()),
              "n_given_flagged": len(mt.filter_scores(issues, given=[GIVEN_CLASS], only_flagged=True))}
    found = issues = None      # freed before the app sessions

    import inspect_core
    inspect_core.load_scan = lambda ws: scan      # the app finds the synthetic scan (as in bench_gallery.py)
    profiler = None if args.no_profile else ScriptProfiler()
    timeout_s = max(120.0, args.n_images / 1000.0)
    page_session(scan.dataset.root, pred_path, Path(args.workspace), expect, timeout_s)   # warm imports and caches
    page_runs = max(3, args.repeats)
    sessions = []
    for _ in range(page_runs):
        sessions.append(page_session(scan.dataset.root, pred_path, Path(args.workspace), expect, timeout_s))
        print("page:", {k: round(v, 3) for k, v in sessions[-1].items()}, flush=True)
    medians = {step: statistics.median(s[step] for s in sessions) for step in STEP_NAMES}
    rows += [("page: " + name, medians[step]) for step, name in STEP_NAMES.items()]
    rss_apptest = peak_rss_gib()
    profiles = {}
    if profiler is not None:
        steps = ("first", max(("given", "flagged"), key=lambda s: medians[s]))   # and the slower rerun
        prof = page_session(scan.dataset.root, pred_path, Path(args.workspace), expect, timeout_s, profiler, steps)
        profiles = {step: profile_text(prof["profile_" + step]) for step in steps}
        for text in profiles.values():
            print(text, flush=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "sessions": sessions, "page_runs": page_runs,
                                          "peak_rss_gib_apptest": rss_apptest, "profiles": profiles}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
