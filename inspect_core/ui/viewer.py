"""The image viewer: one image shown large with its boxes, stats, findings, duplicate partners and the decision
widget, in a dialog that steps through the page's images (previous / next, keyboard shortcuts ``widgets.KEYS``).

User text is rendered with ``st.text`` / ``st.table`` or through ``md_escape``; never as HTML. The viewer's small
tables are ``st.table`` (plain HTML, drawn at once). Images come only from ``inspect_core.thumbs`` (which opens
files through ``resolve_inside``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from inspect_core import storage
from inspect_core.thumbs import display_image, draw_boxes, image_bytes
from inspect_core.ui import state
from inspect_core.ui.lazy_query import LazyOrder
from inspect_core.ui.query import DEFAULT_PAGE_SIZE
from inspect_core.ui.text import label_text, md_escape
from inspect_core.ui.widgets import (GOTO_PAGE_KEY, IMAGE_PARAM, KEYS, SELECTED_KEY, _fmt, _short_key,
                                     decision_widget, keep_best_button)

ADVANCE_KEY = "di_viewer_advance"     # the viewer moves to the next image after a decision
KEYS_HELP = ("Keys: \u2190 / \u2192 previous / next, L relabel, D remove, K keep, U undo, Esc close "
             "(not while typing in a field)")


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
    version = storage.file_version(storage.as_root(root), image_id)     # a local file or an object (s3://...)
    return (version.stamp, version.size_bytes) if version is not None else (-1, -1)


@st.cache_data(show_spinner=False, max_entries=128)
def _display_jpeg(root: str, image_id: str, max_side_px: int, mtime_ns: int, size_bytes: int,
                  fingerprint: str, with_boxes: bool, _scan) -> tuple[bytes | None, str | None]:
    img, reason = image_figure(_scan, image_id, max_side_px, with_boxes)
    return (image_bytes(img), None) if img is not None else (None, reason)


def display_jpeg(scan, image_id: str, max_side_px: int = 1024,
                 with_boxes: bool = True) -> tuple[bytes | None, str | None]:
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


def findings_of(scan, image_id: str) -> pd.DataFrame:
    """The scan's findings of ``image_id`` (table order): a lookup in the findings' ``FindingsIndex`` for a big
    findings table (``state.findings_index``), else a filter of the frame."""
    findings = scan.findings
    if findings is None or findings.empty:
        return findings
    index = state.findings_index(str(scan.fingerprint), findings, getattr(scan, "workspace", None))
    return index.of_image(image_id) if index is not None else findings[findings["image_id"] == image_id]


def duplicate_partners(findings: pd.DataFrame, image_id: str, mine: pd.DataFrame | None = None) -> pd.DataFrame:
    """Other images sharing a duplicate / leakage group with ``image_id``: image_id, check, group_id (``mine``:
    ``image_id``'s findings when the caller has them)."""
    if findings is None or findings.empty or "group_id" not in findings.columns:
        return pd.DataFrame(columns=["image_id", "check", "group_id"])
    mine = findings[findings["image_id"] == image_id] if mine is None else mine
    mine = mine[mine["group_id"].notna()]
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


def suggested_label_from_evidence(scan, image_id: str, own: pd.DataFrame | None = None) -> str | None:
    """The label the findings point to: for an image whose exact or near duplicate carries another label
    (``conflicting_labels``), the most common label among those partners; else None (``own``: the image's
    findings, ``findings_of``, when the caller has them)."""
    findings = scan.findings
    if findings is None or findings.empty or "label" not in state.row_source(scan).columns:
        return None
    own = findings_of(scan, image_id) if own is None else own
    if not (own["check"] == "conflicting_labels").any():
        return None
    partners = duplicate_partners(findings, image_id, own)
    labels = _labels_of(scan, [image_id] + partners["image_id"].tolist())
    own = labels.get(image_id)
    other = [labels.get(i) for i in partners["image_id"]]
    other = [str(x) for x in other if x is not None and not pd.isna(x) and x != own]
    if not other:
        return None
    return pd.Series(other).value_counts().index[0]


def _row_of(scan, image_id: str) -> pd.Series | None:
    """The image's row of the scan's table (from the memory-mapped table of a big scan), None when absent."""
    source = state.row_source(scan)
    if isinstance(source, pd.DataFrame):
        match = source[source["image_id"] == image_id]
    else:
        match = source.rows_of([image_id])
    return None if match.empty else match.iloc[0]


def _labels_of(scan, image_ids) -> dict:
    """image_id -> label for ``image_ids`` (only those rows looked up)."""
    source = state.row_source(scan)
    if "label" not in source.columns:
        return {}
    if isinstance(source, pd.DataFrame):
        rows = source[source["image_id"].isin(list(image_ids))].drop_duplicates("image_id")
        return dict(zip(rows["image_id"], rows["label"]))
    return source.values_of(image_ids, "label")


def _index_in(ids, image_id: str) -> int | None:
    """The position of ``image_id`` in ``ids`` (an array of ids, or a big scan's ``LazyOrder``), else None."""
    if isinstance(ids, LazyOrder):
        return ids.index(image_id)
    hit = np.flatnonzero(ids == image_id) if len(ids) else np.array([], dtype=int)
    return int(hit[0]) if len(hit) else None


def _close_viewer(selected_key: str = SELECTED_KEY) -> None:
    st.session_state.pop(selected_key, None)


def _step(ids, delta: int, page_key: str | None, page_size: int, selected_key: str = SELECTED_KEY) -> None:
    """Move the viewer ``delta`` images along ``ids`` (the filtered, sorted list); the grid's page follows."""
    cur = st.session_state.get(selected_key)
    if cur is None:   # the viewer was closed meanwhile (Esc right after an arrow key): a late step opens nothing
        return
    stepped = ids.step(cur, delta) if isinstance(ids, LazyOrder) and abs(delta) == 1 else None
    if stepped is not None:   # a big scan: the neighbour found in a pass, not by its position
        pos, nxt = stepped
    else:
        at = _index_in(ids, cur)
        pos = at + delta if at is not None else 0
        pos = min(max(pos, 0), len(ids) - 1)
        nxt = str(ids[pos])
    st.session_state[selected_key] = nxt
    if page_key:  # the grid follows on its next full run (the pager reads it before drawing itself)
        st.session_state[GOTO_PAGE_KEY] = pos // max(page_size, 1) + 1
        st.query_params[IMAGE_PARAM] = nxt


def image_detail(scan, image_id: str, store, key_prefix: str = "detail", suggested_label=None,
                 show_close: bool = True, ordered_ids=None, page_key: str | None = None,
                 page_size: int = DEFAULT_PAGE_SIZE, selected_key: str = SELECTED_KEY,
                 header: Callable[[str], None] | None = None) -> None:
    """Open the image viewer: a large dialog over the page, so it opens where the user looks, wherever the
    Open button was. Previous / next step through ``ordered_ids`` (the page's filtered and sorted image_ids;
    the grid's page ``page_key`` follows), with the keyboard too (``KEYS``, shown in the dialog).

    ``selected_key``: the session key holding the open image (each page its own). ``suggested_label``: a label,
    or a function of the image_id shown (the viewer steps through images). ``header(image_id)`` draws what a
    page adds above the image's detail (Model triage: given vs predicted, what the model sees)."""
    ids = ordered_ids if isinstance(ordered_ids, LazyOrder) else \
        np.asarray(ordered_ids if ordered_ids is not None else [image_id], dtype=object)

    def body():
        current = str(st.session_state.get(selected_key) or image_id)
        suggested = suggested_label(current) if callable(suggested_label) else suggested_label
        image_viewer_body(scan, current, store, ids, key_prefix=key_prefix, suggested_label=suggested,
                          show_close=show_close, page_key=page_key, page_size=page_size,
                          selected_key=selected_key, header=header)

    st.dialog("Image", width="large", on_dismiss=lambda: _close_viewer(selected_key))(body)()


def image_viewer_body(scan, image_id: str, store, ids: np.ndarray, key_prefix: str = "detail",
                      suggested_label=None, show_close: bool = True, page_key: str | None = None,
                      page_size: int = DEFAULT_PAGE_SIZE, selected_key: str = SELECTED_KEY,
                      header: Callable[[str], None] | None = None) -> None:
    """The viewer's content: previous / next with its position in ``ids``, then the image's detail."""
    pos = _index_in(ids, image_id)
    nav = st.container(horizontal=True, vertical_alignment="center", gap="small")
    nav.button("Previous", key=f"{key_prefix}_prev", icon=":material/chevron_left:", shortcut=KEYS["previous"],
               on_click=_step, args=(ids, -1, page_key, page_size, selected_key), disabled=pos is None or pos == 0)
    nav.text(f"{pos + 1:,} of {len(ids):,}" if pos is not None else "not in the current list")
    nav.button("Next", key=f"{key_prefix}_next", icon=":material/chevron_right:", icon_position="right",
               shortcut=KEYS["next"], on_click=_step, args=(ids, 1, page_key, page_size, selected_key),
               disabled=pos is None or pos >= len(ids) - 1)
    nav.toggle("Next image after a decision", key=ADVANCE_KEY)
    if show_close:
        nav.button("Close", key=f"{key_prefix}_close", on_click=_close_viewer, args=(selected_key,))
    st.caption(KEYS_HELP)
    if header is not None:
        header(image_id)
    advance = None
    if st.session_state.get(ADVANCE_KEY) and pos is not None and pos < len(ids) - 1:
        advance = lambda: _step(ids, 1, page_key, page_size, selected_key)  # noqa: E731
    detail_body(scan, image_id, store, key_prefix=key_prefix, suggested_label=suggested_label, on_decided=advance)


def detail_body(scan, image_id: str, store, key_prefix: str = "detail", suggested_label=None,
                on_decided: Callable[[], None] | None = None) -> None:
    """Everything about one image: large view with boxes, stats, findings, duplicates, decision."""
    row = _row_of(scan, image_id)
    if row is None:
        st.warning("This image is not in the current scan.")
        return
    fnd = findings_of(scan, image_id)
    if suggested_label is None:
        suggested_label = suggested_label_from_evidence(scan, image_id, fnd)
    st.text(image_id)
    left, right = st.columns([3, 2])
    with left:
        show_image(scan, image_id)
    with right:
        st.text(f"Label: {label_text(row.get('label'))}   Split: {label_text(row.get('split'))}")
        path = scan.dataset.path_of(image_id) if hasattr(scan.dataset, "path_of") else None
        st.text(f"Path: {path if path is not None else '(outside the dataset root: not opened)'}")
        if suggested_label is not None:
            st.text(f"Suggested label: {suggested_label} (a duplicate of this image carries it)")
        decision_widget(store, image_id, row.get("label"), list(scan.dataset.classes),
                        suggested_label=suggested_label, key_prefix=f"{key_prefix}_dw", shortcuts=True,
                        on_decided=on_decided)
    st.subheader(f"Findings ({len(fnd)})")
    if fnd.empty:
        st.text("No findings for this image.")
    else:
        st.table(fnd[["check", "family", "score", "detail"]].set_index("check"))
    partners = duplicate_partners(scan.findings, image_id, fnd)
    if not partners.empty:
        st.subheader(f"Duplicates and leakage partners ({len(partners)})")
        keep_best_button(scan, store, image_id, key=f"{key_prefix}_best_{_short_key(image_id)}")
        shown = partners.head(6)
        cols = st.columns(len(shown) + 1)
        with cols[0]:
            show_image(scan, image_id, max_side_px=320, caption=f"this image: {label_text(row.get('label'))}")
        lab = _labels_of(scan, shown["image_id"].tolist()) if "label" in row.index else None
        for col, rec in zip(cols[1:], shown.to_dict(orient="records")):
            with col:
                other_label = label_text(lab.get(rec["image_id"])) if lab is not None else ""
                show_image(scan, rec["image_id"], max_side_px=320,
                           caption=f"{rec['image_id']} ({other_label}, {rec['check']})")
    with st.expander("All stats"):
        st.table(stats_table(row).set_index("column"))
    hist = store.history(image_id)
    if not hist.empty:
        with st.expander(f"Decision history ({len(hist)})"):
            st.table(hist[["action", "old_label", "new_label", "note", "decided_at"]].set_index("action"))
