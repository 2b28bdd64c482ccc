"""The global steps of a cluster scan (``scan(..., cluster=...)``), wired into the checks: what runs on Ray after
the read, and how the checks take its results.

- duplicate pairs: ``ClusterSteps`` is the checks' ``CheckContext.pair_source``: exact pairs from the hash-partition
  shuffle (``dups.exact_groups``, one task per hash partition), near pairs up to ``dups.index_threshold()`` images
  from pHash banding at the rule's own cut (``dups.near_pairs_banded``, one task per band), above from the sharded
  inverted-file index (``dups.near_pairs_sharded``): the local path's pairs either way. The evidence, groups and
  findings are then made on the driver by the same code as a local scan (checks/context.py).
- robust statistics: the property check's medians and MADs (``CheckContext.column_stats``) from the images split in
  ``STEP_DEFAULTS["stat_parts"]`` parts, each a task: a mergeable sketch per part (``sketch.property_sketches``),
  merged here; the sketch's median (and then MAD) brackets the exact value, and a second task per part sends back
  the count below the bracket and the distinct values inside it with their counts, from which the exact order
  statistics follow. So the statistics are numpy's own (``np.median`` of the values, of ``|v - median|``),
  bit for bit, and the findings are the local scan's; what travels is a sketch (a few thousand bins) and the
  values inside a bracket 2e-4 wide per part, not the column.
Each step's time and where it ran go into the scan's summary (``summary()``).
"""
from __future__ import annotations

import time

import numpy as np

from .. import neardup
from . import dups
from .engine import Session

# Thresholds as data: parts of the images table for the statistics tasks; how many times a bracket that missed
# (it cannot by the sketch's bound; rounding) is widened tenfold before every value in range is fetched.
STEP_DEFAULTS = {"stat_parts": 16, "bracket_widen_tries": 3}


# ----------------------------------------------------------------------------- exact robust statistics

def _stat_values(part, name: str, center: float | None) -> np.ndarray:
    """The values a statistic is of, in one part (a ``property_frame``): the property check's (``robust_values``), or
    their distance to ``center``."""
    from ..checks.property import ROBUST_COLUMNS, robust_values
    column, log = ROBUST_COLUMNS[name]
    _, v, ok = robust_values(part, column, log)
    v = v[ok]
    return v if center is None else np.abs(v - center)


def part_sketch(part):
    """Task: one part's sketches (``sketch.property_sketches``) of its property frame."""
    from .sketch import property_sketches
    return property_sketches(part)


def part_bracket(part, brackets: dict) -> dict:
    """Task: per statistic name, (values below lo, distinct values in [lo, hi], their counts) of one part, for
    ``brackets`` = {name: (lo, hi, center)} (center None: the values; else their distance to it)."""
    from ..checks.property import property_frame
    part = property_frame(part)
    out = {}
    for name, (lo, hi, center) in brackets.items():
        v = _stat_values(part, name, center)
        inside = v[(v >= lo) & (v <= hi)]
        uniq, counts = np.unique(inside, return_counts=True)
        out[name] = (int((v < lo).sum()), uniq, counts)
    return out


def _order_stats(found: list[tuple[int, np.ndarray, np.ndarray]], ranks: list[int]) -> list[float] | None:
    """The values at ``ranks`` (0-based) of the whole column from the parts' brackets, None when one falls outside."""
    below = sum(f[0] for f in found)
    uniq, inverse = np.unique(np.concatenate([f[1] for f in found] + [np.zeros(0)]), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([f[2] for f in found] + [np.zeros(0)]),
                         minlength=len(uniq)).astype(np.int64)
    ends = below + np.cumsum(counts)                  # ranks below ends[k] are at uniq[k] or lower
    out = []
    for r in ranks:
        k = int(np.searchsorted(ends, r, side="right"))
        if r < below or k >= len(uniq):
            return None
        out.append(float(uniq[k]))
    return out


def _median_of(found, n: int) -> float | None:
    """np.median's value (the middle order statistic, or the mean of the two middle ones) from the brackets."""
    ranks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    vals = _order_stats(found, ranks)
    return None if vals is None else float(np.mean(np.asarray(vals, np.float64)))


