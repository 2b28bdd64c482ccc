"""Gallery: a dense grid of the images matching the filters, sorted, one page at a time; tick tiles for a bulk
decision; open one in the viewer and step through the list with the keyboard. Every filter, the sort, the
page and the tile size are in the URL."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from inspect_core.ui import state, viewer, widgets
from inspect_core.ui.lazy_query import LazyMatches, LazyOrder, lazy_gallery_page
from inspect_core.ui.query import gallery_page

st.set_page_config(page_title="Gallery - Dataset Inspector", layout="wide")
st.title("Gallery")

scan = state.require_scan(needs_frame=False)
store = state.store_for(scan)
lazy = state.lazy_images(scan)   # a big scan: filter, sort and page read its memory-mapped table (lazy_query)
families = state.families_for(str(scan.fingerprint), scan.findings, state.kept_charts(scan, lazy))
query = widgets.filter_widgets(state.filter_frame(scan, lazy), list(scan.dataset.classes), families)
n_cols, thumb_px = widgets.tile_size_widget()
decisions = store.current()
if lazy is None:
    order = state.gallery_order(scan, query, families, decisions, store.last_id())
    n_match = len(order[0])
else:
    mask = state.lazy_gallery_mask(scan, lazy, query, families, decisions, store.last_id())
    n_match = int(mask[0].sum())
n_pages = max((n_match + query.page_size - 1) // query.page_size, 1)
head, bar, grid, pager = st.container(), st.container(), st.container(), st.container()
with pager:
    page = widgets.pager(n_pages, query)
if lazy is None:
    result = gallery_page(scan.images, replace(query, page=page), order=order)
else:
    sorted_rows = state.lazy_gallery_order(scan, lazy, query)   # prepared once per scan (lazy_kept), or None
    result = lazy_gallery_page(lazy, replace(query, page=page), mask=mask, order=sorted_rows)
with head:
    for w in result.warnings:
        st.warning(w)
    st.text(f"{result.n_match:,} of {state.n_images(scan):,} images match; page {result.page} of {result.n_pages}")
with bar:
    if lazy is None:
        widgets.bulk_bar(scan, store, result.ids, result.rows["image_id"].tolist(), matching_positions=order[0])
    else:   # every match, from the filter's mask (the ids are listed only for "select all matching")
        widgets.bulk_bar(scan, store, LazyMatches(lazy, mask[0]), result.rows["image_id"].tolist())
with grid:
    widgets.thumb_grid(scan, result.rows, key_prefix="gallery", n_cols=n_cols, thumb_px=thumb_px,
                       stat=query.sort_by, decisions=decisions, selectable=True)

selected = widgets.url_selected_image()
if selected:
    ordered = result.ids if lazy is None else LazyOrder(lazy, mask[0], query.sort_by, query.descending,
                                                        order=sorted_rows)
    viewer.image_detail(scan, selected, store, key_prefix="gallery_detail", ordered_ids=ordered,
                        page_key=widgets.PAGE_KEY, page_size=query.page_size)
widgets.preload_chart_library()   # the Distributions page then draws at once (see the function)
