"""Annotation errors found through the detector (inspect_core/detection/errors.py), worked by hand."""
from __future__ import annotations

import pandas as pd
import pytest

from inspect_core.detection.errors import CHECKS, annotation_errors, image_error_scores
from inspect_core.detection.match import match_boxes

ANN_COLS = ["ann_id", "image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]
PRED_COLS = ["pred_id", "image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"]


def frames():
    ann = pd.DataFrame([
        (0, "im", "cat", 0, 0, 20, 20),        # well found: no finding
        (1, "im", "cat", 100, 0, 20, 20),      # prediction at 110 (IoU 1/3): badly placed
        (2, "im", "dog", 200, 0, 20, 20),      # a confident cat exactly on it: wrong class
        (3, "im", "cat", 300, 100, 20, 20),    # nothing near: spurious
    ], columns=ANN_COLS)
    pred = pd.DataFrame([
        (0, "im", "cat", 0, 0, 20, 20, 0.95),
        (1, "im", "cat", 110, 0, 20, 20, 0.8),
        (2, "im", "cat", 200, 0, 20, 20, 0.9),
        (3, "im", "dog", 200, 0, 20, 20, 0.3),     # the annotated class, less confident
        (4, "im", "cat", 400, 0, 30, 30, 0.7),     # confident, on no annotation: missing box
        (5, "im", "cat", 400, 100, 30, 30, 0.2),   # not confident: nothing
    ], columns=PRED_COLS)
    return ann, pred


def test_one_finding_of_each_kind_with_its_evidence():
    ann, pred = frames()
    e = annotation_errors(ann, pred)
    assert set(e["check"]) == set(CHECKS)
    by = e.set_index("check")
    assert by.loc["missing_box", "pred_id"] == 4 and by.loc["missing_box", "score"] == pytest.approx(0.7)
    assert by.loc["badly_placed_box", "ann_id"] == 1
    assert by.loc["badly_placed_box", "iou"] == pytest.approx(1 / 3)
    assert by.loc["badly_placed_box", "score"] == pytest.approx(0.8 * (1 - (1 / 3) / 0.6))
    assert by.loc["wrong_box_class", "ann_id"] == 2 and by.loc["wrong_box_class", "other_category"] == "cat"
    assert by.loc["wrong_box_class", "score"] == pytest.approx(0.9 - 0.3)
    assert by.loc["spurious_box", "ann_id"] == 3 and by.loc["spurious_box", "score"] == pytest.approx(0.9)
    assert "0.80" in by.loc["badly_placed_box", "detail"] and "IoU 0.33" in by.loc["badly_placed_box", "detail"]
    # ranked: highest score first, ranks 1..n
    assert e["score"].is_monotonic_decreasing and e["rank"].tolist() == list(range(1, len(e) + 1))


def test_thresholds_are_data():
    ann, pred = frames()
    e = annotation_errors(ann, pred, {"min_confidence": 0.75})
    assert "missing_box" not in set(e["check"])            # 0.7 is no longer confident
    e = annotation_errors(ann, pred, {"placed_iou_below": 0.3})
    assert "badly_placed_box" not in set(e["check"])        # IoU 1/3 is now good enough


def test_no_spurious_box_on_an_image_without_predictions():
    ann, pred = frames()
    e = annotation_errors(ann.assign(image_id="other"), pred.iloc[:0])
    assert e.empty


def test_image_error_score_orders_images():
    ann, pred = frames()
    ann = pd.concat([ann, pd.DataFrame([(9, "clean", "cat", 0, 0, 10, 10)], columns=ANN_COLS)], ignore_index=True)
    pred = pd.concat([pred, pd.DataFrame([(9, "clean", "cat", 0, 0, 10, 10, 0.9)], columns=PRED_COLS)],
                     ignore_index=True)
    e = annotation_errors(ann, pred)
    ga, pa = match_boxes(ann, pred)
    scores = image_error_scores(pd.Series(["clean", "im", "empty"]), e, pa, ga)
    assert scores["image_id"].tolist()[0] == "im"
    row = scores.set_index("image_id").loc["im"]
    fp_conf = pa.loc[(pa["image_id"] == "im") & ~pa["is_tp"], "score"].sum()
    assert row["detection_error_score"] == pytest.approx(e["score"].sum() + 0.1 * (fp_conf + row["n_missed"]))
    assert scores.set_index("image_id").loc["clean", "detection_error_score"] == 0.0
    assert scores.set_index("image_id").loc["empty", "n_annotations"] == 0
