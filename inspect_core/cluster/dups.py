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

Above ``neardup.BRUTE_FORCE_MAX`` images the local path is an inverted-file index, and ``near_pairs_sharded`` runs
that index as tasks (a shuffle by k-means cell, a chain of splits of large cells, a shuffle by pHash block): the
same pairs as the local index, bit for bit, at a cost per image that does not grow with N as banding's does.
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


# ----------------------------------------------------------------------------- near duplicates: the sharded index

# Thresholds as data. index_above_images: the cluster scan's near pairs come from the sharded inverted-file index
# above this many compared images (None: neardup.BRUTE_FORCE_MAX, where the local path leaves brute force), from
# banding at or below; rows_per_task: rows a projection/assignment task takes (a multiple of neardup.PROJECT_BLOCK);
# cell_parts, block_parts: the tasks the cell shuffle and the pHash-block shuffle are hash-partitioned into;
# kmeans_tasks_above_distances: on a cluster, the top-level k-means's assignment step runs as tasks when one
# iteration computes more than this many (sample row, centre) distances (2e8: about 1.2 s on one core at 6 ns a
# distance, from about 3 million images; at 10^8 images 4e5 rows x 1e5 centres = 4e10), kmeans_rows_per_task sample
# rows a task (rounded to a multiple of neardup.nearest_chunk; 49 tasks a pass at 10^8).
SHARD_DEFAULTS = {"index_above_images": None, "rows_per_task": 65536, "cell_parts": 16, "block_parts": 16,
                  "kmeans_tasks_above_distances": 2e8, "kmeans_rows_per_task": 8192}


def index_threshold() -> int:
    """``SHARD_DEFAULTS["index_above_images"]``, None read as neardup.BRUTE_FORCE_MAX (at call time)."""
    above = SHARD_DEFAULTS["index_above_images"]
    return int(neardup.BRUTE_FORCE_MAX if above is None else above)


class _Here:
    """Tasks run in this process, called as on Ray (``_OnRay``)."""

    def put(self, value):
        return value

    def task(self, fn, n_out: int = 1):
        return fn

    def get(self, refs):
        return refs


# the local index's settings a task uses: the driver's travel with every task, so that a worker splits and compares
# cells as the driver's process would (a test, or a caller, may have changed them)
INDEX_SETTINGS = ("CELL_TARGET", "CELL_MAX", "N_PROBE", "PROJECT_BLOCK")


def _call(settings: dict, fn, *args):
    """Run task ``fn`` with neardup's ``settings`` in force (restored after)."""
    old = {k: getattr(neardup, k) for k in settings}
    try:
        for k, v in settings.items():
            setattr(neardup, k, v)
        return fn(*args)
    finally:
        for k, v in old.items():
            setattr(neardup, k, v)


class _OnRay:
    """Tasks on Ray: ``task(fn, n_out)`` gives a submitter whose call returns n_out object refs (one when 1)."""

    def __init__(self, ray):
        self.ray = ray

    def put(self, value):
        return self.ray.put(value)

    def task(self, fn, n_out: int = 1):
        remote = self.ray.remote(_call).options(num_returns=n_out).remote
        settings = {k: getattr(neardup, k) for k in INDEX_SETTINGS}
        return lambda *args: remote(settings, fn, *args)

    def get(self, refs):
        return self.ray.get(refs)


def shuffle_part(keys: np.ndarray, n_parts: int) -> np.ndarray:
    """The shuffle partition of non-negative integer keys (a multiplicative hash, the same on every machine)."""
    h = (np.asarray(keys).astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    return (h % np.uint64(n_parts)).astype(np.int64)


def _empty3():
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)


def project_task(desc, idx, r0: int, r1: int, axes, pick_local):
    """Task: the projections of rows idx[r0:r1] (``neardup.project``, its blocks as the local index's: r0 is a multiple
    of ``neardup.PROJECT_BLOCK``), and those of its rows in the k-means sample (positions ``pick_local``, None: all)."""
    y = neardup.project(neardup.UnitRows(desc[idx[r0:r1]]), np.arange(r1 - r0), axes)
    return y, (y if pick_local is None else y[pick_local])


def kmeans_assign_task(pts, r0: int, r1: int, centers):
    """Task: the k-means assignment step (``neardup.nearest_center``) on sample rows pts[r0:r1], r0 a multiple of
    ``neardup.nearest_chunk(len(centers))``: the same products, so the same nearest centres, as on all rows."""
    return neardup.nearest_center(pts[r0:r1], centers)


