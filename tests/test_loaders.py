"""Loaders: every on-disk layout becomes the same images/annotations tables; bad roots and bad paths are
reported, never opened."""
from __future__ import annotations

import builtins
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import inspect_core
from inspect_core import DatasetError, load_dataset
from inspect_core.model import table as scores_table

BOX_COLS = ["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]


def records(df: pd.DataFrame, cols) -> list[tuple]:
    """Rows of ``df[cols]`` as tuples, with every missing value as None (so literals compare cleanly)."""
    sub = df[list(cols)].astype(object)
    return [tuple(None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v
                  for v in row) for row in sub.itertuples(index=False)]


def save(path: Path, size=(8, 6), colour=(120, 60, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, colour)
    im.save(path, format=fmt)
    return path


# ----------------------------------------------------------------------------- class folders

def test_class_folders_any_extension_case(tmp_path):
    root = tmp_path / "ds"
    names = {"cat/a.JPG": "JPEG", "cat/b.jpeg": "JPEG", "cat/c.png": "PNG", "dog/d.WebP": "WEBP",
             "dog/e.bmp": "BMP", "dog/f.TIF": "TIFF", "dog/g.gif": "GIF", "dog/h.Jpg": "JPEG"}
    for name, fmt in names.items():
        save(root / name, fmt=fmt)
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.jpg").write_bytes(b"hidden")
    ds = load_dataset(root)
    assert ds.format == "folder"
    assert ds.root == Path(os.path.realpath(root))
    assert records(ds.images, ["image_id", "label", "split"]) == [
        ("cat/a.JPG", "cat", None), ("cat/b.jpeg", "cat", None), ("cat/c.png", "cat", None),
        ("dog/d.WebP", "dog", None), ("dog/e.bmp", "dog", None), ("dog/f.TIF", "dog", None),
        ("dog/g.gif", "dog", None), ("dog/h.Jpg", "dog", None)]
    assert ds.classes == ["cat", "dog"]
    assert ds.has_image_labels and not ds.has_boxes
    assert ds.annotations.empty and ds.problems.empty


def test_split_class_folders_and_valid_alias(tmp_path):
    root = tmp_path / "ds"
    for name in ["train/cat/1.jpg", "train/dog/2.jpg", "valid/cat/3.jpg", "test/dog/4.png", "train/loose.jpg"]:
        save(root / name)
    ds = load_dataset(root)
    assert ds.format == "folder"
    assert records(ds.images, ["image_id", "label", "split"]) == [
        ("test/dog/4.png", "dog", "test"), ("train/cat/1.jpg", "cat", "train"),
        ("train/dog/2.jpg", "dog", "train"), ("train/loose.jpg", None, "train"),
        ("valid/cat/3.jpg", "cat", "val")]
    assert ds.classes == ["cat", "dog"]


def test_split_folders_named_val_and_capitalised(tmp_path):
    root = tmp_path / "ds"
    for name in ["Train/cat/1.jpg", "val/cat/2.jpg", "Test/cat/3.jpg"]:
        save(root / name)
    ds = load_dataset(root)
    assert records(ds.images, ["image_id", "split"]) == [
        ("Test/cat/3.jpg", "test"), ("Train/cat/1.jpg", "train"), ("val/cat/2.jpg", "val")]


def test_classes_txt_is_the_class_list(tmp_path):
    root = tmp_path / "ds"
    save(root / "cat" / "a.jpg")
    (root / "classes.txt").write_text("# comment\nzebra\ncat\n\ndog\n")
    ds = load_dataset(root)
    assert ds.classes == ["zebra", "cat", "dog"]


# ----------------------------------------------------------------------------- manifests

def _manifest_root(tmp_path) -> Path:
    root = tmp_path / "ds"
    for name in ["img/a.jpg", "img/b.jpg", "img/c.jpg"]:
        save(root / name)
    return root


def test_csv_manifest_autodetected_with_metadata(tmp_path):
    root = _manifest_root(tmp_path)
    (root / "manifest.csv").write_text(
        "path,label,split,source,weight\n"
        "img/a.jpg,cat,train,web,1.5\n"
        "./img/b.jpg,dog,validation,phone,2\n"
        "img/c.jpg,,test,web,3\n")
    ds = load_dataset(root)
    assert ds.format == "csv"
    assert records(ds.images, ["image_id", "label", "split", "source", "weight"]) == [
        ("img/a.jpg", "cat", "train", "web", "1.5"),
        ("img/b.jpg", "dog", "val", "phone", "2"),
        ("img/c.jpg", None, "test", "web", "3")]
    assert ds.classes == ["cat", "dog"]
    assert ds.has_image_labels and ds.problems.empty


def test_parquet_manifest_given_explicitly_keeps_typed_metadata(tmp_path):
    root = _manifest_root(tmp_path)
    elsewhere = tmp_path / "lists" / "my_list.parquet"
    elsewhere.parent.mkdir()
    pd.DataFrame({"path": ["img/a.jpg", "img/c.jpg"], "label": ["cat", "cat"],
                  "annotator_id": [7, 9], "image_id": ["orig-1", "orig-3"]}).to_parquet(elsewhere)
    ds = load_dataset(root, manifest=elsewhere)
    assert ds.format == "csv"
    assert records(ds.images, ["image_id", "label", "split", "annotator_id", "meta_image_id"]) == [
        ("img/a.jpg", "cat", None, 7, "orig-1"), ("img/c.jpg", "cat", None, 9, "orig-3")]


def test_manifest_paths_outside_root_and_missing_are_reported_by_the_scan(tmp_path):
    root = _manifest_root(tmp_path)
    secret = save(tmp_path / "secret.jpg", size=(20, 20))
    (root / "manifest.csv").write_text(
        "path,label\n"
        "img/a.jpg,cat\n"
        f"../secret.jpg,cat\n"
        f"{secret},cat\n"
        "img/../../secret.jpg,cat\n"
        "img/gone.jpg,dog\n")
    result = inspect_core.scan(root, workers=1)
    by_check = {c: sorted(g["image_id"]) for c, g in result.findings.groupby("check")}
    assert by_check["path_outside_root"] == sorted(["../secret.jpg", str(secret), "img/../../secret.jpg"])
    assert by_check["missing_file"] == ["img/gone.jpg"]
    outside = result.images[result.images["image_id"].isin(by_check["path_outside_root"])]
    assert outside["width_px"].tolist() == [0, 0, 0]
    assert outside["content_hash"].isna().all() and outside["brightness"].isna().all()
    for detail in result.issues("path_outside_root")["detail"]:
        assert "outside" in detail


def test_unreadable_manifest_and_manifest_without_path_column(tmp_path):
    root = _manifest_root(tmp_path)
    (root / "manifest.csv").write_text("file_label,x\nimg/a.jpg,cat\n")
    with pytest.raises(DatasetError, match="no path column"):
        load_dataset(root)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(root, manifest=tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- COCO

def _coco(images, annotations, categories):
    return {"images": images, "annotations": annotations, "categories": categories}


def test_coco_json_gives_boxes_in_pixels(tmp_path):
    root = tmp_path / "coco"
    save(root / "images" / "a.jpg", size=(100, 50))
    save(root / "images" / "b.jpg", size=(40, 40))
    coco = _coco(
        images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                {"id": 2, "file_name": "b.jpg", "width": 40, "height": 40}],
        annotations=[{"id": 10, "image_id": 1, "category_id": 3, "bbox": [5, 6, 20.5, 10]},
                     {"id": 11, "image_id": 1, "category_id": 4, "bbox": [50, 0, 50, 50]},
                     {"id": 12, "image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4]},
                     {"id": 13, "image_id": 99, "category_id": 3, "bbox": [1, 2, 3, 4]},
                     {"id": 14, "image_id": 2, "category_id": 3, "bbox": [1, 2, "x"]}],
        categories=[{"id": 3, "name": "person"}, {"id": 4, "name": "bike"}])
    (root / "annotations.json").write_text(json.dumps(coco))
    ds = load_dataset(root)
    assert ds.format == "coco"
    assert ds.has_boxes and not ds.has_image_labels
    assert records(ds.images, ["image_id"]) == [("images/a.jpg",), ("images/b.jpg",)]
    assert ds.classes == ["person", "bike"]
    assert records(ds.annotations, ["ann_id"] + BOX_COLS + ["category_id"]) == [
        (10, "images/a.jpg", "person", 5.0, 6.0, 20.5, 10.0, 3),
        (11, "images/a.jpg", "bike", 50.0, 0.0, 50.0, 50.0, 4),
        (12, "images/b.jpg", "person", 1.0, 2.0, 3.0, 4.0, 3)]
    problems = sorted(zip(ds.problems["image_id"], ds.problems["check"]))
    assert problems == [("<coco image 99>", "box_missing_image"), ("images/b.jpg", "box_malformed")]


def test_coco_boxes_for_a_folder_dataset(tmp_path):
    root = tmp_path / "ds"
    save(root / "train" / "cat" / "a.jpg", size=(30, 20))
    save(root / "train" / "dog" / "b.jpg", size=(30, 20))
    coco = _coco(
        images=[{"id": 1, "file_name": "train/cat/a.jpg"}, {"id": 2, "file_name": "train/dog/gone.jpg"},
                {"id": 3, "file_name": "../../etc/x.jpg"}],
        annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                     {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
                     {"id": 3, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]}],
        categories=[{"id": 1, "name": "head"}])
    (root / "annotations.json").write_text(json.dumps(coco))
    ds = load_dataset(root)
    assert ds.format == "folder"
    assert records(ds.images, ["image_id", "label", "split"]) == [
        ("train/cat/a.jpg", "cat", "train"), ("train/dog/b.jpg", "dog", "train")]
    assert ds.has_boxes and ds.has_image_labels
    assert records(ds.annotations, BOX_COLS) == [("train/cat/a.jpg", "head", 0.0, 0.0, 10.0, 10.0)]
    assert sorted(zip(ds.problems["image_id"], ds.problems["check"])) == [
        ("../../etc/x.jpg", "path_outside_root"), ("train/dog/gone.jpg", "box_missing_image")]


def test_broken_coco_json_is_a_clear_error(tmp_path):
    root = tmp_path / "coco"
    save(root / "images" / "a.jpg")
    (root / "annotations.json").write_text('{"images": [ {"id": 1, ')
    with pytest.raises(DatasetError, match="annotations.json"):
        load_dataset(root, format="coco")


# ----------------------------------------------------------------------------- YOLO

YAML_FORMS = {
    "flow": "path: .\ntrain: images/train\nnc: 3\nnames: [cat, 'dog', \"bird\"]\n",
    "block": "nc: 3\nnames:\n  - cat\n  - dog\n  - 'bird'\ntrain: images/train\n",
    "map": "names:\n  0: cat\n  1: dog\n  2: bird\nnc: 3\n",
}


@pytest.mark.parametrize("form", sorted(YAML_FORMS))
def test_yolo_names_forms_and_boxes_in_pixels_after_scan(tmp_path, form):
    root = tmp_path / "yolo"
    save(root / "images" / "train" / "a.jpg", size=(200, 100))
    save(root / "images" / "val" / "b.PNG", size=(50, 50), fmt="PNG")
    save(root / "images" / "train" / "c.jpg", size=(64, 64))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n2 0.25 0.75 0.5 0.5\n\n")
    (root / "labels" / "val" / "b.txt").write_text("1 0.5 0.5 1 1\n")
    (root / "data.yaml").write_text(YAML_FORMS[form])
    ds = load_dataset(root)
    assert ds.format == "yolo"
    assert ds.classes == ["cat", "dog", "bird"]
    assert records(ds.images, ["image_id", "split"]) == [
        ("images/train/a.jpg", "train"), ("images/train/c.jpg", "train"), ("images/val/b.PNG", "val")]
    result = inspect_core.scan(root, workers=1)
    got = records(result.annotations, BOX_COLS)
    expected = [("images/train/a.jpg", "cat", 80.0, 30.0, 40.0, 40.0),
                ("images/train/a.jpg", "bird", 0.0, 50.0, 100.0, 50.0),
                ("images/val/b.PNG", "dog", 0.0, 0.0, 50.0, 50.0)]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    np.testing.assert_allclose([g[2:] for g in got], [e[2:] for e in expected], atol=1e-9)
    assert dict(zip(result.images["image_id"], result.images["n_boxes"])) == {
        "images/train/a.jpg": 2, "images/train/c.jpg": 0, "images/val/b.PNG": 1}
    assert sorted(result.issues("no_boxes")["image_id"]) == ["images/train/c.jpg"]


def test_yolo_without_data_yaml_uses_class_ids(tmp_path):
    root = tmp_path / "yolo"
    save(root / "images" / "a.jpg", size=(10, 10))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    ds = load_dataset(root)
    assert ds.format == "yolo"
    assert ds.classes == ["3"]
    assert records(ds.annotations, ["image_id", "category"]) == [("images/a.jpg", "3")]


# ----------------------------------------------------------------------------- format override

def test_format_override(tmp_path):
    root = tmp_path / "ds"
    save(root / "images" / "a.jpg", size=(20, 20))
    save(root / "images" / "b.jpg", size=(20, 20))
    (root / "annotations.json").write_text(json.dumps(_coco(
        images=[{"id": 1, "file_name": "a.jpg"}],
        annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        categories=[{"id": 1, "name": "x"}])))
    auto = load_dataset(root)
    assert auto.format == "coco"
    assert records(auto.images, ["image_id"]) == [("images/a.jpg",)]
    folder = load_dataset(root, format="folder")
    assert folder.format == "folder"
    assert records(folder.images, ["image_id", "label"]) == [("images/a.jpg", "images"), ("images/b.jpg", "images")]
    with pytest.raises(DatasetError, match="unknown format 'voc'"):
        load_dataset(root, format="voc")


# ----------------------------------------------------------------------------- bad roots

def test_bad_roots_raise_dataset_error_with_a_clear_message(tmp_path):
    a_file = tmp_path / "file.jpg"
    a_file.write_bytes(b"x")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(a_file)
    with pytest.raises(DatasetError, match="no dataset root"):
        load_dataset("")
    with pytest.raises(DatasetError, match="no dataset root"):
        load_dataset(None)
    with pytest.raises(DatasetError, match="does not exist"):
        inspect_core.scan(tmp_path / "missing")


def test_empty_root_scans_to_an_empty_result(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    result = inspect_core.scan(root, workers=1)
    assert len(result.images) == 0 and result.summary["n_images"] == 0


# ----------------------------------------------------------------------------- escaping symlinks

def test_symlink_escaping_the_root_is_reported_and_never_opened(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    save(root / "cat" / "a.jpg", size=(16, 16))
    save(root / "cat" / "b.jpg", size=(16, 16), colour=(1, 2, 3))
    secret = save(tmp_path / "outside" / "secret.jpg", size=(16, 16))
    os.symlink(secret, root / "cat" / "link.jpg")
    os.symlink(root / "cat" / "a.jpg", root / "cat" / "inside_link.jpg")  # stays inside: fine
    os.symlink(tmp_path / "outside", root / "dirlink")  # folder symlinks are not followed

    opened: list[str] = []
    real_open, real_io_open = builtins.open, io.open

    def spy_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.path.realpath(os.fsdecode(file)))
        return real_open(file, *args, **kwargs)

    def spy_io_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.path.realpath(os.fsdecode(file)))
        return real_io_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_io_open)
    result = inspect_core.scan(root, workers=1)
    monkeypatch.undo()

    assert str(secret) not in opened
    assert str(root / "cat" / "a.jpg") in [os.path.realpath(p) for p in opened]  # the spy saw the reads
    assert sorted(result.images["image_id"]) == ["cat/a.jpg", "cat/b.jpg", "cat/inside_link.jpg", "cat/link.jpg"]
    assert sorted(zip(result.findings["image_id"], result.findings["check"])) == [
        ("cat/a.jpg", "exact_duplicate"), ("cat/inside_link.jpg", "exact_duplicate"),
        ("cat/link.jpg", "path_outside_root")]
    row = result.images.set_index("image_id").loc["cat/link.jpg"]
    assert row["width_px"] == 0 and pd.isna(row["brightness"]) and pd.isna(row["content_hash"])


# ----------------------------------------------------------------------------- awkward but real inputs

def test_unicode_and_punctuation_in_names(tmp_path):
    root = tmp_path / "ds"
    save(root / "chat é" / "ä b#1,x.JPG", size=(12, 10))
    (root / "manifest.csv").write_text('path,label\n"chat é/ä b#1,x.JPG",chat é\n', encoding="utf-8")
    result = inspect_core.scan(root, workers=1)
    assert records(result.images, ["image_id", "label", "width_px"]) == [("chat é/ä b#1,x.JPG", "chat é", 12)]
    assert result.findings.empty


def test_manifest_listing_a_file_twice_does_not_call_it_missing(tmp_path):
    root = _manifest_root(tmp_path)
    (root / "manifest.csv").write_text("path,label\nimg/a.jpg,cat\nimg/a.jpg,dog\nimg/b.jpg,cat\nimg/c.jpg,cat\n")
    result = inspect_core.scan(root, workers=1)
    assert records(result.images, ["image_id", "label"]) == [("img/a.jpg", "cat"), ("img/b.jpg", "cat"),
                                                             ("img/c.jpg", "cat")]
    found = set(zip(result.findings["image_id"], result.findings["check"]))
    assert ("img/a.jpg", "missing_file") not in found
    assert ("img/a.jpg", "listed_twice") in found
    detail = result.issues("listed_twice")["detail"].iloc[0]
    assert "2 times" in detail and "cat" in detail and "dog" in detail


def test_yolo_names_with_inline_comments():
    from inspect_core.loader_yolo import parse_yolo_names
    assert parse_yolo_names("nc: 2  # classes\nnames: ['cat', 'dog']  # class names\n") == ["cat", "dog"]
    assert parse_yolo_names("names:\n  0: person  # people\n  1: car\n") == ["person", "car"]


def test_yolo_names_flow_list_over_several_lines():
    from inspect_core.loader_yolo import parse_yolo_names
    assert parse_yolo_names("names: [\n  'cat', 'dog',\n  'bird']\nnc: 3\n") == ["cat", "dog", "bird"]


def test_yolo_split_first_layout(tmp_path):
    root = tmp_path / "yolo"
    for split in ("train", "valid"):
        save(root / split / "images" / "x.jpg", size=(40, 20))
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['thing']\n")
    ds = load_dataset(root)
    assert ds.format == "yolo"
    assert records(ds.images, ["image_id", "split"]) == [("train/images/x.jpg", "train"),
                                                         ("valid/images/x.jpg", "val")]
    assert len(ds.annotations) == 2


def test_file_name_that_is_not_utf8_does_not_stop_the_scan(tmp_path):
    root = tmp_path / "ds"
    save(root / "cat" / "ok.jpg", size=(10, 10))
    bad = os.path.join(os.fsencode(root / "cat"), b"bad\xff.jpg")
    with open(bad, "wb") as fh:
        fh.write((root / "cat" / "ok.jpg").read_bytes())
    result = inspect_core.scan(root, workers=1)
    assert "cat/ok.jpg" in set(result.images["image_id"])
    bad_findings = result.findings[result.findings["image_id"].str.contains("bad")]
    assert bad_findings["check"].tolist() == ["unreadable"], "the badly named file is not reported"
    assert "UTF-8" in bad_findings["detail"].iloc[0]


def test_boxes_from_an_explicit_coco_file_outside_the_root(tmp_path):
    root = tmp_path / "ds"
    save(root / "cat" / "a.jpg", size=(30, 20))
    save(root / "cat" / "b.jpg", size=(30, 20), colour=(1, 2, 3))
    boxes = tmp_path / "labels" / "boxes.json"
    boxes.parent.mkdir()
    boxes.write_text(json.dumps(_coco(
        images=[{"id": 5, "file_name": "cat/b.jpg"}],
        annotations=[{"id": 1, "image_id": 5, "category_id": 2, "bbox": [2, 3, 4, 5]}],
        categories=[{"id": 2, "name": "ear"}])))
    assert not load_dataset(root).has_boxes
    ds = load_dataset(root, boxes=boxes)
    assert ds.format == "folder" and ds.has_boxes
    assert records(ds.annotations, BOX_COLS) == [("cat/b.jpg", "ear", 2.0, 3.0, 4.0, 5.0)]
    result = inspect_core.scan(root, boxes=boxes, workers=1)
    assert sorted(zip(result.findings["image_id"], result.findings["check"])) == [("cat/a.jpg", "no_boxes")]


# ----------------------------------------------------------------------------------- numeric labels
# A Parquet manifest whose label column holds class indices with one empty cell is stored as float64 (0.0, 1.0,
# NaN): the labels must read "0", "1" (matching a model's class names), not "0.0", "1.0". Real non-integer
# numbers keep their text; an empty cell stays missing. CSV manifests are read as text.

def _labels(ds) -> list:
    return [None if pd.isna(v) else v for v in ds.images["label"].tolist()]


def _splits(ds) -> list:
    return [None if pd.isna(v) else v for v in ds.images["split"].tolist()]


def _root(tmp_path):
    root = tmp_path / "ds"
    (root / "img").mkdir(parents=True)
    return root


# ----------------------------------------------------------------------------------- numeric labels

def test_parquet_integer_labels_with_an_empty_cell_read_as_whole_numbers(tmp_path):
    root = _root(tmp_path)
    df = pd.DataFrame({"path": [f"img/{k}.jpg" for k in range(5)], "label": [None, 0, 1, 2, 10]})
    assert df["label"].dtype == np.float64          # what pandas makes of it: 0.0, 1.0, ..., NaN
    df.to_parquet(root / "manifest.parquet", index=False)
    ds = load_dataset(root)
    assert _labels(ds) == [None, "0", "1", "2", "10"]
    assert ds.classes == ["0", "1", "10", "2"]
    assert ds.has_image_labels


def test_parquet_integer_labels_match_a_models_index_class_names(tmp_path):
    root = _root(tmp_path)
    pd.DataFrame({"path": [f"img/{k}.jpg" for k in range(4)],
                  "label": [0.0, 1.0, np.nan, 2.0]}).to_parquet(root / "manifest.parquet", index=False)
    ds = load_dataset(root)
    names = ["0", "1", "2"]
    probs = np.full((4, 3), 0.1, dtype=np.float32)
    probs[np.arange(4), [0, 1, 2, 2]] = 0.8
    table = scores_table.build_table(ds.images, probs, names)
    assert table["label_index"].tolist() == [0, 1, -1, 2]
    assert table["label"].isna().tolist() == [False, False, True, False]


def test_parquet_non_integer_float_labels_keep_their_text(tmp_path):
    root = _root(tmp_path)
    pd.DataFrame({"path": [f"img/{k}.jpg" for k in range(4)],
                  "label": [0.5, 2.0, np.nan, -1.25]}).to_parquet(root / "manifest.parquet", index=False)
    ds = load_dataset(root)
    assert _labels(ds) == ["0.5", "2", None, "-1.25"]


def test_parquet_float32_labels_read_as_whole_numbers(tmp_path):
    root = _root(tmp_path)
    pd.DataFrame({"path": [f"img/{k}.jpg" for k in range(3)],
                  "label": np.array([3.0, np.nan, 0.0], dtype=np.float32)}).to_parquet(root / "manifest.parquet",
                                                                                      index=False)
    ds = load_dataset(root)
    assert _labels(ds) == ["3", None, "0"]


def test_parquet_nullable_integer_labels_keep_missing_as_missing(tmp_path):
    root = _root(tmp_path)
    pd.DataFrame({"path": [f"img/{k}.jpg" for k in range(3)],
                  "label": pd.array([1, None, 0], dtype="Int64")}).to_parquet(root / "manifest.parquet", index=False)
    ds = load_dataset(root)
    assert _labels(ds) == ["1", None, "0"]
    assert ds.classes == ["0", "1"]


def test_parquet_integer_labels_without_gaps_read_as_integers(tmp_path):
    root = _root(tmp_path)
    pd.DataFrame({"path": [f"img/{k}.jpg" for k in range(3)],
                  "label": [2, 0, 1]}).to_parquet(root / "manifest.parquet", index=False)
    assert _labels(load_dataset(root)) == ["2", "0", "1"]


def test_parquet_numeric_splits_read_as_whole_numbers(tmp_path):
    root = _root(tmp_path)
    pd.DataFrame({"path": [f"img/{k}.jpg" for k in range(3)], "label": ["a", "b", "a"],
                  "split": [0.0, np.nan, 1.0]}).to_parquet(root / "manifest.parquet", index=False)
    assert _splits(load_dataset(root)) == ["0", None, "1"]


def test_csv_integer_labels_with_an_empty_cell_read_as_whole_numbers(tmp_path):
    root = _root(tmp_path)
    (root / "manifest.csv").write_text("path,label\nimg/0.jpg,\nimg/1.jpg,0\nimg/2.jpg,1\nimg/3.jpg,2.5\n")
    ds = load_dataset(root)
    assert _labels(ds) == [None, "0", "1", "2.5"]
    assert ds.classes == ["0", "1", "2.5"]


# ----------------------------------------------------------------------------------- bad label files
# Each case once crashed or misled the scan; now it is a finding.

def checks_of(result) -> set[tuple[str, str]]:
    return set(zip(result.findings["image_id"], result.findings["check"]))


def _yolo(root: Path, label_text: str) -> None:
    save(root / "images" / "a.jpg", size=(40, 20))
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "a.txt").write_text(label_text)
    (root / "data.yaml").write_text("names: [thing]\n")


