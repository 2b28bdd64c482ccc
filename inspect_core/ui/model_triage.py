"""Helpers for the Model triage page: choosing a model / predictions file, scoring with progress and
cancel, the worst-loss grid, the confusion matrix, per-class tables, "what the model sees", sanity checks.

Pure helpers (``filter_scores``; the confusion matrix is ``charts.confusion_figure``) take and return DataFrames; the rest draw with
Streamlit. User text (labels, paths) is shown with st.text / st.dataframe / md_escape, never as HTML.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from inspect_core.model.gpu_decode import NVJPEG, what_the_model_sees_as
from inspect_core.model.models import load_model
from inspect_core.model.preprocess import (CHANNEL_ORDERS, IMAGENET_MEAN, IMAGENET_STD, MAX_SIDE_PX, RESIZE_MODES,
                                     Preprocess, PreprocessError, find_sidecar, read_preprocess, sidecar_name)
from inspect_core.thumbs import image_bytes
from inspect_core.ui.text import label_text, md_escape
from inspect_core.ui.viewer import display_jpeg
from inspect_core.ui.widgets import thumb_grid

log = logging.getLogger(__name__)

K = "di_mt_"                    # session-state key prefix of this page
RESULT_KEY = K + "result"       # {"key", "result": ScoreResult, "issues", "confusion", "positions"} (see remember_result)
SELECTED_KEY = K + "selected"
ANY = "(any)"
# What the user types on this page (model / factory / preprocessing / predictions paths, "Scores from", the
# preprocessing form, the decoder toggle) must survive a visit to another page: Streamlit drops the state of a
# keyed widget that is not drawn on a run, so the page came back empty and its results hidden. Pass
# ``**KEEP`` to every such widget (it needs a key): its value is kept for the whole session and comes back
# when the user returns, like the Gallery's filters (``widgets.filter_widgets``).
KEEP = {"persist_state": "session"}
EXIF_ORIENTATION_TAG = 0x0112


# -- pure helpers ---------------------------------------------------------------------------------
def filter_scores(issues: pd.DataFrame, *, given=(), predicted=(), splits=(), pair: tuple[str, str] | None = None,
                  only_flagged: bool = False, only_wrong: bool = False) -> pd.DataFrame:
    """Rows of a ``rank_label_issues`` table matching the filters, worst loss first."""
    rows = issues
    if given:
        rows = rows[rows["given_label"].isin(list(given))]
    if predicted:
        rows = rows[rows["pred_label"].isin(list(predicted))]
    if splits:
        rows = rows[rows["split"].isin(list(splits))]
    if pair is not None:
        rows = rows[(rows["given_label"] == pair[0]) & (rows["pred_label"] == pair[1])]
    if only_flagged:
        rows = rows[rows["cl_issue"]]
    if only_wrong:
        rows = rows[rows["given_label"] != rows["pred_label"]]
    if rows["loss_rank"].is_monotonic_increasing:   # rank_label_issues' order, kept by every filter above
        return rows
    return rows.sort_values("loss_rank", kind="stable")


# -- choosing the model ---------------------------------------------------------------------------
def preprocess_form(class_names: list[str], key: str = K + "form") -> Preprocess | None:
    """The preprocessing form (when no sidecar is found). Returns a spec or None after an error."""
    c1, c2, c3 = st.columns(3)
    width_px = c1.number_input("Input width (px)", 8, MAX_SIDE_PX, 224, key=f"{key}_w", **KEEP)
    height_px = c1.number_input("Input height (px)", 8, MAX_SIDE_PX, 224, key=f"{key}_h", **KEEP)
    resize = c2.selectbox("Resize", RESIZE_MODES, index=1, key=f"{key}_resize", **KEEP)
    shorter = c2.number_input("Shorter side before crop (px)", 8, MAX_SIDE_PX, 256, key=f"{key}_shorter", **KEEP)
    order = c3.selectbox("Channel order", CHANNEL_ORDERS, key=f"{key}_order", **KEEP)
    mean = c3.text_input("Mean (0..1, comma separated)", ", ".join(str(v) for v in IMAGENET_MEAN), key=f"{key}_mean",
                         **KEEP)
    std = c3.text_input("Std (0..1, comma separated)", ", ".join(str(v) for v in IMAGENET_STD), key=f"{key}_std",
                        **KEEP)
    # one text per dataset (its classes are the default): another dataset's class names are never carried over
    per_dataset = hashlib.sha1("\n".join(class_names).encode()).hexdigest()[:10]
    names = st.text_area("Class names in the model's output order (one per line)", "\n".join(class_names),
                         key=f"{key}_classes_{per_dataset}", **KEEP)
    try:
        return Preprocess.from_dict({
            "input_size": [int(width_px), int(height_px)], "resize": resize, "resize_shorter_px": int(shorter),
            "channel_order": order, "mean": [float(v) for v in mean.split(",") if v.strip()],
            "std": [float(v) for v in std.split(",") if v.strip()],
            "class_names": [ln.strip() for ln in names.splitlines() if ln.strip()]}, source="the form")
    except (PreprocessError, ValueError) as exc:
        st.error(md_escape(str(exc)))
        return None


# The "Model form" box: the user says what the file is (load_model refuses a file whose contents disagree).
MODEL_FORMS = {"Auto (the reason is shown once loaded)": "auto",
               "TorchScript program": "torchscript", "torch.export program (.pt2)": "export",
               "State dict + factory (weights only)": "state_dict"}


@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_model(path: str, stamp: str, spec_json: str, factory: str | None, kind: str = "auto"):
    spec = Preprocess.from_dict(json.loads(spec_json))
    return load_model(path, spec, factory=factory or None, kind=kind)


def get_model(path: str, spec: Preprocess, factory: str | None, kind: str = "auto"):
    """The loaded model (cached per file version, preprocessing, factory and form), or raises ModelLoadError."""
    p = Path(path).expanduser()
    try:
        st_ = p.stat()
        stamp = f"{st_.st_size}:{st_.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    if factory:                                     # an edited factory module is a different model
        from inspect_core.model.models import import_factory
        import_factory(factory)                     # imported (or reloaded when edited) safely; ModelLoadError
        stamp += f":{_factory_stamp(factory)}"
    return _cached_model(str(p), stamp, json.dumps(spec.to_dict(), sort_keys=True), factory, kind)


def _factory_stamp(factory: str) -> str:
    """size:mtime of the file of a factory's module once it has been imported ("" before): read from
    ``sys.modules`` only, so no user code runs here (import_factory imports it, without writing bytecode)."""
    import sys
    module = sys.modules.get(factory.partition(":")[0].strip())
    source = getattr(module, "__file__", None)
    try:
        st_ = os.stat(source) if source else None
    except OSError:
        return ""
    return f"{st_.st_size}:{st_.st_mtime_ns}" if st_ is not None else ""


def spec_for_model(model_path: str, preprocess_path: str, class_names: list[str]) -> Preprocess | None:
    """The preprocessing: the given file, else the sidecar beside the model, else the form."""
    if preprocess_path.strip():
        try:
            return read_preprocess(preprocess_path.strip())
        except PreprocessError as exc:
            st.error(md_escape(str(exc)))
            return None
    sidecar = find_sidecar(Path(model_path).expanduser()) if model_path else None
    if sidecar is not None:
        try:
            spec = read_preprocess(sidecar)
        except PreprocessError as exc:
            st.error(md_escape(str(exc)))
            return None
        st.caption(md_escape(f"Preprocessing from {sidecar.name}: input {spec.input_size[0]}x{spec.input_size[1]} px, "
                             f"{spec.resize}, {spec.channel_order}, {len(spec.class_names)} classes"))
        return spec
    st.info(md_escape(f"No preprocessing file beside the model ({sidecar_name(model_path)}): describe how the "
                      "model was trained, or save that file beside it."))
    return preprocess_form(class_names)


# -- scoring ----------------------------------------------------------------------------------------
def decoder_choice(model) -> str:
    """The JPEG decoder to score with: on a CUDA model a toggle offers Pillow's exact preprocessing instead of
    nvJPEG on the GPU (the default, used when torchvision is installed); elsewhere always "auto" (Pillow)."""
    if getattr(model.device, "type", "cpu") != "cuda":
        return "auto"
    exact = st.toggle("Exact Pillow decoding", key=K + "pillow_decoder", **KEEP,
                      help="By default JPEGs are decoded on the GPU by nvJPEG when torchvision is installed: "
                           "much faster, but its pixels can differ from Pillow's by a few levels at sharp colour "
                           "edges. Turn this on to score with exactly the Pillow preprocessing.")
    return "pillow" if exact else "auto"


def default_trained_on(splits) -> tuple[str, ...]:
    """The page's default "Model trained on": the splits present named like a training split."""
    from inspect_core.model.label_issues import TRAINED_ON_DEFAULT
    return tuple(s for s in sorted(str(v) for v in pd.Series(splits).dropna().unique())
                 if s.lower() in TRAINED_ON_DEFAULT)


