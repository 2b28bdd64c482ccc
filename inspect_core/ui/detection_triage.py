"""The detection section of Model triage: a detector's boxes against the dataset's boxes, the worst images, the
metrics, per-box decisions and the corrected exports.

``render(scan, store)`` draws it (the Model triage page calls it for its detection task). Computing
is apart from drawing: ``triage_detections`` runs once per (scan fingerprint, predictions file fingerprint) and
``prepare_view`` once per result (``st.cache_resource``: one shared, read-only object, as ``state`` holds scans,
so a rerun does not unpickle a copy of a table with millions of boxes). Filters and lookups are numpy on
precomputed codes. Boxes are drawn on the display image with PIL: annotations solid, predictions dashed with
their score.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from inspect_core.detection.decisions import (
    BOX_ACTIONS,
    BOX_COLUMNS,
    BoxDecisionStore,
    key_id,
    same_box,
)
from inspect_core.thumbs import image_bytes
from inspect_core.detection.view import (
    SIZES,
    DetectionView,
    boxes_of,
    boxes_of_many,
    cell_images,
    filter_images,
    predictions_fingerprint,
    prepare_view,
)
from inspect_core.review import ReviewError
from inspect_core.ui.detection_drawing import (
    draw_detections,
    image_with_boxes,
    is_crowd,
    pr_figure,
    short_key,
)
from inspect_core.ui import tile_grid
from inspect_core.ui.charts import confusion_figure, selected_cell
from inspect_core.ui.text import md_escape

log = logging.getLogger(__name__)

K = "di_det_"
PATH_KEY = K + "pred_path"           # the predictions path, kept across pages (widget values are not)
SELECTED_KEY = K + "selected"        # the opened image
VIEW_DEFAULTS = {"n_images": 12, "n_cols": 4, "tile_side_px": 320, "detail_side_px": 800, "min_score": 0.3,
                 "errors_shown": 1000}
JPEG_QUALITY = 82        # the drawn pictures sent to the browser (PNG of a 320 px photo is 5-10 x the bytes)
PICTURES_KEPT = 256      # drawn pictures kept per view (tiles and details)



# -- computing -------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_triage(root: str, fmt: str, scan_fingerprint: str, pred_path: str, pred_fingerprint: str, _scan):
    from inspect_core.detection import triage_detections
    result = triage_detections(_scan, pred_path)
    return result, prepare_view(result, codes=True)   # box codes too: the first filter is quick


@st.cache_resource(show_spinner=False, max_entries=2)
def _cached_detector_run(root: str, scan_fingerprint: str, model_path: str, model_stamp: str, sidecar: str,
                         sidecar_stamp: str, device: str, _scan):
    """Run a detector model file over the dataset and triage its boxes (once per model / sidecar version)."""
    from inspect_core.model.preprocess import read_preprocess
    from inspect_core.model.tasks.detection import load_detector, run_detector
    spec = read_preprocess(sidecar)
    model = load_detector(model_path, spec, device=device)
    result, _scores = run_detector(_scan.dataset, model)
    return result, prepare_view(result, codes=True)   # box codes too: the first filter is quick


def _stamp(path: Path) -> str:
    st_ = path.stat()
    return f"{st_.st_size}:{st_.st_mtime_ns}"


def _detector_input(scan):
    """The detector model form (model file, its sidecar, device, a Run button): (result, view) once run, else None."""
    from inspect_core.model.preprocess import find_sidecar, sidecar_name
    default = st.session_state.get(K + "model_path")
    if default is None:
        guess = Path(scan.dataset.root) / "model" / "detector.ts.pt"
        default = str(guess) if guess.is_file() else ""
    c1, c2, c3 = st.columns([4, 3, 1])
    path = c1.text_input("Detector model file (TorchScript or .pt2; torchvision-style boxes, labels, scores)",
                         value=default, key=K + "model_input").strip()
    st.session_state[K + "model_path"] = path
    side = c2.text_input("Its preprocessing sidecar (empty: the one beside the model)", key=K + "sidecar_input").strip()
    device = c3.selectbox("Device", ["auto", "cpu", "cuda"], key=K + "device")
    if not path:
        st.info("Type the path of a detector model file; its sidecar JSON (the classifiers' preprocessing format "
                "with \"task\": \"detection\") gives the input size, resize and class names.")
        return None
    model_path = Path(path).expanduser()
    if not model_path.is_file():
        st.error(md_escape(f"Detector model file {path} not found (it is read on this machine)."))
        return None
    sidecar = Path(side).expanduser() if side else find_sidecar(model_path)
    if sidecar is None or not sidecar.is_file():
        st.error(md_escape(f"No preprocessing sidecar for {model_path.name}: put {sidecar_name(model_path)} beside "
                           "it or type its path."))
        return None
    key = (str(scan.dataset.root), str(scan.fingerprint), str(model_path.resolve()), _stamp(model_path),
           str(sidecar.resolve()), _stamp(sidecar), device)
    if st.session_state.get(K + "model_run") != key and not st.button("Run the detector", key=K + "run"):
        st.caption("Runs the model over every image of the dataset once; the result is kept for this model version.")
        return None
    from inspect_core.detection import PredictionsError
    from inspect_core.model.models import ModelLoadError
    from inspect_core.model.preprocess import PreprocessError
    from inspect_core.model.tasks.detection import DetectorOutputError
    try:
        with st.spinner(f"Running {model_path.name} over the dataset..."):
            out = _cached_detector_run(*key, scan)
    except (ModelLoadError, PreprocessError, DetectorOutputError, PredictionsError, ValueError, OSError) as exc:
        st.error(md_escape(f"Could not run the detector {model_path.name}: {exc}"))
        return None
    st.session_state[K + "model_run"] = key
    return out


def view_of(result) -> DetectionView:
    """The view of a result given by the caller, prepared once and kept on the result itself (an id-keyed cache
    could hand a view to another result that reuses a freed id)."""
    view = getattr(result, "_di_view", None)
    if view is None or view.result is not result:
        view = prepare_view(result)
        result._di_view = view
    return view


# -- the section -------------------------------------------------------------------------------------
def _predictions_input(scan) -> str:
    default = st.session_state.get(PATH_KEY)
    if default is None:
        guess = Path(scan.dataset.root) / "detections.json"
        default = str(guess) if guess.is_file() else ""
    path = st.text_input("Detector predictions (COCO results JSON, YOLO prediction folder, or CSV / Parquet table)",
                         value=default, key=K + "pred_input").strip()
    st.session_state[PATH_KEY] = path
    return path


@dataclass(frozen=True)
class _Picture:
    """An image drawn with its boxes, as JPEG (``data``), for the tile grid and the detail."""
    data: bytes
    ok: bool
    reason: str
    n_crowd: int


def drawn_pictures(scan, view, result, image_ids: list[str], min_score: float, side_px: int, decided: dict,
                   version: int) -> dict[str, _Picture]:
    """{image_id: its picture with boxes}: drawn once per (image, threshold, size, decisions version) and kept on
    the view (the last ``PICTURES_KEPT``), so a rerun (a filter, a tab, a new session) does not draw again."""
    cache = view.memo("pictures", OrderedDict)
    key = {i: (i, round(float(min_score), 4), int(side_px), int(version)) for i in image_ids}
    missing = [i for i in image_ids if key[i] not in cache]
    if missing:
        tiles = boxes_of_many(view, result, missing)
        for image_id in missing:
            ann, pred = tiles[image_id]
            mine = {b: decided[b] for b in set(ann["box_key"]) | set(pred["box_key"]) if b in decided}
            img, reason = image_with_boxes(scan, image_id, ann, pred, min_score, int(side_px), mine)
            cache[key[image_id]] = _Picture(image_bytes(img, quality=JPEG_QUALITY), reason is None, reason or "",
                                             int(is_crowd(ann).sum()))
    for i in image_ids:
        cache.move_to_end(key[i])
    pictures = {i: cache[key[i]] for i in image_ids}     # before the trim: more ids than are kept still come back
    while len(cache) > PICTURES_KEPT:
        cache.popitem(last=False)
    return pictures


def _grid(scan, view, result, rows: pd.DataFrame, min_score: float, decided: tuple, key: str, o: dict) -> None:
    """The images of ``rows`` as ONE element (``tile_grid``: thumbnails inline as JPEG, captions as text); a click
    on a tile or its Open opens it in the detail."""
    if rows.empty:
        st.text("No images match these filters.")
        return
    shown = rows.head(int(o["n_images"]))
    ids = shown["image_id"].astype("str").tolist()
    pics = drawn_pictures(scan, view, result, ids, min_score, int(o["tile_side_px"]), *decided)
    lines = [[f"#{rec.rank} {rec.image_id}",
              f"score {rec.detection_error_score:.2f} | {rec.n_tp} TP, {rec.n_fp} FP, {rec.n_missed} missed, "
              f"{rec.n_annotation_errors} annotation errors"
              + (f", {pics[str(rec.image_id)].n_crowd} crowd" if pics[str(rec.image_id)].n_crowd else "")]
             for rec in shown.itertuples(index=False)]
    payload = tile_grid.grid_payload(shown, [pics[i] for i in ids], lines, int(o["n_cols"]), set(), False)
    tile_grid.mount(payload, key, SELECTED_KEY, set, viewer_closed=lambda: None)


def _worst_images(scan, view, result, min_score: float, decided: tuple, o: dict) -> None:
    """The filters and the grid."""
    t = time.perf_counter()
    f1, f2, f3 = st.columns(3)
    tags = f1.multiselect("Error type", view.tags, key=K + "f_tag",
                          help="TIDE types of the predictions (and 'missed' annotations), and the annotation "
                               "errors found through the model.")
    cats = f2.multiselect("Class", view.categories, key=K + "f_class")
    sizes = f3.multiselect("Object size", SIZES, key=K + "f_size",
                           help="COCO sizes: small below 32x32 px of area, medium below 96x96, else large.")
    rows = filter_images(view, tags=tags, categories=cats, sizes=sizes, min_score=min_score)
    st.text(f"{len(rows):,} images match; worst detection error score first")
    _grid(scan, view, result, rows, min_score, decided, K + "open_grid", o)
    log.debug("detection grid drawn in %.3f s", time.perf_counter() - t)


def decided_boxes(current: pd.DataFrame, result) -> tuple[dict, int]:
    """({box_key: decision} for the decisions in force made on the boxes of this result, number of the others):
    a decision whose stored box differs from the box now under its key was made on another version of the
    predictions (or annotations) file; it is kept and exported but not drawn on these boxes."""
    if current.empty:
        return {}, 0
    keys = current["box_key"].astype("str")
    kinds = keys.str.slice(0, 4)
    ids = keys.str.split(":").str[1].astype("int64")
    now = {}
    for kind, table, col in (("ann:", result.annotations, "ann_id"), ("pred", result.predictions, "pred_id")):
        want = set(ids[kinds == kind])
        rows = table.loc[table[col].isin(want), [col] + BOX_COLUMNS]
        for r in rows.itertuples(index=False):
            now[("ann:" if kind == "ann:" else "pred:") + str(int(r[0]))] = list(r[1:])
    out, other = {}, 0
    for rec in current.to_dict("records"):
        box = now.get(str(rec["box_key"]))
        if box is not None and same_box(rec, box):
            out[str(rec["box_key"])] = rec
        else:
            other += 1
    return out, other


def _detail(scan, view, result, boxes: BoxDecisionStore, image_id: str, min_score: float, decided: tuple,
            categories: list[str], o: dict) -> None:
    decided, version = decided
    ann, pred = boxes_of(view, result, image_id)
    keys = list(ann["box_key"]) + list(pred["box_key"])
    mine = {k: decided[k] for k in keys if k in decided}
    with st.container(border=True):
        head, close = st.columns([6, 1])
        head.subheader(md_escape(image_id))
        if close.button("Close", key=K + "close"):
            st.session_state.pop(SELECTED_KEY, None)
            st.rerun()
        left, right = st.columns([3, 2])
        pic = drawn_pictures(scan, view, result, [image_id], min_score, int(o["detail_side_px"]), decided,
                             version)[image_id]
        left.image(pic.data, width="stretch")
        left.caption(legend(ann, pred, min_score) + (f" The image cannot be shown: {pic.reason}." if pic.reason
                                                     else ""))
        errs = result.errors.loc[result.errors["image_id"] == image_id]
        for e in errs.itertuples(index=False):
            right.warning(md_escape(f"{e.check}: {e.detail}"))
        table = pd.concat([
            pd.DataFrame({"box": [short_key(k) for k in ann["box_key"]],
                          "kind": np.where(is_crowd(ann), "crowd region", "annotation"),
                          "class": ann["category"].astype("str"), "score": np.nan,
                          "error": (ann["error_type"].astype("str") + " " + ann["check"]).str.strip(),
                          "iou": ann["iou"]}),
            pd.DataFrame({"box": [short_key(k) for k in pred["box_key"]], "kind": "prediction",
                          "class": pred["category"].astype("str"), "score": pred["score"],
                          "error": (np.where(pred["is_tp"], "TP", pred["error_type"].astype("str")) + " "
                                    + pred["check"]).str.strip(), "iou": pred["iou"]})], ignore_index=True)
        table["decision"] = [_decision_text(mine.get(k)) for k in keys]
        # a plain table (its rows are few), under the picture: the wider column, so no column is cut off
        left.table(table.style.format({"score": "{:.2f}", "iou": "{:.2f}"}, na_rep="").hide(axis="index"))
        if not keys:
            right.text("No boxes on this image.")
            return
        shown = [k for k in keys if key_id(k)[0] == "ann" or k in mine or
                 float(pred.loc[pred["box_key"] == k, "score"].iloc[0]) >= min_score]
        label = {k: _box_text(k, ann, pred) for k in keys}
        in_error = [k for k in shown if k in set(ann.loc[((ann["error_type"] != "") & (ann["error_type"] != "ignored"))
                                                       | (ann["check"] != ""), "box_key"])
                    | set(pred.loc[~pred["is_tp"].astype(bool) & (pred["error_type"] != "ignored"), "box_key"])]
        start = shown.index(in_error[0]) if in_error else 0          # the first box in an error, ready to decide
        box = right.selectbox("Box", shown, index=start, format_func=lambda k: label[k], key=K + "box")
        kind = key_id(box)[0]
        actions = ["accept", "fine"] if kind == "pred" else ["delete", "relabel", "fine"]
        names = {"accept": "Accept as annotation", "delete": "Delete box", "relabel": "Change class",
                 "fine": "Mark fine"}
        action = right.radio("Decision", actions, format_func=names.get, horizontal=True, key=K + "action")
        row = (pred if kind == "pred" else ann).loc[lambda d: d["box_key"] == box].iloc[0]
        new_cat = None
        if action in ("accept", "relabel"):
            options = list(dict.fromkeys(categories + [str(row["category"])]))
            suggested = str(row.get("other_category") or "") if kind == "ann" else str(row["category"])
            if kind == "ann":
                other = errs.loc[(errs["ann_id"] == row["ann_id"]) & (errs["other_category"].astype("str") != ""),
                                 "other_category"]
                suggested = str(other.iloc[0]) if len(other) else ""
            start = options.index(suggested) if suggested in options else options.index(str(row["category"]))
            new_cat = right.selectbox("Class", options, index=start, key=K + "class_" + box)
        note = right.text_input("Note (optional)", key=K + "note")
        c1, c2 = right.columns(2)
        if c1.button("Record decision", type="primary", key=K + "record", disabled=boxes.read_only):
            try:
                boxes.decide(image_id, box, action, category=str(row["category"]), new_category=new_cat,
                             box_xywh_px=[row["box_x_px"], row["box_y_px"], row["box_w_px"], row["box_h_px"]],
                             note=note)
                st.session_state[K + "flash"] = f"{short_key(box)}: {names[action].lower()} recorded"
                st.rerun()
            except ReviewError as exc:
                right.error(md_escape(str(exc)))
        if c2.button("Undo this box", key=K + "undo", disabled=boxes.read_only or box not in mine):
            boxes.undo(box)
            st.rerun()
        flash = st.session_state.pop(K + "flash", None)
        if flash:
            right.success(md_escape(flash))


def legend(ann: pd.DataFrame, pred: pd.DataFrame, min_score: float) -> str:
    """The detail view's key to the drawing, with the boxes of each style counted (crowd regions apart)."""
    crowd = is_crowd(ann)
    shown = pred.loc[pred["score"] >= min_score]
    tp = shown["is_tp"].astype(bool)
    in_crowd = (shown["error_type"].astype("str") == "ignored") & ~tp
    err = ((ann["error_type"].astype("str") != "") | (ann["check"].astype("str") != "")) & ~crowd
    text = (f"Annotations solid: {int((~crowd).sum() - err.sum())} green, {int(err.sum())} red (in an error; grey: "
            f"deleted). Predictions scoring >= {min_score:g} dashed with their score: {int(tp.sum())} blue (true "
            f"positive), {int((~tp & ~in_crowd).sum())} orange (false positive); magenta solid: accepted.")
    if crowd.any() or in_crowd.any():
        text += (f" Crowd regions (COCO iscrowd), hatched teal: {int(crowd.sum())}; neither matched nor missed, and "
                 f"the {int(in_crowd.sum())} predictions inside them (dashed teal) are neither TP nor FP.")
    return text


