"""Review: the decisions in force (editable), their history, and the exports."""
from __future__ import annotations

import streamlit as st

from inspect_core import export
from inspect_core.review import ACTIONS
from inspect_core.ui import state
from inspect_core.ui.review_widgets import conflicts_panel, editor_table
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

conflicts_panel(store)
if current.empty:
    st.info("No decisions yet. Open an image in the Gallery or on the Findings page and choose "
            "Relabel, Remove or Keep; each decision is saved at once.")
else:
    st.subheader("Decisions in force")
    st.caption("Edit the action, new label or note; each change is saved as a new decision (history kept). "
               "A row decided elsewhere (another tab) after it was shown is not overwritten: you choose.")
    editor_table(store, current)

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
