"""The app on a big scan without one pandas frame: ``load_scan``'s lazy result, the Distributions charts from the
memory-mapped columns, and the Findings and Distributions pages with ``DI_LAZY_GALLERY=1`` against the pandas
path (the same figures, the same texts), and the pages that need every row reading it with a note."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import inspect_core
from inspect_core.lazy_table import LazyImages
from inspect_core.ui import charts
from inspect_core.ui.lazy_query import lazy_box_groups, lazy_counts, lazy_histogram_data, lazy_scatter_points

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("module_cache")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """30,000 synthetic rows with missing labels, splits and values, and its memory-mapped table."""
    from big_scan import write_big_scan
    ws = tmp_path_factory.mktemp("big")
    d = write_big_scan(30_000, ws, chunk_rows=12_000)
    images = pd.read_parquet(d / "images.parquet")
    images.loc[::97, "brightness"] = np.nan
    images.loc[::101, "label"] = pd.NA
    images.loc[::103, "split"] = pd.NA
    images.to_parquet(ws / "images.parquet", index=False, row_group_size=7_000)
    return images, LazyImages(ws / "images.parquet", arrow_path=ws / "images.arrow")


def _tables(sample_scan, synthetic):
    path = Path(sample_scan.workspace) / "scan" / "images.parquet"
    return [(sample_scan.images, LazyImages(path, arrow_path=path.parent.parent / "t" / "images.arrow")), synthetic]


def test_histograms_boxes_and_counts_are_the_frames(sample_scan, synthetic):
    for frame, table in _tables(sample_scan, synthetic):
        for col in ("brightness", "width_px", "contrast"):
            for by in (None, "label", "split"):
                e_edges, e_counts = charts.histogram_data(frame, col, by)
                l_edges, l_counts = lazy_histogram_data(table, col, by)
                assert np.array_equal(e_edges, l_edges)
                assert list(e_counts) == list(l_counts), (col, by)
                assert all(np.array_equal(e_counts[k], l_counts[k]) for k in e_counts), (col, by)
                eager_box = charts.distribution_figure(frame, col, by, "box").to_dict()
                lazy_box = charts.distribution_figure(None, col, by, "box",
                                                      data=lazy_box_groups(table, col, by)).to_dict()
                assert json.dumps(eager_box, sort_keys=True, default=str) == \
                    json.dumps(lazy_box, sort_keys=True, default=str), (col, by)
        for by, color in (("label", "split"), ("split", None), ("label", "label")):
            eager = charts.count_figure(frame, by, color).to_dict()
            lazy = charts.count_figure(None, by, color, counts=lazy_counts(table, by, color)).to_dict()
            assert json.dumps(eager, sort_keys=True, default=str) == json.dumps(lazy, sort_keys=True, default=str)


def test_scatter_is_bounded_and_says_how_many(synthetic):
    from synthetic import CHECKS
    images, table = synthetic
    checks = list(CHECKS["property"])
    eager, n_total = charts.scatter_data(images, "brightness", "contrast", flag_checks=checks)
    pts, n_total_lazy, n_flagged = lazy_scatter_points(table, "brightness", "contrast", checks)
    assert n_total_lazy == n_total and len(pts) == len(eager) <= charts.MAX_SCATTER_POINTS
    assert n_flagged == int(eager["flagged"].sum()) == int(pts["flagged"].sum())   # all flagged fit: all drawn
    small, _, n_flagged_small = lazy_scatter_points(table, "brightness", "contrast", checks, max_points=100)
    assert len(small) == 100 and small["flagged"].sum() == 50 and n_flagged_small == n_flagged > 100
    by_id = images.set_index("image_id")
    for frame in (pts, small):   # every drawn point is its image's values and flags
        assert np.allclose(frame["x"], by_id.loc[frame["image_id"], "brightness"])
        assert np.allclose(frame["y"], by_id.loc[frame["image_id"], "contrast"])
        want = charts.flagged_by(by_id.loc[frame["image_id"]].reset_index(), checks)
        assert frame["flagged"].tolist() == want[0].tolist() and frame["checks"].tolist() == want[1]


def test_load_scan_lazy_reads_the_frame_only_when_asked(sample_scan):
    lazy = inspect_core.load_scan(sample_scan.workspace, lazy=True)
    eager = inspect_core.load_scan(sample_scan.workspace, lazy=False)
    assert type(eager).__name__ == "ScanResult" and type(lazy).__name__ == "LazyScanResult"
    assert not lazy.images_loaded and len(lazy.lazy_images) == len(eager.images)
    assert lazy.lazy_images.memory_mapped
    assert (Path(sample_scan.workspace) / "lazy" / f"images_{sample_scan.fingerprint}.arrow").is_file()
    pd.testing.assert_frame_equal(lazy.findings, eager.findings)
    assert lazy.dataset.classes == eager.dataset.classes and not lazy.images_loaded
    pd.testing.assert_frame_equal(lazy.images, eager.images)
    assert lazy.images_loaded and lazy.loaded_images_s is not None
    pd.testing.assert_frame_equal(lazy.dataset.images, eager.dataset.images)
    assert lazy.dataset.images.attrs == eager.dataset.images.attrs
    assert inspect_core.load_scan(sample_scan.workspace / "nowhere", lazy=True) is None


def _page(page: str, mode: str, monkeypatch, setup=None):
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("DI_LAZY_GALLERY", mode)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=180)
    at.session_state["di_root"] = str(REPO / "sample_data")
    at.run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    if setup is not None:
        setup(at)
        assert not at.exception, at.exception
    return at


def _loaded_scan():
    from inspect_core.ui import state
    scans = list(state._scan_registry()["scans"].values())
    assert len(scans) == 1
    return scans[0]


def _charts(at) -> list[str]:
    return [c.proto.spec for c in at.get("plotly_chart")]


def _texts(at) -> list[str]:
    return [e.value for e in at.text] + [e.value for e in at.caption] + [e.value for e in at.subheader] + \
        [e.value for e in at.header]


def test_distributions_page_lazy_draws_the_same_charts(sample_scan, monkeypatch):
    def other_column(at):
        at.selectbox(key="di_dist_col").set_value("contrast")
        at.radio(key="di_dist_kind").set_value("box")
        at.run()
    eager = _page("pages/3_Distributions.py", "0", monkeypatch, other_column)
    lazy = _page("pages/3_Distributions.py", "1", monkeypatch, other_column)
    assert not _loaded_scan().images_loaded    # the whole page ran without the pandas frame
    assert len(_charts(eager)) >= 4 and _charts(lazy) == _charts(eager)
    assert _texts(lazy) == _texts(eager)
    assert any("property check flags" in t for t in _texts(lazy))


@pytest.mark.parametrize("family", ["duplicate", "label", "property", "integrity"])
def test_findings_page_lazy_shows_the_same(sample_scan, monkeypatch, family):
    def choose(at):
        at.segmented_control(key="di_findings_family").set_value(family).run()
    eager = _page("pages/2_Findings.py", "0", monkeypatch, choose)
    lazy = _page("pages/2_Findings.py", "1", monkeypatch, choose)
    assert not _loaded_scan().images_loaded
    assert _texts(lazy) == _texts(eager)
    assert [d.value.to_dict() for d in lazy.dataframe] == [d.value.to_dict() for d in eager.dataframe]
    assert any(family in t for t in _texts(lazy))


def test_gallery_lazy_never_reads_the_frame_and_review_reads_it_with_a_note(sample_scan, monkeypatch):
    at = _page("pages/1_Gallery.py", "1", monkeypatch)
    scan = _loaded_scan()
    assert type(scan).__name__ == "LazyScanResult" and not scan.images_loaded
    assert any(t.value.startswith(f"48 of {len(sample_scan.images):,}") or "images match" in t.value
               for t in at.text)
    at.switch_page("pages/4_Review.py").run()
    assert not at.exception, at.exception
    assert scan.images_loaded
    assert any("reading its" in i.value and f"{len(sample_scan.images):,} rows" in i.value for i in at.info)
    at.run()   # said once: the frame is shared from then on
    assert not any("reading its" in i.value for i in at.info)


def test_viewer_lazy_shows_the_same_for_a_duplicate(sample_scan, monkeypatch):
    """The viewer on a big scan (row, labels, findings and partners looked up by index; the image's findings
    from the ``FindingsIndex`` when the findings table is big) draws what the pandas path draws, for images with
    duplicate partners and a conflicting label."""
    from inspect_core import lazy_findings
    f = sample_scan.findings
    picks = [f.loc[f["check"] == "conflicting_labels", "image_id"].iloc[0],
             f.loc[f["check"] == "exact_duplicate", "image_id"].iloc[0]]
    looked_up = []
    of_image = lazy_findings.FindingsIndex.of_image
    monkeypatch.setattr(lazy_findings.FindingsIndex, "of_image",
                        lambda self, iid: looked_up.append(iid) or of_image(self, iid))
    for iid in picks:
        def open_it(at, iid=iid):
            at.session_state["di_selected"] = iid
            at.run()
        eager = _page("pages/2_Findings.py", "0", monkeypatch, open_it)
        monkeypatch.setattr(lazy_findings, "FINDINGS_INDEX_MIN_ROWS", 0)
        lazy = _page("pages/2_Findings.py", "1", monkeypatch, open_it)
        monkeypatch.setattr(lazy_findings, "FINDINGS_INDEX_MIN_ROWS", 10**12)
        assert not _loaded_scan().images_loaded and iid in looked_up   # no filter of the whole findings table
        assert iid in [t.value for t in lazy.text]
        assert _texts(lazy) == _texts(eager)
        assert [t.value.to_dict() for t in lazy.table] == [t.value.to_dict() for t in eager.table]


def test_home_counts_a_lazy_scan_without_its_frame(sample_scan, monkeypatch):
    from page_support import texts
    eager = _page("pages/2_Findings.py", "0", monkeypatch, lambda at: at.switch_page("Home.py").run())
    lazy = _page("pages/2_Findings.py", "1", monkeypatch, lambda at: at.switch_page("Home.py").run())
    assert not _loaded_scan().images_loaded
    assert [m.value for m in lazy.metric] == [m.value for m in eager.metric]
    assert f"{len(sample_scan.images):,}" in [m.value for m in lazy.metric]
    assert texts(lazy) == texts(eager)


def test_a_new_scans_arrow_copy_replaces_the_old_one(tmp_path):
    from inspect_core.lazy_table import open_images
    (tmp_path / "scan").mkdir()
    pd.DataFrame({"image_id": ["a", "b"], "brightness": [0.1, 0.2]}).to_parquet(tmp_path / "scan" / "images.parquet")
    first = open_images(tmp_path, "one")
    assert first.memory_mapped and (tmp_path / "lazy" / "images_one.arrow").is_file()
    pd.DataFrame({"image_id": ["a", "b", "c"], "brightness": [0.1, 0.2, 0.3]}).to_parquet(
        tmp_path / "scan" / "images.parquet")
    second = open_images(tmp_path, "two")
    assert sorted(p.name for p in (tmp_path / "lazy").glob("*.arrow")) == ["images_two.arrow"]
    assert second.take([2])["image_id"].tolist() == ["c"]
    assert first.take([1])["image_id"].tolist() == ["b"]     # a table still open keeps reading its mapped copy
    assert open_images(tmp_path, "two").n_rows == 3          # reused, not copied again


def _findings_page(monkeypatch, index_min_rows: int, family: str, setup=None):
    from inspect_core import lazy_findings

    def choose(at):
        at.segmented_control(key="di_findings_family").set_value(family).run()
        if setup is not None:
            setup(at)
    monkeypatch.setattr(lazy_findings, "FINDINGS_INDEX_MIN_ROWS", index_min_rows)
    return _page("pages/2_Findings.py", "1", monkeypatch, choose)


def _buttons(at) -> list[str]:
    return [b.label for b in at.button]


@pytest.mark.parametrize("family", ["duplicate", "label", "property", "integrity", "annotation"])
def test_findings_page_from_the_index_shows_what_pandas_shows(sample_scan, monkeypatch, family):
    """A big findings table (from ``FINDINGS_INDEX_MIN_ROWS``) is counted, sliced and sorted from its
    ``FindingsIndex``: the page draws the same texts, tables and bulk buttons as the pandas path."""
    if family not in set(sample_scan.findings["family"]):
        pytest.skip(f"sample_data has no {family} findings")
    pandas_at = _findings_page(monkeypatch, 10**12, family)
    index_at = _findings_page(monkeypatch, 0, family)
    assert _texts(index_at) == _texts(pandas_at) and any(family in t for t in _texts(index_at))
    assert [d.value.to_dict() for d in index_at.dataframe] == [d.value.to_dict() for d in pandas_at.dataframe]
    assert _buttons(index_at) == _buttons(pandas_at)
    assert [s.options for s in index_at.selectbox] == [s.options for s in pandas_at.selectbox]


def test_findings_bulk_from_the_index_decides_the_same_images(sample_scan, monkeypatch):
    """The bulk action of a big table takes its ids from the index when pressed: the same decisions."""
    from inspect_core.ui import state

    def press(at):
        at.selectbox(key="di_findings_bulk_check").set_value("all property checks").run()
        at.button(key="di_findings_bulk_apply").click().run()
    decided = []
    for min_rows in (10**12, 0):
        at = _findings_page(monkeypatch, min_rows, "property", press)
        assert not at.exception, at.exception
        store = state.store_for(_loaded_scan())
        current = store.current()
        decided.append(sorted(current.loc[current["action"] == "remove", "image_id"]))
        last = store.last_batch()
        assert last is not None and store.undo_batch(last["batch_id"]) == len(decided[-1])
    want = sorted(set(sample_scan.findings.loc[sample_scan.findings["family"] == "property", "image_id"]) - {""})
    assert decided[0] == decided[1] == want and want


@pytest.mark.parametrize("kept", ["no", "made", "read"])
def test_findings_index_answers_what_pandas_answers(tmp_path, kept):
    """Counts, sorted heads, first images and bulk ids of ``FindingsIndex`` against the pandas operations the page
    uses, on random findings with empty and missing image_ids and a missing family; computed, computed and kept
    in the workspace, and read back from there."""
    from inspect_core.lazy_findings import FindingsIndex
    from inspect_core.ui import bulk
    from inspect_core.ui.query import families_of_checks
    rng = np.random.default_rng(0)
    n = 3_000
    ids = np.array([f"img_{i:03d}.jpg" for i in rng.integers(0, 400, n)], dtype=object)
    ids[rng.random(n) < 0.05] = ""
    ids[rng.random(n) < 0.02] = None
    fams = rng.choice(["property", "label", "integrity"], n).astype(object)
    fams[7] = None
    f = pd.DataFrame({"image_id": ids, "check": rng.choice(["dark", "blurry", "missing_label", "unreadable"], n),
                      "family": fams, "score": rng.random(n), "detail": "d",
                      "group_id": pd.array(np.where(rng.random(n) < 0.1, 1, 0), dtype="Int64")})
    path = tmp_path / "lazy" / "findings_key"
    if kept == "read":
        FindingsIndex(f.head(10), path)
        FindingsIndex(f, path)   # another table under the same name: not read as this one, made again
        assert FindingsIndex._load(path, len(f)) is not None and FindingsIndex._load(path, 10) is None
        shuffled = f.sample(frac=1.0, random_state=3).reset_index(drop=True)   # as many rows, other values
        assert not FindingsIndex._matches(shuffled, FindingsIndex._load(path, len(f)))
        assert FindingsIndex(shuffled, path).image_ids("label") == \
            bulk.finding_image_ids(shuffled[shuffled["family"] == "label"], families=("label",))
        FindingsIndex(f, path)
        assert FindingsIndex._matches(f, FindingsIndex._load(path, len(f)))
    index = FindingsIndex(f, path if kept != "no" else None)
    assert (tmp_path / "lazy" / "findings_key.arrow").is_file() == (kept != "no")
    pd.testing.assert_series_equal(index.counts(), f.groupby("family").size(), check_names=False)
    assert index.families_of_checks() == families_of_checks(f.dropna(subset=["family"]))
    for family in ("property", "label", "integrity"):
        fam = f[f["family"] == family]
        want = fam.groupby("check").agg(findings=("image_id", "size"),
                                        images=("image_id", lambda s: s[s != ""].nunique())).reset_index()
        pd.testing.assert_frame_equal(index.per_check(family), want, check_dtype=False)
        head, total = index.sorted_head(family, 500)
        pd.testing.assert_frame_equal(head, fam.sort_values(["check", "image_id"]).head(500))
        assert total == len(fam)
        shown = fam["image_id"][fam["image_id"] != ""].dropna().drop_duplicates()
        assert index.first_image_ids(family, 12) == (shown.head(12).tolist(), len(shown))
        assert index.image_ids(family) == bulk.finding_image_ids(fam, families=(family,))
        assert index.image_ids(family, ("dark",)) == bulk.finding_image_ids(fam, checks=("dark",))
        assert index.n_image_ids(family, ("dark",)) == len(bulk.finding_image_ids(fam, checks=("dark",)))
        pd.testing.assert_frame_equal(index.frame(family), fam)
    for iid in ("img_000.jpg", "img_123.jpg", "", "nowhere.jpg"):   # the viewer's lookup of one image
        pd.testing.assert_frame_equal(index.of_image(iid), f[f["image_id"] == iid])
    as_objects = FindingsIndex(f.astype({"image_id": object, "check": object, "family": object}))
    assert as_objects.image_ids("label") == index.image_ids("label")    # object columns: coded the same
    assert as_objects.sorted_head("label", 50)[0].index.tolist() == index.sorted_head("label", 50)[0].index.tolist()
    assert index.summary(["property", "balance"])["findings"].tolist() == [int((f["family"] == "property").sum()), 0]


def test_image_id_lookups_keep_the_id_order_beside_the_rank(tmp_path, monkeypatch):
    """``positions_of`` (a binary search over the image_id order) keeps that order in the workspace beside the rank
    and a later table reads it (memory-mapped) instead of inverting the rank; a stale file is not read."""
    from inspect_core import lazy_table
    monkeypatch.setattr(lazy_table, "BISECT_MIN_ROWS", 0)
    rng = np.random.default_rng(1)
    ids = [f"img_{i:05d}.jpg" for i in rng.permutation(500)]
    pd.DataFrame({"image_id": ids, "v": np.arange(500)}).to_parquet(tmp_path / "u.parquet")
    rank_path = tmp_path / "lazy" / "image_id_rank_fp.npy"
    order_path = tmp_path / "lazy" / "image_id_order_fp.npy"
    wanted = [ids[7], "absent.jpg", ids[499], ids[0]]
    want = [7, -1, 499, 0]
    assert LazyImages(tmp_path / "u.parquet", rank_path=rank_path).positions_of(wanted).tolist() == want
    assert order_path.is_file() and np.load(order_path).tolist() == np.argsort(ids, kind="stable").tolist()
    later = LazyImages(tmp_path / "u.parquet", rank_path=rank_path)
    assert later.positions_of(wanted).tolist() == want and isinstance(later._id_order(), np.memmap)
    np.save(order_path, np.arange(10))   # another table's: made again
    assert LazyImages(tmp_path / "u.parquet", rank_path=rank_path).positions_of(wanted).tolist() == want
    assert np.load(order_path).tolist() == np.argsort(ids, kind="stable").tolist()


def test_take_frame_is_iloc(tmp_path):
    """``take_frame`` (Arrow-backed columns taken chunk by chunk) gives ``iloc``'s frame: dtypes, index, values,
    for strings read from Parquet in several row groups, numbers, nullable integers and object columns."""
    from inspect_core.lazy_table import take_frame
    n = 5_000
    rng = np.random.default_rng(2)
    f = pd.DataFrame({"image_id": [f"i{k}" if k % 17 else None for k in range(n)], "score": rng.random(n),
                      "group_id": pd.array([k if k % 3 else None for k in range(n)], dtype="Int64")})
    f.to_parquet(tmp_path / "f.parquet", row_group_size=700)
    read = pd.read_parquet(tmp_path / "f.parquet")
    read["obj"] = np.array([str(k) for k in range(n)], dtype=object)
    read.index = read.index * 2
    for pos in (rng.choice(n, 300, replace=False), np.sort(rng.choice(n, 300, replace=False)), [], [n - 1, 0]):
        pd.testing.assert_frame_equal(take_frame(read, pos), read.iloc[np.asarray(pos, dtype=int)])


def test_findings_page_reads_saved_model_evidence_where_embed_dups_writes_it():
    """The Findings page looks for saved model evidence without importing ``embed_dups`` (it imports torch): its
    folder name is the one ``embed_dups`` writes."""
    from inspect_core.model import embed_dups
    from inspect_core.ui import model_evidence
    assert model_evidence.EVIDENCE_DIR == embed_dups.EVIDENCE_DIR


def test_gallery_select_all_counts_what_the_filters_leave_out_once(sample_scan, monkeypatch):
    """"Select all matching" on a big scan: how many selected images the filters leave out is worked out when the
    selection or the filters change, not on every rerun (a pass over every selected id: seconds at 10M rows)."""
    from inspect_core.ui import lazy_query, widgets
    calls = []
    real = lazy_query.LazyMatches.count_outside
    monkeypatch.setattr(lazy_query.LazyMatches, "count_outside",
                        lambda self, ids: calls.append(len(ids)) or real(self, ids))
    at = _page("pages/1_Gallery.py", "1", monkeypatch)
    at.multiselect(key="family").set_value(["property"]).run()
    at.button(key="di_bulk_all").click().run()
    assert not at.exception, at.exception
    selected = set(at.session_state[widgets.SELECTION_KEY])
    at.run()
    at.run()
    assert calls == [0] and selected                      # once, for the empty selection it added to
    assert f"{len(selected):,} selected" in [t.value for t in at.text]
    images = sample_scan.images
    split = sorted(images["split"].dropna().unique())[0]
    at.multiselect(key="split").set_value([split]).run()   # other matches: counted again, once
    at.run()
    assert len(calls) == 2
    kept = int((images["image_id"].isin(selected) & (images["split"] == split)).sum())
    assert f"{len(selected) - kept:,} of the selected images do not match the current filters; they are included." \
        in [c.value for c in at.caption]


@pytest.mark.parametrize("sort_by", ["brightness", "image_id"])
def test_gallery_from_the_prepared_order_shows_what_pandas_shows(sample_scan, monkeypatch, sort_by):
    """A big scan with its data prepared (``lazy_kept``): the Gallery's page and the viewer's next image come from
    walking the prepared order, and are the pandas path's."""
    import grid_support

    from inspect_core import lazy_kept
    lazy_kept.prepare_saved_scan(sample_scan.workspace, force=True)
    walked = []
    first = lazy_kept.KeptOrder.first
    monkeypatch.setattr(lazy_kept.KeptOrder, "first", lambda self, m, k: walked.append(k) or first(self, m, k))

    def view(at):
        at.multiselect(key="family").set_value(["property"])
        at.selectbox(key="sort").set_value(sort_by)
        at.toggle(key="desc").set_value(True).run()
        grid_support.open_tile(at, grid_support.tile_ids(at)[1])
        at.button(key="gallery_detail_next").click().run()
    eager = _page("pages/1_Gallery.py", "0", monkeypatch, view)
    assert not walked
    lazy = _page("pages/1_Gallery.py", "1", monkeypatch, view)
    assert walked and not _loaded_scan().images_loaded
    assert grid_support.tile_ids(lazy) == grid_support.tile_ids(eager) and len(grid_support.tile_ids(eager)) > 2
    assert lazy.session_state["di_selected"] == eager.session_state["di_selected"] == grid_support.tile_ids(eager)[2]
    assert _texts(lazy) == _texts(eager)


def test_distributions_from_the_prepared_charts_draws_the_same(sample_scan, monkeypatch):
    """A big scan with its data prepared: the page's histograms, counts and first scatter are read, not counted,
    and are the pandas path's charts."""
    from inspect_core import lazy_kept
    lazy_kept.prepare_saved_scan(sample_scan.workspace, force=True)
    read = []
    for name in ("histogram", "counts", "scatter"):
        real = getattr(lazy_kept.KeptCharts, name)
        monkeypatch.setattr(lazy_kept.KeptCharts, name,
                            lambda self, *a, _real=real, _name=name: read.append((_name, _real(self, *a) is not None))
                            or _real(self, *a))
    eager = _page("pages/3_Distributions.py", "0", monkeypatch)
    lazy = _page("pages/3_Distributions.py", "1", monkeypatch)
    assert {n for n, hit in read if hit} == {"histogram", "counts", "scatter"}
    assert _charts(lazy) == _charts(eager) and _texts(lazy) == _texts(eager)
