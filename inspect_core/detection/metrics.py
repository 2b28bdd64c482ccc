"""COCO detection metrics (pycocotools ``COCOeval`` for ``bbox``), vectorised over images and categories.

mAP@[.5:.95], AP50, AP75, AP by object size (small < 32^2 px^2 <= medium < 96^2 px^2 <= large, by the
annotation's ``area`` or w x h), per-category AP and precision-recall curves (101 recall points), with COCO's
rules: at most ``max_dets`` predictions per image and category, crowd and out-of-range annotations ignored,
precision made monotone, a category without annotations left out of the means. Agreement with pycocotools is
tested to 1e-3 (tests/test_detection_metrics.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .match import MATCH_DEFAULTS, Boxes

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
# (name, lowest area, highest area) in px^2, as COCOeval's areaRng
AREA_RANGES = (("all", 0.0, 1e10), ("small", 0.0, 32.0 ** 2), ("medium", 32.0 ** 2, 96.0 ** 2),
               ("large", 96.0 ** 2, 1e10))


@dataclass
class DetectionMetrics:
    """``precision[t, r, k, a]``: IoU threshold t, recall point r, category k, area range a (NaN: no annotation)."""
    precision: np.ndarray
    categories: list[str]
    n_annotations: np.ndarray      # per category (not crowd), all sizes
    n_predictions: np.ndarray      # per category, kept predictions

    def ap(self, iou: float | None = None, area: str = "all", category: int | None = None) -> float:
        """COCO AP: the mean over recall points, IoU thresholds (or the one nearest ``iou``) and categories."""
        a = [n for n, _, _ in AREA_RANGES].index(area)
        p = self.precision[:, :, :, a]
        if iou is not None:
            p = p[[int(np.argmin(np.abs(IOU_THRESHOLDS - iou)))]]
        if category is not None:
            p = p[:, :, [category]]
        return float(np.nanmean(p)) if np.isfinite(p).any() else float("nan")

    def summary(self) -> dict:
        return {"map": self.ap(), "ap50": self.ap(0.5), "ap75": self.ap(0.75),
                "ap_small": self.ap(area="small"), "ap_medium": self.ap(area="medium"),
                "ap_large": self.ap(area="large")}

    def per_class(self) -> pd.DataFrame:
        rows = []
        for k, c in enumerate(self.categories):
            rows.append({"category": c, "ap": self.ap(category=k), "ap50": self.ap(0.5, category=k),
                         "ap75": self.ap(0.75, category=k), "ap_small": self.ap(area="small", category=k),
                         "ap_medium": self.ap(area="medium", category=k),
                         "ap_large": self.ap(area="large", category=k),
                         "n_annotations": int(self.n_annotations[k]), "n_predictions": int(self.n_predictions[k])})
        return pd.DataFrame(rows, columns=["category", "ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
                                           "n_annotations", "n_predictions"])

    def pr_curves(self, ious=(0.5, 0.75)) -> pd.DataFrame:
        """Long table: category, iou, recall, precision (area 'all'), for plotting."""
        parts = []
        for iou in ious:
            t = int(np.argmin(np.abs(IOU_THRESHOLDS - iou)))
            for k, c in enumerate(self.categories):
                prec = self.precision[t, :, k, 0]
                if np.isfinite(prec).any():
                    parts.append(pd.DataFrame({"category": c, "iou": float(IOU_THRESHOLDS[t]),
                                               "recall": RECALL_THRESHOLDS, "precision": prec}))
        return (pd.concat(parts, ignore_index=True) if parts
                else pd.DataFrame(columns=["category", "iou", "recall", "precision"]))


def _segment_precision(b: Boxes, m: np.ndarray, gt_ignore: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """precision[r, k] at the 101 recall points for one matching ``m`` (NaN where category k has no annotation)."""
    n_cat = b.n_cat
    npig = np.bincount(b.g_cat[~gt_ignore], minlength=n_cat)
    matched = m >= 0
    p_ignore = np.where(matched, np.r_[gt_ignore, False][m], (b.p_area < lo) | (b.p_area > hi))
    use = b.kept & ~p_ignore
    # pycocotools: images in id order, each image's predictions by score; then a stable sort by score
    idx = b.eval_order[use[b.eval_order]]
    out = np.full((len(RECALL_THRESHOLDS), n_cat), np.nan)
    out[:, npig > 0] = 0.0
    if len(idx) == 0:
        return out
    cat = b.p_cat[idx]
    tp = matched[idx].astype(np.float64)
    seg_start = np.searchsorted(cat, np.arange(n_cat), side="left")
    seg_end = np.searchsorted(cat, np.arange(n_cat), side="right")
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    base = np.r_[0.0, ctp][seg_start][cat]
    base_fp = np.r_[0.0, cfp][seg_start][cat]
    tps, fps = ctp - base, cfp - base_fp
    with np.errstate(invalid="ignore", divide="ignore"):
        rc = tps / npig[cat]
    pr = tps / (tps + fps + np.spacing(1))
    # monotone precision, from the right, within each category
    rev = pr[::-1] + (n_cat - 1 - cat[::-1]) * 2.0
    pr = (np.maximum.accumulate(rev) - (n_cat - 1 - cat[::-1]) * 2.0)[::-1]
    # recall points: first position with rc >= r, per category
    key = np.where(np.isfinite(rc), rc, 0.0) + cat * 2.0
    for k in np.nonzero(npig > 0)[0]:
        s, e = seg_start[k], seg_end[k]
        if s == e:
            continue
        pos = np.searchsorted(key[s:e], RECALL_THRESHOLDS + k * 2.0, side="left")
        ok = pos < (e - s)
        out[ok, k] = pr[s:e][pos[ok]]
    return out


def coco_metrics(ann: pd.DataFrame, pred: pd.DataFrame, params: dict | None = None,
                 boxes: Boxes | None = None) -> DetectionMetrics:
    """COCO bbox evaluation of ``pred`` against ``ann`` (both in px; see ``match.Boxes``)."""
    p = {**MATCH_DEFAULTS, **(params or {})}
    b = boxes or Boxes(ann, pred, p["max_dets"])
    precision = np.full((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), b.n_cat, len(AREA_RANGES)), np.nan)
    for a, (_, lo, hi) in enumerate(AREA_RANGES):
        gt_ignore = b.g_crowd | (b.g_area < lo) | (b.g_area > hi)
        for t, iou in enumerate(IOU_THRESHOLDS):
            m = b.match(float(iou), gt_ignore)
            precision[t, :, :, a] = _segment_precision(b, m, gt_ignore, lo, hi)
    n_ann = np.bincount(b.g_cat[~b.g_crowd], minlength=b.n_cat)
    n_pred = np.bincount(b.p_cat[b.kept], minlength=b.n_cat)
    cats = [str(c) for c in b.categories] or [""]
    return DetectionMetrics(precision=precision, categories=cats[:b.n_cat], n_annotations=n_ann,
                            n_predictions=n_pred)


BACKGROUND = "(background)"


def confusion_matrix(ann: pd.DataFrame, pred: pd.DataFrame, min_score: float = 0.25,
                     params: dict | None = None) -> pd.DataFrame:
    """Counts of annotated class (rows) x predicted class (columns) with a background row and column, from the
    COCO matching at IoU ``iou_match`` of the predictions scoring >= ``min_score``: a true positive is on the
    diagonal; a false positive over an annotation of another class (IoU >= iou_match, TIDE 'classification')
    is in that class's row, any other false positive in the background row; an annotation no prediction
    matched or covered is in the background column."""
    from .match import match_boxes

    pred = pred.loc[pred["score"] >= min_score].reset_index(drop=True)
    ga, pa = match_boxes(ann, pred, params)
    cats = sorted(set(ann["category"].astype("str")) | set(pred["category"].astype("str")))
    labels = cats + [BACKGROUND]
    out = pd.DataFrame(0, index=pd.Index(labels, name="annotated"), columns=pd.Index(labels, name="predicted"))
    cat_of_ann = ga["category"].astype("str").to_numpy()
    for row in pa.loc[pa["is_tp"] | pa["error_type"].isin(
            ["classification", "localization", "both", "duplicate", "background"])].itertuples():
        if row.is_tp:
            out.loc[cat_of_ann[row.ann_row], str(row.category)] += 1
        elif row.error_type == "classification":
            out.loc[cat_of_ann[row.other_ann_row], str(row.category)] += 1
        else:
            out.loc[BACKGROUND, str(row.category)] += 1
    covered = set(pa.loc[pa["error_type"] == "classification", "other_ann_row"])
    missed = ga.loc[(ga["error_type"] == "missed") & ~ga.index.isin(covered), "category"].astype("str")
    for c, n in missed.value_counts().items():
        out.loc[c, BACKGROUND] += int(n)
    return out
