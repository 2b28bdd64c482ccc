"""The Model triage page's detection task (pages/5_Model_triage.py, inspect_core/ui/detection_triage.py) under
AppTest on
sample_data with sample_data/detections.json: the worst images listed, filters narrow them, a box decision is
recorded and survives a new session, exports are offered; bad inputs give clear messages."""
from __future__ import annotations

import re

import pytest

from inspect_core.detection import triage_detections
from inspect_core.detection.decisions import BoxDecisionStore
from inspect_core.detection import view as dv
from inspect_core.ui import detection_drawing as dd
from inspect_core.ui import detection_triage as dt
from grid_support import open_tile, tiles
from page_support import SAMPLE, open_page, texts

PAGE = "pages/5_Model_triage.py"
TASK_KEY = "di_mt_task"


def open_detection(root=SAMPLE):
    """Model triage on ``root``, switched to its detection task (the task choice shows when the dataset has boxes)."""
    at = open_page(PAGE, root)
    at.radio(key=TASK_KEY).set_value("Detection (boxes)").run()
    assert not at.exception
    return at
PRED = SAMPLE / "detections.json"

pytestmark = pytest.mark.usefixtures("module_cache")


def n_matching(at) -> int:
    line = next(t.value for t in at.text if "images match" in str(t.value))
    return int(re.match(r"([\d,]+) images match", line).group(1).replace(",", ""))


GRID = "di_det_open_grid"            # the worst images (one element, tile_grid)


def open_ids(at, key: str = GRID) -> list[str]:
    """The image ids of the grid's tiles, in rank order."""
    return [t["id"] for t in tiles(at, key)]


def metrics(at) -> dict[str, str]:
    """The headline numbers, from their one Markdown line ("Label **value** · ...")."""
    line = next(m.value for m in at.markdown if "AP50" in m.value)
    parts = [p.strip().rsplit(" ", 1) for p in line.replace("&nbsp;", " ").split("·")]
    return {k.replace("\\", "").strip(): v.strip("*") for k, v in parts}


@pytest.fixture(scope="module")
def result(sample_scan):
    return triage_detections(sample_scan, PRED)      # as the page does: the scan's boxes and sizes


def test_worst_images_listed_and_filters_narrow_them(sample_scan, result):
    at = open_detection()
    assert not at.exception
    assert at.text_input(key="di_det_pred_input").value == str(PRED)      # the dataset's detections.json offered
    worst = result.images["image_id"].head(12).tolist()
    assert open_ids(at) == worst                                      # worst detection error score first
    assert n_matching(at) == len(result.images)
    shown = metrics(at)
    assert shown["AP50"] == f"{result.summary['metrics']['ap50']:.3f}"
    assert shown["Images"] == f"{len(result.images):,}"
    assert shown["mAP@[.5:.95]"] == f"{result.summary['metrics']['map']:.3f}"
    at.multiselect(key="di_det_f_tag").set_value(["missing_box"]).run()
    assert not at.exception
    want = set(result.errors.loc[result.errors["check"] == "missing_box", "image_id"])
    assert n_matching(at) == len(want) and set(open_ids(at)) == want
    at.multiselect(key="di_det_f_tag").set_value([]).run()
    at.multiselect(key="di_det_f_class").set_value(["hexagon"]).run()
    shown = set(open_ids(at))
    has_hex = set(result.annotations.loc[result.annotations["category"] == "hexagon", "image_id"]) | \
        set(result.predictions.loc[(result.predictions["category"] == "hexagon")
                                   & (result.predictions["score"] >= 0.3), "image_id"])
    assert shown and shown <= has_hex and n_matching(at) == len(has_hex)


