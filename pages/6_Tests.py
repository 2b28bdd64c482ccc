"""Tests: run a model test file (slices, metrics, thresholds) against any scored model; open a test's slice, save
the Gallery's filter as a slice, compare with a baseline model, find weak slices."""
from __future__ import annotations

import streamlit as st

from inspect_core.suite import METRICS, SuiteError, load_suite
from inspect_core.suite.compare import compare
from inspect_core.suite.discover import discover
from inspect_core.suite.edit import add_slice, add_test, add_to_suite
from inspect_core.suite.report import display_frame
from inspect_core.suite.runner import slice_rows
from inspect_core.suite.slices import (
    SliceData,
    SliceError,
    gallery_query_to_slice,
    mask_of,
)
from inspect_core.ui import state, widgets
from inspect_core.ui import tests_page as tp
from inspect_core.ui.model_triage import model_view
from inspect_core.ui.text import md_escape

st.set_page_config(page_title="Tests - Dataset Inspector", layout="wide")
st.title("Tests")

scan = state.require_scan()
store = state.store_for(scan)
decisions = store.current()

# -- the test file and the scores -----------------------------------------------------------------------------
tp.apply_pending_suite()
if tp.SUITE_KEY not in st.session_state:
    st.session_state[tp.SUITE_KEY] = tp.default_suite_path(scan.dataset.root)
suite_path = st.text_input("Test file (YAML)", key=tp.SUITE_KEY, **tp.KEEP, placeholder="/path/to/model_tests.yaml",
                           help="Named slices and tests (metric + threshold); the format is in the README, section "
                                "'Model unit tests'. The command line runs the same file: python -m inspect_core "
                                "test FILE ROOT --model ... ").strip()
if note := st.session_state.pop(tp.K + "copy_note", None):
    st.info(md_escape(note))
c1, c2 = st.columns(2)
scores_path = c1.text_input("Model or predictions file", key=tp.SCORES_KEY, **tp.KEEP,
                            help="A model file (TorchScript, .pt2; its preprocessing JSON beside it) or a predictions "
                                 "file (.csv / .parquet / .npy; score's scores.parquet too). Scores are cached in the "
                                 "workspace, as on the Model triage page.").strip()
baseline_path = c2.text_input("Baseline: a previous model or predictions file (optional)", key=tp.BASELINE_KEY,
                              **tp.KEEP,
                              help="max_drop tests compare with it; the comparison below shows both.").strip()
if not suite_path:
    st.info("Type the path of a test file. The sample dataset ships one: sample_data/model_tests.yaml.")
    st.stop()
try:
    suite = load_suite(suite_path)
except SuiteError as exc:
    st.error(md_escape(str(exc)))
    st.stop()
with st.spinner("Scoring (cached in the workspace after the first time)..."):
    result, error = tp.scores_of(scan, scores_path)
    base, base_error = tp.scores_of(scan, baseline_path)
for e in (error, base_error):
    if e:
        st.error(md_escape(e))
if not scores_path:
    st.info("No model yet: only data tests (finding_count, finding_share) can pass; give a model or predictions "
            "file to run the model tests.")

ev, run = tp.run_suite_cached(scan, suite_path, suite, scores_path, result, baseline_path, base, decisions,
                              store.last_id())
results = run.results

# -- results -----------------------------------------------------------------------------------------------------
counts = tp.status_counts(results)
m1, m2, m3 = st.columns(3)
m1.metric("Passed", counts["PASS"])
m2.metric("Warned", counts["WARN"])
m3.metric("Failed", counts["FAIL"])
st.dataframe(display_frame(results), hide_index=True, width="stretch", key=tp.K + "results")

st.subheader("A test's slice")
names = list(results["test"])
tp.reset_on_change(tp.K + "test", (suite_path, scores_path, baseline_path))   # new scores: open the first FAIL
chosen = st.selectbox("Test", names, index=tp.first_failing(results), key=tp.K + "test")
row = results.iloc[names.index(chosen)]
(st.error if row["status"] == "FAIL" else st.warning if row["status"] == "WARN" else st.success)(
    md_escape(f"{row['status']}: {row['test']} ({row['metric']} on slice {row['slice']}, n={row['n']})"
              + (f": {row['reason']}" if row["reason"] else "")))
mask = run.masks.get(row["slice"])
if mask is not None:
    rows = slice_rows(scan.images, mask, ev.score_columns)
    st.caption(md_escape(f"{len(rows)} images in slice {row['slice']}" + (", worst loss first" if
                                                                          "loss" in rows else "")))
    widgets.thumb_grid(scan, rows.head(24), key_prefix=tp.K + "slice", n_cols=8, stat="loss" if "loss" in rows
                       else None, selected_key=tp.K + "open")
    opened = st.session_state.get(tp.K + "open")
    if opened:
        st.markdown(md_escape(f"**{opened}**: what each model sees"))
        for title, path in (("Model", scores_path), ("Baseline", baseline_path)):
            if path:
                st.caption(md_escape(f"{title}: {path}"))
                model_view(scan, tp.preprocess_of(path), opened)

