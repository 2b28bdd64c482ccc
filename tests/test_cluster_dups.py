"""The global duplicate steps in their cluster form (inspect_core/cluster/dups.py): banding misses no pair within
its Hamming cut; with the rule's own cut it gives the local path's pairs, groups and findings on sample_data and on
real photos with edited copies (resized, JPEG re-encoded, cropped, brightened); the exact-duplicate shuffle gives
the local exact pairs; on Ray the same as in this process."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from cluster_support import REPO, make_photo_copies_folder, ray_local  # noqa: F401 - a fixture, by usefixtures
from cluster_support import crop_descriptors as make_crop_descriptors

import inspect_core
from inspect_core import neardup
from inspect_core.checks.context import CheckContext, near_cuts, near_rule
from inspect_core.cluster import dups
from inspect_core.scanner import _boxes_to_px, run_checks


def test_bands_cover_64_bits_and_any_pair_within_the_cut_shares_one():
    rng = np.random.default_rng(0)
    for k in (0, 1, 3, 7, 15, 22, 40, 62, 63, 80):
        bs = dups.bands(k)
        assert sum(w for _, w in bs) == (64 if k < 63 else 0)
        if k >= 63:
            continue
        assert len(bs) == k + 1 and max(w for _, w in bs) - min(w for _, w in bs) <= 1
        h = rng.integers(-2**63, 2**63 - 1, 500, dtype=np.int64).view(np.uint64)
        for d in (0, k // 2, k):          # flip d random bits: within the cut, a band must agree
            flips = np.zeros(len(h), np.uint64)
            for r in range(len(h)):
                for bit in rng.choice(64, d, replace=False):
                    flips[r] |= np.uint64(1) << np.uint64(int(bit))
            g = h ^ flips
            shared = np.zeros(len(h), bool)
            for s, w in bs:
                m = np.uint64((1 << w) - 1)
                shared |= ((h >> np.uint64(s)) & m) == ((g >> np.uint64(s)) & m)
            assert shared.all(), (k, d)


def test_band_candidates_are_exactly_the_pairs_within_the_cut():
    rng = np.random.default_rng(1)
    base = rng.integers(-2**63, 2**63 - 1, 300, dtype=np.int64)
    flips = [sum(1 << int(b) for b in rng.choice(64, r % 21, replace=False)) for r in range(100)]
    near = base[:100] ^ np.array(flips, np.uint64).view(np.int64)                      # 0-20 bits apart
    h = np.concatenate([base, near, base[:20]])                                        # and 20 equal hashes
    idx = np.arange(len(h))
    for k in (3, 8, 22):
        all_bands = dups.bands(k)
        found = set()
        for b in range(len(all_bands)):
            i, j = dups.band_candidates(h, idx, b, all_bands, k)
            pairs = {(min(a, c), max(a, c)) for a, c in zip(i.tolist(), j.tolist())}
            assert not pairs & found, "a pair came from two bands"
            found |= pairs
        d = np.bitwise_count(h[:, None].view(np.uint64) ^ h[None, :].view(np.uint64))
        r, c = np.nonzero(np.triu(d <= k, 1))
        assert found == set(zip(r.tolist(), c.tolist())) and len(found) > 20


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos") / "ds"
    make_photo_copies_folder(root)
    return inspect_core.scan(root, workspace=tmp_path_factory.mktemp("ws"))


@pytest.fixture(scope="module")
def sample():
    return inspect_core.scan(REPO / "sample_data")


def _context(result) -> CheckContext:
    ds = result.dataset
    return CheckContext(images=result.images, desc=result.desc, annotations=_boxes_to_px(ds, result.images),
                        classes=ds.classes, has_image_labels=ds.has_image_labels, has_boxes=ds.has_boxes,
                        near_rule=near_rule())


def _banded_run(result, monkeypatch, cluster=None):
    """The checks with the near pairs from banding in place of neardup.near_pairs: (findings, pairs, groups)."""
    with monkeypatch.context() as m:
        m.setattr(neardup, "near_pairs", lambda desc, phash, subset, cuts: dups.near_pairs_banded(
            desc, phash, cuts, subset=subset, cluster=cluster))
        ctx = _context(result)
        findings = run_checks(ctx, result.dataset.problems)
        return findings, ctx.pairs, ctx.groups


@pytest.mark.parametrize("which", ["sample", "real_photos"])
def test_banded_near_pairs_give_the_local_pairs_groups_and_findings(which, request, monkeypatch):
    result = request.getfixturevalue(which)
    ctx = _context(result)
    local = run_checks(ctx, result.dataset.problems), ctx.pairs, ctx.groups
    banded = _banded_run(result, monkeypatch)
    pd.testing.assert_frame_equal(local[0], banded[0], check_exact=False, rtol=1e-5)
    pd.testing.assert_frame_equal(local[1], banded[1], check_exact=False, rtol=1e-5)
    pd.testing.assert_frame_equal(local[2], banded[2], check_exact=False, rtol=1e-5)
    pd.testing.assert_frame_equal(local[0], result.findings, check_exact=False, rtol=1e-5)
    assert (local[1]["kind"] == "near").sum() >= (1 if which == "sample" else 40)


def _precision_recall(pairs, ids: list[str]) -> tuple[float, float, list]:
    """Precision and recall of ``pairs`` against the planted copies (tiles of one photo are distinct images; the
    photo and its copies are one picture), and a few wrong pairs."""
    def photo_of(image_id: str) -> str | None:
        name = image_id.rsplit("/", 1)[-1].split(".")[0]
        return None if name.startswith("tile") else re.sub(r"^[a-z]+", "", name)
    found = {(a, b) for a, b in zip(pairs["image_id_a"], pairs["image_id_b"])}
    same = {p for p in found if photo_of(p[0]) is not None and photo_of(p[0]) == photo_of(p[1])}
    planted = {tuple(sorted((a, b))) for a in ids for b in ids
               if a < b and photo_of(a) is not None and photo_of(a) == photo_of(b)}
    return len(same) / len(found), len(same & planted) / len(planted), sorted(found - same)[:5]


def test_on_real_photos_the_edited_copies_are_the_pairs_found(real_photos, monkeypatch):
    """Precision and recall of what the banded path finds, against the planted copies."""
    _, pairs, _ = _banded_run(real_photos, monkeypatch)
    precision, recall, wrong = _precision_recall(pairs, real_photos.images["image_id"].tolist())
    assert precision >= 0.95 and recall >= 0.8, (precision, recall, wrong)


def test_a_smaller_cut_finds_every_local_pair_within_it_and_nothing_else(real_photos):
    img, desc = real_photos.images, real_photos.desc
    cos, ph, _, _ = near_cuts(img, near_rule())
    phash = img["phash"].to_numpy(np.int64)
    use = img["error_kind"].isna().to_numpy()
    li, lj, _ = neardup.near_pairs(desc, phash=phash, subset=use, cuts=(cos, ph))
    local = set(zip(li.tolist(), lj.tolist()))
    for k in (3, 8):
        bi, bj, _ = dups.near_pairs_banded(desc, phash, (cos, ph), subset=use, hamming_cut=k)
        banded = set(zip(bi.tolist(), bj.tolist()))
        within = {p for p in local if neardup.hamming64(phash[[p[0]]], phash[[p[1]]])[0] <= k}
        assert within <= banded <= local


@pytest.mark.parametrize("which", ["sample", "real_photos"])
def test_exact_shuffle_gives_the_local_exact_pairs(which, request):
    result = request.getfixturevalue(which)
    ctx = _context(result)
    local = ctx.pairs[ctx.pairs["kind"] == "exact"]
    local = set(zip(local["a"].tolist(), local["b"].tolist()))
    img = result.images
    found = set()
    for _col, keys in (("content_hash", img["content_hash"].where(img["file_size_bytes"].gt(0))),
                      ("pixel_hash", img["pixel_hash"].where(img["error_kind"].isna()))):
        a, b = dups.exact_pairs(dups.exact_groups(keys.tolist(), n_partitions=5))
        found |= set(zip(a.tolist(), b.tolist()))
    assert found == local and len(local) >= 1


def test_exact_groups_skip_missing_keys_and_star_a_large_group():
    keys = ["a"] * 25 + [None, float("nan"), "", "b", "c", "b"]
    groups = dups.exact_groups(keys, n_partitions=3)
    assert [g.tolist() for g in groups] == [list(range(25)), [28, 30]]
    a, b = dups.exact_pairs(groups)
    assert (a[:24] == 0).all() and b[:24].tolist() == list(range(1, 25)) and (a[24], b[24]) == (28, 30)


@pytest.mark.usefixtures("ray_local")
def test_on_ray_the_steps_give_what_they_give_here(real_photos, sample):
    import ray
    img, desc = real_photos.images, real_photos.desc
    cuts = near_cuts(img, near_rule())[:2]
    phash = img["phash"].to_numpy(np.int64)
    here = dups.near_pairs_banded(desc, phash, cuts)
    there = dups.near_pairs_banded(desc, phash, cuts, cluster=ray)
    for a, b in zip(here, there):
        np.testing.assert_array_equal(a, b)
    keys = sample.images["content_hash"].tolist()
    assert [g.tolist() for g in dups.exact_groups(keys, cluster=ray)] == \
        [g.tolist() for g in dups.exact_groups(keys)]


@pytest.mark.parametrize("small_group", [0, 64, 10**9])
def test_band_candidates_by_offsets_and_by_blocks_are_the_same_pairs(small_group, monkeypatch):
    """Band values of few rows go by offsets, of many rows block by block (tiny blocks here): the same pairs."""
    monkeypatch.setitem(dups.BLOCK_ROWS, "small_group", small_group)
    monkeypatch.setitem(dups.BLOCK_ROWS, "block_elements", 700)
    rng = np.random.default_rng(5)
    base = rng.integers(-2**63, 2**63 - 1, 400, dtype=np.int64)
    h = np.concatenate([base, base[:150] ^ rng.integers(0, 2**20, 150, dtype=np.int64), base[:30]])
    idx = np.arange(0, len(h), 1)[::-1].copy()                       # rows not in hash order
    d = np.bitwise_count(h[:, None].view(np.uint64) ^ h[None, :].view(np.uint64))
    for k in (3, 22):
        all_bands = dups.bands(k)
        found = []
        for b in range(len(all_bands)):
            i, j = dups.band_candidates(h, idx, b, all_bands, k)
            found += [(min(a, c), max(a, c)) for a, c in zip(i.tolist(), j.tolist())]
        assert len(found) == len(set(found))                            # each pair from one band only
        r, c = np.nonzero(np.triu(d <= k, 1))
        assert set(found) == set(zip(r.tolist(), c.tolist())) and len(found) >= (30 if k == 3 else 150)


# ----------------------------------------------------------------------------- the sharded inverted-file index

@pytest.fixture(scope="module")
def crops_9k():
    """9,000 crops of real photos (descriptors and pHashes as the scan makes them), 449 of them edited copies."""
    return make_crop_descriptors(9000, seed=2)


def _same(a, b) -> None:
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_sharded_index_gives_the_local_index_pairs_on_real_crops(crops_9k):
    """Above neardup.BRUTE_FORCE_MAX images: the same pairs and cosines, bit for bit, as the local index."""
    d = crops_9k
    stats: dict = {}
    local = neardup.near_pairs(d["desc"], phash=d["phash"], cuts=d["cuts"])
    _same(local, dups.near_pairs_sharded(d["desc"], d["phash"], d["cuts"], stats=stats))
    assert stats["path"] == "index" and stats["cells"] == 9 and stats["n_rows"] > neardup.BRUTE_FORCE_MAX, stats
    found = set(zip(local[0].tolist(), local[1].tolist()))
    assert len(found & set(d["planted"])) >= 0.9 * len(d["planted"]) > 400


def _deep(monkeypatch) -> None:
    """The index's settings scaled down (brute force to 1,000 rows, cells of about 100, split over 300, k-means
    on 1,000 rows, projection blocks of 256 rows, two to a task), so that 2,500 rows split down to depth 3."""
    for name, value in (("BRUTE_FORCE_MAX", 1000), ("CELL_TARGET", 100), ("CELL_MAX", 300),
                        ("KMEANS_SAMPLE", 1000), ("PROJECT_BLOCK", 256)):
        monkeypatch.setattr(neardup, name, value)
    monkeypatch.setitem(dups.SHARD_DEFAULTS, "rows_per_task", 512)


def test_sharded_index_splits_large_cells_as_the_local_index(crops_9k, monkeypatch):
    """Cells over CELL_MAX split again (a chain of k-means in cell order), a subset of the rows, k-means on a
    sample, several projection tasks: the local index's pairs, bit for bit."""
    _deep(monkeypatch)
    d = crops_9k
    subset = (np.arange(len(d["desc"])) < 2700) & (np.arange(len(d["desc"])) % 11 != 3)
    stats: dict = {}
    local = neardup.near_pairs(d["desc"], phash=d["phash"], cuts=d["cuts"], subset=subset)
    _same(local, dups.near_pairs_sharded(d["desc"], d["phash"], d["cuts"], subset=subset, stats=stats))
    assert stats["cells_split"] >= 5 and len(local[0]) > 100, stats


