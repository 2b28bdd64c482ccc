"""What the app's pages need over every row of a big saved scan, computed once per scan and kept in its workspace.

A 10,000,000-row scan read lazily (``lazy_table``) still costs seconds whenever a page needs every row: the
Distributions histograms and counts, the filter widgets' choices, the Gallery's sorted order deep in the
matches. ``prepare`` computes them once (in a background thread when the app opens a big saved scan,
``ui.state.cached_scan``, and at the end of ``scanner.scan`` for a big scan) into
``<workspace>/lazy/charts_<fingerprint>/``, where the fingerprint is
that of the saved scan's files (a re-scan gets another folder; the older ones are deleted):

- ``hist_<k>.npz``: per numeric column, the histogram of every image, by label and by split
  (``lazy_query.histogram_from``: the numbers the on-demand path computes);
- ``counts.json``: the class balance counts (``lazy_query.lazy_counts``);
- ``order_<k>*.npy``: per sortable column, every row in the Gallery's order (``query.sort_order``: missing
  values last, ties by image_id), so a page is a slice of the matches in that order, not a top-k of all of them;
- ``manifest.json``: what is there, written last (a folder without it is not ready).

The filter widgets' rows, the image_id rank and order and the findings index are kept where the pages keep them
(``lazy_query.kept_option_rows``, ``LazyImages.id_rank``, ``lazy_findings.FindingsIndex``); ``prepare`` makes them
too. Pages ask ``KeptCharts.open`` and compute on demand while it answers None.

``DI_LAZY_PREPARE=0`` turns the preparation off; ``DI_LAZY_MIN_ROWS`` sets the row count from which it is made
(``lazy_table.LAZY_MIN_ROWS`` by default).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .lazy_table import LAZY_DIR, LAZY_MIN_ROWS

PREPARE_ENV = "DI_LAZY_PREPARE"     # "0": never prepare
MIN_ROWS_ENV = "DI_LAZY_MIN_ROWS"   # prepare from this many rows on (default ``LAZY_MIN_ROWS``)
KEPT_PREFIX = "charts_"
MANIFEST = "manifest.json"
STALE_TMP_S = 3600          # an unfinished charts_*.tmp folder older than this was left by a process that ended
COUNT_CHARTS = (("label", "split"), ("split", None))   # the Distributions page's class balance charts
GROUP_BY = (None, "label", "split")                    # the histograms' "colour by" choices
SCAN_FILES = ("images.parquet", "findings.parquet", "dataset.json")
log = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get(PREPARE_ENV, "").strip() != "0"


def min_rows() -> int:
    try:
        return int(os.environ.get(MIN_ROWS_ENV, "").strip() or LAZY_MIN_ROWS)
    except ValueError:
        return LAZY_MIN_ROWS


def files_fingerprint(scan_dir: Path | str) -> str:
    """The saved scan's files (name, size, modification time): a re-scan that rewrites them changes it."""
    h = hashlib.sha1()
    for name in SCAN_FILES:
        p = Path(scan_dir) / name
        st = p.stat() if p.is_file() else None
        h.update(f"{name}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1};".encode())
    return h.hexdigest()[:16]


def kept_dir(workspace: Path | str, scan_dir: str = "scan") -> Path:
    return Path(workspace) / LAZY_DIR / f"{KEPT_PREFIX}{files_fingerprint(Path(workspace) / scan_dir)}"


