"""COCO metrics (inspect_core/detection/metrics.py) against pycocotools, to 1e-3."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspect_core.detection.metrics import coco_metrics

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402 - after the importorskip
from pycocotools.cocoeval import COCOeval  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
STAT_NAMES = ["map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"]


def synthetic(n_images: int, seed: int, crowd_rate: float = 0.0):
    """Annotations with noisy, sometimes wrong-class predictions plus random false positives."""
    rng = np.random.default_rng(seed)
    cats = ["a", "b", "c", "d"]
    ann, pred = [], []
    for i in range(n_images):
        img = f"im{i:05d}.jpg"
        for _ in range(rng.integers(0, 7)):
            w, h = rng.uniform(4, 160, 2)
            x, y = rng.uniform(0, 400, 2)
            c = int(rng.integers(0, 3))               # 'd' never annotated: left out of the means
            ann.append((img, cats[c], x, y, w, h, bool(rng.random() < crowd_rate)))
            if rng.random() < 0.85:
                cc = c if rng.random() < 0.85 else int(rng.integers(0, 4))
                j = rng.normal(0, 0.12, 4) * [w, h, w, h]
                pred.append((img, cats[cc], x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3]),
                             float(rng.random())))
        for _ in range(rng.integers(0, 4)):
            pred.append((img, cats[int(rng.integers(0, 4))], *rng.uniform(0, 400, 2), *rng.uniform(4, 120, 2),
                         float(rng.random())))
    a = pd.DataFrame(ann, columns=["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "iscrowd"])
    p = pd.DataFrame(pred, columns=["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"])
    return a, p, cats, [f"im{i:05d}.jpg" for i in range(n_images)]


def pycocotools_stats(ann: pd.DataFrame, pred: pd.DataFrame, cats: list[str], images: list[str]) -> dict:
    img_id = {k: i + 1 for i, k in enumerate(sorted(images))}
    cat_id = {c: i + 1 for i, c in enumerate(cats)}
    crowd = ann["iscrowd"] if "iscrowd" in ann.columns else pd.Series(False, index=ann.index)
    gt = {"images": [{"id": img_id[k]} for k in sorted(images)],
          "categories": [{"id": cat_id[c], "name": c} for c in cats],
          "annotations": [{"id": n + 1, "image_id": img_id[r.image_id], "category_id": cat_id[r.category],
                           "bbox": [r.box_x_px, r.box_y_px, r.box_w_px, r.box_h_px], "area": r.box_w_px * r.box_h_px,
                           "iscrowd": int(c)} for n, (r, c) in enumerate(zip(ann.itertuples(), crowd))]}
    dt = [{"image_id": img_id[r.image_id], "category_id": cat_id[r.category],
           "bbox": [r.box_x_px, r.box_y_px, r.box_w_px, r.box_h_px], "score": r.score} for r in pred.itertuples()]
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = gt
        c.createIndex()
        e = COCOeval(c, c.loadRes(dt), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    per_class = {}
    for k, name in enumerate(cats):
        prec = e.eval["precision"][:, :, k, 0, -1]
        per_class[name] = float(prec[prec > -1].mean()) if (prec > -1).any() else float("nan")
    return {**dict(zip(STAT_NAMES, e.stats[:6].tolist())), "per_class": per_class,
            "pr50": {name: e.eval["precision"][0, :, k, 0, -1] for k, name in enumerate(cats)}}


def assert_agrees(ann, pred, cats, images):
    ours = coco_metrics(ann, pred)
    ref = pycocotools_stats(ann, pred, cats, images)
    mine = ours.summary()
    for name in STAT_NAMES:
        r = ref[name] if ref[name] > -1 else float("nan")
        assert np.isclose(mine[name], r, atol=1e-3, equal_nan=True), (name, mine[name], r)
    table = ours.per_class().set_index("category")
    for name, r in ref["per_class"].items():
        got = table.loc[name, "ap"] if name in table.index else float("nan")
        assert np.isclose(got, r, atol=1e-3, equal_nan=True), (name, got, r)
    curves = ours.pr_curves((0.5,))
    for name, r in ref["pr50"].items():
        got = curves.loc[curves["category"] == name, "precision"].to_numpy()
        if (r > -1).any():
            assert np.allclose(got, r, atol=1e-3)
    return mine


def test_agrees_with_pycocotools_on_1000_synthetic_images():
    ann, pred, cats, images = synthetic(1000, seed=3)
    mine = assert_agrees(ann, pred, cats, images)
    assert 0.1 < mine["map"] < 0.9 and mine["ap50"] > mine["ap75"]      # a real, non-trivial case


def test_agrees_with_pycocotools_with_crowd_boxes():
    ann, pred, cats, images = synthetic(300, seed=4, crowd_rate=0.15)
    assert ann["iscrowd"].sum() > 20
    assert_agrees(ann, pred, cats, images)


def test_agrees_with_pycocotools_on_sample_data():
    from inspect_core.detection import triage_detections

    result = triage_detections(SAMPLE, SAMPLE / "detections.json")
    ann = result.annotations[["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]]
    pred = result.predictions[["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"]]
    images = result.images["image_id"].tolist()
    mine = assert_agrees(ann, pred, result.summary["categories"], images)
    assert mine == pytest.approx(result.summary["metrics"])
    assert 0.5 < mine["ap50"] < 1.0


def test_perfect_predictions_score_one_and_none_score_zero():
    ann, *_ = synthetic(50, seed=5)
    perfect = ann.drop(columns="iscrowd").assign(score=0.9)
    s = coco_metrics(ann, perfect).summary()
    assert s["map"] == pytest.approx(1.0) and s["ap50"] == pytest.approx(1.0)
    empty = perfect.iloc[:0]
    assert coco_metrics(ann, empty).summary()["map"] == 0.0


def test_confusion_matrix_by_hand():
    from inspect_core.detection.metrics import BACKGROUND, confusion_matrix

    cols = ["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]
    ann = pd.DataFrame([("im", "cat", 0, 0, 10, 10),       # found as cat
                        ("im", "dog", 100, 0, 10, 10),     # predicted as cat: confusion dog -> cat
                        ("im", "dog", 200, 0, 10, 10)],    # nothing: dog -> background
                       columns=cols)
    pred = pd.DataFrame([("im", "cat", 0, 0, 10, 10, 0.9), ("im", "cat", 100, 0, 10, 10, 0.8),
                         ("im", "dog", 300, 0, 10, 10, 0.7),    # on nothing: background -> dog
                         ("im", "dog", 200, 0, 10, 10, 0.1)],   # below min_score: not counted
                        columns=[*cols, "score"])
    cm = confusion_matrix(ann, pred, min_score=0.25)
    assert cm.to_dict() == {"cat": {"cat": 1, "dog": 1, BACKGROUND: 0},
                            "dog": {"cat": 0, "dog": 0, BACKGROUND: 1},
                            BACKGROUND: {"cat": 0, "dog": 1, BACKGROUND: 0}}