def test_sharded_index_below_brute_force_max_is_the_local_brute_force(crops_9k):
    d = crops_9k
    rows = np.arange(len(d["desc"])) < 3000
    stats: dict = {}
    _same(neardup.near_pairs(d["desc"], phash=d["phash"], cuts=d["cuts"], subset=rows),
          dups.near_pairs_sharded(d["desc"], d["phash"], d["cuts"], subset=rows, stats=stats))
    assert stats["path"] == "brute_force"
    one = np.arange(len(d["desc"])) == 5
    assert all(len(a) == 0 for a in dups.near_pairs_sharded(d["desc"], d["phash"], d["cuts"], subset=one))


def test_the_block_shuffle_gives_the_local_phash_candidates():
    """pHash multi-index candidates by a shuffle on (block, value) into partitions: the local candidates."""
    rng = np.random.default_rng(3)
    base = rng.integers(-2**63, 2**63 - 1, 3000, dtype=np.int64)
    h = np.concatenate([base, base[:900] ^ rng.integers(0, 2**12, 900, dtype=np.int64), base[:50]])
    h[:400] = (h[:400] & ~np.int64(0xFFFF)) | 7                  # 400 rows sharing one block value (the window)
    idx = np.sort(rng.choice(len(h), 3500, replace=False))
    li, lj = neardup.phash_candidates(h, idx, 12)
    pieces = [dups.block_map_task(h, idx, r0, min(r0 + 1000, len(idx)), 5) for r0 in range(0, len(idx), 1000)]
    got = set()
    for p in range(5):
        part = [pc[p] for pc in pieces]
        no, pos, hh = (np.concatenate([q[t] for q in part]) for t in range(3))
        for b, shift in enumerate(neardup.PHASH_BLOCK_SHIFTS):
            sel = np.nonzero(no == b)[0]
            i, j = neardup.block_candidates(hh[sel], (hh[sel] >> np.uint64(shift)) & np.uint64(0xFFFF),
                                            idx[pos[sel]], 12)
            got |= set(zip(i.tolist(), j.tolist()))
    assert got == set(zip(li.tolist(), lj.tolist())) and len(got) > 700