# -- edits: a Gallery filter saved as a slice; a test ---------------------------------------------------------------
with st.expander("Save the Gallery's filter as a slice"):
    families = state.families_for(str(scan.fingerprint), scan.findings)
    query = widgets.filter_widgets(scan.images, list(scan.dataset.classes), families, container=st.container(),
                                   sortable=False)
    spec = gallery_query_to_slice(query)
    if not spec:
        st.caption("The filter is empty (every image): choose labels, splits, checks or a range above.")
    else:
        try:
            n_match = int(mask_of(spec, SliceData(scan.images, ev.score_columns, scan.findings, decisions),
                                  "new").sum())
            st.caption(md_escape(f"{n_match} images match: {spec}"))
        except SliceError as exc:
            st.caption(md_escape(str(exc)))
        slice_name = st.text_input("Slice name", key=tp.K + "slice_name").strip()
        if st.button("Save as slice", key=tp.K + "save_slice", disabled=not slice_name):
            try:
                add_slice(tp.editable_suite(suite_path, scan), slice_name, spec)
                st.session_state[tp.K + "saved"] = f"Slice {slice_name!r} saved."
                st.rerun()
            except (SuiteError, OSError) as exc:
                st.error(md_escape(str(exc)))
    if saved := st.session_state.pop(tp.K + "saved", None):
        st.success(md_escape(saved))

with st.expander("Add a test"):
    t1, t2, t3 = st.columns(3)
    new_name = t1.text_input("Test name", key=tp.K + "new_name").strip()
    new_slice = t2.selectbox("Slice", ["all"] + [s for s in suite.slices if not s.endswith(" (slice)")],
                             key=tp.K + "new_slice")
    metric = t3.selectbox("Metric", list(METRICS), key=tp.K + "new_metric")
    test = {"name": new_name, "slice": new_slice, "metric": metric}
    params = METRICS[metric][1]
    t4, t5, t6 = st.columns(3)
    if "class" in params:
        classes = ev.scores.class_names if ev.scores is not None else list(scan.dataset.classes)
        test["class"] = t4.selectbox("Class", classes, key=tp.K + "new_class")
    if "k" in params:
        test["k"] = int(t4.number_input("k", min_value=1, value=2, key=tp.K + "new_k"))
    if "check" in params:
        test["check"] = t4.text_input("Check or family", key=tp.K + "new_check").strip()
    higher = METRICS[metric][0]
    bound = t5.number_input("Minimum" if higher else "Maximum", value=0.9 if higher else 0.1, key=tp.K + "new_bound")
    test["min" if higher else "max"] = float(bound)
    test["min_support"] = int(t6.number_input("min_support", min_value=0, value=int(suite.defaults["min_support"]),
                                              key=tp.K + "new_support"))
    if st.button("Add test", key=tp.K + "add_test", disabled=not new_name):
        try:
            name = add_test(tp.editable_suite(suite_path, scan), test)
            st.session_state[tp.K + "added"] = f"Test {name!r} added."
            st.rerun()
        except (SuiteError, OSError) as exc:
            st.error(md_escape(str(exc)))
    if added := st.session_state.pop(tp.K + "added", None):
        st.success(md_escape(added))

# -- comparison with the baseline ---------------------------------------------------------------------------------
if ev.scores is not None and ev.baseline is not None:
    st.subheader("Comparison with the baseline")
    cmp_ = compare(suite, ev)
    st.dataframe(cmp_.slices, hide_index=True, width="stretch", key=tp.K + "cmp_slices",
                 column_config={"difference": st.column_config.NumberColumn(format="%+.3f")})
    flips = cmp_.flips
    st.caption(md_escape(f"{int((flips['change'] == 'right -> wrong').sum())} images went right -> wrong, "
                         f"{int((flips['change'] == 'wrong -> right').sum())} wrong -> right (largest loss change "
                         "first)"))
    st.dataframe(flips.head(200), hide_index=True, width="stretch", key=tp.K + "flips")
    if len(flips):
        flip = st.selectbox("Open a flipped image", list(flips["image_id"].head(200)), key=tp.K + "flip")
        for title, path in (("Current model", scores_path), ("Baseline", baseline_path)):
            st.caption(md_escape(f"{title}: {path}"))
            model_view(scan, tp.preprocess_of(path), flip)

# -- slice discovery ----------------------------------------------------------------------------------------------
if ev.scores is not None:
    st.subheader("Weak slices")
    source = (scores_path, tp.file_stamp(scores_path), str(scan.fingerprint))
    if st.button("Find slices where the model is significantly worse", key=tp.K + "discover"):
        st.session_state[tp.DISCOVERY_KEY] = (source, discover(scan.images, ev.scores, scan.findings))
    found = st.session_state.get(tp.DISCOVERY_KEY)
    if found is not None and found[0] == source:
        d = found[1]
        st.caption(md_escape(f"{len(d.proposals)} proposals among {d.n_tested} candidate slices (Benjamini-Hochberg, "
                             f"false-discovery rate 0.05); overall accuracy {d.overall_accuracy:.3f}."))
        for i, prop in enumerate(d.proposals.head(10).itertuples(index=False)):
            a, b = st.columns([5, 1])
            a.text(f"{prop.slice}: n={prop.n}, accuracy {prop.accuracy:.3f}, p={prop.p_value:.2g}, "
                   f"q={prop.q_value:.2g}")
            if b.button("Add as test", key=f"{tp.K}add_prop_{i}"):
                try:
                    name = add_to_suite(tp.editable_suite(suite_path, scan), d.proposals.iloc[i])
                    st.session_state[tp.K + "added"] = f"Test {name!r} added."
                    st.rerun()
                except (SuiteError, OSError) as exc:
                    st.error(md_escape(str(exc)))
