"""Duplicate search: exact groups by hash, near pairs by tiny-image descriptors, in sub-quadratic time.

Near pairs: each image's descriptor is a unit vector (a mean-removed 16x16 grey thumbnail); two images
are near duplicates when the cosine of their descriptors is at least ``threshold``.
Small sets (up to ``BRUTE_FORCE_MAX`` images) are compared all against all. Larger sets use an
inverted-file index: the descriptors are projected on their top principal axes, clustered by k-means,
every image is placed in its two nearest cells, and only images sharing a cell are compared. The
projected distance never exceeds the full one, so the cell-level filter drops no true pair that shares
a cell; candidates are then confirmed on the full descriptors.
"""
from __future__ import annotations

import numpy as np

BRUTE_FORCE_MAX = 8000
PCA_DIM = 32
CELL_TARGET = 1000          # images per k-means cell, on average
CELL_MAX = 6000             # a cell larger than this is split again
N_PROBE = 2                 # each image is placed in its N_PROBE nearest cells


def unit_rows(desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 unit vectors from int8 descriptors, and the mask of usable (non-flat) rows."""
    x = desc.astype(np.float32)
    norm = np.sqrt((x * x).sum(1))
    valid = norm > 0
    x[valid] /= norm[valid, None]
    return x, valid


def _pairs_from_gram(sim: np.ndarray, rows: np.ndarray, cols: np.ndarray, thr: float, upper: bool):
    if upper:
        sim = np.triu(sim, k=1)
    r, c = np.nonzero(sim >= thr)
    return rows[r], cols[c], sim[r, c]


def _brute_force(x: np.ndarray, idx: np.ndarray, thr: float, chunk: int = 2048):
    out_i, out_j, out_s = [], [], []
    xs = x[idx]
    for start in range(0, len(idx), chunk):
        block = xs[start:start + chunk]
        sim = block @ xs[start:].T
        i, j, s = _pairs_from_gram(sim, idx[start:start + chunk], idx[start:], thr, upper=True)
        out_i.append(i), out_j.append(j), out_s.append(s)
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


def _kmeans(y: np.ndarray, k: int, rng: np.random.Generator, iters: int = 8, sample: int = 65536) -> np.ndarray:
    pts = y if len(y) <= sample else y[rng.choice(len(y), sample, replace=False)]
    centers = pts[rng.choice(len(pts), k, replace=False)].copy()
    for _ in range(iters):
        assign = _nearest(pts, centers, 1)[:, 0]
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, pts)
        counts = np.bincount(assign, minlength=k).astype(np.float32)
        empty = counts == 0
        centers[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():
            centers[empty] = pts[rng.choice(len(pts), int(empty.sum()), replace=False)]
    return centers


def _nearest(y: np.ndarray, centers: np.ndarray, n: int, chunk: int = 65536) -> np.ndarray:
    c2 = (centers * centers).sum(1)
    out = np.empty((len(y), n), np.int64)
    for s in range(0, len(y), chunk):
        d = c2[None, :] - 2.0 * (y[s:s + chunk] @ centers.T)
        if n == 1:
            out[s:s + chunk, 0] = d.argmin(1)
        else:
            out[s:s + chunk] = np.argpartition(d, n - 1, axis=1)[:, :n]
    return out


def _ivf_pairs(x: np.ndarray, y: np.ndarray, idx: np.ndarray, thr: float, rng, depth: int = 0):
    """Candidate pairs among rows ``idx`` whose projected squared distance is within the bound."""
    n = len(idx)
    if n <= CELL_MAX or depth >= 3:
        return _cell_pairs(x, y, idx, thr)
    k = max(2, int(round(n / CELL_TARGET)))
    yy = y[idx]
    centers = _kmeans(yy, k, rng)
    near = _nearest(yy, centers, min(N_PROBE, k))
    order = np.argsort(near.ravel(), kind="stable")
    members = np.repeat(idx, near.shape[1])[order]
    cell_of = near.ravel()[order]
    bounds = np.searchsorted(cell_of, np.arange(k + 1))
    out = []
    for c in range(k):
        cell = members[bounds[c]:bounds[c + 1]]
        if len(cell) < 2:
            continue
        if len(cell) >= n * 0.9:  # clustering did not split this set: compare it directly
            out.append(_cell_pairs(x, y, cell, thr))
        else:
            out.append(_ivf_pairs(x, y, cell, thr, rng, depth + 1))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return tuple(np.concatenate([o[t] for o in out]) for t in range(3))


def _cell_pairs(x, y, cell, thr, chunk: int = 4096):
    # On unit vectors: cos >= thr  <=>  |a-b|^2 <= 2-2*thr; the projection can only shrink distances.
    bound = 2.0 - 2.0 * thr + 1e-4
    yc = y[cell]
    n2 = (yc * yc).sum(1)
    out_i, out_j = [], []
    for s in range(0, len(cell), chunk):
        d2 = n2[s:s + chunk, None] + n2[None, s:] - 2.0 * (yc[s:s + chunk] @ yc[s:].T)
        mask = np.triu(d2 <= bound, k=1)  # block row r is cell row s+r; column c is cell row s+c
        r, c = np.nonzero(mask)
        out_i.append(cell[s + r]), out_j.append(cell[s + c])
    i = np.concatenate(out_i) if out_i else np.zeros(0, np.int64)
    j = np.concatenate(out_j) if out_j else np.zeros(0, np.int64)
    if len(i) == 0:
        return i, j, np.zeros(0, np.float32)
    sims = np.einsum("ij,ij->i", x[i], x[j])
    keep = sims >= thr
    return i[keep], j[keep], sims[keep]


def near_pairs(desc: np.ndarray, threshold: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) whose descriptor cosine is at least ``threshold``: arrays (i, j, cosine)."""
    x, valid = unit_rows(desc)
    idx = np.nonzero(valid)[0]
    if len(idx) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if len(idx) <= BRUTE_FORCE_MAX:
        i, j, s = _brute_force(x, idx, threshold)
    else:
        rng = np.random.default_rng(seed)
        sample = x[idx[rng.choice(len(idx), min(len(idx), 20000), replace=False)]]
        _, _, vt = np.linalg.svd(sample - sample.mean(0), full_matrices=False)
        y = np.zeros((len(x), PCA_DIM), np.float32)
        y[idx] = x[idx] @ vt[:PCA_DIM].T.astype(np.float32)
        i, j, s = _ivf_pairs(x, y, idx, threshold, rng)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo.astype(np.int64) * len(desc) + hi
    key, first = np.unique(key, return_index=True)
    return lo[first], hi[first], s[first].astype(np.float32)


def hamming64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between two arrays of 64-bit hashes (stored as int64)."""
    return np.bitwise_count(np.bitwise_xor(a.astype(np.int64), b.astype(np.int64)).view(np.uint64)).astype(np.int16)


def connected_groups(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Group id per node (-1 for nodes in no pair); groups are the connected components of the pairs."""
    parent: dict[int, int] = {}

    def find(a):
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    for a, b in zip(i.tolist(), j.tolist()):
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    out = np.full(n, -1, np.int64)
    ids: dict[int, int] = {}
    for node in sorted(parent):
        out[node] = ids.setdefault(find(node), len(ids))
    return out