def test_on_real_photos_the_sharded_index_finds_the_edited_copies(real_photos, monkeypatch):
    """The index path forced on the 317 real photos (brute force only up to 100 images, cells of about 40, split
    over 80): the local index's pairs, and precision and recall against the planted copies."""
    monkeypatch.setattr(neardup, "BRUTE_FORCE_MAX", 100)
    monkeypatch.setattr(neardup, "CELL_TARGET", 40)
    monkeypatch.setattr(neardup, "CELL_MAX", 80)
    img, desc = real_photos.images, real_photos.desc
    cuts = near_cuts(img, near_rule())[:2]
    phash = img["phash"].to_numpy(np.int64)
    use = img["error_kind"].isna().to_numpy()
    stats: dict = {}
    _same(neardup.near_pairs(desc, phash=phash, subset=use, cuts=cuts),
          dups.near_pairs_sharded(desc, phash, cuts, subset=use, stats=stats))
    assert stats["path"] == "index" and stats["cells_split"] >= 1
    with monkeypatch.context() as m:
        m.setattr(neardup, "near_pairs", lambda desc, phash, subset, cuts: dups.near_pairs_sharded(
            desc, phash, cuts, subset=subset))
        ctx = _context(real_photos)
        pairs = ctx.pairs
    precision, recall, wrong = _precision_recall(pairs, real_photos.images["image_id"].tolist())
    assert precision >= 0.95 and recall >= 0.8, (precision, recall, wrong)