def run_scoring(model, scan, *, cancel_key: str = K + "cancel", decoder: str = "auto"):
    """Triage with the model (``model.triage.triage``), with a progress bar while scoring; a click on Cancel stops
    it (Streamlit interrupts the run). Returns the TriageResult, or None after a cancel or a failure (shown)."""
    from inspect_core.model.pipeline import ScoringCancelled
    from inspect_core.model.triage import triage
    from inspect_core.ui.state import plain_main_module
    bar = st.progress(0.0, text="Scoring...")
    # A click on Cancel makes Streamlit stop this run at its next progress update; the flag (set by the
    # click's callback) tells the next run to say so, and stops scoring when the run is not interrupted.
    st.button("Cancel scoring", key=cancel_key, on_click=lambda: st.session_state.update({cancel_key + "_flag": True}))
    st.session_state[cancel_key + "_flag"] = False

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"Scored {done:,} of {total:,} images")

    def cancelled() -> bool:
        return bool(st.session_state.get(cancel_key + "_flag"))

    try:
        with plain_main_module():
            result = triage(scan.images, root=scan.dataset.root, model=model, workspace=scan.workspace,
                            scoring_options={"decoder": decoder}, trained_on=list(default_trained_on(
                                scan.images["split"] if "split" in scan.images else [])),
                            embedding_findings=False, progress=progress, cancel=cancelled)
    except ScoringCancelled:
        bar.empty()
        st.session_state.pop(cancel_key + "_flag", None)
        st.warning("Scoring cancelled; nothing was saved.")
        return None
    except Exception as exc:  # noqa: BLE001 - a model failing mid-run is shown, not raised
        bar.empty()
        st.error(md_escape(f"Scoring failed: {' '.join(str(exc).split())[:300]}"))
        return None
    bar.empty()
    return result


