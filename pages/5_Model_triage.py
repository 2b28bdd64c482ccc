"""Model triage: load your trained model (or a predictions file), score every image, fix the worst labels."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from inspect_core.model.models import FORM_NAMES, TRUST_WARNING, ModelLoadError
from inspect_core.model import pipeline
from inspect_core.model.predictions import PredictionsError
from inspect_core.ui import charts
from inspect_core.ui import model_triage as mt
from inspect_core.ui import state, viewer, widgets
from inspect_core.ui.text import md_escape

st.set_page_config(page_title="Model triage - Dataset Inspector", layout="wide")
st.title("Model triage")

scan = state.require_scan()
store = state.store_for(scan)
classes = list(scan.dataset.classes)

# -- task: a dataset with boxes is triaged as detection too (a detector's boxes against the annotated ones) --------
if scan.dataset.has_boxes:
    TASKS = ("Classification", "Detection (boxes)")
    if mt.K + "task" not in st.session_state and st.query_params.get("task") == "detection":
        st.session_state[mt.K + "task"] = TASKS[1]          # a link to ?task=detection opens the detection section
    task = st.radio("Task", TASKS, horizontal=True, key=mt.K + "task", **mt.KEEP,
                    help="Detection holds a detector's boxes (a COCO results JSON, a YOLO prediction folder or a "
                         "CSV/Parquet table) against the dataset's boxes: the worst images, mAP, per-box decisions.")
    if task == TASKS[1]:
        from inspect_core.ui import detection_triage
        detection_triage.render(scan, store)
        st.stop()

# -- source: a model file or a predictions file -------------------------------------------------------
# Every input below keeps its value across a visit to another page (mt.KEEP): the results stay shown.
# The form collapses once there are scores, so the results start at the top of the page.
scored = mt.RESULT_KEY in st.session_state
with st.expander("Model or predictions file" + (" (scored: open to change)" if scored else ""), expanded=not scored):
    source = st.segmented_control("Scores from", ["Model file", "Predictions file"], default="Model file",
                                  key=mt.K + "source", **mt.KEEP) or "Model file"
    model = None
    spec = None
    if source == "Model file":
        st.warning(TRUST_WARNING)
        model_path = st.text_input("Model file (TorchScript, .pt2, or state dict)", key=mt.K + "model",
                                   placeholder="/path/to/model.pt2", **mt.KEEP).strip()
        c0, c1, c2 = st.columns(3)
        form = mt.MODEL_FORMS[c0.selectbox("Model form", list(mt.MODEL_FORMS), key=mt.K + "form_kind", **mt.KEEP,
                                           help="What the file is. Auto: a state dict when a factory is given, a "
                                                "torch.export program for a .pt2 name, else TorchScript. A file "
                                                "whose contents are another form is refused unread: a state dict "
                                                "is never loaded as a program.")]
        factory = c1.text_input("Factory for a state dict (module:function)", key=mt.K + "factory",
                                placeholder="mypkg.models:make_model", **mt.KEEP).strip()
        pre_path = c2.text_input("Preprocessing JSON (optional; default: model.preprocess.json beside the model)",
                                 key=mt.K + "preprocess", **mt.KEEP).strip()
        if not model_path:
            st.info("Type the path of your trained model file to score every image, or switch to a predictions file. "
                    "The sample dataset ships one: sample_data/model/model.pt2.")
            st.stop()
        if not Path(model_path).expanduser().exists():     # a folder, pipe or device: load_model says which
            st.error(md_escape(f"Model file {model_path} not found. Check the path (it is read on this machine)."))
            st.stop()
        spec = mt.spec_for_model(model_path, pre_path, classes)
        if spec is None:
            st.stop()
        try:
            model = mt.get_model(model_path, spec, factory or None, form)
        except ModelLoadError as exc:
            st.error(md_escape(str(exc)))
            st.stop()
        st.caption(md_escape(f"Loaded a {FORM_NAMES[model.kind]} on {model.device}, {model.n_classes} classes "
                             f"({model.form_reason})"))
        decoder = mt.decoder_choice(model)
        key = mt.source_key("model", model.cache_key(), spec.cache_key(), scan.fingerprint, decoder)
        entry = st.session_state.get(mt.RESULT_KEY)
        if entry is None or entry["key"] != key:
            saved = pipeline.cached_scores(model, scan.dataset.root, scan.images, scan.workspace, decoder=decoder)
            if saved is not None:                       # scored before: reopen at once
                mt.remember_result(saved, key)
                st.rerun()
            if st.session_state.pop(mt.K + "cancel_flag", False):
                st.warning("Scoring cancelled; nothing was saved. Score again when ready.")
            if st.button("Score every image", type="primary", key=mt.K + "score"):
                result = mt.run_scoring(model, scan, decoder=decoder)
                if result is not None:
                    mt.remember_result(result, key)
                    st.rerun()
            st.stop()
    else:
        pred_path = st.text_input("Predictions file (CSV / Parquet with image_id and per-class columns, or NPY)",
                                  key=mt.K + "pred", **mt.KEEP).strip()
        if not pred_path:
            st.info("Type the path of a predictions file: image_id plus one probability or logit column per class "
                    "(or a probs / logits list column). No model is needed.")
            st.stop()
        try:
            key = mt.source_key("pred", pred_path, Path(pred_path).expanduser().stat().st_mtime_ns
                                if Path(pred_path).expanduser().exists() else 0, scan.fingerprint)
            entry = st.session_state.get(mt.RESULT_KEY)
            if entry is None or entry["key"] != key:
                mt.remember_result(mt.triage_predictions(pred_path, scan, classes), key)
        except PredictionsError as exc:
            st.error(md_escape(str(exc)))
            st.stop()

entry = st.session_state[mt.RESULT_KEY]
if "triage" not in entry:  # an entry kept by an older session: add what is now computed once per result
    entry = mt.make_entry(entry["result"], entry["key"])
    st.session_state[mt.RESULT_KEY] = entry
splits_present = sorted(str(v) for v in entry["result"].table["split"].dropna().unique())
chosen = mt.label_options(splits_present, entry["result"].embeddings is not None)
if entry.get("label_options") != chosen:        # in-sample splits or the probe changed: rank the labels again
    with st.spinner("Ranking label issues..."):
        entry = mt.make_entry(entry["result"], entry["key"], *chosen)
    st.session_state[mt.RESULT_KEY] = entry
result, issues = entry["result"], entry["issues"]
table = result.table
matrix = entry["confusion"]        # computed once per scored result, not per rerun
positions = entry["positions"]

# -- headline ---------------------------------------------------------------------------------------
head = entry["headline"]
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Scored images", f"{head['n_scored']:,}")
m2.metric("Errors", f"{head['n_errors']:,}")
m3.metric("Accuracy", "-" if head["accuracy"] is None else f"{head['accuracy']:.1%}")
m4.metric("Mean loss", "-" if head["mean_loss"] is None else f"{head['mean_loss']:.3f}")
m5.metric("Confident-learning flags", f"{head['n_flagged']:,}")
if result.from_cache:
    st.caption("Scores reopened from the workspace cache.")
decoded_by = mt.decoder_caption(result.source)
if decoded_by:
    st.caption(decoded_by)
for note in result.notes:
    (st.warning if note.startswith("none of the") else st.caption)(md_escape(note))
for note in entry.get("label_notes", []):
    st.caption(md_escape(note))
mt.model_problem_notes(entry["model_problems"])     # classes the model never predicts: not flagged as label errors

decisions = store.current()      # read once per run: both grids mark the images already decided
tab_worst, tab_conf, tab_class, tab_sanity, tab_errors = st.tabs(
    ["Worst losses", "Confusion matrix", "Per class", "Sanity checks", "Unscored images"])

with tab_worst:
    f1, f2, f3, f4 = st.columns(4)
    given = f1.multiselect("Given class", result.class_names, key=mt.K + "f_given")
    predicted = f2.multiselect("Predicted class", result.class_names, key=mt.K + "f_pred")
    split_opts = sorted(str(s) for s in issues["split"].dropna().unique())
    splits = f3.multiselect("Split", split_opts, key=mt.K + "f_split")
    pairs = charts.confusion_points(matrix)
    pairs = pairs[(pairs["given"] != pairs["predicted"]) & (pairs["count"] > 0)]
    pair_opts = [mt.ANY] + [f"{g} -> {p} ({c})" for g, p, c in pairs.itertuples(index=False)]
    pair_choice = f4.selectbox("Confusion pair (given -> predicted)", pair_opts, key=mt.K + "f_pair")
    g1, g2, g3, g4 = st.columns(4)
    only_flagged = g1.toggle("Only flagged labels", key=mt.K + "f_flag",
                             help="Confident learning estimates from the model's probabilities how many labels of "
                                  "each class are wrong, and flags that many: those least likely under the label "
                                  "noise it estimated. A class the model never predicts is not flagged: that is a "
                                  "model problem, named above the tabs.")
    only_wrong = g2.toggle("Only mispredicted", key=mt.K + "f_wrong")
    hide_decided = g3.toggle("Hide decided", key=mt.K + "f_undecided",
                             help="Leave out images that already have a relabel, remove or keep decision.")
    n_show = g4.selectbox("Images shown", [24, 48, 96], key=mt.K + "f_n")
    pair = None
    if pair_choice != mt.ANY:
        idx = pair_opts.index(pair_choice) - 1
        pair = (str(pairs.iloc[idx]["given"]), str(pairs.iloc[idx]["predicted"]))
    rows = mt.filter_scores(issues, given=given, predicted=predicted, splits=splits, pair=pair,
                            only_flagged=only_flagged, only_wrong=only_wrong)
    if hide_decided:
        rows = rows[~rows["image_id"].isin(set(decisions["image_id"]))]
    st.text(f"{len(rows):,} scored images match; worst loss first")
    shown = rows.head(int(n_show))
    widgets.bulk_bar(scan, store, rows["image_id"].to_numpy(dtype=object), shown["image_id"].tolist(),
                     key=mt.K + "bulk")
    mt.worst_grid(scan, result, shown, positions=positions, decisions=decisions)

with tab_conf:
    st.caption("Rows: given label; columns: predicted class. Click a cell to see its images.")
    if "confusion_figure" not in entry:     # built once per scored result (0.3-1.3 s a rerun at 100,000 rows)
        entry["confusion_figure"] = charts.confusion_figure(matrix)
    event = st.plotly_chart(entry["confusion_figure"], on_select="rerun", selection_mode="points",
                            key=mt.K + "confusion")
    cell = charts.selected_cell(event)
    cell_rows = None
    if cell is not None:
        cell_rows = mt.filter_scores(issues, pair=cell)
        st.text(f"given {cell[0]} -> predicted {cell[1]}: {len(cell_rows)} images")
        mt.worst_grid(scan, result, cell_rows.head(48), key_prefix=mt.K + "cell_open", positions=positions,
                      decisions=decisions)
    st.dataframe(matrix, width="stretch")

with tab_class:
    st.dataframe(entry["per_class"], hide_index=True, width="stretch")

with tab_sanity:
    mt.sanity_panel(result, entry["baselines"], mt.embedding_findings_of(entry, scan.workspace), model=model,
                    scan=scan, alarms=entry["class_alarms"])

with tab_errors:
    bad = table[table["error"].notna()][["image_id", "label", "split", "error"]]
    if bad.empty:
        st.text("Every image was scored.")
    else:
        st.dataframe(bad, hide_index=True, width="stretch")

# -- the opened image (from either grid): the viewer, stepping through that grid's list with the keys -----------
selected = st.session_state.get(mt.SELECTED_KEY)
if selected:
    listed = rows["image_id"]
    if cell_rows is not None and not listed.eq(selected).any():
        listed = cell_rows["image_id"]
    viewer.image_detail(scan, selected, store, key_prefix=mt.K + "viewer", ordered_ids=listed.tolist(),
                        selected_key=mt.SELECTED_KEY, suggested_label=mt.suggested_label_of(issues),
                        header=mt.viewer_header(scan, spec, result, issues, positions))
