"""The cluster scan's global steps wired into the checks (inspect_core/cluster/steps.py): the property check's
statistics from sketches and brackets of parts are numpy's own, bit for bit (also when a bracket misses and is
widened); the checks take their pairs from the context's ``pair_source`` when one is given. The whole scan on Ray
against the local one: tests/test_cluster_scan.py (sample_data and 20,000 real-photo crops)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cluster_support import REPO, make_photo_copies_folder, ray_local  # noqa: F401 - a fixture, by usefixtures

import inspect_core
from inspect_core.checks.context import CheckContext, near_rule
from inspect_core.checks.property import ROBUST_COLUMNS, property_frame, robust_center_scale, robust_values
from inspect_core.cluster import dups, steps
from inspect_core.cluster.sketch import QuantileSketch
from inspect_core.scanner import _boxes_to_px, run_checks


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wired")
    photos = tmp / "photos"
    make_photo_copies_folder(photos)
    return {name: inspect_core.scan(root, workspace=tmp / f"ws_{name}")
            for name, root in (("sample_data", REPO / "sample_data"), ("photos", photos))}


def _numpy_stats(images) -> dict:
    img = property_frame(images)
    out = {}
    for name, (column, log) in ROBUST_COLUMNS.items():
        _, v, ok = robust_values(img, column, log)
        out[name] = robust_center_scale(v[ok]), int(ok.sum())
    return out


@pytest.mark.parametrize("n_parts", [1, 3, 7])
def test_statistics_from_parts_are_numpys_bit_for_bit(scans, n_parts):
    for name, result in scans.items():
        images = result.images.sample(frac=1.0, random_state=n_parts).reset_index(drop=True)   # parts unlike
        got = steps.exact_column_stats(images, n_parts=n_parts)
        for stat, ((med, robust_sd), n) in _numpy_stats(images).items():
            assert (got[stat]["median"], got[stat]["robust_sd"], got[stat]["n"]) == (med, robust_sd, n), (name, stat)
        assert got["grayscale"]["n_decoded"] == result.images["error_kind"].isna().sum() > 20


def test_a_bracket_that_misses_is_widened_and_the_statistics_stay_exact(scans, monkeypatch):
    """With a sketch bound of 0 the first brackets hold no value (or not the middle ones): wider ones are tried."""
    calls = []
    real = steps.part_bracket

    def counting(part, brackets):
        calls.append({k: v[1] - v[0] for k, v in brackets.items()})
        return real(part, brackets)
    monkeypatch.setattr(QuantileSketch, "error_bound", lambda self, what="median": 0.0)
    monkeypatch.setattr(steps, "part_bracket", counting)
    images = scans["photos"].images
    got = steps.exact_column_stats(images, n_parts=4)
    for stat, ((med, robust_sd), _) in _numpy_stats(images).items():
        assert (got[stat]["median"], got[stat]["robust_sd"]) == (med, robust_sd), stat
    assert len(calls) > 2 * 4                   # more than one bracket pass per statistic pass
    assert any(np.inf in c.values() for c in calls)           # the last try: every value


def test_an_empty_or_undecoded_table_gives_empty_statistics():
    images = pd.DataFrame({c: pd.Series(dtype=float) for c in ("brightness", "contrast", "blur_laplacian_var",
                                                                "entropy_bits", "width_px", "height_px",
                                                                "colourfulness")})
    images["image_id"], images["error_kind"] = pd.Series(dtype=str), pd.Series(dtype=str)
    images["gray_mode"], images["mode"] = pd.Series(dtype=bool), pd.Series(dtype=str)
    got = steps.exact_column_stats(images)
    assert all(got[s]["n"] == 0 for s in ROBUST_COLUMNS) and got["grayscale"] == {"n_decoded": 0, "n_gray": 0}


class _Source:
    """A pair_source running the cluster steps in this process, counting its calls."""

    def __init__(self, near=True):
        self.calls, self.near = [], near

    def exact_pairs(self, keys, column):
        self.calls.append(column)
        return dups.exact_pairs(dups.exact_groups(keys, n_partitions=3))

    def near_pairs(self, desc, phash, subset, cuts):
        self.calls.append("near")
        if not self.near:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return dups.near_pairs_banded(desc, phash, cuts, subset=subset)


def _ctx(result, **kw) -> CheckContext:
    ds = result.dataset
    return CheckContext(images=result.images, desc=result.desc, annotations=_boxes_to_px(ds, result.images),
                        classes=ds.classes, has_image_labels=ds.has_image_labels, has_boxes=ds.has_boxes,
                        near_rule=near_rule(), **kw)


def test_the_checks_take_their_pairs_and_statistics_from_the_context(scans):
    result = scans["photos"]
    images = result.images
    source = _Source()
    wired = run_checks(_ctx(result, pair_source=source, column_stats=steps.exact_column_stats(images, 5)),
                       result.dataset.problems)
    assert source.calls == ["content_hash", "pixel_hash", "near"]
    pd.testing.assert_frame_equal(wired, result.findings)
    assert {"exact_duplicate", "near_duplicate"} <= set(wired["check"])
    # a source that finds no near pairs: the checks report none (the pairs are the source's, not recomputed)
    blind = run_checks(_ctx(result, pair_source=_Source(near=False)), result.dataset.problems)
    assert "near_duplicate" not in set(blind["check"]) and "exact_duplicate" in set(blind["check"])


@pytest.mark.usefixtures("ray_local")
def test_on_ray_the_statistics_are_those_made_here(scans):
    import ray
    images = scans["sample_data"].images
    assert steps.exact_column_stats(images, n_parts=4, cluster=ray) == steps.exact_column_stats(images, n_parts=4)
