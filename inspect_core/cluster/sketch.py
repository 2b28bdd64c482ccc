"""Mergeable sketches for the robust statistics of the property checks (median, MAD) on a dataset split in parts.

``QuantileSketch`` is a relative-error log-bin histogram (the DDSketch construction) with the exact count, minimum
and maximum: a value x > 0 falls in bin i = ceil(log_gamma x), gamma = (1 + a) / (1 - a), and is represented by
2 gamma^i / (gamma + 1), which is within a*|x| of every value of that bin (negative values mirrored; |x| below
``zero_below`` counted as 0). Bins add, so ``merge`` is exact: sketching the parts and merging gives the very
sketch of the whole, in any order. Memory: one (index, count) pair per occupied bin, at most
ln(max/min) / (2a) of them per sign (a = 1e-4: about 23,000 bins for values spread over two decades).

Error bounds (``a`` = ``rel_error``; numpy's linear interpolation between order statistics, as ``np.median``):

- ``quantile(q)`` is within a * max(|x_lo|, |x_hi|) of ``np.quantile(values, q)``, x_lo / x_hi the two order
  statistics it interpolates between (each is estimated within a times its size; clamped to the exact min/max);
- ``mad()`` (the median of |x - median|, the sketch's median as the centre) is within a * (2|median| + MAD) of
  numpy's, plus 2 * ``zero_below``: each |x - m| moves by at most a(|x| + |m|) and |x| <= |m| + MAD on the side
  that decides the median rank.

``property_sketches(images)`` sketches one part of a scanned images table, with the property check's own values
(``checks.property.ROBUST_COLUMNS``: the same decoded-rows filter and log scales); ``column_stats_from_sketches``
turns the parts' sketches into the ``CheckContext.column_stats`` the property check takes instead of computing
them itself.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

REL_ERROR = 1e-4            # relative accuracy of every value the sketch returns
ZERO_BELOW = 1e-12          # |x| under this is counted as 0
MAD_TO_SD = 1.4826          # robust sd = 1.4826 x MAD (as checks.property.robust_center_scale)
# the per-file columns ``checks.property.property_frame`` reads (aspect_ratio it derives when absent): what a
# statistics task reads of a partition
FRAME_COLUMNS = ("image_id", "error_kind", "brightness", "contrast", "blur_laplacian_var", "entropy_bits", "width_px",
                 "height_px", "gray_mode", "colourfulness", "mode")


def _add_bins(keys_a, counts_a, keys_b, counts_b):
    keys = np.concatenate([keys_a, keys_b])
    counts = np.concatenate([counts_a, counts_b])
    if len(keys) == 0:
        return keys.astype(np.int64), counts.astype(np.int64)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq.astype(np.int64), np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


class QuantileSketch:
    """A mergeable quantile sketch with relative error ``rel_error`` (see the module docstring for its bounds).

    ``update(values)`` adds finite values (NaN and inf are left out and counted in ``n_skipped``); ``merge(other)``
    adds another sketch of the same accuracy; ``quantile(q)``, ``median()``, ``mad()``."""

    def __init__(self, rel_error: float = REL_ERROR, zero_below: float = ZERO_BELOW):
        if not 0.0 < rel_error < 1.0:
            raise ValueError(f"rel_error {rel_error} is not in (0, 1)")
        self.rel_error = float(rel_error)
        self.zero_below = float(zero_below)
        self.gamma = (1.0 + rel_error) / (1.0 - rel_error)
        self._log_gamma = math.log(self.gamma)
        empty = np.zeros(0, np.int64)
        self.pos_keys, self.pos_counts = empty, empty
        self.neg_keys, self.neg_counts = empty, empty
        self.n_zero = 0
        self.n = 0
        self.n_skipped = 0
        self.min = math.inf
        self.max = -math.inf

    def _index(self, magnitude: np.ndarray) -> np.ndarray:
        return np.ceil(np.log(magnitude) / self._log_gamma).astype(np.int64)

    def update(self, values) -> QuantileSketch:
        v = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(v)
        self.n_skipped += int((~finite).sum())
        v = v[finite]
        if len(v) == 0:
            return self
        self.n += len(v)
        self.min, self.max = min(self.min, float(v.min())), max(self.max, float(v.max()))
        zero = np.abs(v) < self.zero_below
        self.n_zero += int(zero.sum())
        for sign, attr in ((1.0, "pos"), (-1.0, "neg")):
            part = v[~zero & (v * sign > 0)] * sign
            if len(part):
                keys, counts = np.unique(self._index(part), return_counts=True)
                merged = _add_bins(getattr(self, f"{attr}_keys"), getattr(self, f"{attr}_counts"), keys, counts)
                setattr(self, f"{attr}_keys", merged[0])
                setattr(self, f"{attr}_counts", merged[1])
        return self

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        if (other.rel_error, other.zero_below) != (self.rel_error, self.zero_below):
            raise ValueError(f"cannot merge a sketch of relative error {other.rel_error} into one of {self.rel_error}")
        self.pos_keys, self.pos_counts = _add_bins(self.pos_keys, self.pos_counts, other.pos_keys, other.pos_counts)
        self.neg_keys, self.neg_counts = _add_bins(self.neg_keys, self.neg_counts, other.neg_keys, other.neg_counts)
        self.n_zero += other.n_zero
        self.n += other.n
        self.n_skipped += other.n_skipped
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        return self

    def to_dict(self) -> dict:
        """A JSON-ready copy (``from_dict`` reads it back): a partition keeps its sketch in its Parquet metadata."""
        out = {k: getattr(self, k) for k in ("rel_error", "zero_below", "n_zero", "n", "n_skipped", "min", "max")}
        for k in ("pos_keys", "pos_counts", "neg_keys", "neg_counts"):
            out[k] = getattr(self, k).tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> QuantileSketch:
        sk = cls(d["rel_error"], d["zero_below"])
        for k in ("n_zero", "n", "n_skipped"):
            setattr(sk, k, int(d[k]))
        sk.min, sk.max = float(d["min"]), float(d["max"])
        for k in ("pos_keys", "pos_counts", "neg_keys", "neg_counts"):
            setattr(sk, k, np.asarray(d[k], dtype=np.int64))
        return sk

    @property
    def n_bins(self) -> int:
        return len(self.pos_keys) + len(self.neg_keys) + (1 if self.n_zero else 0)

    def _values_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Every bin's representative value (ascending, clamped to the exact min/max) and count."""
        scale = 2.0 / (self.gamma + 1.0)
        neg = -scale * np.power(self.gamma, self.neg_keys[::-1].astype(np.float64))
        pos = scale * np.power(self.gamma, self.pos_keys.astype(np.float64))
        values = np.concatenate([neg, [0.0] if self.n_zero else [], pos])
        counts = np.concatenate([self.neg_counts[::-1], [self.n_zero] if self.n_zero else [], self.pos_counts])
        return np.clip(values, self.min, self.max), counts.astype(np.int64)

    @staticmethod
    def _interpolated(values: np.ndarray, counts: np.ndarray, q: float) -> float:
        """numpy's linear-interpolation quantile of the multiset ``values`` (sorted) with ``counts``."""
        n = int(counts.sum())
        h = (n - 1) * q
        lo = int(math.floor(h))
        ends = np.cumsum(counts)
        x_lo = values[np.searchsorted(ends, lo, side="right")]
        x_hi = values[np.searchsorted(ends, min(lo + 1, n - 1), side="right")]
        return float(x_lo + (h - lo) * (x_hi - x_lo))

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1; NaN for an empty sketch); q = 0 and 1 are the exact min and max."""
        if self.n == 0:
            return float("nan")
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is not in [0, 1]")
        if q == 0.0:
            return self.min
        if q == 1.0:
            return self.max
        values, counts = self._values_counts()
        return self._interpolated(values, counts, q)

    def median(self) -> float:
        return self.quantile(0.5)

    def mad(self, center: float | None = None) -> float:
        """Median absolute deviation from ``center`` (default: the sketch's median); not scaled to a sd."""
        if self.n == 0:
            return float("nan")
        center = self.median() if center is None else float(center)
        values, counts = self._values_counts()
        dev = np.abs(values - center)
        order = np.argsort(dev, kind="stable")
        return self._interpolated(dev[order], counts[order], 0.5)

    def error_bound(self, what: str = "median") -> float:
        """The bound of the module docstring on the error of ``median()`` (``what="median"``) or ``mad()`` ("mad"),
        from the sketch's own estimates (each true value is at most 1 / (1 - a) times its estimate)."""
        if self.n == 0:
            return float("nan")
        values, counts = self._values_counts()
        ends = np.cumsum(counts)
        lo = (self.n - 1) // 2
        m = max(abs(values[np.searchsorted(ends, k, side="right")]) for k in (lo, min(lo + 1, self.n - 1)))
        a = self.rel_error / (1.0 - self.rel_error)
        if what == "median":
            return a * m + self.zero_below
        return a * (2.0 * m + self.mad()) + 2.0 * self.zero_below


@dataclass
class PropertySketches:
    """One part's (or, merged, the dataset's) sketches of the property check's statistics: a QuantileSketch per
    ``checks.property.ROBUST_COLUMNS`` name, and the grayscale check's counts of decoded and grey images."""
    sketches: dict = field(default_factory=dict)
    n_decoded: int = 0
    n_gray: int = 0

    def merge(self, other: PropertySketches) -> PropertySketches:
        for name, sk in other.sketches.items():
            if name in self.sketches:
                self.sketches[name].merge(sk)
            else:
                self.sketches[name] = QuantileSketch(sk.rel_error, sk.zero_below).merge(sk)
        self.n_decoded += other.n_decoded
        self.n_gray += other.n_gray
        return self

    @classmethod
    def merged(cls, parts: Iterable[PropertySketches]) -> PropertySketches:
        """The sum of many parts in one pass per statistic (``merge`` one by one costs the size of the total each
        time: quadratic over 10^5 partitions)."""
        parts = list(parts)
        out = cls(n_decoded=sum(p.n_decoded for p in parts), n_gray=sum(p.n_gray for p in parts))
        for name in dict.fromkeys(k for p in parts for k in p.sketches):
            these = [p.sketches[name] for p in parts if name in p.sketches]
            total = QuantileSketch(these[0].rel_error, these[0].zero_below)
            for sk in these:
                if (sk.rel_error, sk.zero_below) != (total.rel_error, total.zero_below):
                    raise ValueError(f"cannot merge a sketch of relative error {sk.rel_error} into one of "
                                     f"{total.rel_error}")
            for sign in ("pos", "neg"):
                keys = np.concatenate([getattr(sk, f"{sign}_keys") for sk in these])
                counts = np.concatenate([getattr(sk, f"{sign}_counts") for sk in these])
                merged = _add_bins(keys, counts, np.zeros(0, np.int64), np.zeros(0, np.int64))
                setattr(total, f"{sign}_keys", merged[0]), setattr(total, f"{sign}_counts", merged[1])
            total.n_zero, total.n, total.n_skipped = (sum(getattr(sk, k) for sk in these)
                                                      for k in ("n_zero", "n", "n_skipped"))
            total.min, total.max = min(sk.min for sk in these), max(sk.max for sk in these)
            out.sketches[name] = total
        return out

    def to_json(self) -> str:
        return json.dumps({"sketches": {k: v.to_dict() for k, v in self.sketches.items()},
                           "n_decoded": self.n_decoded, "n_gray": self.n_gray}, allow_nan=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PropertySketches:
        d = json.loads(text)
        return cls({k: QuantileSketch.from_dict(v) for k, v in d["sketches"].items()}, int(d["n_decoded"]),
                   int(d["n_gray"]))


def property_sketches(images, rel_error: float = REL_ERROR) -> PropertySketches:
    """Sketch one part of a scanned images table (rows of ``ScanResult.images``, or the scan's per-file rows with
    width_px/height_px) with exactly the values the property check reads (``property.robust_values``)."""
    from ..checks.property import ROBUST_COLUMNS, gray_rows, property_frame, robust_values
    img = property_frame(images)
    out = PropertySketches()
    for name, (column, log) in ROBUST_COLUMNS.items():
        _, v, ok = robust_values(img, column, log)
        out.sketches[name] = QuantileSketch(rel_error).update(v[ok])
    decoded, gray = gray_rows(img)
    out.n_decoded, out.n_gray = int(decoded.sum()), int(gray.sum())
    return out


def column_stats_from_sketches(sketches: PropertySketches | Iterable[PropertySketches]) -> dict:
    """The property check's statistics of the whole dataset from its parts' sketches (``property_sketches`` of each
    part; merged here, in any order): ``{name: {"median", "mad", "robust_sd", "n", "median_error_bound",
    "mad_error_bound"}}`` per ``checks.property.ROBUST_COLUMNS`` name, and ``"grayscale": {"n_decoded", "n_gray"}``.

    Pass it as ``CheckContext(..., column_stats=...)``: the property check then cuts each part with these instead
    of the part's own medians and MADs, and its findings on all the parts together are those of the whole table
    (up to values within the stated error of a cut: ``error_bound``). The parts are not changed."""
    parts = [sketches] if isinstance(sketches, PropertySketches) else list(sketches)
    total = PropertySketches()
    for part in parts:
        total.merge(part)
    stats: dict = {}
    for name, sk in total.sketches.items():
        med = sk.median()
        mad = sk.mad(med)
        stats[name] = {"median": med, "mad": mad, "robust_sd": mad * MAD_TO_SD, "n": int(sk.n),
                       "median_error_bound": sk.error_bound("median") if sk.n else float("nan"),
                       "mad_error_bound": sk.error_bound("mad") if sk.n else float("nan")}
    stats["grayscale"] = {"n_decoded": total.n_decoded, "n_gray": total.n_gray}
    return stats