def test_a_box_decision_is_recorded_and_survives_a_new_session(sample_scan, result):
    at = open_detection()
    target = result.errors.loc[result.errors["check"] == "missing_box"].iloc[0]
    at.session_state["di_det_selected"] = target["image_id"]
    at.run()
    assert not at.exception
    key = f"pred:{int(target['pred_id'])}"
    at.selectbox(key="di_det_box").set_value(key).run()
    at.radio(key="di_det_action").set_value("accept").run()
    at.button(key="di_det_record").click().run()
    assert not at.exception, at.exception
    cur = BoxDecisionStore(sample_scan.workspace).current().set_index("box_key")
    assert cur.loc[key, "action"] == "accept" and cur.loc[key, "new_category"] == target["category"]
    assert cur.loc[key, "box_w_px"] == pytest.approx(target["box_w_px"])
    at2 = open_detection()                                # a new session reads the same store
    at2.session_state["di_det_selected"] = target["image_id"]
    at2.run()
    table = at2.table[0].value if at2.table else None
    assert any(f"accepted as {target['category']}" in str(v) for df in [d.value for d in at2.table]
               for v in df.get("decision", [])), table
    assert not [b for b in at2.button if b.key == "di_det_prepare"]       # a closed tab's content is not drawn
    at2.session_state["di_det_tab"] = "Decisions and exports"               # the tab opened (a rerun)
    at2.run()
    at2.button(key="di_det_prepare").click().run()
    assert not at2.exception
    labels = {b.label for b in at2.get("download_button")}
    assert {"Corrected COCO JSON", "YOLO label folder (zip)", "Relabel list (CSV)"} <= labels
    at2.button(key="di_det_write").click().run()
    assert not at2.exception
    written = sorted((sample_scan.workspace / "exports").glob("detection-*/corrected_annotations.json"))
    assert written, texts(at2)
    from pycocotools.coco import COCO
    coco = COCO(str(written[-1]))
    box = [round(float(target[c]), 2) for c in ("box_x_px", "box_y_px", "box_w_px", "box_h_px")]
    new = [a for a in coco.loadAnns(coco.getAnnIds()) if a["bbox"] == box]
    assert len(new) == 1 and coco.loadCats(new[0]["category_id"])[0]["name"] == target["category"]
    at2.selectbox(key="di_det_box").set_value(key).run()
    at2.button(key="di_det_undo").click().run()
    assert not at2.exception
    assert key not in set(BoxDecisionStore(sample_scan.workspace).current()["box_key"])


def test_missing_or_bad_predictions_give_a_clear_message(sample_scan, tmp_path):
    at = open_detection()
    at.text_input(key="di_det_pred_input").set_value(str(tmp_path / "nope.json")).run()
    assert not at.exception and any("not found" in e.value for e in at.error)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    at.text_input(key="di_det_pred_input").set_value(str(bad)).run()
    assert not at.exception and any("Could not use the predictions" in e.value for e in at.error), texts(at)
    import os
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)                                    # would block a reader forever: never opened
    at.text_input(key="di_det_pred_input").set_value(str(fifo)).run()
    assert not at.exception and any("not a regular file" in e.value for e in at.error), texts(at)


