"""inspect_core.suite.metrics: each metric on tiny scores worked out by hand; intervals against reference
computations (scipy's Wilson interval, a plain bootstrap of the images)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inspect_core.suite import metrics as M
from inspect_core.suite.slices import SliceData
from inspect_core.suite.spec import DEFAULTS

D = dict(DEFAULTS)


def arrays(labels, preds, probs=None, loss=None, names=("a", "b", "c")):
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    if probs is None:
        probs = np.full((len(labels), len(names)), 0.1)
        probs[np.arange(len(labels)), preds] = 0.8
    probs = np.asarray(probs, dtype=float)
    if loss is None:
        loss = -np.log(probs[np.arange(len(labels)), np.clip(labels, 0, None)])
    return M.ScoreArrays(list(names), labels.astype(np.int64), preds.astype(np.int64), probs, np.asarray(loss, float))


ALL5 = np.ones(5, dtype=bool)


def test_accuracy_counts_labelled_scored_images_only():
    # 5 images: right, wrong, right, right, wrong; a 6th without a label and a 7th unscored are not counted
    s = arrays([0, 0, 1, 1, 2, -1, 1], [0, 1, 1, 1, 0, 0, -1])
    mv = M.accuracy(s, np.ones(7, dtype=bool), {}, D)
    assert (mv.n, mv.value) == (5, 3 / 5)
    mv = M.accuracy(s, np.array([1, 1, 0, 0, 0, 0, 0], dtype=bool), {}, D)
    assert (mv.n, mv.value) == (2, 0.5)


def test_wilson_matches_scipy_and_the_closed_form_at_zero():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(3, 5), (0, 10), (10, 10), (47, 60), (1, 1000)]:
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = M.wilson(k, n, 0.95)
        assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    z2 = 1.959963984540054 ** 2
    assert M.wilson(0, 10)[1] == pytest.approx(z2 / (10 + z2))       # upper bound with no successes
    assert all(math.isnan(v) for v in M.wilson(0, 0))


def test_top_k_accuracy_by_hand():
    probs = np.array([[0.5, 0.3, 0.2],     # label 1: second -> in top 2, not top 1
                      [0.2, 0.3, 0.5],     # label 0: third -> in top 3 only
                      [0.1, 0.7, 0.2]])    # label 1: first
    s = arrays([1, 0, 1], probs.argmax(axis=1), probs=probs)
    m = np.ones(3, dtype=bool)
    assert M.top_k_accuracy(s, m, {"k": 1}, D).value == pytest.approx(1 / 3)
    assert M.top_k_accuracy(s, m, {"k": 2}, D).value == pytest.approx(2 / 3)
    assert M.top_k_accuracy(s, m, {"k": 3}, D).value == pytest.approx(1.0)


def test_mean_loss_and_its_bootstrap_interval():
    rng = np.random.default_rng(1)
    loss = rng.exponential(0.5, 400)
    s = arrays(np.zeros(400, int), np.zeros(400, int), loss=loss)
    mv = M.mean_loss(s, np.ones(400, dtype=bool), {}, D)
    assert mv.value == pytest.approx(loss.mean())
    # reference: a plain percentile bootstrap of the images with another generator
    ref = np.quantile([rng.choice(loss, 400).mean() for _ in range(3000)], [0.025, 0.975])
    assert mv.low == pytest.approx(ref[0], abs=0.01) and mv.high == pytest.approx(ref[1], abs=0.01)
    # over bootstrap_max_n the normal interval, which agrees
    big = M.mean_loss(s, np.ones(400, dtype=bool), {}, {**D, "bootstrap_max_n": 100})
    assert big.interval == "normal"
    assert big.low == pytest.approx(ref[0], abs=0.01) and big.high == pytest.approx(ref[1], abs=0.01)


def test_recall_precision_f1_of_a_class_by_hand():
    # class 0 ("a"): given 0 on 4 images, predicted 0 on 3 of them; predicted 0 on one image of class 1
    s = arrays([0, 0, 0, 0, 1, 1, 2], [0, 0, 0, 1, 0, 1, 2])
    m = np.ones(7, dtype=bool)
    r = M.recall(s, m, {"class": "a"}, D)
    p = M.precision(s, m, {"class": "a"}, D)
    f = M.f1(s, m, {"class": "a"}, D)
    assert (r.value, r.n) == (3 / 4, 4)
    assert (p.value, p.n) == (3 / 4, 4)
    assert f.value == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    with pytest.raises(M.MetricError, match="'zebra' is not among the model's classes"):
        M.recall(s, m, {"class": "zebra"}, D)


def test_f1_interval_agrees_with_a_plain_bootstrap_of_the_images():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    s = arrays(y, p)
    mv = M.f1(s, np.ones(300, dtype=bool), {"class": "b"}, D)
    samples = []
    for _ in range(2000):
        i = rng.integers(0, 300, 300)
        tp = ((y[i] == 1) & (p[i] == 1)).sum()
        samples.append(2 * tp / (2 * tp + ((y[i] != 1) & (p[i] == 1)).sum() + ((y[i] == 1) & (p[i] != 1)).sum()))
    lo, hi = np.quantile(samples, [0.025, 0.975])
    assert mv.low == pytest.approx(lo, abs=0.02) and mv.high == pytest.approx(hi, abs=0.02)


def test_ece_by_hand():
    # four images at confidence 0.9 (one bin), three right: |0.75 - 0.9| = 0.15;
    # two at confidence 0.6, both right: |1.0 - 0.6| = 0.4; weighted: (4 * 0.15 + 2 * 0.4) / 6
    probs = np.array([[0.9, 0.05, 0.05]] * 4 + [[0.6, 0.2, 0.2]] * 2)
    s = arrays([0, 0, 0, 1, 0, 0], [0] * 6, probs=probs)
    mv = M.ece(s, np.ones(6, dtype=bool), {}, D)
    assert mv.value == pytest.approx((4 * 0.15 + 2 * 0.4) / 6)
    assert mv.low <= mv.value <= mv.high
    one_bin = M.ece(s, np.ones(6, dtype=bool), {"bins": 1}, D)     # one bin: |5/6 - 0.8|
    assert one_bin.value == pytest.approx(abs(5 / 6 - (4 * 0.9 + 2 * 0.6) / 6))


def test_finding_count_and_share():
    images = pd.DataFrame({"image_id": ["a", "b", "c", "d"]})
    findings = pd.DataFrame({"image_id": ["a", "a", "c", None], "check": ["dark", "dark", "blurry", "rare_class"],
                             "family": ["exposure", "exposure", "sharpness", "labels"]})
    data = SliceData(images, findings=findings)
    mask = np.array([True, True, False, False])
    assert M.finding_count(data, mask, {"check": "dark"}, D, False).value == 2
    assert M.finding_count(data, np.ones(4, bool), {"check": "labels"}, D, True).value == 1   # dataset-level
    assert M.finding_count(data, np.ones(4, bool), {"check": "labels"}, D, False).value == 0
    share = M.finding_share(data, np.ones(4, bool), {"check": "exposure"}, D, True)
    assert (share.value, share.n) == (1 / 4, 4)
