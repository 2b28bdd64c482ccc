"""Dataset Inspector: home page. Choose a dataset, scan it (or reuse the saved scan), see the headline figures.

    streamlit run Home.py -- --root sample_data

The file is named Home.py because, with the pages folder, the entry file's name is its label in the sidebar.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from inspect_core.checks.context import NEAR_THRESHOLD_DEFAULT
from inspect_core.ui import state, widgets
from inspect_core.ui.text import md_escape

st.set_page_config(page_title="Home - Dataset Inspector", layout="wide")
st.title("Dataset Inspector")

INPUT_KEY = "di_home_root_input"
FORMAT_INPUT_KEY = "di_home_format_input"
state.sync_dataset_with_url()
if INPUT_KEY in st.session_state and (st.session_state.get("di_home_shown"), st.session_state[INPUT_KEY]) != (
        (state.chosen_root(), state.chosen_format()), state.chosen_root()):  # a link chose another dataset
    st.session_state[INPUT_KEY], st.session_state[FORMAT_INPUT_KEY] = state.chosen_root(), state.chosen_format()
st.session_state["di_home_shown"] = (state.chosen_root(), state.chosen_format())
state.show_link_note()
if INPUT_KEY not in st.session_state:
    st.session_state[INPUT_KEY] = state.chosen_root()
if FORMAT_INPUT_KEY not in st.session_state:
    st.session_state[FORMAT_INPUT_KEY] = state.chosen_format()


def _open_typed() -> None:
    state.set_dataset(st.session_state[INPUT_KEY], st.session_state[FORMAT_INPUT_KEY])


def _pick_recent() -> None:
    pick = st.session_state.get("di_home_recent")
    if pick and pick != "(choose)":
        fmt = next((d.get("format", "auto") for d in state.recent_roots() if d["root"] == pick), "auto")
        st.session_state[INPUT_KEY] = pick
        st.session_state[FORMAT_INPUT_KEY] = fmt if fmt in state.FORMATS else "auto"
        state.set_dataset(pick, st.session_state[FORMAT_INPUT_KEY])


with st.container(border=True):
    st.subheader("Dataset")
    c1, c2, c3 = st.columns([6, 2, 1], vertical_alignment="bottom")
    c1.text_input("Dataset folder", key=INPUT_KEY, on_change=_open_typed,
                  help="The dataset root: class folders, split/class folders, a CSV manifest, COCO or YOLO.")
    c2.selectbox("Format", state.FORMATS, key=FORMAT_INPUT_KEY, on_change=_open_typed)
    c3.button("Open", key="di_home_open", on_click=_open_typed, width="stretch")
    recent = [d["root"] for d in state.recent_roots()]
    if recent:
        st.selectbox("Or pick a recent dataset", ["(choose)"] + recent, key="di_home_recent",
                     on_change=_pick_recent)

root, fmt = state.chosen_root(), state.chosen_format()
problem = state.root_problem(root)
if problem:
    (st.info if not root else st.error)(md_escape(problem))
    st.stop()

st.text(f"Dataset: {root}  (format: {fmt})")
scan = state.cached_scan(root, fmt)
# the scan option lives in a plain session key too: a widget's value does not survive a page switch
NEAR_KEY, NEAR_INPUT_KEY = state.NEAR_THRESHOLD_KEY, "di_home_near_threshold"
if NEAR_INPUT_KEY not in st.session_state:
    st.session_state[NEAR_INPUT_KEY] = st.session_state.get(NEAR_KEY, NEAR_THRESHOLD_DEFAULT)
with st.expander("Scan options"):
    st.slider("Near-duplicate cut (descriptor cosine, images over 48 px)", 0.80, 1.0, step=0.01, key=NEAR_INPUT_KEY,
              help=f"Default {NEAR_THRESHOLD_DEFAULT}, set for precision (few false pairs). Smaller images and "
                   "near-uniform ones get stricter cuts that move with this one. Lower finds more edited copies "
                   "and more look-alikes. Applies at the next Scan or Rescan.")
st.session_state[NEAR_KEY] = near = float(st.session_state[NEAR_INPUT_KEY])
b1, b2 = st.columns([1, 5])
if scan is None:
    st.info("This dataset has not been scanned yet. Scanning reads every file once; the result is saved "
            "in the workspace (outside the dataset) and reused next time.")
    if b1.button("Scan", key="di_home_scan", type="primary"):
        scan = state.run_scan(root, fmt, near_threshold=near)
        if scan is not None:
            st.rerun()
    st.stop()
used = (scan.summary.get("near_rule") or {}).get("near_threshold")
if used is not None and abs(used - near) > 1e-9:
    b2.caption(f"This scan used a near-duplicate cut of {used}; Rescan to use {near}.")
if b1.button("Rescan", key="di_home_rescan", help="Read the files again (after they changed)."):
    scan = state.run_scan(root, fmt, near_threshold=near)
    if scan is None:
        st.stop()
    st.rerun()
if not any(d["root"] == str(state.real_root(root)) for d in state.recent_roots()):
    state.remember_root(root, fmt)

images, findings = state.overview_images(scan), scan.findings
if images.empty:
    st.warning(md_escape(f"No images were found in {root}. Check the folder layout or choose the format by hand."))
    st.stop()

st.caption(md_escape(f"Detected format: {scan.dataset.format}. Workspace: {scan.workspace}"))
m1, m2, m3, m4 = st.columns(4)
m1.metric("Images", f"{len(images):,}")
m2.metric("Classes", f"{len(scan.dataset.classes):,}")
splits = images["split"].value_counts(dropna=False) if "split" in images.columns else pd.Series(dtype=int)
m3.metric("Splits", f"{sum(1 for s in splits.index if not pd.isna(s)):,}")
m4.metric("Findings", f"{len(findings):,}")

if len(splits):
    st.text("  ".join(f"{'(no split)' if pd.isna(s) else s}: {n:,}" for s, n in splits.items()))

st.subheader("Findings by family")
if findings.empty:
    st.success("No findings: every check passed.")
else:
    by_family = findings.groupby("family", sort=True).agg(
        findings=("check", "size"), images=("image_id", lambda s: s[s != ""].nunique()))
    for fam, rec in by_family.iterrows():
        checks = findings[findings["family"] == fam]["check"].value_counts()
        detail = ", ".join(f"{c} {n}" for c, n in checks.items())
        c1, c2, c3 = st.columns([3, 1, 4])
        with c1:
            what = f"{rec['images']:,} images" if rec["images"] > 0 else "dataset level"
            st.page_link("pages/2_Findings.py", label=f"{fam}: {rec['findings']:,} findings, {what}",
                         query_params={"family": str(fam)})
        if rec["images"] > 0:
            c2.page_link("pages/1_Gallery.py", label="see images", query_params={"family": str(fam)})
        c3.caption(md_escape(detail))

st.subheader("Pages")
links = [("pages/1_Gallery.py", "Gallery: look, filter, sort"),
         ("pages/2_Findings.py", "Findings: evidence per family"),
         ("pages/3_Distributions.py", "Distributions: plots and outliers"),
         ("pages/4_Review.py", "Review: decisions and export"),
         ("pages/5_Model_triage.py", "Model triage: worst losses first")]
links = [(p, label) for p, label in links if (state.APP_DIR / p).is_file()]
with st.container(horizontal=True, gap="medium"):  # wraps instead of cutting the labels off
    for p, label in links:
        st.page_link(p, label=label, width="content")
widgets.preload_chart_library()   # the Distributions page then draws at once (see the function)
