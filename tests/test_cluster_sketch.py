"""cluster/sketch.py: mergeable quantile sketches, within their stated bounds of numpy, and the property check's
findings with sketch statistics on the parts of a dataset equal to its findings on the whole."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspect_core.checks.context import CheckContext
from inspect_core.checks.property import ROBUST_COLUMNS, check_property, property_frame, robust_center_scale, \
    robust_values
from inspect_core.cluster.sketch import QuantileSketch, column_stats_from_sketches, property_sketches

REPO = Path(__file__).resolve().parents[1]


def _columns_1m():
    """1,000,000-value columns shaped like the scan's: brightness-like, a log-normal spread on a log scale, many ties
    (one image size), small integers, values on both sides of 0 (log aspect ratios), NaN and inf mixed in."""
    rng = np.random.default_rng(7)
    n = 1_000_000
    with_gaps = rng.normal(0.45, 0.15, n)
    with_gaps[rng.random(n) < 0.01] = np.nan
    with_gaps[:3] = [np.inf, -np.inf, np.nan]
    return {
        "brightness": np.clip(rng.normal(0.45, 0.15, n), 0, 1),
        "log_sharpness": np.log(rng.lognormal(-3, 1.5, n)),
        "log_pixel_count": np.log(np.where(rng.random(n) < 0.9, 640 * 480, rng.integers(100, 4000, n) ** 2.0)),
        "entropy_bits": rng.integers(0, 9, n).astype(float),
        "log_aspect_ratio": np.log(rng.uniform(0.3, 3.0, n)),
        "with_gaps": with_gaps,
    }


def test_sketch_of_1m_values_in_parts_is_within_its_bound_of_numpy():
    for name, values in _columns_1m().items():
        parts = np.array_split(values, 8)
        merged = QuantileSketch()
        for part in parts:
            merged.merge(QuantileSketch().update(part))
        finite = values[np.isfinite(values)]
        assert merged.n == len(finite) and merged.n_skipped == len(values) - len(finite)
        med, mad = np.median(finite), np.median(np.abs(finite - np.median(finite)))
        assert abs(merged.median() - med) <= merged.error_bound("median"), name
        assert abs(merged.mad() - mad) <= merged.error_bound("mad"), name
        assert merged.error_bound("median") <= 2e-4 * max(abs(med), 1e-3) + 1e-9, name     # and the bound is small
        for q in (0.01, 0.1, 0.9, 0.99):
            lo, hi = np.sort(finite)[[int(np.floor((len(finite) - 1) * q)), int(np.ceil((len(finite) - 1) * q))]]
            assert abs(merged.quantile(q) - np.quantile(finite, q)) <= 1e-4 / (1 - 1e-4) * max(abs(lo), abs(hi)) \
                + 1e-12, (name, q)
        assert (merged.quantile(0), merged.quantile(1)) == (finite.min(), finite.max())
        # the sketch of the whole is the merge of its parts, merged in any order
        whole = QuantileSketch().update(values)
        backwards = QuantileSketch()
        for part in parts[::-1]:
            backwards.merge(QuantileSketch().update(part))
        for other in (whole, backwards):
            assert np.array_equal(other.pos_keys, merged.pos_keys) and np.array_equal(other.pos_counts,
                                                                                        merged.pos_counts)
            assert np.array_equal(other.neg_keys, merged.neg_keys) and other.n_zero == merged.n_zero
            assert other.median() == merged.median() and other.mad() == merged.mad()


def test_sketch_edge_cases():
    assert np.isnan(QuantileSketch().median())
    one = QuantileSketch().update([0.7])
    assert one.median() == 0.7 and one.mad() == 0.0
    assert QuantileSketch().update([0.0, 0.0, 5.0]).median() == 0.0
    assert QuantileSketch().update([-2.0, -1.0, 1.0, 2.0]).median() == pytest.approx(0.0, abs=2e-4)
    with pytest.raises(ValueError, match="relative error"):
        QuantileSketch(1e-4).merge(QuantileSketch(1e-2))


def _photo_folder(root: Path) -> Path:
    """The photos scikit-image ships (colour and grey, their own sizes) and crops of them at their crop size, a few
    darkened or blurred as a camera would: real image statistics with real outliers."""
    from PIL import Image, ImageEnhance, ImageFilter
    from skimage import data
    rng = np.random.default_rng(3)
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry", "hubble_deep_field",
             "moon", "page", "text", "clock", "horse", "brick", "grass", "gravel", "cell", "colorwheel", "retina",
             "microaneurysms"]
    photos = []
    for name in names:
        try:
            a = getattr(data, name)()
        except Exception:  # noqa: BLE001 - one that needs a download is left out offline
            continue
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.dtype != np.uint8:
            a = (255 * (a.astype(float) - a.min()) / (np.ptp(a) + 1e-9)).astype(np.uint8)
        photos.append((name, Image.fromarray(a[..., :3] if a.ndim == 3 else a)))
    k = 0
    for name, im in photos:
        (root / name).mkdir(parents=True)
        im.save(root / name / "full.png")
        for j in range(4):
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.3, 0.9)), int(h * rng.uniform(0.3, 0.9))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = im.crop((x, y, x + cw, y + ch))
            k += 1
            if k % 13 == 0:
                crop = ImageEnhance.Brightness(crop).enhance(0.08)
            elif k % 17 == 0:
                crop = crop.filter(ImageFilter.GaussianBlur(6))
            crop.convert("RGB" if im.mode == "RGB" else "L").save(root / name / f"crop{j}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    import inspect_core
    tmp = tmp_path_factory.mktemp("sketch")
    photos = _photo_folder(tmp / "photos")
    return {name: inspect_core.scan(root, workspace=tmp / f"ws_{name}").images
            for name, root in (("sample_data", REPO / "sample_data"), ("photos", photos))}


def _ctx(images, stats=None):
    return CheckContext(images=images, desc=None, annotations=None, classes=[], has_image_labels=True,
                        has_boxes=False, column_stats=stats)


@pytest.mark.parametrize("split", ["shuffled", "by_brightness"])
def test_sketch_statistics_of_real_scans_are_within_the_bound_and_give_the_same_findings(scans, split):
    """Three parts, shuffled or as unlike as can be (sorted by brightness): the merged sketches' median and robust sd
    are within the bound of the check's own, and the property findings of the parts cut with them are the whole
    table's, with the same scores."""
    key = ["image_id", "check"]
    for name, images in scans.items():
        images = (images.sample(frac=1.0, random_state=0) if split == "shuffled"
                  else images.sort_values("brightness", kind="stable")).reset_index(drop=True)
        parts = np.array_split(np.arange(len(images)), 3)
        stats = column_stats_from_sketches([property_sketches(images.iloc[p]) for p in parts])
        img = property_frame(images)
        for stat, (column, log) in ROBUST_COLUMNS.items():
            _, v, ok = robust_values(img, column, log)
            med, robust_sd = robust_center_scale(v[ok])
            got = stats[stat]
            assert got["n"] == ok.sum() > 20, (name, stat)
            assert abs(got["median"] - med) <= got["median_error_bound"], (name, stat)
            assert abs(got["robust_sd"] - robust_sd) <= 1.4826 * got["mad_error_bound"], (name, stat)
        local = pd.DataFrame(check_property(_ctx(images)))
        on_parts = pd.DataFrame([f for p in parts for f in check_property(_ctx(images.iloc[p], stats))])
        assert len(local) >= 10, name
        assert sorted(map(tuple, local[key].to_numpy())) == sorted(map(tuple, on_parts[key].to_numpy())), name
        merged = local.merge(on_parts, on=key, suffixes=("", "_sk"))
        np.testing.assert_allclose(merged["score"], merged["score_sk"], rtol=1e-2)
        if split == "by_brightness":
            # each part cut by its own statistics finds other images: the dataset's statistics are what carry over
            alone = [f for p in parts for f in check_property(_ctx(images.iloc[p]))]
            assert {(f["image_id"], f["check"]) for f in alone} != set(map(tuple, local[key].to_numpy())), name


