"""The Tests page's logic without its layout: where the test file is, scores of a model or predictions file
(cached per file version), the suite run, and the edits (a Gallery filter saved as a slice, a test added, a
discovery proposal added) made on a writable copy when the test file lies inside the dataset."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from inspect_core.suite.edit import writable_copy

K = "di_tests_"
SUITE_KEY = K + "suite"
SCORES_KEY = K + "scores"
BASELINE_KEY = K + "baseline"
PENDING_SUITE_KEY = K + "pending_suite"      # a new test file path, applied before its text box is drawn
DISCOVERY_KEY = K + "discovery"
KEEP = {"persist_state": "session"}
PREDICTION_SUFFIXES = {".csv", ".parquet", ".pq", ".npy", ".tsv"}
SUITE_NAMES = ("model_tests.yaml", "model_tests.yml")


def default_suite_path(root: Path | str) -> str:
    """A test file beside the dataset (ROOT/model_tests.yaml), else ''."""
    for name in SUITE_NAMES:
        p = Path(root) / name
        if p.is_file():
            return str(p)
    return ""


def is_predictions_file(path: str) -> bool:
    return Path(path).suffix.lower() in PREDICTION_SUFFIXES


def file_stamp(path: str) -> str:
    try:
        s = Path(path).stat()
        return f"{s.st_mtime_ns}-{s.st_size}"
    except OSError:
        return "missing"


@st.cache_resource(show_spinner=False, max_entries=8)
def _scores(path: str, stamp: str, fingerprint: str, _scan):
    from inspect_core.suite.scores import score_file, score_model
    if is_predictions_file(path):
        return score_file(_scan, path)
    return score_model(_scan, path)


def scores_of(scan, path: str):
    """(ScoreResult or None, error text or None) for a model or predictions file; cached per file version."""
    from inspect_core.suite.scores import ScoresError
    if not path:
        return None, None
    p = Path(path).expanduser()
    if not p.is_file():
        return None, f"{path} not found (it is read on this machine)"
    try:
        return _scores(str(p), file_stamp(str(p)), str(scan.fingerprint), scan), None
    except ScoresError as exc:
        return None, str(exc)


def preprocess_of(path: str):
    """The preprocessing of a model file (for "what the model sees"); None for a predictions file or none found."""
    if not path or is_predictions_file(path):
        return None
    from inspect_core.model.preprocess import find_sidecar, read_preprocess
    try:
        side = find_sidecar(path)
        return read_preprocess(side) if side is not None else None
    except Exception:  # noqa: BLE001 - an unreadable sidecar: no model view
        return None


def apply_pending_suite() -> None:
    """Before the test-file box is drawn: point it at the copy an edit was made on."""
    pending = st.session_state.pop(PENDING_SUITE_KEY, None)
    if pending:
        st.session_state[SUITE_KEY] = pending


def editable_suite(suite_path: str, scan) -> Path:
    """The file edits go to: the test file, or its copy in the workspace when it lies inside the dataset. When a
    copy is made, the page switches to it on the next run (with a note)."""
    target = writable_copy(suite_path, scan.dataset.root, scan.workspace)
    if str(target) != str(suite_path):
        st.session_state[PENDING_SUITE_KEY] = str(target)
        st.session_state[K + "copy_note"] = (f"The test file {suite_path} lies inside the dataset, which is never "
                                             f"written into: your edits are in the copy {target}.")
    return target


def status_counts(results) -> dict[str, int]:
    counts = results["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in ("PASS", "WARN", "FAIL")}


def first_failing(results) -> int:
    fails = [i for i, s in enumerate(results["status"]) if s == "FAIL"]
    warns = [i for i, s in enumerate(results["status"]) if s == "WARN"]
    return (fails or warns or [0])[0]


def reset_on_change(widget_key: str, source: tuple) -> None:
    """Forget a widget's value when ``source`` changed since the last run (so its default applies again)."""
    seen_key = widget_key + "_source"
    if st.session_state.get(seen_key) != source:
        st.session_state.pop(widget_key, None)
        st.session_state[seen_key] = source


@st.cache_resource(show_spinner=False, max_entries=4)
def _run(fingerprint: str, suite_key: str, scores_key: str, baseline_key: str, decisions_version: int, _scan,
         _suite, _result, _base, _decisions):
    from inspect_core.suite.runner import evaluation
    ev = evaluation(_scan.images, _scan.findings, _decisions, _result, _base)
    return ev, ev.run(_suite)


def run_suite_cached(scan, suite_path: str, suite, scores_path: str, result, baseline_path: str, base, decisions,
                     decisions_version: int):
    """(Evaluation, SuiteRun), computed again only when the scan, the test file, a scores file or the review
    decisions change (a widget click reruns the page; 50 tests on 1,000,000 images take about a second)."""
    return _run(str(scan.fingerprint), f"{suite_path}:{file_stamp(suite_path)}",
                f"{scores_path}:{file_stamp(scores_path)}:{result is not None}",
                f"{baseline_path}:{file_stamp(baseline_path)}:{base is not None}", int(decisions_version),
                scan, suite, result, base, decisions)
