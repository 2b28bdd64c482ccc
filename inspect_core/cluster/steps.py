"""The global steps of a cluster scan (``scan(..., cluster=...)``), wired into the checks: what runs on Ray after
the read, and how the checks take its results.

- duplicate pairs: ``ClusterSteps`` is the checks' ``CheckContext.pair_source``: exact pairs from the hash-partition
  shuffle (``dups.exact_groups``, one task per hash partition), near pairs up to ``dups.index_threshold()`` images
  from pHash banding at the rule's own cut (``dups.near_pairs_banded``, one task per band), above from the sharded
  inverted-file index (``dups.near_pairs_sharded``): the local path's pairs either way. The evidence, groups and
  findings are then made on the driver by the same code as a local scan (checks/context.py).
- robust statistics: the property check's medians and MADs (``CheckContext.column_stats``) from mergeable sketches
  (``sketch.property_sketches``) made by the read's own tasks, one per partition (engine.read_files keeps each beside
  its partition), merged here; the sketch's median (and then MAD) brackets the exact value, and a task per group of
  partitions reads their values from the partition files and sends back the count below the bracket and the
  distinct values inside it with their counts, from which the exact order statistics follow. So the statistics
  are numpy's own (``np.median`` of the values, of ``|v - median|``), bit for bit, and the findings are the local
  scan's; what travels is a sketch and the values inside a bracket 2e-4 wide, never the column.
- rows in no partition file (the file cache's hits, a partition that could not be written, a cluster whose workers
  cannot read the workspace): the driver sends their columns, as before (``Placed.rest``).
Each step's time and where it ran go into the scan's summary (``summary()``).
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .. import neardup
from . import dups
from .engine import Session, ids_digest

log = logging.getLogger(__name__)

# Thresholds as data: how many tasks (groups of partitions, or parts of the rows the driver sends) a step uses, at
# least and at most how many rows one task of partitions reads (below task_rows_min a task costs more than its
# work: 20,000 images are one task); how many times a bracket that missed (it cannot by the sketch's bound;
# rounding) is widened tenfold before every value in range is fetched.
STEP_DEFAULTS = {"stat_parts": 16, "task_rows_min": 50_000, "task_rows_max": 2_000_000, "bracket_widen_tries": 3}
# the columns the exact-duplicate keys are made of (``exact_keys``)
HASH_COLUMNS = ("content_hash", "file_size_bytes", "pixel_hash", "error_kind")
EXACT_KEYS = ("content_hash", "pixel_hash")


class PartsNotVisible(RuntimeError):
    """A worker cannot read a partition file (the workspace is not on a file system it mounts)."""


# ----------------------------------------------------------------------------- where the rows are

@dataclass
class Placed:
    """The scanned table's rows as the steps' tasks find them: ``parts`` = one (partition file, its rows of the
    table: a slice when consecutive, else their positions) per file the read left, ``sketch`` their merged property
    sketches (``sketch.PropertySketches``; None without parts); ``rest`` = the positions of the rows in no
    partition file (the driver sends their columns)."""
    parts: list
    rest: np.ndarray
    sketch: object = None

    @property
    def n_from_parts(self) -> int:
        return sum(_n_rows(rows) for _, rows in self.parts)


def _n_rows(rows) -> int:
    return rows.stop - rows.start if isinstance(rows, slice) else len(rows)


def _positions(rows) -> np.ndarray:
    return np.arange(rows.start, rows.stop, dtype=np.int64) if isinstance(rows, slice) else np.asarray(rows, np.int64)


def place(images, read_parts) -> Placed:
    """Where each row of ``images`` (the scanned table) is: in which partition of ``read_parts`` (``engine.ReadParts``
    of this scan's cluster read; None: nothing was read on the cluster), at which row. A cold scan's rows are the
    read's, in order (slices; checked by ``engine.ids_digest``); after a warm one the partitions' image_ids are
    read back from their files and found in the table (unique ids; else every row is ``rest``)."""
    n = len(images)
    everything = Placed([], np.arange(n, dtype=np.int64))
    if read_parts is None or not any(p is not None for p in read_parts.paths):
        return everything
    written = [(p, k) for p, k in zip(read_parts.paths, read_parts.n_rows) if p is not None]
    if sum(read_parts.n_rows) == n and ids_digest(images["image_id"].to_numpy(dtype=object)) == read_parts.ids_digest:
        starts = np.cumsum([0, *read_parts.n_rows])
        parts = [(p, slice(int(s0), int(s0 + k))) for p, k, s0 in zip(read_parts.paths, read_parts.n_rows, starts)
                 if p is not None]
    else:
        index = pd.Index(images["image_id"])
        try:
            ids = [pq.read_table(p, columns=["image_id"]).column(0).to_pylist() for p, _ in written]
        except OSError as exc:
            log.warning("cannot read the image ids of the partitions back (%s); sending the columns instead", exc)
            return everything
        if not index.is_unique or any(len(i) != k for i, (_, k) in zip(ids, written)):
            return everything
        pos = index.get_indexer(pd.Index([i for part in ids for i in part]))
        if (pos < 0).any():
            return everything
        starts = np.cumsum([0, *[k for _, k in written]])
        parts = [(p, pos[s0:s0 + k]) for (p, k), s0 in zip(written, starts)]
    covered = np.zeros(n, bool)
    for _, rows in parts:
        covered[rows] = True
    return Placed(parts, np.nonzero(~covered)[0], read_parts.sketch)


def read_part(path: str, columns) -> pd.DataFrame:
    """Columns of one partition file, read on the worker; PartsNotVisible when it cannot open it."""
    try:
        return pq.read_table(path, columns=list(columns)).to_pandas()
    except OSError as exc:
        raise PartsNotVisible(f"partition {path} is not readable on Ray node {socket.gethostname()} ({exc})") from None


def _groups(items: list, n_rows: list[int], n_groups: int | None = None) -> list[list]:
    """``items`` in consecutive groups: ``STEP_DEFAULTS["stat_parts"]`` of them, fewer when a group would read under
    ``task_rows_min`` rows, more when it would read over ``task_rows_max``."""
    if not items:
        return []
    total = sum(n_rows)
    n = n_groups or max(min(int(STEP_DEFAULTS["stat_parts"]), total // int(STEP_DEFAULTS["task_rows_min"])),
                        -(-total // int(STEP_DEFAULTS["task_rows_max"])), 1)
    cuts = np.array_split(np.arange(len(items)), min(n, len(items)))
    return [[items[k] for k in c.tolist()] for c in cuts]


def _not_visible(exc: BaseException) -> bool:
    return isinstance(exc, PartsNotVisible) or isinstance(getattr(exc, "cause", None), PartsNotVisible)


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


def paths_bracket(paths: list[str], brackets: dict) -> dict:
    """Task: ``part_bracket`` of the rows of the partition files ``paths``, read here (on the worker)."""
    from .sketch import FRAME_COLUMNS
    return part_bracket(pd.concat([read_part(p, FRAME_COLUMNS) for p in paths], ignore_index=True), brackets)


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


def exact_column_stats(images, n_parts: int | None = None, cluster=None, placed: Placed | None = None) -> dict:
    """``CheckContext.column_stats`` for ``images`` (the scanned images table), equal bit for bit to what the property
    check computes itself (``robust_center_scale``), made by tasks (on Ray when ``cluster`` is a connected ``ray``
    module, else in this process): sketches, then two bracket passes (median, MAD). ``placed`` (``place``): the
    rows in partition files bring their sketches and are read by the bracket tasks from the files; the others
    (all of them without ``placed``) are sent from ``images`` in ``n_parts`` parts."""
    from ..checks.property import ROBUST_COLUMNS
    from .sketch import FRAME_COLUMNS, MAD_TO_SD, PropertySketches
    placed = placed or Placed([], np.arange(len(images), dtype=np.int64))
    cols = list(FRAME_COLUMNS) + (["aspect_ratio"] if "aspect_ratio" in images else [])
    rest = placed.rest
    default = min(int(STEP_DEFAULTS["stat_parts"]), len(rest) // int(STEP_DEFAULTS["task_rows_min"]))
    n_parts = max(1, min(int(n_parts or default or 1), len(rest) or 1))
    parts = ([images.iloc[p][cols] for p in np.array_split(rest, n_parts)]
             if len(rest) or not placed.parts else [])
    path_groups = _groups([p[0] for p in placed.parts], [_n_rows(p[1]) for p in placed.parts])
    if cluster is not None:
        refs = [cluster.put(p) for p in parts]
        sketch_task, bracket_task = cluster.remote(part_sketch), cluster.remote(part_bracket)
        paths_task = cluster.remote(paths_bracket)

        def run_sketches():
            return cluster.get([sketch_task.remote(r) for r in refs])

        def run_brackets(brackets):
            return cluster.get([bracket_task.remote(r, brackets) for r in refs]
                               + [paths_task.remote(g, brackets) for g in path_groups])
    else:
        def run_sketches():
            return [part_sketch(p) for p in parts]

        def run_brackets(brackets):
            return [part_bracket(p, brackets) for p in parts] + [paths_bracket(g, brackets) for g in path_groups]
    total = PropertySketches()
    for sk in ([placed.sketch] if placed.parts else []) + run_sketches():
        total.merge(sk)
    stats = {"grayscale": {"n_decoded": total.n_decoded, "n_gray": total.n_gray}}
    centers: dict = {}
    for pass_no in (0, 1):                       # 0: the medians, 1: the MADs about them
        todo = {name: 1.0 for name in ROBUST_COLUMNS if name in total.sketches and total.sketches[name].n}
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


# ----------------------------------------------------------------------------- exact duplicates

def exact_keys(frame) -> dict:
    """The exact-duplicate keys of some rows, as the checks take them (checks/context.py ``_pair_table``): the
    content hash of non-empty files, the pixel hash of decoded images (else missing: never grouped)."""
    return {"content_hash": frame["content_hash"].where(frame["file_size_bytes"].gt(0)),
            "pixel_hash": frame["pixel_hash"].where(frame["error_kind"].isna())}


def exact_map(paths: list[str], rows_of_paths: list, frame, frame_rows, n_partitions: int):
    """Task, the shuffle's map side: the keys of the rows of the partition files ``paths`` (read here; their rows of
    the scanned table ``rows_of_paths``) and of ``frame`` (rows the driver sent, at ``frame_rows``), each with its
    row, split by hash partition (``dups.hash_partition``): ``n_partitions`` items of {key column: (rows, keys)}
    (the item itself when ``n_partitions`` is 1, as Ray's ``num_returns`` wants)."""
    pieces = [(read_part(p, HASH_COLUMNS), r) for p, r in zip(paths, rows_of_paths)]
    if frame is not None:
        pieces.append((frame, frame_rows))
    out = [{c: ([], []) for c in EXACT_KEYS} for _ in range(n_partitions)]
    for part, rows in pieces:
        rows = _positions(rows)
        for column, keys in exact_keys(part).items():
            keys = np.asarray(keys.tolist(), dtype=object)
            where = dups.hash_partition(keys, n_partitions)
            order = np.argsort(where, kind="stable")
            bounds = np.searchsorted(where[order], np.arange(n_partitions + 1))
            for p in range(n_partitions):
                sel = order[bounds[p]:bounds[p + 1]]
                if len(sel):
                    out[p][column][0].append(rows[sel]), out[p][column][1].append(keys[sel])
    out = [{c: (np.concatenate(r) if r else np.zeros(0, np.int64), np.concatenate(k) if k else np.zeros(0, object))
            for c, (r, k) in d.items()} for d in out]
    return out if n_partitions > 1 else out[0]


def exact_reduce(*pieces) -> dict:
    """Task, the shuffle's reduce side: one hash partition's groups per key column (``dups._groups_of``)."""
    out = {}
    for column in EXACT_KEYS:
        rows = np.concatenate([p[column][0] for p in pieces] + [np.zeros(0, np.int64)])
        keys = np.concatenate([p[column][1] for p in pieces] + [np.zeros(0, object)])
        out[column] = dups._groups_of(rows, keys.tolist()) if len(rows) > 1 else []
    return out


def exact_groups_placed(images, placed: Placed, n_partitions: int | None = None, cluster=None) -> dict:
    """``dups.exact_groups`` of both key columns (``exact_keys``) of ``images``: {column: groups}, by a shuffle whose
    map tasks read the hashes of the rows in partition files from the files (``placed``) and take the others'
    from the driver. On Ray when ``cluster`` is a connected ``ray`` module, else in this process."""
    n_partitions = int(n_partitions or dups.DUP_DEFAULTS["hash_partitions"])
    groups = _groups(placed.parts, [_n_rows(p[1]) for p in placed.parts])
    jobs = [([p[0] for p in g], [p[1] for p in g], None, None) for g in groups]
    rest = placed.rest
    if len(rest):
        n_jobs = min(int(STEP_DEFAULTS["stat_parts"]), len(rest) // int(STEP_DEFAULTS["task_rows_min"]))
        for r in np.array_split(rest, max(1, n_jobs)):
            jobs.append(([], [], images.iloc[r][list(HASH_COLUMNS)].reset_index(drop=True), r))
    if cluster is not None:
        map_task = cluster.remote(exact_map).options(num_returns=n_partitions)
        reduce_task = cluster.remote(exact_reduce)
        refs = [map_task.remote(*job, n_partitions) for job in jobs]
        refs = [r if n_partitions > 1 else [r] for r in refs]
        results = cluster.get([reduce_task.remote(*[r[p] for r in refs]) for p in range(n_partitions)])
    else:
        maps = [exact_map(*job, n_partitions) for job in jobs]
        maps = [m if n_partitions > 1 else [m] for m in maps]
        results = [exact_reduce(*[m[p] for m in maps]) for p in range(n_partitions)]
    out = {}
    for column in EXACT_KEYS:
        found = [g for res in results for g in res[column]]
        found.sort(key=lambda g: int(g[0]))
        out[column] = found
    return out


# ----------------------------------------------------------------------------- the scan's steps

class ClusterSteps(Session):
    """A cluster scan's Ray session (``engine.Session``: the read uses it too) and its global steps: the checks'
    ``pair_source`` and ``column_stats``. ``summary()``: where each step ran and its time, for the scan's summary."""

    def __init__(self, spec: str):
        super().__init__(spec)
        self.times_s: dict = {}
        self.n_bands = 0
        self.near_method = "none: no near-duplicate step ran"
        self.row_stats: dict = {}
        self._images = self._placed = self._exact = None

    def placed(self, images) -> Placed:
        """Where the rows of ``images`` are (``place``), found once per table."""
        if self._images is not images:
            self._images, self._placed, self._exact = images, place(images, self.read_parts), None
        return self._placed

    def _from_parts(self, step: str, fn, images, **kw):
        """``fn(images, placed=..., cluster=ray)``, timed; again with every row sent by the driver when a worker
        cannot read a partition file (a cluster whose nodes do not share the workspace's file system)."""
        try:
            return self._timed(step, fn, images, placed=self.placed(images), cluster=self.ray, **kw)
        except Exception as exc:
            if not _not_visible(exc):
                raise
            log.warning("the Ray workers cannot read the partitions in %s (%s); sending the columns instead",
                        Path(self._placed.parts[0][0]).parent, exc)
            self._placed = Placed([], np.arange(len(images), dtype=np.int64))
            return self._timed(step, fn, images, placed=self._placed, cluster=self.ray, **kw)

    def _timed(self, step: str, fn, *args, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            self.times_s[step] = round(self.times_s.get(step, 0.0) + time.perf_counter() - t0, 3)

    def exact_pairs(self, keys, column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact pairs of ``column`` (``EXACT_KEYS``) of the table given to ``column_stats``, from the partition
        files (``exact_groups_placed``, both columns at the first call); the shuffle of ``keys`` themselves when no
        column is named or the keys are not of that table."""
        if column not in EXACT_KEYS or self._images is None or len(keys) != len(self._images):
            groups = self._timed("exact_duplicates", dups.exact_groups, list(keys), cluster=self.ray)
            return dups.exact_pairs(groups)
        if self._exact is None:
            self._exact = self._from_parts("exact_duplicates", exact_groups_placed, self._images)
        return dups.exact_pairs(self._exact[column])

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
        return self._from_parts("robust_statistics", exact_column_stats, images)

    def row_findings(self, images, ctx) -> dict:
        """The per-row checks' findings (integrity, property, missing and unknown labels), made by tasks that read
        the partition files (``rowchecks.row_findings_placed``), for ``scanner.run_checks``'s ``done_elsewhere``;
        ``ctx``: the checks' context (class list, the global statistics)."""
        from .rowchecks import row_findings_placed
        self.row_stats = {}
        return self._from_parts("row_checks", lambda imgs, placed, cluster: row_findings_placed(
            imgs, placed, ctx, cluster=cluster, stats=self.row_stats), images)

    def close(self) -> None:
        self._images = self._placed = self._exact = None
        super().close()

    def summary(self) -> dict:
        return {"global_steps": {
            "exact_duplicates": f"on Ray: hash shuffle of the content and pixel hashes, "
                                f"{dups.DUP_DEFAULTS['hash_partitions']} partitions",
            "near_duplicates": self.near_method,
            "robust_statistics": "on Ray: sketches made by the read's tasks, exact median and MAD from the brackets "
                                 "of the partitions' values",
            "rows_read_from_partitions": self._placed.n_from_parts if self._placed is not None else 0,
            "rows_sent_by_driver": len(self._placed.rest) if self._placed is not None else 0,
            "row_checks": ("on Ray: integrity, property and the labels' per-row checks, "
                           f"{self.row_stats.get('tasks', 0)} tasks reading the partitions"
                           if self.row_stats.get("tasks", 0) else "in the driver (every row)"),
            "rows_checked_on_workers": int(self.row_stats.get("rows_on_workers", 0)),
            "rows_checked_in_driver": int(self.row_stats.get("rows_in_driver", 0)),
            "times_s": dict(self.times_s)}}
