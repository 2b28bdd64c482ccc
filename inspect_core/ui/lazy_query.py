"""The Gallery's filter, sort and page answered from the scan's ``images.parquet`` without one pandas frame.

Above ``LAZY_MIN_ROWS`` rows (or when asked), the Gallery does not filter and sort a 10,000,000-row DataFrame:
it reads from the Parquet file only the columns a query needs (each once, kept as Arrow arrays: a float
column of 10,000,000 rows is 80 MB, a check's flags 1.25 MB), computes the filter with ``pyarrow.compute``, finds
the page's rows with a top-k (``select_k_unstable`` on the sort column and the image_id rank, never a sort of every
match), and turns only the page's rows into pandas (from the frame the caller holds, else ``Dataset.take``). The
result is ``query.GalleryPage``, with the same rows in the same order as ``query.gallery_page`` gives (same filter
semantics, missing values last, ties by image_id).

Unlike the eager path, ``GalleryPage.ids`` holds the page's image_ids only (previous / next and "select all
matching" then work within the page): listing every match of a 10,000,000-row scan in order is the full
sort this module avoids.
"""
from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from inspect_core.schema import check_of_column
from inspect_core.ui.query import NO_LABEL, NO_SPLIT, GalleryPage, GalleryQuery

LAZY_MIN_ROWS = 2_000_000   # the Gallery reads images.parquet lazily from this many rows on
MAX_CACHED_BYTES = 1_500_000_000   # Arrow columns kept in memory per table (least recently used dropped first)