def test_filters_and_cells_on_the_library_side(result):
    view = dv.prepare_view(result)
    assert filter_all(view) == len(result.images)
    small = dv.filter_images(view, sizes=["small"])
    assert set(small["image_id"]) <= set(result.annotations["image_id"]) | set(result.predictions["image_id"])
    # the confusion cells' images: the diagonal from true positives, the background column from missed boxes
    cats = result.summary["categories"]
    tp_circle = dv.cell_images(result, "circle", "circle", 0.25, "(background)")
    assert tp_circle and all(i in set(result.predictions.loc[result.predictions["is_tp"], "image_id"])
                             for i in tp_circle)
    missed = set(result.annotations.loc[result.annotations["error_type"] == "missed", "image_id"])
    assert set().union(*[dv.cell_images(result, c, "(background)", 0.25, "(background)") for c in cats]) == missed
    ann, pred = dv.boxes_of(view, result, result.images["image_id"].iloc[0])
    assert len(ann) == result.images["n_annotations"].iloc[0] and len(pred) == result.images["n_predictions"].iloc[0]
    # a grid's tiles at once: each image's boxes exactly as one by one (an unknown image: none)
    ids = result.images["image_id"].iloc[[0, 5, 40, 3]].tolist() + ["not/there.jpg"]
    many = dv.boxes_of_many(view, result, ids)
    assert list(many) == ids
    for image_id in ids[:4]:
        a, p = many[image_id]
        assert set(a["image_id"]) == {image_id} and set(p["image_id"]) == {image_id}
        assert sorted(a["ann_id"]) == sorted(result.annotations.loc[result.annotations["image_id"] == image_id,
                                                                     "ann_id"])
        assert sorted(p["pred_id"]) == sorted(result.predictions.loc[result.predictions["image_id"] == image_id,
                                                                      "pred_id"])
        assert (a["box_key"] == "ann:" + a["ann_id"].astype(str)).all()
        assert (p["check"] == view.check_of(p["pred_id"], "pred")).all()
    assert len(many["not/there.jpg"][0]) == 0 and len(many["not/there.jpg"][1]) == 0
    # the codes built up front (as the app's triage step does) filter as the lazy ones
    eager = dv.prepare_view(result, codes=True)
    assert eager._boxes is not None and dv.prepare_view(result)._boxes is None
    for kw in ({"tags": ["missing_box"]}, {"categories": ["hexagon"], "sizes": ["small", "medium"]}):
        assert dv.filter_images(eager, **kw)["image_id"].tolist() == dv.filter_images(view, **kw)["image_id"].tolist()


def filter_all(view) -> int:
    return len(dv.filter_images(view))


def test_drawing_two_styles():
    import numpy as np
    import pandas as pd
    from PIL import Image
    img = Image.new("RGB", (100, 100), (0, 0, 0))
    ann = pd.DataFrame({"box_key": ["ann:1"], "category": ["cat"], "box_x_px": [10.0], "box_y_px": [10.0],
                        "box_w_px": [30.0], "box_h_px": [30.0], "error_type": [""], "check": [""]})
    pred = pd.DataFrame({"box_key": ["pred:1", "pred:2"], "category": ["cat", "dog"], "box_x_px": [55.0, 5.0],
                         "box_y_px": [55.0, 60.0], "box_w_px": [40.0, 20.0], "box_h_px": [40.0, 20.0],
                         "score": [0.9, 0.1], "is_tp": [False, False], "error_type": ["background", "background"]})
    out = np.asarray(dt.draw_detections(img, 1.0, ann, pred, min_score=0.5))
    solid = out[25, 9:12]                                           # the annotation's left edge: unbroken
    assert (out[20:40, 10] == dd.ANN_COLOUR).all(axis=1).all() and solid.any()
    edge = (out[70:94, 55] == dd.FP_COLOUR).all(axis=1)             # the prediction's left edge: dashed
    assert 0 < edge.sum() < len(edge)
    assert not (out[62:78, 5] == dd.FP_COLOUR).all(axis=1).any()    # below the confidence cut: not drawn


