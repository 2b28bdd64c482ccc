"""Near-duplicate search: the brute-force and the inverted-file paths find the same planted pairs; hashes
and groups are right."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from PIL import Image

from inspect_core import filescan, neardup


def planted_descriptors(n: int, m: int, seed: int = 0):
    """``n`` int8 descriptors shaped like real ones (mean-removed unit vectors whose energy sits in a few
    dozen directions), then ``m`` noisy copies of randomly chosen ones (cosine about 0.97 .. 0.99).
    Returns (desc, planted pairs as a set of (i, j))."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(0, 1, (64, filescan.DESC_DIM)) * (1.0 / np.arange(1, 65) ** 0.25)[:, None]
    base = rng.normal(0, 1, (n, 64)) @ basis + rng.normal(0, 0.2, (n, filescan.DESC_DIM))
    src = rng.choice(n, m, replace=False)
    copies = base[src] * rng.uniform(0.8, 1.2, (m, 1)) + rng.normal(0, 0.6, (m, filescan.DESC_DIM))
    x = np.vstack([base, copies])
    x -= x.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.round(x * 127).astype(np.int8), {(int(s), n + k) for k, s in enumerate(src)}


@pytest.fixture(scope="module")
def planted():
    return planted_descriptors(12_000, 50)


def test_brute_force_and_ivf_find_exactly_the_planted_pairs(planted, monkeypatch):
    desc, pairs = planted
    monkeypatch.setattr(neardup, "BRUTE_FORCE_MAX", 10**9)
    bi, bj, bs = neardup.near_pairs(desc, 0.9)
    monkeypatch.setattr(neardup, "BRUTE_FORCE_MAX", 1000)  # 12,050 rows > CELL_MAX: k-means cells
    ii, ij, is_ = neardup.near_pairs(desc, 0.9)
    assert set(zip(bi.tolist(), bj.tolist())) == pairs
    assert set(zip(ii.tolist(), ij.tolist())) == pairs
    assert (bi < bj).all() and (ii < ij).all()
    brute = dict(zip(zip(bi.tolist(), bj.tolist()), bs.tolist()))
    ivf = dict(zip(zip(ii.tolist(), ij.tolist()), is_.tolist()))
    assert brute.keys() == ivf.keys()
    np.testing.assert_allclose([brute[k] for k in sorted(brute)], [ivf[k] for k in sorted(brute)], rtol=1e-5)
    # the score is the cosine of the int8 descriptors
    x = neardup.UnitRows(desc)[:]
    for (i, j), s in list(brute.items())[:10]:
        np.testing.assert_allclose(s, float(x[i] @ x[j]), rtol=1e-5)
        assert 0.9 <= s <= 1.0


def test_ivf_recursion_with_small_cells_still_finds_every_planted_pair(monkeypatch):
    desc, pairs = planted_descriptors(6_000, 30, seed=3)
    monkeypatch.setattr(neardup, "BRUTE_FORCE_MAX", 100)
    monkeypatch.setattr(neardup, "CELL_MAX", 500)
    monkeypatch.setattr(neardup, "CELL_TARGET", 300)
    i, j, _ = neardup.near_pairs(desc, 0.9)
    assert set(zip(i.tolist(), j.tolist())) == pairs


def test_threshold_is_inclusive_and_flat_rows_are_ignored():
    a = np.zeros(filescan.DESC_DIM, np.int8)
    a[:2] = [100, -100]
    b = a.copy()
    c = np.zeros(filescan.DESC_DIM, np.int8)
    c[2:4] = [100, -100]
    flat = np.zeros(filescan.DESC_DIM, np.int8)
    desc = np.stack([a, flat, b, c, flat])
    i, j, s = neardup.near_pairs(desc, 1.0 - 1e-6)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 2)]
    np.testing.assert_allclose(s, [1.0], rtol=1e-6)
    i, j, s = neardup.near_pairs(np.stack([flat, flat]), 0.5)
    assert len(i) == 0


