"""Widgets shared by the pages: filters, the thumbnail grid, the image detail panel, the decision widget.

User text is rendered with ``st.text`` / ``st.dataframe`` or through ``md_escape``; never as HTML.
Images come only from ``inspect_core.thumbs`` (which opens files through ``resolve_inside``).
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from inspect_core.paths import resolve_inside
from inspect_core.review import ACTIONS, ReviewError
from inspect_core.thumbs import display_image, draw_boxes, image_bytes, thumbnails
from inspect_core.ui.query import (DEFAULT_PAGE_SIZE, NO_LABEL, NO_SPLIT, GalleryQuery, check_columns,
                                   numeric_columns)
from inspect_core.ui.text import label_text, md_escape

log = logging.getLogger(__name__)

SELECTED_KEY = "di_selected"
NEW_CLASS = "(new class...)"
DECISION_CHOICES = ("undecided",) + ACTIONS


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


def apply_query_params(families: dict[str, list[str]]) -> None:
    """Links from other pages carry ``?family=...`` / ``?check=...``: preset the filters once per link."""
    qp = st.query_params
    fam, chk = qp.get("family"), qp.get("check")
    token = (fam, chk)
    if (fam or chk) and st.session_state.get("di_f_applied_link") != token:
        st.session_state["di_f_applied_link"] = token
        st.session_state["di_f_families"] = [fam] if fam in families else []
        all_checks = {c for cs in families.values() for c in cs}
        st.session_state["di_f_checks"] = [chk] if chk in all_checks else []


def filter_widgets(images: pd.DataFrame, classes: list[str], families: dict[str, list[str]],
                   container=None, sortable: bool = True) -> GalleryQuery:
    """Filter and sort widgets (in the sidebar by default); returns the query without a page number."""
    c = container if container is not None else st.sidebar
    c.header("Filter")
    keep = {"persist_state": "session"}  # filters survive a page switch and come back
    labels = c.multiselect("Label", label_options(images, classes), key="di_f_labels", **keep)
    splits = c.multiselect("Split", split_options(images), key="di_f_splits", **keep)
    present = check_columns(images)
    flagged = {chk for chk, col in present.items() if images[col].any()}
    fam_opts = sorted(f for f, cs in families.items() if any(ch in flagged for ch in cs))
    fam_opts += [f for f in st.session_state.get("di_f_families", []) if f not in fam_opts]
    fams = c.multiselect("Finding family", fam_opts, key="di_f_families", **keep)
    chk_opts = sorted(flagged)
    chk_opts += [x for x in st.session_state.get("di_f_checks", []) if x not in chk_opts]
    chks = c.multiselect("Check", chk_opts, key="di_f_checks", **keep)
    decisions = c.multiselect("Review status", list(DECISION_CHOICES), key="di_f_decisions", **keep)
    search = c.text_input("Path contains", key="di_f_search", **keep)
    nums = numeric_columns(images)
    ranges: tuple = ()
    range_col = c.selectbox("Range filter on", ["(none)"] + nums, key="di_f_range_col", **keep)
    if range_col and range_col != "(none)":
        values = pd.to_numeric(images[range_col], errors="coerce")
        finite = values[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))]
        if finite.empty:
            c.caption("This column has no values.")
        else:
            lo, hi = float(finite.min()), float(finite.max())
            if lo == hi:
                c.caption(f"Every image has {lo:g}.")
            else:
                sel = c.slider(f"{range_col} between", min_value=lo, max_value=hi, value=(lo, hi),
                               step=(hi - lo) / 200, key=f"di_f_range_{range_col}", **keep)
                ranges = ((range_col, float(sel[0]), float(sel[1])),)
    sort_by, desc = "image_id", False
    if sortable:
        c.header("Sort")
        others = [col for col in images.columns if not pd.api.types.is_bool_dtype(images[col].dtype)]
        sort_opts = ["image_id", "label", "split", "n_findings"] + nums + others
        sort_opts = [s for s in dict.fromkeys(sort_opts) if s in images.columns]
        sort_by = c.selectbox("Sort by", sort_opts, key="di_f_sort", **keep)
        desc = c.toggle("Descending", key="di_f_desc", **keep)
    page_size = c.selectbox("Images per page", [24, DEFAULT_PAGE_SIZE, 96], index=1, key="di_f_page_size", **keep)
    return GalleryQuery(labels=tuple(labels), splits=tuple(splits), checks=tuple(chks), families=tuple(fams),
                        ranges=ranges, search=search or "", decisions=tuple(decisions),
                        sort_by=sort_by or "image_id", descending=bool(desc), page_size=int(page_size))


# -- thumbnails ---------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def select_image(image_id: str) -> None:
    st.session_state[SELECTED_KEY] = image_id


def _select_into(key: str, image_id: str) -> None:
    st.session_state[key] = image_id


def default_caption(rec: dict, stat: str | None = None, action: dict | None = None) -> list[str]:
    """The grid's usual caption lines for one row: label | split | size | findings | stat | decision."""
    iid = str(rec["image_id"])
    parts = [label_text(rec.get("label"))]
    if rec.get("split") is not None and not pd.isna(rec.get("split")):
        parts.append(str(rec["split"]))
    if "width_px" in rec and "height_px" in rec and not pd.isna(rec["width_px"]):
        parts.append(f"{int(rec['width_px'])}x{int(rec['height_px'])} px")
    if rec.get("n_findings"):
        parts.append(f"{int(rec['n_findings'])} findings")
    if stat and stat in rec and stat not in ("image_id", "label", "split", "n_findings"):
        parts.append(f"{stat}={_fmt(rec[stat])}")
    if action and iid in action:
        parts.append(f"decided: {action[iid]}")
    return [" | ".join(parts)]