def test_yolo_line_with_inf_is_a_malformed_box(tmp_path):
    root = tmp_path / "y"
    _yolo(root, "inf 0.5 0.5 0.1 0.1\n0 nan 0.5 0.1 0.1\n0 0.5 0.5 0.5 0.5\n")
    result = inspect_core.scan(root, workers=1)
    assert len(result.annotations) == 1
    malformed = result.issues("box_malformed")
    assert list(malformed["image_id"]) == ["images/a.jpg"]
    # both bad lines are named in the one finding of that image
    assert "line 1" in malformed["detail"].iloc[0] and "line 2" in malformed["detail"].iloc[0]


def test_yolo_labels_behind_an_escaping_symlink_are_not_read(tmp_path):
    root = tmp_path / "y"
    save(root / "images" / "a.jpg", size=(40, 20))
    outside = tmp_path / "outside_labels"
    outside.mkdir()
    (outside / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    os.symlink(outside, root / "labels")
    (root / "data.yaml").write_text("names: [thing]\n")
    result = inspect_core.scan(root, workers=1)
    assert len(result.annotations) == 0
    assert ("images/a.jpg", "path_outside_root") in checks_of(result)


def test_coco_with_malformed_ids_and_sections_loads(tmp_path):
    root = tmp_path / "c"
    save(root / "images" / "a.jpg", size=(40, 20))
    save(root / "images" / "b.jpg", size=(40, 20))
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 20},
                   {"id": [2], "file_name": "b.jpg"}],
        "categories": 5,
        "annotations": [{"id": 1, "image_id": 1, "category_id": [1], "bbox": [1, 1, 5, 5]},
                        {"id": 2, "image_id": [2], "category_id": 1, "bbox": [1, 1, 5, 5]}],
    }))
    result = inspect_core.scan(root, workers=1)
    assert list(result.images["image_id"]) == ["images/a.jpg"]
    assert len(result.annotations) == 1 and result.annotations["category"].isna().all()
    assert "box_malformed" in set(result.findings["check"])
    assert ("images/a.jpg", "box_unknown_category") in checks_of(result)


def test_classes_txt_behind_an_escaping_symlink_is_not_read(tmp_path):
    root = tmp_path / "ds"
    save(root / "cat" / "a.jpg")
    secret = tmp_path / "secret.txt"
    secret.write_text("dog\n")
    os.symlink(secret, root / "classes.txt")
    ds = inspect_core.load_dataset(root)
    assert ds.classes == ["cat"]
