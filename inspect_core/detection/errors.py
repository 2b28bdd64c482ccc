"""Annotation errors found through the detector: what people fix before retraining.

Each is a finding with a score in [0, 1] (higher: more likely an error) and its evidence (the IoU, the
confidence, the other class), computed from the per-box tables of ``match.match_boxes``:

- ``missing_box``: a place where the detector confidently sees an object, of whatever class, that overlaps no
  annotation. The false positives that overlap no annotated box of any class (IoU < ``iou_background``) and
  score at least ``missing_member_min_confidence`` are grouped by place, greedily over classes as in non-maximum
  suppression (the ``missing_place_max_per_image`` highest of an image): from the highest score down, one not
  yet in a place leads a new place, which takes those not yet in a place that overlap it at IoU >= ``iou_match``
  (each prediction in one place; none dropped but inside a reported place). The place's objectness is 1 - prod
  over classes of (1 - the class's best score there): a detector that splits an object over classes (0.35
  square, 0.3 circle, 0.2 star: 0.64) still says an object is there, while a class predicted twice counts once.
  A finding per place, at its leader, when the objectness reaches ``min_confidence``. A detector
  that hedges over classes on background too inflates this objectness (the classes' scores are not
  independent), so a split place (no class reaching ``min_confidence`` by itself) is reported only where, in
  the same dataset, the places the detector splits as strongly (objectness at least as high, no class
  confident) are annotated objects at least ``missing_split_precision`` of the time: annotated places from
  the predictions covering an annotation at IoU >= ``iou_match``. Score: the objectness (a lone prediction's:
  its confidence); evidence: each class and its score, and for a split place that share.
- ``badly_placed_box``: an annotation whose best same-class prediction (by IoU, among those scoring >=
  ``placed_min_confidence``) overlaps it, but poorly (``iou_background`` <= IoU < ``placed_iou_below``).
  Score: that prediction's confidence x (1 - IoU / placed_iou_below), so a faint prediction ranks low.
- ``wrong_box_class``: an annotation covered (IoU >= ``iou_match``) by a confident false positive of another
  class, with no same-class prediction covering it as confident. Score: that confidence minus the best same-class one's.
- ``spurious_box``: an annotation no prediction of any class lines up with (best IoU < ``spurious_iou_below``,
  whatever the confidence: even a faint but well-aligned box says the detector saw an object there), on an
  image the detector did predict on, and not already a badly placed box. Evidence: that IoU, and the
  highest confidence of any prediction overlapping the box. Score: ``spurious_weight`` x
  (1 - that IoU / ``spurious_iou_below``).

Thresholds are data: ``ERROR_DEFAULTS``, overridden per call.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .match import MATCH_DEFAULTS, Boxes, best_per_row, candidate_pairs, match_boxes, pair_iou, pair_iou_rows

FAMILY = "detection"
CHECKS = {
    "missing_box": "A confident prediction overlaps no annotated box: likely an unannotated object.",
    "badly_placed_box": "An annotated box's best confident same-class prediction overlaps it poorly: likely a "
                        "badly placed or sized box.",
    "wrong_box_class": "An annotated box is covered by a confident prediction of another class: likely the wrong "
                       "class.",
    "spurious_box": "No prediction of any class comes near an annotated box: likely a box on nothing.",
}
ERROR_DEFAULTS = {
    "min_confidence": 0.5,      # a prediction counts as confident from this score
    "iou_match": 0.5,           # IoU from which a prediction covers an annotation
    "iou_background": 0.1,      # IoU below which boxes do not overlap
    "placed_iou_below": 0.6,    # a same-class prediction overlapping less than this marks a badly placed box
    "placed_min_confidence": 0.1,  # same-class predictions from this score are looked at for a badly placed box
    "missing_member_min_confidence": 0.1,  # predictions from this score add to a place's objectness (missing box)
    "missing_place_max_per_image": 20,    # candidates of an image looked at for places (highest scores first)
    "missing_split_precision": 0.9,  # a place no class is confident at: reported where this share of the places
                                     # as strong (objectness) where the detector splits classes are annotated
    "spurious_iou_below": 0.3,  # no prediction of any class overlapping a box at least this much: spurious
    "spurious_weight": 0.9,     # a spurious box ranks just below a certain missing/wrong one
}
FP_TYPES = ("classification", "localization", "both", "duplicate", "background")
ERROR_COLUMNS = ["image_id", "check", "family", "score", "detail", "ann_id", "pred_id", "category",
                 "other_category", "iou", "confidence", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]


def _rows(image_id, check, score, detail, ann_id, pred_id, category, other, iou, conf, box) -> pd.DataFrame:
    n = len(image_id)
    return pd.DataFrame({"image_id": image_id, "check": [check] * n, "family": FAMILY, "score": score,
                         "detail": detail, "ann_id": ann_id, "pred_id": pred_id, "category": category,
                         "other_category": other, "iou": iou, "confidence": conf,
                         "box_x_px": box[:, 0], "box_y_px": box[:, 1], "box_w_px": box[:, 2], "box_h_px": box[:, 3]})


def _group_max(n: int, rows: np.ndarray, other: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row the highest value and its partner, for rows in any order (0.0 / -1 where none)."""
    order = np.argsort(rows, kind="stable")
    return best_per_row(n, rows[order], other[order], value[order])


