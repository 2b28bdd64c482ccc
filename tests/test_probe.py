"""The K-fold linear probe (inspect_core/probe.py): out-of-fold by construction, useful on separable data."""
from __future__ import annotations

import numpy as np
import pytest

from inspect_core.probe import PROBE_DEFAULTS, out_of_fold_probs, stratified_folds


def _clusters(n_per_class: int = 200, n_classes: int = 3, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    emb = centres[labels] + rng.normal(0, 1, (len(labels), dim))
    return emb.astype(np.float32), labels


def test_folds_are_stratified_and_leave_unlabelled_rows_out():
    labels = np.array([0] * 10 + [1] * 7 + [-1] * 3)
    folds = stratified_folds(labels, 5, seed=1)
    assert (folds[labels < 0] == -1).all()
    for c in (0, 1):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1          # each class spread evenly over the folds
    assert (stratified_folds(labels, 5, seed=1) == folds).all()


def test_an_images_own_label_cannot_reach_its_probability():
    emb, labels = _clusters()
    folds = stratified_folds(labels, 5)
    before = out_of_fold_probs(emb, labels, 3, folds=folds)
    flipped = labels.copy()
    i = 17
    flipped[i] = 2                                        # its label changes; its fold does not
    after = out_of_fold_probs(emb, flipped, 3, folds=folds)
    np.testing.assert_array_equal(after.probs[i], before.probs[i])
    # the test can fail: the label did reach the probes of the other folds, so their rows moved
    others = folds != folds[i]
    assert np.abs(after.probs[others] - before.probs[others]).max() > 1e-6


def test_flipped_labels_get_a_low_out_of_fold_probability():
    emb, labels = _clusters(seed=3)
    rng = np.random.default_rng(0)
    flip = rng.choice(len(labels), 30, replace=False)
    given = labels.copy()
    given[flip] = (labels[flip] + 1) % 3
    res = out_of_fold_probs(emb, given, 3)
    p_given = res.probs[np.arange(len(given)), given]
    assert (p_given[flip] < 0.5).mean() >= 0.9
    clean = np.setdiff1d(np.arange(len(given)), flip)
    assert (p_given[clean] > 0.5).mean() >= 0.95
    assert 0.85 < res.accuracy < 0.97                    # the flips count as misses: about 1 - 30/600
    assert "5-fold linear probe" in res.note and "trained on the training split" in res.note


def test_missing_embeddings_and_unlabelled_rows():
    emb, labels = _clusters(n_per_class=50)
    emb[3] = np.nan
    labels = labels.copy()
    labels[5] = -1
    res = out_of_fold_probs(emb, labels, 3)
    assert np.isnan(res.probs[3]).all() and res.fold[3] == -1
    assert np.isfinite(res.probs[5]).all() and res.fold[5] == -1      # scored by a probe that never saw it
    np.testing.assert_allclose(res.probs[np.isfinite(res.probs).all(1)].sum(1), 1, atol=1e-5)
    empty = out_of_fold_probs(np.zeros((0, 4), np.float32), np.zeros(0, int), 3)
    assert empty.probs.shape == (0, 3) and "no probe" in empty.note


def test_options_are_checked():
    emb, labels = _clusters(n_per_class=20)
    with pytest.raises(ValueError, match="unknown probe option"):
        out_of_fold_probs(emb, labels, 3, n_fold=3)
    with pytest.raises(ValueError, match="at least 2"):
        out_of_fold_probs(emb, labels, 3, n_folds=1)
    assert set(PROBE_DEFAULTS) >= {"n_folds", "dims", "max_train_rows"}
