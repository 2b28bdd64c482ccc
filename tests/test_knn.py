"""inspect_core.model.knn: exact cosine kNN, and the inverted-file search used above EXACT_MAX_ROWS rows."""
from __future__ import annotations

import numpy as np
import pytest

from inspect_core.model import knn as K
from inspect_core.model.sanity import embedding_findings


def clustered(n: int, dims: int, n_clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Embeddings like a trained network's: clusters, each spread along a few directions, plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dims)).astype(np.float32)
    spread = rng.standard_normal((n_clusters, 4, dims)).astype(np.float32) * 0.3
    cluster = rng.integers(0, n_clusters, n)
    coef = rng.standard_normal((n, 4)).astype(np.float32)
    emb = centres[cluster] + np.einsum("nk,nkd->nd", coef, spread[cluster])
    return (emb + rng.standard_normal((n, dims)).astype(np.float32) * 0.05).astype(np.float32)


def brute_force(emb: np.ndarray, k: int):
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    d = 1.0 - unit @ unit.T
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


def test_exact_search_matches_brute_force():
    emb = clustered(600, 24)
    dist, idx = K.knn(emb, k=5)
    ref_d, ref_i = brute_force(emb, 5)
    assert dist.shape == (600, 5) and idx.dtype == np.int64
    np.testing.assert_allclose(dist, np.clip(ref_d, 0, 2), atol=1e-5)
    assert np.mean(idx == ref_i) > 0.999                 # equal distances may swap places
    assert not (idx == np.arange(600)[:, None]).any()    # never itself


def test_exact_ties_among_the_nearest_are_ordered_by_index():
    emb = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [-1, 0]], dtype=np.float32)
    dist, idx = K.knn(emb, k=2)
    assert idx[0].tolist() == [2, 3] and dist[0].tolist() == [0.0, 0.0]
    assert idx[4, 0] == 1 and idx[4, 1] in (0, 2, 3)   # distance 1 to [0, 1], 2 to the others


@pytest.mark.parametrize("dims", [48, 160])               # fewer and more dimensions than PROJECTED_DIMS
def test_inverted_file_finds_nearly_all_true_neighbours(dims):
    emb = clustered(4000, dims, seed=dims)
    dist, idx = K.knn(emb, k=5, exact_max_rows=0)         # forced: the inverted file
    ref_d, ref_i = brute_force(emb, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, ref_i)])
    assert recall >= 0.97, recall
    assert np.mean(idx[:, 0] == ref_i[:, 0]) >= 0.99
    # every distance returned is the exact cosine distance of the row it names, nearest first
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    exact = 1.0 - np.einsum("nd,nkd->nk", unit, unit[idx])
    np.testing.assert_allclose(dist, exact, atol=1e-5)
    assert (np.diff(dist, axis=1) >= 0).all()
    assert not (idx == np.arange(len(emb))[:, None]).any()
    assert (dist >= ref_d - 1e-5).all()                   # never closer than the true neighbours


def test_inverted_file_keeps_duplicates_and_zero_rows():
    emb = clustered(3000, 32, seed=3)
    emb[100] = emb[2000]                                  # an exact copy
    emb[101] = emb[7] * 3.0                               # the same direction
    emb[102] = 0.0                                        # an all-zero embedding
    dist, idx = K.knn(emb, k=3, exact_max_rows=0)
    assert idx[100, 0] == 2000 and idx[2000, 0] == 100 and dist[100, 0] < 1e-6
    assert idx[101, 0] == 7 and dist[101, 0] < 1e-6
    assert np.allclose(dist[102], 1.0)                     # orthogonal to everything
    assert np.isfinite(dist).all()


def test_two_rows_and_too_few():
    dist, idx = K.knn(np.array([[1, 0], [1, 1]], dtype=np.float32), k=5)
    assert idx.tolist() == [[1], [0]]
    assert dist[0, 0] == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-6)
    with pytest.raises(ValueError):
        K.knn(np.ones((1, 3), dtype=np.float32))


def test_embedding_findings_agree_between_exact_and_inverted_file(monkeypatch):
    emb = clustered(5000, 64, seed=5)
    emb[10] = emb[4000] * 1.0001                          # a duplicate for the model
    rng = np.random.default_rng(9)
    far = rng.standard_normal((5, 64)).astype(np.float32) * 20    # far from every cluster
    emb[[20, 21, 22, 23, 24]] = far
    ids = [f"img_{i:05d}.jpg" for i in range(len(emb))]
    exact = embedding_findings(ids, emb)
    monkeypatch.setattr(K, "EXACT_MAX_ROWS", 0)
    approx = embedding_findings(ids, emb)
    pairs = {frozenset(p) for p in approx[0][["image_id", "neighbour_id"]].itertuples(index=False)}
    assert frozenset({"img_00010.jpg", "img_04000.jpg"}) in pairs
    assert pairs == {frozenset(p) for p in exact[0][["image_id", "neighbour_id"]].itertuples(index=False)}
    assert {f"img_{i:05d}.jpg" for i in range(20, 25)} <= set(approx[1]["image_id"])
    assert set(approx[1]["image_id"]) == set(exact[1]["image_id"])


