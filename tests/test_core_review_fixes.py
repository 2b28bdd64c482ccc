"""Bad input found by review: each case once crashed or misled the scan; now it is a finding."""
from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

import inspect_core


def save(path: Path, size=(16, 12), colour=(120, 60, 30), **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, **kw)


def checks_of(result) -> set[tuple[str, str]]:
    return set(zip(result.findings["image_id"], result.findings["check"]))


def test_exif_orientation_out_of_range_does_not_stop_the_scan(tmp_path):
    root = tmp_path / "ds"
    exif = Image.Exif()
    exif[0x0112] = 300
    save(root / "cat" / "odd.jpg", exif=exif.tobytes())
    save(root / "cat" / "ok.jpg")
    result = inspect_core.scan(root, workers=1)
    row = result.images.set_index("image_id").loc["cat/odd.jpg"]
    assert row["exif_orientation"] == 0 and row["width_px"] == 16


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


def test_damaged_saved_scan_is_rescanned(tmp_path):
    root = tmp_path / "ds"
    save(root / "cat" / "a.jpg")
    first = inspect_core.scan(root, workers=1)
    (Path(first.workspace) / "scan" / "dataset.json").write_text(json.dumps({"root": str(root)}))
    again = inspect_core.scan(root, workers=1)
    assert list(again.images["image_id"]) == ["cat/a.jpg"]
    assert inspect_core.load_scan(first.workspace) is not None  # the rescan saved a whole scan again
