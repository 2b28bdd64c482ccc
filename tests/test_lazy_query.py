"""The lazy Gallery query (pyarrow on images.parquet) against today's pandas path, row for row."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspect_core.ui.lazy_query import LAZY_MIN_ROWS, LazyImages, lazy_gallery_page, use_lazy
from inspect_core.ui.query import NO_LABEL, NO_SPLIT, GalleryQuery, families_of_checks, gallery_page

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _same_page(images: pd.DataFrame, table: LazyImages, q: GalleryQuery, families, decisions=None):
    eager = gallery_page(images, q, families, decisions)
    lazy = lazy_gallery_page(table, q, families, decisions)
    from_frame = lazy_gallery_page(table, q, families, decisions, rows_from=images)
    pd.testing.assert_frame_equal(from_frame.rows, eager.rows)
    assert (lazy.n_match, lazy.n_pages, lazy.page) == (eager.n_match, eager.n_pages, eager.page), q
    assert lazy.warnings == eager.warnings, q
    assert lazy.rows["image_id"].tolist() == eager.rows["image_id"].tolist(), q
    assert list(lazy.rows.index) == list(eager.rows.index), q
    pd.testing.assert_frame_equal(lazy.rows, eager.rows, check_index_type=False)
    start = (eager.page - 1) * eager.page_size
    assert lazy.ids.tolist() == eager.ids[start:start + eager.page_size].tolist(), q
    return eager


def _queries(images: pd.DataFrame, families) -> list[GalleryQuery]:
    labels = images["label"].dropna().astype(str).unique().tolist()
    numeric = [c for c in images.columns if pd.api.types.is_numeric_dtype(images[c])
               and not pd.api.types.is_bool_dtype(images[c])]
    col = "brightness" if "brightness" in images.columns else numeric[0]
    lo, hi = images[col].quantile([0.2, 0.7]).tolist()
    some_id = str(images["image_id"].iloc[len(images) // 2])
    fam = sorted(families)[0]
    return [
        GalleryQuery(),
        GalleryQuery(page=2, page_size=5),
        GalleryQuery(sort_by="image_id", descending=True, page=3, page_size=7),
        GalleryQuery(labels=tuple(labels[:2]), sort_by=col, descending=True),
        GalleryQuery(labels=(NO_LABEL,) + tuple(labels[:1]), splits=("train", NO_SPLIT), sort_by=col),
        GalleryQuery(families=(fam,), sort_by="width_px", page=2, page_size=4),      # many ties: by image_id
        GalleryQuery(families=(fam,), sort_by="width_px", descending=True, page_size=9),
        GalleryQuery(ranges=((col, lo, hi),), sort_by="label", page=2, page_size=6),
        GalleryQuery(search=some_id.split("/")[-1][:4].upper(), sort_by=col),
        GalleryQuery(ranges=(("no_such_column", 0, 1),), sort_by="no_such_column"),
        GalleryQuery(page=10**6, page_size=48, sort_by=col),                            # past the end: clamped
        GalleryQuery(labels=("no such label",)),                                         # nothing matches
        GalleryQuery(sort_by="split", descending=True, page=2, page_size=11),
    ]


def _open(parquet: Path, arrow: bool) -> LazyImages:
    """From Parquet, or from its memory-mapped Arrow copy (made beside it)."""
    return LazyImages(parquet, arrow_path=parquet.with_suffix(".arrow") if arrow else None)


@pytest.fixture(scope="module", params=[False, True], ids=["parquet", "arrow"])
def sample(sample_scan, request, tmp_path_factory):
    parquet = tmp_path_factory.mktemp("sample") / "images.parquet"
    parquet.write_bytes((Path(sample_scan.workspace) / "scan" / "images.parquet").read_bytes())
    table = _open(parquet, request.param)
    assert table.memory_mapped == request.param
    return sample_scan, table


def test_sample_data_same_pages(sample):
    scan, table = sample
    assert table.n_rows == len(scan.images)
    families = families_of_checks(scan.findings)
    for q in _queries(scan.images, families):
        _same_page(scan.images, table, q, families)


def test_sample_data_review_status_filter(sample):
    scan, table = sample
    families = families_of_checks(scan.findings)
    ids = scan.images["image_id"].astype(str).tolist()
    decisions = pd.DataFrame({"image_id": ids[:3], "action": ["remove", "keep", "remove"]})
    for wanted in (("remove",), ("undecided",), ("keep", "undecided")):
        eager = _same_page(scan.images, table, GalleryQuery(decisions=wanted, page_size=500), families, decisions)
        assert eager.n_match > 0
    removed = lazy_gallery_page(table, GalleryQuery(decisions=("remove",)), families, decisions)
    assert sorted(removed.rows["image_id"]) == sorted([ids[0], ids[2]])


@pytest.fixture(scope="module", params=[False, True], ids=["parquet", "arrow"])
def synthetic_100k(tmp_path_factory, request):
    from big_scan import write_big_scan
    ws = tmp_path_factory.mktemp("big")
    d = write_big_scan(100_000, ws, chunk_rows=40_000)   # three chunks: image_ids unique across them
    images = pd.read_parquet(d / "images.parquet")
    images.loc[::97, "brightness"] = np.nan    # a few missing values: they sort last either way
    images.loc[::101, "label"] = pd.NA
    images.to_parquet(ws / "images.parquet", index=False, row_group_size=30_000)
    return images, _open(ws / "images.parquet", request.param)


def test_synthetic_100k_same_pages(synthetic_100k):
    from synthetic import CHECKS
    images, table = synthetic_100k
    assert images["image_id"].is_unique and len(images) == table.n_rows == 100_000
    families = {f: list(c) for f, c in CHECKS.items()}
    for q in _queries(images, families):
        _same_page(images, table, q, families)
        _same_page(images, table, replace(q, page=max(q.page, 1) + 5, page_size=48), families)


def test_missing_values_sort_last(tmp_path):
    images = pd.DataFrame({"image_id": pd.array(["d", "b", "a", "c", "e"], dtype="string"),
                           "label": pd.array(["x", None, "y", "x", None], dtype="string"),
                           "brightness": [0.5, np.nan, 0.5, np.nan, 0.1],
                           "is_dark": [True, False, True, False, True]})
    images.to_parquet(tmp_path / "images.parquet", index=False)
    table = _open(tmp_path / "images.parquet", True)
    for desc in (False, True):
        for col in ("brightness", "label"):
            for size in (1, 2, 3, 5):
                for page in (1, 2, 3):
                    _same_page(images, table, GalleryQuery(sort_by=col, descending=desc, page=page,
                                                           page_size=size), {"property": ["dark"]})
    page = lazy_gallery_page(table, GalleryQuery(sort_by="brightness", descending=True), {})
    assert page.rows["image_id"].tolist() == ["a", "d", "e", "b", "c"]


def test_id_rank_sorted_and_unsorted_files(tmp_path):
    ids = ["b/2.jpg", "a/10.jpg", "a/9.jpg", "c.jpg"]
    pd.DataFrame({"image_id": pd.array(ids, dtype="string")}).to_parquet(tmp_path / "u.parquet", index=False)
    pd.DataFrame({"image_id": pd.array(sorted(ids), dtype="string")}).to_parquet(tmp_path / "s.parquet", index=False)
    assert LazyImages(tmp_path / "u.parquet").id_rank().tolist() == [2, 0, 1, 3]
    assert LazyImages(tmp_path / "s.parquet").id_rank().tolist() == [0, 1, 2, 3]


def test_id_rank_kept_in_the_workspace(tmp_path):
    ids = [f"{k % 7}/{k}.jpg" for k in range(50)]
    pd.DataFrame({"image_id": pd.array(ids, dtype="string")}).to_parquet(tmp_path / "u.parquet", index=False)
    rank_path = tmp_path / "ws" / "lazy" / "rank.npy"
    first = LazyImages(tmp_path / "u.parquet", rank_path=rank_path).id_rank()
    assert rank_path.is_file() and first.tolist() == pd.Series(ids).rank().astype(int).sub(1).tolist()
    np.save(rank_path, first[::-1].copy())          # a second process reads the file, not the column
    assert LazyImages(tmp_path / "u.parquet", rank_path=rank_path).id_rank().tolist() == first[::-1].tolist()
    np.save(rank_path, first[:10])                  # a file of another length is ignored
    assert LazyImages(tmp_path / "u.parquet", rank_path=rank_path).id_rank().tolist() == first.tolist()


def test_only_needed_columns_are_read(sample):
    scan, _ = sample
    path = Path(scan.workspace) / "scan" / "images.parquet"
    q = GalleryQuery(labels=(str(scan.images["label"].dropna().iloc[0]),), sort_by="brightness")
    table = LazyImages(path)
    assert lazy_gallery_page(table, q, {}).n_match > 0
    assert set(table._cache) == {"label", "brightness", "image_id"}   # image_id: its rank, for the ties
    small = LazyImages(path, max_cached_bytes=1)                       # the newest column only
    lazy_gallery_page(small, q, {})
    assert list(small._cache) == ["brightness"]


def _widget_choices(images: pd.DataFrame, classes) -> dict:
    from inspect_core.ui.query import check_columns, numeric_columns
    from inspect_core.ui.widgets import label_options, split_options
    nums = numeric_columns(images)
    return {"labels": label_options(images, classes), "splits": split_options(images),
            "flagged": sorted(c for c, col in check_columns(images).items() if images[col].any()),
            "numeric": nums, "columns": list(images.columns), "dtypes": [str(d) for d in images.dtypes],
            "ranges": {c: (float(np.nanmin(pd.to_numeric(images[c], errors="coerce").to_numpy(float, na_value=np.nan))),
                           float(np.nanmax(pd.to_numeric(images[c], errors="coerce").to_numpy(float, na_value=np.nan))))
                       for c in nums if images[c].notna().any()}}


def test_option_rows_give_the_same_widget_choices(sample, synthetic_100k):
    from inspect_core.ui.lazy_query import option_rows
    scan, _ = sample
    images, _ = synthetic_100k
    for frame, classes in ((scan.images, list(scan.dataset.classes)), (images, [])):
        rows = option_rows(frame)
        assert len(rows) < len(frame) and len(rows) < 200
        assert _widget_choices(frame.iloc[rows], classes) == _widget_choices(frame, classes)
    assert NO_LABEL in _widget_choices(images.iloc[option_rows(images)], [])["labels"]   # a missing label kept


def test_threshold():
    assert not use_lazy(LAZY_MIN_ROWS - 1) and use_lazy(LAZY_MIN_ROWS)
    assert use_lazy(10, switch=True) and not use_lazy(10**8, switch=False)


@pytest.mark.usefixtures("module_cache")
def test_gallery_page_lazy_shows_the_same_tiles(sample_scan, monkeypatch):
    """The Gallery page with DI_LAZY_GALLERY=1 draws the same tiles as the pandas path, for a filter + sort and
    for the next page, and says that it reads lazily."""
    import grid_support
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    repo = Path(__file__).resolve().parents[1]

    def tiles(mode: str) -> tuple[list[list[str]], str]:
        monkeypatch.setenv("DI_LAZY_GALLERY", mode)
        st.cache_data.clear()
        at = AppTest.from_file(str(repo / "Home.py"), default_timeout=120)
        at.session_state["di_root"] = str(repo / "sample_data")
        at.run()
        at.switch_page("pages/1_Gallery.py").run()
        shown = [grid_support.tile_ids(at)]
        at.selectbox(key="sort").set_value("brightness")
        at.toggle(key="desc").set_value(True)
        at.run()
        assert not at.exception, at.exception
        shown.append(grid_support.tile_ids(at))
        at.multiselect(key="family").set_value([sorted(families_of_checks(sample_scan.findings))[0]])
        at.run()
        shown.append(grid_support.tile_ids(at))
        assert not at.exception, at.exception
        return shown, "\n".join(c.value for c in at.caption)

    eager, eager_text = tiles("0")
    lazy, lazy_text = tiles("1")
    assert lazy == eager and all(eager)
    assert eager[1] != eager[0]   # the sort changed the page
    assert "within this page" not in lazy_text   # previous / next and "select all" cover every match now


@pytest.mark.usefixtures("module_cache")
def test_gallery_lazy_open_decide_and_filter_by_status(sample_scan, monkeypatch):
    """Lazy mode end to end on the page: open a tile in the viewer, remove it, then the review-status filter
    (read through the lazy mask, versioned by the store) shows exactly that image."""
    import grid_support
    from streamlit.testing.v1 import AppTest

    from inspect_core.review import ReviewStore
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("DI_LAZY_GALLERY", "1")
    at = AppTest.from_file(str(repo / "Home.py"), default_timeout=120)
    at.session_state["di_root"] = str(repo / "sample_data")
    at.run()
    at.switch_page("pages/1_Gallery.py").run()
    target = grid_support.tile_ids(at)[5]
    grid_support.open_tile(at, target)
    assert not at.exception, at.exception
    assert target in [t.value for t in at.text]
    next(b for b in at.button if b.label == "Remove").click().run()
    assert ReviewStore(Path(sample_scan.workspace)).decision_for(target)["action"] == "remove"
    at.multiselect(key="status").set_value(["remove"]).run()
    assert not at.exception, at.exception
    assert grid_support.tile_ids(at) == [target]
    assert any(t.value.startswith(f"1 of {len(sample_scan.images):,} images match") for t in at.text)


def test_lazy_images_falls_back_on_a_bad_saved_table(tmp_path, monkeypatch):
    """A missing, damaged or stale images.parquet never stops the Gallery: the pandas path serves (None)."""
    from types import SimpleNamespace

    from inspect_core.ui import state
    images = pd.DataFrame({"image_id": pd.array(["a", "b", "c"], dtype="string"), "brightness": [0.1, 0.2, 0.3]})
    scan_dir = tmp_path / "ws" / "scan"
    scan_dir.mkdir(parents=True)

    def lazy_for(fingerprint: str):
        return state.lazy_images(SimpleNamespace(images=images, workspace=tmp_path / "ws", fingerprint=fingerprint))

    monkeypatch.setenv("DI_LAZY_GALLERY", "1")
    assert lazy_for("missing") is None
    (scan_dir / "images.parquet").write_bytes(b"PAR1 this is not parquet")
    assert lazy_for("damaged") is None
    images.iloc[:2].to_parquet(scan_dir / "images.parquet", index=False)
    assert lazy_for("stale") is None                      # another row count than the scan in memory
    images.to_parquet(scan_dir / "images.parquet", index=False)
    table = lazy_for("good")
    assert table is not None and table.n_rows == 3
    assert lazy_gallery_page(table, GalleryQuery(sort_by="brightness", descending=True), {}).ids.tolist() == \
        ["c", "b", "a"]
    assert np.load(tmp_path / "ws" / "lazy" / "image_id_rank_good.npy").tolist() == [0, 1, 2]   # for the next
    monkeypatch.setenv("DI_LAZY_GALLERY", "0")
    assert lazy_for("good") is None


def _eager_order(images: pd.DataFrame, q: GalleryQuery, families) -> np.ndarray:
    from inspect_core.ui.query import matching_order
    return images["image_id"].astype(str).to_numpy()[matching_order(images, q, families)[0]]


def test_lazy_order_and_matches_are_the_eager_order(sample, synthetic_100k):
    """The viewer's previous / next (``LazyOrder``) and "select all matching" (``LazyMatches``) over every match,
    against ``query.matching_order``: positions both ways, at the ends, at page boundaries and at random."""
    from synthetic import CHECKS

    from inspect_core.ui.lazy_query import LazyMatches, LazyOrder, lazy_filter_mask
    scan, small = sample
    images, big = synthetic_100k
    cases = [(scan.images, small, families_of_checks(scan.findings)),
             (images, big, {f: list(c) for f, c in CHECKS.items()})]
    rng = np.random.default_rng(0)
    for frame, table, families in cases:
        for q in _queries(frame, families):
            want = _eager_order(frame, q, families)
            mask, _ = lazy_filter_mask(table, q, families)
            order = LazyOrder(table, mask, q.sort_by, q.descending)
            assert len(order) == len(want), q
            if not len(want):
                assert order.index(str(frame["image_id"].iloc[0])) is None
                continue
            probe = sorted(set([0, 1, 47, 48, 49, len(want) - 1] + rng.integers(0, len(want), 8).tolist()))
            probe = [k for k in probe if k < len(want)]
            assert [order[k] for k in probe] == want[probe].tolist(), q
            fresh = LazyOrder(table, mask, q.sort_by, q.descending)
            assert [fresh.index(want[k]) for k in probe] == probe, q
            last = len(want) - 1
            for k in probe:   # the viewer's previous / next: the neighbour in a pass, clamped at the ends
                assert LazyOrder(table, mask, q.sort_by, q.descending).step(want[k], 1) == \
                    (min(k + 1, last), want[min(k + 1, last)]), (q, k)
                assert LazyOrder(table, mask, q.sort_by, q.descending).step(want[k], -1) == \
                    (max(k - 1, 0), want[max(k - 1, 0)]), (q, k)
            outside = frame["image_id"].astype(str)[~mask]
            if len(outside):
                assert fresh.index(outside.iloc[0]) is None and fresh.step(outside.iloc[0], 1) is None
            assert fresh.index("no/such/image.jpg") is None
            matches = LazyMatches(table, mask)
            assert len(matches) == len(want) and sorted(matches) == sorted(want.tolist())
            assert matches.count_outside([want[0], "no/such/image.jpg"] + outside.head(2).tolist()) == \
                1 + min(len(outside), 2)


def test_lazy_option_rows_are_option_rows(sample, synthetic_100k):
    from inspect_core.ui.lazy_query import lazy_option_rows, option_rows
    for frame, table in (sample, synthetic_100k):
        frame = frame.images if hasattr(frame, "images") else frame
        assert lazy_option_rows(table).tolist() == option_rows(frame).tolist()


def test_rows_and_values_by_image_id(sample):
    scan, table = sample
    ids = scan.images["image_id"].astype(str).tolist()
    want = [ids[7], ids[0], ids[-1]]
    assert table.positions_of(want + ["nope"]).tolist() == [7, 0, len(ids) - 1, -1]
    pd.testing.assert_frame_equal(table.rows_of(want + ["nope"]), scan.images.iloc[[7, 0, len(ids) - 1]],
                                  check_index_type=False)
    assert table.values_of(want, "label") == dict(zip(want, scan.images["label"].iloc[[7, 0, len(ids) - 1]]))


def test_bulk_rows_from_the_lazy_table_are_the_frames(sample):
    from inspect_core.ui import bulk
    scan, table = sample
    ids = scan.images["image_id"].astype(str).tolist()
    for action, label in (("remove", None), ("relabel", "cat")):
        assert bulk.decision_rows(table, ids[3:9] + ["nope"], action, label) == \
            bulk.decision_rows(scan.images, ids[3:9] + ["nope"], action, label)
    groups = bulk.duplicate_groups(scan.findings)
    assert groups
    assert bulk.keep_best_rows(table, groups) == bulk.keep_best_rows(scan.images, groups)


@pytest.mark.usefixtures("module_cache")
def test_gallery_lazy_viewer_steps_past_the_page_and_selects_every_match(sample_scan, monkeypatch):
    """Lazy mode on the page: the viewer's position counts every match and "next" from the page's last tile opens
    the next page's first; "select all matching" selects every match, not the page."""
    import grid_support
    from streamlit.testing.v1 import AppTest

    from inspect_core.ui.widgets import SELECTION_KEY
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("DI_LAZY_GALLERY", "1")
    at = AppTest.from_file(str(repo / "Home.py"), default_timeout=120)
    at.session_state["di_root"] = str(repo / "sample_data")
    at.run()
    at.switch_page("pages/1_Gallery.py").run()
    at.selectbox(key="sort").set_value("brightness")
    at.toggle(key="desc").set_value(True)
    at.run()
    want = _eager_order(sample_scan.images, GalleryQuery(sort_by="brightness", descending=True), {})
    page = grid_support.tile_ids(at)
    assert page == want[:len(page)].tolist() and len(want) > len(page)
    grid_support.open_tile(at, page[-1])
    assert any(t.value == f"{len(page)} of {len(want):,}" for t in at.text)
    next(b for b in at.button if b.label == "Next").click().run()
    assert not at.exception, at.exception
    assert want[len(page)] in [t.value for t in at.text]
    assert any(t.value == f"{len(page) + 1} of {len(want):,}" for t in at.text)
    next(b for b in at.button if b.label == "Previous").click().run()
    assert page[-1] in [t.value for t in at.text]
    at.session_state["di_selected"] = None
    at.run()
    next(b for b in at.button if b.label.startswith("Select all")).click().run()
    assert not at.exception, at.exception
    assert at.session_state[SELECTION_KEY] == set(want.tolist())


def test_positions_by_binary_search_are_the_column_passes(synthetic_100k, monkeypatch):
    """``positions_of`` for a few ids in a big table (a binary search over the image_id order) gives the same
    positions as the pass over the column (small tables, many ids), unsorted file or not."""
    from inspect_core import lazy_table
    images, table = synthetic_100k
    rng = np.random.default_rng(1)
    ids = images["image_id"].astype(str).to_numpy()[rng.integers(0, len(images), 40)].tolist()
    ids += ["", "no/such.jpg", "zzzz", str(images["image_id"].min()), str(images["image_id"].max())]
    passes = table.positions_of(ids)
    monkeypatch.setattr(lazy_table, "BISECT_MIN_ROWS", 0)
    assert table.positions_of(ids).tolist() == passes.tolist()
    assert (passes[:40] >= 0).all() and (passes[40:43] == -1).all()
    assert images["image_id"].astype(str).to_numpy()[passes[:40]].tolist() == ids[:40]
