"""The cluster scan's global steps wired into the checks (inspect_core/cluster/steps.py): the property check's
statistics from sketches and brackets of parts are numpy's own, bit for bit (also when a bracket misses and is
widened); the checks take their pairs from the context's ``pair_source`` when one is given. The whole scan on Ray
against the local one: tests/test_cluster_scan.py (sample_data and 20,000 real-photo crops)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cluster_support import REPO, make_photo_copies_folder, ray_local  # noqa: F401 - a fixture, by usefixtures

import inspect_core
from inspect_core.checks.context import CheckContext, near_rule
from inspect_core.checks.property import ROBUST_COLUMNS, property_frame, robust_center_scale, robust_values
from inspect_core.cluster import dups, engine, steps
from inspect_core.cluster.sketch import PropertySketches, QuantileSketch
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


def _partitions(result, ws, per_task: int = 3):
    """The partitions a cluster read of ``result``'s dataset leaves (engine.read_task and _write_part, here in this
    process): an engine.ReadParts, as engine.read_files records it."""
    root = str(result.dataset.root)
    ids = result.images["image_id"].tolist()
    chunks = [ids[k:k + 40] for k in range(0, len(ids), 40)]
    tasks = [chunks[k:k + per_task] for k in range(0, len(chunks), per_task)]
    ws.mkdir(parents=True, exist_ok=True)
    paths, n_rows, sketches = [], [], []
    for k, task in enumerate(tasks):
        table, sketch = engine.read_task(root, task)
        assert engine._write_part(ws / f"{k}.parquet", table, sketch)
        paths.append(str(ws / f"{k}.parquet")), n_rows.append(table.num_rows), sketches.append(sketch)
    return engine.ReadParts(paths, n_rows, PropertySketches.merged(map(PropertySketches.from_json, sketches)),
                            engine.ids_digest(ids)), sketches


def _layouts(result, tmp_path):
    """(images, placed): a cold read (rows in the partitions' order), one partition not written (its rows sent by
    the driver), and the table in another order than the read (rows found by image_id)."""
    parts, sketches = _partitions(result, tmp_path / "parts")
    images = result.images
    one_missing = engine.ReadParts([None, *parts.paths[1:]], parts.n_rows,
                                   PropertySketches.merged(map(PropertySketches.from_json, sketches[1:])),
                                   parts.ids_digest)
    shuffled = images.sample(frac=1.0, random_state=1).reset_index(drop=True)
    out = {"cold": (images, steps.place(images, parts)), "one_missing": (images, steps.place(images, one_missing)),
           "reordered": (shuffled, steps.place(shuffled, parts))}
    n = len(images)
    assert out["cold"][1].n_from_parts == n and isinstance(out["cold"][1].parts[0][1], slice)
    assert len(out["one_missing"][1].rest) == parts.n_rows[0] and out["one_missing"][1].n_from_parts < n
    assert out["reordered"][1].n_from_parts == n and not isinstance(out["reordered"][1].parts[0][1], slice)
    return out


@pytest.mark.parametrize("task_rows_min", [50_000, 60])        # one task; several, each reading a few partitions
def test_statistics_from_the_partition_files_are_numpys_bit_for_bit(scans, tmp_path, monkeypatch, task_rows_min):
    monkeypatch.setitem(steps.STEP_DEFAULTS, "task_rows_min", task_rows_min)
    for name, result in scans.items():
        for layout, (images, placed) in _layouts(result, tmp_path / name).items():
            got = steps.exact_column_stats(images, n_parts=3, placed=placed)
            for stat, ((med, robust_sd), n) in _numpy_stats(images).items():
                assert (got[stat]["median"], got[stat]["robust_sd"], got[stat]["n"]) == (med, robust_sd, n), \
                    (name, layout, stat)
            assert got["grayscale"]["n_decoded"] == result.images["error_kind"].isna().sum()


@pytest.mark.parametrize("task_rows_min", [50_000, 60])
def test_exact_groups_from_the_partition_files_are_those_of_the_checks_keys(scans, tmp_path, monkeypatch,
                                                                           task_rows_min):
    """The shuffle reads the hashes from the partition files (and the driver's rows for the rest): the groups of
    the content and pixel hashes as the checks key them (checks/context.py), in the table's row numbers."""
    monkeypatch.setitem(steps.STEP_DEFAULTS, "task_rows_min", task_rows_min)
    result = scans["photos"]
    for layout, (images, placed) in _layouts(result, tmp_path).items():
        ctx_keys = {"content_hash": images["content_hash"].where(images["file_size_bytes"].gt(0)),
                    "pixel_hash": images["pixel_hash"].where(images["error_kind"].isna())}
        got = steps.exact_groups_placed(images, placed, n_partitions=5)
        for column, keys in ctx_keys.items():
            want = dups.exact_groups(keys.tolist(), n_partitions=3)
            assert len(want) >= 2, column
            assert [g.tolist() for g in got[column]] == [g.tolist() for g in want], (layout, column)


@pytest.mark.parametrize("task_rows_min", [50_000, 60])
def test_the_per_row_checks_from_the_partition_files_give_the_drivers_findings(scans, tmp_path, monkeypatch,
                                                                              task_rows_min):
    """cluster/rowchecks.py, here in this process: integrity, property and the labels' per-row checks run by tasks on
    the partition files (the rows in none, here in the driver) give the findings the driver's own checks give, for a
    cold read, a read with a partition not written, and a table in another order than the read."""
    from inspect_core.cluster import rowchecks
    monkeypatch.setitem(steps.STEP_DEFAULTS, "task_rows_min", task_rows_min)
    for name, result in scans.items():
        for layout, (images, placed) in _layouts(result, tmp_path / name).items():
            ctx = _ctx(result, column_stats=steps.exact_column_stats(images, n_parts=3, placed=placed))
            ctx.images = images
            want = run_checks(ctx, result.dataset.problems)
            stats = {}
            done = rowchecks.row_findings_placed(images, placed, ctx, stats=stats)
            assert set(done) == {"integrity", "property", "label"}
            assert (stats["rows_on_workers"], stats["rows_in_driver"]) == (placed.n_from_parts, len(placed.rest))
            pd.testing.assert_frame_equal(run_checks(ctx, result.dataset.problems, done), want, obj=f"{name} {layout}")
            assert {"property", *(["integrity", "label"] if name == "sample_data" else [])} <= set(want["family"])


def test_a_family_registered_anew_runs_in_the_driver(monkeypatch):
    """Only the built-in functions run per partition: a family whose registered function is another one (an outside
    check under that name) is not among the per-partition families (``row_families``), so ``run_checks`` leaves
    it to the driver (its whole-table run: test_cluster_scan's cold-scan test)."""
    from inspect_core.checks import REGISTRY
    from inspect_core.checks.registry import CheckSpec
    from inspect_core.cluster import rowchecks
    assert set(rowchecks.row_families()) == {"integrity", "property", "label"}
    spec = REGISTRY["property"]
    monkeypatch.setitem(REGISTRY, "property", CheckSpec(spec.family, lambda ctx: [], spec.checks))
    assert set(rowchecks.row_families()) == {"integrity", "label"}


def test_a_partition_a_worker_cannot_open_says_so(tmp_path):
    with pytest.raises(steps.PartsNotVisible, match="not-here.parquet is not readable on Ray node"):
        steps.paths_bracket([str(tmp_path / "not-here.parquet")], {})


@pytest.mark.usefixtures("ray_local")
def test_steps_fall_back_to_the_drivers_columns_when_workers_cannot_read_the_partitions(scans, tmp_path):
    """Partition paths the workers cannot open (a workspace on a disk only the driver sees): the steps send the
    columns instead, with the same statistics and groups."""
    result = scans["sample_data"]
    images = result.images
    parts, _ = _partitions(result, tmp_path / "parts")
    for p in parts.paths:
        Path(p).unlink()
    with steps.ClusterSteps("local:2") as on_ray:
        on_ray.read_parts = parts
        stats = on_ray.column_stats(images)
        assert len(on_ray.placed(images).rest) == len(images)          # fell back: every row from the driver
        assert on_ray.row_findings(images, _ctx(result, column_stats=stats)) == {}   # the driver runs every check
        assert on_ray.row_stats["rows_in_driver"] == len(images)
        keys = images["pixel_hash"].where(images["error_kind"].isna())
        a, b = on_ray.exact_pairs(keys, column="pixel_hash")
        summary = on_ray.summary()["global_steps"]
    assert stats == steps.exact_column_stats(images)
    want = dups.exact_pairs(dups.exact_groups(keys.tolist()))
    assert a.tolist() == want[0].tolist() and b.tolist() == want[1].tolist() and len(a)
    assert (summary["rows_read_from_partitions"], summary["rows_sent_by_driver"]) == (0, len(images))


@pytest.mark.usefixtures("ray_local")
def test_on_ray_the_statistics_are_those_made_here(scans):
    import ray
    images = scans["sample_data"].images
    assert steps.exact_column_stats(images, n_parts=4, cluster=ray) == steps.exact_column_stats(images, n_parts=4)
