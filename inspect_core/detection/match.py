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


def pair_iou_rows(a_xywh: np.ndarray, b_xywh: np.ndarray, a_rows: np.ndarray, b_rows: np.ndarray,
                  b_crowd: np.ndarray | None = None, chunk: int = 1 << 20) -> np.ndarray:
    """``pair_iou(a_xywh[a_rows], b_xywh[b_rows], b_crowd[b_rows])`` without building the gathered (n, 4)
    arrays: column by column, a million pairs at a time (about ten times faster on millions of pairs)."""
    out = np.empty(len(a_rows))
    ax, ay, aw, ah = (np.ascontiguousarray(a_xywh[:, k]) for k in range(4))
    bx, by, bw, bh = (np.ascontiguousarray(b_xywh[:, k]) for k in range(4))
    for s in range(0, len(a_rows), chunk):
        i, j = a_rows[s:s + chunk], b_rows[s:s + chunk]
        x0a, y0a, wa, ha = ax[i], ay[i], aw[i], ah[i]
        x0b, y0b, wb, hb = bx[j], by[j], bw[j], bh[j]
        iw = np.minimum(x0a + wa, x0b + wb)
        iw -= np.maximum(x0a, x0b)
        np.clip(iw, 0, None, out=iw)
        ih = np.minimum(y0a + ha, y0b + hb)
        ih -= np.maximum(y0a, y0b)
        np.clip(ih, 0, None, out=ih)
        inter = iw * ih
        union = wa * ha + wb * hb - inter
        if b_crowd is not None:
            union = np.where(b_crowd[j], wa * ha, union)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + chunk] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


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


def match_order(p_rows: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The order in which ``greedy_match`` reads pairs: by prediction rank, then prediction (pairs of one
    prediction together). It depends on neither the IoU threshold nor the ignored annotations, so it is
    sorted once and reused for every threshold and area range."""
    return np.lexsort((p_rows, rank[p_rows]))


def greedy_match(n_pred: int, n_gt: int, p_rows: np.ndarray, g_rows: np.ndarray, iou: np.ndarray,
                 rank: np.ndarray, iou_min: float, gt_ignore: np.ndarray, gt_crowd: np.ndarray,
                 order: np.ndarray | None = None) -> np.ndarray:
    """COCO greedy matching. Pairs are (prediction, annotation) of the same image and category with their IoU;
    ``rank`` is each prediction's score rank in its group. Returns, per prediction, the matched annotation row
    or -1: each prediction, highest score first, takes the free annotation of highest IoU >= ``iou_min``, an
    ordinary one before an ignored one; a crowd annotation stays free. Predictions of the same rank are in
    different groups, so each rank is one vectorised step. ``order``: ``match_order`` of these pairs."""
    matched = np.full(n_pred, -1, np.int64)
    if order is None:
        order = match_order(p_rows, rank)
    order = order[iou[order] >= min(iou_min, 1 - 1e-10)]
    if len(order) == 0:
        return matched
    p, g = p_rows[order], g_rows[order]
    key = iou[order] + np.where(gt_ignore[g], 0.0, 2.0)     # ordinary before ignored, then highest IoU
    r = rank[p]
    bounds = np.searchsorted(r, np.arange(r.max() + 2), side="left")
    taken = np.zeros(n_gt, bool)
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        if lo == hi:
            continue
        ps, gs, ks = p[lo:hi], g[lo:hi], key[lo:hi]
        ks = np.where(taken[gs] & ~gt_crowd[gs], -1.0, ks)
        starts = np.r_[0, np.nonzero(ps[1:] != ps[:-1])[0] + 1]
        best = np.maximum.reduceat(ks, starts)
        seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(ps)]))
        hit = np.nonzero((ks == best[seg]) & (ks >= 0))[0]
        if len(hit) == 0:
            continue
        last = hit[np.r_[seg[hit][1:] != seg[hit][:-1], True]]    # pycocotools: a later equal IoU wins
        matched[ps[last]] = gs[last]
        taken[gs[last]] = True
    return matched


def _codes(ann: pd.DataFrame, pred: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    both = pd.concat([ann[col], pred[col]], ignore_index=True).astype("str")
    codes, uniques = pd.factorize(both, sort=True)
    return codes[:len(ann)].astype(np.int64), codes[len(ann):].astype(np.int64), uniques


class Boxes:
    """Annotations and predictions as aligned numpy arrays (codes, boxes, scores, ranks), built once and
    shared by matching, metrics and the error finder."""

    def __init__(self, ann: pd.DataFrame, pred: pd.DataFrame, max_dets: int = MATCH_DEFAULTS["max_dets"],
                 min_iou: float = MATCH_DEFAULTS["iou_match"]):
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
        self.pair_iou = pair_iou_rows(self.p_box, self.g_box, pr, gr, self.g_crowd)
        self.min_iou = min(min_iou, 0.5)           # the lowest threshold any match will use
        self._live = None
        self._order = None
        # pycocotools' accumulate order: category, score descending, image, rank in image (one sort for all)
        self.eval_order = np.lexsort((self.rank, self.p_img, -self.score, self.p_cat))

    def match(self, iou_min: float, gt_ignore: np.ndarray | None = None) -> np.ndarray:
        """Matched annotation row per prediction (-1: none), among the kept predictions. Pairs below the lowest
        COCO threshold never match and are left out; their order is sorted once (``match_order``)."""
        ignore = self.g_crowd if gt_ignore is None else gt_ignore
        if iou_min < self.min_iou:                 # a lower threshold than the pairs were cut at
            self.min_iou, self._live, self._order = iou_min, None, None
        if self._live is None:
            live = np.nonzero(self.kept[self.pair_p] & (self.pair_iou >= min(self.min_iou, 1 - 1e-10)))[0]
            self._live = (self.pair_p[live], self.pair_g[live], self.pair_iou[live])
        p, g, v = self._live
        if self._order is None:
            self._order = match_order(p, self.rank)
        order = self._order
        m = greedy_match(len(self.pred), len(self.ann), p, g, v, self.rank, iou_min, ignore, self.g_crowd, order)
        m[~self.kept] = -1
        return m


def best_per_row(n: int, rows: np.ndarray, other: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row the highest value over its pairs and the partner giving it (0.0 / -1 where the row has none).
    ``rows`` must be sorted (as ``candidate_pairs`` gives its first output); ties: the first pair."""
    best = np.zeros(n)
    who = np.full(n, -1, np.int64)
    if len(rows) == 0:
        return best, who
    starts = np.r_[0, np.nonzero(rows[1:] != rows[:-1])[0] + 1]
    seg_max = np.maximum.reduceat(value, starts)
    seg_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rows)]))
    hit = np.nonzero(value == seg_max[seg_of])[0]
    first = hit[np.r_[True, seg_of[hit][1:] != seg_of[hit][:-1]]]
    best[rows[starts]] = seg_max
    who[rows[first]] = other[first]
    return best, who