def kmeans_assign(runner, n_rows: int, n_centers: int):
    """The assignment step for ``neardup.ivf_centers`` as ``runner``'s tasks over slices of the sample, or None
    (the driver's own) at or below ``kmeans_tasks_above_distances``. The sample goes to the store once, the
    centres once an iteration; the driver gets the assignments back (8 B a row) and takes the means in
    ``neardup._kmeans``'s order: the centres are bit for bit the driver's."""
    if n_rows * n_centers <= float(SHARD_DEFAULTS["kmeans_tasks_above_distances"]):
        return None
    chunk = neardup.nearest_chunk(n_centers)
    step = max(1, int(SHARD_DEFAULTS["kmeans_rows_per_task"]) // chunk) * chunk
    task, stored = runner.task(kmeans_assign_task, 1), {}

    def assign(pts, centers):
        if stored.get("pts") is not pts:                      # ivf_centers passes its pts itself, every iteration
            stored.update(pts=pts, ref=runner.put(pts))
        c_ref = runner.put(centers)
        refs = [task(stored["ref"], r0, min(r0 + step, len(pts)), c_ref) for r0 in range(0, len(pts), step)]
        return np.concatenate(runner.get(refs))
    return assign


def assign_task(y, r0: int, centers, n_parts: int):
    """Task (map side of the cell shuffle): each row's ``N_PROBE`` nearest top-level cells; per partition of the cell
    number, (cell int32, position int32, projection float32 (m, PCA_DIM)) of its rows."""
    near = neardup._nearest(y, centers, min(neardup.N_PROBE, len(centers))).astype(np.int32)
    cell = near.ravel()
    local = np.repeat(np.arange(len(y), dtype=np.int32), near.shape[1])
    part = shuffle_part(cell, n_parts)
    return tuple((cell[part == p], local[part == p] + np.int32(r0), y[local[part == p]]) for p in range(n_parts))


def cell_task(desc, phash, cuts, idx, n: int, *pieces):
    """Task (reduce side of the cell shuffle): this partition's cells, each with its rows in position order as the
    local index has them. A cell of at most ``CELL_MAX`` rows (or 90% of all) is compared here (``_cell_pairs``); a
    larger one is split by the local index's recursion (``split_task``, in cell order: its k-means draw from one
    random stream). Returns ((i, j, cosine, pairs compared), (the large cells' numbers, cells here), {cell: (global
    rows, projections)})."""
    x = neardup.UnitRows(desc)
    rule = neardup._Rule(cuts[0], cuts[1], phash)
    cell = np.concatenate([p[0] for p in pieces])
    pos = np.concatenate([p[1] for p in pieces])
    y = np.concatenate([p[2] for p in pieces])
    order = np.lexsort((pos, cell))
    cell, pos, y = cell[order], pos[order], y[order]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]]) if len(cell) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(cell)].astype(np.int64)
    out, big = [], {}
    for s0, s1 in zip(starts.tolist(), ends.tolist()):
        m = s1 - s0
        if m < 2:
            continue
        rows, yc = idx[pos[s0:s1]], y[s0:s1]
        if m >= n * 0.9 or m <= neardup.CELL_MAX:
            out.append(neardup._cell_pairs(x, yc, rows, np.arange(m), rule))
        else:
            big[int(cell[s0])] = (rows, yc)
    sizes = (ends - starts).tolist()
    compared = sum(m * (m - 1) // 2 for m in sizes if m >= 2 and (m >= n * 0.9 or m <= neardup.CELL_MAX))
    return (*neardup._concat(out), compared), (sorted(big), len(starts)), big


def split_task(big: dict, c: int, rng):
    """Task (one link of a chain, in cell order): the leaves of large cell ``c`` (``neardup.ivf_leaves`` at depth 1),
    and the random stream after its draws, for the next large cell."""
    return list(neardup.ivf_leaves(big[c][1], None, rng, 1)), rng


def leaf_task(desc, phash, cuts, big: dict, c: int, leaves):
    """Task: the pairs inside the leaves of large cell ``c``: (i, j, cosine, pairs compared)."""
    x = neardup.UnitRows(desc)
    rule = neardup._Rule(cuts[0], cuts[1], phash)
    rows, yc = big[c]
    compared = sum(len(leaf) * (len(leaf) - 1) // 2 for leaf in leaves)
    return (*neardup._concat([neardup._cell_pairs(x, yc, rows, leaf, rule) for leaf in leaves]), compared)


def block_map_task(phash, idx, r0: int, r1: int, n_parts: int):
    """Task (map side of the pHash-block shuffle): per partition of (block number, 16-bit block value), the rows'
    (block number uint8, position int32, hash uint64)."""
    h = np.ascontiguousarray(phash[idx[r0:r1]]).view(np.uint64)
    pos = np.arange(r0, r1, dtype=np.int32)
    no, rows, hs, parts = [], [], [], []
    for b, shift in enumerate(neardup.PHASH_BLOCK_SHIFTS):
        value = (h >> np.uint64(shift)) & np.uint64(0xFFFF)
        parts.append(shuffle_part((value | np.uint64(b << 16)), n_parts))
        no.append(np.full(len(h), b, np.uint8)), rows.append(pos), hs.append(h)
    no, rows, hs, parts = (np.concatenate(a) for a in (no, rows, hs, parts))
    return tuple((no[parts == p], rows[parts == p], hs[parts == p]) for p in range(n_parts))


def block_task(desc, phash, cuts, idx, *pieces):
    """Task (reduce side of the pHash-block shuffle): ``neardup.block_candidates`` for each block over this
    partition's values (whole values: the local path's candidates among them), confirmed by the rule: (i, j,
    cosine, candidates)."""
    rule = neardup._Rule(cuts[0], cuts[1], phash)
    no = np.concatenate([p[0] for p in pieces])
    pos = np.concatenate([p[1] for p in pieces])
    h = np.concatenate([p[2] for p in pieces])
    out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for b, shift in enumerate(neardup.PHASH_BLOCK_SHIFTS):
        sel = np.nonzero(no == b)[0]
        sel = sel[np.argsort(pos[sel], kind="stable")]          # rows in position order, as among all rows
        hb = h[sel]
        bi, bj = neardup.block_candidates(hb, (hb >> np.uint64(shift)) & np.uint64(0xFFFF), idx[pos[sel]],
                                          neardup.phash_cut(rule))
        out_i.append(bi), out_j.append(bj)
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return (*rule.keep(neardup.UnitRows(desc), i, j), len(i))


def _nbytes(piece) -> int:
    return int(sum(a.nbytes for a in piece))


def near_pairs_sharded(desc: np.ndarray, phash: np.ndarray | None, cuts: tuple[np.ndarray, np.ndarray],
                       subset: np.ndarray | None = None, seed: int = 0, cluster=None, stats: dict | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``neardup.near_pairs(desc, phash=phash, subset=subset, cuts=cuts, seed=seed)``, the same pairs and cosines,
    with its inverted-file index split into tasks (on Ray when ``cluster`` is a connected ``ray`` module, else in
    this process):

    1. the driver fits the PCA axes and the top-level k-means centres as the local index does (``neardup.ivf_fit``,
       ``ivf_centers``: the same sample and seed), from the projections of tasks of ``rows_per_task`` rows; on a
       cluster, above ``kmeans_tasks_above_distances``, each k-means iteration's assignment step is tasks of
       ``kmeans_rows_per_task`` sample rows (``kmeans_assign``), the means the driver's;
    2. those tasks place their rows in their ``N_PROBE`` nearest cells and shuffle them by cell into
       ``cell_parts`` tasks, which compare the rows of each cell (``neardup._cell_pairs``);
    3. a cell over ``CELL_MAX`` rows is split by the local recursion (``neardup.ivf_leaves``); its k-means draw from
       the local index's one random stream, so the splits run as a chain in cell order (a few k-means of a few
       thousand rows each), and the comparisons of their leaves in parallel;
    4. the pHash multi-index candidates (``neardup.block_candidates``) come from a shuffle of the rows by
       (16-bit block, its value) into ``block_parts`` tasks;
    5. the driver merges the pairs and drops repeats.

    What moves per image in the shuffles: ``N_PROBE`` records of (cell 4 B, position 4 B, projection 4 x PCA_DIM B)
    = 408 B, and 4 block records of (1 + 4 + 8 B) = 52 B. Here every task reads the descriptors, hashes and cuts
    from one shared object (at 10^8 images they would travel with the cell records: 3 x 256 B more per image);
    ``stats`` (a dict, optional) receives path (index, brute_force), n_rows, cells, cells_split, pairs_compared
    (row pairs whose projected distance was computed), kmeans_tasks (whether the assignment step ran as tasks),
    block_candidates and the bytes of each shuffle. Up to ``neardup.BRUTE_FORCE_MAX`` rows the local path compares
    all against all: one task."""
    runner = _Here() if cluster is None else _OnRay(cluster)
    x = neardup.UnitRows(desc)
    mask = x.valid if subset is None else (x.valid & np.asarray(subset, dtype=bool))
    idx = np.nonzero(mask)[0]
    n = len(idx)
    stats = {} if stats is None else stats       # filled in place
    stats.update(n_rows=n, path="index")
    if n <= max(neardup.BRUTE_FORCE_MAX, neardup.CELL_MAX):
        stats["path"] = "brute_force" if n > 1 else "none"
        if n < 2:
            return _empty3()
        run = runner.task(_local_near_pairs, 1)
        return runner.get(run(desc, phash, cuts, mask, seed))
    rng, axes, pick = neardup.ivf_fit(x, idx, seed)
    step = max(neardup.PROJECT_BLOCK, int(SHARD_DEFAULTS["rows_per_task"]) // neardup.PROJECT_BLOCK
               * neardup.PROJECT_BLOCK)
    ranges = [(r0, min(r0 + step, n)) for r0 in range(0, n, step)]
    refs = [runner.put(v) for v in (desc, phash, cuts, idx)]
    desc_r, phash_r, cuts_r, idx_r = refs
    proj = runner.task(project_task, 2)
    picks, projected = [], []
    for r0, r1 in ranges:
        sel = None if pick is None else np.nonzero((pick >= r0) & (pick < r1))[0]
        picks.append(sel)
        projected.append(proj(desc_r, idx_r, r0, r1, axes, None if sel is None else pick[sel] - r0))
    sample_rows = runner.get([p[1] for p in projected])
    if pick is None:
        pts = np.concatenate(sample_rows)
    else:
        pts = np.empty((len(pick), axes.shape[1]), np.float32)
        for sel, rows in zip(picks, sample_rows):
            pts[sel] = rows
    kmeans_step = None if cluster is None else kmeans_assign(runner, len(pts), neardup.n_cells(n))
    stats["kmeans_tasks"] = kmeans_step is not None
    centers = neardup.ivf_centers(pts, n, rng, assign=kmeans_step)
    del pts, sample_rows
    n_cell_parts = max(2, int(SHARD_DEFAULTS["cell_parts"]))
    n_block_parts = max(2, int(SHARD_DEFAULTS["block_parts"]))
    assign = runner.task(assign_task, n_cell_parts)
    centers_r = runner.put(centers)
    mapped = [assign(p[0], r0, centers_r, n_cell_parts) for p, (r0, _) in zip(projected, ranges)]
    cells = runner.task(cell_task, 3)
    reduced = [cells(desc_r, phash_r, cuts_r, idx_r, n, *[m[p] for m in mapped]) for p in range(n_cell_parts)]
    blocked = []
    if phash is not None:
        bmap = runner.task(block_map_task, n_block_parts)
        bmapped = [bmap(phash_r, idx_r, r0, r1, n_block_parts) for r0, r1 in ranges]
        btask = runner.task(block_task, 1)
        blocked = [btask(desc_r, phash_r, cuts_r, idx_r, *[m[p] for m in bmapped]) for p in range(n_block_parts)]
    # the large cells' splits: a chain in cell order (one random stream), their leaves compared in parallel
    info = runner.get([r[1] for r in reduced])
    owner = {c: p for p, (ids, _) in enumerate(info) for c in ids}
    split, leaf = runner.task(split_task, 2), runner.task(leaf_task, 1)
    state, leaf_refs = rng, []
    for c in sorted(owner):
        leaves, state = split(reduced[owner[c]][2], c, state)
        leaf_refs.append(leaf(desc_r, phash_r, cuts_r, reduced[owner[c]][2], c, leaves))
    results = runner.get([r[0] for r in reduced] + leaf_refs + blocked)
    i = np.concatenate([r[0] for r in results] + [np.zeros(0, np.int64)])
    j = np.concatenate([r[1] for r in results] + [np.zeros(0, np.int64)])
    s = np.concatenate([r[2] for r in results] + [np.zeros(0, np.float32)])
    n_probe = min(neardup.N_PROBE, len(centers))
    n_cells = len(reduced) + len(leaf_refs)
    stats.update(cells=len(centers), cells_split=len(owner),
                 pairs_compared=int(sum(r[3] for r in results[:n_cells])),
                 block_candidates=int(sum(r[3] for r in results[n_cells:])),
                 cell_shuffle_bytes=n * n_probe * (4 + 4 + 4 * axes.shape[1]),
                 block_shuffle_bytes=(n * len(neardup.PHASH_BLOCK_SHIFTS) * 13) if phash is not None else 0)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key, first = np.unique(lo.astype(np.int64) * len(desc) + hi, return_index=True)
    return lo[first], hi[first], s[first].astype(np.float32)


def _local_near_pairs(desc, phash, cuts, mask, seed):
    """Task: the local path on the whole set (small sets: all against all)."""
    return neardup.near_pairs(desc, phash=phash, subset=mask, cuts=cuts, seed=seed)