# -- the Gallery's order of every row, per sortable column ----------------------------------------------------
def sort_key(table, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(key, missing)`` per row: a number that sorts as ``query.sort_order`` sorts ``column`` (text: its rank in
    the sorted dictionary) and whether the value is missing (null or NaN); None for a column that is not sortable
    this way (booleans, image_id: its own order)."""
    col = table.column(column)
    t = col.type
    if pa.types.is_boolean(t) or column == "image_id":
        return None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        enc = pc.dictionary_encode(col)
        enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
        rank = np.zeros(max(len(enc.dictionary), 1), dtype=np.float64)   # all missing: an empty dictionary
        rank[pc.sort_indices(enc.dictionary).to_numpy()] = np.arange(len(enc.dictionary))
        missing = pc.is_null(enc.indices).to_numpy(zero_copy_only=False)
        idx = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False)
        return rank[idx], missing
    if pa.types.is_integer(t):                          # its rank among the values: float64 would merge large ones
        missing = pc.is_null(col).to_numpy(zero_copy_only=False)
        _, rank = np.unique(pc.fill_null(col, 0).to_numpy(zero_copy_only=False), return_inverse=True)
        return rank.astype(np.float64), missing
    if pa.types.is_floating(t):
        key = table.numeric(column)
        return key, np.isnan(key)                       # NaN and null missing; +-inf sort as values
    return None


def gallery_orders(table, column: str) -> dict[str, np.ndarray] | None:
    """Every row of ``table`` in the Gallery's order by ``column``: ``asc`` and ``desc`` (missing values last in
    both, ties by image_id ascending), as int32/int64 row positions; None when ``column`` has no such order."""
    got = sort_key(table, column)
    if got is None:
        return None
    key, missing = got
    by_id = np.asarray(table._id_order())     # rows in image_id order: a stable sort keeps ties so
    k = key[by_id]
    gone = missing[by_id]
    present, absent = by_id[~gone], by_id[gone]
    kp = k[~gone]
    dtype = np.int32 if table.n_rows < 2**31 else np.int64
    asc = present[np.argsort(kp, kind="stable")]
    desc = present[np.argsort(-kp, kind="stable")]
    return {"asc": np.concatenate([asc, absent]).astype(dtype), "desc": np.concatenate([desc, absent]).astype(dtype)}


class KeptOrder:
    """One column's rows in the Gallery's order (``gallery_orders``): the first matches of a mask, a row's place
    among the matches and its neighbours, by walking the order (a slice, not a sort)."""

    STEP_ROWS = 1 << 16

    def __init__(self, rows: np.ndarray):
        self.rows = rows

    def first(self, matched: np.ndarray, k: int) -> np.ndarray:
        """The first ``k`` rows of the order that ``matched`` marks."""
        out, start, step, n = [], 0, max(self.STEP_ROWS, 4 * int(k)), len(self.rows)
        have = 0
        while have < k and start < n:
            part = np.asarray(self.rows[start:start + step])
            hit = part[matched[part]]
            out.append(hit)
            have += len(hit)
            start += step
            step *= 2
        return (np.concatenate(out) if out else np.zeros(0, dtype=np.int64))[:k].astype(np.int64)

    def place(self, row: int) -> int:
        """Where ``row`` is in the order."""
        return int(np.flatnonzero(np.asarray(self.rows) == row)[0])

    def count_before(self, matched: np.ndarray, place: int) -> int:
        return int(matched[np.asarray(self.rows[:place])].sum())

    def neighbour(self, matched: np.ndarray, place: int, delta: int) -> int | None:
        """The row of the nearest match after (``delta`` > 0) or before ``place`` in the order, None at an end."""
        step = self.STEP_ROWS
        if delta > 0:
            start = place + 1
            while start < len(self.rows):
                part = np.asarray(self.rows[start:start + step])
                hit = np.flatnonzero(matched[part])
                if len(hit):
                    return int(part[hit[0]])
                start, step = start + step, step * 2
            return None
        stop = place
        while stop > 0:
            part = np.asarray(self.rows[max(stop - step, 0):stop])
            hit = np.flatnonzero(matched[part])
            if len(hit):
                return int(part[hit[-1]])
            stop, step = stop - step, step * 2
        return None


# -- reading -----------------------------------------------------------------------------------------------------
class KeptCharts:
    """A prepared folder, read: histograms, counts and orders as the pages ask for them (``None``: not kept)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.manifest = json.loads((self.dir / MANIFEST).read_text())
        self._orders: dict = {}
        self._lock = threading.Lock()

    _open: dict[str, KeptCharts] = {}

    @classmethod
    def open(cls, workspace: Path | str, n_rows: int | None = None, scan_dir: str = "scan") -> KeptCharts | None:
        """The scan's prepared folder when it is complete (and of ``n_rows`` rows), else None."""
        try:
            d = kept_dir(workspace, scan_dir)
        except OSError:
            return None
        kept = cls._open.get(str(d))
        if kept is None:
            if not (d / MANIFEST).is_file():
                return None
            try:
                kept = cls._open.setdefault(str(d), cls(d))
            except (OSError, ValueError):
                return None
        return kept if n_rows is None or int(kept.manifest.get("n_rows", -1)) == int(n_rows) else None

    def histogram(self, column: str, by: str | None) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        name = self.manifest["histograms"].get(column)
        if name is None or (by or "") not in self.manifest["group_by"]:
            return None
        with np.load(self.dir / name, allow_pickle=False) as z:
            tag = by or "all"
            names = [str(x) for x in z[f"{tag}_names"]]
            counts = z[f"{tag}_counts"]
            return z["edges"], {n: counts[k] for k, n in enumerate(names)}

    def counts(self, by: str, color: str | None):
        got = self.manifest["counts"].get(f"{by}|{color or ''}")
        if got is None:
            return None
        if got["columns"] is None:
            return pd.Series(got["values"], index=got["index"], name="count", dtype="int64")
        return pd.DataFrame(got["values"], index=got["index"], columns=got["columns"], dtype="int64")

    def families_of_checks(self) -> dict[str, list[str]] | None:
        """family -> checks seen in the findings (``query.families_of_checks``), as prepared (None: not kept)."""
        fams = self.manifest.get("families")
        return {f: list(c) for f, c in fams.items()} if fams is not None else None

    def scatter(self, x: str, y: str, checks) -> tuple[pd.DataFrame, int, int] | None:
        """``lazy_query.lazy_scatter_points(table, x, y, checks)`` when that pair was prepared (the page's first)."""
        got = self.manifest.get("scatter", {}).get(_scatter_key(x, y, checks))
        if got is None:
            return None
        pts = pd.read_parquet(self.dir / got["file"])
        return pts, int(got["n_total"]), int(got["n_flagged"])

    def gallery_order(self, table, column: str, descending: bool) -> KeptOrder | None:
        """``order``, and for image_id (unique) the image_id order kept beside the rank (``table``'s), read
        backwards for descending."""
        if column == "image_id":
            rows = table._id_order()
            return KeptOrder(rows[::-1] if descending else rows)
        return self.order(column, descending)

    def order(self, column: str, descending: bool) -> KeptOrder | None:
        name = self.manifest["orders"].get(column, {}).get("desc" if descending else "asc")
        if name is None:
            return None
        with self._lock:
            if (column, descending) not in self._orders:
                self._orders[(column, descending)] = KeptOrder(np.load(self.dir / name, mmap_mode="r"))
            return self._orders[(column, descending)]