def triage_predictions(path: str, scan, classes: list[str]):
    """The TriageResult of a predictions file on the scan (no model); raises PredictionsError."""
    from inspect_core.model.triage import triage
    return triage(scan.images, predictions=path, predictions_options={"dataset_classes": list(classes)},
                  workspace=scan.workspace, trained_on=list(default_trained_on(
                      scan.images["split"] if "split" in scan.images else [])), embedding_findings=False)


def row_positions(table: pd.DataFrame) -> dict[str, int]:
    """image_id -> row of the scores table (and of ``result.probs``); the first row when an id repeats."""
    ids = table["image_id"].astype(str).tolist()
    # built from the end, so the first row of a repeated id is the one kept (no per-row Python loop)
    return dict(zip(reversed(ids), range(len(ids) - 1, -1, -1)))


def make_entry(result, key: str, trained_on: tuple[str, ...] | None = None, probe: bool = False) -> dict:
    """What the page keeps per scored result, computed once by ``model.triage.triage`` (not on every rerun: at
    1,000,000 images each step takes 0.1-4 s): the ranked issues (in-sample rows, of the splits in ``trained_on``,
    apart; with the linear probe's out-of-fold flags when ``probe``), the classes that are a model problem (not label
    errors), the confusion matrix, image_id -> row positions, the headline figures, the per-class table, the
    baselines and the per-class alarms. ``result``: a TriageResult (kept when made with these options) or a
    ScoreResult. The embedding kNN findings are added on first use (``embedding_findings_of``)."""
    from inspect_core.model.triage import TriageResult, triage
    scores = result.scores if isinstance(result, TriageResult) else result
    if trained_on is None:              # the page's default choice, so that its first run needs no second ranking
        trained_on = default_trained_on(scores.table["split"])
    wanted = (list(trained_on), probe)
    if not (isinstance(result, TriageResult) and result.label_options == wanted):
        workspace = result.workspace if isinstance(result, TriageResult) else None
        result = triage(scores.table, scores=scores, workspace=workspace, trained_on=list(trained_on), probe=probe,
                        embedding_findings=False)
    return {"key": key, "triage": result, "result": scores, "issues": result.issues,
            "model_problems": result.model_problems, "label_options": (trained_on, probe),
            "label_notes": result.label_notes, "confusion": result.confusion,
            "positions": row_positions(scores.table), "headline": result.headline, "per_class": result.per_class,
            "baselines": result.baselines, "class_alarms": result.class_alarms}


