"""Cosine k nearest neighbours of model embeddings, exact for small sets and inverted-file for large ones.

The embedding checks (``sanity.embedding_findings``) need each image's k nearest neighbours. Brute force is
O(N^2 d): 20,000 x 512 takes about 8 s on 2 cores, so 100,000 would take minutes and 1,000,000 hours.

Up to ``EXACT_MAX_ROWS`` rows the search is exact (chunked matrix products). Above that it is an inverted
file, the classic approximate search (as in FAISS's IndexIVFFlat):

1. the unit rows are projected onto their top ``PROJECTED_DIMS`` principal axes (fitted on a sample);
2. k-means on a sample of the projections gives ``CELLS_PER_SQRT_N * sqrt(N)`` cells, and every row is filed
   in its nearest cell;
3. each row is compared, by exact cosine distance in the full embedding, with the members of its nearest
   cells (nearest in the projection): ``N_PROBE`` cells, more when that is under ``MIN_PROBED_ROWS`` rows.

So every distance returned is exact; what can be missed is a true neighbour that no probed cell holds.
bench/bench_knn.py measures recall against the exact search (BENCHMARKS.md). Above ``EXACT_MAX_ROWS`` nothing
here copies the whole embedding matrix (1,000,000 x 2048 float32 is 8 GB): rows are normalised chunk by chunk.
"""
from __future__ import annotations

import math

import numpy as np
import torch

EXACT_MAX_ROWS = 10_000      # exact search up to here (under 1 s at 10,000 x 512 on 2 cores)
PROJECTED_DIMS = 64          # principal axes the inverted file searches in
N_PROBE = 8                  # cells searched per row, at least
MIN_PROBED_ROWS = 1000       # ... and enough cells to hold about this many rows
KMEANS_ITERATIONS = 8
KMEANS_SAMPLE_PER_CELL = 32  # k-means trains on this many rows per cell (at most)
CELLS_PER_SQRT_N = 4.0       # cells: this times sqrt(N)
PCA_SAMPLE_ROWS = 20_000
CHUNK_ROWS = 4096


def _norms(emb: np.ndarray) -> np.ndarray:
    """Row norms (float32), 1 where a row is all zeros (it stays a zero row: distance 1 to everything)."""
    out = np.empty(len(emb), dtype=np.float32)
    for start in range(0, len(emb), CHUNK_ROWS):
        block = np.asarray(emb[start:start + CHUNK_ROWS], dtype=np.float32)
        out[start:start + len(block)] = np.linalg.norm(block, axis=1)
    out[out == 0] = 1.0
    return out


def _unit(emb: np.ndarray, norms: np.ndarray, rows) -> torch.Tensor:
    """Rows of the embedding (a slice or an index array) scaled to unit length, float32."""
    return torch.from_numpy(np.asarray(emb[rows], dtype=np.float32) / norms[rows, None])


