"""The one-element thumbnail grid (inspect_core/ui/tile_grid.py): its payload from real thumbnails, a broken
file named in its tile, text kept as text. The grid's events are exercised through the pages (test_app_bulk.py,
test_app_pages.py) and in chromium (test_browser_review.py: ticks, shift-click range, open)."""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from inspect_core.thumbs import thumbnails
from inspect_core.ui import tile_grid


def _dataset(root):
    rng = np.random.default_rng(3)
    (root / "a").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "a" / "small.png")
    Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(root / "a" / "tall.jpg")
    (root / "a" / "empty.jpg").write_bytes(b"")
    return ["a/small.png", "a/tall.jpg", "a/empty.jpg"]


def test_payload_carries_each_tile_in_order_with_its_thumbnail(tmp_path):
    ids = _dataset(tmp_path / "ds")
    rows = pd.DataFrame({"image_id": ids})
    thumbs = thumbnails(tmp_path / "ds", ids, tmp_path / "ws", size_px=64)
    lines = [[i.rsplit("/", 1)[-1], f"line of {i}"] for i in ids]
    payload = tile_grid.grid_payload(rows, thumbs, lines, n_cols=5, ticked={"a/tall.jpg"}, selectable=True)
    assert payload["n_cols"] == 5 and payload["selectable"] is True
    assert tile_grid.grid_tiles(payload) == ids
    assert [t["ticked"] for t in payload["tiles"]] == [False, True, False]
    for tile, th in zip(payload["tiles"], thumbs):
        head, data = tile["src"].split(",", 1)
        assert head == "data:image/jpeg;base64"
        assert base64.b64decode(data) == th.data
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "JPEG" and max(im.size) == 64
    assert payload["tiles"][0]["lines"] == ["small.png", "line of a/small.png"]
    # the broken file: a placeholder, and its tile says why
    assert payload["tiles"][2]["lines"][-1] == "line of a/empty.jpg | [empty file]"
    # the key that lets the browser keep a decoded tile changes with the picture only
    again = tile_grid.grid_payload(rows, thumbs, lines, n_cols=5, ticked=set(), selectable=True)
    assert [t["key"] for t in again["tiles"]] == [t["key"] for t in payload["tiles"]]
    assert payload["tiles"][0]["key"] != payload["tiles"][1]["key"]


def test_user_text_reaches_the_page_as_text():
    """The grid's script puts captions and ids in the page with textContent / attributes, never as HTML."""
    js = tile_grid._JS
    assert "textContent" in js
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in js, sink