def label_options(splits: list[str], has_embeddings: bool) -> tuple[tuple[str, ...], bool]:
    """The "Model trained on" splits (default: those named like a training split) and the probe toggle, as
    (trained_on, probe) for ``make_entry``; kept across page visits."""
    from inspect_core.model.label_issues import TRAINED_ON_DEFAULT
    c1, c2 = st.columns([2, 3])
    default = [s for s in splits if s.lower() in TRAINED_ON_DEFAULT]
    chosen = c1.multiselect("Model trained on (in-sample splits)", splits, default=default, key=K + "trained_on",
                            **KEEP, help="The model has seen these images and their labels: its probabilities there "
                                         "are in-sample, so their label issues are flagged and ranked apart.")
    probe = c2.toggle("Out-of-fold flags for them: a 5-fold linear probe on the model's embeddings",
                      key=K + "probe", disabled=not has_embeddings or not chosen, **KEEP,
                      help="No probe sees the label of an image it scores; the embeddings still come from the "
                           "network trained on these images. Needs a model that gives embeddings.")
    return tuple(chosen), bool(probe and has_embeddings and chosen)


def remember_result(result, key: str) -> dict:
    entry = make_entry(result, key)
    st.session_state[RESULT_KEY] = entry
    st.session_state.pop(SELECTED_KEY, None)
    return entry


def embedding_findings_of(entry: dict, workspace=None):
    """``(near-duplicate pairs, outliers)`` from the result's embeddings (None without embeddings), kept in the
    entry's TriageResult and, for a model's scores, in the workspace beside them (``cache.embedding_findings_cached``):
    the kNN takes seconds at 100,000 images and about a minute at 1,000,000, and the Sanity tab runs on every rerun."""
    if "embedding_findings" not in entry:
        tr = entry["triage"]
        if workspace is not None:
            tr.workspace = Path(workspace)
        result = entry["result"]
        n = 0 if result.embeddings is None else len(result.embeddings)
        with st.spinner(f"Finding near duplicates and outliers among {n:,} embeddings..."):
            entry["embedding_findings"] = tr.find_embedding_findings()
    return entry["embedding_findings"]


def source_key(*parts) -> str:
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


# -- drawing results ---------------------------------------------------------------------------------
def decoder_caption(source: dict | None) -> str | None:
    """One line saying which decoder made the pixels the model scored (None for a predictions file)."""
    source = source or {}
    decoder = source.get("decoder")
    if source.get("kind") == "predictions" or decoder is None:
        return None
    if decoder == NVJPEG:
        return f"JPEGs decoded on the GPU by nvJPEG ({source.get('device', 'cuda')}); other files by Pillow."
    return "Images decoded by Pillow on the CPU."


def _scored_source() -> dict:
    entry = st.session_state.get(RESULT_KEY) or {}
    return dict(getattr(entry.get("result"), "source", None) or {})


def _row_of(result, image_id: str, positions: dict[str, int] | None) -> int | None:
    """The scores-table row of ``image_id``: from ``positions`` (``row_positions``) when given, else a scan."""
    if positions is not None:
        return positions.get(str(image_id))
    pos = np.flatnonzero((result.table["image_id"] == image_id).to_numpy())
    return int(pos[0]) if len(pos) else None


