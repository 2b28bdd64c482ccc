"""Per-box decisions (inspect_core/detection/decisions.py): recorded, kept across a reopen, undone, history."""
from __future__ import annotations

import sqlite3

import pytest

from inspect_core.detection.decisions import BoxDecisionStore, ann_key, key_id, pred_key
from inspect_core.review import ReviewError, ReviewStore


def test_decisions_survive_a_reopen_of_the_store(tmp_path):
    s = BoxDecisionStore(tmp_path)
    s.decide("a.jpg", ann_key(3), "delete", category="cat")
    s.decide("a.jpg", ann_key(4), "relabel", category="cat", new_category="dog")
    s.decide("b.jpg", pred_key(7), "accept", category="dog", box_xywh_px=[1, 2, 30, 40])
    s.decide("b.jpg", ann_key(9), "fine", category="dog")
    again = BoxDecisionStore(tmp_path)          # a new process would open the same file
    cur = again.current().set_index("box_key")
    assert list(cur.index) == ["ann:3", "ann:4", "pred:7", "ann:9"]
    assert cur.loc["ann:3", "action"] == "delete"
    assert cur.loc["ann:4", "new_category"] == "dog"
    assert cur.loc["pred:7", "new_category"] == "dog"       # accept keeps the predicted class by default
    assert [cur.loc["pred:7", c] for c in ("box_x_px", "box_y_px", "box_w_px", "box_h_px")] == [1, 2, 30, 40]
    assert pd_isna(cur.loc["ann:9", "new_category"])
    assert list(again.current("b.jpg")["box_key"]) == ["pred:7", "ann:9"]


def pd_isna(v) -> bool:
    import pandas as pd
    return bool(pd.isna(v))


def test_later_decision_replaces_and_undo_reverts_with_history(tmp_path):
    s = BoxDecisionStore(tmp_path)
    s.decide("a.jpg", ann_key(1), "relabel", category="cat", new_category="dog")
    s.decide("a.jpg", ann_key(1), "relabel", category="cat", new_category="cow")
    assert s.current()["new_category"].tolist() == ["cow"]
    assert s.undo(ann_key(1)) is not None
    assert s.current()["new_category"].tolist() == ["dog"]      # the earlier decision is in force again
    s.undo(ann_key(1))
    assert s.current().empty
    assert s.undo(ann_key(1)) is None
    hist = s.history(ann_key(1))
    assert hist["action"].tolist() == ["relabel", "relabel", "undo", "undo"]
    assert hist["reverts_id"].tolist()[2:] == [hist["decision_id"][1], hist["decision_id"][0]]
    assert s.last_id() == int(hist["decision_id"].max())


def test_box_decisions_share_the_review_store_file_and_leave_image_decisions_alone(tmp_path):
    review = ReviewStore(tmp_path)
    review.decide("a.jpg", "keep")
    s = BoxDecisionStore(tmp_path, review)
    s.decide("a.jpg", ann_key(2), "delete")
    assert s.path == review.path
    assert review.current()["action"].tolist() == ["keep"]
    with sqlite3.connect(review.path) as con:
        assert con.execute("SELECT COUNT(*) FROM box_decisions").fetchone()[0] == 1


@pytest.mark.parametrize("args, words", [
    (("a.jpg", "ann:1", "accept"), "predicted box"),
    (("a.jpg", "pred:1", "delete"), "annotated box"),
    (("a.jpg", "ann:1", "relabel"), "new class"),
    (("a.jpg", "pred:1", "accept"), "class"),
    (("a.jpg", "box 1", "fine"), "box key"),
    (("a.jpg", "ann:1", "erase"), "unknown box action"),
    (("", "ann:1", "fine"), "image_id"),
])
def test_bad_decisions_are_refused_with_a_message(tmp_path, args, words):
    s = BoxDecisionStore(tmp_path)
    with pytest.raises(ReviewError, match=words):
        s.decide(*args)
    assert s.current().empty


def test_accept_needs_a_box_with_area(tmp_path):
    s = BoxDecisionStore(tmp_path)
    with pytest.raises(ReviewError, match="no area"):
        s.decide("a.jpg", pred_key(1), "accept", category="cat", box_xywh_px=[0, 0, 0, 5])


def test_key_id():
    assert key_id("ann:12") == ("ann", 12)
    assert key_id(pred_key(3)) == ("pred", 3)


def test_every_decision_keeps_the_box_shown_and_same_box_tells_another_file(tmp_path):
    from inspect_core.detection.decisions import same_box
    s = BoxDecisionStore(tmp_path)
    s.decide("a.jpg", pred_key(3), "fine", category="cat", box_xywh_px=[1, 2, 3, 4])
    s.decide("a.jpg", ann_key(5), "fine", category="cat")
    cur = s.current().set_index("box_key")
    rec = cur.loc["pred:3"].to_dict()
    assert [rec[c] for c in ("box_x_px", "box_y_px", "box_w_px", "box_h_px")] == [1, 2, 3, 4]
    assert same_box(rec, [1, 2, 3, 4]) and not same_box(rec, [1, 2, 3, 9])
    assert same_box(cur.loc["ann:5"].to_dict(), [7, 7, 7, 7])          # stored without a box: any box