def test_embedding_findings_skip_nan_rows_without_losing_ids():
    emb = clustered(300, 16, seed=4)
    emb[5] = np.nan
    emb[6] = emb[200]
    ids = [f"i{i}" for i in range(300)]
    dups, _ = embedding_findings(ids, emb)
    # the copy is found under its own ids (the calibrated cut may pair a few other close neighbours of this
    # small, dense toy set too: tests/test_embed_dups.py holds the cut's precision)
    assert ("i200", "i6") in {tuple(sorted(p)) for p in dups[["image_id", "neighbour_id"]].itertuples(index=False)}
    assert "i5" not in set(dups["image_id"]) | set(dups["neighbour_id"])


def test_embedding_findings_are_kept_beside_the_scores(tmp_path, monkeypatch):
    import pandas as pd

    import inspect_core.model.sanity as sanity
    from inspect_core.model import cache as score_cache
    from inspect_core.model import table as scores_table
    emb = clustered(300, 16, seed=6)
    emb[5] = emb[100]
    table = pd.DataFrame({"image_id": pd.array([f"i{i}" for i in range(300)], dtype="string")})
    result = scores_table.ScoreResult(table=table, probs=np.zeros((300, 2), dtype=np.float32), class_names=["a", "b"],
                                 embeddings=emb, source={"cache_key": "abc123"})
    folder = score_cache._cache_dir(tmp_path, "abc123")
    folder.mkdir(parents=True)
    calls = []
    real = sanity.embedding_findings

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(sanity, "embedding_findings", counted)
    first = score_cache.embedding_findings_cached(result, tmp_path)
    assert len(calls) == 1 and ("i5", "i100") in set(first[0][["image_id", "neighbour_id"]].itertuples(index=False))
    again = score_cache.embedding_findings_cached(result, tmp_path)          # read back: no second kNN
    assert len(calls) == 1
    for a, b in zip(first, again):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    (folder / score_cache.FINDINGS_FILES[1]).write_bytes(b"not parquet")       # damaged: computed again
    third = score_cache.embedding_findings_cached(result, tmp_path)
    assert len(calls) == 2
    pd.testing.assert_frame_equal(third[0].reset_index(drop=True), first[0].reset_index(drop=True))
    assert score_cache.embedding_findings_cached(result, None) is not None and len(calls) == 3   # nowhere to keep
    other = scores_table.ScoreResult(table=table, probs=result.probs, class_names=["a", "b"], embeddings=emb,
                                source={"cache_key": "not-saved"})
    score_cache.embedding_findings_cached(other, tmp_path)                   # no scores folder: nothing written
    assert not score_cache._cache_dir(tmp_path, "not-saved").exists()
    no_emb = scores_table.ScoreResult(table=table, probs=result.probs, class_names=["a", "b"])
    assert score_cache.embedding_findings_cached(no_emb, tmp_path) is None


def test_outliers_flagged_by_the_approximate_search_are_confirmed_exactly(monkeypatch):
    import inspect_core.model.sanity as sanity
    emb = clustered(5000, 64, seed=5)
    emb[50] = np.random.default_rng(1).standard_normal(64).astype(np.float32) * 30     # a true outlier
    real_knn = sanity.knn

    def missing_neighbours(embeddings, k=5, **kw):   # an approximate search that missed rows 0-4's neighbours
        dist, idx = real_knn(embeddings, k=k, **kw)
        dist[:5] += 0.5
        idx[:5] = idx[:5][:, ::-1]
        return dist, idx
    ids = [f"i{i}" for i in range(len(emb))]
    exact = set(embedding_findings(ids, emb)[1]["image_id"])
    assert "i50" in exact and not exact & {"i0", "i1", "i2", "i3", "i4"}
    monkeypatch.setattr(sanity, "knn", missing_neighbours)
    monkeypatch.setattr(K, "EXACT_MAX_ROWS", 0)
    assert set(embedding_findings(ids, emb)[1]["image_id"]) == exact
    monkeypatch.setattr(sanity, "VERIFY_MAX_ROWS", 0)                 # without the exact check: false flags
    assert {"i0", "i1", "i2", "i3", "i4"} <= set(embedding_findings(ids, emb)[1]["image_id"])


def test_inverted_file_never_lists_a_row_as_its_own_neighbour_when_cells_run_short():
    # review of session 4: a row whose probed cells held exactly k-1 other rows listed itself at distance 2
    emb = np.random.default_rng(0).standard_normal((3000, 16)).astype(np.float32)
    dist, idx = K.knn(emb, k=1000, exact_max_rows=100)
    assert not (idx == np.arange(len(emb))[:, None]).any()
    assert (idx >= 0).all() and np.isfinite(dist).all()


def test_inverted_file_on_fewer_rows_than_its_minimum_cells():
    emb = clustered(10, 8)
    dist, idx = K.knn(emb, k=3, exact_max_rows=5)
    ref_d, _ = brute_force(emb, 3)
    np.testing.assert_allclose(dist, ref_d, atol=1e-5)
