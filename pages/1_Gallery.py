"""Gallery: thumbnails of the images matching the filters, sorted, one page at a time."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import streamlit as st

from inspect_core.ui import state, widgets
from inspect_core.ui.query import gallery_page

st.set_page_config(page_title="Gallery - Dataset Inspector", layout="wide")
st.title("Gallery")

scan = state.require_scan()
store = state.store_for(scan)
families = state.families_for(str(scan.fingerprint), scan.findings)
widgets.apply_query_params(families)
query = widgets.filter_widgets(scan.images, list(scan.dataset.classes), families)
decisions = store.current()

# The pager is keyed by the filters and sort, so a new filter or sort starts again at page 1.
signature = repr((query.labels, query.splits, query.checks, query.families, query.ranges, query.search,
                  query.decisions, query.sort_by, query.descending, query.page_size))
PAGER = "di_gallery_pager_" + hashlib.sha1(signature.encode()).hexdigest()[:12]
result = gallery_page(scan.images, replace(query, page=int(st.session_state.get(PAGER) or 1)),
                      families, decisions)
for w in result.warnings:
    st.warning(w)

selected = st.session_state.get(widgets.SELECTED_KEY)
if selected:
    widgets.image_detail(scan, selected, store, key_prefix="gallery_detail")

st.text(f"{result.n_match:,} of {len(scan.images):,} images match; page {result.page} of {result.n_pages}")
widgets.thumb_grid(scan, result.rows, key_prefix="gallery", stat=query.sort_by, decisions=decisions)
if result.n_pages > 1:
    st.pagination(result.n_pages, key=PAGER)
