"""Widgets shared by the pages: filters, the pager, the thumbnail grid, the decision widget, bulk decisions.
The image viewer (one image large, its detail, previous / next) is ``inspect_core.ui.viewer``.

User text is rendered with ``st.text`` / ``st.dataframe`` / ``st.table`` or through ``md_escape``; never as HTML.
Images come only from ``inspect_core.thumbs`` (which opens files through ``resolve_inside``).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from inspect_core.review import ACTIONS, ReviewError
from inspect_core.thumbs import thumbnails
from inspect_core.ui.query import (DEFAULT_PAGE_SIZE, NO_LABEL, NO_SPLIT, PAGE_SIZES, GalleryQuery, check_columns,
                                   checks_of_rows, numeric_columns)
from inspect_core.ui import bulk, state, tile_grid
from inspect_core.ui.text import label_text, md_escape

log = logging.getLogger(__name__)

SELECTED_KEY = "di_selected"
SELECTION_KEY = "di_selected_ids"     # image_ids ticked in a grid for a bulk action (a set)
NEW_CLASS = "(new class...)"
DECISION_CHOICES = ("undecided",) + ACTIONS
# Filter widgets are bound to the URL (bind="query-params"): the key is the query parameter's name, so a
# reload, a bookmark or a shared link opens the same view. ``FILTER_KEYS`` are dropped with the dataset.
FILTER_KEYS = ("label", "split", "family", "check", "status", "path", "range_on", "sort", "desc", "per_page",
               "tile", "page")
RANGE_KEY_PREFIX = "range_"
# Tile size -> (columns of the grid, thumbnail side in px). "small" shows 12 x 4 tiles above the fold at 1400x900.
TILE_SIZES = {"small": (12, 128), "medium": (8, 192), "large": (5, 320)}
DEFAULT_TILE = "small"
# Keyboard shortcuts of the image viewer (Streamlit's button shortcuts; "R" and "C" are reserved by Streamlit).
KEYS = {"previous": "Left", "next": "Right", "relabel": "L", "remove": "D", "keep": "K", "undo": "U"}


def _short_key(text: str) -> str:
    return hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:10]


# -- filters ------------------------------------------------------------------------------------
def label_options(images: pd.DataFrame, classes: list[str]) -> list[str]:
    seen = [str(v) for v in images["label"].dropna().unique()] if "label" in images.columns else []
    opts = list(dict.fromkeys([str(c) for c in classes] + sorted(seen)))
    if "label" in images.columns and images["label"].isna().any():
        opts.append(NO_LABEL)
    return opts


def split_options(images: pd.DataFrame) -> list[str]:
    if "split" not in images.columns:
        return []
    opts = sorted(str(v) for v in images["split"].dropna().unique())
    if images["split"].isna().any():
        opts.append(NO_SPLIT)
    return opts


def range_key(column: str) -> str:
    """The URL-bound key of the range slider of ``column`` (letters, digits and _ only)."""
    return RANGE_KEY_PREFIX + "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(column))


def filter_widgets(images: pd.DataFrame, classes: list[str], families: dict[str, list[str]],
                   container=None, sortable: bool = True) -> GalleryQuery:
    """Filter and sort widgets (in the sidebar by default), each bound to a query parameter of the URL;
    returns the query without a page number."""
    c = container if container is not None else st.sidebar
    c.header("Filter")
    keep = {"persist_state": "session", "bind": "query-params"}
    labels = c.multiselect("Label", label_options(images, classes), key="label", **keep)
    splits = c.multiselect("Split", split_options(images), key="split", **keep)
    present = check_columns(images)
    flagged = {chk for chk, col in present.items() if images[col].any()}
    fam_opts = sorted(f for f, cs in families.items() if any(ch in flagged for ch in cs))
    fam_opts += [f for f in st.session_state.get("family", []) or [] if f not in fam_opts and f in families]
    fams = c.multiselect("Finding family", fam_opts, key="family", **keep)
    chk_opts = sorted(flagged)
    all_checks = {x for cs in families.values() for x in cs}
    chk_opts += [x for x in st.session_state.get("check", []) or [] if x not in chk_opts and x in all_checks]
    chks = c.multiselect("Check", chk_opts, key="check", **keep)
    decisions = c.multiselect("Review status", list(DECISION_CHOICES), key="status", **keep)
    search = c.text_input("Path contains", key="path", **keep)
    nums = numeric_columns(images)
    ranges: tuple = ()
    range_col = c.selectbox("Range filter on", ["(none)"] + nums, key="range_on", **keep)
    if range_col and range_col != "(none)":
        values = pd.to_numeric(images[range_col], errors="coerce")
        finite = values[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))]
        if finite.empty:
            c.caption("This column has no values.")
        else:
            lo, hi = float(finite.min()), float(finite.max())
            if lo == hi:
                c.caption(md_escape(f"Every image has {lo:g}."))
            else:
                sel = c.slider(md_escape(f"{range_col} between"), min_value=lo, max_value=hi, value=(lo, hi),
                               step=(hi - lo) / 200, key=range_key(range_col), **keep)
                ranges = ((range_col, float(sel[0]), float(sel[1])),)
    sort_by, desc = "image_id", False
    if sortable:
        c.header("Sort")
        others = [col for col in images.columns if not pd.api.types.is_bool_dtype(images[col].dtype)]
        sort_opts = ["image_id", "label", "split", "n_findings"] + nums + others
        sort_opts = [s for s in dict.fromkeys(sort_opts) if s in images.columns]
        sort_by = c.selectbox("Sort by", sort_opts, key="sort", **keep)
        desc = c.toggle("Descending", key="desc", **keep)
    c.header("Show")
    page_size = c.selectbox("Images per page", list(PAGE_SIZES), index=PAGE_SIZES.index(DEFAULT_PAGE_SIZE),
                            key="per_page", **keep)
    return GalleryQuery(labels=tuple(labels), splits=tuple(splits), checks=tuple(chks), families=tuple(fams),
                        ranges=ranges, search=search or "", decisions=tuple(decisions),
                        sort_by=sort_by or "image_id", descending=bool(desc), page_size=int(page_size))


PAGE_KEY = "page"
GOTO_PAGE_KEY = "di_gallery_goto_page"   # the page the viewer moved to, applied by the pager
IMAGE_PARAM = "image"


def pager(n_pages: int, query: GalleryQuery) -> int:
    """The page shown (bound to the URL as ``page``); a new filter or sort starts again at page 1."""
    signature = repr(replace(query, page=1))
    before = st.session_state.get("di_gallery_signature")
    st.session_state["di_gallery_signature"] = signature
    if before is not None and before != signature:
        st.session_state[PAGE_KEY] = 1
        viewer_closed()   # a filter or sort was changed on the page: the (modal) viewer was closed
    goto = st.session_state.pop(GOTO_PAGE_KEY, None)
    if goto:
        st.session_state[PAGE_KEY] = int(goto)
    current = st.session_state.get(PAGE_KEY)
    if isinstance(current, int) and current > n_pages:
        st.session_state[PAGE_KEY] = n_pages
    return int(st.pagination(n_pages, key=PAGE_KEY, bind="query-params", persist_state="session") or 1)


def viewer_closed(selected_key: str = SELECTED_KEY) -> None:
    """The page was used while the server still had the viewer open (its dismiss lost in the browser, see
    ``tile_grid._on_tick``): forget the open image and the page the viewer had moved the grid to."""
    st.session_state.pop(selected_key, None)
    st.session_state.pop(GOTO_PAGE_KEY, None)


def url_selected_image() -> str | None:
    """The image open in the viewer, kept in the URL (``image``): a reload or a link opens it again."""
    if not st.session_state.get("di_image_param_read"):
        st.session_state["di_image_param_read"] = True
        from_url = st.query_params.get(IMAGE_PARAM)
        if from_url and not st.session_state.get(SELECTED_KEY):
            st.session_state[SELECTED_KEY] = from_url
    selected = st.session_state.get(SELECTED_KEY)
    if selected and st.query_params.get(IMAGE_PARAM) != selected:
        st.query_params[IMAGE_PARAM] = selected
    elif not selected and IMAGE_PARAM in st.query_params:
        del st.query_params[IMAGE_PARAM]
    return selected


def tile_size_widget(container=None) -> tuple[int, int]:
    """The tile size control (bound to the URL as ``tile``): ``(columns, thumbnail px)``."""
    c = container if container is not None else st.sidebar
    size = c.segmented_control("Tile size", list(TILE_SIZES), default=DEFAULT_TILE, key="tile",
                               persist_state="session", bind="query-params") or DEFAULT_TILE
    return TILE_SIZES[size]


# -- thumbnails ---------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def select_image(image_id: str) -> None:
    st.session_state[SELECTED_KEY] = image_id


def default_caption(rec: dict, stat: str | None = None, action: dict | None = None,
                    checks: list[str] | None = None) -> list[str]:
    """The grid's caption lines for one row: the file; then its checks (first, so a narrow tile still shows
    them), label | split | size | stat | decision."""
    iid = str(rec["image_id"])
    parts = [", ".join(checks)] if checks else []
    parts.append(label_text(rec.get("label")))
    if rec.get("split") is not None and not pd.isna(rec.get("split")):
        parts.append(str(rec["split"]))
    if "width_px" in rec and "height_px" in rec and not pd.isna(rec["width_px"]):
        parts.append(f"{int(rec['width_px'])}x{int(rec['height_px'])} px")
    if stat and stat in rec and stat not in ("image_id", "label", "split", "n_findings"):
        parts.append(f"{stat}={_fmt(rec[stat])}")
    if action and iid in action:
        parts.insert(0, f"decided: {action[iid]}")
    return [iid.rsplit("/", 1)[-1], " | ".join(parts)]


class Selection(set):
    """The bulk selection: a set of image_ids that counts its changes (``version``), so what is derived from it
    (how many selected images do not match the filters) is worked out once per change, not on every rerun (a
    pass over 773,073 selected ids of a 10,000,000-row scan: seconds)."""

    version = 0


def _counted(name: str):
    method = getattr(set, name)

    def changed(self, *args):
        self.version += 1
        out = method(self, *args)
        return self if name.startswith("__i") else out
    changed.__name__ = name
    return changed


for _name in ("add", "discard", "remove", "pop", "clear", "update", "difference_update", "intersection_update",
              "symmetric_difference_update", "__ior__", "__iand__", "__isub__", "__ixor__"):
    setattr(Selection, _name, _counted(_name))


def selection() -> Selection:
    """The image_ids ticked for a bulk action (kept per dataset in the session)."""
    sel = st.session_state.get(SELECTION_KEY)
    if not isinstance(sel, Selection):
        sel = Selection(sel or ())
        st.session_state[SELECTION_KEY] = sel
    return sel


def _n_outside(sel: Selection, matches, key: str) -> int:
    """How many of ``sel`` a big scan's ``matches`` (``lazy_query.LazyMatches``) leave out, kept in the session
    until the selection or the matches change."""
    token = (id(sel), sel.version, matches.key)
    memo = st.session_state.get(key)
    if memo is None or memo[0] != token:
        memo = (token, matches.count_outside(sel))
        st.session_state[key] = memo
    return memo[1]


_PAGE_CSS = '<style>[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }</style>'


def thumb_grid(scan, rows: pd.DataFrame, key_prefix: str, n_cols: int = 6, stat: str | None = None,
               decisions: pd.DataFrame | None = None,
               caption: Callable[[dict], list[str]] | None = None,
               selected_key: str = SELECTED_KEY, empty_text: str = "No images match.",
               thumb_px: int | None = None, selectable: bool = False) -> None:
    """A compact grid of thumbnails with captions (the file and its checks first); a click on a thumbnail or its
    Open button puts its image_id in ``st.session_state[selected_key]``; when ``selectable``, a tick box adds
    it to the bulk selection (``selection()``; shift-click ticks a range). Drawn as one element
    (``tile_grid``, key ``<key_prefix>_grid``): every page's grid is this one.

    ``caption(record) -> lines`` replaces the default caption; each line is shown as text (never HTML)."""
    if rows.empty:
        st.info(empty_text)
        return
    ids = [str(i) for i in rows["image_id"]]
    size_px = int(thumb_px or 160)
    thumbs = thumbnails(scan.dataset.root, ids, scan.workspace, size_px=size_px)
    action = {}
    if decisions is not None and len(decisions):
        action = dict(zip(decisions["image_id"], decisions["action"]))
    checks = checks_of_rows(rows) if caption is None else [None] * len(rows)
    sel = selection() if selectable else set()
    records = rows.to_dict(orient="records")
    lines = [list(caption(rec) if caption is not None else default_caption(rec, stat, action, chk))
             for rec, chk in zip(records, checks)]
    st.html(_PAGE_CSS)
    payload = tile_grid.grid_payload(rows, thumbs, lines, n_cols, sel, selectable)
    tile_grid.mount(payload, key=f"{key_prefix}_grid", selected_key=selected_key, selection=selection,
                    viewer_closed=lambda: viewer_closed(selected_key))


# -- decisions ----------------------------------------------------------------------------------
def decision_widget(store, image_id: str, current_label, classes: list[str], suggested_label=None,
                    key_prefix: str = "dw", shortcuts: bool = False,
                    on_decided: Callable[[], None] | None = None) -> None:
    """Relabel (to a listed class or a new one), remove, keep, with an optional note; undo.

    Every click writes one decision to ``store`` immediately; the note field is emptied after a save.
    ``shortcuts``: the buttons answer the viewer's keys (``KEYS``). ``on_decided()`` runs after a saved
    decision, before the rerun (the viewer moves on to the next image)."""
    k = f"{key_prefix}_{_short_key(image_id)}"
    if st.session_state.pop(f"{k}_clear_note", False):
        st.session_state.pop(f"{k}_note", None)
    current = store.decision_for(image_id)
    if current:
        what = current["action"] + (f" -> {current['new_label']}" if current["action"] == "relabel" else "")
        st.text(f"Decision: {what} ({current['decided_at'][:19]} UTC)")
    else:
        st.text("Decision: none yet")
    options = list(dict.fromkeys([str(c) for c in classes]))
    default = suggested_label if suggested_label in options else (
        current_label if current_label in options else (options[0] if options else None))
    choice = st.selectbox("New label", options + [NEW_CLASS],
                          index=(options + [NEW_CLASS]).index(default) if default in options else len(options),
                          key=f"{k}_label")
    new_class = ""
    if choice == NEW_CLASS:
        new_class = st.text_input("New class name", key=f"{k}_newclass")
    note = st.text_input("Note (optional)", key=f"{k}_note")
    b1, b2, b3, b4 = st.columns(4)
    old = None if current_label is None or pd.isna(current_label) else str(current_label)
    keys = KEYS if shortcuts else {}
    clicked = None
    if b1.button("Relabel", key=f"{k}_relabel", type="primary", shortcut=keys.get("relabel")):
        clicked = "relabel"
    if b2.button("Remove", key=f"{k}_remove", shortcut=keys.get("remove")):
        clicked = "remove"
    if b3.button("Keep", key=f"{k}_keep", shortcut=keys.get("keep")):
        clicked = "keep"
    if b4.button("Undo", key=f"{k}_undo", shortcut=keys.get("undo")):
        if store.undo(image_id) is None:
            st.info("Nothing to undo for this image.")
        else:
            st.toast("Last decision undone")
            st.rerun()
    if clicked:
        new_label = (new_class.strip() if choice == NEW_CLASS else choice) if clicked == "relabel" else None
        try:
            store.decide(image_id, clicked, old_label=old, new_label=new_label, note=note or None)
        except ReviewError as exc:
            st.error(md_escape(str(exc)))
        else:
            st.session_state[f"{k}_clear_note"] = True
            st.toast(md_escape(f"Saved: {clicked} {image_id}"))
            if on_decided is not None:
                on_decided()
            st.rerun()



# -- bulk decisions -------------------------------------------------------------------------------
def _apply_bulk(store, rows: list[dict], note: str | None, what: str) -> str | None:
    """Write ``rows`` as one batch; toast what was done; returns the batch id."""
    try:
        batch = store.decide_many(rows, note=note or None, source="bulk")
    except ReviewError as exc:
        st.error(md_escape(str(exc)))
        return None
    if batch is not None:
        st.toast(md_escape(f"Saved in one step: {what} ({bulk.describe_rows(rows)}). Undo it with "
                           "'Undo last bulk action'."))
    return batch


def keep_best_button(scan, store, image_id: str, key: str) -> None:
    """"Keep the best, remove the rest" for the duplicate group(s) of ``image_id``, with the rule stated."""
    groups = bulk.groups_of(scan.findings, image_id)
    if not groups:
        return
    rows, kept = bulk.keep_best_rows(state.row_source(scan), groups)
    if st.button(f"Keep the best, remove the rest ({bulk.describe_rows(rows)})", key=key,
                 help=md_escape(f"Best: {', '.join(kept)}; {bulk.BEST_RULE}.")):
        if _apply_bulk(store, rows, f"keep the best of duplicate group {', '.join(groups)}", "keep the best"):
            st.rerun()
    st.caption(md_escape(f"Best ({bulk.BEST_RULE}): {', '.join(kept)}"))


def undo_last_bulk(store, key: str) -> None:
    """A button that undoes the newest bulk action still in force, all of it in one step."""
    last = store.last_batch()
    if last is None:
        return
    what = ", ".join(f"{a} {n:,}" for a, n in last["actions"].items())
    if st.button(f"Undo last bulk action ({what})", key=key, icon=":material/undo:",
                 help=md_escape(f"{last['note'] or 'no note'}; {last['decided_at'][:19]} UTC")):
        n = store.undo_batch(last["batch_id"])
        st.toast(f"Undone: {n:,} decisions")
        st.rerun()


def bulk_bar(scan, store, matching_ids: np.ndarray, page_ids, key: str = "di_bulk",
             matching_positions: np.ndarray | None = None) -> None:
    """Select tiles (tick boxes, this page, everything matching the filters: ``matching_ids``, at row positions
    ``matching_positions`` of ``scan.images`` when the caller has them), then relabel / remove / keep them in
    one action with one note; undo the last bulk action in one step."""
    sel = selection()
    with st.container(border=True, key=f"{key}_bar"):
        row = st.container(horizontal=True, vertical_alignment="center", gap="small")
        row.text(f"{len(sel):,} selected")
        if row.button("Select this page", key=f"{key}_page"):
            sel.update(map(str, page_ids))
            st.rerun()
        if row.button(f"Select all {len(matching_ids):,} matching", key=f"{key}_all"):
            lazy = hasattr(matching_ids, "count_outside")
            n_out = _n_outside(sel, matching_ids, f"{key}_outside") if lazy else 0
            sel.update(map(str, matching_ids))
            if lazy:   # adding matches leaves out no more than before: known without a pass over the selection
                st.session_state[f"{key}_outside"] = ((id(sel), sel.version, matching_ids.key), n_out)
            st.rerun()
        if row.button("Clear selection", key=f"{key}_clear", disabled=not sel):
            sel.clear()
            st.rerun()
        if not sel:
            undo_last_bulk(store, key=f"{key}_undo")
            return
        if st.session_state.pop(f"{key}_clear_note", False):
            st.session_state.pop(f"{key}_note", None)
        act = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
        action = act.segmented_control("Action", list(ACTIONS), default="remove", key=f"{key}_action")
        new_label = None
        if action == "relabel":
            new_label = act.selectbox("New label", list(dict.fromkeys(map(str, scan.dataset.classes))),
                                      key=f"{key}_label")
        note = act.text_input("Note for all", key=f"{key}_note")
        if act.button(f"Apply to {len(sel):,} selected", key=f"{key}_apply", type="primary", disabled=not action):
            ids = sorted(sel)
            rows = bulk.decision_rows(state.row_source(scan), ids, action, new_label)
            if _apply_bulk(store, rows, note, f"{action} {len(rows):,} selected"):
                sel.clear()
                st.session_state[f"{key}_clear_note"] = True
                st.rerun()
        ids = sel
        if hasattr(matching_ids, "count_outside"):   # a big scan's matches (lazy_query.LazyMatches)
            n_hidden = _n_outside(sel, matching_ids, f"{key}_outside")
        elif matching_positions is None:
            # hashed over the selection (a few ids): np.isin sorted the 100,000 matching ids (0.4-0.7 s a rerun on
            # the Model triage page); an Index of the selection with pandas' string dtype tests each one in Python
            n_hidden = len(ids) - int(pd.Index(np.asarray(matching_ids, dtype=object), dtype=object).isin(ids).sum())
        else:   # integers: comparing strings against 100,000 matching ids took 0.5-0.9 s a rerun
            matching = np.zeros(len(scan.images) + 1, dtype=bool)   # the last slot: not in the scan
            matching[np.asarray(matching_positions, dtype=np.int64)] = True
            pos = state.image_positions(scan)
            n_hidden = len(ids) - int(matching[[pos.get(i, -1) for i in ids]].sum())
        if n_hidden:
            st.caption(f"{n_hidden:,} of the selected images do not match the current filters; they are included.")
        undo_last_bulk(store, key=f"{key}_undo")


def _family_groups(scan, family: str, fam, index) -> tuple[dict, list[dict]]:
    """The family's duplicate groups and the rows that keep the best of each; with a ``FindingsIndex``, made once
    per findings table and family (kept on the index: at 10,000,000 images 200,000 members each rerun)."""
    if family not in ("duplicate", "leakage"):
        return {}, []
    if index is None:
        groups = bulk.duplicate_groups(fam)
        return groups, (bulk.keep_best_rows(state.row_source(scan), groups)[0] if groups else [])
    memo_key = ("groups", family)
    if memo_key not in index.memo:
        groups = bulk.duplicate_groups(index.frame(family))
        index.memo[memo_key] = groups, (bulk.keep_best_rows(state.row_source(scan), groups)[0] if groups else [])
    return index.memo[memo_key]


def findings_bulk(scan, store, family: str, key: str = "di_findings_bulk", fam=None, index=None) -> None:
    """Bulk decisions for one family of findings, each one batch (one undo step): keep the best of every
    duplicate group (or of one), or decide every image of a check (e.g. remove all integrity findings).
    ``fam``: the family's findings when the caller has them; ``index``: the findings' ``FindingsIndex`` (a big
    table: checks, counts and ids from its codes, no pandas pass over the family per rerun)."""
    if index is None:
        fam = fam if fam is not None else scan.findings[scan.findings["family"] == family]
        checks = sorted(c for c in fam["check"].unique() if (fam.loc[fam["check"] == c, "image_id"] != "").any())
    else:
        checks = index.checks_with_images(family)
    if not checks:
        return
    with st.expander(f"Bulk decisions for {family} (one undo step each)", expanded=family == "integrity"):
        groups, rows = _family_groups(scan, family, fam, index)
        if groups:
            st.caption(md_escape(f"Keep the best of each duplicate group: {bulk.BEST_RULE}."))
            if st.button(f"Keep the best of all {len(groups):,} groups, remove the rest ({bulk.describe_rows(rows)})",
                         key=f"{key}_best_all"):
                if _apply_bulk(store, rows, f"keep the best of every {family} group", "keep the best"):
                    st.rerun()
            g1, g2 = st.columns([3, 2], vertical_alignment="bottom")
            gid = g1.selectbox("One group", list(groups), key=f"{key}_group",
                               format_func=lambda g: f"{g}: {len(groups[g])} images")
            if gid is not None:
                one, best = bulk.keep_best_rows(state.row_source(scan), {gid: groups[gid]})
                if g2.button(f"Keep the best of this group ({bulk.describe_rows(one)})", key=f"{key}_best_one",
                             help=md_escape(f"Best: {best[0]}")):
                    if _apply_bulk(store, one, f"keep the best of group {gid}", "keep the best"):
                        st.rerun()
        c1, c2, c3, c4 = st.columns([2, 1, 2, 2], vertical_alignment="bottom")
        chk = c1.selectbox("Every image of", [f"all {family} checks"] + checks, key=f"{key}_check")
        action = c2.selectbox("Action", ["remove", "keep"], key=f"{key}_action")
        note = c3.text_input("Note", key=f"{key}_note", value=f"bulk: {chk}")
        wanted = () if chk.startswith("all ") else (chk,)
        if index is None:
            ids = bulk.finding_image_ids(fam, checks=wanted, families=(family,) if chk.startswith("all ") else ())
            n_ids = len(ids)
        else:   # the count from the codes; the ids themselves only when the button is pressed
            ids, n_ids = None, index.n_image_ids(family, wanted)
        if c4.button(f"{action.capitalize()} {n_ids:,} images", key=f"{key}_apply", type="primary"):
            ids = ids if ids is not None else index.image_ids(family, wanted)
            if _apply_bulk(store, bulk.decision_rows(state.row_source(scan), ids, action), note, f"{action} {chk}"):
                st.rerun()
        undo_last_bulk(store, key=f"{key}_undo")


# -- browser-side loading -------------------------------------------------------------------------
PRELOAD_KEY = "di_chart_preload"


def preload_chart_library() -> None:
    """An empty chart, hidden, at the end of a page: the browser tab loads the chart library (plotly.js, a few
    MB of script loaded on the first chart of a tab) while the user looks at this page, so the first
    Distributions visit draws its charts at once (that load was 3-5 s of a first visit on the loaded bench
    machine; BENCHMARKS.md "App (issue 10)")."""
    with st.container(key=PRELOAD_KEY):
        # Laid out (a chart of width 0 is never drawn, so its library never loads) but not seen.
        st.html(f"<style>.st-key-{PRELOAD_KEY} {{ position: fixed; left: 0; bottom: 0; width: 240px; height: 8px;"
                " overflow: hidden; opacity: 0; pointer-events: none; }</style>")
        st.plotly_chart({"data": [{"type": "scatter", "x": [0], "y": [0]}], "layout": {"height": 10}},
                        key=f"{PRELOAD_KEY}_figure")
