"""Bulk decisions: which images a bulk action decides (inspect_core.ui.bulk), and the Gallery's and Findings'
bulk actions under AppTest, each one batch in the review store that one undo step reverts."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import inspect_core
from inspect_core.review import ReviewStore
from inspect_core.ui import bulk
import grid_support
from page_support import open_page

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "Home.py")
SAMPLE = REPO / "sample_data"

pytestmark = pytest.mark.usefixtures("module_cache")


def _images():
    return pd.DataFrame({
        "image_id": ["a.png", "b.png", "c.png", "d.png", "e.png"],
        "label": ["cat", "cat", "dog", None, "dog"],
        "width_px": [64, 128, 128, 32, 10],
        "height_px": [64, 128, 128, 32, 10],
        "blur_laplacian_var": [5.0, 1.0, 2.0, 9.0, float("nan")],
    })


def test_best_is_most_pixels_then_sharpest_then_path():
    images = _images()
    # tie on pixels: the sharper c first
    assert bulk.rank_best(images, ["a.png", "b.png", "c.png"]) == ["c.png", "b.png", "a.png"]
    assert bulk.rank_best(images, ["e.png", "d.png"]) == ["d.png", "e.png"]
    tie = images.assign(blur_laplacian_var=1.0)
    assert bulk.rank_best(tie, ["c.png", "b.png"]) == ["b.png", "c.png"]                      # full tie: path order


def test_keep_best_rows_keep_one_per_group_and_never_remove_a_kept_image():
    images = _images()
    rows, kept = bulk.keep_best_rows(images, {"g1": ["a.png", "b.png", "c.png"], "g2": ["c.png", "d.png"]})
    assert kept == ["c.png", "c.png"]
    assert {r["image_id"]: r["action"] for r in rows} == {"c.png": "keep", "a.png": "remove", "b.png": "remove",
                                                         "d.png": "remove"}
    assert next(r for r in rows if r["image_id"] == "a.png")["old_label"] == "cat"
    assert next(r for r in rows if r["image_id"] == "d.png")["old_label"] is None
    assert bulk.describe_rows(rows) == "remove 3, keep 1"


def test_finding_image_ids_and_duplicate_groups():
    findings = pd.DataFrame({
        "image_id": ["a.png", "b.png", "c.png", "d.png", ""],
        "check": ["exact_duplicate", "exact_duplicate", "unreadable", "near_duplicate", "class_imbalance"],
        "family": ["duplicate", "duplicate", "integrity", "duplicate", "balance"],
        "group_id": ["g1", "g1", None, "g2", None]})
    assert bulk.finding_image_ids(findings, families=("integrity",)) == ["c.png"]
    assert bulk.finding_image_ids(findings, checks=("exact_duplicate",)) == ["a.png", "b.png"]
    assert bulk.finding_image_ids(findings, families=("balance",)) == []        # dataset level: no image
    assert bulk.duplicate_groups(findings) == {"g1": ["a.png", "b.png"], "g2": ["d.png"]}
    assert bulk.groups_of(findings, "b.png") == {"g1": ["a.png", "b.png"]}


# -- the pages -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_scan(cache_home):
    import streamlit as st
    st.cache_resource.clear()
    return inspect_core.scan(SAMPLE, workspace=cache_home / "dataset-inspector")


@pytest.fixture()
def store(sample_scan):
    s = ReviewStore(sample_scan.workspace)
    with s._connect() as con:          # each test starts without decisions
        con.execute("DELETE FROM decisions")
    return s


def _app(page: str) -> AppTest:
    return open_page(page, SAMPLE)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text or "")


def test_gallery_select_three_remove_in_one_action_then_undo(sample_scan, store):
    at = _app("pages/1_Gallery.py")
    picked = grid_support.tile_ids(at)[:3]
    for n, iid in enumerate(picked, start=1):      # three ticks, as three clicks on the tiles' boxes
        grid_support.tick(at, [iid])
        assert f"{n} selected" in [t.value for t in at.text]
    assert [t["ticked"] for t in grid_support.tiles(at)][:4] == [True, True, True, False]   # drawn ticked
    next(t for t in at.text_input if t.label == "Note for all").set_value("three at once").run()
    next(b for b in at.button if b.label.startswith("Apply to 3 selected")).click().run()
    assert not at.exception
    cur = store.current()
    assert sorted(cur["image_id"]) == sorted(picked)
    assert set(cur["action"]) == {"remove"} and set(cur["note"]) == {"three at once"}
    hist = store.history()
    assert hist["batch_id"].nunique() == 1 and len(hist) == 3
    assert "0 selected" in [t.value for t in at.text]                     # the selection is cleared
    next(b for b in at.button if b.label.startswith("Undo last bulk action")).click().run()
    assert not at.exception
    assert store.current().empty and len(store.history()) == 6


def test_gallery_shift_click_range_and_untick(sample_scan, store):
    """A shift-click sends the range from the last ticked tile (the grid's JavaScript picks it); unticking one
    takes only that one out; the bulk bar counts and the tiles are drawn ticked accordingly."""
    at = _app("pages/1_Gallery.py")
    ids = grid_support.tile_ids(at)
    grid_support.tick(at, ids[2:9])               # tick tile 3, shift-click tile 9
    assert "7 selected" in [t.value for t in at.text]
    grid_support.tick(at, [ids[4]], on=False)
    assert "6 selected" in [t.value for t in at.text]
    ticked = [t["id"] for t in grid_support.tiles(at) if t["ticked"]]
    assert ticked == ids[2:4] + ids[5:9]
    assert store.current().empty                  # ticking decides nothing


def test_gallery_select_all_matching_the_filter(sample_scan, store):
    at = _app("pages/1_Gallery.py")
    at.multiselect(key="family").set_value(["integrity"]).run()
    flagged = sample_scan.images["image_id"].isin(bulk.finding_image_ids(sample_scan.findings, families=("integrity",)))
    n = int(flagged.sum())   # the images of the scan with an integrity finding (a path outside the root is none)
    assert n >= 3
    next(b for b in at.button if b.label == f"Select all {n} matching").click().run()
    assert f"{n} selected" in [t.value for t in at.text]
    next(b for b in at.button if b.label.startswith(f"Apply to {n} selected")).click().run()
    assert not at.exception
    assert len(store.current()) == n and store.last_batch()["actions"] == {"remove": n}


def test_findings_remove_all_integrity_findings_and_keep_the_best_of_a_group(sample_scan, store):
    at = _app("pages/2_Findings.py")
    at.segmented_control(key="di_findings_family").set_value("integrity").run()
    ids = bulk.finding_image_ids(sample_scan.findings, families=("integrity",))
    next(b for b in at.button if b.label == f"Remove {len(ids)} images").click().run()
    assert not at.exception
    assert sorted(store.current()["image_id"]) == ids

    at.segmented_control(key="di_findings_family").set_value("duplicate").run()
    groups = bulk.duplicate_groups(sample_scan.findings[sample_scan.findings["family"] == "duplicate"])
    gid = next(iter(groups))
    next(b for b in at.button if b.label.startswith("Keep the best of this group")).click().run()
    assert not at.exception
    best = bulk.rank_best(sample_scan.images, groups[gid])
    cur = store.current().set_index("image_id")["action"]
    assert cur[best[0]] == "keep" and all(cur[i] == "remove" for i in best[1:])
    next(b for b in at.button if b.label.startswith("Undo last bulk action")).click().run()
    cur = store.current().set_index("image_id")["action"]
    assert best[0] not in cur.index and sorted(cur.index) == ids                # only that batch undone


def test_gallery_tick_closes_a_viewer_whose_dismiss_was_lost(sample_scan, store):
    """The viewer-reopen race (issue 10), as the server saw it in chromium: Open, Next (a run of the dialog
    alone), Esc in the browser whose dismiss never reached the server, then a tick on the grid. A tick can only
    come from a closed viewer (the dialog is modal): its run draws no viewer and leaves the grid's page as it was
    (the page the Next had moved to is not applied over the tile just ticked)."""
    at = _app("pages/1_Gallery.py")
    ids = grid_support.tile_ids(at)
    ordered = sorted(sample_scan.images["image_id"])
    grid_support.open_tile(at, ids[-1])                       # the page's last image
    next(b for b in at.button if b.label == "Next").click().run()
    assert ordered[len(ids)] in [t.value for t in at.text]    # the viewer on the next page's first image
    shown = grid_support.tile_ids(at)
    grid_support.tick(at, [shown[0]])                         # no dismiss: lost in the browser
    assert not at.exception
    assert "1 selected" in [t.value for t in at.text]
    assert not any(b.label == "Next" for b in at.button), "the viewer came back after the tick"
    assert ordered[len(ids)] not in [t.value for t in at.text]
    assert grid_support.tile_ids(at) == shown                 # still the page the tick was made on
    assert "image" not in at.query_params