def test_weak_cosine_needs_a_close_phash():
    if "phash" not in inspect.signature(neardup.near_pairs).parameters:
        pytest.skip("near_pairs has no pHash clause in this version")
    e = np.eye(filescan.DESC_DIM)
    a = e[0] - e[1]
    b = e[0] - e[1] + 0.7 * (e[2] - e[3])     # cosine with a: 2 / sqrt(2 * 2.98) = 0.819
    c = e[10] - e[11]                          # orthogonal to both
    desc = np.stack([np.round(v / np.linalg.norm(v) * 120) for v in (a, b, c)]).astype(np.int8)
    x = neardup.UnitRows(desc)[:]
    assert 0.8 < float(x[0] @ x[1]) < 0.84
    close = np.array([0b1010, 0b1011, 0], np.int64)         # 1 bit apart
    far = np.array([0, -1, 0], np.int64)                      # 64 bits apart
    i, j, _ = neardup.near_pairs(desc, 0.95, 0.75, close, 12)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]
    i, j, _ = neardup.near_pairs(desc, 0.95, 0.75, far, 12)
    assert len(i) == 0
    i, j, _ = neardup.near_pairs(desc, 0.8)                    # cosine alone
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]


def test_hamming64():
    a = np.array([0, -1, 5, np.iinfo(np.int64).min, 0x0F0F], np.int64)
    b = np.array([0, 0, 3, np.iinfo(np.int64).max, 0x00FF], np.int64)
    assert neardup.hamming64(a, b).tolist() == [0, 64, 2, 64, 8]
    assert neardup.hamming64(a, a).tolist() == [0, 0, 0, 0, 0]


def test_star_groups_do_not_chain():
    """A~B and B~C with A not ~ C: no group holds both A and C; every member is paired with its representative."""
    # 0~1 (0.99), 1~2 (0.97); 0 and 2 are not a pair. 5~6, 5~7, 6~7: a clique of three
    i, j, s = np.array([0, 1, 5, 5, 6]), np.array([1, 2, 6, 7, 7]), np.array([0.99, 0.97, 0.96, 0.98, 0.95])
    g = neardup.star_groups(10, i, j, s)
    assert g.to_dict("list") == {
        "node": [1, 0, 2, 5, 7, 6], "group_id": [0, 0, 0, 1, 1, 1], "representative": [1, 1, 1, 5, 5, 5],
        "score_to_representative": [1.0, 0.99, 0.97, 1.0, 0.98, 0.96], "part": [1] * 6, "n_parts": [1] * 6}
    # a longer chain 0~1~2~3~4: the middle of each star is its representative, ends never meet
    g = neardup.star_groups(5, np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]), np.full(4, 0.97))
    pairs = {(0, 1), (1, 2), (2, 3), (3, 4)}
    for _, grp in g.groupby("group_id"):
        rep = int(grp["representative"].iloc[0])
        assert all(n == rep or (min(n, rep), max(n, rep)) in pairs for n in grp["node"])
    assert neardup.star_groups(3, np.array([], np.int64), np.array([], np.int64), np.array([])).empty


def test_star_groups_split_a_huge_group_and_state_it():
    n_members = 120
    i, j = np.zeros(n_members, np.int64), np.arange(1, n_members + 1)
    g = neardup.star_groups(n_members + 1, i, j, np.linspace(1.0, 0.9, n_members), max_members=50)
    assert g.groupby("group_id").size().tolist() == [50, 50, 23]        # 49 + 49 + 22 members, each with 0
    assert (g["representative"] == 0).all() and (g["n_parts"] == 3).all()
    assert sorted(g.loc[g["node"] != 0, "node"]) == list(range(1, n_members + 1))
    first = g[g["group_id"] == 0]
    assert first["score_to_representative"].iloc[1:].is_monotonic_decreasing  # best scores first


# ----------------------------------------------------------------------------- perceptual hashes

def _imagehash_int(h) -> int:
    v = int(str(h), 16)
    return v - (1 << 64) if v >= (1 << 63) else v


def _bits(a: int, b: int) -> int:
    return int(neardup.hamming64(np.array([a], np.int64), np.array([b], np.int64))[0])


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data
    return Image.fromarray(data.astronaut())


def test_phash64_matches_imagehash(astronaut):
    imagehash = pytest.importorskip("imagehash")
    ref = _imagehash_int(imagehash.phash(astronaut))
    # the same 32x32 grey input as imagehash uses: the same bits
    g32 = astronaut.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    assert filescan.phash64(g32) == ref
    # our own resize path (bilinear): within a few bits
    assert _bits(filescan.phash64(astronaut.convert("L")), ref) <= 4
    # an identical image: an identical hash; a different photo: far
    assert filescan.phash64(astronaut.copy().convert("L")) == filescan.phash64(astronaut.convert("L"))
    other = astronaut.transpose(Image.Transpose.FLIP_TOP_BOTTOM).convert("L")
    assert _bits(filescan.phash64(other), ref) >= 16