def knn(embeddings: np.ndarray, k: int = 5, *, exact_max_rows: int | None = None,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-distance k nearest neighbours of each row, itself excluded: ``(distances (N, k) float32 in
    [0, 2], indices (N, k) int64)``, nearest first. Exact up to ``exact_max_rows`` rows, else the inverted
    file described above (its distances are exact; a neighbour can be missed). Needs N >= 2.
    ``exact_max_rows``: None for ``EXACT_MAX_ROWS`` (read at call time)."""
    emb = np.asarray(embeddings)
    n = emb.shape[0]
    if n < 2:
        raise ValueError("knn needs at least 2 rows")
    k = max(1, min(int(k), n - 1))
    norms = _norms(emb)
    if n <= (EXACT_MAX_ROWS if exact_max_rows is None else exact_max_rows):
        dist, idx = _exact(emb, norms, k)
    else:
        dist, idx = _inverted_file(emb, norms, k, seed)
    return np.clip(dist, 0.0, 2.0), idx


def exact_rows(embeddings: np.ndarray, rows, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``knn`` for ``rows`` only (brute force against every row): ``(distances, indices)``, (len(rows), k).
    Cost: len(rows) x N x d; used to confirm what the inverted file flags."""
    emb = np.asarray(embeddings)
    k = max(1, min(int(k), emb.shape[0] - 1))
    dist, idx = _exact(emb, _norms(emb), k, np.asarray(rows, dtype=np.int64))
    return np.clip(dist, 0.0, 2.0), idx


def is_exact(n_rows: int) -> bool:
    """Whether ``knn`` searches ``n_rows`` rows exactly (else by the inverted file)."""
    return n_rows <= EXACT_MAX_ROWS


def _exact(emb: np.ndarray, norms: np.ndarray, k: int, rows: np.ndarray | None = None):
    """Brute force for ``rows`` (default: all) against every row, block by block (no copy of the matrix)."""
    n = emb.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    dist_out = np.empty((len(rows), k), dtype=np.float32)
    idx_out = np.empty((len(rows), k), dtype=np.int64)
    step = CHUNK_ROWS // 2
    for start in range(0, len(rows), step):
        query_rows = rows[start:start + step]
        q = _unit(emb, norms, query_rows)
        best_d = torch.full((len(query_rows), k), math.inf)
        best_i = torch.full((len(query_rows), k), -1, dtype=torch.int64)
        for key_start in range(0, n, CHUNK_ROWS):
            key_stop = min(n, key_start + CHUNK_ROWS)
            d = 1.0 - q @ _unit(emb, norms, slice(key_start, key_stop)).T
            own = torch.from_numpy((query_rows >= key_start) & (query_rows < key_stop))
            d[own.nonzero()[:, 0], torch.from_numpy(query_rows)[own] - key_start] = math.inf
            values, cols = torch.topk(d, min(k, key_stop - key_start), dim=1, largest=False)
            best_d, best_i = _merge(best_d, best_i, values, cols + key_start, k)
        dist_out[start:start + len(query_rows)], idx_out[start:start + len(query_rows)] = _ordered(best_d, best_i)
    return dist_out, idx_out


def _merge(best_d, best_i, values, indices, k: int):
    """The k smallest of the kept (best) and new (values, indices) per row. A masked (inf) entry, a row's own
    column, carries index -1 like an empty slot, so it is never taken for a neighbour."""
    indices = torch.where(torch.isinf(values), torch.full_like(indices, -1), indices)
    merged_d = torch.cat([best_d, values], dim=1)
    merged_i = torch.cat([best_i, indices], dim=1)
    keep = torch.topk(merged_d, k, dim=1, largest=False).indices
    return torch.gather(merged_d, 1, keep), torch.gather(merged_i, 1, keep)


def _ordered(best_d: torch.Tensor, best_i: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Nearest first; equal distances in index order (which of several rows tied at the k-th place were kept
    is topk's choice)."""
    d, i = best_d.numpy(), best_i.numpy()
    order = np.lexsort((i, d), axis=1)
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def _projection(emb: np.ndarray, norms: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """The unit rows on their top principal axes (fitted on a sample): (N, PROJECTED_DIMS) float32."""
    n, dims = emb.shape
    sample = np.sort(rng.choice(n, size=min(n, PCA_SAMPLE_ROWS), replace=False))
    unit_sample = _unit(emb, norms, sample)
    mean = unit_sample.mean(dim=0)
    if dims <= PROJECTED_DIMS:
        axes = torch.eye(dims)
    else:
        # eigenvectors of the sample's covariance (float64; a d x d matrix, not an SVD of the sample)
        centred = (unit_sample - mean).double()
        _, vectors = torch.linalg.eigh(centred.T @ centred)            # ascending eigenvalues
        axes = vectors[:, -PROJECTED_DIMS:].flip(1).float().contiguous()
    return torch.cat([(_unit(emb, norms, slice(s, s + CHUNK_ROWS)) - mean) @ axes
                      for s in range(0, n, CHUNK_ROWS)])


def _nearest_cells(points: torch.Tensor, centres: torch.Tensor, n_nearest: int) -> torch.Tensor:
    """Indices (len(points), n_nearest) of each point's nearest centres (squared Euclidean), nearest first."""
    c_sq = (centres * centres).sum(dim=1)
    out = []
    for start in range(0, len(points), CHUNK_ROWS):
        block = points[start:start + CHUNK_ROWS]
        d = c_sq[None, :] - 2.0 * (block @ centres.T)       # + |p|^2, the same for every centre of a row
        out.append(torch.topk(d, n_nearest, dim=1, largest=False, sorted=True).indices)
    return torch.cat(out)


def _kmeans(points: torch.Tensor, n_cells: int, rng: np.random.Generator) -> torch.Tensor:
    """Lloyd's k-means on ``points`` from random distinct rows; an emptied cell restarts at a random row."""
    centres = points[torch.from_numpy(rng.choice(len(points), size=n_cells, replace=False))].clone()
    for _ in range(KMEANS_ITERATIONS):
        cell = _nearest_cells(points, centres, 1)[:, 0]
        sums = torch.zeros_like(centres).index_add_(0, cell, points)
        counts = torch.bincount(cell, minlength=n_cells).to(points.dtype)
        empty = counts == 0
        centres = sums / counts.clamp(min=1)[:, None]
        if bool(empty.any()):
            restart = torch.from_numpy(rng.choice(len(points), size=int(empty.sum()), replace=False))
            centres[empty] = points[restart]
    return centres


def _inverted_file(emb: np.ndarray, norms: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = emb.shape[0]
    low = _projection(emb, norms, rng)
    n_cells = min(n, max(16, int(round(CELLS_PER_SQRT_N * math.sqrt(n)))))
    train = low[torch.from_numpy(np.sort(rng.choice(n, size=min(n, KMEANS_SAMPLE_PER_CELL * n_cells),
                                                    replace=False)))]
    centres = _kmeans(train, n_cells, rng)
    n_probe = min(n_cells, max(N_PROBE, math.ceil(MIN_PROBED_ROWS * n_cells / n)))
    probes = _nearest_cells(low, centres, n_probe)             # (N, n_probe)
    home = probes[:, 0]
    members_order = torch.argsort(home, stable=True)
    bounds = torch.searchsorted(home[members_order], torch.arange(n_cells + 1)).tolist()   # ints: slicing
                                                                                 # with tensors is 10x slower
    # queries by probed cell: every (row, cell) pair of the probe table, grouped by cell
    flat_cells = probes.reshape(-1)
    flat_rows = torch.arange(n).repeat_interleave(n_probe)
    query_order = torch.argsort(flat_cells, stable=True)
    query_bounds = torch.searchsorted(flat_cells[query_order], torch.arange(n_cells + 1)).tolist()

    best_d = torch.full((n, k), math.inf)
    best_i = torch.full((n, k), -1, dtype=torch.int64)
    for cell in range(n_cells):
        members = members_order[bounds[cell]:bounds[cell + 1]]
        queries = flat_rows[query_order[query_bounds[cell]:query_bounds[cell + 1]]]
        if len(members) == 0 or len(queries) == 0:
            continue
        # exact cosine distances in the full embedding
        d = 1.0 - _unit(emb, norms, queries.numpy()) @ _unit(emb, norms, members.numpy()).T
        d[queries[:, None] == members[None, :]] = math.inf            # never a row's own neighbour
        values, cols = torch.topk(d, min(k, len(members)), dim=1, largest=False)
        best_d[queries], best_i[queries] = _merge(best_d[queries], best_i[queries], values, members[cols], k)
    dist, idx = _ordered(best_d, best_i)
    short = np.nonzero((idx < 0).any(axis=1))[0]      # probed cells held fewer than k other rows: brute force
    if len(short):
        dist[short], idx[short] = _exact(emb, norms, k, short)
    return dist, idx
