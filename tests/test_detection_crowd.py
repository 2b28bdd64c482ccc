"""Crowd boxes (COCO ``iscrowd``) read from a COCO file on disk (loader_coco.py keeps the column) and treated as
pycocotools does by detection triage: a prediction matched to a crowd box is ignored (neither TP nor FP), a crowd box
is never missed, and mAP agrees with pycocotools."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from inspect_core.detection import triage_detections
from inspect_core.loaders import load_dataset

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def write_coco(root: Path, images: list[tuple[str, int, int]], annotations: list[dict], categories: list[str]) -> Path:
    """Image files (grey PNGs of the given sizes) and annotations.json; annotation dicts as COCO's."""
    root.mkdir(parents=True, exist_ok=True)
    for name, w, h in images:
        Image.new("L", (w, h), 90).save(root / name)
    coco = {"images": [{"id": k + 1, "file_name": name, "width": w, "height": h}
                       for k, (name, w, h) in enumerate(images)],
            "annotations": [{"id": k + 1, "area": a["bbox"][2] * a["bbox"][3], **a} for k, a in enumerate(annotations)],
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(categories)]}
    path = root / "annotations.json"
    path.write_text(json.dumps(coco), encoding="utf-8")
    return path


def test_the_loader_keeps_iscrowd(tmp_path):
    write_coco(tmp_path, [("a.png", 64, 48)],
               [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30], "iscrowd": 1},
                {"image_id": 1, "category_id": 1, "bbox": [40, 0, 10, 10], "iscrowd": 0},
                {"image_id": 1, "category_id": 1, "bbox": [40, 20, 10, 10]}], ["person"])
    ann = load_dataset(tmp_path).annotations
    assert ann["iscrowd"].tolist() == [True, False, False]


def test_a_hand_worked_case_with_crowd_boxes(tmp_path):
    # a.png: a crowd of people (0, 0, 100, 100) and one person (200, 0, 20, 20); b.png: only a crowd region
    write_coco(tmp_path, [("a.png", 320, 240), ("b.png", 320, 240)],
               [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1},
                {"image_id": 1, "category_id": 1, "bbox": [200, 0, 20, 20], "iscrowd": 0},
                {"image_id": 2, "category_id": 1, "bbox": [50, 50, 100, 100], "iscrowd": 1}], ["person"])
    pred = pd.DataFrame([("a.png", "person", 10, 10, 20, 20, 0.9),      # inside the crowd: ignored
                         ("a.png", "person", 200, 0, 20, 20, 0.8),      # the person: a true positive
                         ("a.png", "person", 250, 150, 20, 20, 0.7)],   # on nothing: a background false positive
                        columns=["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"])
    r = triage_detections(tmp_path, pred)
    p = r.predictions.set_index("score")
    assert p.loc[0.9, "error_type"] == "ignored" and not p.loc[0.9, "is_tp"]
    assert p.loc[0.8, "is_tp"] and p.loc[0.7, "error_type"] == "background"
    a = r.annotations
    # the crowd boxes are never missed, whether a prediction fell on them (a.png) or not (b.png)
    assert a.loc[a["iscrowd"], "error_type"].tolist() == ["ignored", "ignored"]
    assert a.loc[~a["iscrowd"], "error_type"].tolist() == [""]
    assert r.summary["tide_counts"] == {"classification": 0, "localization": 0, "both": 0, "duplicate": 0,
                                        "background": 1, "missed": 0}
    # precision 1 up to recall 1 (the ignored prediction is not a false positive), then the FP: AP50 = 1
    assert r.metrics.summary()["ap50"] == pytest.approx(1.0)
    # no annotation error comes from a crowd box: the untouched crowd of b.png is not a spurious box, the
    # prediction inside a.png's crowd is not a missing box; only the confident background box is one
    assert r.errors[["image_id", "check", "confidence"]].values.tolist() == [["a.png", "missing_box", 0.7]]


def pycocotools_map(coco_path: Path, pred: pd.DataFrame) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_path))
        ids = {e["file_name"]: e["id"] for e in gt.dataset["images"]}
        cats = {c["name"]: c["id"] for c in gt.dataset["categories"]}
        dt = [{"image_id": ids[r.image_id], "category_id": cats[r.category], "score": float(r.score),
               "bbox": [float(r.box_x_px), float(r.box_y_px), float(r.box_w_px), float(r.box_h_px)]}
              for r in pred.itertuples()]
        e = COCOeval(gt, gt.loadRes(dt), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats[:6].tolist()


def test_map_agrees_with_pycocotools_on_a_coco_file_with_crowd_boxes(tmp_path):
    rng = np.random.default_rng(15)
    cats = ["person", "car", "dog"]
    images, anns, preds = [], [], []
    for k in range(120):
        name = f"im{k:04d}.png"
        images.append((name, 400, 300))
        for _ in range(int(rng.integers(1, 6))):
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(6, 180, 2)
            c = int(rng.integers(0, 3))
            crowd = bool(rng.random() < 0.15)
            anns.append({"image_id": k + 1, "category_id": c + 1, "bbox": [x, y, w, h], "iscrowd": int(crowd)})
            for _ in range(3 if crowd else 1):                    # a crowd region draws several detections
                if rng.random() < 0.85:
                    j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                    box = [x + j[0], y + j[1], max(2.0, w + j[2]), max(2.0, h + j[3])]
                    if crowd:
                        box = [x + rng.uniform(0, w / 2), y + rng.uniform(0, h / 2), w / 3, h / 3]
                    preds.append((name, cats[c], *box, float(rng.random())))
        for _ in range(int(rng.poisson(1.0))):
            preds.append((name, cats[int(rng.integers(0, 3))], *rng.uniform(0, 300, 2), *rng.uniform(5, 80, 2),
                          float(rng.random() * 0.6)))
    coco_path = write_coco(tmp_path, images, anns, cats)
    pred = pd.DataFrame(preds, columns=["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px",
                                        "score"])
    assert sum(a["iscrowd"] for a in anns) > 20
    r = triage_detections(tmp_path, pred)
    ours = r.metrics.summary()
    theirs = pycocotools_map(coco_path, pred)
    for name, value in zip(("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"), theirs):
        assert ours[name] == pytest.approx(value, abs=1e-3), name
    # the same predictions with the crowd flags dropped score differently: the flags were used
    plain = json.loads(coco_path.read_text())
    for a in plain["annotations"]:
        a["iscrowd"] = 0
    coco_path.write_text(json.dumps(plain), encoding="utf-8")
    assert abs(triage_detections(tmp_path, pred).metrics.summary()["map"] - ours["map"]) > 0.01