def _places(rows: np.ndarray, img: np.ndarray, cat: np.ndarray, name: np.ndarray, box: np.ndarray,
            score: np.ndarray, iou_min: float, min_objectness: float,
            max_per_image: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Missing-box places among the predictions ``rows`` (each overlapping no annotation), chosen greedily as in
    non-maximum suppression, over classes: in each image, from the highest score down, a prediction not yet in a
    place leads a new one, which takes the predictions not yet in a place that overlap it at IoU >= ``iou_min``.
    So every prediction is in one place (a faint one between two places adds to the higher only), and a prediction
    is left out of the findings only where it is in a reported prediction's place (A over B over C, A and C apart:
    A's place holds B, C leads its own). Objectness = 1 - prod over the place's classes of (1 - the class's best
    score); a place is reported at its leader when the objectness reaches ``min_objectness``. Only the
    ``max_per_image`` highest-scoring candidates of an image are looked at (the pairs grow with their square).
    ``cat``: category codes, ``name``: names, per prediction. Returns the leaders' rows, their objectness and the
    evidence (classes by score)."""
    empty = (np.zeros(0, np.int64), np.zeros(0), [])
    if len(rows) == 0:
        return empty
    rows = rows[np.lexsort((rows, -score[rows], img[rows]))]        # by image, then score down (ties: row)
    im = img[rows]
    first = np.r_[0, np.nonzero(im[1:] != im[:-1])[0] + 1]
    rank = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
    keep = rank < max_per_image
    rows, rank = rows[keep], rank[keep]
    a, c = candidate_pairs(img[rows], img[rows])              # pairs of candidates in one image (self too)
    near = (a != c) & (pair_iou_rows(box[rows], box[rows], a, c) >= iou_min)
    a, c = a[near], c[near]
    order = np.argsort(a, kind="stable")
    a, c = a[order], c[order]
    ptr = np.searchsorted(a, np.arange(len(rows) + 1))
    place = np.full(len(rows), -1, np.int64)                    # the leader (a position in rows) of each candidate
    # greedy by rank, every image at once: an image has one candidate of each rank, so two new leaders never
    # compete for a member in one step
    for r in range(int(rank.max()) + 1):
        lead = np.nonzero((rank == r) & (place < 0))[0]
        if len(lead) == 0:
            continue
        place[lead] = lead
        counts = ptr[lead + 1] - ptr[lead]
        nb = c[np.repeat(ptr[lead], counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts,
                                                                                       counts))]
        owner = np.repeat(lead, counts)
        free = place[nb] < 0
        place[nb[free]] = owner[free]
    members = np.arange(len(rows))
    rm = rows[members]
    # per (place, class): the best score; objectness over the classes
    order = np.lexsort((-score[rm], cat[rm], place))
    pl, rm = place[order], rm[order]
    best = np.r_[True, (pl[1:] != pl[:-1]) | (cat[rm][1:] != cat[rm][:-1])]
    pl, rm = pl[best], rm[best]
    obj = 1.0 - np.exp(np.bincount(pl, weights=np.log1p(-np.minimum(score[rm], 1 - 1e-12)), minlength=len(rows)))
    leader = place == np.arange(len(rows))
    lone = leader & (np.bincount(pl, minlength=len(rows)) == 1)
    obj[lone] = score[rows[lone]]                               # a place of one class: its score, exactly
    hit = np.nonzero(leader & (obj >= min_objectness - 1e-12))[0]
    # evidence: the place's classes, best score first
    by = np.lexsort((rm, -score[rm], pl))
    pl, rm = pl[by], rm[by]
    start = np.searchsorted(pl, hit, side="left")
    stop = np.searchsorted(pl, hit, side="right")
    evidence = [", ".join(f"{name[j]} {score[j]:.2f}" for j in rm[s0:s1]) for s0, s1 in zip(start, stop)]
    return rows[hit], np.minimum(obj[hit], 1.0), evidence


def _annotated_split_objectness(b: Boxes, pa: pd.DataFrame, fp: np.ndarray, member: np.ndarray,
                                p: dict) -> np.ndarray:
    """The objectness of the annotated places where the detector splits its confidence: per (non-crowd)
    annotation, the predictions (``member``) that cover it at IoU >= ``iou_match``: its match, and the false
    positives of other classes whose best annotation of another class it is (``match_boxes``' ``other_ann_row``:
    no new pairs; a same-class duplicate scores below the match and adds nothing). Objectness as in ``_places``;
    kept where no class reaches ``min_confidence`` and the objectness does."""
    tp = pa["is_tp"].to_numpy() & member
    fp_on = fp & member & (pa["best_iou_other"].to_numpy() >= p["iou_match"])
    g = np.r_[pa["ann_row"].to_numpy()[tp], pa["other_ann_row"].to_numpy()[fp_on]].astype(np.int64)
    q = np.r_[np.nonzero(tp)[0], np.nonzero(fp_on)[0]]
    keep = (g >= 0) & ~b.g_crowd[np.maximum(g, 0)]
    g, q = g[keep], q[keep]
    confident = np.zeros(len(b.ann), bool)                         # a class confident there: not split
    confident[g[b.score[q] >= p["min_confidence"]]] = True
    keep = ~confident[g]
    g, q = g[keep], q[keep]
    if len(g) == 0:
        return np.zeros(0)
    order = np.lexsort((-b.score[q], b.p_cat[q], g))              # per (annotation, class): the best score first
    g, q = g[order], q[order]
    first = np.r_[True, (g[1:] != g[:-1]) | (b.p_cat[q][1:] != b.p_cat[q][:-1])]
    g, q = g[first], q[first]
    starts = np.r_[0, np.nonzero(g[1:] != g[:-1])[0] + 1]        # per annotation (g is sorted)
    obj = 1.0 - np.exp(np.add.reduceat(np.log1p(-np.minimum(b.score[q], 1 - 1e-12)), starts))
    top = np.maximum.reduceat(b.score[q], starts)
    return obj[(top < p["min_confidence"]) & (obj >= p["min_confidence"] - 1e-12)]


def annotation_errors(ann: pd.DataFrame, pred: pd.DataFrame, params: dict | None = None,
                      boxes: Boxes | None = None, matched: tuple | None = None) -> pd.DataFrame:
    """Ranked findings (``ERROR_COLUMNS``, highest score first) for annotations ``ann`` and predictions
    ``pred`` (px boxes; ``category``, ``score``; ``ann_id`` / ``pred_id`` carried as evidence). ``boxes`` and
    ``matched`` (``match.Boxes`` and ``match_boxes``' output for the same tables) are reused when given."""
    p = {**ERROR_DEFAULTS, **(params or {})}
    b = boxes or Boxes(ann, pred)
    ga, pa = matched or match_boxes(ann, pred, {k: v for k, v in p.items() if k in MATCH_DEFAULTS}, boxes=b)
    n_g = len(b.ann)
    g_box, p_box, score = b.g_box, b.p_box, b.score
    g_cat = b.ann["category"].astype("str").to_numpy()
    p_cat = b.pred["category"].astype("str").to_numpy()
    g_img_id, p_img_id = b.ann["image_id"].astype("str").to_numpy(), b.pred["image_id"].astype("str").to_numpy()
    g_ann_id = b.ann["ann_id"].to_numpy() if "ann_id" in b.ann.columns else np.arange(n_g)
    p_pred_id = b.pred["pred_id"].to_numpy() if "pred_id" in b.pred.columns else np.arange(len(b.pred))
    fp = pa["error_type"].isin(FP_TYPES).to_numpy()
    best_same = pa["best_iou_same"].to_numpy()
    best_other = pa["best_iou_other"].to_numpy()
    parts = []
    # missing box: a place where predictions of any class, none near an annotation, add up to a confident object
    best_any = np.maximum(best_same, best_other)
    member = score >= p["missing_member_min_confidence"]
    cand = np.nonzero(fp & member & (best_any < p["iou_background"]))[0]
    miss, objectness, evidence = _places(cand, b.p_img, b.p_cat, p_cat, p_box, score, p["iou_match"],
                                         p["min_confidence"], int(p["missing_place_max_per_image"]))
    # a split place (no class confident by itself) only where places as strong are mostly annotated objects
    split = score[miss] < p["min_confidence"]
    keep, split_note = ~split, np.full(len(miss), "", dtype=object)
    if split.any():
        ann_obj = _annotated_split_objectness(b, pa, fp, member, p)
        a_sorted, u_sorted = np.sort(ann_obj), np.sort(objectness[split])
        n_a = len(a_sorted) - np.searchsorted(a_sorted, objectness[split] - 1e-12, side="left")
        n_u = len(u_sorted) - np.searchsorted(u_sorted, objectness[split] - 1e-12, side="left")
        share = n_a / (n_a + n_u)
        keep[split] = share >= p["missing_split_precision"]
        split_note[split] = [f"; no class reaches {p['min_confidence']} alone, but {a} of the {a + u} places in this "
                             f"dataset where the detector splits an object over classes as strongly (objectness >= "
                             f"{o:.2f}) hold an annotated box" for a, u, o in zip(n_a, n_u, objectness[split])]
    miss, objectness, split_note = miss[keep], objectness[keep], split_note[keep]
    evidence = [ev for ev, k in zip(evidence, keep) if k]
    parts.append(_rows(p_img_id[miss], "missing_box", objectness,
                       [f"predicted at one place, overlapping no annotated box (best IoU {i:.2f} < "
                        f"{p['iou_background']}): {ev}; objectness {o:.2f} (1 - prod(1 - best score per class)){note}: "
                        f"add the box if the object is there"
                        for ev, o, i, note in zip(evidence, objectness, best_any[miss], split_note)],
                       np.full(len(miss), -1), p_pred_id[miss], p_cat[miss], [""] * len(miss),
                       best_any[miss], score[miss], p_box[miss]))
    # badly placed: the best-aligned same-class prediction (not too faint) overlaps poorly; a box matched at
    # IoU >= placed_iou_below is not looked at
    g_iou = ga["iou"].to_numpy()
    maybe = ~ga["is_matched"].to_numpy() | (g_iou < p["placed_iou_below"])
    sel = maybe[b.pair_g] & (score[b.pair_p] >= p["placed_min_confidence"]) & ~b.g_crowd[b.pair_g]
    same_iou, same_who = _group_max(n_g, b.pair_g[sel], b.pair_p[sel], b.pair_iou[sel])
    placed = np.nonzero(maybe & (same_iou >= p["iou_background"]) & (same_iou < p["placed_iou_below"]))[0]
    pc = score[same_who[placed]]
    parts.append(_rows(g_img_id[placed], "badly_placed_box", pc * (1.0 - same_iou[placed] / p["placed_iou_below"]),
                       [f"the best-aligned {c} prediction (confidence {s:.2f}) overlaps this {c} box with IoU {i:.2f} "
                        f"only (< {p['placed_iou_below']}): check its position and size"
                        for c, s, i in zip(g_cat[placed], pc, same_iou[placed])],
                       g_ann_id[placed], p_pred_id[same_who[placed]], g_cat[placed], [""] * len(placed),
                       same_iou[placed], pc, g_box[placed]))
    # wrong class: a confident false positive of another class covers the box, more confident than any
    # prediction of the box's own class that covers it
    wc = np.nonzero(fp & (score >= p["min_confidence"]) & (best_other >= p["iou_match"]))[0]
    other_rows = pa["other_ann_row"].to_numpy()[wc]
    other_conf, other_who = _group_max(n_g, other_rows, wc, score[wc])
    cover = (b.pair_iou >= p["iou_match"]) & (other_conf[b.pair_g] > 0)
    same_conf, _ = _group_max(n_g, b.pair_g[cover], b.pair_p[cover], score[b.pair_p[cover]])
    wrong = np.nonzero((other_who >= 0) & (other_conf > same_conf))[0]
    ow = other_who[wrong]
    w_iou = pair_iou(p_box[ow], g_box[wrong]) if len(wrong) else np.zeros(0)
    parts.append(_rows(g_img_id[wrong], "wrong_box_class", other_conf[wrong] - same_conf[wrong],
                       [f"annotated {c}, but a {o} is predicted over it at confidence {s:.2f} (IoU {i:.2f}); the best "
                        f"{c} prediction there scores {q:.2f}: check the class"
                        for c, o, s, i, q in zip(g_cat[wrong], p_cat[ow], other_conf[wrong], w_iou, same_conf[wrong])],
                       g_ann_id[wrong], p_pred_id[ow], g_cat[wrong], p_cat[ow], w_iou, other_conf[wrong],
                       g_box[wrong]))
    # spurious: no prediction (of any class, any confidence) lines up with the box, on an image with
    # predictions; a badly placed box is not also called spurious
    any_iou = ga["best_pred_iou_any"].to_numpy()
    has_pred = np.isin(b.g_img, np.unique(b.p_img)) if len(b.p_img) else np.zeros(n_g, bool)
    not_placed = np.ones(n_g, bool)
    not_placed[placed] = False
    spur = np.nonzero(has_pred & not_placed & ~b.g_crowd & (any_iou < p["spurious_iou_below"]))[0]
    near_conf = ga["best_pred_score"].to_numpy()[spur]
    parts.append(_rows(g_img_id[spur], "spurious_box",
                       p["spurious_weight"] * (1.0 - any_iou[spur] / p["spurious_iou_below"]),
                       [f"no prediction of any class lines up with this {c} box (best IoU {i:.2f} < "
                        f"{p['spurious_iou_below']}): check that an object is there"
                        for c, i in zip(g_cat[spur], any_iou[spur])],
                       g_ann_id[spur], np.full(len(spur), -1), g_cat[spur], [""] * len(spur), any_iou[spur],
                       near_conf, g_box[spur]))
    out = pd.concat([x for x in parts if len(x)] or [parts[0]], ignore_index=True)
    out = out.sort_values(["score", "image_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def image_error_scores(image_ids: pd.Series, errors: pd.DataFrame, pred_boxes: pd.DataFrame,
                       ann_boxes: pd.DataFrame, tide_weight: float = 0.1) -> pd.DataFrame:
    """Per image: the detection error score that orders the grid = sum of its annotation-error scores +
    ``tide_weight`` x (sum of its false positives' confidences + its missed annotations), with the counts."""
    out = pd.DataFrame({"image_id": pd.Series(image_ids, dtype="str").drop_duplicates().to_numpy()})
    fp = pred_boxes.loc[pred_boxes["error_type"].isin(FP_TYPES)]
    missed = ann_boxes.loc[ann_boxes["error_type"] == "missed"]
    err_sum = errors.groupby("image_id")["score"].sum()
    n_err = errors.groupby("image_id").size()
    fp_conf = fp.groupby("image_id")["score"].sum()
    out["n_annotations"] = out["image_id"].map(ann_boxes.groupby("image_id").size()).fillna(0).astype(int)
    out["n_predictions"] = out["image_id"].map(pred_boxes.groupby("image_id").size()).fillna(0).astype(int)
    tp_per_image = pred_boxes.loc[pred_boxes["is_tp"]].groupby("image_id").size()
    out["n_tp"] = out["image_id"].map(tp_per_image).fillna(0).astype(int)
    out["n_fp"] = out["image_id"].map(fp.groupby("image_id").size()).fillna(0).astype(int)
    out["n_missed"] = out["image_id"].map(missed.groupby("image_id").size()).fillna(0).astype(int)
    out["n_annotation_errors"] = out["image_id"].map(n_err).fillna(0).astype(int)
    out["detection_error_score"] = (out["image_id"].map(err_sum).fillna(0.0)
                                    + tide_weight * (out["image_id"].map(fp_conf).fillna(0.0) + out["n_missed"]))
    for t in FP_TYPES:
        per_image = fp.loc[fp["error_type"] == t].groupby("image_id").size()
        out[f"n_{t}"] = out["image_id"].map(per_image).fillna(0).astype(int)
    return out.sort_values(["detection_error_score", "image_id"], ascending=[False, True],
                           kind="stable").reset_index(drop=True)
