"""Matching predicted boxes to annotated boxes, COCO-style, vectorised over all images at once.

Inputs are two tables in pixels (``box_x_px, box_y_px, box_w_px, box_h_px``: top-left corner, width,
height): annotations (``image_id``, ``category``, optional ``iscrowd``) and predictions (``image_id``,
``category``, ``score``). Everything works on integer codes (image, category) and numpy arrays, so that
100,000 images x 20 boxes take seconds, not minutes.

COCO rules (pycocotools ``COCOeval.evaluateImg``): per image and category, predictions in descending score
(at most ``max_dets``) each take the unmatched annotation of highest IoU >= the threshold, an ordinary
annotation before an ignored one (crowd, or outside the area range); a crowd annotation may be taken
many times and its IoU is intersection / prediction area; a prediction on an ignored annotation is ignored.

TIDE error types (Bolya et al. 2020, ``tide/quantify.py``) for each prediction that is not a true positive,
tested in this order: ``localization`` (best same-class IoU in [bg, fg)), ``classification`` (an other-class
annotation at IoU >= fg), ``duplicate`` (a same-class annotation at IoU >= fg, already taken by a
higher-scoring prediction), ``both`` (best IoU with any annotation in [bg, fg)), ``background`` (below bg).
An annotation no prediction took is ``missed``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

BOX_COLUMNS = ["box_x_px", "box_y_px", "box_w_px", "box_h_px"]
TIDE_TYPES = ("classification", "localization", "both", "duplicate", "background", "missed")
MATCH_DEFAULTS = {
    "iou_match": 0.5,        # IoU at which a prediction matches an annotation (COCO AP50, TIDE's fg)
    "iou_background": 0.1,   # below this IoU with every annotation, a false positive is background (TIDE's bg)
    "max_dets": 100,         # predictions kept per image and category, highest scores first (COCO maxDets)
}


def _xywh(df: pd.DataFrame) -> np.ndarray:
    return df[BOX_COLUMNS].to_numpy(np.float64) if len(df) else np.zeros((0, 4))


def pair_iou(a_xywh: np.ndarray, b_xywh: np.ndarray, b_crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of row-aligned boxes a[k], b[k]; where ``b_crowd`` is set, intersection / area of a (COCO crowd)."""
    ax0, ay0, aw, ah = a_xywh.T
    bx0, by0, bw, bh = b_xywh.T
    iw = np.clip(np.minimum(ax0 + aw, bx0 + bw) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay0 + ah, by0 + bh) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    if b_crowd is not None:
        union = np.where(b_crowd, aw * ah, union)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def candidate_pairs(p_group: np.ndarray, g_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (prediction row, annotation row) pairs that share a group code, without a Python loop per group."""
    if len(p_group) == 0 or len(g_group) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    g_order = np.argsort(g_group, kind="stable")
    g_sorted = g_group[g_order]
    start = np.searchsorted(g_sorted, p_group, side="left")
    stop = np.searchsorted(g_sorted, p_group, side="right")
    n = stop - start
    p_rows = np.repeat(np.arange(len(p_group)), n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    g_rows = g_order[np.repeat(start, n) + offset]
    return p_rows, g_rows


def score_rank(group: np.ndarray, score: np.ndarray, order_key: np.ndarray | None = None) -> np.ndarray:
    """Rank of each prediction within its group by descending score (ties: earlier row first, like
    pycocotools' stable sort)."""
    if len(group) == 0:
        return np.zeros(0, np.int64)
    tie = np.arange(len(group)) if order_key is None else order_key
    order = np.lexsort((tie, -score, group))
    g_sorted = group[order]
    first = np.r_[True, g_sorted[1:] != g_sorted[:-1]]
    start_pos = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.empty(len(group), np.int64)
    rank[order] = np.arange(len(order)) - start_pos
    return rank


def greedy_match(n_pred: int, n_gt: int, p_rows: np.ndarray, g_rows: np.ndarray, iou: np.ndarray,
                 rank: np.ndarray, iou_min: float, gt_ignore: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """COCO greedy matching. Pairs are (prediction, annotation) of the same image and category with their IoU;
    ``rank`` is each prediction's score rank in its group. Returns, per prediction, the matched annotation row
    or -1. Predictions of the same rank are in different groups, so each rank is one vectorised step."""
    matched = np.full(n_pred, -1, np.int64)
    keep = iou >= min(iou_min, 1 - 1e-10)
    if not keep.any():
        return matched
    p, g, v = p_rows[keep], g_rows[keep], iou[keep]
    r = rank[p]
    # an ordinary annotation before an ignored one, then the highest IoU
    key = v + np.where(gt_ignore[g], 0.0, 2.0)
    order = np.lexsort((-key, p, r))
    p, g, r = p[order], g[order], r[order]
    bounds = np.searchsorted(r, np.arange(r.max() + 2), side="left")
    taken = np.zeros(n_gt, bool)
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        if lo == hi:
            continue
        ps, gs = p[lo:hi], g[lo:hi]
        free = ~taken[gs] | gt_crowd[gs]
        ps, gs = ps[free], gs[free]
        if len(ps) == 0:
            continue
        first = np.r_[True, ps[1:] != ps[:-1]]
        ps, gs = ps[first], gs[first]
        matched[ps] = gs
        taken[gs[~gt_crowd[gs]]] = True
    return matched


def _codes(ann: pd.DataFrame, pred: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    both = pd.concat([ann[col], pred[col]], ignore_index=True).astype("str")
    codes, uniques = pd.factorize(both, sort=True)
    return codes[:len(ann)].astype(np.int64), codes[len(ann):].astype(np.int64), uniques


class Boxes:
    """Annotations and predictions as aligned numpy arrays (codes, boxes, scores, ranks), built once and
    shared by matching, metrics and the error finder."""

    def __init__(self, ann: pd.DataFrame, pred: pd.DataFrame, max_dets: int = MATCH_DEFAULTS["max_dets"]):
        self.ann, self.pred = ann.reset_index(drop=True), pred.reset_index(drop=True)
        self.g_img, self.p_img, self.images = _codes(self.ann, self.pred, "image_id")
        self.g_cat, self.p_cat, self.categories = _codes(self.ann, self.pred, "category")
        self.n_cat = max(len(self.categories), 1)
        self.g_box, self.p_box = _xywh(self.ann), _xywh(self.pred)
        crowd = self.ann["iscrowd"] if "iscrowd" in self.ann.columns else pd.Series(False, index=self.ann.index)
        self.g_crowd = crowd.fillna(0).astype(bool).to_numpy()
        self.g_area = (self.ann["area"].to_numpy(np.float64) if "area" in self.ann.columns
                       else self.g_box[:, 2] * self.g_box[:, 3])
        self.p_area = self.p_box[:, 2] * self.p_box[:, 3]
        self.score = self.pred["score"].to_numpy(np.float64) if len(self.pred) else np.zeros(0)
        self.g_group = self.g_img * self.n_cat + self.g_cat
        self.p_group = self.p_img * self.n_cat + self.p_cat
        rank = score_rank(self.p_group, self.score)
        self.kept = rank < max_dets                       # COCO maxDets per image and category
        self.rank = rank
        # same-class pairs (for matching and metrics) with their IoU
        pr, gr = candidate_pairs(self.p_group, self.g_group)
        self.pair_p, self.pair_g = pr, gr
        self.pair_iou = pair_iou(self.p_box[pr], self.g_box[gr], self.g_crowd[gr])

    def match(self, iou_min: float, gt_ignore: np.ndarray | None = None) -> np.ndarray:
        """Matched annotation row per prediction (-1: none), among the kept predictions."""
        ignore = self.g_crowd if gt_ignore is None else gt_ignore
        keep = self.kept[self.pair_p]
        m = greedy_match(len(self.pred), len(self.ann), self.pair_p[keep], self.pair_g[keep], self.pair_iou[keep],
                         self.rank, iou_min, ignore, self.g_crowd)
        m[~self.kept] = -1
        return m


def _best_per_row(n: int, rows: np.ndarray, other: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row the highest value over its pairs and the partner giving it (0.0 / -1 where the row has none)."""
    best = np.zeros(n)
    who = np.full(n, -1, np.int64)
    if len(rows):
        order = np.lexsort((-value, rows))
        r, o, v = rows[order], other[order], value[order]
        first = np.r_[True, r[1:] != r[:-1]]
        best[r[first]] = v[first]
        who[r[first]] = o[first]
    return best, who


def match_boxes(ann: pd.DataFrame, pred: pd.DataFrame, params: dict | None = None,
                boxes: Boxes | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-box tables at IoU ``iou_match``.

    Returns (annotations, predictions): the inputs with, for predictions, ``is_tp``, ``ann_row`` (the matched
    annotation's row, -1), ``iou`` (with it), ``error_type`` (a TIDE type, '' for a true positive, 'ignored'
    for one on a crowd annotation, 'over_max_dets' beyond ``max_dets``), ``best_iou_same`` /
    ``best_iou_other`` / ``other_category`` (the evidence); for annotations, ``is_matched``, ``pred_row``,
    ``iou``, ``error_type`` ('' when matched, else 'missed'), ``best_pred_iou_any`` and ``best_pred_score``
    (the nearest prediction of any class, the evidence for a spurious box)."""
    p = {**MATCH_DEFAULTS, **(params or {})}
    b = boxes or Boxes(ann, pred, p["max_dets"])
    fg, bg = p["iou_match"], p["iou_background"]
    m = b.match(fg)
    n_p, n_g = len(b.pred), len(b.ann)
    on_crowd = np.r_[b.g_crowd, False][m]          # m = -1 reads the padding
    tp = (m >= 0) & ~on_crowd
    ignored = (m >= 0) & ~tp
    # all pairs on the same image, any class (for the error types and the evidence)
    ap, ag = candidate_pairs(b.p_img, b.g_img)
    aiou = pair_iou(b.p_box[ap], b.g_box[ag])
    same = b.p_cat[ap] == b.g_cat[ag]
    best_same, _ = _best_per_row(n_p, ap[same], ag[same], aiou[same])
    best_other, who_other = _best_per_row(n_p, ap[~same], ag[~same], aiou[~same])
    best_any = np.maximum(best_same, best_other)
    err = np.full(n_p, "", dtype=object)
    fp = ~tp & ~ignored & b.kept
    loc = fp & (best_same >= bg) & (best_same < fg)
    cls = fp & ~loc & (best_other >= fg)
    dup = fp & ~loc & ~cls & (best_same >= fg)
    both = fp & ~loc & ~cls & ~dup & (best_any >= bg)
    backg = fp & ~loc & ~cls & ~dup & ~both
    for mask, name in ((loc, "localization"), (cls, "classification"), (dup, "duplicate"), (both, "both"),
                       (backg, "background")):
        err[mask] = name
    err[ignored] = "ignored"
    err[~b.kept] = "over_max_dets"
    pred_out = b.pred.copy()
    pred_out["is_tp"] = tp
    pred_out["ann_row"] = np.where(tp, m, -1)
    m_iou = np.zeros(n_p)
    m_iou[tp] = pair_iou(b.p_box[tp], b.g_box[m[tp]])
    pred_out["iou"] = m_iou
    pred_out["error_type"] = err
    pred_out["best_iou_same"] = best_same
    pred_out["best_iou_other"] = best_other
    cat_names = np.asarray(list(b.categories) + [""], dtype=object)
    other_code = np.where(who_other >= 0, b.g_cat[np.maximum(who_other, 0)] if n_g else -1, -1)
    pred_out["other_category"] = cat_names[other_code]          # -1 -> ''
    ann_out = b.ann.copy()
    pred_row = np.full(n_g, -1, np.int64)
    pred_row[m[tp]] = np.nonzero(tp)[0]
    ann_out["is_matched"] = pred_row >= 0
    ann_out["pred_row"] = pred_row
    g_iou = np.zeros(n_g)
    g_iou[m[tp]] = m_iou[tp]
    ann_out["iou"] = g_iou
    ann_out["error_type"] = np.where(pred_row >= 0, "", np.where(b.g_crowd, "ignored", "missed"))
    ga, _ = _best_per_row(n_g, ag, ap, aiou)
    ann_out["best_pred_iou_any"] = ga
    # the highest-scoring prediction that overlaps the annotation at all
    gs, _ = _best_per_row(n_g, ag[aiou > 0], ap[aiou > 0], b.score[ap[aiou > 0]])
    ann_out["best_pred_score"] = gs
    return ann_out, pred_out
