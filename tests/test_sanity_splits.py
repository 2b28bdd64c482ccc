"""Per-split baselines for splits other than train/val/test (numeric manifest labels: test_loaders.py).

- sanity.baselines gives one row per split present in the data: "all", then train/val/test, then any other
  split (e.g. "holdout") in sorted order.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inspect_core.loaders import load_dataset
from inspect_core.model import table as scores_table
from inspect_core.model.sanity import baselines, baselines_frame


# ----------------------------------------------------------------------------------- per-split baselines

def _scored(splits: list, labels: list, preds: list, names: list) -> pd.DataFrame:
    n = len(labels)
    probs = np.full((n, len(names)), 0.1 / max(len(names) - 1, 1), dtype=np.float32)
    probs[np.arange(n), preds] = 0.9
    images = pd.DataFrame({"image_id": [f"{k}.jpg" for k in range(n)],
                           "label": [names[y] for y in labels], "split": splits})
    return scores_table.build_table(images, probs, names)


def test_baselines_cover_every_split_present(tmp_path):
    names = ["cat", "dog"]
    splits = ["train"] * 6 + ["val"] * 2 + ["holdout"] * 3 + ["extra"] * 2 + [None]
    labels = [0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0]
    preds = [0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0]
    table = _scored(splits, labels, preds, names)
    out = baselines(table, names)
    assert [b.split for b in out] == ["all", "train", "val", "extra", "holdout"]
    by = {b.split: b for b in out}
    assert by["all"].n_images == 14
    assert [by[s].n_images for s in ("train", "val", "extra", "holdout")] == [6, 2, 2, 3]
    assert by["holdout"].model_accuracy == pytest.approx(2 / 3)
    assert by["extra"].model_accuracy == pytest.approx(0.5)
    # the holdout's loss is its own: mean of -log p(label) over its three rows
    assert by["holdout"].model_loss == pytest.approx((2 * -math.log(0.9) - math.log(0.1)) / 3, rel=1e-5)
    # class priors still come from the training split (4 cat, 2 dog)
    assert by["holdout"].majority_class == "cat"
    assert by["holdout"].majority_accuracy == pytest.approx(1 / 3)
    frame = baselines_frame(out)
    assert frame["split"].tolist() == ["all", "train", "val", "extra", "holdout"]
    assert frame.loc[frame["split"] == "holdout", "n_images"].item() == 3


def test_baselines_with_only_unnamed_splits(tmp_path):
    names = ["a", "b"]
    table = _scored(["fold2", "fold1", "fold1", "fold2"], [0, 1, 0, 1], [0, 1, 1, 1], names)
    out = baselines(table, names)
    assert [(b.split, b.n_images) for b in out] == [("all", 4), ("fold1", 2), ("fold2", 2)]


def test_baselines_for_the_usual_splits_are_unchanged(tmp_path):
    names = ["a", "b"]
    table = _scored(["test", "train", "val", "train"], [0, 1, 0, 1], [0, 1, 1, 1], names)
    assert [b.split for b in baselines(table, names)] == ["all", "train", "val", "test"]


def test_baselines_from_a_manifest_with_a_holdout_split(tmp_path):
    root = tmp_path / "ds"
    (root / "img").mkdir(parents=True)
    (root / "manifest.csv").write_text(
        "path,label,split\n"
        "img/0.jpg,a,training\nimg/1.jpg,b,training\nimg/2.jpg,a,validation\n"
        "img/3.jpg,b,holdout\nimg/4.jpg,a,holdout\n")
    ds = load_dataset(root)
    assert ds.images["split"].tolist() == ["train", "train", "val", "holdout", "holdout"]
    names = ["a", "b"]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.9, 0.1]], dtype=np.float32)
    out = baselines(scores_table.build_table(ds.images, probs, names), names)
    assert [(b.split, b.n_images) for b in out] == [("all", 5), ("train", 2), ("val", 1), ("holdout", 2)]
    assert {b.split: b.model_accuracy for b in out}["holdout"] == pytest.approx(0.5)