# -- preparing ---------------------------------------------------------------------------------------------------
def _scatter_key(x: str, y: str, checks) -> str:
    return json.dumps([x, y, list(checks)])


def _counts_json(counts) -> dict:
    if isinstance(counts, pd.Series):
        return {"index": [str(i) for i in counts.index], "columns": None, "values": [int(v) for v in counts]}
    return {"index": [str(i) for i in counts.index], "columns": [str(c) for c in counts.columns],
            "values": [[int(v) for v in row] for row in counts.to_numpy()]}


def prepare(table, target: Path, findings: pd.DataFrame | None = None, workspace: Path | str | None = None,
            fingerprint: str | None = None) -> Path:
    """Everything above for ``table`` (a ``lazy_table.LazyImages``) into ``target`` (written aside, then moved
    there; a folder already there is kept), plus the option rows, the image_id rank and order and the findings
    index where the pages keep them (``workspace``, ``fingerprint``)."""
    from .ui import lazy_query
    from .ui.query import numeric_columns
    target = Path(target)
    if (target / MANIFEST).is_file():
        return target
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    try:
        table.id_rank()
        table._id_order()
        index = None
        if workspace is not None and fingerprint is not None:
            lazy_query.kept_option_rows(table, workspace, fingerprint)
            if findings is not None:
                from .lazy_findings import FINDINGS_INDEX_MIN_ROWS, FindingsIndex, index_path
                if len(findings) >= FINDINGS_INDEX_MIN_ROWS:
                    index = FindingsIndex(findings, index_path(workspace, fingerprint))
        groups = {by: lazy_query.group_codes(table, by) for by in GROUP_BY if by is None or by in table.columns}
        manifest: dict = {"n_rows": int(table.n_rows), "group_by": [by or "" for by in groups],
                          "histograms": {}, "counts": {}, "orders": {}}
        nums = numeric_columns(table.schema.empty_table().to_pandas())
        for k, column in enumerate(nums):
            x = table.numeric(column)
            arrays = {}
            for by, grouped in groups.items():
                edges, counts = lazy_query.histogram_from(x, grouped)
                tag = by or "all"
                arrays["edges"] = edges
                arrays[f"{tag}_names"] = np.array(list(counts), dtype=str)
                arrays[f"{tag}_counts"] = np.array(list(counts.values()), dtype=np.int64).reshape(
                    len(counts), len(edges) - 1)
            np.savez(tmp / f"hist_{k}.npz", **arrays)
            manifest["histograms"][column] = f"hist_{k}.npz"
        for by, color in COUNT_CHARTS:
            if by in table.columns:
                counts = lazy_query.lazy_counts(table, by, color, groups=groups)
                manifest["counts"][f"{by}|{color or ''}"] = _counts_json(counts)
        from .ui.query import families_of_checks, with_registered_checks
        manifest["families"] = (index.families_of_checks() if index is not None   # from its codes, not a pass
                                else families_of_checks(findings) if findings is not None else {})  # over the rows
        if nums:   # the Distributions scatter as the page first draws it
            from .ui.charts import default_scatter_axes
            fams = with_registered_checks({f: list(c) for f, c in manifest["families"].items()})
            x, y = default_scatter_axes(nums)
            checks = tuple(fams.get("property", []))
            pts, n_total, n_flagged = lazy_query.lazy_scatter_points(table, x, y, checks)
            pts.to_parquet(tmp / "scatter_0.parquet", index=False)
            manifest["scatter"] = {_scatter_key(x, y, checks): {"file": "scatter_0.parquet", "n_total": n_total,
                                                                 "n_flagged": n_flagged}}
        for k, column in enumerate(table.columns):
            orders = gallery_orders(table, column)
            if orders is None:
                continue
            manifest["orders"][column] = {}
            for way, rows in orders.items():
                np.save(tmp / f"order_{k}_{way}.npy", rows)
                manifest["orders"][column][way] = f"order_{k}_{way}.npy"
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        try:
            os.replace(tmp, target)
        except OSError:   # another process made it meanwhile
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in target.parent.glob(f"{KEPT_PREFIX}*"):   # the folders of earlier scans of the workspace, and
        if old == target:                                # unfinished ones a process that ended left behind
            continue
        try:
            stale = not old.name.endswith(".tmp") or time.time() - old.stat().st_mtime > STALE_TMP_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(old, ignore_errors=True)
    return target