def test_crowd_regions_drawn_apart_from_annotations_and_errors():
    """A crowd region (iscrowd; matching marks it 'ignored') is hatched teal and labelled crowd, not drawn as an
    annotation in error; a prediction ignored inside it is dashed teal, not orange as a false positive."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    img = Image.new("RGB", (120, 120), (0, 0, 0))
    ann = pd.DataFrame({"box_key": ["ann:1", "ann:2"], "category": ["cat", "cat"], "box_x_px": [5.0, 50.0],
                        "box_y_px": [5.0, 50.0], "box_w_px": [30.0, 60.0], "box_h_px": [30.0, 60.0],
                        "error_type": ["", "ignored"], "check": ["", ""], "iscrowd": [False, True]})
    pred = pd.DataFrame({"box_key": ["pred:1"], "category": ["cat"], "box_x_px": [70.0], "box_y_px": [70.0],
                         "box_w_px": [20.0], "box_h_px": [20.0], "score": [0.9], "is_tp": [False],
                         "error_type": ["ignored"]})
    out = np.asarray(dt.draw_detections(img, 1.0, ann, pred, min_score=0.5)).astype(int)
    edge = out[60:100, 50]                                           # the crowd region's left edge
    assert (edge == dd.CROWD_COLOUR).all(axis=1).all()
    assert not (out == dd.ANN_ERROR_COLOUR).all(axis=2).any()        # nothing drawn as an annotation in error
    inside_crowd = out[56:68, 56:105].reshape(-1, 3)                 # hatched: lines of the crowd colour, blended
    hatch = (inside_crowd.sum(axis=1) > 0).mean()
    assert 0.05 < hatch < 0.5
    assert (np.abs(inside_crowd[inside_crowd.sum(axis=1) > 0] - np.array(dd.CROWD_COLOUR) * 0.55).max() <= 2)
    assert not out[12:30, 12:30].any()                               # an ordinary box's inside is left as it is
    assert (out[8:30, 5] == dd.ANN_COLOUR).all(axis=1).all()         # ... and its edge is the annotation's
    pedge = (out[72:90, 70] == dd.CROWD_COLOUR).all(axis=1)          # the prediction in the crowd: dashed teal
    assert 0 < pedge.sum() < len(pedge)
    assert not (out == dd.FP_COLOUR).all(axis=2).any()               # not a false positive
    same_not_crowd = np.asarray(dt.draw_detections(img, 1.0, ann.assign(iscrowd=False), pred, 0.5)).astype(int)
    assert (same_not_crowd[60:100, 50] == dd.ANN_ERROR_COLOUR).all(axis=1).all()  # the style comes from iscrowd
    text = dt.legend(ann.assign(check=""), pred, 0.5)
    assert "1 green, 0 red" in text and "hatched teal: 1" in text and "the 1 predictions inside them" in text
    assert "0 orange" in text


def test_a_crowd_region_is_counted_apart_on_the_page(tmp_path):
    """On a COCO dataset with a crowd box, the grid's caption and the detail's legend count it apart, and the
    detail's table names it a crowd region."""
    import json

    from test_detector_model import tiny_coco

    import inspect_core
    root = tiny_coco(tmp_path / "data")
    coco = json.loads((root / "annotations.json").read_text())
    coco["annotations"].append({"id": 3, "image_id": 1, "category_id": 1, "bbox": [110, 10, 80, 80], "area": 6400,
                                "iscrowd": 1})
    (root / "annotations.json").write_text(json.dumps(coco))
    (root / "detections.json").write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [21, 20, 79, 50], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [120, 20, 30, 30], "score": 0.8}]))       # inside the crowd
    inspect_core.scan(root)
    at = open_detection(root)
    assert not at.exception, at.exception
    captions = [line for t in tiles(at, GRID) for line in t["lines"]]
    assert any("1 TP, 0 FP" in c and "1 crowd" in c for c in captions), captions
    at.session_state["di_det_selected"] = "images/a.png"
    at.run()
    assert not at.exception, at.exception
    assert any("hatched teal: 1" in c.value and "the 1 predictions inside them" in c.value for c in at.caption)
    table = at.table[0].value
    assert sorted(table["kind"]) == ["annotation", "crowd region", "prediction", "prediction"]


def test_a_dataset_without_boxes_says_so(tmp_path, cache_home):
    import numpy as np
    from PIL import Image

    import inspect_core
    root = tmp_path / "plain"
    for cls in ("ant", "bee"):
        (root / cls).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((16, 16, 3), 40 * k, np.uint8)).save(root / cls / f"{k}.png")
    inspect_core.scan(root, workspace=cache_home / "dataset-inspector")
    at = open_page(PAGE, root)
    assert not [r for r in at.radio if r.key == TASK_KEY]          # no boxes: Model triage offers no detection task