def test_scan_hashes_of_a_real_photo(tmp_path, astronaut):
    imagehash = pytest.importorskip("imagehash")
    root = tmp_path / "ds"
    root.mkdir()
    astronaut.save(root / "a.jpg", quality=90)
    astronaut.save(root / "b.png")
    rows = {i: filescan.scan_file(str(root), i) for i in ("a.jpg", "b.png")}
    ref_p = _imagehash_int(imagehash.phash(astronaut))
    ref_d = _imagehash_int(imagehash.dhash(astronaut))
    for r in rows.values():
        assert r["error_kind"] is None
        assert _bits(r["phash"], ref_p) <= 6
        assert _bits(r["dhash"], ref_d) <= 10
    assert _bits(rows["a.jpg"]["phash"], rows["b.png"]["phash"]) <= 4
    x = neardup.UnitRows(np.stack([rows["a.jpg"]["desc"], rows["b.png"]["desc"]]))[:]
    assert float(x[0] @ x[1]) > 0.99


def test_descriptor_is_unit_int8_and_zero_for_flat_images():
    flat = Image.new("L", (32, 32), 128)
    assert not filescan.descriptor(flat).any()
    ramp = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1)))
    d = filescan.descriptor(ramp)
    assert d.dtype == np.int8 and d.shape == (filescan.DESC_DIM,)
    assert abs(np.linalg.norm(d.astype(float)) - 127) < 3
    brighter = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 6 + 40, (32, 1)))
    x = neardup.UnitRows(np.stack([d, filescan.descriptor(brighter)]))[:]
    assert float(x[0] @ x[1]) > 0.99  # brightness/contrast shifts do not move the descriptor


# ----------------------------------------------------------------------------- mirrored copies

def _photo_tiles(n: int, side_px: int = 64) -> list[Image.Image]:
    """Distinct real-photo tiles (scikit-image's astronaut and coffee, a 4x4 grid each), side_px square."""
    from skimage import data

    out = []
    for name in ("astronaut", "coffee"):
        im = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = im.size
        out += [im.crop((x * w // 4, y * h // 4, (x + 1) * w // 4, (y + 1) * h // 4)).resize(
            (side_px, side_px), Image.Resampling.BILINEAR) for x in range(4) for y in range(4)]
    return out[:n]


def test_a_mirrored_descriptor_is_the_descriptor_of_the_mirrored_image_and_so_is_its_hash():
    tiles = _photo_tiles(6)
    desc = np.stack([filescan.descriptor(t.convert("L")) for t in tiles])
    flipped = np.stack([filescan.descriptor(t.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("L")) for t in tiles])
    x, xf = neardup.UnitRows(neardup.mirrored(desc)), neardup.UnitRows(flipped)
    cos = np.einsum("ij,ij->i", x[np.arange(6)], xf[np.arange(6)])
    assert (cos > 0.99).all()
    h, h_mirror = neardup.descriptor_phashes(desc)
    assert (h_mirror == neardup.descriptor_phashes(neardup.mirrored(desc))[0]).all()
    assert (h_mirror != h).any()


@pytest.mark.parametrize("brute_force_max", [8000, 4])
def test_mirror_pairs_find_a_mirrored_copy_and_nothing_among_distinct_tiles(brute_force_max, monkeypatch):
    """Both searches (all against all, and hash candidates above BRUTE_FORCE_MAX) find the mirrored copy of a
    real-photo tile among distinct tiles, and no other pair."""
    monkeypatch.setattr(neardup, "BRUTE_FORCE_MAX", brute_force_max)
    tiles = _photo_tiles(32)
    copy = tiles[5].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    desc = np.stack([filescan.descriptor(t.convert("L")) for t in [*tiles, copy]])
    i, j, cos, dist = neardup.mirror_pairs(desc, cosine=0.95, phash_max=8)
    assert list(zip(i.tolist(), j.tolist())) == [(5, 32)]
    assert cos[0] > 0.99 and dist[0] <= 8
    none = neardup.mirror_pairs(desc, cosine=0.95, phash_max=8, subset=np.arange(33) != 32)
    assert len(none[0]) == 0
