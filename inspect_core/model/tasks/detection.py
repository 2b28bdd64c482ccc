"""Object detection: a detector model file (TorchScript or ``.pt2``) with torchvision-style output, run by the batch
pipeline, its boxes mapped back to source pixels and handed to ``detection.triage_detections``.

The model takes the batch the preprocessing sidecar makes (the same sidecar JSON classifiers use) and returns, per
image, a dict with ``boxes`` (float (m, 4), x0 y0 x1 y1 in pixels of the MODEL INPUT), ``labels`` (int (m,)) and
``scores`` (float (m,)): a list of such dicts, or torchvision's scripted ``(losses, detections)`` pair. Boxes go back
to the source image through the inverse of the sidecar's resize (``input_to_source``: stretch, letterbox, centre
crop, shorter side then centre crop). Labels name categories by the sidecar's ``class_names`` (label k is
``class_names[k]``; a torchvision model lists ``__background__`` first), or, with ``"labels": "category_id"`` in the
sidecar, by the dataset's COCO category ids. Name the task in the sidecar with ``"task": "detection"``.

``run_detector(dataset, model)`` is the one chain (pipeline -> predictions table -> ``triage_detections``); the
CLI and the page are its callers. A malformed output (no ``boxes``, NaN, a wrong shape) is a ``DetectorOutputError``
naming the model and the field at load time, or an error row for the one image it happens on while scoring.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import LabelFindings, Metrics, SanityFindings, TaskScores
from ..preprocess import letterbox_size

OUTPUT_FIELDS = ("boxes", "labels", "scores")
LABEL_MODES = ("class_names", "category_id")
PREDICTION_TABLE_COLUMNS = ["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"]


def _model_load_error():
    from ..models import ModelLoadError
    return ModelLoadError


class DetectorOutputError(ValueError):
    """A detector's output is not the torchvision form; the message names the model and the field."""


def per_image_outputs(output, n_images: int, name: str) -> list:
    """A detector's raw output for a batch -> one dict per image (still tensors). Accepts a list/tuple of dicts
    or torchvision's scripted ``(losses, detections)`` pair; anything else is a ``DetectorOutputError``."""
    if (isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], dict)
            and isinstance(output[1], (list, tuple))):
        output = output[1]
    if isinstance(output, dict) and all(k in output for k in OUTPUT_FIELDS) and n_images == 1:
        output = [output]
    if not isinstance(output, (list, tuple)) or not all(isinstance(d, dict) for d in output):
        raise DetectorOutputError(f"detector {name} returned a {type(output).__name__}, not a list with one dict "
                                  f"per image ({', '.join(OUTPUT_FIELDS)}): export a detector with torchvision-style "
                                  "output")
    if len(output) != n_images:
        raise DetectorOutputError(f"detector {name} returned {len(output)} dicts for a batch of {n_images} images; "
                                  "it must return one per image")
    return list(output)


