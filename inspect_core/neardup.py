"""Duplicate search: exact groups by hash, near pairs by tiny-image descriptors, in sub-quadratic time.

Near pairs: each image's descriptor is a unit vector (a mean-removed 16x16 grey thumbnail); two images
are near duplicates when the cosine of their descriptors is at least ``threshold``.
Small sets (up to ``BRUTE_FORCE_MAX`` images) are compared all against all. Larger sets use an
inverted-file index: the descriptors are projected on their top principal axes, clustered by k-means,
every image is placed in its three nearest cells, and only images sharing a cell are compared. The
projected distance never exceeds the full one, so the cell-level filter drops no true pair that shares
a cell; candidates are then confirmed on the full descriptors. Pairs whose pHashes agree on a 16-bit block
are added as candidates too (multi-index hashing), which catches near copies that the clustering split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

BRUTE_FORCE_MAX = 8000
PCA_DIM = 32
CELL_TARGET = 1000          # images per k-means cell, on average
CELL_MAX = 6000             # a cell larger than this is split again
N_PROBE = 3                 # each image is placed in its N_PROBE nearest cells
KMEANS_SAMPLE = 65536       # the top-level k-means is fit on this many rows (a random sample)
PROJECT_BLOCK = 16384       # rows projected per matrix product
PHASH_BLOCK_SHIFTS = (0, 16, 32, 48)   # phash_candidates: the four 16-bit blocks of a 64-bit hash
MIRROR_WINDOW = 32          # mirror_pairs above BRUTE_FORCE_MAX: hash neighbours compared per block value


class UnitRows:
    """The descriptors as unit vectors, made on demand: ``rows[idx]`` gives float32 unit rows for those indices.
    Only the int8 descriptors and one norm per row are held (a float32 copy of a million descriptors would
    take 1 GB)."""

    def __init__(self, desc: np.ndarray):
        self.desc = desc
        norm = np.empty(len(desc), np.float32)
        for s0 in range(0, len(desc), 16384):  # in blocks: a float copy of every descriptor would cost 1 KB each
            block = desc[s0:s0 + 16384].astype(np.float32)
            norm[s0:s0 + 16384] = np.sqrt((block * block).sum(1))
        self.valid = norm > 0
        self.inv_norm = np.where(self.valid, 1.0 / np.where(self.valid, norm, 1.0), 0.0).astype(np.float32)

    def __len__(self) -> int:
        return len(self.desc)

    def __getitem__(self, idx) -> np.ndarray:
        return self.desc[idx].astype(np.float32) * self.inv_norm[idx, None]


class _Rule:
    """The near-duplicate rule, with cuts per row: ``cos`` and ``ph`` are (n_rows, K) arrays of K clauses; row r
    accepts a partner when, for some clause k, the cosine >= cos[r, k] and the pHash distance <= ph[r, k] (pad a
    row's unused clauses with cosine 2). A pair is near when both of its rows accept it. Without pHashes only the
    cosine clauses count."""

    def __init__(self, cos: np.ndarray, ph: np.ndarray, phash: np.ndarray | None):
        self.cos, self.ph, self.phash = cos, ph, phash
        self.lowest = float(cos.min()) if cos.size else 1.0
        self.cos_min = cos.min(0).tolist() if cos.size else []
        self.ph_max = ph.max(0).tolist() if ph.size else []

    def keep(self, x, i, j, d2_proj=None):
        """Confirm candidate pairs (i, j): returns (i, j, cosine) of those the rule accepts.
        ``d2_proj``: the pairs' projected squared distances, a lower bound of the full ones."""
        if len(i) and self.phash is not None and d2_proj is not None:
            # the projected distance bounds the cosine from above: drop pairs no clause of row i can accept
            # before reading the full vectors
            # (with each clause's loosest cut over all rows: scalars, no per-row lookups on this hot path)
            dist = hamming64(self.phash[i], self.phash[j])
            sel = np.zeros(len(i), bool)
            for c, p in zip(self.cos_min, self.ph_max):
                sel |= (d2_proj <= 2.0 - 2.0 * c + 1e-4) & (dist <= p)
            i, j = i[sel], j[sel]
        if len(i) == 0:
            return i, j, np.zeros(0, np.float32)
        # full cosines in slices, so that memory stays bounded however many candidates there are
        sims = np.concatenate([np.einsum("ij,ij->i", x[i[s:s + 8192]], x[j[s:s + 8192]])
                               for s in range(0, len(i), 8192)])
        return self.accept(i, j, sims)

    def accept(self, i, j, sims):
        """The pairs (i, j) with full cosines ``sims`` that the rule accepts: (i, j, cosine)."""
        dist = hamming64(self.phash[i], self.phash[j]) if self.phash is not None else None
        ok = np.ones(len(i), bool)
        for side in (i, j):
            side_ok = np.zeros(len(i), bool)
            for k in range(self.cos.shape[1]):
                clause = sims >= self.cos[side, k]
                if dist is not None:
                    clause &= dist <= self.ph[side, k]
                side_ok |= clause
            ok &= side_ok
        return i[ok], j[ok], sims[ok]


def rule_arrays(n: int, strong, weak=None, phash_max=0, strong_phash_max=64) -> tuple[np.ndarray, np.ndarray]:
    """Per-row clause arrays for ``near_pairs(cuts=...)`` from the two-clause form: cosine >= strong with pHash
    distance <= strong_phash_max, or cosine >= weak with pHash distance <= phash_max."""
    cos = np.stack([np.broadcast_to(np.asarray(strong, np.float32), (n,)),
                    np.broadcast_to(np.asarray(2.0 if weak is None else weak, np.float32), (n,))], axis=1)
    ph = np.stack([np.broadcast_to(np.asarray(strong_phash_max, np.int16), (n,)),
                   np.broadcast_to(np.asarray(phash_max, np.int16), (n,))], axis=1)
    return cos, ph


def _brute_force(x: np.ndarray, idx: np.ndarray, rule: _Rule, chunk: int = 512):
    out = []
    xs = x[idx]
    for start in range(0, len(idx), chunk):
        # this block of rows against itself and every later row: the upper triangle, about half the products
        sim = xs[start:start + chunk] @ xs[start:].T
        r, c = np.nonzero(sim >= rule.lowest)
        upper = c > r
        r, c = r[upper], c[upper]
        # these are the full cosines already: the rule is applied to them directly
        out.append(rule.accept(idx[start + r], idx[start + c], sim[r, c]))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return tuple(np.concatenate([o[t] for o in out]) for t in range(3))


def _kmeans(y: np.ndarray, k: int, rng: np.random.Generator, iters: int = 8, sample: int = 65536,
            assign=None) -> np.ndarray:
    """k centres of ``y`` (a random sample of ``sample`` rows), ``iters`` Lloyd iterations. ``assign(pts, centers)``:
    each sample row's nearest centre (None: ``nearest_center``; a caller may spread it over tasks, e.g.
    cluster/dups.py); the means, and the draws from ``rng``, stay here."""
    pts = y if len(y) <= sample else y[rng.choice(len(y), sample, replace=False)]
    centers = pts[rng.choice(len(pts), k, replace=False)].copy()
    for _ in range(iters):
        near = nearest_center(pts, centers) if assign is None else assign(pts, centers)
        sums = np.zeros_like(centers)
        np.add.at(sums, near, pts)
        counts = np.bincount(near, minlength=k).astype(np.float32)
        empty = counts == 0
        centers[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():
            centers[empty] = pts[rng.choice(len(pts), int(empty.sum()), replace=False)]
    return centers


def nearest_chunk(k: int) -> int:
    """Rows of one matrix product against k centres in ``_nearest``: a rows x centres block stays about 16 MB.
    Rows split at multiples of it get the same products, so the same nearest centres, as all rows at once."""
    return max(1024, 4_000_000 // max(k, 1))


def nearest_center(y: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The k-means assignment step: each row's nearest centre (int64)."""
    return _nearest(y, centers, 1)[:, 0]


def _nearest(y: np.ndarray, centers: np.ndarray, n: int) -> np.ndarray:
    """The n nearest centers of each row, nearest first."""
    chunk = nearest_chunk(len(centers))
    c2 = (centers * centers).sum(1)
    out = np.empty((len(y), n), np.int64)
    for s in range(0, len(y), chunk):
        d = c2[None, :] - 2.0 * (y[s:s + chunk] @ centers.T)
        if n == 1:
            out[s:s + chunk, 0] = d.argmin(1)
        else:
            part = np.argpartition(d, n - 1, axis=1)[:, :n]
            order = np.argsort(np.take_along_axis(d, part, 1), axis=1)
            out[s:s + chunk] = np.take_along_axis(part, order, 1)
    return out


def _by_cell(near: np.ndarray, pos: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of each cell from every row's nearest cells ``near`` (n, n_probe): (members, bounds), cell c's rows
    being members[bounds[c]:bounds[c + 1]], in their order in ``pos`` (None: 0..n-1)."""
    n = len(near)
    order = np.argsort(near.ravel(), kind="stable")
    members = (np.arange(n, dtype=np.int32) if pos is None else pos.astype(np.int32))
    members = np.repeat(members, near.shape[1])[order]
    cell_of = near.ravel()[order]
    return members, np.searchsorted(cell_of, np.arange(k + 1))


def ivf_leaves(y: np.ndarray, pos: np.ndarray | None, rng, depth: int = 0, centers: np.ndarray | None = None):
    """The index's leaf cells, in order: arrays of rows of ``y`` (the projected rows; ``pos`` selects some, None:
    all, without copying y), each to be compared all against all (``_cell_pairs``). A set over ``CELL_MAX`` rows is
    split by k-means (drawing from ``rng``; ``centers``: the split's centres given, as the top level's are) into
    cells of its rows' ``N_PROBE`` nearest centres, each split again (up to depth 3), unless it kept 90% of the set.
    A generator: the draws from ``rng`` happen in the order of the leaves, whoever consumes them."""
    n = len(y) if pos is None else len(pos)
    if centers is None and (n <= CELL_MAX or depth >= 3):
        yield np.arange(n) if pos is None else pos
        return
    yy = y if pos is None else y[pos]
    if centers is None:
        centers = _kmeans(yy, n_cells(n), rng)
    k = len(centers)
    near = _nearest(yy, centers, min(N_PROBE, k)).astype(np.int32)
    del yy
    members, bounds = _by_cell(near, pos, k)
    del near
    for c in range(k):
        cell = members[bounds[c]:bounds[c + 1]]
        if len(cell) < 2:
            continue
        if len(cell) >= n * 0.9:  # clustering did not split this set: compare it directly
            yield cell
        else:
            yield from ivf_leaves(y, cell, rng, depth + 1)


def ivf_fit(x: UnitRows, idx: np.ndarray, seed: int):
    """The index's fit on the rows ``idx`` of ``x``, first part: (rng, axes, pick). ``axes``: the top ``PCA_DIM``
    principal axes of a sample of the rows; ``pick``: the positions in ``idx`` whose projections the top-level
    k-means is fit on (``ivf_centers``), None for all. ``rng`` has made these draws; the centres, and any cell's
    split (``ivf_leaves``), draw from it next, in that order."""
    rng = np.random.default_rng(seed)
    sample = x[idx[rng.choice(len(idx), min(len(idx), 20000), replace=False)]]
    mean = sample.mean(0)
    _, vecs = np.linalg.eigh(sample.T @ sample / len(sample) - np.outer(mean, mean))
    axes = vecs[:, ::-1][:, :PCA_DIM].astype(np.float32)
    n_pts = kmeans_sample(n_cells(len(idx)))
    pick = None if len(idx) <= max(n_pts, CELL_MAX) else rng.choice(len(idx), n_pts, replace=False)
    return rng, axes, pick


def n_cells(n: int) -> int:
    """The number of k-means cells of a set of n rows: ``CELL_TARGET`` rows a cell on average."""
    return max(2, int(round(n / CELL_TARGET)))


def kmeans_sample(k: int) -> int:
    """The rows the k-means of k centres is fit on: ``KMEANS_SAMPLE``, or 4 a centre when k is larger (over
    ``KMEANS_SAMPLE`` * ``CELL_TARGET`` rows)."""
    return KMEANS_SAMPLE if k <= KMEANS_SAMPLE else 4 * k


def ivf_centers(pts: np.ndarray, n: int, rng, assign=None) -> np.ndarray:
    """The top-level k-means centres of n rows, fit on ``pts`` (the projections of ``ivf_fit``'s pick, or of every
    row, in that order); ``assign``: the assignment step (``_kmeans``), called with ``pts`` itself."""
    return _kmeans(pts, n_cells(n), rng, sample=len(pts), assign=assign)


def project(x: UnitRows, rows: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """The projections of ``x[rows]`` on ``axes`` (float32), ``PROJECT_BLOCK`` rows a matrix product: the index's
    blocks start at multiples of it (a matrix product's rounding may depend on its shape)."""
    y = np.empty((len(rows), axes.shape[1]), np.float32)
    for s0 in range(0, len(rows), PROJECT_BLOCK):
        y[s0:s0 + PROJECT_BLOCK] = x[rows[s0:s0 + PROJECT_BLOCK]] @ axes
    return y


def _concat(parts):
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return tuple(np.concatenate([o[t] for o in parts]) for t in range(3))


def _cell_pairs(x, y, gidx, cell, rule: _Rule, chunk: int = 2048):
    # On unit vectors: cos >= t  <=>  |a-b|^2 <= 2-2t; the projection can only shrink distances, so a
    # filter on projected distances drops no pair the rule would accept. Squared distances come from one
    # matrix product of augmented rows: [y, |y|^2, 1] . [-2y, 1, |y|^2] = |a|^2 + |b|^2 - 2 a.b
    bound = 2.0 - 2.0 * rule.lowest + 1e-4
    yc = y[cell]
    rows = gidx[cell]
    n2 = (yc * yc).sum(1, keepdims=True)
    ones = np.ones_like(n2)
    left = np.hstack([yc, n2, ones])
    right = np.hstack([-2.0 * yc, ones, n2])
    out = []
    m = len(cell)
    for s in range(0, m, chunk):
        d2 = left[s:s + chunk] @ right[s:].T
        flat = np.flatnonzero(d2 <= bound)
        r, c = np.divmod(flat, m - s)
        upper = c > r  # block row r is cell row s+r; column c is cell row s+c
        # confirm block by block: only accepted pairs are kept, however many candidates a dense cell has
        out.append(rule.keep(x, rows[s + r[upper]], rows[s + c[upper]], d2.ravel()[flat[upper]]))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return tuple(np.concatenate([o[t] for o in out]) for t in range(3))


def phash_candidates(phash: np.ndarray, idx: np.ndarray, max_distance: int, window: int = 32):
    """Pairs of rows ``idx`` whose 64-bit pHashes are within ``max_distance`` bits and agree exactly on one of
    their four 16-bit blocks (multi-index hashing: certain for distances up to 3, likely beyond). Within a block
    value, rows are sorted by the whole hash and compared with their next ``window`` neighbours, so a block
    value shared by very many images costs n*window, not n^2."""
    h = phash[idx].view(np.uint64)
    out_i, out_j = [], []
    for shift in PHASH_BLOCK_SHIFTS:
        block = (h >> np.uint64(shift)) & np.uint64(0xFFFF)
        bi, bj = block_candidates(h, block, idx, max_distance, window)
        out_i.append(bi), out_j.append(bj)
    return np.concatenate(out_i), np.concatenate(out_j)


def block_candidates(h: np.ndarray, block: np.ndarray, idx: np.ndarray, max_distance: int, window: int = 32):
    """``phash_candidates`` for one block: rows ``idx`` with hashes ``h`` (uint64) and values ``block`` of that
    block; rows with equal values are sorted by hash (ties in the order given) and each compared with its next
    ``window``. A set of whole block values gives the same pairs here as among all rows (a shuffle by value)."""
    order = np.lexsort((h, block))
    sb, sh = block[order], h[order]
    out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for w in range(1, min(window, len(order) - 1) + 1):
        same = sb[w:] == sb[:-w]
        if not same.any():
            break
        k = np.nonzero(same)[0]
        close = np.bitwise_count(sh[k] ^ sh[k + w]) <= max_distance
        out_i.append(idx[order[k[close]]]), out_j.append(idx[order[k[close] + w]])
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)


def phash_cut(rule: _Rule) -> int:
    """The pHash distance up to which the multi-index candidates are taken: the rule's largest, at most 24."""
    return int(min(rule.ph[rule.cos <= 1.0].max(initial=0), 24))


def near_pairs(desc: np.ndarray, strong=None, weak=None, phash: np.ndarray | None = None,
               phash_max=0, seed: int = 0, subset: np.ndarray | None = None, strong_phash_max=64,
               cuts: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with descriptor cosine >= ``strong`` (and, when ``phash`` is given, pHash distance <=
    ``strong_phash_max``), or cosine >= ``weak`` and pHash distance <= ``phash_max``: arrays (i, j, cosine).
    Every cut is a number or an array with one value per row. ``cuts``: instead, per-row clauses (cosine and
    pHash arrays of shape (n_rows, K), see ``_Rule``; ``rule_arrays`` makes them); a pair is near when both
    rows' clauses accept it. ``subset``: a boolean mask of the rows to compare (default all); flat descriptors
    (all zeros) are never paired."""
    x = UnitRows(desc)
    if cuts is None:
        cuts = rule_arrays(len(desc), strong, weak if phash is not None else None, phash_max, strong_phash_max)
    rule = _Rule(cuts[0], cuts[1], phash)
    idx = np.nonzero(x.valid if subset is None else (x.valid & np.asarray(subset, dtype=bool)))[0]
    if len(idx) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if len(idx) <= BRUTE_FORCE_MAX:
        i, j, s = _brute_force(x, idx, rule)
    else:
        rng, axes, pick = ivf_fit(x, idx, seed)
        y = project(x, idx, axes)                      # the projections of the rows idx, in that order
        centers = None if len(idx) <= CELL_MAX else ivf_centers(y if pick is None else y[pick], len(idx), rng)
        i, j, s = _concat([_cell_pairs(x, y, idx, leaf, rule) for leaf in ivf_leaves(y, None, rng, 0, centers)])
        del y
    if phash is not None and len(idx) > BRUTE_FORCE_MAX:
        # the index compares rows that share a cell; near copies with close pHashes are also paired directly
        pi, pj = phash_candidates(phash, idx, phash_cut(rule))
        pi, pj, ps = rule.keep(x, pi, pj)
        i, j, s = np.concatenate([i, pi]), np.concatenate([j, pj]), np.concatenate([s, ps])
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo.astype(np.int64) * len(desc) + hi
    key, first = np.unique(key, return_index=True)
    return lo[first], hi[first], s[first].astype(np.float32)


def mirrored(desc: np.ndarray) -> np.ndarray:
    """The descriptors of the left-right mirrored images: a descriptor is a square grey thumbnail stored row by
    row, so mirroring the image reverses each of its rows (the box average and the mean removal commute with it)."""
    side = round(float(np.sqrt(desc.shape[1])))
    return np.ascontiguousarray(desc.reshape(len(desc), side, side)[:, :, ::-1].reshape(len(desc), -1))


def _dct_rows(n: int, k: int) -> np.ndarray:
    x = np.arange(n)
    return np.cos(np.pi * (2 * x + 1) * np.arange(k)[:, None] / (2 * n)).astype(np.float32)


def descriptor_phashes(desc: np.ndarray, rows: np.ndarray | None = None,
                       chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """64-bit perceptual hashes of the descriptors' thumbnails (``rows``, default all), and of the same thumbnails
    mirrored left-right: the 8x8 lowest DCT frequencies against their median, as pHash does on 32x32, so that an
    image and another's mirror can be compared by hash as well as by cosine. Mirroring multiplies the DCT's
    odd horizontal frequencies by -1, so both hashes come from one transform. Not the scan's pHash: its
    distances have their own cuts."""
    side = round(float(np.sqrt(desc.shape[1])))
    dct_t = _dct_rows(side, 8).T                         # (side, 8)
    sign = np.where(np.arange(8) % 2 == 0, 1.0, -1.0).astype(np.float32)
    bits = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)
    rows = np.arange(len(desc)) if rows is None else np.asarray(rows)
    out = np.empty(len(rows), np.int64), np.empty(len(rows), np.int64)
    for s0 in range(0, len(rows), chunk):
        g = desc[rows[s0:s0 + chunk]].astype(np.float32)
        n = len(g)
        cols = (g.reshape(n * side, side) @ dct_t).reshape(n, side, 8)            # horizontal frequencies v
        low = (cols.transpose(0, 2, 1).reshape(n * 8, side) @ dct_t).reshape(n, 8, 8)   # (v, u)
        for k, lw in enumerate((low, low * sign[None, :, None])):
            flat = lw.reshape(n, 64)
            out[k][s0:s0 + n] = ((flat > np.median(flat, axis=1)[:, None]).astype(np.uint64) * bits).sum(
                axis=1, dtype=np.uint64).view(np.int64)
    return out


def mirror_pairs(desc: np.ndarray, cosine: float, phash_max: int, subset: np.ndarray | None = None,
                 chunk: int = 1024, window: int = MIRROR_WINDOW
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) where one image is a left-right mirror of the other: the cosine of i's descriptor with j's
    mirrored descriptor >= ``cosine`` and the thumbnail hashes (``descriptor_phashes``: i's, and j's mirrored)
    within ``phash_max`` bits. Returns (i, j, cosine, hash distance). Up to ``BRUTE_FORCE_MAX`` rows every row is
    compared with every mirrored row; above, candidates are the rows whose hash agrees with another's mirrored
    hash on a 16-bit block (``phash_candidates``), confirmed by the cosine. No copy of the mirrored descriptors is
    made beyond the rows compared."""
    x = UnitRows(desc)
    idx = np.nonzero(x.valid if subset is None else (x.valid & np.asarray(subset, dtype=bool)))[0]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int16))
    if len(idx) < 2:
        return empty
    h, hf = descriptor_phashes(desc, idx)

    def flipped_unit(pos: np.ndarray) -> np.ndarray:
        return mirrored(desc[idx[pos]]).astype(np.float32) * x.inv_norm[idx[pos], None]

    if len(idx) <= BRUTE_FORCE_MAX:
        a_rows, b_rows = x[idx], flipped_unit(np.arange(len(idx)))
        found_i, found_j = [], []
        for s0 in range(0, len(idx), chunk):
            r, c = np.nonzero(a_rows[s0:s0 + chunk] @ b_rows.T >= cosine)
            found_i.append(r + s0), found_j.append(c)
        pi, pj = np.concatenate(found_i), np.concatenate(found_j)
    else:
        ci, cj = phash_candidates(np.concatenate([h, hf]), np.arange(2 * len(idx)), phash_max, window)
        cross = (ci < len(idx)) != (cj < len(idx))
        ci, cj = ci[cross], cj[cross]
        pi, pj = np.where(ci < len(idx), ci, cj), np.where(ci < len(idx), cj, ci) - len(idx)
    keep = pi != pj
    pi, pj = pi[keep], pj[keep]
    if len(pi) == 0:
        return empty
    sims = np.concatenate([np.einsum("ij,ij->i", x[idx[pi[s:s + 8192]]], flipped_unit(pj[s:s + 8192]))
                           for s in range(0, len(pi), 8192)])
    dist = hamming64(h[pi], hf[pj])
    ok = (sims >= cosine) & (dist <= phash_max)
    pi, pj, sims, dist = pi[ok], pj[ok], sims[ok], dist[ok]
    if len(pi) == 0:
        return empty
    lo, hi = np.minimum(idx[pi], idx[pj]), np.maximum(idx[pi], idx[pj])
    order = np.lexsort((-sims, hi, lo))          # each unordered pair once, its best direction
    lo, hi, sims, dist = lo[order], hi[order], sims[order], dist[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])]
    return lo[first], hi[first], sims[first].astype(np.float32), dist[first]


def hamming64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between two arrays of 64-bit hashes (stored as int64)."""
    return np.bitwise_count(np.bitwise_xor(a.astype(np.int64), b.astype(np.int64)).view(np.uint64)).astype(np.int16)


def star_groups(n: int, i: np.ndarray, j: np.ndarray, score: np.ndarray, max_members: int = 50):
    """Duplicate groups without chaining: every member is paired with its group's representative.

    Nodes are taken in order of how many pairs they have (most first; ties by the higher summed score, then
    the lower row); an unassigned node becomes a representative and takes its unassigned partners, best score
    first. A representative with more than ``max_members - 1`` partners gets several groups of at most
    ``max_members`` images each, all with it as representative (``part``, ``n_parts`` say which). A node whose
    partners were all taken by other groups stays in none (its pairs are still listed). O(pairs log pairs).

    Returns a DataFrame with one row per grouped node: node, group_id, representative, score_to_representative
    (1 for the representative), part, n_parts."""
    i, j, score = (np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(score, np.float64))
    cols = ["node", "group_id", "representative", "score_to_representative", "part", "n_parts"]
    if len(i) == 0:
        return pd.DataFrame({c: np.zeros(0, np.float64 if c == "score_to_representative" else np.int64)
                             for c in cols})
    src, dst, sc = np.r_[i, j], np.r_[j, i], np.r_[score, score]
    order = np.lexsort((-sc, src))                # by node, then best partner first
    src, dst, sc = src[order], dst[order], sc[order]
    starts = np.searchsorted(src, np.arange(n + 1))
    degree = np.diff(starts)
    strength = np.bincount(src, weights=sc, minlength=n)
    nodes = np.nonzero(degree)[0]
    nodes = nodes[np.lexsort((nodes, -strength[nodes], -degree[nodes]))]
    assigned = np.zeros(n, bool)
    out = []
    gid = 0
    per_group = max(1, max_members - 1)
    for rep in nodes.tolist():
        if assigned[rep]:
            continue
        nb, nb_sc = dst[starts[rep]:starts[rep + 1]], sc[starts[rep]:starts[rep + 1]]
        free = ~assigned[nb]
        nb, nb_sc = nb[free], nb_sc[free]
        if len(nb) == 0:
            continue
        assigned[rep] = True
        assigned[nb] = True
        n_parts = -(-len(nb) // per_group)
        for part in range(n_parts):
            m, m_sc = nb[part * per_group:(part + 1) * per_group], nb_sc[part * per_group:(part + 1) * per_group]
            out.append((np.r_[rep, m], gid, rep, np.r_[1.0, m_sc], part + 1, n_parts))
            gid += 1
    return pd.DataFrame({
        "node": np.concatenate([o[0] for o in out]),
        "group_id": np.concatenate([np.full(len(o[0]), o[1]) for o in out]),
        "representative": np.concatenate([np.full(len(o[0]), o[2]) for o in out]),
        "score_to_representative": np.concatenate([o[3] for o in out]),
        "part": np.concatenate([np.full(len(o[0]), o[4]) for o in out]),
        "n_parts": np.concatenate([np.full(len(o[0]), o[5]) for o in out]),
    }, columns=cols)


def group_members(pairs: pd.DataFrame) -> pd.DataFrame:
    """The duplicate groups as a scan saved them (``pairs.parquet``: group_id, to_representative, representative),
    one row per member, the representative first: group_id, image_id, representative, score_to_representative (1
    for the representative itself), part and n_parts (a representative's duplicates split over several groups).
    Empty for a scan saved before groups had representatives. Pairs with an ``evidence`` column (pixels, model,
    pixels+model: ``model.embed_dups``) give each member its link's evidence ("" for the representative)."""
    cols = ["group_id", "image_id", "representative", "score_to_representative", "part", "n_parts"]
    if pairs is not None and "evidence" in pairs.columns:
        cols.append("evidence")
    if pairs is None or pairs.empty or "representative" not in pairs.columns:
        return pd.DataFrame(columns=cols)
    links = pairs[pairs["to_representative"].astype(bool)]
    rep = links["representative"].to_numpy()
    members = pd.DataFrame({"group_id": links["group_id"].to_numpy(), "representative": rep,
                            "image_id": np.where(links["image_id_a"].to_numpy() == rep, links["image_id_b"],
                                                 links["image_id_a"]),
                            "score_to_representative": links["score"].to_numpy(float)})
    if "evidence" in cols:
        members["evidence"] = links["evidence"].astype(str).to_numpy()
    heads = members.drop_duplicates("group_id").assign(image_id=lambda d: d["representative"],
                                                        score_to_representative=1.0).sort_values("group_id")
    if "evidence" in cols:
        heads["evidence"] = ""
    heads["part"] = heads.groupby("representative").cumcount() + 1
    heads["n_parts"] = heads.groupby("representative")["group_id"].transform("size")
    out = pd.concat([heads, members.merge(heads[["group_id", "part", "n_parts"]], on="group_id")
                     .sort_values(["group_id", "score_to_representative"], ascending=[True, False])])
    return out.sort_values("group_id", kind="stable").reset_index(drop=True)[cols]


def pairs_with_groups(pairs: pd.DataFrame, groups: pd.DataFrame, n_images: int) -> pd.DataFrame:
    """``pairs`` (columns a, b: image rows; image_id_a, image_id_b) with the star groups of ``star_groups`` written
    in: group_id (-1: the pair is in no group), to_representative, representative (its image_id or None).
    A member's group and representative are looked up (a representative of a split group sits in every part),
    so a pair with the representative lands in the member's part. The scan's pairs and the model's both use it."""
    a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    members = groups[groups["node"] != groups["representative"]]
    gid = np.full(n_images, -1, np.int64)
    rep = np.full(n_images, -1, np.int64)
    gid[members["node"].to_numpy()] = members["group_id"].to_numpy()
    rep[members["node"].to_numpy()] = members["representative"].to_numpy()
    a_is_rep, b_is_rep = rep[b] == a, rep[a] == b
    pairs["group_id"] = np.where(a_is_rep, gid[b], np.where(b_is_rep | ((gid[a] == gid[b]) & (gid[a] >= 0)),
                                                            gid[a], -1))
    pairs["to_representative"] = a_is_rep | b_is_rep
    pairs["representative"] = np.where(a_is_rep, pairs["image_id_a"], np.where(b_is_rep, pairs["image_id_b"], None))
    return pairs
