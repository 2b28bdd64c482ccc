"""inspect_core/ui/state.py: a damaged review store stops a page with a message naming the file."""
from __future__ import annotations

import os

import inspect_core
from page_support import SAMPLE, open_page


def test_a_damaged_review_store_is_named_on_the_page():
    import streamlit as st
    st.cache_resource.clear()        # scans and stores cached in this process by other modules live elsewhere
    scan = inspect_core.scan(SAMPLE)
    store = scan.workspace / "review.sqlite"
    store.write_bytes(b"this is not a database" * 200)
    at = open_page("pages/1_Gallery.py")
    errors = [str(e.value).replace("\\", "") for e in at.error]
    assert any("damaged" in e and "review.sqlite" in e and "keep a copy" in e for e in errors), errors
    assert store.read_bytes().startswith(b"this is not a database")        # the user's file is left as it was
    assert os.path.getsize(store) == len(b"this is not a database") * 200
