"""Review: the decisions in force (editable), their history, and the exports."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from inspect_core import export
from inspect_core.review import ACTIONS, ReviewError
from inspect_core.ui import state
from inspect_core.ui.text import md_escape

st.set_page_config(page_title="Review - Dataset Inspector", layout="wide")
st.title("Review and export")

scan = state.require_scan()
store = state.store_for(scan)
# Read before the decisions: a write in between then only makes the version older than the data, never newer.
version = store.last_id()
current = store.current()

m1, m2, m3, m4 = st.columns(4)
m1.metric("Decisions", f"{len(current):,}")
for col, action in zip((m2, m3, m4), ACTIONS):
    col.metric(action.capitalize(), f"{int((current['action'] == action).sum()):,}")

if current.empty:
    st.info("No decisions yet. Open an image in the Gallery or on the Findings page and choose "
            "Relabel, Remove or Keep; each decision is saved at once.")
else:
    st.subheader("Decisions in force")
    st.caption("Edit the action, new label or note; each change is saved as a new decision (history kept).")
    editable = ["action", "new_label", "note"]
    view = current[["image_id", "action", "old_label", "new_label", "note", "decided_at"]].astype(object)
    view = view.where(view.notna(), None)
    # The editor is keyed by the store's last decision, so stale edits never land on other rows.
    edited = st.data_editor(
        view, key=f"di_review_editor_{version}", hide_index=True, width="stretch", num_rows="fixed",
        disabled=[c for c in view.columns if c not in editable],
        column_config={
            "action": st.column_config.SelectboxColumn("action", options=list(ACTIONS), required=True),
            "new_label": st.column_config.TextColumn("new_label"),
            "note": st.column_config.TextColumn("note"),
        })
    changed = 0
    for i in range(len(view)):
        before, after = view.iloc[i], edited.iloc[i]
        if any((before[c] or None) != (after[c] or None) for c in editable):
            try:
                store.decide(after["image_id"], after["action"], old_label=before["old_label"],
                             new_label=after["new_label"] if after["action"] == "relabel" else None,
                             note=after["note"], source="review-page")
                changed += 1
            except ReviewError as exc:
                st.error(md_escape(f"{after['image_id']}: {exc}"))
    if changed:
        st.toast(f"Saved {changed} change(s)")
        st.rerun()

    with st.expander("Undo a decision"):
        pick = st.selectbox("Image", current["image_id"].tolist(), key="di_review_undo_pick")
        if st.button("Undo its latest decision", key="di_review_undo"):
            store.undo(pick, source="review-page")
            st.rerun()

    n_history = store.count()
    with st.expander(f"Full history ({n_history:,} rows)"):
        if st.toggle("Show the full history", key="di_review_show_history"):
            st.dataframe(store.history(), hide_index=True, width="stretch")

st.subheader("Export")
st.caption("Exports never touch the dataset: download them, or write them to a folder outside the dataset.")
root = scan.dataset.root
payloads = state.export_payloads(str(scan.workspace), str(root), version, str(scan.fingerprint),
                                 current, scan.dataset.images)
d1, d2, d3 = st.columns(3)
d1.download_button("Relabel list (CSV)", payloads["relabel_csv"], file_name="relabels.csv",
                   mime="text/csv", key="di_dl_csv")
d2.download_button("Relabel list (JSON)", payloads["relabel_json"], file_name="relabels.json",
                   mime="application/json", key="di_dl_json")
d3.download_button("Cleaned manifest (CSV)", payloads["manifest_csv"], file_name="cleaned_manifest.csv",
                   mime="text/csv", key="di_dl_manifest")
st.text(f"Cleaned manifest: {payloads['n_manifest']:,} of {len(scan.dataset.images):,} images "
        f"({int((current['action'] == 'remove').sum())} removed, "
        f"{int((current['action'] == 'relabel').sum())} relabelled)")

out_dir = st.text_input("Or write all exports to this folder", key="di_review_outdir",
                        placeholder="/path/outside/the/dataset")
if st.button("Write exports", key="di_review_write", disabled=not out_dir):
    try:
        written = export.write_exports(out_dir, root, scan.dataset.images, current)
    except (ValueError, OSError) as exc:
        st.error(md_escape(f"Could not write the exports: {exc}"))
    else:
        st.success(md_escape("Written: " + ", ".join(str(p) for p in written.values())))
