"""Filter, sort and paginate the scan's image table: the gallery's logic, without Streamlit.

Pure functions of DataFrames so that the benchmark and tests can call them directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from inspect_core.schema import check_of_column


NO_LABEL = "(no label)"
NO_SPLIT = "(no split)"
PAGE_SIZES = (48, 96, 192, 480)
DEFAULT_PAGE_SIZE = 48   # 12 x 4 small tiles: the first screen at 1400x900


@dataclass(frozen=True)
class GalleryQuery:
    """What the gallery shows. Empty selections mean "all"."""
    labels: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()          # images with a finding of any of these checks
    families: tuple[str, ...] = ()        # images with a finding of any check of these families
    ranges: tuple[tuple[str, float, float], ...] = ()   # (column, low, high), inclusive
    search: str = ""                      # case-insensitive substring of image_id
    decisions: tuple[str, ...] = ()       # review status: "undecided", "relabel", "remove", "keep"
    sort_by: str = "image_id"
    descending: bool = False
    page: int = 1                         # 1-based
    page_size: int = DEFAULT_PAGE_SIZE


@dataclass
class GalleryPage:
    rows: pd.DataFrame          # the visible page
    n_match: int                # rows matching the filters
    n_pages: int
    page: int                   # the page shown (clamped)
    warnings: list[str] = field(default_factory=list)
    ids: np.ndarray | None = None   # image_ids of every matching row, in the sorted order (previous / next)
    page_size: int = DEFAULT_PAGE_SIZE

    def page_of(self, image_id: str) -> int | None:
        """The 1-based page that shows ``image_id`` in this order, None when it does not match."""
        if self.ids is None:
            return None
        hit = np.flatnonzero(self.ids == str(image_id))
        return int(hit[0]) // max(self.page_size, 1) + 1 if len(hit) else None


def check_columns(images: pd.DataFrame) -> dict[str, str]:
    """check name -> its boolean column in the images table."""
    return {check: c for c in images.columns
            if (check := check_of_column(c)) is not None and pd.api.types.is_bool_dtype(images[c].dtype)}


def numeric_columns(images: pd.DataFrame) -> list[str]:
    """Columns that can be filtered by range, plotted and sorted numerically (bools excluded)."""
    out = []
    for c in images.columns:
        dt = images[c].dtype
        if pd.api.types.is_bool_dtype(dt):
            continue
        if pd.api.types.is_numeric_dtype(dt):
            out.append(c)
    return out


def families_of_checks(findings: pd.DataFrame) -> dict[str, list[str]]:
    """family -> checks seen in the findings table."""
    if findings is None or findings.empty:
        return {}
    pairs = findings[["family", "check"]].drop_duplicates().sort_values(["family", "check"])
    out: dict[str, list[str]] = {}
    for fam, chk in zip(pairs["family"], pairs["check"]):
        out.setdefault(str(fam), []).append(str(chk))
    return out


def with_registered_checks(fams: dict[str, list[str]]) -> dict[str, list[str]]:
    """``fams`` (family -> checks seen) with every registered family and check added (the registry when it can be
    imported; else the findings are enough)."""
    try:
        from inspect_core.checks import REGISTRY
        for fam, spec in REGISTRY.items():
            fams.setdefault(fam, [])
            for chk in getattr(spec, "checks", {}):
                if chk not in fams[fam]:
                    fams[fam].append(chk)
    except Exception:  # registry not importable: the findings are enough
        pass
    return fams


def _in_values(col: pd.Series, wanted: tuple[str, ...], missing_token: str) -> np.ndarray:
    values = [w for w in wanted if w != missing_token]
    mask = col.isin(values).to_numpy(dtype=bool, na_value=False)
    if missing_token in wanted:
        mask = mask | col.isna().to_numpy(dtype=bool)
    return mask


def filter_mask(images: pd.DataFrame, q: GalleryQuery, families: dict[str, list[str]] | None = None,
                decisions: pd.DataFrame | None = None) -> tuple[np.ndarray, list[str]]:
    """Boolean mask of the rows matching ``q`` and warnings about parts of the query that were ignored."""
    n = len(images)
    mask = np.ones(n, dtype=bool)
    warnings: list[str] = []
    if q.labels and "label" in images.columns:
        mask &= _in_values(images["label"], q.labels, NO_LABEL)
    if q.splits and "split" in images.columns:
        mask &= _in_values(images["split"], q.splits, NO_SPLIT)
    cols = check_columns(images)
    if q.checks or q.families:
        wanted = set(q.checks)
        for fam in q.families:
            wanted.update((families or {}).get(fam, []))
        issue = np.zeros(n, dtype=bool)
        for chk in sorted(wanted):
            if chk in cols:
                issue |= images[cols[chk]].to_numpy(dtype=bool, na_value=False)
        mask &= issue
    for col, lo, hi in q.ranges:
        if col not in images.columns:
            warnings.append(f"column {col!r} is not in this scan; its range filter is ignored")
            continue
        values = pd.to_numeric(images[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            mask &= (values >= lo) & (values <= hi)
    if q.search:
        mask &= images["image_id"].str.contains(q.search, case=False, regex=False).to_numpy(
            dtype=bool, na_value=False)
    if q.decisions:
        dec = decisions if decisions is not None else pd.DataFrame(columns=["image_id", "action"])
        action = images["image_id"].map(dec.set_index("image_id")["action"]) if len(dec) else \
            pd.Series(pd.NA, index=images.index, dtype="object")
        dmask = np.zeros(n, dtype=bool)
        for d in q.decisions:
            if d == "undecided":
                dmask |= action.isna().to_numpy(dtype=bool)
            else:
                dmask |= (action == d).to_numpy(dtype=bool, na_value=False)
        mask &= dmask
    return mask, warnings


def sort_order(df: pd.DataFrame, column: str, descending: bool) -> np.ndarray:
    """Positions of ``df`` sorted by ``column`` (missing values last, ties by image_id)."""
    if column not in df.columns:
        column = "image_id"
    keys = [column] if column == "image_id" else [column, "image_id"]
    asc = [not descending] + [True] * (len(keys) - 1)
    tmp = df[keys].reset_index(drop=True)
    try:
        return tmp.sort_values(keys, ascending=asc, na_position="last", kind="stable").index.to_numpy()
    except TypeError:  # a metadata column mixing types: sort its text
        tmp[column] = tmp[column].astype("string")
        return tmp.sort_values(keys, ascending=asc, na_position="last", kind="stable").index.to_numpy()


def matching_order(images: pd.DataFrame, q: GalleryQuery, families: dict[str, list[str]] | None = None,
                   decisions: pd.DataFrame | None = None) -> tuple[np.ndarray, list[str]]:
    """``(positions, warnings)``: row positions of ``images`` that match ``q``, in its sort order. The page
    number of ``q`` is not used, so one result serves every page (cache it per query)."""
    mask, warnings = filter_mask(images, q, families, decisions)
    where = np.flatnonzero(mask)
    if q.sort_by not in images.columns:
        warnings.append(f"column {q.sort_by!r} is not in this scan; sorted by image_id")
    order = sort_order(images.iloc[where], q.sort_by, q.descending)
    return where[order], warnings


def gallery_page(images: pd.DataFrame, q: GalleryQuery, families: dict[str, list[str]] | None = None,
                 decisions: pd.DataFrame | None = None, order: tuple[np.ndarray, list[str]] | None = None) -> GalleryPage:
    """The rows of the requested page after filtering and sorting (``order``: ``matching_order``'s result
    for ``q`` when the caller has it already)."""
    positions, warnings = order if order is not None else matching_order(images, q, families, decisions)
    n_match = int(len(positions))
    size = max(int(q.page_size), 1)
    n_pages = max((n_match + size - 1) // size, 1)
    page = min(max(int(q.page), 1), n_pages)
    start = (page - 1) * size
    rows = images.iloc[positions[start:start + size]]
    ids = images["image_id"].to_numpy(dtype=object)[positions]
    return GalleryPage(rows=rows, n_match=n_match, n_pages=n_pages, page=page, warnings=list(warnings), ids=ids,
                       page_size=size)


def checks_of_rows(rows: pd.DataFrame) -> list[list[str]]:
    """For each row, the checks that flag it (its ``is_<check>`` columns that are True), sorted."""
    cols = check_columns(rows)
    if not cols or rows.empty:
        return [[] for _ in range(len(rows))]
    names = sorted(cols)
    flags = np.column_stack([rows[cols[n]].to_numpy(dtype=bool, na_value=False) for n in names])
    return [[names[j] for j in np.flatnonzero(r)] for r in flags]