def test_a_decision_made_on_another_predictions_file_is_not_drawn_on_these_boxes(result, tmp_path):
    store = BoxDecisionStore(tmp_path)
    p = result.predictions.iloc[0]
    box = [float(p[c]) for c in ("box_x_px", "box_y_px", "box_w_px", "box_h_px")]
    store.decide(p["image_id"], f"pred:{int(p['pred_id'])}", "accept", category=p["category"], box_xywh_px=box)
    a = result.annotations.iloc[0]
    store.decide(a["image_id"], f"ann:{int(a['ann_id'])}", "delete", box_xywh_px=[0, 0, 1, 1])    # another box
    store.decide("x.jpg", "pred:99999999", "fine")                                                # not in the result
    decided, n_other = dt.decided_boxes(store.current(), result)
    assert list(decided) == [f"pred:{int(p['pred_id'])}"] and n_other == 2


def _render_given_result():
    import sys

    from inspect_core.ui import detection_triage
    held = sys.modules["detection_page_test_input"]
    detection_triage.render(held.scan, None, result=held.result)


def test_render_takes_a_result_computed_elsewhere(sample_scan, result, monkeypatch):
    """How Model triage (or a bench) calls the section: with a DetectionResult it already has."""
    import sys
    import types

    from streamlit.testing.v1 import AppTest
    held = types.ModuleType("detection_page_test_input")
    held.scan, held.result = sample_scan, result
    monkeypatch.setitem(sys.modules, held.__name__, held)
    at = AppTest.from_function(_render_given_result, default_timeout=120).run()
    assert not at.exception
    assert open_ids(at)[:3] == result.images["image_id"].head(3).tolist()
    assert not at.text_input                      # no predictions file asked for
    view = dt.view_of(result)
    assert dt.view_of(result) is view             # prepared once per result