def image_output(d: dict, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's output (numpy or tensors) -> (boxes_xyxy (m, 4) float64, labels (m,) int64, scores (m,)
    float64); raises ``DetectorOutputError`` naming the model and the field when it is not usable."""
    missing = [k for k in OUTPUT_FIELDS if k not in d]
    if missing:
        raise DetectorOutputError(f"detector {name}: its output has no {', '.join(repr(k) for k in missing)} "
                                  f"(keys: {', '.join(map(str, list(d)[:8])) or 'none'}); each image's dict needs "
                                  "boxes (m, 4) xyxy px, labels (m,), scores (m,)")
    arrays = {}
    for k in OUTPUT_FIELDS:
        v = d[k]
        if hasattr(v, "detach"):
            v = v.detach().float().cpu().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
        try:
            arrays[k] = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise DetectorOutputError(f"detector {name}: field {k!r} is not numbers") from None
    boxes, labels, scores = arrays["boxes"], arrays["labels"], arrays["scores"]
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DetectorOutputError(f"detector {name}: field 'boxes' has shape {tuple(boxes.shape)}; expected (m, 4) "
                                  "(x0, y0, x1, y1 in input pixels)")
    m = boxes.shape[0]
    for k, v in (("labels", labels), ("scores", scores)):
        if v.ndim > 2 or v.ndim == 2 and v.shape[1] != 1 or v.reshape(-1).shape[0] != m:
            raise DetectorOutputError(f"detector {name}: field {k!r} has shape {tuple(v.shape)}; expected ({m},), "
                                      "one per box")
    labels, scores = labels.reshape(-1), scores.reshape(-1)
    for k, v in (("boxes", boxes), ("labels", labels), ("scores", scores)):
        if not np.isfinite(v).all():
            raise DetectorOutputError(f"detector {name}: field {k!r} has NaN or infinite values")
    if not (labels == np.round(labels)).all():
        raise DetectorOutputError(f"detector {name}: field 'labels' holds non-integer values")
    return boxes, labels.astype(np.int64), scores


def input_to_source(source_size: tuple[float, float], spec) -> tuple[float, float, float, float]:
    """The affine map from model-input pixels back to source pixels for one image of ``source_size`` (width,
    height): ``x_src = x_in * ax + bx``, ``y_src = y_in * ay + by``; returns (ax, bx, ay, by). The inverse of
    ``preprocess.geometry`` for each resize mode (Pillow's own rounding of sizes and offsets)."""
    src_w, src_h = float(source_size[0]), float(source_size[1])
    in_w, in_h = spec.input_size
    if spec.resize == "stretch":
        return src_w / in_w, 0.0, src_h / in_h, 0.0
    if spec.resize == "letterbox":
        new_w, new_h = letterbox_size((src_w, src_h), (in_w, in_h))
        left = round((in_w - new_w) * 0.5) if new_w != in_w else 0
        top = round((in_h - new_h) * 0.5) if new_h != in_h else 0
        return src_w / new_w, -left * src_w / new_w, src_h / new_h, -top * src_h / new_h
    if spec.resize == "shorter_then_center_crop":
        scale = spec.resize_shorter_px / max(1, min(src_w, src_h))
        new_w, new_h = max(in_w, round(src_w * scale)), max(in_h, round(src_h * scale))
        left, top = (new_w - in_w) // 2, (new_h - in_h) // 2
        return src_w / new_w, left * src_w / new_w, src_h / new_h, top * src_h / new_h
    left, top = (int(src_w) - in_w) // 2, (int(src_h) - in_h) // 2          # center_crop
    return 1.0, float(left), 1.0, float(top)


def boxes_to_source(boxes_xyxy_in: np.ndarray, source_size, spec, clip: bool = True) -> np.ndarray:
    """(m, 4) xyxy boxes in model-input pixels -> (m, 4) xywh boxes in source pixels (clipped to the image)."""
    ax, bx, ay, by = input_to_source(source_size, spec)
    b = np.asarray(boxes_xyxy_in, dtype=np.float64).reshape(-1, 4)
    x0, x1 = b[:, 0] * ax + bx, b[:, 2] * ax + bx
    y0, y1 = b[:, 1] * ay + by, b[:, 3] * ay + by
    if clip:
        w, h = float(source_size[0]), float(source_size[1])
        x0, x1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
        y0, y1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


class DetectorModelMixin:
    """``LoadedModel.forward`` for a detector: the per-image dicts (tensors), not a logits tensor."""

    def forward(self, batch):
        return per_image_outputs(self.module(batch), int(batch.shape[0]), self.path.name)


def check_detector(module, spec, device, name: str) -> int | None:
    """Run zero inputs of the spec's shape through the detector and check its output form (a clear
    ``ModelLoadError`` naming the model and the field otherwise). Returns 1 when batches of 2 fail, else None."""
    import torch
    ModelLoadError = _model_load_error()
    shape = spec.input_shape
    try:
        with torch.inference_mode():
            out = per_image_outputs(module(torch.zeros((1, *shape), device=device)), 1, name)
        image_output(out[0], name)
    except DetectorOutputError as exc:
        raise ModelLoadError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types
        from ..models import _one_line
        raise ModelLoadError(f"detector {name} rejected an input of shape (1, {shape[0]}, {shape[1]}, {shape[2]}) "
                             f"built from the preprocessing (input_size {list(spec.input_size)}): "
                             f"{_one_line(exc, 140)}; fix input_size / channel_order in the sidecar") from None
    try:
        with torch.inference_mode():
            per_image_outputs(module(torch.zeros((2, *shape), device=device)), 2, name)
    except Exception:  # noqa: BLE001 - e.g. a program exported with a fixed batch of 1
        return 1
    return None


def load_detector(path, spec, *, device=None, kind: str | None = None, max_bytes: int | None = None):
    """A TorchScript / ``.pt2`` detector file loaded for the pipeline (``LoadedModel`` whose ``forward`` gives the
    per-image dicts). State dicts are not taken (no factory for detectors). Raises ``ModelLoadError``."""
    import dataclasses

    import torch

    from .. import models as m
    path = Path(path).expanduser()
    if not path.exists():
        raise m.ModelLoadError(f"detector file {path} not found; check the path")
    if path.is_dir():
        raise m.ModelLoadError(f"detector path {path} is a folder; give the model file inside it")
    form, why = m.choose_form(path, None, kind)
    m.check_model_file(path, max_bytes)
    found = m.detect_format(path)
    if form == "state_dict" or found == "state_dict":
        raise m.ModelLoadError(f"{path.name} is a state dict: a detector must be a TorchScript or .pt2 program "
                               "(torch.jit.script / torch.export of the model)")
    if found != form:
        raise m.ModelLoadError(f"refused {path.name}: given as {m.FORM_NAMES[form]} ({why}) but it is a "
                               f"{m.FORM_NAMES[found]}; nothing in it was loaded")
    dev = device if isinstance(device, torch.device) else m.pick_device(device)
    module = m.load_torchscript(path) if form == "torchscript" else m.load_exported(path, dev)
    try:
        module = module.to(dev)
    except Exception as exc:  # noqa: BLE001
        if dev.type != "cpu":
            raise m.ModelLoadError(f"could not move {path.name} to {dev}: {m._one_line(exc)}") from None
    m._set_eval(module)
    max_batch = check_detector(module, spec, dev, path.name)
    cls = dataclasses.make_dataclass("DetectorModel", [], bases=(DetectorModelMixin, m.LoadedModel))
    model = cls(module=module, kind=form, path=path, file_sha256=m.file_sha256(path), device=dev, spec=spec,
                max_batch=max_batch, form_reason=why)
    if max_batch == 1:
        model.notes.append("detector accepts only one image per batch; scoring one at a time")
    return model


def image_sizes(dataset, image_ids: Sequence[str], spec=None) -> dict:
    """image_id -> (width_px, height_px) of the source image (the header only; upright when the spec turns photos
    by their EXIF orientation); None for an image whose header cannot be read."""
    from PIL import Image
    out = {}
    for image_id in image_ids:
        try:
            with Image.open(dataset.path_of(image_id)) as im:
                size = im.size
                if spec is not None and spec.exif_transpose and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    size = (size[1], size[0])
            out[image_id] = (float(size[0]), float(size[1]))
        except Exception:  # noqa: BLE001 - an unreadable image is its error row, not a crash
            out[image_id] = None
    return out


class Detection:
    """The detection task. ``dataset`` (a loaded ``Dataset`` with boxes) and ``spec`` (the detector's preprocessing)
    are needed to map boxes back and to triage; ``get_task("detection")`` gives one without them (then only
    ``from_outputs`` with sizes given works)."""
    name = "detection"

    def __init__(self, dataset=None, spec=None, params: dict | None = None, model_name: str = "detector"):
        self.dataset = dataset
        self.spec = spec
        self.params = params
        self.model_name = model_name
        self.predictions: pd.DataFrame | None = None
        self.result = None

    def label_mode(self) -> str:
        mode = str((self.spec.extra if self.spec is not None else {}).get("labels", "class_names"))
        if mode not in LABEL_MODES:
            raise DetectorOutputError(f"sidecar field 'labels' is {mode!r}; expected one of {', '.join(LABEL_MODES)}")
        return mode

    def from_outputs(self, images: pd.DataFrame, outputs, class_names: Sequence[str], errors: list,
                     sizes: dict | None = None) -> TaskScores:
        """Per-image dicts (model-input frame) -> the predictions table in source pixels (kept as
        ``self.predictions``), a per-image table (``n_boxes``, ``max_score``, ``error``) and, per image and class,
        the highest box score (0: no box of the class; NaN for an image without usable output, and in
        ``"labels": "category_id"`` mode). An output the task
        cannot use (NaN, wrong shape, an unknown label) is that image's error, naming the model and the field."""
        ids = images["image_id"].astype(str).tolist()
        if sizes is None:
            sizes = image_sizes(self.dataset, ids, self.spec)
        by_id = self.label_mode() == "category_id"
        names = list(class_names)
        parts, n_boxes, top = [], np.zeros(len(ids), np.int64), np.full(len(ids), np.nan)
        best = np.full((len(ids), len(names)), np.nan, np.float32)     # per image and class: the highest score
        notes: list[str] = []
        outputs = outputs if outputs is not None and len(outputs) == len(ids) else [None] * len(ids)
        for k, (image_id, out) in enumerate(zip(ids, outputs)):
            if errors[k]:
                continue
            if not isinstance(out, dict):
                errors[k] = f"detector {self.model_name} gave no output for this image"
                continue
            try:
                boxes, labels, scores = image_output(out, self.model_name)
                if not by_id and len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
                    bad = int(labels[(labels < 0) | (labels >= len(names))][0])
                    raise DetectorOutputError(f"detector {self.model_name}: field 'labels' has {bad}, outside the "
                                              f"sidecar's {len(names)} class_names ({', '.join(names[:8])}); list "
                                              "every class in the model's label order")
            except DetectorOutputError as exc:
                errors[k] = str(exc)
                continue
            size = sizes.get(image_id)
            if size is None:
                errors[k] = "the image's size could not be read, so its boxes cannot be mapped back"
                continue
            xywh = boxes_to_source(boxes, size, self.spec)
            cats = labels.tolist() if by_id else [names[i] for i in labels]
            parts.append(pd.DataFrame({"image_id": image_id, "category": pd.Series(cats, dtype=object),
                                       "box_x_px": xywh[:, 0], "box_y_px": xywh[:, 1], "box_w_px": xywh[:, 2],
                                       "box_h_px": xywh[:, 3], "score": scores}))
            n_boxes[k] = len(scores)
            top[k] = scores.max() if len(scores) else np.nan
            if not by_id:
                best[k] = 0.0
                np.maximum.at(best[k], labels, scores.astype(np.float32))
        pred = (pd.concat(parts, ignore_index=True) if parts else
                pd.DataFrame({c: pd.Series([], dtype="float64" if c.startswith("box") or c == "score" else "object")
                              for c in PREDICTION_TABLE_COLUMNS}))
        self.predictions = pred[PREDICTION_TABLE_COLUMNS]
        n_err = sum(1 for e in errors if e)
        if n_err:
            notes.append(f"{n_err} image(s) gave no usable detector output (see the error column)")
        table = pd.DataFrame({"image_id": ids, "label": images["label"].to_numpy(), "split": images["split"].to_numpy(),
                              "n_boxes": n_boxes, "max_score": top,
                              "error": pd.array([e or None for e in errors], dtype="string")})
        return TaskScores(table, best, notes, [])

    def from_predictions(self, path, images: pd.DataFrame, **options):
        from ..predictions import PredictionsError
        raise PredictionsError("a detector's predictions file is read by `score ROOT --detections FILE` (COCO "
                               "results JSON, YOLO prediction folder or CSV/Parquet table), not --predictions")

    def out_of_fold(self, paths, images, scores, **options) -> np.ndarray:
        raise NotImplementedError("out-of-fold predictions are for classifiers")

    def triaged(self):
        """``triage_detections`` of the dataset against the predictions ``from_outputs`` made (once)."""
        if self.result is None:
            from ...detection.triage import triage_detections
            if self.predictions is None or self.dataset is None:
                raise ValueError("run the detector first (from_outputs) on a dataset with boxes")
            self.result = triage_detections(self.dataset, self.predictions, params=self.params)
        return self.result

    def label_issues(self, scores, *, trained_on=None, probe: bool = False, oof=None) -> LabelFindings:
        result = self.triaged()
        return LabelFindings(result.errors, pd.DataFrame({"finding": pd.Series([], dtype=object)}),
                             ["annotation errors found through the detector (detection triage)"])

    def metrics(self, scores, issues: pd.DataFrame) -> Metrics:
        result = self.triaged()
        conf = result.confusion if result.confusion is not None else pd.DataFrame()
        return Metrics(result.metrics.summary(), result.metrics.per_class(), conf)

    def sanity(self, scores) -> SanityFindings:
        return SanityFindings([], pd.DataFrame(columns=["level", "verdict"]), [])

    def listed_issues(self, issues: pd.DataFrame) -> pd.DataFrame:
        return issues


def check_categories(spec, dataset) -> None:
    """The sidecar's class names (or ``"labels": "category_id"``) against the dataset's box categories: none in
    common is a ``DetectorOutputError`` naming both lists."""
    if str(spec.extra.get("labels", "class_names")) == "category_id":
        return
    cats = [str(c) for c in (list(dataset.box_categories) or list(dataset.classes))]
    if cats and not set(map(str, spec.class_names)) & set(cats):
        raise DetectorOutputError(f"the detector's class_names ({', '.join(list(spec.class_names)[:12])}) match none "
                                  f"of the dataset's box categories ({', '.join(cats[:12])}): list the dataset's "
                                  "category names in the model's label order, or set \"labels\": \"category_id\" "
                                  "when the model's labels are the COCO category ids")


def run_detector(dataset, model, *, params: dict | None = None, split: str | None = None, batch_size=None,
                 workers=None, progress=None, cancel=None):
    """Run a detector (``load_detector``) over the dataset's images and triage its boxes: (DetectionResult,
    ScoreResult). ``split`` restricts both the images run and the evaluation."""
    from ...loaders import DatasetError
    from ..pipeline import score_dataset
    if not dataset.has_boxes:
        raise DatasetError(f"dataset {dataset.root} has no boxes (no COCO JSON, no YOLO labels): a detector's boxes "
                           "are held against annotated boxes; add annotations.json, or score a classifier instead")
    check_categories(model.spec, dataset)
    images = dataset.images
    if split is not None:
        images = images.loc[images["split"].astype("str") == str(split)]
    task = Detection(dataset, model.spec, params=params, model_name=model.path.name)
    scores = score_dataset(model, dataset.root, images, task=task, embeddings=False, use_cache=False, amp=False,
                           batch_size=batch_size, workers=workers, progress=progress, cancel=cancel, decoder="pillow")
    from ...detection.triage import triage_detections
    result = triage_detections(dataset, task.predictions, split=split, params=params)
    errors = scores.table.loc[scores.table["error"].notna(), ["image_id", "error"]]
    if len(errors):
        from ...detection.formats import FAMILY
        extra = pd.DataFrame({"image_id": errors["image_id"], "check": "detector_no_output", "family": FAMILY,
                              "score": 1.0, "detail": errors["error"].astype(str)})
        from ...schema import finding_frame
        result.problems = finding_frame(pd.concat([result.problems, extra], ignore_index=True))
    result.summary["predictions_form"] = f"detector {model.path.name}"
    result.summary["detector"] = {"model_path": str(model.path), "device": str(model.device),
                                  "elapsed_s": round(scores.elapsed_s, 3), "n_images_run": len(images),
                                  "n_image_errors": int(len(errors))}
    return result, scores
