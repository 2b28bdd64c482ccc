"""Metrics of a slice, each with a confidence interval, so that a small slice cannot pass or fail by chance.

Proportions (accuracy, top-k accuracy, recall, precision, finding share) get the Wilson score interval; the
mean loss a percentile bootstrap (a normal interval over more than ``bootstrap_max_n`` images, where the two
agree); F1 and the expected calibration error a bootstrap that resamples the slice's confusion counts (F1) or its
(confidence bin, right/wrong) cells (ECE) as a multinomial, which is the bootstrap of the images themselves
(for ECE up to using each cell's mean confidence), at a cost independent of the slice's size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist

import numpy as np


@dataclass
class ScoreArrays:
    """Per image, in the row order of the scan's images table: the given label's class index (-1: no label or
    a label the model has no class for), the predicted class index (-1: not scored), probabilities
    (n_images, n_classes) and the per-example loss (NaN where there is none)."""
    class_names: list[str]
    label_index: np.ndarray
    pred_index: np.ndarray
    probs: np.ndarray
    loss: np.ndarray

    # per-image arrays every slice shares, computed once
    @cached_property
    def counted(self) -> np.ndarray:
        """Images a model metric counts: labelled with a model class and scored."""
        return (self.label_index >= 0) & (self.pred_index >= 0)

    @cached_property
    def right(self) -> np.ndarray:
        return self.counted & (self.pred_index == self.label_index)

    @cached_property
    def label_rank(self) -> np.ndarray:
        """How many classes are strictly more probable than the given label (0: the top class); -1 uncounted."""
        rank = np.full(len(self.label_index), -1, dtype=np.int64)
        c = np.flatnonzero(self.counted)
        p = self.probs[c]
        own = p[np.arange(len(c)), self.label_index[c]]
        rank[c] = (p > own[:, None]).sum(axis=1)
        return rank

    @cached_property
    def confidence(self) -> np.ndarray:
        return np.nan_to_num(self.probs.max(axis=1, initial=0.0).astype(np.float64), nan=0.0)

    def class_index(self, name: str) -> int:
        try:
            return self.class_names.index(str(name))
        except ValueError:
            raise MetricError(f"class {name!r} is not among the model's classes "
                              f"({', '.join(self.class_names[:8])})") from None


class MetricError(ValueError):
    """A metric that cannot be computed on this data (an unknown class, no scores)."""


@dataclass
class MetricValue:
    value: float           # NaN when nothing was counted
    low: float
    high: float
    n: int                 # images counted (the support)
    interval: str = ""     # how the interval was made


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (NaN, NaN for n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    z = z_value(confidence)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _proportion(k: int, n: int, confidence: float) -> MetricValue:
    lo, hi = wilson(k, n, confidence)
    return MetricValue(k / n if n else math.nan, lo, hi, int(n), "Wilson")


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return math.nan, math.nan
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def accuracy(s: ScoreArrays, mask: np.ndarray, params: dict, d: dict) -> MetricValue:
    return _proportion(int((mask & s.right).sum()), int((mask & s.counted).sum()), d["confidence"])


def top_k_accuracy(s: ScoreArrays, mask: np.ndarray, params: dict, d: dict) -> MetricValue:
    m = mask & s.counted
    return _proportion(int((s.label_rank[m] < int(params["k"])).sum()), int(m.sum()), d["confidence"])


def mean_loss(s: ScoreArrays, mask: np.ndarray, params: dict, d: dict) -> MetricValue:
    m = mask & s.counted & np.isfinite(s.loss)
    x = s.loss[m]
    n = len(x)
    if n == 0:
        return MetricValue(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return MetricValue(mean, math.nan, math.nan, 1, "one image")
    if n > d["bootstrap_max_n"]:
        half = z_value(d["confidence"]) * float(x.std(ddof=1)) / math.sqrt(n)
        return MetricValue(mean, mean - half, mean + half, n, "normal")
    rng = np.random.default_rng(d["seed"])
    B = d["n_bootstrap"]
    means = np.empty(B)
    step = max(1, 2_000_000 // n)                      # resamples per block: bounded memory
    for start in range(0, B, step):
        b = min(step, B - start)
        means[start:start + b] = x[rng.integers(0, n, size=(b, n), dtype=np.int32)].mean(axis=1)
    lo, hi = _percentiles(means, d["confidence"])
    return MetricValue(mean, lo, hi, n, "bootstrap")


def _class_counts(s: ScoreArrays, mask: np.ndarray, name: str) -> tuple[int, int, int, int]:
    c = s.class_index(name)
    m = mask & s.counted
    y, p = s.label_index[m], s.pred_index[m]
    tp = int(((y == c) & (p == c)).sum())
    fp = int(((y != c) & (p == c)).sum())
    fn = int(((y == c) & (p != c)).sum())
    return tp, fp, fn, int(m.sum()) - tp - fp - fn


def recall(s: ScoreArrays, mask: np.ndarray, params: dict, d: dict) -> MetricValue:
    tp, _, fn, _ = _class_counts(s, mask, params["class"])
    return _proportion(tp, tp + fn, d["confidence"])


def precision(s: ScoreArrays, mask: np.ndarray, params: dict, d: dict) -> MetricValue:
    tp, fp, _, _ = _class_counts(s, mask, params["class"])
    return _proportion(tp, tp + fp, d["confidence"])


def _f1_of(tp, fp, fn):
    tp, fp, fn = (np.asarray(v, dtype=float) for v in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


def f1(s: ScoreArrays, mask: np.ndarray, params: dict, d: dict) -> MetricValue:
    tp, fp, fn, tn = _class_counts(s, mask, params["class"])
    support = tp + fp + fn                             # images that are of the class or predicted as it
    value = float(_f1_of(tp, fp, fn))
    n = tp + fp + fn + tn
    if support == 0:
        return MetricValue(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(d["seed"])
    draws = rng.multinomial(n, np.array([tp, fp, fn, tn], dtype=float) / n, size=d["n_bootstrap"])
    lo, hi = _percentiles(_f1_of(draws[:, 0], draws[:, 1], draws[:, 2]), d["confidence"])
    return MetricValue(value, lo, hi, support, "bootstrap")


def ece(s: ScoreArrays, mask: np.ndarray, params: dict, d: dict) -> MetricValue:
    """Expected calibration error: sum over equal-width confidence bins of |accuracy - mean confidence| weighted
    by the bin's share of images."""
    m = mask & s.counted
    n = int(m.sum())
    if n == 0:
        return MetricValue(math.nan, math.nan, math.nan, 0)
    bins = int(params.get("bins", d["ece_bins"]))
    conf = s.confidence[m]
    right = s.right[m]
    b = np.clip((conf * bins).astype(np.int64), 0, bins - 1)
    cell = b * 2 + right.astype(np.int64)
    counts = np.bincount(cell, minlength=2 * bins).astype(float)
    conf_sum = np.bincount(cell, weights=conf, minlength=2 * bins)
    right_per_bin = counts.reshape(bins, 2)[:, 1]
    value = float(np.abs(right_per_bin - conf_sum.reshape(bins, 2).sum(axis=1)).sum() / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_mean = np.where(counts > 0, conf_sum / np.where(counts > 0, counts, 1), 0.0)
    rng = np.random.default_rng(d["seed"])
    draws = rng.multinomial(n, counts / n, size=d["n_bootstrap"]).astype(float)      # (B, 2*bins)
    per_bin = draws.reshape(-1, bins, 2)
    conf_b = (draws * cell_mean).reshape(-1, bins, 2).sum(axis=2)
    samples = np.abs(per_bin[:, :, 1] - conf_b).sum(axis=1) / n
    lo, hi = _percentiles(samples, d["confidence"])
    return MetricValue(value, lo, hi, n, "bootstrap")


def finding_count(data, mask: np.ndarray, params: dict, d: dict, whole: bool) -> MetricValue:
    """Findings of a check (or family) on the slice's images; dataset-level findings count in the slice 'all'."""
    counts, dataset_level = data.finding_counts([params["check"]])
    value = int(counts[mask].sum()) + (dataset_level if whole else 0)
    return MetricValue(float(value), float(value), float(value), int(mask.sum()), "exact count")


def finding_share(data, mask: np.ndarray, params: dict, d: dict, whole: bool) -> MetricValue:
    counts, _ = data.finding_counts([params["check"]])
    return _proportion(int((counts[mask] > 0).sum()), int(mask.sum()), d["confidence"])


MODEL_METRICS = {"accuracy": accuracy, "top_k_accuracy": top_k_accuracy, "mean_loss": mean_loss, "recall": recall,
                 "precision": precision, "f1": f1, "ece": ece}
DATA_METRICS = {"finding_count": finding_count, "finding_share": finding_share}
