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


def test_a_cluster_runs_memory_mapped_embeddings_are_kept_once_and_its_parts_removed(tmp_path):
    """A cluster run leaves its embeddings as the cache folder's memory-mapped .npy and its block parts in
    ``parts/``: once the outputs are saved, the embeddings are not copied into outputs.npz (on disk twice, and a
    full copy in memory) and the parts are removed; the cache reads the .npy back, memory-mapped, same values."""
    ids = [f"{i}.png" for i in range(50)]
    folder = tmp_path / score_cache.SCORES_DIR / "k"
    (folder / score_cache.PARTS_DIR).mkdir(parents=True)
    (folder / score_cache.PARTS_DIR / "part-000000000000-x.parquet").write_bytes(b"a part")
    values = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    emb = np.lib.format.open_memmap(folder / score_cache.EMBEDDINGS_FILE, mode="w+", dtype=np.float32,
                                    shape=values.shape)
    emb[:] = values
    logits = np.ones((50, 3), np.float32)
    assert score_cache.save_cache(tmp_path, "k", ids, logits, emb, [""] * 50, {}) == folder
    assert not (folder / score_cache.PARTS_DIR).exists()
    with np.load(folder / "outputs.npz") as data:
        assert data.files == ["logits"]
    _, got_logits, got_emb, _, _ = score_cache.load_cache(tmp_path, "k")
    assert isinstance(got_emb, np.memmap)
    np.testing.assert_array_equal(got_emb, values)
    np.testing.assert_array_equal(got_logits, logits)
    # a later save of in-memory embeddings under the same key does not read the stale .npy back
    score_cache.save_cache(tmp_path, "k", ids, logits, values * 2, [""] * 50, {})
    assert not (folder / score_cache.EMBEDDINGS_FILE).exists()
    np.testing.assert_array_equal(score_cache.load_cache(tmp_path, "k")[2], values * 2)


def test_cached_embeddings_of_the_wrong_length_are_a_miss(tmp_path):
    ids = ["a.png", "b.png"]
    folder = tmp_path / score_cache.SCORES_DIR / "k"
    folder.mkdir(parents=True)
    emb = np.lib.format.open_memmap(folder / score_cache.EMBEDDINGS_FILE, mode="w+", dtype=np.float32,
                                    shape=(2, 4))
    score_cache.save_cache(tmp_path, "k", ids, np.zeros((2, 3), np.float32), emb, ["", ""], {})
    assert score_cache.load_cache(tmp_path, "k") is not None
    np.save(folder / score_cache.EMBEDDINGS_FILE, np.zeros((3, 4), np.float32))
    assert score_cache.load_cache(tmp_path, "k") is None
