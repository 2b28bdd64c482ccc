"""Distributions: any column by class and split, class balance, boxes, and a scatter whose selection
shows the images."""
from __future__ import annotations

import streamlit as st

from inspect_core.ui import charts, state, viewer, widgets
from inspect_core.ui.query import numeric_columns

st.set_page_config(page_title="Distributions - Dataset Inspector", layout="wide")
st.title("Distributions")

scan = state.require_scan(needs_frame=False)
store = state.store_for(scan)
images = scan.images
nums = numeric_columns(images)
groupable = [c for c in ("label", "split") if c in images.columns]

classes = list(scan.dataset.classes)
property_checks = state.families_for(str(scan.fingerprint), scan.findings).get("property", [])
fp = str(scan.fingerprint)


@st.cache_data(show_spinner=False, max_entries=64)
def figure(fingerprint: str, name: str, args: tuple, _scan) -> dict:
    """``charts.<name>(table, *args)`` as plotly's dict, built once per (scan, chart, arguments): a rerun (a
    lasso, another column) redraws without recounting 100,000 rows."""
    if name == "box_size_figure":
        fig, n_shown, n_boxes = charts.box_size_figure(_scan.annotations, classes=args[0])
        return {"figure": fig.to_dict(), "n_shown": n_shown, "n_total": n_boxes}
    return {"figure": getattr(charts, name)(_scan.images, *args).to_dict()}


@st.cache_data(show_spinner=False, max_entries=16)
def scatter(fingerprint: str, x: str, y: str, checks: tuple, _images):
    pts, n_total = charts.scatter_data(_images, x, y, flag_checks=checks)
    return pts, n_total, charts.scatter_figure(pts, x, y).to_dict()

selected = st.session_state.get(widgets.SELECTED_KEY)
if selected:
    viewer.image_detail(scan, selected, store, key_prefix="dist_detail")

if not nums:
    st.warning("This scan has no numeric columns to plot.")
    st.stop()

st.subheader("Class balance, train vs val")
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(figure(fp, "count_figure", ("label", "split", classes), scan)["figure"], key="di_dist_balance")
with c2:
    if "split" in images.columns:
        st.plotly_chart(figure(fp, "count_figure", ("split", None, classes), scan)["figure"], key="di_dist_splits")

st.subheader("One column")
a, b, c = st.columns(3)
default_col = next((x for x in ("brightness", "width_px") if x in nums), nums[0])
col = a.selectbox("Column", nums, index=nums.index(default_col), key="di_dist_col")
by = b.selectbox("Colour by", [charts.NONE] + groupable, index=1 if groupable else 0, key="di_dist_by")
kind = c.radio("Chart", ["histogram", "box"], horizontal=True, key="di_dist_kind")
st.plotly_chart(figure(fp, "distribution_figure", (col, by, kind, classes), scan)["figure"], key="di_dist_one")
st.caption(f"{charts.HIST_BINS} bins over every image, counted on the server." if kind == "histogram" else
           "Quartiles and 1.5 IQR whiskers over every image, computed on the server.")

ann = getattr(scan, "annotations", None)
if ann is not None and not ann.empty:
    st.subheader("Boxes")
    b1, b2 = st.columns(2)
    with b1:
        boxes = figure(fp, "box_size_figure", (classes,), scan)
        if boxes["n_shown"] < boxes["n_total"]:
            st.caption(f"Showing a random sample: {boxes['n_shown']:,} of {boxes['n_total']:,} boxes.")
        st.plotly_chart(boxes["figure"], key="di_dist_boxsize")
    with b2:
        if "n_boxes" in images.columns:
            st.plotly_chart(figure(fp, "distribution_figure", ("n_boxes", "split" if "split" in images else None,
                                                              "histogram", classes), scan)["figure"],
                            key="di_dist_nboxes")

st.subheader("Any two columns")
x1, x2 = st.columns(2)
x_default = next((c for c in ("brightness", "width_px") if c in nums), nums[0])
y_default = next((c for c in ("contrast", "blur_laplacian_var", "height_px") if c in nums and c != x_default),
                 nums[min(1, len(nums) - 1)])
x = x1.selectbox("x", nums, index=nums.index(x_default), key="di_dist_x")
y = x2.selectbox("y", nums, index=nums.index(y_default), key="di_dist_y")
pts, n_total, scatter_fig = scatter(fp, x, y, tuple(property_checks), images)
n_flagged = int(pts["flagged"].sum())
sample = (f"a fixed random sample of {len(pts) - n_flagged:,} of the other images: {len(pts):,} of {n_total:,} "
          "points shown" if len(pts) < n_total else f"all {n_total:,} points shown")
st.caption(f"Red: the {n_flagged:,} images a property check flags (its findings, hover names the check); "
           f"{sample}. Select points with the box or lasso tool to see those images.")
event = st.plotly_chart(scatter_fig, key="di_dist_scatter", on_select="rerun",
                        selection_mode=("box", "lasso", "points"))
ids = charts.selected_image_ids(event)
if ids:
    st.subheader(f"Selected: {len(ids):,} images")
    rows = images[images["image_id"].isin(ids[:48])]
    if len(ids) > 48:
        st.caption("The first 48 are shown.")
    widgets.thumb_grid(scan, rows, key_prefix="di_dist_sel", n_cols=8, stat=y, decisions=store.current())