def _decision_text(d) -> str:
    if d is None:
        return ""
    return {"accept": f"accepted as {d['new_category']}", "delete": "deleted",
            "relabel": f"class -> {d['new_category']}", "fine": "fine"}.get(d["action"], str(d["action"]))


def _box_text(key: str, ann: pd.DataFrame, pred: pd.DataFrame) -> str:
    if key_id(key)[0] == "ann":
        r = ann.loc[ann["box_key"] == key].iloc[0]
        return f"{short_key(key)} annotation {r['category']} " + (r["error_type"] or r["check"] or "")
    r = pred.loc[pred["box_key"] == key].iloc[0]
    return f"{short_key(key)} prediction {r['category']} {r['score']:.2f} " + ("TP" if r["is_tp"] else r["error_type"])


@st.cache_data(show_spinner=False, max_entries=4)
def _export_payloads(workspace: str, root: str, last_id: int, fingerprint: str, _scan, _current) -> dict:
    """Corrected COCO JSON, YOLO label zip and relabel CSV, built once per (workspace, last decision, scan)."""
    import json

    from inspect_core.detection.export import (
        corrected_coco,
        relabel_list,
        yolo_labels,
        yolo_zip_bytes,
    )
    from inspect_core.export import safe_csv_bytes
    files, names = yolo_labels(_scan, _current)
    return {"coco": json.dumps(corrected_coco(_scan, _current)).encode("utf-8"),
            "yolo": yolo_zip_bytes(files, names), "csv": safe_csv_bytes(relabel_list(_current, root))}