def probs_frame(result, image_id: str, positions: dict[str, int] | None = None) -> pd.DataFrame:
    row = _row_of(result, image_id, positions)
    if row is None:
        return pd.DataFrame(columns=["class", "probability"])
    p = result.probs[row]
    frame = pd.DataFrame({"class": result.class_names, "probability": p.astype(float)})
    return frame.sort_values("probability", ascending=False).reset_index(drop=True)


def _top_probs_text(result, image_id: str, n: int = 3, positions: dict[str, int] | None = None) -> str:
    """"cls p, cls p, ..." for the ``n`` most probable classes; ``positions`` (``row_positions``) avoids a
    scan of the whole scores table per image. Read from the probabilities row directly (a DataFrame built and
    sorted per tile cost about 0.2 s a rerun for 24 tiles at 100,000 rows)."""
    row = _row_of(result, image_id, positions)
    if row is None:
        return ""
    p = np.asarray(result.probs[row], dtype=float)
    top = np.argsort(-p, kind="stable")[:n]
    return ", ".join(f"{result.class_names[k]} {p[k]:.2f}" for k in top)


def decision_texts(decisions: pd.DataFrame | None) -> dict[str, str]:
    """image_id -> "decided: relabel -> cat" / "decided: remove" / "decided: keep" (the review store's current)."""
    if decisions is None or decisions.empty:
        return {}
    out = {}
    for rec in decisions.to_dict(orient="records"):
        text = f"decided: {rec['action']}"
        if rec["action"] == "relabel" and not pd.isna(rec.get("new_label")):
            text += f" -> {label_text(rec['new_label'])}"
        out[str(rec["image_id"])] = text
    return out


def worst_grid(scan, result, rows: pd.DataFrame, n_cols: int = 6, key_prefix: str = K + "open",
               positions: dict[str, int] | None = None, decisions: pd.DataFrame | None = None) -> None:
    """Thumbnails with given vs predicted label, loss and top probabilities, and the decision already made on
    the image (``decisions``: the review store's current): the Gallery's one-element grid (``tile_grid``, key
    ``<key_prefix>_grid``) with its tick boxes for bulk decisions; Open (or a click on a thumbnail) opens the
    image in the viewer (``SELECTED_KEY``)."""
    if positions is None:
        positions = row_positions(result.table)
    decided = decision_texts(decisions)

    def caption(rec: dict) -> list[str]:
        flag = " | CL flag" if rec.get("cl_issue") else ""
        lines = [f"#{rec['loss_rank']} given {label_text(rec['given_label'])} -> predicted "
                 f"{label_text(rec['pred_label'])} | loss {rec['loss']:.2f}{flag}",
                 _top_probs_text(result, str(rec["image_id"]), positions=positions)]
        if str(rec["image_id"]) in decided:
            lines.append(decided[str(rec["image_id"])])
        return lines
    thumb_grid(scan, rows, key_prefix=key_prefix, n_cols=n_cols, caption=caption, selected_key=SELECTED_KEY,
               empty_text="No scored images match these filters.", selectable=True)


def viewer_header(scan, spec: Preprocess | None, result, issues: pd.DataFrame,
                  positions: dict[str, int] | None = None) -> Callable[[str], None]:
    """What the viewer shows above an image's detail on this page: given vs predicted, suggested label, loss
    and its rank, what the model sees, and the class probabilities."""
    def header(image_id: str) -> None:
        rec = issues[issues["image_id"] == image_id]
        if not rec.empty:
            r = rec.iloc[0]
            st.text(f"Given: {label_text(r['given_label'])}   Predicted: {label_text(r['pred_label'])}   "
                    f"Suggested: {label_text(r['suggested_label'])}   Loss: {r['loss']:.3f}   "
                    f"Loss rank: {r['loss_rank']}")
        left, right = st.columns([3, 2])
        with left:
            model_view(scan, spec, image_id)
        with right:
            st.table(probs_frame(result, image_id, positions).head(10).set_index("class"))
    return header


