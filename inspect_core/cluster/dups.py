"""The scan's global duplicate steps in a form that splits across workers: exact duplicates by a shuffle on the
content and pixel hashes, near-duplicate candidates by banding the 64-bit pHashes, each candidate confirmed by the
same rule as the local path (``neardup._Rule``, the cuts of ``checks.context.near_cuts``).

Banding (pigeonhole): the 64 bits are split into k+1 bands; two hashes within k bits differ in at most k bands, so
they agree exactly on at least one. Grouping the images by one band's value (a shuffle on that value) and comparing
only images in the same group therefore finds every pair within k bits. A pair is emitted in the first band it
shares only, so no pair is compared twice across bands.

Which pairs this finds, against the local path (``neardup.near_pairs``, cosine on the descriptors):
- every clause of the near-duplicate rule (``NEAR_RULE``) caps the pHash distance (at most 22 bits by default), and a
  pair is near only when a clause accepts it, so with k = the rule's largest pHash cut (``rule_hamming_cut``, the
  default) the banded path returns exactly the pairs the rule accepts: the local brute force's pairs (up to
  ``neardup.BRUTE_FORCE_MAX`` images), and a superset of the local inverted-file index's above (that index may
  miss a pair its k-means cells split).
- with a smaller k (to keep the bands wide at 10^8 images) it finds every near pair within k bits and, beyond k,
  only those that happen to agree on a band: recall measured in BENCHMARKS.md ("Scan on Ray").
- it never finds mirrored copies (``NEAR_RULE["mirror"]``, off by default): their hashes are those of the flipped
  thumbnail, not the scan's pHash.
Each band (and each hash partition) is one task: on Ray when ``cluster`` is given, else in this process.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from .. import neardup

# Thresholds as data: the number of hash partitions for the exact-duplicate shuffle, and groups of exact copies up
# to this many members give every pair, larger ones a star to their first member (as checks/context.py does).
DUP_DEFAULTS = {"hash_partitions": 16, "exact_all_pairs_max": 20}
# band_candidates: band values held by more rows than small_group are compared a block of rows at a time against
# the rest of the value, the block sized to hold about block_elements XORs (8 bytes each: 32 MB)
BLOCK_ROWS = {"small_group": 64, "block_elements": 4_000_000}


# ----------------------------------------------------------------------------- exact duplicates

def hash_partition(keys: Sequence, n_partitions: int) -> np.ndarray:
    """The shuffle's partition of each key (CRC-32 of its text, the same on every machine); -1 for a missing key."""
    out = np.full(len(keys), -1, np.int64)
    for k, key in enumerate(keys):
        if isinstance(key, str) and key:
            out[k] = zlib.crc32(key.encode()) % n_partitions
    return out


def _groups_of(rows: np.ndarray, keys: list) -> list[np.ndarray]:
    """Rows sharing a key, one sorted array per key held by two or more rows."""
    by_key: dict = {}
    for r, key in zip(rows.tolist(), keys):
        by_key.setdefault(key, []).append(r)
    return [np.asarray(sorted(v), np.int64) for v in by_key.values() if len(v) > 1]


def exact_groups(keys: Sequence, n_partitions: int | None = None, cluster=None) -> list[np.ndarray]:
    """Groups of rows with the same key (None, NaN and "" never group), each a sorted array of row numbers, sorted by
    their first row. The keys are shuffled into ``n_partitions`` hash partitions, each grouped by itself (a task on
    Ray when ``cluster`` is a connected ``ray`` module)."""
    n_partitions = n_partitions or DUP_DEFAULTS["hash_partitions"]
    keys = list(keys)
    part = hash_partition(keys, n_partitions)
    jobs = []
    for p in range(n_partitions):
        rows = np.nonzero(part == p)[0]
        jobs.append((rows, [keys[r] for r in rows.tolist()]))
    if cluster is not None:
        task = cluster.remote(_groups_of)
        results = cluster.get([task.remote(rows, ks) for rows, ks in jobs if len(rows) > 1])
    else:
        results = [_groups_of(rows, ks) for rows, ks in jobs if len(rows) > 1]
    groups = [g for res in results for g in res]
    groups.sort(key=lambda g: int(g[0]))
    return groups


