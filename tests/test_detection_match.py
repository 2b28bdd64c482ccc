"""Matching and TIDE error types on tiny cases worked out by hand (inspect_core/detection/match.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from inspect_core.detection.match import (
    candidate_pairs,
    match_boxes,
    pair_iou,
    score_rank,
)


def ann(*rows, crowd=None):
    df = pd.DataFrame(rows, columns=["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px"])
    df.insert(0, "ann_id", range(len(df)))
    if crowd is not None:
        df["iscrowd"] = crowd
    return df


def pred(*rows):
    df = pd.DataFrame(rows, columns=["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"])
    df.insert(0, "pred_id", range(len(df)))
    return df


def test_pair_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]], float)
    # overlap 5x10 = 50, union 150
    assert np.allclose(pair_iou(a, b), [50 / 150, 0.0, 1.0])
    # crowd: intersection over the prediction's area
    assert np.allclose(pair_iou(a[:1], np.array([[0, 0, 100, 100]], float), np.array([True])), [1.0])


def test_candidate_pairs_and_rank():
    p, g = candidate_pairs(np.array([0, 1, 0]), np.array([1, 0, 0, 2]))
    assert sorted(zip(p.tolist(), g.tolist())) == [(0, 1), (0, 2), (1, 0), (2, 1), (2, 2)]
    assert score_rank(np.array([0, 0, 1, 0]), np.array([0.2, 0.9, 0.5, 0.9])).tolist() == [2, 0, 0, 1]


def test_one_of_each_tide_type():
    a = ann(("im", "cat", 0, 0, 10, 10),       # 0: found by p0
            ("im", "cat", 100, 0, 10, 10),     # 1: p1 overlaps it at IoU 1/3 (localization)
            ("im", "dog", 200, 0, 10, 10),     # 2: p2 predicts 'cat' exactly on it (classification)
            ("im", "dog", 300, 0, 10, 10),     # 3: p5 is a 'cat' half off it (both)
            ("im", "cat", 500, 0, 10, 10))     # 4: nothing near: missed
    p = pred(("im", "cat", 0, 0, 10, 10, 0.9),      # TP on 0
             ("im", "cat", 105, 0, 10, 10, 0.8),    # IoU 50/150 with 1 -> localization
             ("im", "cat", 200, 0, 10, 10, 0.7),    # other-class IoU 1 -> classification
             ("im", "cat", 1, 0, 10, 10, 0.6),      # IoU 0.82 with 0, already taken by p0 -> duplicate
             ("im", "cat", 400, 400, 10, 10, 0.5),  # nothing near -> background
             ("im", "cat", 305, 0, 10, 10, 0.4))    # other-class IoU 1/3 -> both
    ga, pa = match_boxes(a, p)
    assert pa["error_type"].tolist() == ["", "localization", "classification", "duplicate", "background", "both"]
    assert pa["is_tp"].tolist() == [True, False, False, False, False, False]
    assert pa["ann_row"].tolist() == [0, -1, -1, -1, -1, -1]
    assert np.isclose(pa.loc[1, "best_iou_same"], 1 / 3) and pa.loc[2, "other_category"] == "dog"
    assert ga["is_matched"].tolist() == [True, False, False, False, False]
    assert ga["error_type"].tolist() == ["", "missed", "missed", "missed", "missed"]
    assert ga.loc[0, "pred_row"] == 0 and np.isclose(ga.loc[0, "iou"], 1.0)


def test_highest_score_takes_the_box_and_best_iou_wins():
    a = ann(("im", "cat", 0, 0, 10, 10), ("im", "cat", 8, 0, 10, 10))
    # p0 (lower score) overlaps ann 0 perfectly; p1 (higher score) overlaps ann 0 at 0.82 and ann 1 at 0.67:
    # p1 goes first and takes ann 0 (its best IoU), p0 then finds ann 0 taken and ann 1 at IoU 0.11 -> FP
    p = pred(("im", "cat", 0, 0, 10, 10, 0.5), ("im", "cat", 1, 0, 10, 10, 0.9))
    ga, pa = match_boxes(a, p)
    assert pa["ann_row"].tolist() == [-1, 0]
    assert pa["error_type"].tolist() == ["duplicate", ""]
    assert ga["is_matched"].tolist() == [True, False]


def test_crowd_box_absorbs_predictions_without_counting_them():
    a = ann(("im", "person", 0, 0, 100, 100), ("im", "person", 200, 0, 10, 10), crowd=[True, False])
    p = pred(("im", "person", 10, 10, 10, 10, 0.9), ("im", "person", 50, 50, 10, 10, 0.8),
             ("im", "person", 200, 0, 10, 10, 0.7))
    ga, pa = match_boxes(a, p)
    # both small boxes lie inside the crowd box (IoU = intersection / prediction area = 1): ignored, not FP
    assert pa["error_type"].tolist() == ["ignored", "ignored", ""]
    assert pa["is_tp"].tolist() == [False, False, True]
    assert ga["error_type"].tolist() == ["ignored", ""]


def test_ordinary_box_before_crowd_box():
    a = ann(("im", "person", 0, 0, 10, 10), ("im", "person", 0, 0, 10, 10), crowd=[True, False])
    _, pa = match_boxes(a, pred(("im", "person", 0, 0, 10, 10, 0.9)))
    assert pa["ann_row"].tolist() == [1] and pa["is_tp"].tolist() == [True]


def test_empty_images_and_images_with_only_predictions():
    a = ann(("a", "cat", 0, 0, 10, 10))
    p = pred(("b", "cat", 0, 0, 10, 10, 0.9))          # b has no annotation: background
    ga, pa = match_boxes(a, p)
    assert pa["error_type"].tolist() == ["background"] and ga["error_type"].tolist() == ["missed"]
    ga, pa = match_boxes(a, pred())                    # no predictions at all
    assert ga["error_type"].tolist() == ["missed"] and len(pa) == 0
    ga, pa = match_boxes(ann(), p)                     # no annotations at all
    assert pa["error_type"].tolist() == ["background"] and len(ga) == 0


def test_max_dets_keeps_the_highest_scores():
    a = ann(*[("im", "cat", 20 * k, 0, 10, 10) for k in range(3)])
    p = pred(*[("im", "cat", 20 * k, 0, 10, 10, s) for k, s in enumerate([0.1, 0.9, 0.5])])
    ga, pa = match_boxes(a, p, {"max_dets": 2})
    assert pa["error_type"].tolist() == ["over_max_dets", "", ""]
    assert ga["is_matched"].tolist() == [False, True, True]


def test_a_lower_match_threshold_is_honoured():
    a = ann(("im", "cat", 0, 0, 10, 10))
    p = pred(("im", "cat", 5, 0, 10, 10, 0.9))                   # IoU 1/3
    assert match_boxes(a, p)[1]["error_type"].tolist() == ["localization"]
    _, pa = match_boxes(a, p, {"iou_match": 0.3})
    assert pa["is_tp"].tolist() == [True] and np.isclose(pa.loc[0, "iou"], 1 / 3)