def suggested_label_of(issues: pd.DataFrame) -> Callable[[str], str | None]:
    """image_id -> the label the model's evidence suggests (pre-filled in the viewer's decision widget)."""
    suggested = issues.drop_duplicates("image_id").set_index("image_id")["suggested_label"]

    def suggest(image_id: str) -> str | None:
        value = suggested.get(image_id)
        return None if value is None or pd.isna(value) else str(value)
    return suggest


def exif_orientation_of(path) -> int:
    """The file's EXIF orientation (1-8; 1: stored upright), 0 when it has none or cannot be read. Only a
    regular file's header is read (a FIFO named .jpg would block)."""
    from PIL import Image

    from inspect_core.paths import is_regular_file
    if path is None or not is_regular_file(path):
        return 0
    try:
        with Image.open(path) as im:
            value = int(im.getexif().get(EXIF_ORIENTATION_TAG, 0) or 0)
    except Exception:  # noqa: BLE001 - unreadable or odd EXIF: shown as stored
        return 0
    return value if 1 <= value <= 8 else 0


def upright_for_display(data: bytes, orientation: int) -> bytes:
    """Display image bytes (decoded as stored, EXIF dropped) turned upright for the file's EXIF ``orientation``
    with ``PIL.ImageOps.exif_transpose``. For display only: box coordinates and the model input use the
    stored pixels (unless the preprocessing asks for ``exif_transpose``)."""
    if orientation not in range(2, 9):
        return data
    from PIL import Image, ImageOps
    with Image.open(io.BytesIO(data)) as im:
        picture = im.convert("RGB")           # a new image: its EXIF is read from .info on first use
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = int(orientation)
    picture.info["exif"] = exif.tobytes()
    return image_bytes(ImageOps.exif_transpose(picture))


def model_view(scan, spec: Preprocess | None, image_id: str) -> None:
    """'What the model sees': the original and the exact model input decoded back into a picture."""
    if spec is None:
        st.info("The preprocessing is unknown for a predictions file: load a model to see its input.")
        return
    path = scan.dataset.path_of(image_id) if hasattr(scan.dataset, "path_of") else None
    if path is None:
        st.warning("This image lies outside the dataset root; it is not opened.")
        return
    source = _scored_source()
    try:   # decoded the way the scores were (nvJPEG when they were and this machine can), else Pillow with a note
        arr, picture, decoder_note = what_the_model_sees_as(path, spec, source.get("decoder"), source.get("device"))
    except Exception as exc:  # noqa: BLE001 - unreadable file
        st.warning(md_escape(f"Cannot read this image: {' '.join(str(exc).split())[:160]}"))
        return
    c1, c2 = st.columns(2)
    original, reason = display_jpeg(scan, image_id, max_side_px=512, with_boxes=False)
    with c1:
        st.text("The file")
        if original is not None:
            orientation = exif_orientation_of(path)
            st.image(upright_for_display(original, orientation), width="stretch")
            if orientation > 1:
                st.caption(f"EXIF orientation {orientation}: shown upright here; the model "
                           + ("input is turned upright too (exif_transpose)." if spec.exif_transpose else
                              "sees the pixels as stored (exif_transpose is off)."))
        else:
            st.warning(md_escape(f"Cannot show this image: {reason}"))
    with c2:
        st.text(f"What the model sees: {spec.input_size[0]}x{spec.input_size[1]} px, {spec.channel_order}")
        big = picture.resize((picture.width * 4, picture.height * 4), 0) if max(picture.size) < 128 else picture
        st.image(image_bytes(big.convert("RGB"), fmt="PNG"), width="stretch")
    stats = pd.DataFrame({"channel": [f"{i}" for i in range(arr.shape[0])],
                          "mean": arr.reshape(arr.shape[0], -1).mean(axis=1),
                          "std": arr.reshape(arr.shape[0], -1).std(axis=1),
                          "min": arr.reshape(arr.shape[0], -1).min(axis=1),
                          "max": arr.reshape(arr.shape[0], -1).max(axis=1)})
    st.caption(md_escape(f"Tensor shape {tuple(arr.shape)} (channels, height, width), float32, after resize "
                         f"{spec.resize}, scaling to 0..1 and (x - mean) / std; the picture is that tensor decoded back."))
    caption = decoder_caption(source)
    if decoder_note or caption:
        st.caption(md_escape(decoder_note or caption))
    st.dataframe(stats, hide_index=True, width="stretch")