def test_given_statistics_are_the_ones_the_cuts_use(scans):
    images = scans["photos"]
    stats = column_stats_from_sketches(property_sketches(images))
    dark = {f["image_id"] for f in check_property(_ctx(images, stats)) if f["check"] == "dark"}
    brighter = {**stats, "brightness": {**stats["brightness"], "median": 0.95, "robust_sd": 0.02}}
    darker = {f["image_id"] for f in check_property(_ctx(images, brighter)) if f["check"] == "dark"}
    assert dark < darker                  # a brighter dataset median makes more images dark by comparison
    few = {**stats, "grayscale": {"n_decoded": 100, "n_gray": 50}}
    assert not [f for f in check_property(_ctx(images, few)) if f["check"] == "grayscale"]


def test_sketches_survive_json_and_a_partition_keeps_the_sketch_of_its_rows(scans, tmp_path):
    """A read task's sketch (engine.read_task) is the sketch of its rows' property values; written into the
    partition's Parquet metadata and read back (a re-run reusing the partition), it is the same sketch."""
    from inspect_core.cluster import engine
    from inspect_core.cluster.sketch import PropertySketches
    images = scans["sample_data"]
    ids = images["image_id"].tolist()
    table, sketch_json = engine.read_task(str(REPO / "sample_data"), [ids[:40], ids[40:70]])
    got = PropertySketches.from_json(sketch_json)
    want = property_sketches(images.iloc[:70])
    assert (got.n_decoded, got.n_gray) == (want.n_decoded, want.n_gray) and want.n_decoded > 20
    assert got.sketches.keys() == want.sketches.keys() == ROBUST_COLUMNS.keys()
    for name, sk in want.sketches.items():
        assert got.sketches[name].to_dict() == sk.to_dict(), name
        assert sk.n > 20 and got.sketches[name].median() == sk.median()
    # merged in one pass (engine's sum of 10^5 partitions' sketches) = merged one by one = the sketch of all
    halves = [property_sketches(images.iloc[:35]), property_sketches(images.iloc[35:70])]
    one_by_one = PropertySketches().merge(halves[0]).merge(halves[1])
    for name, sk in PropertySketches.merged(halves).sketches.items():
        assert sk.to_dict() == one_by_one.sketches[name].to_dict() == want.sketches[name].to_dict(), name
    empty = PropertySketches.from_json(property_sketches(images.iloc[:0]).to_json())
    assert empty.sketches["brightness"].n == 0 and np.isnan(empty.sketches["brightness"].median())
    path = tmp_path / "part.parquet"
    assert engine._write_part(path, table, sketch_json)
    again, again_json = engine._read_part(path, table.num_rows)
    assert again_json == sketch_json
    pd.testing.assert_frame_equal(again.to_pandas(), table.to_pandas())
    # a partition written without a sketch (an older one): its sketch is made from its rows
    import pyarrow.parquet as pq
    pq.write_table(table, path)
    assert engine._read_part(path, table.num_rows)[1] == sketch_json
    assert engine._read_part(path, table.num_rows + 1) is None           # not this chunk's: read again
