"""table.py and metrics.py: the scores table and what the Model triage page derives from it, built without
per-row Python loops (a 1,000,000-image predictions file opened in 14 s): each is checked against a plain per-row
reference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inspect_core.model.label_issues import rank_label_issues
from inspect_core.model.metrics import per_class_metrics
from inspect_core.model.predictions import score_predictions
from inspect_core.model.table import ScoreResult, build_table
from inspect_core.ui.model_triage import filter_scores, make_entry, row_positions

NAMES = ["cat", "dog", "fox"]


def random_probs(n: int, seed: int, n_classes: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n_classes) * 0.5, n).astype(np.float32)
    return np.round(p, 1) / np.round(p, 1).sum(axis=1, keepdims=True)    # coarse: many equal losses


def images_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array(["cat", "dog", "fox", "wolf", None], dtype=object), n)
    return pd.DataFrame({"image_id": [f"img_{i:04d}.jpg" for i in range(n)], "label": labels,
                         "split": rng.choice(np.array(["train", "val", None], dtype=object), n)})


def test_build_table_labels_and_correct_match_a_per_row_reference():
    images = images_frame(400, 1)
    images.loc[3, "label"] = np.nan
    probs = random_probs(400, 2)
    probs[5] = np.nan
    table = build_table(images, probs, NAMES)
    index = {c: i for i, c in enumerate(NAMES)}
    ref_idx = [index.get(str(v), -1) if not pd.isna(v) else -1 for v in images["label"]]
    assert table["label_index"].tolist() == ref_idx
    assert table["label"].tolist() == [pd.NA if pd.isna(v) else str(v) for v in images["label"]]
    assert table["split"].tolist() == [pd.NA if pd.isna(v) else str(v) for v in images["split"]]
    pred = np.nan_to_num(probs, nan=1 / 3).argmax(axis=1)
    for i in range(400):
        expect = pd.NA if ref_idx[i] < 0 or i == 5 else bool(pred[i] == ref_idx[i])
        assert table["correct"].iloc[i] is expect or table["correct"].iloc[i] == expect, i
    assert table["pred_label"].iloc[0] == NAMES[pred[0]] and pd.isna(table["pred_label"].iloc[5])
    assert table["correct"].dtype == "boolean" and table["label"].dtype == "string"


def test_build_table_reads_integer_labels_and_a_repeated_class_name_like_before():
    images = pd.DataFrame({"image_id": ["a", "b", "c"], "label": pd.Series([0, 2, None], dtype=object)})
    table = build_table(images, random_probs(3, 0), ["0", "1", "2"])
    assert table["label_index"].tolist() == [0, 2, -1] and table["label"].tolist() == ["0", "2", pd.NA]
    twice = build_table(pd.DataFrame({"image_id": ["a"], "label": ["x"]}), random_probs(1, 0), ["x", "y", "x"])
    assert twice["label_index"].tolist() == [2]          # the last position of a repeated name, as before


def test_predictions_file_alignment_duplicates_missing_and_extra_rows(tmp_path):
    images = images_frame(50, 3)
    rng = np.random.default_rng(4)
    probs = random_probs(60, 5)
    ids = [f"img_{i:04d}.jpg" for i in rng.permutation(50)[:45]] + [f"other_{i}.jpg" for i in range(10)] \
        + ["img_0001.jpg"] * 5                            # 5 repeats of one id (the first row is used)
    frame = pd.DataFrame({"image_id": ids, **{f"prob_{c}": probs[:, j] for j, c in enumerate(NAMES)}})
    frame.loc[2, "prob_dog"] = np.nan                     # one row with a missing value
    path = tmp_path / "preds.csv"
    frame.to_csv(path, index=False)
    result = score_predictions(path, images, dataset_classes=NAMES)
    first = {}
    for i, image_id in enumerate(ids):
        first.setdefault(image_id, i)
    for row, image_id in enumerate(images["image_id"]):
        pos = first.get(image_id)
        err = result.table["error"].iloc[row]
        if pos is None:
            assert err == "no prediction for this image in the predictions file"
            assert np.isnan(result.probs[row]).all()
        elif pos == 2:
            assert err == "prediction row has missing values"
        else:
            assert pd.isna(err)
            np.testing.assert_allclose(result.probs[row], probs[pos] / probs[pos].sum(), atol=1e-6)
    assert "10 predictions name image_ids not in the dataset (ignored)" in result.notes
    assert "5 duplicate image_id rows in the predictions file (first kept)" in result.notes


@pytest.mark.parametrize("shuffled", [False, True])
def test_rank_label_issues_orders_equal_losses_by_image_id(shuffled):
    images = images_frame(600, 6)
    if shuffled:                                          # not in image_id order: the two-key sort
        images = images.sample(frac=1.0, random_state=0).reset_index(drop=True)
    probs = random_probs(600, 7)
    table = build_table(images, probs, NAMES)
    issues = rank_label_issues(table, probs, NAMES)
    ok = (table["label_index"] >= 0) & table["loss"].notna()
    ref = table[ok].sort_values(["loss", "image_id"], ascending=[False, True], kind="stable")
    assert issues["image_id"].tolist() == ref["image_id"].tolist()
    assert issues["loss_rank"].tolist() == list(range(1, len(ref) + 1))
    assert table.loc[ok, "loss"].duplicated().sum() > 100          # the case has many equal losses
    flagged = issues[issues["cl_issue"]]
    assert sorted(flagged["cl_rank"].tolist()) == list(range(1, len(flagged) + 1))
    assert issues.loc[~issues["cl_issue"], "cl_rank"].isna().all()
    assert set(issues["suggested_label"].dropna()) <= set(NAMES)


def test_per_class_metrics_match_a_per_class_reference():
    images = images_frame(500, 8)
    probs = random_probs(500, 9)
    probs[:7] = np.nan
    table = build_table(images, probs, NAMES)
    got = per_class_metrics(table, NAMES)
    t = table[(table["label_index"] >= 0) & (table["pred_index"] >= 0)]
    for j, name in enumerate(NAMES):
        given, predicted = t[t["label_index"] == j], t[t["pred_index"] == j]
        row = got[got["class"] == name].iloc[0]
        assert row["n_images"] == len(given)
        assert row["accuracy"] == pytest.approx((given["pred_index"] == j).mean())
        assert row["precision"] == pytest.approx((predicted["label_index"] == j).mean())
        assert row["mean_loss"] == pytest.approx(given["loss"].mean())
        assert row["median_loss"] == pytest.approx(given["loss"].median())
        assert row["n_errors"] == int((given["pred_index"] != j).sum())


def test_per_class_metrics_of_a_class_without_images_is_empty_not_an_error():
    images = pd.DataFrame({"image_id": ["a", "b"], "label": ["cat", "cat"]})
    got = per_class_metrics(build_table(images, random_probs(2, 1), NAMES), NAMES).set_index("class")
    assert got.loc["fox", "n_images"] == 0 and np.isnan(got.loc["fox", "accuracy"])
    assert np.isnan(got.loc["fox", "mean_loss"])


def test_row_positions_keep_the_first_row_of_a_repeated_id():
    table = pd.DataFrame({"image_id": pd.array(["a", "b", "a", "c", "b"], dtype="string")})
    assert row_positions(table) == {"a": 0, "b": 1, "c": 3}


def test_entry_headline_matches_the_table():
    images = images_frame(300, 10)
    probs = random_probs(300, 11)
    probs[:4] = np.nan
    table = build_table(images, probs, NAMES)
    result = ScoreResult(table=table, probs=probs, class_names=NAMES)
    head = make_entry(result, "k")["headline"]
    labelled = table[table["error"].isna() & (table["label_index"] >= 0)]
    assert head["n_scored"] == int(table["error"].isna().sum()) and head["n_errors"] == 4
    assert head["accuracy"] == pytest.approx(labelled["correct"].astype(bool).mean())
    assert head["mean_loss"] == pytest.approx(labelled["loss"].mean())


def test_filter_scores_keeps_loss_order_and_sorts_a_shuffled_table():
    images = images_frame(300, 12)
    probs = random_probs(300, 13)
    issues = rank_label_issues(build_table(images, probs, NAMES), probs, NAMES)
    rows = filter_scores(issues, given=["cat"])
    assert rows["loss_rank"].is_monotonic_increasing and set(rows["given_label"]) == {"cat"}
    shuffled = filter_scores(issues.sample(frac=1.0, random_state=1), given=["cat"])
    assert shuffled["image_id"].tolist() == rows["image_id"].tolist()


def test_categorical_integer_labels_keep_their_values():
    # review of session 4: np.asarray on a categorical of integers gave floats ("0.0"), which match no class
    images = pd.DataFrame({"image_id": ["a", "b", "c"], "label": pd.Categorical([0, 1, None])})
    table = build_table(images, random_probs(3, 0, n_classes=2), ["0", "1"])
    assert table["label_index"].tolist() == [0, 1, -1] and table["label"].tolist() == ["0", "1", pd.NA]


def test_a_missing_image_id_still_lines_up_with_npy_rows(tmp_path):
    # review of session 4: pandas 3's astype(str) keeps NaN, while the .npy order used str(id) ("nan")
    images = pd.DataFrame({"image_id": pd.Series(["a", "b", np.nan], dtype=object), "label": ["cat", "dog", "fox"]})
    np.save(tmp_path / "p.npy", random_probs(3, 1))
    result = score_predictions(tmp_path / "p.npy", images, class_names=NAMES)
    assert result.table["error"].isna().all()