def thumb_grid(scan, rows: pd.DataFrame, key_prefix: str, n_cols: int = 6, stat: str | None = None,
               decisions: pd.DataFrame | None = None,
               caption: Callable[[dict], list[str]] | None = None,
               selected_key: str = SELECTED_KEY, empty_text: str = "No images match.",
               open_key: Callable[[str], str] | None = None) -> None:
    """A grid of thumbnails with captions; each has an Open button that puts its image_id in
    ``st.session_state[selected_key]``.

    ``caption(record) -> lines`` replaces the default caption (label, split, size, findings, ``stat``,
    decision); each line is shown as text (escaped). ``open_key(image_id)`` names the Open button (default
    ``<key_prefix>_open_<hash>``)."""
    if rows.empty:
        st.info(empty_text)
        return
    ids = [str(i) for i in rows["image_id"]]
    thumbs = thumbnails(scan.dataset.root, ids, scan.workspace)
    action = {}
    if decisions is not None and len(decisions):
        action = dict(zip(decisions["image_id"], decisions["action"]))
    records = rows.to_dict(orient="records")
    for start in range(0, len(records), n_cols):
        cols = st.columns(n_cols)
        for col, rec, th in zip(cols, records[start:start + n_cols], thumbs[start:start + n_cols]):
            with col:
                iid = str(rec["image_id"])
                st.image(th.data, width="stretch")
                lines = list(caption(rec) if caption is not None else default_caption(rec, stat, action))
                if not th.ok:
                    lines[-1:] = [f"{lines[-1]} | [{th.reason}]" if lines else f"[{th.reason}]"]
                for line in lines:
                    st.caption(md_escape(line))
                key = open_key(iid) if open_key is not None else f"{key_prefix}_open_{_short_key(iid)}"
                st.button("Open", key=key, on_click=_select_into, args=(selected_key, iid), help=iid,
                          width="stretch")


# -- decisions ----------------------------------------------------------------------------------
def decision_widget(store, image_id: str, current_label, classes: list[str], suggested_label=None,
                    key_prefix: str = "dw") -> None:
    """Relabel (to a listed class or a new one), remove, keep, with an optional note; undo.

    Every click writes one decision to ``store`` immediately.
    """
    k = f"{key_prefix}_{_short_key(image_id)}"
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
    clicked = None
    if b1.button("Relabel", key=f"{k}_relabel", type="primary"):
        clicked = "relabel"
    if b2.button("Remove", key=f"{k}_remove"):
        clicked = "remove"
    if b3.button("Keep", key=f"{k}_keep"):
        clicked = "keep"
    if b4.button("Undo", key=f"{k}_undo"):
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
            st.toast(f"Saved: {clicked}")
            st.rerun()


# -- the image detail panel ---------------------------------------------------------------------
def _boxes_of(scan, image_id: str) -> list[dict]:
    """The image's boxes; a box is flagged (drawn red) by the box table's bool columns (is_box_outside_image...)."""
    ann = getattr(scan, "annotations", None)
    if ann is None or ann.empty:
        return []
    sub = ann[ann["image_id"] == image_id]
    flag_cols = [c for c in sub.columns if pd.api.types.is_bool_dtype(sub[c].dtype)]
    boxes = []
    for rec in sub.to_dict(orient="records"):
        rec["flagged"] = any(bool(rec[c]) for c in flag_cols if not pd.isna(rec[c]))
        boxes.append(rec)
    return boxes


def _file_version(root, image_id: str) -> tuple[int, int]:
    """``(mtime_ns, size_bytes)`` of the image's file, ``(-1, -1)`` when it cannot be stat'ed (the display
    then says why); part of the display cache key so an edited file is decoded afresh."""
    path = resolve_inside(root, image_id)
    try:
        st_ = os.stat(path) if path is not None else None
    except OSError:
        st_ = None
    return (st_.st_mtime_ns, st_.st_size) if st_ is not None else (-1, -1)


@st.cache_data(show_spinner=False, max_entries=128)
def _display_jpeg(root: str, image_id: str, max_side_px: int, mtime_ns: int, size_bytes: int,
                  fingerprint: str, with_boxes: bool, _scan) -> tuple[bytes | None, str | None]:
    img, reason = image_figure(_scan, image_id, max_side_px, with_boxes)
    return (image_bytes(img), None) if img is not None else (None, reason)