def batch_check(model, scan, result, n_images: int = 8):
    """Batch-independence check on up to ``n_images`` readable images of the scan."""
    import torch

    from inspect_core.model.preprocess import image_to_array, load_image_file
    from inspect_core.model.sanity import batch_independence
    arrays = []
    for image_id in result.table.loc[result.table["error"].isna(), "image_id"].head(4 * n_images):
        path = scan.dataset.path_of(str(image_id))
        if path is None:
            continue
        try:
            arrays.append(image_to_array(load_image_file(path), model.spec))
        except Exception:  # noqa: BLE001
            continue
        if len(arrays) >= n_images:
            break
    if len(arrays) < 2:
        return None
    x = torch.from_numpy(np.stack(arrays)).to(model.device)
    return batch_independence(model.forward, x)


def model_problem_notes(model_problems: pd.DataFrame) -> None:
    """One warning per class the model (almost) never predicts: a model problem, not label errors."""
    for finding in model_problems["finding"]:
        st.warning(md_escape(finding[0].upper() + finding[1:]))


ALARM_STYLE = {"red": "error", "amber": "warning"}


def class_alarm_panel(alarms: pd.DataFrame) -> None:
    """The per-class alarm (``sanity.class_alarms``): red and amber classes with their evidence, or one green line,
    then the table."""
    if alarms.empty:
        return
    bad = alarms[alarms["level"] != "ok"]
    for level, verdict in zip(bad["level"], bad["verdict"]):
        getattr(st, ALARM_STYLE[level])(md_escape(f"Per-class accuracy ({level}): {verdict}"))
    if bad.empty:
        worst = alarms.iloc[0]
        st.success(md_escape(f"Per-class accuracy: no class is far below the others (lowest: {worst['verdict']})"))
    with st.expander("Per-class accuracy against the other classes", expanded=not bad.empty):
        st.dataframe(alarms.drop(columns="verdict"), hide_index=True, width="stretch")


def sanity_panel(result, base, embedding, model=None, scan=None, alarms: pd.DataFrame | None = None) -> None:
    """Baselines, the per-class alarm, the batch-independence check (on a click) and the embedding kNN findings,
    from what is computed once per result: ``base`` the baselines and ``alarms`` the per-class alarms
    (``make_entry``), ``embedding`` ``(pairs, outliers)`` or None without embeddings (``embedding_findings_of``)."""
    from inspect_core.model.sanity import baselines_frame
    caption = decoder_caption(result.source)
    if caption:
        st.caption(md_escape(caption))
    if not base:
        st.info("No labelled, scored images: the baselines need labels.")
    else:
        for b in base:
            (st.success if b.ok else st.error)(md_escape(f"{b.split}: " + "; ".join(b.verdicts)))
        st.dataframe(baselines_frame(base), hide_index=True, width="stretch")
    if alarms is not None:
        class_alarm_panel(alarms)
    if model is not None and scan is not None:
        if st.button("Run the batch-independence check", key=K + "batch_check"):
            check = batch_check(model, scan, result)
            if check is None:
                st.warning("Not enough readable images for the batch-independence check.")
            else:
                (st.success if check.ok else st.error)(md_escape(check.detail))
    if embedding is None:
        from inspect_core.model.models import EMBEDDING_HOWTO
        st.caption(md_escape(f"The model gives no embeddings (the note above says why): kNN checks skipped. To get "
                             f"them, {EMBEDDING_HOWTO}."))
    else:
        dups, outliers = embedding
        st.text(f"Embedding kNN: {len(dups)} near-duplicate pairs (the model's calibrated cut; joined with the "
                f"pixel evidence on the Findings page), {len(outliers)} outliers")
        if len(dups):
            st.dataframe(dups.head(200), hide_index=True, width="stretch")
        if len(outliers):
            st.dataframe(outliers.head(200), hide_index=True, width="stretch")