def match_boxes(ann: pd.DataFrame, pred: pd.DataFrame, params: dict | None = None,
                boxes: Boxes | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-box tables at IoU ``iou_match``.

    Returns (annotations, predictions): the inputs with, for predictions, ``is_tp``, ``ann_row`` (the matched
    annotation's row, -1), ``iou`` (with it), ``error_type`` (a TIDE type, '' for a true positive, 'ignored'
    for one on a crowd annotation, 'over_max_dets' beyond ``max_dets``), ``best_iou_same`` (best IoU with an
    annotation of its class), and for a false positive ``best_iou_other`` / ``other_ann_row`` /
    ``other_category`` (its best annotation of another class); for annotations, ``is_matched``, ``pred_row``,
    ``iou``, ``error_type`` ('' when matched, else 'missed'), ``best_pred_iou_any`` / ``best_pred_score`` (the
    nearest prediction of any class and the highest score overlapping it; for a matched box, its match).
    Only false positives are compared with other classes and only missed boxes with all predictions, which
    keeps 100,000 images x 20 boxes to seconds."""
    p = {**MATCH_DEFAULTS, **(params or {})}
    b = boxes or Boxes(ann, pred, p["max_dets"])
    fg, bg = p["iou_match"], p["iou_background"]
    m = b.match(fg)
    n_p, n_g = len(b.pred), len(b.ann)
    on_crowd = np.r_[b.g_crowd, False][m]          # m = -1 reads the padding
    tp = (m >= 0) & ~on_crowd
    ignored = (m >= 0) & ~tp
    fp = ~tp & ~ignored & b.kept
    best_same, _ = best_per_row(n_p, b.pair_p, b.pair_g, b.pair_iou)
    # false positives against the annotations of other classes on their image
    fp_idx = np.nonzero(fp)[0]
    fr, fg_rows = candidate_pairs(b.p_img[fp_idx], b.g_img)
    other = b.p_cat[fp_idx[fr]] != b.g_cat[fg_rows]
    fr, fg_rows = fr[other], fg_rows[other]
    f_iou = pair_iou_rows(b.p_box, b.g_box, fp_idx[fr], fg_rows)
    bo, wo = best_per_row(len(fp_idx), fr, fg_rows, f_iou)
    best_other = np.zeros(n_p)
    other_row = np.full(n_p, -1, np.int64)
    best_other[fp_idx], other_row[fp_idx] = bo, wo
    best_any = np.maximum(best_same, best_other)
    err = np.full(n_p, "", dtype=object)
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
    pred_out["other_ann_row"] = other_row
    cat_names = np.asarray(list(b.categories) + [""], dtype=object)
    other_code = np.where(other_row >= 0, np.r_[b.g_cat, -1][other_row], -1)
    pred_out["other_category"] = cat_names[other_code]          # -1 -> ''
    ann_out = b.ann.copy()
    pred_row = np.full(n_g, -1, np.int64)
    pred_row[m[tp]] = np.nonzero(tp)[0]
    matched = pred_row >= 0
    ann_out["is_matched"] = matched
    ann_out["pred_row"] = pred_row
    g_iou = np.zeros(n_g)
    g_iou[m[tp]] = m_iou[tp]
    ann_out["iou"] = g_iou
    ann_out["error_type"] = np.where(matched, "", np.where(b.g_crowd, "ignored", "missed"))
    # missed boxes against every prediction on their image
    un_idx = np.nonzero(~matched)[0]
    ur, up = candidate_pairs(b.g_img[un_idx], b.p_img)
    u_iou = pair_iou_rows(b.p_box, b.g_box, up, un_idx[ur])
    ui, _ = best_per_row(len(un_idx), ur, up, u_iou)
    over = u_iou > 0
    us, _ = best_per_row(len(un_idx), ur[over], up[over], b.score[up[over]])
    best_iou_any = g_iou.copy()
    best_score = np.zeros(n_g)
    best_score[matched] = b.score[pred_row[matched]]
    best_iou_any[un_idx], best_score[un_idx] = ui, us
    ann_out["best_pred_iou_any"] = best_iou_any
    ann_out["best_pred_score"] = best_score
    return ann_out, pred_out
