"""cache.py: the score cache in the workspace; a damaged cache is a miss."""
from __future__ import annotations

import numpy as np
import pytest

from inspect_core.model import cache as score_cache


def test_a_damaged_score_cache_is_a_miss(tmp_path):
    ids = ["a.jpg", "b.jpg"]
    folder = score_cache.save_cache(tmp_path, "k", ids, np.zeros((2, 3)), None, ["", ""], {})
    assert score_cache.load_cache(tmp_path, "k") is not None
    npz = folder / "outputs.npz"
    npz.write_bytes(npz.read_bytes()[:40])
    assert score_cache.load_cache(tmp_path, "k") is None


@pytest.mark.parametrize("rows_text", ['{"image_ids": ["a.png"]}', '["a.png"]', '{"image_ids": 3, "errors": 4}',
                                       '{"image_ids": ["a.png", "b.png"], "errors": ["", ""]}'])
def test_damaged_score_cache_is_a_miss_not_a_crash(tmp_path, rows_text):
    ws = tmp_path / "ws"
    folder = score_cache.save_cache(ws, "k1", ["a.png"], np.zeros((1, 3), np.float32), None, [""], {"notes": []})
    assert score_cache.load_cache(ws, "k1") is not None
    (folder / "rows.json").write_text(rows_text)
    assert score_cache.load_cache(ws, "k1") is None
