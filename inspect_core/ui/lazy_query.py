"""The Gallery's filter, sort and page, the viewer's order, "select all matching" and the Distributions charts
answered from the scan's images table (``lazy_table.LazyImages``: its memory-mapped Arrow copy, or
``images.parquet``) without one pandas frame.

Above ``LAZY_MIN_ROWS`` rows (or when asked), the Gallery does not filter and sort a 10,000,000-row DataFrame:
it reads only the columns a query needs (a float column of 10,000,000 rows is 80 MB, a check's flags 1.25 MB),
computes the filter with ``pyarrow.compute``, finds the page's rows with a top-k (``select_k_unstable`` on the sort
column and the image_id rank, never a sort of every match), and turns only the page's rows into pandas. The
result is ``query.GalleryPage``, with the same rows in the same order as ``query.gallery_page`` gives (same filter
semantics, missing values last, ties by image_id).

``GalleryPage.ids`` holds the page's image_ids only: listing every match of a 10,000,000-row scan in order is the
full sort this module avoids. The viewer's previous / next use ``LazyOrder`` (a position or a neighbour in a pass
over the sort column) and "select all matching" ``LazyMatches`` (the ids of the filter's mask), both over every
match.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from inspect_core.lazy_table import LAZY_MIN_ROWS, LazyImages, take_rows, use_lazy
from inspect_core.ui.query import NO_LABEL, NO_SPLIT, GalleryPage, GalleryQuery

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
        values = table.numeric(col)
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
    key = take_rows(table.column(column), where)
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
                      rows_from: pd.DataFrame | None = None, order=None) -> GalleryPage:
    """``query.gallery_page`` on the Parquet table (``mask``: ``lazy_filter_mask``'s result for ``q`` when the
    caller has it). Only the page's rows are read into pandas, from ``rows_from`` (the same table in memory, when
    the caller holds it: a take from Parquet reads every row group a row of the page is in) or from the file;
    ``ids`` are the page's image_ids. ``order``: every row in the query's sort order (``lazy_kept.KeptOrder``,
    prepared once per scan), when there is one: the page is then a slice of its matches, not a top-k."""
    matched, warnings = mask if mask is not None else lazy_filter_mask(table, q, families, decisions)
    warnings = list(warnings)
    column = q.sort_by
    if column not in table.columns:
        warnings.append(f"column {column!r} is not in this scan; sorted by image_id")
        column = "image_id"
    n_match = int(np.count_nonzero(matched))
    size = max(int(q.page_size), 1)
    n_pages = max((n_match + size - 1) // size, 1)
    page = min(max(int(q.page), 1), n_pages)
    start = (page - 1) * size
    if order is not None and column == q.sort_by:
        positions = order.first(matched, start + size)[start:]
    else:
        positions = _top_positions(table, np.flatnonzero(matched), column, q.descending, start + size)[start:]
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


def _sort_column(table: LazyImages, column: str) -> str:
    return column if column in table.columns else "image_id"


class LazyOrder:
    """Every match of a query in its sort order, without sorting them all: the viewer's previous / next over the
    whole filtered list. ``index(image_id)`` counts the matches that sort before it (one pass over the sort
    column); ``[pos]`` is a top-k of ``pos + 1`` (``_top_positions``). Same order as ``query.matching_order``."""

    def __init__(self, table: LazyImages, matched: np.ndarray, column: str, descending: bool, order=None):
        self.table, self.matched = table, np.asarray(matched, dtype=bool)
        self.column, self.descending = _sort_column(table, column), bool(descending)
        self.order = order if self.column == column else None   # ``lazy_kept.KeptOrder``: walked, not sorted
        self._where: np.ndarray | None = None
        self._n = int(np.count_nonzero(self.matched))
        self._known: dict[str, int | None] = {}

    @property
    def where(self) -> np.ndarray:
        """The matching rows (a pass over the mask: made only when the order is not prepared)."""
        if self._where is None:
            self._where = np.flatnonzero(self.matched)
        return self._where

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, pos: int) -> str:
        pos = int(pos)
        if not 0 <= pos < len(self):
            raise IndexError(pos)
        row = self.order.first(self.matched, pos + 1)[pos] if self.order is not None else \
            _top_positions(self.table, self.where, self.column, self.descending, pos + 1)[pos]
        iid = str(self.table.column("image_id")[int(row)].as_py())
        self._known[iid] = pos
        return iid

    def index(self, image_id: str) -> int | None:
        """The position of ``image_id`` in the order, None when it does not match."""
        image_id = str(image_id)
        if image_id in self._known:
            return self._known[image_id]
        row = int(self.table.positions_of([image_id])[0])
        pos = None if row < 0 or not self.matched[row] else self._count_before(row)
        self._known[image_id] = pos
        return pos

    def _before(self, row: int) -> np.ndarray:
        """Over ``where``: the matches that come before ``row`` in the order."""
        rank = self.table.id_rank()
        where = self.where
        r0 = rank[row]
        before_id = (rank[where] > r0) if (self.column == "image_id" and self.descending) else (rank[where] < r0)
        if self.column == "image_id":
            return before_id
        col = self.table.column(self.column)
        key = take_rows(col, where)
        missing = _as_mask(pc.is_null(key, nan_is_null=True))
        k0 = col[row]
        if not k0.is_valid or (isinstance(k0.as_py(), float) and np.isnan(k0.as_py())):
            return ~missing | (missing & before_id)
        ahead = _as_mask((pc.greater if self.descending else pc.less)(key, k0))
        equal = _as_mask(pc.equal(key, k0))
        return (ahead | (equal & before_id)) & ~missing

    def _count_before(self, row: int) -> int:
        if self.order is not None:
            return self.order.count_before(self.matched, self.order.place(row))
        return int(self._before(row).sum())

    def step(self, image_id: str, delta: int) -> tuple[int, str] | None:
        """``(position, image_id)`` of the match ``delta`` (+1 or -1) from ``image_id`` (clamped at the ends), in
        two passes over the sort column (a top-k of the position itself is seconds deep in 10,000,000 rows);
        None when ``image_id`` does not match."""
        image_id = str(image_id)
        row = int(self.table.positions_of([image_id])[0])
        if row < 0 or not self.matched[row]:
            return None
        if self.order is not None:   # the neighbour is the next match along the prepared order
            place = self.order.place(row)
            pos = self.order.count_before(self.matched, place)
            nxt = self.order.neighbour(self.matched, place, delta)
            if nxt is None:
                return pos, image_id
            iid = str(self.table.column("image_id")[nxt].as_py())
            self._known[iid] = pos + (1 if delta > 0 else -1)
            return self._known[iid], iid
        before = self._before(row)
        pos = int(before.sum())
        cand = self.where[~before & (self.where != row)] if delta > 0 else self.where[before]
        if not len(cand):
            return pos, image_id
        if delta > 0:   # the first of those after it
            nxt = int(_top_positions(self.table, cand, self.column, self.descending, 1)[0])
        else:           # the last of those before it
            nxt = int(self._last(cand))
        iid = str(self.table.column("image_id")[nxt].as_py())
        self._known[iid] = pos + (1 if delta > 0 else -1)
        return self._known[iid], iid

    def _last(self, cand: np.ndarray) -> int:
        """The last of ``cand`` in the order: missing values last, ties by image_id."""
        rank = self.table.id_rank()
        if self.column == "image_id":
            r = rank[cand]
            return cand[int(r.argmin() if self.descending else r.argmax())]
        key = take_rows(self.table.column(self.column), cand)
        missing = _as_mask(pc.is_null(key, nan_is_null=True))
        if missing.any():
            absent = cand[missing]
            return absent[int(rank[absent].argmax())]
        extreme = (pc.min if self.descending else pc.max)(key)
        tied = cand[_as_mask(pc.equal(key, extreme))]
        return tied[int(rank[tied].argmax())]


class LazyMatches:
    """The image_ids matching a query (from its lazy mask), for "select all matching": their number at once,
    the ids themselves only when iterated."""

    def __init__(self, table: LazyImages, matched: np.ndarray):
        self.table, self.matched = table, np.asarray(matched, dtype=bool)
        self._key: str | None = None

    def __len__(self) -> int:
        return int(self.matched.sum())

    @property
    def key(self) -> str:
        """A digest of the mask (equal masks, equal keys): what a result derived from the matches is kept by."""
        if self._key is None:
            import hashlib
            self._key = hashlib.blake2b(np.packbits(self.matched).tobytes(), digest_size=16).hexdigest()
        return self._key

    def __iter__(self):
        return iter(self.table.column("image_id").filter(pa.array(self.matched)).to_pylist())

    def count_outside(self, image_ids) -> int:
        """How many of ``image_ids`` do not match (not in the scan counts as not matching)."""
        pos = self.table.positions_of(list(image_ids))
        return int(len(pos) - self.matched[pos[pos >= 0]].sum())


def lazy_option_rows(table: LazyImages) -> np.ndarray:
    """``option_rows`` from the columns of ``table``: the same row positions, without a pandas frame."""
    picked: list[np.ndarray] = []
    for name in ("label", "split"):
        if name in table.columns:
            col = table.column(name)
            codes = pc.dictionary_encode(col).combine_chunks() if isinstance(col, pa.ChunkedArray) else \
                pc.dictionary_encode(col)
            idx = codes.indices.to_numpy(zero_copy_only=False)
            valid = _as_mask(pc.is_valid(codes.indices))
            nan = _as_mask(pc.is_null(col, nan_is_null=True)) & valid   # a NaN label counts as missing too
            _, first = np.unique(np.where(valid & ~nan, idx, -1), return_index=True)
            picked.append(first)
    for f in table.schema:
        if pa.types.is_boolean(f.type):
            flags = table.flags(f.name)
            if flags.any():
                picked.append(np.array([int(flags.argmax())]))
        elif pa.types.is_integer(f.type) or pa.types.is_floating(f.type):
            values = table.numeric(f.name)
            finite = np.isfinite(values)
            if finite.any():
                picked.append(np.array([int(np.where(finite, values, np.inf).argmin()),
                                        int(np.where(finite, values, -np.inf).argmax())]))
    return np.unique(np.concatenate(picked)) if picked else np.arange(min(table.n_rows, 1))


def kept_option_rows(table: LazyImages, workspace, fingerprint: str) -> np.ndarray:
    """``lazy_option_rows``, computed once per scan and kept in its workspace (``lazy/option_rows_<fingerprint>.npy``;
    7.5 s at 10,000,000 rows) for the next server process."""
    import os
    import uuid
    from pathlib import Path

    from inspect_core.lazy_table import LAZY_DIR
    path = Path(workspace) / LAZY_DIR / f"option_rows_{fingerprint}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        rows = lazy_option_rows(table)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex}.tmp.npy")
        np.save(tmp, rows)
        os.replace(tmp, path)
    except OSError:   # a read-only workspace: computed again next time
        pass
    return rows


# -- Distributions: chart data from the memory-mapped columns (the same numbers as ``charts`` on the frame) ----
def group_codes(table: LazyImages, by: str | None) -> tuple[np.ndarray, list[str]] | None:
    """``(codes, names)``: per row the index of its ``by`` value in ``names`` (missing: ``"(no <by>)"``, as
    ``charts._group``), or None when ``by`` is not a column. One dictionary pass, no Python strings per row."""
    from inspect_core.ui.charts import NONE
    if not by or by == NONE or by not in table.columns:
        return None
    col = table.column(by)
    enc = pc.dictionary_encode(col)
    enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    names = [str(v) for v in enc.dictionary.to_pylist()]
    valid = _as_mask(pc.is_valid(enc.indices))
    codes = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if not valid.all():
        names.append(f"(no {by})")
        codes[~valid] = len(names) - 1
    return codes, names


def _sorted_groups(codes: np.ndarray, names: list[str], present: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(name, rows)`` of each group with a row in ``present``, by name (groups with the same text merged)."""
    by_name: dict[str, list[int]] = {}
    for k in np.flatnonzero(np.bincount(codes[present], minlength=len(names))):
        by_name.setdefault(names[k], []).append(int(k))
    return [(n, np.asarray(by_name[n])) for n in sorted(by_name)]


