"""The sample detector's out-of-fold detections (``sample_data/make_detector.py --only oof``): each image with boxes
predicted by the one fold model not trained on it (the fold record says which), and the planted box errors found
through them (issue 13: recall >= 0.9 within the top 2 x planted)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inspect_core.loaders import load_dataset
from inspect_core.model.preprocess import load_image_file
from model_support import planted_box_errors_found

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
OOF = SAMPLE / "detections_oof.json"
RECORD = SAMPLE / "model" / "detector.oof.json"
OOF_RECALL_FLOOR = 0.9      # of the planted box errors in the top 2 x planted (issue 13 target: 0.9; 11 of 12)


def make_detector():
    spec = importlib.util.spec_from_file_location("make_detector", SAMPLE / "make_detector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folds_are_seeded_balanced_and_spread_the_rare_class():
    md = make_detector()
    # 30 images: 27 with a circle (class 0), 3 with a hexagon (class 4, rare) beside a circle
    boxes = [np.array([[0, 0, 10, 10, 0]], np.float32)] * 27 + [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 4]],
                                                                          np.float32)] * 3
    images = md.Images([f"im{i}" for i in range(30)], torch.zeros(30, 3, 1, 1), boxes, [(8, 8)] * 30)
    fold = md.assign_folds(images, 3, seed=0)
    assert fold == md.assign_folds(images, 3, seed=0) and fold != md.assign_folds(images, 3, seed=1)
    assert np.bincount(fold).tolist() == [10, 10, 10]
    assert sorted(fold[27:]) == [0, 1, 2]                       # one hexagon image in each fold
    sub = images.subset([27, 3])
    assert sub.image_ids == ["im27", "im3"] and sub.boxes[0].shape == (2, 5) and sub.x.shape[0] == 2


def test_every_image_with_boxes_is_predicted_by_exactly_one_fold_model_not_trained_on_it():
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    ds = load_dataset(SAMPLE)
    with_boxes = set(ds.annotations["image_id"].astype(str)) & set(ds.images["image_id"].astype(str))
    unreadable = set(record["unreadable_left_out"])
    for image_id in unreadable:                                 # left out only because it cannot be read
        with pytest.raises(OSError):                          # PIL errors on broken files are OSErrors
            load_image_file(ds.path_of(image_id))
    assert unreadable < with_boxes and len(unreadable) <= 5
    usable = with_boxes - unreadable
    md = make_detector()                                        # made by the script as it stands
    assert (record["folds"], record["seed"], record["epochs"], record["min_score"], record["small_below_px"]) == (
        md.FOLDS, md.SEED, md.OOF_EPOCHS, md.OOF_MIN_SCORE, md.SMALL_BELOW_PX)
    models = record["fold_models"]
    assert len(models) == record["folds"] >= 2 and [m["fold"] for m in models] == list(range(record["folds"]))
    predicted_by: dict[str, list[int]] = {}
    for m in models:
        trained, predicted = set(m["trained_on"]), set(m["predicted"])
        assert not trained & predicted, m["fold"]
        assert trained | predicted == usable
        assert m["images"] == len(trained) and m["loss_per_epoch"][-1] < m["loss_per_epoch"][0] / 4
        assert (m["epochs"], m["scale"], tuple(m["zoom_range"])) == (md.OOF_EPOCHS, md.OOF_SCALE, md.OOF_ZOOM)
        for image_id in predicted:
            predicted_by.setdefault(image_id, []).append(m["fold"])
    assert set(predicted_by) == usable and all(len(v) == 1 for v in predicted_by.values())
    assert record["fold_of_image"] == {i: v[0] for i, v in predicted_by.items()}
    sizes = np.bincount(list(record["fold_of_image"].values()))
    assert sizes.max() - sizes.min() <= 1
    # the detections are of those images only, in source pixels, in the categories of annotations.json
    detections = json.loads(OOF.read_text(encoding="utf-8"))
    assert len(detections) == record["detections"] > len(usable)
    assert {d["file_name"] for d in detections} <= usable
    cats = {c["id"] for c in json.loads((SAMPLE / "annotations.json").read_text())["categories"]}
    assert {d["category_id"] for d in detections} <= cats
    assert all(0 < d["score"] <= 1 and d["bbox"][2] > 0 and d["bbox"][3] > 0 for d in detections)


def test_the_out_of_fold_detections_find_the_planted_box_errors(tmp_path):
    """``score --detections detections_oof.json``: the share of the box errors PLANTED.csv lists that are among the
    top 2 x planted ranked annotation errors. Issue 13 asks for 0.9; these detections reach 11 of 12 (BENCHMARKS.md,
    "Detection triage"): circle_0033's unannotated square, which the fold models split over four classes, comes in as a
    missing box by place (objectness over classes); triangle_0074's square annotated circle stays out (the models
    also say circle)."""
    from inspect_core.cli import main
    from inspect_core.detection.errors import CHECKS
    out = tmp_path / "out"
    assert main(["score", str(SAMPLE), "--detections", str(OOF), "--out", str(out)]) == 0
    want, found = planted_box_errors_found(out)
    assert len(found) >= OOF_RECALL_FLOOR * len(want), sorted(want - found)
    assert {c for _, c in found} == set(CHECKS)                 # each kind among them
