"""Annotation errors found through the detector: what people fix before retraining.

Each is a finding with a score in [0, 1] (higher: more likely an error) and its evidence (the IoU, the
confidence, the other class), computed from the per-box tables of ``match.match_boxes``:

- ``missing_box``: a confident prediction that overlaps no annotation (IoU < ``iou_background`` with every
  annotated box of any class): the object is probably there and unannotated. Score: its confidence.
- ``badly_placed_box``: an annotation whose best same-class prediction (by IoU, among those scoring >=
  ``placed_min_confidence``) overlaps it, but poorly (``iou_background`` <= IoU < ``placed_iou_below``).
  Score: that prediction's confidence x (1 - IoU / placed_iou_below), so a faint prediction ranks low.
- ``wrong_box_class``: an annotation covered (IoU >= ``iou_match``) by a confident prediction of another class,
  with no same-class prediction as confident. Score: that confidence minus the best same-class one's.
- ``spurious_box``: an annotation no prediction of any class lines up with (best IoU < ``spurious_iou_below``,
  whatever the confidence: even a faint but well-aligned box says the detector saw an object there), on an
  image the detector did predict on, and not already a badly placed box. Score: ``spurious_weight`` x (1 - that IoU / ``spurious_iou_below``).

Thresholds are data: ``ERROR_DEFAULTS``, overridden per call.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .match import candidate_pairs, pair_iou

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
    "spurious_iou_below": 0.3,  # no prediction of any class overlapping a box at least this much: spurious
    "spurious_weight": 0.9,     # a spurious box ranks just below a certain missing/wrong one
}
ERROR_COLUMNS = ["image_id", "check", "family", "score", "detail", "ann_id", "pred_id", "category",
                 "other_category", "iou", "confidence", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]


def _rows(image_id, check, score, detail, ann_id, pred_id, category, other, iou, conf, box) -> pd.DataFrame:
    n = len(image_id)
    return pd.DataFrame({"image_id": image_id, "check": [check] * n, "family": FAMILY, "score": score,
                         "detail": detail, "ann_id": ann_id, "pred_id": pred_id, "category": category,
                         "other_category": other, "iou": iou, "confidence": conf,
                         "box_x_px": box[:, 0], "box_y_px": box[:, 1], "box_w_px": box[:, 2], "box_h_px": box[:, 3]})


def annotation_errors(ann: pd.DataFrame, pred: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
    """Ranked findings (``ERROR_COLUMNS``, highest score first) for annotations ``ann`` and predictions
    ``pred`` (px boxes; ``category``, ``score``; ``ann_id`` / ``pred_id`` carried as evidence)."""
    p = {**ERROR_DEFAULTS, **(params or {})}
    ann, pred = ann.reset_index(drop=True), pred.reset_index(drop=True)
    g_box = ann[["box_x_px", "box_y_px", "box_w_px", "box_h_px"]].to_numpy(np.float64)
    p_box = pred[["box_x_px", "box_y_px", "box_w_px", "box_h_px"]].to_numpy(np.float64)
    score = pred["score"].to_numpy(np.float64)
    g_cat, p_cat = ann["category"].astype("str").to_numpy(), pred["category"].astype("str").to_numpy()
    codes, _ = pd.factorize(pd.concat([ann["image_id"], pred["image_id"]], ignore_index=True).astype("str"))
    g_img, p_img = codes[:len(ann)], codes[len(ann):]
    ap, ag = candidate_pairs(p_img, g_img)
    iou = pair_iou(p_box[ap], g_box[ag])
    same = p_cat[ap] == g_cat[ag]
    conf = score[ap]
    g_ann_id = ann["ann_id"].to_numpy() if "ann_id" in ann.columns else np.arange(len(ann))
    p_pred_id = pred["pred_id"].to_numpy() if "pred_id" in pred.columns else np.arange(len(pred))
    confident = conf >= p["min_confidence"]
    parts = []

    def best(rows, other, value, n):
        """Per row: highest value and its partner (-1 / 0.0 where none)."""
        top, who = np.zeros(n), np.full(n, -1, np.int64)
        if len(rows):
            o = np.lexsort((-value, rows))
            r, w, v = rows[o], other[o], value[o]
            f = np.r_[True, r[1:] != r[:-1]]
            top[r[f]], who[r[f]] = v[f], w[f]
        return top, who

    # missing box: confident prediction, no annotation of any class near
    iou_any_pred, _ = best(ap, ag, iou, len(pred))
    miss = np.nonzero((score >= p["min_confidence"]) & (iou_any_pred < p["iou_background"]))[0]
    parts.append(_rows(pred["image_id"].to_numpy()[miss], "missing_box", score[miss],
                       [f"a {c} predicted at confidence {s:.2f} overlaps no annotated box (best IoU {i:.2f} < "
                        f"{p['iou_background']}): add the box if the object is there"
                        for c, s, i in zip(p_cat[miss], score[miss], iou_any_pred[miss])],
                       np.full(len(miss), -1), p_pred_id[miss], p_cat[miss], [""] * len(miss),
                       iou_any_pred[miss], score[miss], p_box[miss]))
    # per annotation: the best confident same-class prediction, by IoU, and the most confident other-class cover
    sel = same & (conf >= p["placed_min_confidence"])
    same_iou, same_who = best(ag[sel], ap[sel], iou[sel], len(ann))
    cover = same & (iou >= p["iou_match"])
    same_cover_conf, _ = best(ag[cover], ap[cover], conf[cover], len(ann))
    oc = ~same & confident & (iou >= p["iou_match"])
    other_conf, other_who = best(ag[oc], ap[oc], conf[oc], len(ann))
    placed = np.nonzero((same_iou >= p["iou_background"]) & (same_iou < p["placed_iou_below"]))[0]
    pc = score[same_who[placed]]
    sc = pc * (1.0 - same_iou[placed] / p["placed_iou_below"])
    parts.append(_rows(ann["image_id"].to_numpy()[placed], "badly_placed_box", sc,
                       [f"the best-aligned {c} prediction (confidence {s:.2f}) overlaps this {c} box with IoU {i:.2f} only "
                        f"(< {p['placed_iou_below']}): check its position and size"
                        for c, s, i in zip(g_cat[placed], pc, same_iou[placed])],
                       g_ann_id[placed], p_pred_id[same_who[placed]], g_cat[placed], [""] * len(placed),
                       same_iou[placed], pc, g_box[placed]))
    wrong = np.nonzero((other_who >= 0) & (other_conf > same_cover_conf))[0]
    ow = other_who[wrong]
    w_iou = pair_iou(p_box[ow], g_box[wrong]) if len(wrong) else np.zeros(0)
    parts.append(_rows(ann["image_id"].to_numpy()[wrong], "wrong_box_class",
                       other_conf[wrong] - same_cover_conf[wrong],
                       [f"annotated {c}, but a {o} is predicted over it at confidence {s:.2f} (IoU {i:.2f}); the best "
                        f"{c} prediction there scores {b:.2f}: check the class"
                        for c, o, s, i, b in zip(g_cat[wrong], p_cat[ow], other_conf[wrong], w_iou,
                                                 same_cover_conf[wrong])],
                       g_ann_id[wrong], p_pred_id[ow], g_cat[wrong], p_cat[ow], w_iou, other_conf[wrong],
                       g_box[wrong]))
    # spurious: no prediction (of any class, any confidence) lines up with the box, on an image with predictions
    predicted_images = np.zeros(int(codes.max()) + 1 if len(codes) else 0, bool)
    predicted_images[p_img] = True
    has_pred = predicted_images[g_img] if len(g_img) else np.zeros(0, bool)
    any_iou, any_who = best(ag, ap, iou, len(ann))
    not_placed = np.ones(len(ann), bool)
    not_placed[placed] = False                       # a badly placed box is not also called spurious
    spur = np.nonzero(has_pred & not_placed & (any_iou < p["spurious_iou_below"]))[0]
    near_conf = np.where(any_iou[spur] > 0, score[np.maximum(any_who[spur], 0)] if len(score) else 0.0, 0.0)
    parts.append(_rows(ann["image_id"].to_numpy()[spur], "spurious_box",
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
    fp = pred_boxes.loc[~pred_boxes["is_tp"] & pred_boxes["error_type"].isin(
        ["classification", "localization", "both", "duplicate", "background"])]
    missed = ann_boxes.loc[ann_boxes["error_type"] == "missed"]
    err_sum = errors.groupby("image_id")["score"].sum()
    n_err = errors.groupby("image_id").size()
    fp_conf = fp.groupby("image_id")["score"].sum()
    out["n_annotations"] = out["image_id"].map(ann_boxes.groupby("image_id").size()).fillna(0).astype(int)
    out["n_predictions"] = out["image_id"].map(pred_boxes.groupby("image_id").size()).fillna(0).astype(int)
    out["n_tp"] = out["image_id"].map(pred_boxes.loc[pred_boxes["is_tp"]].groupby("image_id").size()).fillna(0).astype(int)
    out["n_fp"] = out["image_id"].map(fp.groupby("image_id").size()).fillna(0).astype(int)
    out["n_missed"] = out["image_id"].map(missed.groupby("image_id").size()).fillna(0).astype(int)
    out["n_annotation_errors"] = out["image_id"].map(n_err).fillna(0).astype(int)
    out["detection_error_score"] = (out["image_id"].map(err_sum).fillna(0.0)
                                    + tide_weight * (out["image_id"].map(fp_conf).fillna(0.0) + out["n_missed"]))
    for t in ("classification", "localization", "both", "duplicate", "background"):
        out[f"n_{t}"] = out["image_id"].map(fp.loc[fp["error_type"] == t].groupby("image_id").size()).fillna(0).astype(int)
    return out.sort_values(["detection_error_score", "image_id"], ascending=[False, True],
                           kind="stable").reset_index(drop=True)
