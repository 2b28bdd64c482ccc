"""Reading detector outputs (inspect_core/detection/formats.py): three forms, bad input as findings or one
clear error, never a traceback."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from inspect_core.detection import PredictionsError, triage_detections
from inspect_core.detection.formats import Categories, read_predictions
from inspect_core.loaders import load_dataset

CATS = [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}]


@pytest.fixture()
def coco_root(tmp_path):
    """A COCO dataset: two 100x80 images, one cat box and one dog box."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(np.full((80, 100, 3), 128, np.uint8)).save(root / "images" / name)
    coco = {"images": [{"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 11, "file_name": "b.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": 1, "image_id": 10, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0},
                            {"id": 2, "image_id": 11, "category_id": 7, "bbox": [50, 40, 40, 20], "iscrowd": 0}],
            "categories": CATS}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def read(root, path):
    ds = load_dataset(root)
    cats = Categories.of(ds.annotations, ds.classes)
    return read_predictions(path, cats, ds.images["image_id"].tolist())


def test_coco_results_by_coco_image_id_and_category_id(coco_root, tmp_path):
    p = tmp_path / "dets.json"
    p.write_text(json.dumps([{"image_id": 10, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
                             {"image_id": 11, "category_id": 7, "bbox": [50, 40, 40, 20], "score": 0.8}]))
    r = triage_detections(coco_root, p)
    assert r.predictions["image_id"].tolist() == ["images/a.jpg", "images/b.jpg"]
    assert r.predictions["category"].tolist() == ["cat", "dog"]
    assert r.predictions["is_tp"].all() and len(r.problems) == 0
    assert r.summary["metrics"]["map"] == pytest.approx(1.0)


def test_coco_results_by_file_name_and_category_name(coco_root, tmp_path):
    p = tmp_path / "dets.json"
    p.write_text(json.dumps([{"file_name": "images/b.jpg", "category_id": "dog", "bbox": [50, 40, 40, 20],
                              "score": 0.8}]))
    pred, _, form = read(coco_root, p)
    assert form == "coco" and pred["image_id"].tolist() == ["images/b.jpg"] and pred["category"].tolist() == ["dog"]


def test_yolo_prediction_folder(coco_root, tmp_path):
    labels = tmp_path / "predict" / "labels"
    labels.mkdir(parents=True)
    # YOLO class 1 = the second category by id (dog); cx, cy, w, h normalised to 100x80
    (labels / "b.txt").write_text("1 0.7 0.625 0.4 0.25 0.77\n")
    (labels / "zzz.txt").write_text("0 0.5 0.5 0.1 0.1 0.5\n")          # no such image
    r = triage_detections(coco_root, tmp_path / "predict")
    row = r.predictions.iloc[0]
    assert (row["image_id"], row["category"]) == ("images/b.jpg", "dog")
    assert [row["box_x_px"], row["box_y_px"], row["box_w_px"], row["box_h_px"]] == pytest.approx([50, 40, 40, 20])
    assert row["score"] == pytest.approx(0.77) and row["is_tp"]
    assert r.problems["check"].tolist() == ["prediction_unknown_image"]
    assert "zzz.txt" in r.problems["detail"].iloc[0]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table(coco_root, tmp_path, suffix):
    df = pd.DataFrame({"image_id": ["images/a.jpg", "images/a.jpg"], "category": ["cat", 7],
                       "box_x_px": [10, 60], "box_y_px": [10, 10], "box_w_px": [20, 10], "box_h_px": [20, 10],
                       "score": [0.9, 0.3]})
    p = tmp_path / f"dets{suffix}"
    df["category"] = df["category"].astype(str)
    df.to_csv(p, index=False) if suffix == ".csv" else df.to_parquet(p)
    pred, problems, form = read(coco_root, p)
    assert form == "table" and pred["category"].tolist() == ["cat", "dog"] and not problems


def test_bad_json_is_one_clear_error(coco_root, tmp_path):
    p = tmp_path / "dets.json"
    p.write_text('[{"image_id": 10, "bbox": [1, 2')
    with pytest.raises(PredictionsError, match="dets.json.*valid JSON"):
        triage_detections(coco_root, p)
    p.write_text('{"not": "a list"}')
    with pytest.raises(PredictionsError, match="not a COCO results list"):
        triage_detections(coco_root, p)


def test_no_category_in_common_names_both_lists(coco_root, tmp_path):
    p = tmp_path / "dets.json"
    p.write_text(json.dumps([{"image_id": 10, "category_id": "person", "bbox": [1, 1, 5, 5], "score": 0.5}]))
    with pytest.raises(PredictionsError) as exc:
        triage_detections(coco_root, p)
    assert "person" in str(exc.value) and "cat" in str(exc.value) and "dog" in str(exc.value)


def test_bad_rows_are_findings_and_the_rest_is_read(coco_root, tmp_path):
    p = tmp_path / "dets.json"
    p.write_text(json.dumps([
        {"image_id": 10, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},       # good
        {"image_id": 10, "category_id": 1, "bbox": [10, "NaN", 20, 20], "score": 0.9},    # not a number
        {"image_id": 10, "category_id": 1, "bbox": [10, 10, -5, 20], "score": 0.9},       # negative width
        {"image_id": 10, "category_id": 1, "bbox": [10, 10, 5, 20], "score": None},       # no score
        {"image_id": 10, "category_id": 3, "bbox": [10, 10, 5, 20], "score": 0.4},        # unknown category
        {"image_id": 99, "category_id": 1, "bbox": [10, 10, 5, 20], "score": 0.4},        # unknown image
        {"image_id": 10, "category_id": 1, "bbox": [1, 2], "score": 0.4},                 # short bbox
        "junk"]))
    r = triage_detections(coco_root, p)
    assert len(r.predictions) == 1
    counts = r.problems["check"].value_counts().to_dict()
    assert counts == {"prediction_malformed": 5, "prediction_unknown_category": 1, "prediction_unknown_image": 1}
    details = " ".join(r.problems["detail"])
    assert "negative" in details and "entry 1" in details and "coco image id 99" in details
    assert set(r.findings()["check"]) >= {"prediction_malformed"}


def test_table_missing_columns_and_unreadable_file(coco_root, tmp_path):
    p = tmp_path / "dets.csv"
    pd.DataFrame({"image_id": ["images/a.jpg"], "score": [0.5]}).to_csv(p, index=False)
    with pytest.raises(PredictionsError, match="lacks the column.*category.*box_x_px"):
        triage_detections(coco_root, p)
    p = tmp_path / "dets.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(PredictionsError, match="cannot be read"):
        triage_detections(coco_root, p)
    with pytest.raises(PredictionsError, match="do not exist"):
        triage_detections(coco_root, tmp_path / "nope.json")
    with pytest.raises(PredictionsError, match="unknown form"):
        triage_detections(coco_root, coco_root / "images" / "a.jpg")


def test_yolo_dataset_with_yolo_predictions(tmp_path):
    """A YOLO dataset (normalised boxes) without a scan: sizes come from the image headers."""
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.zeros((50, 200, 3), np.uint8)).save(root / "images" / "x.png")
    (root / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [car, bus]\n")
    preds = tmp_path / "pred"
    preds.mkdir()
    (preds / "x.txt").write_text("0 0.5 0.5 0.5 0.5 0.9\n1 0.1 0.1 0.1 0.1 0.8\n")
    r = triage_detections(root, preds)
    assert r.annotations[["box_x_px", "box_y_px", "box_w_px", "box_h_px"]].iloc[0].tolist() == [50, 12.5, 100, 25]
    assert r.predictions["error_type"].tolist() == ["", "background"]
    assert r.predictions["category"].tolist() == ["car", "bus"]


def test_dataframe_in_memory(coco_root):
    """What a model-wing task module has after running a detector: a table in memory."""
    df = pd.DataFrame({"image_id": ["images/b.jpg"], "category": ["dog"], "box_x_px": [50.0], "box_y_px": [40.0],
                       "box_w_px": [40.0], "box_h_px": [20.0], "score": [0.6]})
    r = triage_detections(coco_root, df)
    assert r.summary["predictions_form"] == "table" and r.predictions["is_tp"].tolist() == [True]
    assert r.annotations["error_type"].tolist() == ["missed", ""]


def test_yolo_class_without_annotations_keeps_its_index(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(root / "images" / "x.png")
    (root / "labels" / "x.txt").write_text("2 0.5 0.5 0.2 0.2\n")          # only class 2 is annotated
    (root / "data.yaml").write_text("names: [car, bus, truck]\n")
    preds = tmp_path / "pred"
    preds.mkdir()
    (preds / "x.txt").write_text("2 0.5 0.5 0.2 0.2 0.9\n1 0.1 0.1 0.1 0.1 0.8\n")
    r = triage_detections(root, preds)
    assert r.predictions["category"].tolist() == ["truck", "bus"]
    assert r.predictions["is_tp"].tolist() == [True, False]


def test_empty_results_list_means_nothing_found(coco_root, tmp_path):
    p = tmp_path / "dets.json"
    p.write_text("[]")
    r = triage_detections(coco_root, p)
    assert len(r.predictions) == 0 and r.annotations["error_type"].tolist() == ["missed", "missed"]
    assert r.summary["metrics"]["map"] == 0.0 and r.errors.empty      # no predictions: nothing to judge by


def test_dataset_without_boxes_is_one_clear_error(tmp_path):
    from inspect_core.loaders import DatasetError

    root = tmp_path / "folder" / "cat"
    root.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "a.png")
    p = tmp_path / "dets.csv"
    p.write_text("image_id,category,box_x_px,box_y_px,box_w_px,box_h_px,score\ncat/a.png,cat,1,1,2,2,0.9\n")
    with pytest.raises(DatasetError, match="has no boxes"):
        triage_detections(tmp_path / "folder", p)
