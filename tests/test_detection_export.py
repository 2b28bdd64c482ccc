"""Corrected exports of per-box decisions (inspect_core/detection/export.py): COCO loadable by pycocotools with
the decisions applied, YOLO label lines, the relabel list; never inside the dataset."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from inspect_core import loaders
from inspect_core.detection.decisions import BoxDecisionStore, ann_key, pred_key
from inspect_core.detection.export import (
    corrected_coco,
    relabel_list,
    write_detection_exports,
    yolo_labels,
    yolo_zip_bytes,
)

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402 - after the importorskip


def coco_dataset(root: Path) -> Path:
    """Two 100 x 50 images, three boxes (ids 10, 11, 12), classes cat (id 1) and dog (id 2)."""
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (100, 50), (90, 90, 90)).save(root / "images" / name)
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50},
                       {"id": 2, "file_name": "b.png", "width": 100, "height": 50}],
            "annotations": [
                {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
                {"id": 11, "image_id": 1, "category_id": 2, "bbox": [50, 10, 20, 20], "area": 400, "iscrowd": 0},
                {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


@pytest.fixture()
def decided(tmp_path):
    root = coco_dataset(tmp_path / "data")
    ds = loaders.load_dataset(root)
    assert ds.has_boxes
    store = BoxDecisionStore(tmp_path / "ws")
    img = ds.images["image_id"].tolist()
    a, b = sorted(img)
    store.decide(a, ann_key(10), "delete", category="cat")
    store.decide(a, ann_key(11), "relabel", category="dog", new_category="cat")
    store.decide(b, pred_key(5), "accept", category="dog", box_xywh_px=[60, 5, 30, 40])
    store.decide(b, ann_key(12), "fine", category="cat")
    return root, ds, store


def test_corrected_coco_loads_in_pycocotools_with_the_decisions_applied(decided, tmp_path):
    root, ds, store = decided
    before = (root / "annotations.json").read_bytes()
    out = write_detection_exports(tmp_path / "out", ds, store.current())
    assert (root / "annotations.json").read_bytes() == before       # the dataset is only read
    coco = COCO(str(out["coco"]))
    anns = {a["id"]: a for a in coco.loadAnns(coco.getAnnIds())}
    assert 10 not in anns                                               # deleted
    assert coco.loadCats(anns[11]["category_id"])[0]["name"] == "cat"   # class changed
    assert anns[12]["category_id"] == 1 and anns[12]["bbox"] == [0, 0, 40, 30]   # fine: untouched
    new = [a for i, a in anns.items() if i not in (11, 12)]
    assert len(new) == 1 and new[0]["bbox"] == [60, 5, 30, 40] and new[0]["image_id"] == 2
    assert coco.loadCats(new[0]["category_id"])[0]["name"] == "dog"
    assert new[0]["id"] > 12 and new[0]["area"] == 1200


def test_yolo_label_lines(decided):
    _root, ds, store = decided
    files, names = yolo_labels(ds, store.current())
    assert names == ["cat", "dog"]
    assert files["labels/images/a.txt"] == "0 0.600000 0.400000 0.200000 0.400000\n"     # ann 11, now cat
    lines = sorted(files["labels/images/b.txt"].splitlines())
    assert lines == ["0 0.200000 0.300000 0.400000 0.600000", "1 0.750000 0.500000 0.300000 0.800000"]
    import io
    import zipfile
    z = zipfile.ZipFile(io.BytesIO(yolo_zip_bytes(files, names)))
    assert z.read("classes.txt") == b"cat\ndog\n"


def test_yolo_folder_written_and_relabel_list(decided, tmp_path):
    root, ds, store = decided
    out = write_detection_exports(tmp_path / "out", ds, store.current())
    assert (out["yolo"] / "classes.txt").read_text() == "cat\ndog\n"
    assert len((out["yolo"] / "labels/images/b.txt").read_text().splitlines()) == 2
    rel = pd.read_csv(out["relabels"])
    assert sorted(rel["action"]) == ["accept", "delete", "fine", "relabel"]
    row = rel.set_index("box_key").loc["ann:11"]
    assert (row["category"], row["new_category"], row["ann_id"]) == ("dog", "cat", 11)
    assert rel.set_index("box_key").loc["pred:5", "path"] == str(root / "images" / "b.png")


def test_exports_refuse_the_dataset_folder(decided):
    root, ds, store = decided
    with pytest.raises(ValueError, match="inside the dataset root"):
        write_detection_exports(root / "exports", ds, store.current())
    assert not (root / "exports").exists()


def test_no_decisions_gives_the_dataset_back(decided):
    root, ds, _ = decided
    coco = corrected_coco(ds, None)
    assert coco["annotations"] == json.loads((root / "annotations.json").read_text())["annotations"]
    assert relabel_list(None, root).empty


def test_yolo_dataset_without_coco_file_is_built_from_the_table(tmp_path):
    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(root / "images/train/x.jpg")
    (root / "labels/train/x.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n")
    (root / "data.yaml").write_text("names: [cat, dog]\npath: .\ntrain: images/train\n")
    ds = loaders.load_dataset(root)
    assert ds.format == "yolo" and len(ds.annotations) == 2
    ids = ds.annotations["ann_id"].tolist()
    store = BoxDecisionStore(tmp_path / "ws")
    store.decide("images/train/x.jpg", ann_key(ids[1]), "delete")
    store.decide("images/train/x.jpg", ann_key(ids[0]), "relabel", new_category="dog")
    out = write_detection_exports(tmp_path / "out", ds, store.current())
    coco = COCO(str(out["coco"]))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 1 and anns[0]["bbox"] == [80.0, 30.0, 40.0, 40.0]
    assert coco.loadCats(anns[0]["category_id"])[0]["name"] == "dog"
    assert (out["yolo"] / "labels/images/train/x.txt").read_text() == "1 0.500000 0.500000 0.200000 0.400000\n"
    shutil.rmtree(out["yolo"])


def test_a_box_of_unknown_class_or_without_area_is_left_out_not_a_crash(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(root / "images/x.jpg")
    (root / "labels/x.txt").write_text("0 0.5 0.5 0.2 0.4\n7 0.5 0.5 0.1 0.1\n0 0.3 0.3 0.0 0.2\n")
    (root / "data.yaml").write_text("names: [cat, dog]\npath: .\ntrain: images\n")
    ds = loaders.load_dataset(root)
    files, names = yolo_labels(ds, None)
    assert names == ["cat", "dog"]
    assert files["labels/images/x.txt"] == "0 0.500000 0.500000 0.200000 0.400000\n"
    coco = corrected_coco(ds, None)
    assert [a["bbox"] for a in coco["annotations"]] == [[80.0, 30.0, 40.0, 40.0]]


def test_an_image_id_leaving_the_folder_gets_no_label_file(monkeypatch):
    import types

    from inspect_core.detection import export
    ds = types.SimpleNamespace(images=pd.DataFrame({"image_id": ["a.jpg", "../up.jpg", "/abs.jpg"]}),
                               box_categories=["cat"], classes=[])
    ann = pd.DataFrame({"ann_id": [1, 2, 3], "image_id": ["a.jpg", "../up.jpg", "/abs.jpg"], "category": "cat",
                        "box_x_px": 0.0, "box_y_px": 0.0, "box_w_px": 5.0, "box_h_px": 5.0})
    monkeypatch.setattr(export, "boxes_px", lambda _x: (ds, ann, lambda _i: (10.0, 10.0)))
    files, _ = yolo_labels(object(), None)
    assert list(files) == ["labels/a.txt"]
