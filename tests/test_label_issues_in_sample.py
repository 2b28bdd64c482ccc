"""Label issues apart for in-sample rows (the model was trained on them) and out-of-sample rows, and out-of-fold
probabilities used for the in-sample ones (label_issues.triage_labels, trained_on_mask)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from inspect_core.model.label_issues import find_issues_confident_learning, trained_on_mask, triage_labels
from inspect_core.model.table import build_table

CLASSES = ["a", "b", "c"]


def _probs_for(labels: np.ndarray, rng, sure: float = 0.9) -> np.ndarray:
    probs = rng.dirichlet(np.ones(3) * 0.5, len(labels)) * (1 - sure)
    probs[np.arange(len(labels)), labels] += sure
    return probs


def _scored(seed: int = 0):
    """300 train rows whose model probabilities agree with the given labels, flips included (memorised), and
    300 test rows whose probabilities follow the true labels (the flips show); 20 flips in each split."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 3, 600)
    given = true.copy()
    flips = np.r_[rng.choice(300, 20, replace=False), 300 + rng.choice(300, 20, replace=False)]
    given[flips] = (true[flips] + 1) % 3
    split = np.array(["train"] * 300 + ["test"] * 300)
    probs = np.where((split == "train")[:, None], _probs_for(given, rng), _probs_for(true, rng))
    images = pd.DataFrame({"image_id": [f"i{k:03d}" for k in range(600)], "label": np.array(CLASSES)[given],
                           "split": split})
    flipped = np.zeros(600, bool)
    flipped[flips] = True
    return build_table(images, probs, CLASSES), probs, true, flipped


def test_trained_on_is_the_split_unless_the_user_says_otherwise():
    splits = ["train", "Val", None, "TRAIN", "training"]
    assert trained_on_mask(splits).tolist() == [True, False, False, True, True]
    assert trained_on_mask(splits, "val, test").tolist() == [False, True, False, False, False]
    assert trained_on_mask(splits, ["all"]).all() and not trained_on_mask(splits, "none").any()


def test_in_sample_and_out_of_sample_rows_are_flagged_and_ranked_apart():
    table, probs, _, flipped = _scored()
    ins = trained_on_mask(table["split"])
    issues, _ = triage_labels(table, probs, CLASSES, in_sample=ins)
    assert issues.groupby("in_sample").size().to_dict() == {False: 300, True: 300}
    for group in (False, True):
        ranks = issues.loc[issues["in_sample"] == group, "cl_rank"].dropna().sort_values().tolist()
        assert ranks == list(range(1, len(ranks) + 1))          # each group ranked from 1
    # the out-of-sample flags are those of the test rows alone: the memorised train rows change nothing
    test_rows = ~ins
    alone = find_issues_confident_learning(probs, np.where(test_rows, table["label_index"].to_numpy(), -1))
    flagged_ids = set(issues.loc[issues["cl_issue"] & ~issues["in_sample"], "image_id"])
    assert flagged_ids == set(table["image_id"][alone.issue_mask & test_rows])
    by_id = dict(zip(table["image_id"], flipped))
    test_flags = issues[~issues["in_sample"] & issues["cl_issue"]]
    assert np.mean([by_id[i] for i in test_flags["image_id"]]) >= 0.9     # the test flips are found
    # memorised training flips escape the model's own probabilities...
    train_flags = issues[issues["in_sample"] & issues["cl_issue"]]
    assert sum(by_id[i] for i in train_flags["image_id"]) <= 2
    assert set(issues["probabilities"]) == {"model"}


def test_out_of_fold_probabilities_find_the_memorised_training_flips():
    table, probs, true, flipped = _scored()
    ins = trained_on_mask(table["split"])
    rng = np.random.default_rng(5)
    oos = np.full_like(probs, np.nan)
    oos[ins] = _probs_for(true[ins], rng, sure=0.8)            # what a probe that never saw the labels gives
    issues, _ = triage_labels(table, probs, CLASSES, in_sample=ins, oos_probs=oos)
    train = issues[issues["in_sample"]]
    assert set(train["probabilities"]) == {"out-of-fold"} and set(issues.loc[~issues["in_sample"], "probabilities"]) == {"model"}
    by_id = dict(zip(table["image_id"], flipped))
    found = [by_id[i] for i in train.loc[train["cl_issue"], "image_id"]]
    assert sum(found) >= 18 and np.mean(found) >= 0.9            # 20 planted in the training split
    # losses stay the model's own
    np.testing.assert_allclose(issues.set_index("image_id").loc[table["image_id"], "loss"], table["loss"])
