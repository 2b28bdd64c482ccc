"""Object-detection triage: a detector's boxes held against the dataset's annotations, in one call.

``triage_detections(dataset_or_scan, predictions_path)`` reads the predictions (``formats``), matches them per
class by IoU (``match``), computes the COCO metrics (``metrics``) and the annotation errors and per-image
error score (``errors``), and returns a ``DetectionResult`` whose ``save(dir)`` writes the tables. The CLI,
a page and a model-wing task module are its callers; none of them repeats the chain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import loader_coco, loaders
from ..export import safe_csv_bytes
from ..schema import finding_frame
from .errors import ERROR_DEFAULTS, annotation_errors, image_error_scores
from .formats import Categories, coco_image_ids, read_predictions
from .match import MATCH_DEFAULTS, Boxes, match_boxes
from .metrics import DetectionMetrics, coco_metrics, confusion_matrix

DEFAULTS = {**MATCH_DEFAULTS, **ERROR_DEFAULTS, "tide_weight": 0.1,
            "confusion_min_score": 0.25}  # predictions counted in the confusion matrix score at least this


@dataclass
class DetectionResult:
    annotations: pd.DataFrame     # one row per annotated box: matched or missed, with the evidence
    predictions: pd.DataFrame     # one row per predicted box: TP/FP and its TIDE error type
    images: pd.DataFrame          # one row per image, worst (highest detection_error_score) first
    errors: pd.DataFrame          # ranked annotation errors (errors.ERROR_COLUMNS)
    metrics: DetectionMetrics
    problems: pd.DataFrame        # findings about the inputs (bad rows, unknown images or categories)
    summary: dict = field(default_factory=dict)
    confusion: pd.DataFrame | None = None  # annotated x predicted class, with background (metrics.confusion_matrix)

    def findings(self) -> pd.DataFrame:
        """Annotation errors and input problems in the scan's findings schema."""
        return finding_frame(pd.concat([self.errors, self.problems], ignore_index=True))

    def save(self, out_dir) -> dict[str, Path]:
        """Write the per-box, per-image, ranked-error, per-class, PR-curve and problem tables (CSV) and
        detection_summary.json into ``out_dir`` (created). Returns {table name: path}."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tables = {"detection_annotations": self.annotations, "detection_predictions": self.predictions,
                  "detection_images": self.images, "detection_errors": self.errors,
                  "detection_per_class": self.metrics.per_class(), "detection_pr_curves": self.metrics.pr_curves(),
                  "detection_problems": self.problems}
        if self.confusion is not None:
            tables["detection_confusion"] = self.confusion.reset_index()
        paths = {}
        for name, df in tables.items():
            paths[name] = out / f"{name}.csv"
            paths[name].write_bytes(safe_csv_bytes(df))
        paths["detection_summary"] = out / "detection_summary.json"
        paths["detection_summary"].write_text(json.dumps(_jsonable(self.summary), indent=1) + "\n", encoding="utf-8")
        return paths


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), 6)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _image_sizes(dataset_or_scan, dataset: loaders.Dataset) -> dict:
    images = getattr(dataset_or_scan, "images", None)
    if isinstance(dataset_or_scan, loaders.Dataset) or images is None or "width_px" not in images.columns:
        return {}
    ok = images[["image_id", "width_px", "height_px"]].dropna()
    return {i: (float(w), float(h)) for i, w, h in ok.itertuples(index=False)}


def _size_reader(dataset: loaders.Dataset, known: dict):
    """image_id -> (width_px, height_px) from the scan, else from the image header (nothing decoded)."""
    from PIL import Image

    def size_of(image_id: str):
        if image_id in known:
            return known[image_id]
        path = dataset.path_of(image_id)
        try:
            with Image.open(path) as im:
                known[image_id] = (float(im.size[0]), float(im.size[1]))
        except Exception:  # noqa: BLE001 - an unreadable image has no size; the caller makes it a finding
            known[image_id] = None
        return known[image_id]
    return size_of


def _annotations_px(dataset_or_scan, dataset: loaders.Dataset, size_of) -> pd.DataFrame:
    ann = getattr(dataset_or_scan, "annotations", None)
    if isinstance(dataset_or_scan, loaders.Dataset) or ann is None:
        ann = dataset.annotations.copy()
        if dataset.boxes_normalised and len(ann):
            sizes = ann["image_id"].map(lambda i: size_of(i) or (np.nan, np.nan))
            w = sizes.map(lambda s: s[0]).astype(float)
            h = sizes.map(lambda s: s[1]).astype(float)
            ann["box_x_px"] *= w
            ann["box_w_px"] *= w
            ann["box_y_px"] *= h
            ann["box_h_px"] *= h
    return ann.copy()


def _dataset_of(dataset_or_scan) -> loaders.Dataset:
    if isinstance(dataset_or_scan, loaders.Dataset):
        return dataset_or_scan
    if hasattr(dataset_or_scan, "dataset"):
        return dataset_or_scan.dataset
    return loaders.load_dataset(dataset_or_scan)


def triage_detections(dataset_or_scan, predictions_path, *, split: str | None = None,
                      image_ids=None, params: dict | None = None) -> DetectionResult:
    """Hold a detector's predictions against the dataset's boxes.

    ``dataset_or_scan``: a ``ScanResult`` (boxes already in px), a loaded ``Dataset`` or a dataset root.
    ``predictions_path``: a COCO results JSON, a YOLO prediction folder, or a CSV/Parquet table (see
    ``formats``), or a DataFrame with the table's columns (what a detection task module of the model wing
    has after running a detector). ``split`` / ``image_ids`` restrict the evaluation to some images (default: all
    images of the dataset; an image without predictions counts as predicted empty). ``params`` overrides ``DEFAULTS``.
    Raises ``formats.PredictionsError`` / ``loaders.DatasetError`` (one line, what to do) when the inputs
    cannot be used at all; every bad row is a finding in ``problems``.
    """
    unknown = sorted(set(params or {}) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown detection parameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **(params or {})}
    ds = _dataset_of(dataset_or_scan)
    if not ds.has_boxes:
        raise loaders.DatasetError(f"dataset {ds.root} has no boxes (no COCO JSON, no YOLO labels): detection "
                                   "triage holds predictions against annotated boxes; add annotations.json or "
                                   "use the classification triage")
    size_of = _size_reader(ds, _image_sizes(dataset_or_scan, ds))
    images = ds.images
    if split is not None:
        images = images.loc[images["split"].astype("str") == str(split)]
    if image_ids is not None:
        images = images.loc[images["image_id"].isin(set(image_ids))]
    eval_ids = images["image_id"].astype("str").tolist()
    ann_all = _annotations_px(dataset_or_scan, ds, size_of)
    coco_path = loader_coco._find_coco_json(ds.root) if ds.format in ("coco", "folder", "csv") else None
    coco_ids, coco_cats = coco_image_ids(coco_path, lambda fn: loader_coco._coco_resolve(ds.root, fn, ["", "images"]))
    names = list(ds.box_categories) or (list(ds.classes) if ds.format in ("coco", "yolo") else [])
    if not names:
        names = [str(c) for c in ann_all["category"].dropna().unique()]
    cats = Categories.of(ann_all.loc[ann_all["category"].isin(names)], names)
    for k, v in coco_cats.items():
        cats.id_to_name.setdefault(k, v)
    if ds.format == "yolo":                        # class k is the k-th name, annotated or not
        cats.id_to_name.update({k: str(v) for k, v in enumerate(ds.classes)})
    cats = Categories(cats.names, cats.id_to_name)
    all_ids = ds.images["image_id"].astype("str").tolist()
    pred, problems, form = read_predictions(predictions_path, cats, all_ids, coco_ids, size_of)
    # evaluation set: the chosen images; boxes of unknown categories or without area are left out (the scan's
    # box_unknown_category / box_degenerate findings)
    in_eval = set(eval_ids)
    known_cat = ann_all["category"].astype("str").isin(set(cats.names))
    ann = ann_all.loc[ann_all["image_id"].isin(in_eval) & known_cat].reset_index(drop=True)
    xywh = ann[["box_x_px", "box_y_px", "box_w_px", "box_h_px"]].to_numpy(np.float64)
    ann_ok = np.isfinite(xywh).all(axis=1) & (xywh[:, 2] > 0) & (xywh[:, 3] > 0)   # else box_degenerate
    ann = ann.loc[ann_ok].reset_index(drop=True)
    pred = pred.loc[pred["image_id"].isin(in_eval)].reset_index(drop=True)
    b = Boxes(ann, pred, int(p["max_dets"]))
    ann_boxes, pred_boxes = match_boxes(ann, pred, p, boxes=b)
    metrics = coco_metrics(ann, pred, p, boxes=b)
    errors = annotation_errors(ann, pred, p, boxes=b, matched=(ann_boxes, pred_boxes))
    per_image = image_error_scores(pd.Series(eval_ids, dtype="str"), errors, pred_boxes, ann_boxes,
                                   p["tide_weight"])
    tide = pred_boxes["error_type"].value_counts().to_dict()
    tide["missed"] = int((ann_boxes["error_type"] == "missed").sum())
    summary = {"predictions_form": form, "n_images": len(eval_ids), "n_annotations": len(ann),
               "n_predictions": len(pred), "n_true_positives": int(pred_boxes["is_tp"].sum()),
               "n_annotations_left_out": int((~known_cat).sum() + (~ann_ok).sum()),
               "categories": cats.names, "metrics": metrics.summary(),
               "tide_counts": {t: int(tide.get(t, 0)) for t in
                               ("classification", "localization", "both", "duplicate", "background", "missed")},
               "annotation_errors": errors["check"].value_counts().to_dict(), "params": p}
    confusion = confusion_matrix(ann, pred, p["confusion_min_score"], p)
    return DetectionResult(annotations=ann_boxes, predictions=pred_boxes, images=per_image, errors=errors,
                           metrics=metrics, problems=finding_frame(problems), summary=summary, confusion=confusion)
