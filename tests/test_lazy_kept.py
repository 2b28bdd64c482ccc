"""``lazy_kept``: the data prepared once per big scan answers what the pages compute on demand, a re-scan makes it
again, and its switches (``DI_LAZY_PREPARE``, ``DI_LAZY_MIN_ROWS``) are obeyed."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspect_core import lazy_kept
from inspect_core.lazy_table import open_images
from inspect_core.ui import lazy_query
from inspect_core.ui.query import GalleryQuery, numeric_columns, sort_order

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _scan(ws: Path, n: int = 4_000) -> pd.DataFrame:
    """A saved synthetic scan of ``n`` rows with missing labels, splits and values, rows not in image_id order."""
    from big_scan import write_big_scan
    d = write_big_scan(n, ws, chunk_rows=n)
    images = pd.read_parquet(d / "images.parquet").sample(frac=1.0, random_state=1).reset_index(drop=True)
    images.loc[::37, "brightness"] = np.nan
    images.loc[::41, "label"] = pd.NA
    images.loc[::43, "split"] = pd.NA
    images["box_area_frac_min"] = np.nan    # columns without a value: an empty histogram, an order by image_id
    images["format"] = pd.Series(pd.NA, index=images.index, dtype="string")
    # file times in ns: int64 values float64 cannot tell apart (256 ns apart at 1.7e18)
    images["mtime_ns"] = 1_700_000_000_000_000_000 + np.random.default_rng(2).integers(0, 200, len(images))
    images.to_parquet(d / "images.parquet", index=False, row_group_size=1_500)
    return images


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    ws = tmp_path_factory.mktemp("kept")
    images = _scan(ws)
    made = lazy_kept.prepare_saved_scan(ws, force=True)
    fingerprint = json.loads((ws / "scan" / "dataset.json").read_text())["fingerprint"]
    return ws, images, open_images(ws, fingerprint), lazy_kept.KeptCharts.open(ws, n_rows=len(images)), made


def test_prepared_charts_are_the_on_demand_ones(prepared):
    ws, images, table, kept, made = prepared
    assert kept is not None and made == lazy_kept.kept_dir(ws)
    cols = numeric_columns(images)
    assert set(kept.manifest["histograms"]) == set(cols) and "brightness" in cols
    for col in cols:
        for by in (None, "label", "split"):
            edges, counts = kept.histogram(col, by)
            want_edges, want = lazy_query.lazy_histogram_data(table, col, by)
            assert np.array_equal(edges, want_edges) and list(counts) == list(want), (col, by)
            assert all(np.array_equal(counts[k], want[k]) for k in want), (col, by)
    pd.testing.assert_frame_equal(kept.counts("label", "split"), lazy_query.lazy_counts(table, "label", "split"))
    pd.testing.assert_series_equal(kept.counts("split", None), lazy_query.lazy_counts(table, "split", None))
    assert kept.counts("label", "label") is None and kept.histogram("image_id", None) is None
    from inspect_core.ui import charts
    from inspect_core.ui.query import families_of_checks, with_registered_checks
    x, y = charts.default_scatter_axes(cols)
    findings = pd.read_parquet(ws / "scan" / "findings.parquet")
    assert kept.families_of_checks() == families_of_checks(findings)
    checks = tuple(with_registered_checks(families_of_checks(findings))["property"])
    pts, n_total, n_flagged = kept.scatter(x, y, checks)
    want, want_total, want_flagged = lazy_query.lazy_scatter_points(table, x, y, checks)
    pd.testing.assert_frame_equal(pts, want)
    assert (n_total, n_flagged) == (want_total, want_flagged) and kept.scatter(y, x, checks) is None


@pytest.mark.parametrize("column", ["image_id", "brightness", "width_px", "label", "split", "n_findings", "format",
                                    "mtime_ns"])
def test_prepared_orders_are_the_galleries(prepared, column):
    """Every row in the pandas Gallery's order (missing values last, ties by image_id), both ways; a page of the
    matches, a deep page and the viewer's steps from the order are those of the top-k path."""
    _, images, table, kept, _ = prepared
    families = {"property": ["dark", "blurry", "low_contrast"]}
    for desc in (False, True):
        order = kept.gallery_order(table, column, desc)
        assert np.asarray(order.rows).tolist() == sort_order(images, column, desc).tolist(), (column, desc)
        for q in (GalleryQuery(sort_by=column, descending=desc, page=3),
                  GalleryQuery(families=("property",), labels=("class_03",), sort_by=column, descending=desc),
                  GalleryQuery(splits=("val",), sort_by=column, descending=desc, page=4, page_size=24)):
            mask = lazy_query.lazy_filter_mask(table, q, families)
            n_pages = lazy_query.lazy_gallery_page(table, q, mask=mask).n_pages
            for page in sorted({1, q.page, n_pages}):
                want = lazy_query.lazy_gallery_page(table, replace(q, page=page), mask=mask)
                got = lazy_query.lazy_gallery_page(table, replace(q, page=page), mask=mask, order=order)
                assert got.ids.tolist() == want.ids.tolist() and got.n_match == want.n_match, (q, page)
            walked = lazy_query.LazyOrder(table, mask[0], column, desc, order=order)
            passed = lazy_query.LazyOrder(table, mask[0], column, desc)
            some = [walked[0], walked[len(walked) // 2], walked[len(walked) - 1]]
            assert some == [passed[0], passed[len(passed) // 2], passed[len(passed) - 1]]
            for iid in some:
                assert walked.index(iid) == passed.index(iid)
                for delta in (-1, 1):
                    assert walked.step(iid, delta) == passed.step(iid, delta), (q, iid, delta)


def test_a_rescan_makes_it_again_and_the_old_one_goes(tmp_path):
    _scan(tmp_path, 600)
    first = lazy_kept.prepare_saved_scan(tmp_path, force=True)
    assert lazy_kept.KeptCharts.open(tmp_path, n_rows=600) is not None
    assert lazy_kept.KeptCharts.open(tmp_path, n_rows=601) is None   # another table of the same name: not it
    p = tmp_path / "scan" / "images.parquet"
    images = pd.read_parquet(p)
    images.loc[0, "brightness"] = 123.0
    images.to_parquet(p, index=False)                                 # a re-scan rewrites the files
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    meta = json.loads((p.parent / "dataset.json").read_text())
    (p.parent / "dataset.json").write_text(json.dumps({**meta, "fingerprint": "rescanned"}))
    assert lazy_kept.kept_dir(tmp_path) != first
    assert lazy_kept.KeptCharts.open(tmp_path) is None                 # not ready: the pages compute on demand
    second = lazy_kept.prepare_saved_scan(tmp_path, force=True)
    assert second != first and second.is_dir() and not first.exists()
    edges, _ = lazy_kept.KeptCharts.open(tmp_path).histogram("brightness", None)
    assert edges[-1] == 123.0


def test_unfinished_folders_a_process_left_are_removed_once_stale(tmp_path):
    """A preparation cut short (its process ended: a CLI run, a killed app) leaves a charts_*.tmp folder: the next
    preparation removes it once it is older than STALE_TMP_S, and leaves a fresh one (another process's, running)."""
    _scan(tmp_path, 300)
    lazy = tmp_path / lazy_kept.LAZY_DIR
    lazy.mkdir(exist_ok=True)
    stale, fresh = lazy / "charts_old.1234abcd.tmp", lazy / "charts_other.5678abcd.tmp"
    for d in (stale, fresh):
        d.mkdir()
        (d / "hist_0.npz").write_bytes(b"x")
    old = time.time() - lazy_kept.STALE_TMP_S - 60
    os.utime(stale, (old, old))
    made = lazy_kept.prepare_saved_scan(tmp_path, force=True)
    assert made.parent == lazy and made.is_dir()
    assert not stale.exists() and fresh.is_dir()


def test_the_app_not_load_scan_prepares_in_the_background(tmp_path, monkeypatch):
    import inspect_core
    _scan(tmp_path, 500)
    monkeypatch.setenv(lazy_kept.MIN_ROWS_ENV, "501")
    assert lazy_kept.prepare_saved_scan(tmp_path) is None              # smaller than DI_LAZY_MIN_ROWS
    monkeypatch.setenv(lazy_kept.MIN_ROWS_ENV, "500")
    monkeypatch.setenv(lazy_kept.PREPARE_ENV, "0")
    assert lazy_kept.prepare_saved_scan(tmp_path) is None              # switched off
    scan = inspect_core.load_scan(tmp_path, lazy=True)
    assert lazy_kept.prepare_in_background(tmp_path, scan.lazy_images) is None
    assert not lazy_kept.kept_dir(tmp_path).exists()
    monkeypatch.delenv(lazy_kept.PREPARE_ENV)
    started = []
    real = lazy_kept.prepare_in_background
    monkeypatch.setattr(lazy_kept, "prepare_in_background", lambda *a, **k: started.append(real(*a, **k)))
    scan = inspect_core.load_scan(tmp_path, lazy=True)
    assert not started        # the library only reads: a CLI process would end mid-way and leave a .tmp folder
    from inspect_core.ui import state
    monkeypatch.setattr(state, "workspace_dir", lambda root: tmp_path)
    monkeypatch.setattr(state, "_remember_scan", lambda *a: None)
    monkeypatch.setenv("DI_LAZY_GALLERY", "1")
    scan = state.cached_scan(str(tmp_path / "dataset"))                # what every page calls first
    assert scan is not None and started and started[0] is not None
    started[0].join(60)
    assert lazy_kept.KeptCharts.open(tmp_path, n_rows=500) is not None
    assert not scan.images_loaded                                        # made from the columns, not the frame


def test_families_come_from_the_findings_index_when_one_is_built(tmp_path, monkeypatch):
    """Above FINDINGS_INDEX_MIN_ROWS the preparation builds the findings index and takes the family list from its
    codes (no second pass over the rows): the same list as the on-demand one."""
    import inspect_core.lazy_findings as lazy_findings
    from inspect_core.ui.query import families_of_checks
    ws = tmp_path / "ws"
    images = _scan(ws)
    monkeypatch.setattr(lazy_findings, "FINDINGS_INDEX_MIN_ROWS", 1)
    built = []
    real = lazy_findings.FindingsIndex.families_of_checks
    monkeypatch.setattr(lazy_findings.FindingsIndex, "families_of_checks",
                        lambda self: built.append(1) or real(self))
    lazy_kept.prepare_saved_scan(ws, force=True)
    kept = lazy_kept.KeptCharts.open(ws, n_rows=len(images))
    findings = pd.read_parquet(ws / "scan" / "findings.parquet")
    assert built and len(findings) > 10
    assert kept.families_of_checks() == families_of_checks(findings)
