"""Exports: relabel list CSV/JSON and the cleaned manifest; the dataset is never touched."""
from __future__ import annotations

import io
import json
import os

import pandas as pd
import pytest

from inspect_core.export import (RELABEL_COLUMNS, cleaned_manifest, relabel_csv_bytes, relabel_json_bytes,
                                 relabel_table, write_exports)
from inspect_core.review import ReviewStore


def _images():
    return pd.DataFrame({
        "image_id": ["train/cat/a.jpg", "train/cat/b.jpg", "val/dog/c.jpg", "test/dog/d.jpg"],
        "label": pd.array(["cat", "cat", "dog", "dog"], dtype="string"),
        "split": pd.array(["train", "train", "val", "test"], dtype="string"),
        "source": pd.array(["web", "cam", "cam", "web"], dtype="string"),
    })


@pytest.fixture()
def store(tmp_path):
    s = ReviewStore(tmp_path / "ws")
    s.decide("train/cat/a.jpg", "relabel", old_label="cat", new_label="dog", note="it barks")
    s.decide("val/dog/c.jpg", "remove", old_label="dog", note="corrupt, \"quoted\", comma")
    s.decide("test/dog/d.jpg", "keep", old_label="dog")
    s.decide("train/cat/b.jpg", "relabel", old_label="cat", new_label="<img src=x onerror=alert(1)>")
    s.undo("train/cat/b.jpg")
    return s


def test_relabel_list_csv_and_json(store, tmp_path):
    root = tmp_path / "data"
    table = relabel_table(store.current(), root)
    assert list(table.columns) == RELABEL_COLUMNS
    assert list(table["image_id"]) == ["test/dog/d.jpg", "train/cat/a.jpg", "val/dog/c.jpg"]
    assert table.set_index("image_id").loc["train/cat/a.jpg", "path"] == str(root / "train" / "cat" / "a.jpg")

    back = pd.read_csv(io.BytesIO(relabel_csv_bytes(table)), dtype=str, keep_default_na=False)
    assert list(back.columns) == RELABEL_COLUMNS
    row = back.set_index("image_id").loc["val/dog/c.jpg"]
    assert row["action"] == "remove" and row["note"] == 'corrupt, "quoted", comma'

    records = json.loads(relabel_json_bytes(table))
    by_id = {r["image_id"]: r for r in records}
    assert by_id["train/cat/a.jpg"]["new_label"] == "dog"
    assert by_id["test/dog/d.jpg"]["new_label"] is None
    assert by_id["train/cat/a.jpg"]["decided_at"].endswith("+00:00")


def test_cleaned_manifest_applies_decisions(store):
    manifest = cleaned_manifest(_images(), store.current())
    assert list(manifest.columns[:3]) == ["path", "label", "split"]
    assert "source" in manifest.columns
    labels = dict(zip(manifest["path"], manifest["label"]))
    # removal dropped, relabel applied, undone relabel not applied, kept image unchanged
    assert labels == {"test/dog/d.jpg": "dog", "train/cat/a.jpg": "dog", "train/cat/b.jpg": "cat"}


def test_empty_decisions_export(tmp_path):
    table = relabel_table(ReviewStore(tmp_path).current(), tmp_path)
    assert table.empty and list(table.columns) == RELABEL_COLUMNS
    assert json.loads(relabel_json_bytes(table)) == []
    assert len(cleaned_manifest(_images(), None)) == 4


def test_write_exports_outside_root_only(store, tmp_path):
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    before = sorted(os.listdir(root))
    with pytest.raises(ValueError, match="inside the dataset root"):
        write_exports(root / "export", root, _images(), store.current())
    assert sorted(os.listdir(root)) == before

    written = write_exports(tmp_path / "out", root, _images(), store.current())
    assert {p.name for p in written.values()} == {
        "relabels.csv", "relabels.json", "cleaned_manifest.csv", "cleaned_manifest.json"}
    manifest = pd.read_csv(written["manifest_csv"], dtype=str)
    assert len(manifest) == 3
    meta = json.loads(written["manifest_json"].read_text())
    assert meta["n_removed"] == 1 and meta["n_relabelled"] == 1 and meta["n_images_cleaned"] == 3