def display_jpeg(scan, image_id: str, max_side_px: int = 1024, with_boxes: bool = True) -> tuple[bytes | None, str | None]:
    """``(JPEG bytes, None)`` of the image shown large (boxes drawn), or ``(None, reason)``; decoded once per
    (root, image_id, max side, file mtime and size, scan fingerprint), so reruns (a keystroke in the note
    field) do not decode it again."""
    root = str(scan.dataset.root)
    mtime_ns, size_bytes = _file_version(root, image_id)
    return _display_jpeg(root, str(image_id), int(max_side_px), mtime_ns, size_bytes,
                         str(getattr(scan, "fingerprint", "")), bool(with_boxes), scan)


def image_figure(scan, image_id: str, max_side_px: int = 1024, with_boxes: bool = True):
    """``(PIL image with boxes drawn, reason)`` for showing one image large."""
    img, scale, reason = display_image(scan.dataset.root, image_id, max_side_px=max_side_px)
    if img is None:
        return None, reason
    if with_boxes:
        boxes = _boxes_of(scan, image_id)
        if boxes:
            img = draw_boxes(img, boxes, scale=scale, width_px=max(2, int(round(2 / max(scale, 0.25)))))
    return img, None


def show_image(scan, image_id: str, max_side_px: int = 1024, caption: str | None = None) -> None:
    data, reason = display_jpeg(scan, image_id, max_side_px)
    if data is None:
        st.warning(md_escape(f"Cannot show this image: {reason}."))
    else:
        st.image(data, width="stretch")
    if caption is not None:
        st.caption(md_escape(caption))


def duplicate_partners(findings: pd.DataFrame, image_id: str) -> pd.DataFrame:
    """Other images sharing a duplicate / leakage group with ``image_id``: image_id, check, group_id."""
    if findings is None or findings.empty or "group_id" not in findings.columns:
        return pd.DataFrame(columns=["image_id", "check", "group_id"])
    mine = findings[(findings["image_id"] == image_id) & findings["group_id"].notna()]
    if mine.empty:
        return pd.DataFrame(columns=["image_id", "check", "group_id"])
    groups = set(mine["group_id"].tolist())
    others = findings[findings["group_id"].isin(groups) & (findings["image_id"] != image_id)]
    return others[["image_id", "check", "group_id"]].drop_duplicates("image_id").reset_index(drop=True)


def stats_table(row: pd.Series) -> pd.DataFrame:
    """One image's columns as a two-column text table (flags that are False left out)."""
    items = []
    for k, v in row.items():
        if isinstance(v, (bool, np.bool_)) and not v:
            continue
        items.append((str(k), _fmt(v)))
    return pd.DataFrame(items, columns=["column", "value"])


def image_detail(scan, image_id: str, store, key_prefix: str = "detail", suggested_label=None,
                 show_close: bool = True) -> None:
    """Everything about one image: large view with boxes, stats, findings, duplicates, decision."""
    images = scan.images
    match = images[images["image_id"] == image_id]
    if match.empty:
        st.warning("This image is not in the current scan.")
        return
    row = match.iloc[0]
    with st.container(border=True):
        head, close = st.columns([6, 1])
        head.text(image_id)
        if show_close and close.button("Close", key=f"{key_prefix}_close"):
            st.session_state.pop(SELECTED_KEY, None)
            st.rerun()
        left, right = st.columns([3, 2])
        with left:
            show_image(scan, image_id)
        with right:
            st.text(f"Label: {label_text(row.get('label'))}   Split: {label_text(row.get('split'))}")
            path = scan.dataset.path_of(image_id) if hasattr(scan.dataset, "path_of") else None
            st.text(f"Path: {path if path is not None else '(outside the dataset root: not opened)'}")
            decision_widget(store, image_id, row.get("label"), list(scan.dataset.classes),
                            suggested_label=suggested_label, key_prefix=f"{key_prefix}_dw")
        fnd = scan.findings[scan.findings["image_id"] == image_id] if not scan.findings.empty else scan.findings
        st.subheader(f"Findings ({len(fnd)})")
        if fnd.empty:
            st.text("No findings for this image.")
        else:
            st.dataframe(fnd[["check", "family", "score", "detail"]], hide_index=True, width="stretch")
        partners = duplicate_partners(scan.findings, image_id)
        if not partners.empty:
            st.subheader(f"Duplicates and leakage partners ({len(partners)})")
            shown = partners.head(6)
            cols = st.columns(len(shown) + 1)
            with cols[0]:
                show_image(scan, image_id, max_side_px=320, caption=f"this image: {label_text(row.get('label'))}")
            lab = images.set_index("image_id")["label"] if "label" in images.columns else None
            for col, rec in zip(cols[1:], shown.to_dict(orient="records")):
                with col:
                    other_label = label_text(lab.get(rec["image_id"])) if lab is not None else ""
                    show_image(scan, rec["image_id"], max_side_px=320,
                               caption=f"{rec['image_id']} ({other_label}, {rec['check']})")
        with st.expander("All stats"):
            st.dataframe(stats_table(row), hide_index=True, width="stretch")
        hist = store.history(image_id)
        if not hist.empty:
            with st.expander(f"Decision history ({len(hist)})"):
                st.dataframe(hist[["action", "old_label", "new_label", "note", "decided_at"]],
                             hide_index=True, width="stretch")