def test_selecting_a_row_of_the_annotation_errors_table_opens_its_image(sample_scan, result):
    from inspect_core.ui.text import md_escape
    at = open_detection()
    assert "di_det_selected" not in at.session_state and not at.subheader      # no image open yet
    k = 3                                                 # a row other than the first: the row index is used
    want = str(result.errors.iloc[k]["image_id"])
    assert want != str(result.errors.iloc[0]["image_id"])
    def errors_tables():
        return [d.value for d in at.dataframe if "confidence" in d.value.columns and "rank" in d.value.columns]
    assert not errors_tables()                                              # the errors tab is closed: not drawn
    at.session_state["di_det_tab"] = "Annotation errors"
    at.run()
    assert [len(t) for t in errors_tables()] == [min(len(result.errors), dt.VIEW_DEFAULTS["errors_shown"])]
    at.session_state["di_det_errors"] = {"selection": {"rows": [k], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["di_det_selected"] == want
    assert [h.value for h in at.subheader if h.value == md_escape(want)]           # the detail view is open
    # its errors are shown beside it, the selected row's among them
    check = str(result.errors.iloc[k]["check"])
    assert any(w.value.startswith(md_escape(check)) for w in at.warning)


def detector_setup(tmp_path, module_name="fixed", broken=False):
    """A tiny COCO dataset and a scripted detector whose boxes are known (tests/test_detector_model.py)."""
    from test_detector_model import LETTERBOX, Broken, FixedBoxes, save_scripted, tiny_coco
    import inspect_core
    root = tiny_coco(tmp_path / "data")
    inspect_core.scan(root)                                 # the page opens scanned datasets
    module = Broken("nan") if broken else FixedBoxes([[10.0, 35.0, 50.0, 60.0]], [0], [0.9])
    (tmp_path / "models").mkdir()
    return root, save_scripted(module, tmp_path / "models", module_name, LETTERBOX)


def test_the_detection_task_takes_a_detector_model_file(tmp_path):
    root, model = detector_setup(tmp_path)
    at = open_detection(root)
    at.radio(key="di_det_source").set_value("model").run()
    assert not at.exception
    at.text_input(key="di_det_model_input").set_value(str(model)).run()
    assert not at.exception and not [m for m in at.markdown if "AP50" in m.value]     # nothing runs before the button
    at.button(key="di_det_run").click().run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Images"] == "2" and shown["Annotated boxes"] == "2" and shown["Predicted boxes"] == "2"
    assert shown["AP50"] == "0.500"                                  # the cat found exactly, the dog missed
    at.run()                                                         # a rerun keeps the result without the button
    assert metrics(at)["AP50"] == "0.500"


def test_a_broken_detector_model_is_a_clear_message_on_the_page(tmp_path):
    root, model = detector_setup(tmp_path, "broken", broken=True)
    at = open_detection(root)
    at.radio(key="di_det_source").set_value("model").run()
    at.text_input(key="di_det_model_input").set_value(str(model)).run()
    at.button(key="di_det_run").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error).replace("\\", "")        # shown Markdown-escaped
    assert "broken.ts.pt" in errors and "'boxes'" in errors and "NaN" in errors


def test_a_tile_opened_from_the_grid_shows_its_detail(sample_scan, result):
    """The grid is one element (tile_grid): its Open event opens the image's detail (heading, drawn picture as
    JPEG, the box table as a plain table)."""
    at = open_detection()
    image_id = open_ids(at)[1]
    open_tile(at, image_id, GRID)
    assert not at.exception, at.exception
    from inspect_core.ui.text import md_escape
    assert [h.value for h in at.subheader] == [md_escape(image_id)]
    assert at.table and "kind" in at.table[0].value.columns
    assert all(t["src"].startswith("data:image/jpeg;base64,") for t in tiles(at, GRID))


def test_pictures_are_drawn_once_per_threshold_size_and_decisions_version(sample_scan, result, monkeypatch):
    """A rerun (a filter, a tab, a new session) takes the drawn pictures from the view; a new threshold or a new
    decision draws again."""
    from PIL import ImageFont
    view = dv.prepare_view(result)
    drawn = []
    real = dt.image_with_boxes
    monkeypatch.setattr(dt, "image_with_boxes", lambda *a, **kw: (drawn.append(a[1]), real(*a, **kw))[1])
    ids = result.images["image_id"].head(3).tolist()
    first = dt.drawn_pictures(sample_scan, view, result, ids, 0.3, 320, {}, 0)
    assert sorted(drawn) == sorted(ids) and all(p.data[:2] == b"\xff\xd8" for p in first.values())   # JPEG
    again = dt.drawn_pictures(sample_scan, view, result, ids, 0.3, 320, {}, 0)
    assert len(drawn) == 3 and all(again[i] is first[i] for i in ids)
    dt.drawn_pictures(sample_scan, view, result, ids[:1], 0.5, 320, {}, 0)
    dt.drawn_pictures(sample_scan, view, result, ids[:1], 0.3, 320, {}, 1)
    assert len(drawn) == 5
    assert type(dd._font()) is ImageFont.ImageFont           # box labels: the built-in bitmap font, no TrueType


def test_decisions_are_read_again_only_when_the_store_changes(sample_scan, result, monkeypatch):
    reads = []
    real = BoxDecisionStore.current
    monkeypatch.setattr(BoxDecisionStore, "current", lambda self, *a: (reads.append(1), real(self, *a))[1])
    at = open_detection()
    n = len(reads)
    at.slider(key="di_det_min_score").set_value(0.5).run()
    at.multiselect(key="di_det_f_tag").set_value(["missing_box"]).run()
    assert not at.exception and len(reads) == n                     # a slider move and a filter: none read
    target = result.errors.loc[result.errors["check"] == "missing_box"].iloc[0]
    at.session_state["di_det_selected"] = target["image_id"]
    at.run()
    at.button(key="di_det_record").click().run()
    assert not at.exception
    assert len(reads) > n                                           # a decision recorded: read again
