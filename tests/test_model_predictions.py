"""predictions.py: predictions files read without a model (CSV / Parquet / NPY), their values and their errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inspect_core.model import predictions as predictions_file
from inspect_core.model import table as scores_table
from model_support import COLOURS, SHAPES, _colour_dataset, _save, sample_dataset, sample_reference


@pytest.fixture(scope="module")
def dataset():
    return sample_dataset()


@pytest.fixture(scope="module")
def reference():
    return sample_reference()


def test_extra_numeric_columns_are_not_classes(tmp_path, dataset, reference):
    _, good = reference
    path = tmp_path / "preds.csv"
    good.assign(fold=1).to_csv(path)                        # pandas' default: the index becomes "Unnamed: 0"
    res = predictions_file.score_predictions(path, dataset.images, dataset_classes=dataset.classes)
    assert res.class_names == SHAPES
    loss = res.table["loss"].dropna()
    assert loss.max() == pytest.approx(-np.log(0.96), abs=1e-4)
    assert any("Unnamed: 0" in n and "fold" in n for n in res.notes), res.notes


def test_rounded_probabilities_and_percentages_are_probabilities(tmp_path, dataset, reference):
    res, _ = reference
    frame = res.to_frame()[["image_id"] + [f"prob_{c}" for c in SHAPES]].dropna()
    exact = predictions_file.score_predictions(_save(frame, tmp_path / "exact.csv"), dataset.images)
    rounded = predictions_file.score_predictions(_save(frame.round(2), tmp_path / "rounded.csv"), dataset.images)
    assert rounded.source["values"] == "probabilities"
    # two decimals keep every loss below -log(0.05) = 3 to within 0.2 (smaller probabilities round to 0 or 0.01)
    near = exact.table["loss"].to_numpy() < 3
    np.testing.assert_allclose(rounded.table["loss"].to_numpy()[near], exact.table["loss"].to_numpy()[near], atol=0.2)
    assert any("probabilities" in n for n in rounded.notes)
    pct = frame.copy()
    pct[pct.columns[1:]] *= 100
    as_pct = predictions_file.score_predictions(_save(pct, tmp_path / "pct.csv"), dataset.images)
    assert as_pct.source["values"] == "percentages"
    np.testing.assert_allclose(as_pct.table["loss"].to_numpy(), exact.table["loss"].to_numpy(), atol=1e-4)


def test_probabilities_with_a_missing_column_are_refused_not_read_as_logits(tmp_path, dataset, reference):
    _, good = reference
    path = _save(good.drop(columns=["hexagon"]), tmp_path / "four.csv")
    with pytest.raises(predictions_file.PredictionsError, match="sum"):
        predictions_file.score_predictions(path, dataset.images)
    # the dataset's classes name what is missing
    with pytest.raises(predictions_file.PredictionsError, match="hexagon"):
        predictions_file.score_predictions(path, dataset.images, dataset_classes=dataset.classes)


def test_a_list_column_takes_the_dataset_classes(tmp_path, dataset, reference):
    _, good = reference
    lists = pd.DataFrame({"image_id": good["image_id"], "probs": list(good[SHAPES].to_numpy())})
    path = tmp_path / "lists.parquet"
    lists.to_parquet(path)
    res = predictions_file.score_predictions(path, dataset.images, dataset_classes=dataset.classes)
    assert res.class_names == SHAPES
    assert res.table["loss"].notna().sum() == len(good)


def test_labels_the_model_does_not_know_are_reported(tmp_path, dataset, reference):
    _, good = reference
    path = _save(good.rename(columns={"hexagon": "Hexagon"}).assign(Hexagon=good["hexagon"]), tmp_path / "h.csv")
    res = predictions_file.score_predictions(path, dataset.images)
    labels = dataset.images["label"]
    n_unknown = int((labels.notna() & ~labels.isin(SHAPES[:4])).sum())          # hexagon, and the planted "blob"
    assert any(f"{n_unknown} labelled images" in n and "hexagon" in n for n in res.notes), res.notes


def test_a_folder_or_a_bool_array_is_named_for_what_it_is(tmp_path, dataset):
    folder = tmp_path / "preds.csv"
    folder.mkdir()
    with pytest.raises(predictions_file.PredictionsError, match="is a folder"):
        predictions_file.score_predictions(folder, dataset.images)
    flags = tmp_path / "flags.npy"
    np.save(flags, np.zeros((len(dataset.images), 5), dtype=bool))
    with pytest.raises(predictions_file.PredictionsError, match="bool values"):
        predictions_file.score_predictions(flags, dataset.images, dataset_classes=dataset.classes)


def test_a_model_class_the_dataset_lacks_is_kept_not_renormalised_away(tmp_path):
    images = pd.DataFrame({"image_id": ["a", "b"], "label": ["cat", "dog"]})
    frame = pd.DataFrame({"image_id": ["a", "b"], "prob_cat": [0.1, 0.2], "prob_dog": [0.1, 0.7],
                          "prob_fox": [0.8, 0.1], "fold": [1, 2]})
    res = predictions_file.score_predictions(_save(frame, tmp_path / "p.csv"), images, dataset_classes=["cat", "dog"])
    assert res.class_names == ["cat", "dog", "fox"]
    np.testing.assert_allclose(res.probs[0], [0.1, 0.1, 0.8], atol=1e-6)
    assert any("fold" in n for n in res.notes)


def test_rounded_values_over_many_classes_and_float_error_are_still_probabilities():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(100), size=50)
    assert predictions_file.detect_values(np.round(p, 2)) == "probabilities"
    assert predictions_file.detect_values(np.round(p * 100)) == "percentages"
    two = np.array([[0.25, 0.75], [1 + 2e-6, -2e-6]])
    assert predictions_file.detect_values(two) == "probabilities"
    with_placeholder = np.vstack([p[:3], np.zeros((1, 100))])
    assert predictions_file.detect_values(with_placeholder) == "probabilities"
    assert predictions_file.detect_values(rng.normal(size=(20, 100))) == "logits"


def test_predictions_files_need_no_model(tmp_path):
    root = tmp_path / "data"
    images = _colour_dataset(root)
    ok_rows = images[images["image_id"] != "red/broken.png"].reset_index(drop=True)
    idx = {c: i for i, c in enumerate(COLOURS)}
    logits = np.full((len(ok_rows), 3), -2.0)
    logits[np.arange(len(ok_rows)), [idx[t] for t in ok_rows["true"]]] = 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    # per-class columns of probabilities, CSV
    csv = tmp_path / "p.csv"
    pd.DataFrame({"image_id": ok_rows["image_id"], **{f"prob_{c}": probs[:, i] for i, c in enumerate(COLOURS)}}).to_csv(csv, index=False)
    r_csv = predictions_file.score_predictions(csv, images)
    assert r_csv.source["values"] == "probabilities" and r_csv.class_names == list(COLOURS)
    # logits in a list column, parquet
    pq = tmp_path / "p.parquet"
    pd.DataFrame({"image_id": ok_rows["image_id"], "scores": list(logits)}).to_parquet(pq)
    r_pq = predictions_file.score_predictions(pq, images, class_names=COLOURS)
    assert r_pq.source["values"] == "logits"
    # npy aligned with a given order
    npy = tmp_path / "p.npy"
    np.save(npy, logits)
    r_npy = predictions_file.score_predictions(npy, images, class_names=COLOURS, order=list(ok_rows["image_id"]))
    for r in (r_csv, r_pq, r_npy):
        t = r.table
        assert t.loc[t["image_id"] == "red/broken.png", "error"].iloc[0].startswith("no prediction")
        ok = t["error"].isna()
        np.testing.assert_allclose(r.probs[ok.to_numpy()], probs, atol=1e-5)
        assert (t.loc[ok, "label"] != t.loc[ok, "pred_label"]).sum() == 3
    with pytest.raises(predictions_file.PredictionsError, match="rows"):
        predictions_file.score_predictions(npy, images, class_names=COLOURS)        # 12 rows vs 13 dataset images
    with pytest.raises(predictions_file.PredictionsError, match="not found"):
        predictions_file.score_predictions(tmp_path / "none.csv", images)
    (tmp_path / "noid.csv").write_text("a,b\n1,2\n")
    with pytest.raises(predictions_file.PredictionsError, match="image_id"):
        predictions_file.score_predictions(tmp_path / "noid.csv", images)


def test_logits_vs_probabilities_decision():
    p = np.array([[0.2, 0.8], [0.5, 0.5]])
    assert scores_table.looks_like_probabilities(p)
    assert not scores_table.looks_like_probabilities(np.array([[0.2, 0.3], [0.1, 0.1]]))     # in [0,1] but not summing to 1
    assert not scores_table.looks_like_probabilities(np.array([[2.0, -1.0], [0.1, 0.9]]))
    probs, kind = predictions_file.to_probabilities(np.array([[0.0, np.log(3.0)]]))
    assert kind == "logits" and probs[0, 1] == pytest.approx(0.75)