class LazyImages:
    """A scan's ``images.parquet`` opened as a pyarrow dataset: its schema and row count, no rows read until a
    query needs a column. Safe to share between threads (Streamlit sessions)."""

    def __init__(self, path: Path | str, max_cached_bytes: int = MAX_CACHED_BYTES,
                 rank_path: Path | str | None = None):
        self.path = Path(path)
        self.rank_path = Path(rank_path) if rank_path is not None else None
        self.dataset = pads.dataset(self.path, format="parquet")
        self.schema = self.dataset.schema
        self.columns = list(self.schema.names)
        self.n_rows = int(self.dataset.count_rows())
        self._cache: OrderedDict[str, pa.ChunkedArray] = OrderedDict()
        self._max_bytes = int(max_cached_bytes)
        self._lock = threading.Lock()
        self._rank: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n_rows

    def column(self, name: str) -> pa.Array:
        """One whole column, read once and kept (``max_cached_bytes`` in all; the newest column always)."""
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        col = self.dataset.to_table(columns=[name]).column(0).combine_chunks()
        with self._lock:
            self._cache[name] = col
            while len(self._cache) > 1 and sum(c.nbytes for c in self._cache.values()) > self._max_bytes:
                self._cache.popitem(last=False)
        return col

    def id_rank(self) -> np.ndarray:
        """For each row, the rank of its image_id in ascending order (image_ids are unique): sorts and ties are
        then broken on integers. Computed once; the row positions themselves when the file is in image_id order
        (checked in one pass). Kept in ``rank_path`` when given (a .npy in the workspace, named by the scan's
        fingerprint by the caller), so a new server process reads it instead of sorting again."""
        with self._lock:
            if self._rank is not None:
                return self._rank
        saved = self._saved_rank()
        if saved is not None:
            with self._lock:
                self._rank = saved
            return saved
        ids = self.column("image_id")
        n = len(ids)
        if n < 2 or pc.all(pc.less_equal(ids.slice(0, n - 1), ids.slice(1))).as_py():
            rank = np.arange(n, dtype=np.int64)
        else:
            order = pc.sort_indices(ids).to_numpy()
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n, dtype=np.int64)
        with self._lock:
            self._rank = rank
        if self.rank_path is not None:
            try:
                self.rank_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.rank_path.with_name(f"{self.rank_path.stem}.{uuid.uuid4().hex}.tmp.npy")
                np.save(tmp, rank)
                os.replace(tmp, self.rank_path)
            except OSError:   # a read-only workspace: computed again by the next process
                pass
        return rank

    def _saved_rank(self) -> np.ndarray | None:
        if self.rank_path is None or not self.rank_path.is_file():
            return None
        try:
            rank = np.load(self.rank_path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return rank if rank.shape == (self.n_rows,) and rank.dtype == np.int64 else None

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at ``positions`` (in that order) as pandas, indexed by their positions like
        ``images.iloc[positions]`` of the whole table."""
        positions = np.asarray(positions, dtype=np.int64)
        table = self.dataset.take(pa.array(positions)) if len(positions) else self.schema.empty_table()
        df = table.to_pandas()
        df.index = pd.Index(positions)
        return df

    def check_columns(self) -> dict[str, str]:
        """check name -> its boolean column (as ``query.check_columns``, from the schema only)."""
        return {check: f.name for f in self.schema
                if (check := check_of_column(f.name)) is not None and pa.types.is_boolean(f.type)}


def _as_mask(arr) -> np.ndarray:
    """A boolean Arrow array as numpy, missing values False."""
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _in_values(col: pa.Array, wanted: tuple[str, ...], missing_token: str) -> np.ndarray:
    values = [w for w in wanted if w != missing_token]
    mask = _as_mask(pc.is_in(col, value_set=pa.array(values, type=col.type))) if values else \
        np.zeros(len(col), dtype=bool)
    if missing_token in wanted:
        mask |= _as_mask(pc.is_null(col, nan_is_null=True))
    return mask


def _numeric(table: LazyImages, name: str) -> np.ndarray:
    """A column as float64 (missing and non-numbers NaN), as ``pd.to_numeric(errors="coerce")``."""
    col = table.column(name)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return pd.to_numeric(col.to_pandas(), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def lazy_filter_mask(table: LazyImages, q: GalleryQuery, families: dict[str, list[str]] | None = None,
                     decisions: pd.DataFrame | None = None) -> tuple[np.ndarray, list[str]]:
    """``query.filter_mask`` on the Parquet table: the same mask and warnings, reading only the columns used."""
    n = table.n_rows
    mask = np.ones(n, dtype=bool)
    warnings: list[str] = []
    if q.labels and "label" in table.columns:
        mask &= _in_values(table.column("label"), q.labels, NO_LABEL)
    if q.splits and "split" in table.columns:
        mask &= _in_values(table.column("split"), q.splits, NO_SPLIT)
    if q.checks or q.families:
        cols = table.check_columns()
        wanted = set(q.checks)
        for fam in q.families:
            wanted.update((families or {}).get(fam, []))
        issue = np.zeros(n, dtype=bool)
        for chk in sorted(wanted):
            if chk in cols:
                issue |= _as_mask(table.column(cols[chk]))
        mask &= issue
    for col, lo, hi in q.ranges:
        if col not in table.columns:
            warnings.append(f"column {col!r} is not in this scan; its range filter is ignored")
            continue
        values = _numeric(table, col)
        with np.errstate(invalid="ignore"):
            mask &= (values >= lo) & (values <= hi)
    if q.search:
        mask &= _as_mask(pc.match_substring(table.column("image_id"), q.search, ignore_case=True))
    if q.decisions:
        dec = decisions if decisions is not None else pd.DataFrame(columns=["image_id", "action"])
        ids = table.column("image_id")
        decided = _as_mask(pc.is_in(ids, value_set=pa.array(dec["image_id"].astype(str).tolist(), type=ids.type)))
        dmask = np.zeros(n, dtype=bool)
        for d in q.decisions:
            if d == "undecided":
                dmask |= ~decided
            else:
                chosen = dec.loc[dec["action"] == d, "image_id"].astype(str).tolist()
                dmask |= _as_mask(pc.is_in(ids, value_set=pa.array(chosen, type=ids.type)))
        mask &= dmask
    return mask, warnings


def _top_positions(table: LazyImages, where: np.ndarray, column: str, descending: bool, k: int) -> np.ndarray:
    """The first ``k`` of the rows ``where`` in the order of ``query.sort_order``: ``column`` (descending or not),
    missing values last, ties by image_id ascending (by ``LazyImages.id_rank``: integers, not strings)."""
    if k <= 0 or len(where) == 0:
        return where[:0]
    rank = table.id_rank()
    if column == "image_id":
        r = rank[where]
        key = -r if descending else r
        if k < len(key):
            part = np.argpartition(key, k - 1)[:k]
            return where[part[np.argsort(key[part])]]
        return where[np.argsort(key)]
    key = table.column(column).take(pa.array(where))
    missing = _as_mask(pc.is_null(key, nan_is_null=True))
    present, absent = where[~missing], where[missing]
    out = where[:0]
    if len(present):
        keys = pa.table({"key": key.filter(pa.array(~missing)) if missing.any() else key,
                         "rank": pa.array(rank[present]), "pos": pa.array(present)})
        sort_keys = [("key", "descending" if descending else "ascending"), ("rank", "ascending")]
        # image_id ranks are unique, so the unstable top-k is exact; the k rows are then put in order
        top = keys.take(pc.select_k_unstable(keys, k=min(k, keys.num_rows), sort_keys=sort_keys))
        out = top.take(pc.sort_indices(top, sort_keys=sort_keys))["pos"].to_numpy()
    if len(out) < k and len(absent):   # missing values last, by image_id
        r = rank[absent]
        out = np.concatenate([out, absent[np.argsort(r)][:k - len(out)]])
    return out.astype(np.int64)


def lazy_gallery_page(table: LazyImages, q: GalleryQuery, families: dict[str, list[str]] | None = None,
                      decisions: pd.DataFrame | None = None,
                      mask: tuple[np.ndarray, list[str]] | None = None,
                      rows_from: pd.DataFrame | None = None) -> GalleryPage:
    """``query.gallery_page`` on the Parquet table (``mask``: ``lazy_filter_mask``'s result for ``q`` when the
    caller has it). Only the page's rows are read into pandas, from ``rows_from`` (the same table in memory, when
    the caller holds it: a take from Parquet reads every row group a row of the page is in) or from the file;
    ``ids`` are the page's image_ids."""
    matched, warnings = mask if mask is not None else lazy_filter_mask(table, q, families, decisions)
    warnings = list(warnings)
    where = np.flatnonzero(matched)
    column = q.sort_by
    if column not in table.columns:
        warnings.append(f"column {column!r} is not in this scan; sorted by image_id")
        column = "image_id"
    n_match = int(len(where))
    size = max(int(q.page_size), 1)
    n_pages = max((n_match + size - 1) // size, 1)
    page = min(max(int(q.page), 1), n_pages)
    start = (page - 1) * size
    positions = _top_positions(table, where, column, q.descending, start + size)[start:]
    rows = rows_from.iloc[positions] if rows_from is not None else table.take(positions)
    return GalleryPage(rows=rows, n_match=n_match, n_pages=n_pages, page=page, warnings=warnings,
                       ids=rows["image_id"].astype(str).to_numpy(dtype=object), page_size=size)


def option_rows(images: pd.DataFrame) -> np.ndarray:
    """Row positions of a few rows of ``images`` that give the filter widgets the same choices as the whole table:
    the first row of each label and split (missing included), the first row each check flags, and the rows of
    the smallest and largest finite value of each numeric column. The widgets then read ~100 rows per rerun,
    not 10,000,000 (``widgets.filter_widgets`` on ``images.iloc[option_rows(images)]``)."""
    picked: list[np.ndarray] = []
    for col in ("label", "split"):
        if col in images.columns:
            values = images[col]
            picked.append(np.flatnonzero(~values.duplicated(keep="first").to_numpy(dtype=bool)))
    for c, dt in images.dtypes.items():
        if pd.api.types.is_bool_dtype(dt):
            flags = images[c].to_numpy(dtype=bool, na_value=False)
            if flags.any():
                picked.append(np.array([int(flags.argmax())]))
        elif pd.api.types.is_numeric_dtype(dt):
            values = pd.to_numeric(images[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            finite = np.isfinite(values)
            if finite.any():
                picked.append(np.array([int(np.where(finite, values, np.inf).argmin()),
                                        int(np.where(finite, values, -np.inf).argmax())]))
    return np.unique(np.concatenate(picked)) if picked else np.arange(min(len(images), 1))


def use_lazy(n_rows: int, switch: bool | None = None) -> bool:
    """Whether the Gallery reads lazily: ``switch`` when given, else from ``LAZY_MIN_ROWS`` rows on."""
    return bool(switch) if switch is not None else int(n_rows) >= LAZY_MIN_ROWS