@pytest.mark.usefixtures("ray_local")
def test_on_ray_the_sharded_index_gives_the_local_index_pairs(crops_9k, monkeypatch):
    """The scaled-down settings (``_deep``) travel to the workers: the same splits, the local pairs."""
    import ray
    _deep(monkeypatch)
    d = crops_9k
    rows = np.arange(len(d["desc"])) < 2500
    stats: dict = {}
    _same(neardup.near_pairs(d["desc"], phash=d["phash"], cuts=d["cuts"], subset=rows),
          dups.near_pairs_sharded(d["desc"], d["phash"], d["cuts"], subset=rows, cluster=ray, stats=stats))
    assert stats["path"] == "index" and stats["cells_split"] >= 5 and stats["kmeans_tasks"] is False


@pytest.mark.usefixtures("ray_local")
def test_on_ray_the_kmeans_assignment_tasks_give_the_driver_centres_and_pairs(crops_9k, monkeypatch):
    """The top-level k-means's assignment step as Ray tasks over slices of the sample (threshold forced low), in
    the shape of 10^8 images (4 sample rows a centre: about 4,500 centres on all 9,000 rows, 5 tasks): the driver's
    centres bit for bit, then the local index's pairs."""
    import ray
    monkeypatch.setattr(neardup, "CELL_TARGET", 2)
    monkeypatch.setattr(neardup, "KMEANS_SAMPLE", 10)
    monkeypatch.setitem(dups.SHARD_DEFAULTS, "kmeans_tasks_above_distances", 0)
    monkeypatch.setitem(dups.SHARD_DEFAULTS, "kmeans_rows_per_task", 2048)
    d = crops_9k
    x = neardup.UnitRows(d["desc"])
    idx = np.nonzero(x.valid)[0]
    rng, axes, pick = neardup.ivf_fit(x, idx, 0)
    k = neardup.n_cells(len(idx))
    assert pick is None and k > 4400 and neardup.nearest_chunk(k) == 1024
    pts = neardup.project(x, idx, axes)
    calls = []
    step = dups.kmeans_assign(dups._OnRay(ray), len(pts), k)
    counted = lambda p, c: calls.append(len(p)) or step(p, c)  # noqa: E731
    driver = neardup.ivf_centers(pts, len(idx), np.random.default_rng(7))
    tasks = neardup.ivf_centers(pts, len(idx), np.random.default_rng(7), assign=counted)
    np.testing.assert_array_equal(driver, tasks)
    assert calls == [len(pts)] * 8 and not np.array_equal(driver, pts[:k])   # 8 iterations moved the centres
    assert dups.kmeans_assign(dups._OnRay(ray), 1000, 1) is not None
    monkeypatch.setitem(dups.SHARD_DEFAULTS, "kmeans_tasks_above_distances", len(pts) * k)
    assert dups.kmeans_assign(dups._OnRay(ray), len(pts), k) is None
    monkeypatch.setitem(dups.SHARD_DEFAULTS, "kmeans_tasks_above_distances", 0)
    stats: dict = {}
    local = neardup.near_pairs(d["desc"], phash=d["phash"], cuts=d["cuts"])
    _same(local, dups.near_pairs_sharded(d["desc"], d["phash"], d["cuts"], cluster=ray, stats=stats))
    assert stats["kmeans_tasks"] is True and stats["cells"] == k and len(local[0]) > 400


def test_more_cells_than_the_kmeans_sample_fits_on_four_rows_a_centre(crops_9k, monkeypatch):
    """k-means of more centres than KMEANS_SAMPLE rows (past 65.5 million images by default) used to fail; it fits
    on 4 rows a centre, here and sharded alike."""
    _deep(monkeypatch)
    monkeypatch.setattr(neardup, "KMEANS_SAMPLE", 10)
    d = crops_9k
    rows = np.arange(len(d["desc"])) < 1600                         # 16 cells: fit on 64 sample rows
    stats: dict = {}
    local = neardup.near_pairs(d["desc"], phash=d["phash"], cuts=d["cuts"], subset=rows)
    _same(local, dups.near_pairs_sharded(d["desc"], d["phash"], d["cuts"], subset=rows, stats=stats))
    assert stats["cells"] == 16 and neardup.kmeans_sample(16) == 64 and len(local[0]) > 50