def prepare_saved_scan(workspace: Path | str, scan_dir: str = "scan", force: bool = False,
                       table=None, findings: pd.DataFrame | None = None) -> Path | None:
    """``prepare`` for the scan saved in ``workspace`` when it is big enough (``min_rows``) and preparing is on
    (``enabled``), or always with ``force``; the folder, or None when not made."""
    from .lazy_table import n_saved_rows, open_images
    workspace = Path(workspace)
    d = workspace / scan_dir
    if not force and (not enabled() or n_saved_rows(d) < min_rows()):
        return None
    meta = json.loads((d / "dataset.json").read_text())
    table = table if table is not None else open_images(workspace, meta["fingerprint"], scan_dir)
    if findings is None and (d / "findings.parquet").is_file():
        from .scanner import finding_frame
        findings = finding_frame(pd.read_parquet(d / "findings.parquet"))
    t0 = time.perf_counter()
    out = prepare(table, kept_dir(workspace, scan_dir), findings, workspace, meta["fingerprint"])
    log.info("prepared %s in %.1f s", out, time.perf_counter() - t0)
    return out


_STARTED: set[str] = set()
_STARTED_LOCK = threading.Lock()


def prepare_in_background(workspace: Path | str, table, findings: pd.DataFrame | None = None,
                          scan_dir: str = "scan") -> threading.Thread | None:
    """``prepare_saved_scan`` in a daemon thread, once per scan and process, when it is on and the scan big enough
    and not prepared yet; the thread, or None."""
    if not enabled() or table.n_rows < min_rows():
        return None
    try:
        target = kept_dir(workspace, scan_dir)
    except OSError:
        return None
    with _STARTED_LOCK:
        if str(target) in _STARTED or (target / MANIFEST).is_file():
            return None
        _STARTED.add(str(target))

    def run():
        try:
            prepare_saved_scan(workspace, scan_dir, force=True, table=table, findings=findings)
        except Exception as exc:   # the pages compute on demand instead
            log.warning("preparing the big scan's charts in %s failed: %s", workspace, exc)

    thread = threading.Thread(target=run, name="di-lazy-prepare", daemon=True)
    thread.start()
    return thread