def lazy_histogram_data(table: LazyImages, column: str, by: str | None = None,
                        bins: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``charts.histogram_data`` from the columns: one bin index per row, counted per group with ``bincount``."""
    return histogram_from(table.numeric(column), group_codes(table, by), bins)


def histogram_from(x: np.ndarray, grouped: tuple[np.ndarray, list[str]] | None,
                   bins: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``lazy_histogram_data`` of the values ``x`` and the groups ``grouped`` (``group_codes``' result)."""
    from inspect_core.ui.charts import HIST_BINS
    bins = int(bins or HIST_BINS)
    ok = np.isfinite(x)
    if not ok.any():
        return np.array([0.0, 1.0]), {}
    lo, hi = float(x[ok].min()), float(x[ok].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    idx = np.minimum(np.searchsorted(edges, x[ok], side="right") - 1, bins - 1)   # as np.histogram: last bin closed
    if grouped is None:
        return edges, {"all images": np.bincount(idx, minlength=bins)}
    codes, names = grouped
    counts = np.bincount(codes[ok] * bins + idx, minlength=len(names) * bins).reshape(len(names), bins)
    return edges, {name: counts[ks].sum(axis=0) for name, ks in _sorted_groups(codes, names, ok)}


def lazy_box_groups(table: LazyImages, column: str, by: str | None = None) -> dict[str, np.ndarray]:
    """The box plot's {group: values} as ``charts.distribution_figure`` forms them."""
    x = table.numeric(column)
    grouped = group_codes(table, by)
    if grouped is None:
        return {"all images": x}
    codes, names = grouped
    return {name: x[np.isin(codes, ks)] for name, ks in _sorted_groups(codes, names, np.ones(len(x), dtype=bool))}


def lazy_counts(table: LazyImages, by: str = "label", color: str | None = "split", groups: dict | None = None):
    """``charts.count_figure``'s counts: a crosstab of ``by`` x ``color`` (a DataFrame), or the value counts of
    ``by`` (a Series), by name (``groups``: ``group_codes`` results by column, when the caller has them)."""
    def codes_of(name):
        return groups[name] if groups is not None and name in groups else group_codes(table, name)
    gx = codes_of(by)
    codes_x, names_x = gx if gx is not None else (np.zeros(table.n_rows, dtype=np.int64), ["(all)"])
    gc = codes_of(color) if color != by else None
    everyone = np.ones(table.n_rows, dtype=bool)
    rows = _sorted_groups(codes_x, names_x, everyone)
    if gc is None:
        n = np.bincount(codes_x, minlength=len(names_x))
        return pd.Series([int(n[ks].sum()) for _, ks in rows], index=[name for name, _ in rows], name="count")
    codes_c, names_c = gc
    cols = _sorted_groups(codes_c, names_c, everyone)
    n = np.bincount(codes_x * len(names_c) + codes_c, minlength=len(names_x) * len(names_c)).reshape(
        len(names_x), len(names_c))
    return pd.DataFrame([[int(n[np.ix_(kx, kc)].sum()) for _, kc in cols] for _, kx in rows],
                        index=[name for name, _ in rows], columns=[name for name, _ in cols])


def lazy_scatter_points(table: LazyImages, x: str, y: str, flag_checks=(), max_points: int | None = None,
                        seed: int = 0) -> tuple[pd.DataFrame, int, int]:
    """``(points, n_total, n_flagged)``: as ``charts.scatter_data`` (image_id, x, y, flagged, checks), but at most
    ``max_points`` points in all: every flagged image when they leave room for the others, else a fixed random
    sample of them (half the points), then a fixed random sample of the others. ``n_total``: images with both
    values; ``n_flagged``: those a check of ``flag_checks`` flags. Only the drawn rows are read into pandas."""
    from inspect_core.schema import issue_column
    from inspect_core.ui.charts import MAX_SCATTER_POINTS, flagged_by
    max_points = int(max_points or MAX_SCATTER_POINTS)
    xs, ys = table.numeric(x), table.numeric(y)
    ok = np.isfinite(xs) & np.isfinite(ys)
    flag_cols = [issue_column(c) for c in flag_checks if issue_column(c) in table.columns]
    flagged = np.zeros(table.n_rows, dtype=bool)
    for c in flag_cols:
        flagged |= table.flags(c)
    rng = np.random.default_rng(seed)
    hit, rest = np.flatnonzero(ok & flagged), np.flatnonzero(ok & ~flagged)
    cap = max_points if len(hit) + len(rest) <= max_points else max(max_points - min(len(rest), max_points // 2),
                                                                    max_points // 2)
    if len(hit) > cap:   # more flagged than fit: a sample of them, and at least half the points for the others
        hit = np.sort(rng.choice(hit, cap, replace=False))
    keep = max_points - len(hit)
    if len(rest) > keep:
        rest = np.sort(rng.choice(rest, keep, replace=False))
    rows = np.sort(np.concatenate([hit, rest]))
    frame = table.take(rows, ["image_id"] + flag_cols)
    is_hit, names = flagged_by(frame, [c for c in flag_checks if issue_column(c) in table.columns])
    pts = pd.DataFrame({"image_id": frame["image_id"].to_numpy(), "x": xs[rows], "y": ys[rows],
                        "flagged": is_hit, "checks": names})
    return pts, int(ok.sum()), int((ok & flagged).sum())


__all__ = ["LAZY_MIN_ROWS", "LazyImages", "use_lazy", "lazy_filter_mask", "lazy_gallery_page", "option_rows",
           "LazyOrder", "LazyMatches", "lazy_option_rows"]