def exact_column_stats(images, n_parts: int | None = None, cluster=None) -> dict:
    """``CheckContext.column_stats`` for ``images`` (the scanned images table), equal bit for bit to what the property
    check computes itself (``robust_center_scale``), made by tasks on ``n_parts`` parts of the table (on Ray when
    ``cluster`` is a connected ``ray`` module, else in this process): sketches, then two bracket passes (median, MAD).
    """
    from ..checks.property import ROBUST_COLUMNS
    from .sketch import MAD_TO_SD, PropertySketches
    cols = ["image_id", "error_kind", "brightness", "contrast", "blur_laplacian_var", "entropy_bits", "width_px",
            "height_px", "gray_mode", "colourfulness", "mode"] + (["aspect_ratio"] if "aspect_ratio" in images else [])
    n_parts = max(1, min(int(n_parts or STEP_DEFAULTS["stat_parts"]), len(images) or 1))
    parts = [images.iloc[p][cols] for p in np.array_split(np.arange(len(images)), n_parts)]
    if cluster is not None:
        refs = [cluster.put(p) for p in parts]
        sketch_task, bracket_task = cluster.remote(part_sketch), cluster.remote(part_bracket)

        def run_sketches():
            return cluster.get([sketch_task.remote(r) for r in refs])

        def run_brackets(brackets):
            return cluster.get([bracket_task.remote(r, brackets) for r in refs])
    else:
        def run_sketches():
            return [part_sketch(p) for p in parts]

        def run_brackets(brackets):
            return [part_bracket(p, brackets) for p in parts]
    total = PropertySketches()
    for sk in run_sketches():
        total.merge(sk)
    stats = {"grayscale": {"n_decoded": total.n_decoded, "n_gray": total.n_gray}}
    centers: dict = {}
    for pass_no in (0, 1):                       # 0: the medians, 1: the MADs about them
        todo = {name: 1.0 for name in ROBUST_COLUMNS if total.sketches[name].n}
        tries = int(STEP_DEFAULTS["bracket_widen_tries"])
        for t in range(tries + 1):
            if not todo:
                break
            brackets = {}
            for name, widen in todo.items():
                sk = total.sketches[name]
                guess = sk.median() if pass_no == 0 else sk.mad(centers[name])
                err = sk.error_bound("median" if pass_no == 0 else "mad")
                half = (2.0 * err + 1e-12) * widen if np.isfinite(widen) else np.inf
                brackets[name] = (guess - half, guess + half, None if pass_no == 0 else centers[name])
            found = run_brackets(brackets)
            for name in list(todo):
                value = _median_of([f[name] for f in found], total.sketches[name].n)
                if value is not None:
                    if pass_no == 0:
                        centers[name] = value
                    else:
                        stats[name] = {"median": centers[name], "mad": value, "robust_sd": value * MAD_TO_SD,
                                       "n": int(total.sketches[name].n)}
                    del todo[name]
                else:               # wider; the last try takes every value (a bracket of infinite width)
                    todo[name] = np.inf if t >= tries - 1 else todo[name] * 10.0
    for name in ROBUST_COLUMNS:
        stats.setdefault(name, {"median": float("nan"), "mad": float("nan"), "robust_sd": float("nan"), "n": 0})
    return stats


# ----------------------------------------------------------------------------- the scan's steps

class ClusterSteps(Session):
    """A cluster scan's Ray session (``engine.Session``: the read uses it too) and its global steps: the checks'
    ``pair_source`` and ``column_stats``. ``summary()``: where each step ran and its time, for the scan's summary."""

    def __init__(self, spec: str):
        super().__init__(spec)
        self.times_s: dict = {}
        self.n_bands = 0
        self.near_method = "none: no near-duplicate step ran"

    def _timed(self, step: str, fn, *args, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            self.times_s[step] = round(self.times_s.get(step, 0.0) + time.perf_counter() - t0, 3)

    def exact_pairs(self, keys: list) -> tuple[np.ndarray, np.ndarray]:
        groups = self._timed("exact_duplicates", dups.exact_groups, keys, cluster=self.ray)
        return dups.exact_pairs(groups)

    def near_pairs(self, desc, phash, subset, cuts):
        """The local path's near pairs: up to ``dups.index_threshold()`` compared images (the local brute force's
        range) by pHash banding at the rule's cut (the same pairs), above by the sharded inverted-file index
        (``dups.near_pairs_sharded``: the local index's pairs); ``near_method`` says which ran."""
        valid = neardup.UnitRows(desc).valid
        n = int((valid if subset is None else valid & np.asarray(subset, dtype=bool)).sum())
        if n > dups.index_threshold():
            stats: dict = {}
            out = self._timed("near_duplicates", dups.near_pairs_sharded, desc, phash, cuts, subset=subset,
                              cluster=self.ray, stats=stats)
            self.near_method = (f"on Ray: sharded inverted-file index ({n} images over "
                                f"{dups.index_threshold()}), {stats.get('cells', 0)} cells in "
                                f"{dups.SHARD_DEFAULTS['cell_parts']} partitions, {stats.get('cells_split', 0)} split "
                                "again, pHash block candidates; the local index's pairs")
            return out
        self.n_bands = len(dups.bands(dups.rule_hamming_cut(cuts)))
        self.near_method = (f"on Ray: pHash banding, {self.n_bands} bands (the rule's largest pHash cut + 1), "
                            "candidates confirmed by the rule")
        return self._timed("near_duplicates", dups.near_pairs_banded, desc, phash, cuts, subset=subset,
                           cluster=self.ray)

    def column_stats(self, images) -> dict:
        return self._timed("robust_statistics", exact_column_stats, images, cluster=self.ray)

    def summary(self) -> dict:
        return {"global_steps": {
            "exact_duplicates": f"on Ray: hash shuffle of the content and pixel hashes, "
                                f"{dups.DUP_DEFAULTS['hash_partitions']} partitions",
            "near_duplicates": self.near_method,
            "robust_statistics": f"on Ray: sketches of {STEP_DEFAULTS['stat_parts']} parts, exact median and MAD "
                                 "from their brackets",
            "times_s": dict(self.times_s)}}
