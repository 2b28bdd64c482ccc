"""Detection metrics of a slice: COCO mAP@[.5:.95], AP50, AP75 and AP by object size, over the boxes of the slice's
images, for all categories or one (``class:``), computed by ``detection.metrics.coco_metrics`` (the numbers the
detection triage reports, within 1e-3 of pycocotools).

A test file says e.g. ``{name: bird AP50, slice: held_out, metric: ap50, class: bird, min: 0.5}``. AP has no
interval here (it is decided on its value); its support ``n`` is the number of annotated boxes it counts (not
crowd regions, of the class when one is named), so ``min_support`` guards small slices as for the other metrics.
A detection metric on a classification run, or a classification metric on a detection run, is a ``MetricError``
naming the metric and what to give instead; ``kind_mismatch`` finds such tests before a run (the CLI's exit 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import MetricError, MetricValue

# metric -> (IoU threshold or None for the mean over .5:.95, object size range)
DETECTION_METRICS = {"map": (None, "all"), "ap50": (0.5, "all"), "ap75": (0.75, "all"),
                     "ap_small": (None, "small"), "ap_medium": (None, "medium"), "ap_large": (None, "large")}


@dataclass
class DetectionData:
    """A detector's boxes against the dataset's, in pixels: the evaluated annotations and predictions of a
    ``DetectionResult`` (``image_id``, ``category``, ``box_*_px``, ``iscrowd``, ``score``), and its parameters."""
    annotations: pd.DataFrame
    predictions: pd.DataFrame
    params: dict
    categories: list[str]

    @classmethod
    def of(cls, result) -> DetectionData:
        params = {k: v for k, v in result.summary.get("params", {}).items() if k in ("iou_match", "iou_background",
                                                                                      "max_dets")}
        cats = list(result.summary.get("categories") or sorted(set(result.annotations["category"].astype(str))))
        return cls(result.annotations, result.predictions, params, [str(c) for c in cats])


def detection_metric(name: str, det: DetectionData, image_ids: pd.Series, mask: np.ndarray, params: dict,
                     defaults: dict) -> MetricValue:
    """One detection metric on the boxes of the images ``image_ids[mask]``."""
    from ..detection.metrics import AREA_RANGES, coco_metrics
    iou, area = DETECTION_METRICS[name]
    chosen = set(image_ids[mask].astype(str))
    ann = det.annotations.loc[det.annotations["image_id"].astype(str).isin(chosen)].reset_index(drop=True)
    pred = det.predictions.loc[det.predictions["image_id"].astype(str).isin(chosen)].reset_index(drop=True)
    cls = params.get("class")
    if cls is not None and str(cls) not in det.categories:
        raise MetricError(f"class {cls!r} is not among the dataset's box categories ({', '.join(det.categories[:8])})")
    if cls is not None:
        ann = ann.loc[ann["category"].astype(str) == str(cls)].reset_index(drop=True)
        pred = pred.loc[pred["category"].astype(str) == str(cls)].reset_index(drop=True)
    crowd = (ann["iscrowd"].fillna(False).astype(bool).to_numpy() if "iscrowd" in ann.columns
             else np.zeros(len(ann), bool))
    box_area = (ann["area"].to_numpy(np.float64) if "area" in ann.columns
                else (ann["box_w_px"] * ann["box_h_px"]).to_numpy(np.float64))
    lo, hi = next((lo, hi) for a, lo, hi in AREA_RANGES if a == area)
    n = int((~crowd & (box_area >= lo) & (box_area <= hi)).sum())
    if n == 0:
        return MetricValue(math.nan, math.nan, math.nan, 0)
    value = coco_metrics(ann, pred, det.params).ap(iou, area)
    return MetricValue(value, math.nan, math.nan, n, "none (AP, decided on its value)")


def kind_mismatch(suite, kind: str) -> str | None:
    """For a run of ``kind`` ("classification" or "detection"): a message naming the first test whose metric is of
    the other kind (its line and what to give instead), or None."""
    from .metrics import MODEL_METRICS
    for t in suite.tests:
        if kind == "classification" and t.metric in DETECTION_METRICS:
            return (f"test {t.name!r} (line {t.line}) uses the detection metric {t.metric}, but this run scores a "
                    "classifier: give a detector's boxes (--detections FILE, or --model with a detector sidecar), "
                    "or move the test to a detection test file")
        if kind == "detection" and t.metric in MODEL_METRICS:
            return (f"test {t.name!r} (line {t.line}) uses the classification metric {t.metric}, but this run has a "
                    "detector's boxes: use a detection metric (" + ", ".join(DETECTION_METRICS) + ") or run the "
                    "test file with a classifier (--model / --predictions)")
    return None