def _exports(scan, boxes: BoxDecisionStore, cur: pd.DataFrame) -> None:
    from inspect_core.detection.export import write_detection_exports
    st.text(f"{len(cur):,} box decisions in force" + (": " + ", ".join(
        f"{n} {a}" for a, n in cur["action"].value_counts().items()) if len(cur) else ""))
    if cur.empty:
        st.caption("Open an image, pick a box and record a decision: accept a prediction, delete a box, change its "
                   "class or mark it fine. Decisions are kept in the workspace's review store, with history.")
        return
    st.dataframe(cur, hide_index=True, width="stretch")
    with st.expander("History (every decision and undo)"):
        st.dataframe(boxes.history(), hide_index=True, width="stretch")
    st.caption("Exports apply the decisions to the dataset's boxes; the dataset itself is never written.")
    if st.button("Prepare the corrected exports", key=K + "prepare"):
        st.session_state[K + "export_for"] = boxes.last_id()
    if st.session_state.get(K + "export_for") == boxes.last_id():
        pay = _export_payloads(str(scan.workspace), str(scan.dataset.root), boxes.last_id(), str(scan.fingerprint),
                               scan, cur)
        d1, d2, d3 = st.columns(3)
        d1.download_button("Corrected COCO JSON", pay["coco"], "corrected_annotations.json", "application/json",
                           key=K + "dl_coco")
        d2.download_button("YOLO label folder (zip)", pay["yolo"], "yolo_labels.zip", "application/zip",
                           key=K + "dl_yolo")
        d3.download_button("Relabel list (CSV)", pay["csv"], "box_relabels.csv", "text/csv", key=K + "dl_csv")
        if st.button("Write them to the workspace", key=K + "write"):
            out = Path(scan.workspace) / "exports" / ("detection-" +
                                                      datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
            try:
                written = write_detection_exports(out, scan, cur)
                st.success(md_escape(f"Written to {out}: " + ", ".join(p.name for p in written.values())))
            except (OSError, ValueError) as exc:
                st.error(md_escape(f"Could not write the exports to {out}: {exc}"))


def render(scan, store=None, *, result=None, predictions_path: str | None = None, options: dict | None = None) -> None:
    """Draw the detection section for ``scan``. ``store``: the workspace's ReviewStore (box decisions go into its
    file); ``result``: a DetectionResult already computed (else the predictions file is asked for, or taken from
    ``predictions_path``, and triaged once per file version); ``options`` overrides ``VIEW_DEFAULTS``."""
    from inspect_core import loaders
    from inspect_core.detection import PredictionsError
    o = {**VIEW_DEFAULTS, **(options or {})}
    if result is None:
        if not scan.dataset.has_boxes:
            st.info("This dataset has no boxes (no COCO JSON, no YOLO labels): detection triage holds a detector's "
                    "boxes against annotated boxes.")
            return
        source = "file" if predictions_path is not None else st.radio(
            "Detector output", ["file", "model"], horizontal=True, key=K + "source",
            format_func={"file": "Predictions file", "model": "Detector model file"}.get)
        if source == "model":
            ran = _detector_input(scan)
            if ran is None:
                return
            result, view = ran
    if result is None:
        path = predictions_path if predictions_path is not None else _predictions_input(scan)
        if not path:
            st.info("Type the path of the detector's predictions: a COCO results JSON (image_id or file_name, "
                    "category_id, bbox, score), a folder of YOLO prediction .txt files, or a CSV / Parquet table.")
            return
        if not Path(path).expanduser().exists():
            st.error(md_escape(f"Predictions {path} not found. Check the path (it is read on this machine)."))
            return
        from inspect_core.paths import is_regular_file
        if not Path(path).expanduser().is_dir() and not is_regular_file(Path(path).expanduser()):
            st.error(md_escape(f"Predictions {path} is not a regular file (a pipe or device is never read): give a "
                               "COCO results .json, a CSV/Parquet table, or a YOLO prediction folder."))
            return
        try:
            with st.spinner("Matching the predictions to the annotations..."):
                result, view = _cached_triage(str(scan.dataset.root), str(scan.dataset.format), str(scan.fingerprint),
                                              str(Path(path).expanduser().resolve()), predictions_fingerprint(path),
                                              scan)
        except (PredictionsError, loaders.DatasetError, ValueError, OSError) as exc:
            st.error(md_escape(f"Could not use the predictions {path}: {exc}"))
            return
    else:
        view = view_of(result)
    _body(scan, store, result, view, o)


def _decisions(boxes: BoxDecisionStore, result) -> tuple[pd.DataFrame, dict, int, int]:
    """(decisions in force, {box_key: decision} drawn on this result's boxes, number of the others, version):
    read from the review store again only when its newest decision id changed (a decision here or in another
    tab), else kept in the session (matching them to the 4 M boxes is the costly part)."""
    version = boxes.last_id()
    held = st.session_state.get(K + "decided")
    if held is None or held[0] is not result or held[1] != version or held[2] != boxes.path:
        current = boxes.current()
        decided, n_other = decided_boxes(current, result)
        held = (result, version, boxes.path, current, decided, n_other)
        st.session_state[K + "decided"] = held
    return held[3], held[4], held[5], held[1]


def metrics_line(s: dict, n_images: int, n_ann: int, n_pred: int, n_errors: int) -> str:
    """The headline numbers as one Markdown line (one element, not six)."""
    m = s.get("metrics", {})
    parts = [("Images", f"{s.get('n_images', n_images):,}"), ("Annotated boxes", f"{s.get('n_annotations', n_ann):,}"),
             ("Predicted boxes", f"{s.get('n_predictions', n_pred):,}"),
             ("mAP@[.5:.95]", "-" if m.get("map") is None else f"{m['map']:.3f}"),
             ("AP50", "-" if m.get("ap50") is None else f"{m['ap50']:.3f}"), ("Annotation errors", f"{n_errors:,}")]
    return " &nbsp;·&nbsp; ".join(f"{md_escape(k)} **{v}**" for k, v in parts)


@st.fragment
def _body(scan, store, result, view, o: dict) -> None:
    """Everything below the predictions input, as one fragment: a widget here (the slider, a filter, a tab, a
    tile opened) reruns this alone, not the page script above it (its scan check, form and cached triage)."""
    t = time.perf_counter()
    try:
        _body_content(scan, store, result, view, o)
    finally:                 # st.rerun ends a run by an exception: still logged (the browser bench reads it)
        log.debug("detection body drawn in %.3f s", time.perf_counter() - t)


def _body_content(scan, store, result, view, o: dict) -> None:
    from inspect_core.detection.metrics import BACKGROUND
    boxes = BoxDecisionStore(scan.workspace, store)
    current, decided, n_other, version = _decisions(boxes, result)
    if n_other:
        st.caption(f"{n_other} box decisions were made on boxes that are not in these predictions (another version "
                   "of the file, or images left out): they are kept and exported, but not drawn here.")
    s = result.summary
    st.markdown(metrics_line(s, len(view.images), len(result.annotations), len(result.predictions),
                             len(result.errors)))
    if len(result.problems):
        with st.expander(f"{len(result.problems)} problems with the inputs"):
            st.dataframe(result.problems[["image_id", "check", "detail"]], hide_index=True, width="stretch")
    min_score = st.slider("Show predictions scoring at least", 0.0, 1.0, float(o["min_score"]), 0.05,
                          key=K + "min_score")
    categories = list(dict.fromkeys(list(s.get("categories") or []) + view.categories))
    selected = st.session_state.get(SELECTED_KEY)
    if selected:
        _detail(scan, view, result, boxes, selected, min_score, (decided, version), categories, o)
    # Only the open tab's content is drawn (and sent to the browser), besides the worst images whose filters keep
    # their values: the errors table, the per-class table, the two plotly charts and the decisions are drawn when
    # their tab is opened (a rerun), not on every slider move or filter.
    t_worst, t_err, t_ap, t_conf, t_dec = st.tabs(
        ["Worst images", "Annotation errors", "Per-class AP", "Confusion matrix", "Decisions and exports"],
        key=K + "tab", on_change="rerun")
    with t_worst:
        _worst_images(scan, view, result, min_score, (decided, version), o)
    with t_err:
        if t_err.open is not False:          # None: tabs without state (all drawn)
            n_err = int(o["errors_shown"])
            st.caption("Annotation errors found through the model, most likely first"
                       + (f" (the first {n_err:,} of {len(result.errors):,}; the CLI writes them all)"
                          if len(result.errors) > n_err else "") + ". Select a row to open its image.")
            cols = ["rank", "image_id", "check", "score", "category", "other_category", "iou", "confidence", "detail"]
            ev = st.dataframe(result.errors[cols].head(n_err), hide_index=True, width="stretch", on_select="rerun",
                              selection_mode="single-row", key=K + "errors")
            picked = list(getattr(getattr(ev, "selection", None), "rows", []) or [])
            if picked and st.session_state.get(K + "err_open") != picked[0]:
                st.session_state[K + "err_open"] = picked[0]
                st.session_state[SELECTED_KEY] = str(result.errors.iloc[picked[0]]["image_id"])
                st.rerun()
    with t_ap:
        if t_ap.open is not False:          # None: tabs without state (all drawn)
            st.dataframe(view.memo("per_class", result.metrics.per_class), hide_index=True, width="stretch")
            curves = view.memo("pr_curves", result.metrics.pr_curves)
            ious = sorted(float(v) for v in curves["iou"].unique()) if len(curves) else []
            if ious:
                iou = st.selectbox("IoU of the curves", ious, key=K + "pr_iou")
                st.plotly_chart(view.memo(("pr_figure", iou), lambda: pr_figure(curves, iou)), key=K + "pr")
    with t_conf:
        if t_conf.open is not False:          # None: tabs without state (all drawn)
            if result.confusion is None:
                st.text("No confusion matrix for this result.")
            else:
                min_conf = float(s.get("params", {}).get("confusion_min_score", 0.25))
                st.caption(f"Rows: annotated class; columns: predicted class (predictions scoring >= {min_conf:g}); "
                           "(background): no box. Click a cell to see its images.")
                figure = view.memo("confusion_figure",
                                   lambda: confusion_figure(result.confusion, rows="annotated", unit="boxes"))
                event = st.plotly_chart(figure, on_select="rerun", selection_mode="points", key=K + "confusion")
                cell = selected_cell(event)
                if cell is not None:
                    ids = cell_images(result, cell[0], cell[1], min_conf, BACKGROUND)
                    st.text(f"annotated {cell[0]} -> predicted {cell[1]}: {len(ids)} images")
                    _grid(scan, view, result, view.images.loc[view.images["image_id"].isin(set(ids))], min_score,
                          (decided, version), K + "cell_open_grid", o)
    with t_dec:
        if t_dec.open is not False:          # None: tabs without state (all drawn)
            _exports(scan, boxes, current)


__all__ = ["BOX_ACTIONS", "draw_detections", "render"]
