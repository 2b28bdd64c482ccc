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


def test_the_image_check_of_a_root_stops_at_the_first_image(tmp_path, monkeypatch):
    """A folder of 100,000 images is checked on every page run: the check reads entries only until the first
    image, never the whole listing (os.walk lists a folder in full before it yields)."""
    from inspect_core.ui import state
    for k in range(3000):
        (tmp_path / f"img_{k:05d}.jpg").touch()
    pulled = []
    real = os.scandir

    class Counting:
        def __init__(self, path):
            self.it = real(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.it.close()

        def __iter__(self):
            return self

        def __next__(self):
            entry = next(self.it)
            pulled.append(entry.name)
            return entry

        def close(self):
            self.it.close()
    monkeypatch.setattr(os, "scandir", Counting)
    assert state._has_any_image(tmp_path)
    assert len(pulled) <= 10, len(pulled)
    monkeypatch.setattr(os, "scandir", real)
    empty = tmp_path / "empty" / "deeper"
    empty.mkdir(parents=True)
    (empty / "notes.txt").touch()
    assert not state._has_any_image(tmp_path / "empty")
    (empty / "a.PNG").touch()
    assert state._has_any_image(tmp_path / "empty")