def exact_pairs(groups: list[np.ndarray], all_pairs_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (a < b) the local path makes of exact groups: every pair in a group of up to ``all_pairs_max``
    members, each member with the first in a larger one."""
    all_pairs_max = all_pairs_max or DUP_DEFAULTS["exact_all_pairs_max"]
    a_list, b_list = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for members in groups:
        if len(members) <= all_pairs_max:
            ia, ib = np.triu_indices(len(members), 1)
            a_list.append(members[ia]), b_list.append(members[ib])
        else:
            a_list.append(np.repeat(members[0], len(members) - 1)), b_list.append(members[1:])
    return np.concatenate(a_list), np.concatenate(b_list)


# ----------------------------------------------------------------------------- near duplicates

def bands(hamming_cut: int) -> list[tuple[int, int]]:
    """(shift, width_bits) of the k+1 bands of a 64-bit hash for a Hamming cut of k bits, widths within one bit of
    each other. From k = 63 on there is one band of width 0: every pair is compared (brute force)."""
    k = int(hamming_cut)
    if k < 0:
        raise ValueError(f"hamming cut {hamming_cut} must be 0 or more")
    if k >= 63:
        return [(0, 0)]
    n = k + 1
    widths = [64 // n + (1 if b < 64 % n else 0) for b in range(n)]
    out, shift = [], 64
    for w in widths:
        shift -= w
        out.append((shift, w))
    return out


def rule_hamming_cut(cuts: tuple[np.ndarray, np.ndarray]) -> int:
    """The largest pHash distance any clause of the rule accepts (clauses padded with cosine 2 accept nothing):
    the Hamming cut at which banding misses no pair the rule accepts."""
    cos, ph = cuts
    live = np.asarray(cos) <= 1.0
    return int(np.asarray(ph)[live].max(initial=0))


def _mask(width: int) -> np.uint64:
    return np.uint64((1 << width) - 1) if width < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)


def _earlier_band_free(x: np.ndarray, band_no: int, all_bands: list[tuple[int, int]]) -> np.ndarray:
    """Pairs (their hashes' XOR ``x``) that share no band before ``band_no``: those the earlier bands did not emit."""
    keep = np.ones(len(x), bool)
    for s, wd in all_bands[:band_no]:
        keep &= ((x >> np.uint64(s)) & _mask(wd)) != 0
    return keep


def band_candidates(phash: np.ndarray, idx: np.ndarray, band_no: int, all_bands: list[tuple[int, int]],
                    hamming_cut: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows ``idx`` that agree on band ``band_no``, on no earlier band, and are within ``hamming_cut``
    bits. Every pair inside a band value is compared (exact, at the cost of the number of pairs inside the band's
    values): rows sorted by the value; values held by up to ``BLOCK_ROWS["small_group"]`` rows by offsets 1, 2, ...
    while the value lasts, larger ones (narrow bands: few values, many rows each) block by block, a block of rows
    against the rest of its value in one XOR."""
    h = np.ascontiguousarray(phash[idx]).view(np.uint64)
    shift, width = all_bands[band_no]
    value = (h >> np.uint64(shift)) & _mask(width) if width else np.zeros(len(h), np.uint64)
    order = np.argsort(value, kind="stable")
    sv, sh = value[order], h[order]
    n = len(order)
    out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]]) if n else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, n])
    small = BLOCK_ROWS["small_group"]
    in_small = np.repeat(sizes <= small, sizes)
    active = np.nonzero(in_small[:-1])[0] if n else np.zeros(0, np.int64)
    w = 1
    while len(active):
        active = active[active + w < n]
        active = active[sv[active + w] == sv[active]]
        if not len(active):
            break
        x = sh[active] ^ sh[active + w]
        keep = np.bitwise_count(x) <= hamming_cut
        keep[keep] = _earlier_band_free(x[keep], band_no, all_bands)
        sel = active[keep]
        out_i.append(idx[order[sel]]), out_j.append(idx[order[sel + w]])
        w += 1
    for s0, size in zip(starts[sizes > small].tolist(), sizes[sizes > small].tolist()):
        block = max(1, int(BLOCK_ROWS["block_elements"]) // size)
        g = sh[s0:s0 + size]
        for r0 in range(0, size - 1, block):
            x = g[r0:r0 + block, None] ^ g[None, r0 + 1:]          # rows r0.. against every later row
            r, c = np.nonzero(np.bitwise_count(x) <= hamming_cut)
            c = c + 1 + r0
            upper = c > r + r0
            r, c = r[upper] + r0, c[upper]
            keep = _earlier_band_free(g[r] ^ g[c], band_no, all_bands)
            out_i.append(idx[order[s0 + r[keep]]]), out_j.append(idx[order[s0 + c[keep]]])
    return np.concatenate(out_i), np.concatenate(out_j)


def band_pairs(desc: np.ndarray, phash: np.ndarray, cuts, idx: np.ndarray, band_no: int,
               all_bands: list[tuple[int, int]], hamming_cut: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One band's task: its candidates confirmed by the rule on the full descriptors: (i, j, cosine)."""
    i, j = band_candidates(phash, idx, band_no, all_bands, hamming_cut)
    rule = neardup._Rule(cuts[0], cuts[1], phash)
    return rule.keep(neardup.UnitRows(desc), i, j)


def near_pairs_banded(desc: np.ndarray, phash: np.ndarray, cuts: tuple[np.ndarray, np.ndarray],
                      subset: np.ndarray | None = None, hamming_cut: int | None = None, cluster=None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``neardup.near_pairs(desc, phash=phash, subset=subset, cuts=cuts)`` with candidates from banding the pHashes:
    arrays (i < j, cosine). ``hamming_cut`` None: the rule's own (``rule_hamming_cut``, no accepted pair missed).
    One task per band: on Ray when ``cluster`` is a connected ``ray`` module, else in this process."""
    x_valid = neardup.UnitRows(desc).valid
    idx = np.nonzero(x_valid if subset is None else (x_valid & np.asarray(subset, dtype=bool)))[0]
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if len(idx) < 2:
        return empty
    cut = rule_hamming_cut(cuts) if hamming_cut is None else int(hamming_cut)
    all_bands = bands(cut)
    if cluster is not None:
        task = cluster.remote(band_pairs)
        refs = [cluster.put(v) for v in (desc, phash, cuts, idx)]
        results = cluster.get([task.remote(*refs, b, all_bands, cut) for b in range(len(all_bands))])
    else:
        results = [band_pairs(desc, phash, cuts, idx, b, all_bands, cut) for b in range(len(all_bands))]
    i = np.concatenate([r[0] for r in results] + [empty[0]])
    j = np.concatenate([r[1] for r in results] + [empty[1]])
    s = np.concatenate([r[2] for r in results] + [empty[2]])
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key, first = np.unique(lo.astype(np.int64) * len(desc) + hi, return_index=True)
    return lo[first], hi[first], s[first].astype(np.float32)
