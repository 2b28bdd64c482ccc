"""The Review page's editable table and its conflicts (Streamlit side of ``review_table``)."""
from __future__ import annotations

import hashlib

import streamlit as st

from inspect_core.review import ACTIONS
from inspect_core.ui import review_table
from inspect_core.ui.text import md_escape

EDITOR_KEY = "di_review_editor_key"      # the key of the table as last shown
SHOWN_KEY = "di_review_shown"            # the rows of that table (edits name rows of it)
CONFLICTS_KEY = "di_review_conflicts"    # edits of rows decided elsewhere meanwhile, until the person chooses


def _table_key(view) -> str:
    text = "\x00".join(f"{i}\x01{d}" for i, d in zip(view["image_id"], view["decision_id"]))
    return "di_review_editor_" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _show(view) -> str:
    key = _table_key(view)
    st.session_state[EDITOR_KEY], st.session_state[SHOWN_KEY] = key, view
    return key


def editor_table(store, current) -> None:
    """The decisions in force, editable. Edits made on the table as it was last shown are recorded against
    the version of each row shown: a row decided elsewhere since then becomes a conflict (``conflicts_panel``),
    a decision made meanwhile for another row does not touch the edit."""
    old_key, shown = st.session_state.get(EDITOR_KEY), st.session_state.get(SHOWN_KEY)
    if old_key and shown is not None:
        edits = review_table.edited_decisions(shown, (st.session_state.get(old_key) or {}).get("edited_rows"))
        if edits:
            saved, conflicts, errors = review_table.apply_edits(store, edits)
            for err in errors:
                st.error(md_escape(err))
            if conflicts:
                pending = [c for c in st.session_state.get(CONFLICTS_KEY) or []
                           if c["image_id"] not in {x["image_id"] for x in conflicts}]
                st.session_state[CONFLICTS_KEY] = pending + conflicts
            if saved or conflicts:
                st.toast(f"Saved {saved} change(s)" + (f"; {len(conflicts)} need your choice" if conflicts else ""))
                _show(review_table.table_view(store.current()))
                st.rerun()
    view = review_table.table_view(current)
    st.data_editor(
        view, key=_show(view), hide_index=True, width="stretch", num_rows="fixed",
        column_order=[c for c in view.columns if c != "decision_id"],
        disabled=[c for c in view.columns if c not in review_table.EDITABLE],
        column_config={
            "action": st.column_config.SelectboxColumn("action", options=list(ACTIONS), required=True),
            "new_label": st.column_config.TextColumn("new_label"),
            "note": st.column_config.TextColumn("note"),
        })


def conflicts_panel(store) -> None:
    """Each edit whose row was decided elsewhere after it was shown: what is in force now, the edit, and the
    choice to apply the edit anyway or keep the other decision."""
    pending = st.session_state.get(CONFLICTS_KEY) or []
    for c in list(pending):
        k = hashlib.sha1(f"{c['image_id']}\x00{c['expected_id']}".encode("utf-8", "surrogatepass")).hexdigest()[:12]
        with st.container(border=True):
            st.warning(md_escape(
                f"{c['image_id']} was decided elsewhere (another tab or process) after this table showed it: "
                f"now {review_table.describe(c['now'])}. Your edit, not applied yet: {review_table.describe(c)}."))
            b1, b2, _ = st.columns([1, 1, 3])
            if b1.button("Apply my edit", key=f"di_review_conflict_mine_{k}", type="primary"):
                _, _, errors = review_table.apply_edits(store, [c], check_version=False)
                for err in errors:
                    st.error(md_escape(err))
                if not errors:
                    st.session_state[CONFLICTS_KEY] = [x for x in pending if x is not c]
                    st.rerun()
            if b2.button("Keep the other decision", key=f"di_review_conflict_theirs_{k}"):
                st.session_state[CONFLICTS_KEY] = [x for x in pending if x is not c]
                st.rerun()
