"""Manifest labels that pandas reads as numbers, and per-split baselines for splits other than train/val/test.

- A Parquet manifest whose label column holds class indices with one empty cell is stored as float64
  (0.0, 1.0, NaN): the labels must read "0", "1" (matching a model's class names "0", "1"), not "0.0", "1.0".
  Real non-integer numbers keep their text; an empty cell stays missing. CSV manifests are read as text.
- sanity.baselines gives one row per split present in the data: "all", then train/val/test, then any other
  split (e.g. "holdout") in sorted order.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inspect_core.model import table as scores_table
from inspect_core.loaders import load_dataset
from inspect_core.model.sanity import baselines, baselines_frame


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
    root = _root(tmp_path)
    (root / "manifest.csv").write_text(
        "path,label,split\n"
        "img/0.jpg,a,training\nimg/1.jpg,b,training\nimg/2.jpg,a,validation\n"
        "img/3.jpg,b,holdout\nimg/4.jpg,a,holdout\n")
    ds = load_dataset(root)
    assert _splits(ds) == ["train", "train", "val", "holdout", "holdout"]
    names = ["a", "b"]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.9, 0.1]], dtype=np.float32)
    out = baselines(scores_table.build_table(ds.images, probs, names), names)
    assert [(b.split, b.n_images) for b in out] == [("all", 5), ("train", 2), ("val", 1), ("holdout", 2)]
    assert {b.split: b.model_accuracy for b in out}["holdout"] == pytest.approx(0.5)
