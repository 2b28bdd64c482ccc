"""Distributions: any column by class and split, class balance, boxes, and a scatter whose selection
shows the images."""
from __future__ import annotations

import streamlit as st

from inspect_core.ui import charts, lazy_query, state, viewer, widgets
from inspect_core.ui.query import numeric_columns

st.set_page_config(page_title="Distributions - Dataset Inspector", layout="wide")
st.title("Distributions")

scan = state.require_scan(needs_frame=False)
store = state.store_for(scan)
lazy = state.lazy_images(scan)   # a big scan: charts from its memory-mapped columns, never one pandas frame
columns = list(lazy.columns) if lazy is not None else list(scan.images.columns)
nums = numeric_columns(state.filter_frame(scan, lazy))
groupable = [c for c in ("label", "split") if c in columns]

classes = list(scan.dataset.classes)
property_checks = state.families_for(str(scan.fingerprint), scan.findings,
                                     state.kept_charts(scan, lazy)).get("property", [])
fp = str(scan.fingerprint)


@st.cache_data(show_spinner=False, max_entries=64)
def figure(fingerprint: str, name: str, args: tuple, _scan) -> dict:
    """``charts.<name>(table, *args)`` as plotly's dict, built once per (scan, chart, arguments): a rerun (a
    lasso, another column) redraws without recounting 100,000 rows."""
    if name == "box_size_figure":
        fig, n_shown, n_boxes = charts.box_size_figure(_scan.annotations, classes=args[0])
        return {"figure": fig.to_dict(), "n_shown": n_shown, "n_total": n_boxes}
    table = state.lazy_images(_scan)
    if table is None:
        return {"figure": getattr(charts, name)(_scan.images, *args).to_dict()}
    kept = state.kept_charts(_scan, table)   # prepared once per scan (lazy_kept), or None while it is not ready
    if name == "count_figure":
        by, color, classes_ = args
        counts = kept.counts(by, color) if kept is not None else None
        counts = counts if counts is not None else lazy_query.lazy_counts(table, by, color)
        return {"figure": charts.count_figure(None, by, color, classes_, counts=counts).to_dict()}
    col_, by, kind_, classes_ = args   # distribution_figure
    data = kept.histogram(col_, by) if kept is not None and kind_ == "histogram" else None
    if data is None:
        data = lazy_query.lazy_box_groups(table, col_, by) if kind_ == "box" else \
            lazy_query.lazy_histogram_data(table, col_, by)
    return {"figure": charts.distribution_figure(None, col_, by, kind_, classes_, data=data).to_dict()}


@st.cache_data(show_spinner=False, max_entries=16)
def scatter(fingerprint: str, x: str, y: str, checks: tuple, _scan):
    """``(points, n_total, n_flagged, figure)``; a big scan: at most ``charts.MAX_SCATTER_POINTS`` points in all."""
    table = state.lazy_images(_scan)
    if table is None:
        pts, n_total = charts.scatter_data(_scan.images, x, y, flag_checks=checks)
        n_flagged = int(pts["flagged"].sum())
    else:   # the first pair's points prepared once per scan (lazy_kept), else drawn from the columns
        kept = state.kept_charts(_scan, table)
        got = kept.scatter(x, y, checks) if kept is not None else None
        pts, n_total, n_flagged = got if got is not None else lazy_query.lazy_scatter_points(table, x, y, checks)
    return pts, n_total, n_flagged, charts.scatter_figure(pts, x, y).to_dict()

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
    if "split" in columns:
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
        if "n_boxes" in columns:
            st.plotly_chart(figure(fp, "distribution_figure", ("n_boxes", "split" if "split" in columns else None,
                                                              "histogram", classes), scan)["figure"],
                            key="di_dist_nboxes")

st.subheader("Any two columns")
x1, x2 = st.columns(2)
x_default, y_default = charts.default_scatter_axes(nums)
x = x1.selectbox("x", nums, index=nums.index(x_default), key="di_dist_x")
y = x2.selectbox("y", nums, index=nums.index(y_default), key="di_dist_y")
pts, n_total, n_flagged, scatter_fig = scatter(fp, x, y, tuple(property_checks), scan)
n_red = int(pts["flagged"].sum())
sample = (f"a fixed random sample of {len(pts) - n_red:,} of the other images: {len(pts):,} of {n_total:,} "
          "points shown" if len(pts) < n_total else f"all {n_total:,} points shown")
red = f"the {n_flagged:,}" if n_red == n_flagged else f"a fixed random sample of {n_red:,} of the {n_flagged:,}"
st.caption(f"Red: {red} images a property check flags (its findings, hover names the check); "
           f"{sample}. Select points with the box or lasso tool to see those images.")
event = st.plotly_chart(scatter_fig, key="di_dist_scatter", on_select="rerun",
                        selection_mode=("box", "lasso", "points"))
ids = charts.selected_image_ids(event)
if ids:
    st.subheader(f"Selected: {len(ids):,} images")
    rows = state.rows_of_ids(scan, ids[:48])
    if len(ids) > 48:
        st.caption("The first 48 are shown.")
    widgets.thumb_grid(scan, rows, key_prefix="di_dist_sel", n_cols=8, stat=y, decisions=store.current())
