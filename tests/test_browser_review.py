"""Reviewing at the speed of looking, in a real browser (Playwright + Debian's chromium, as test_browser.py):
open an image from the bottom of a page and see it; step through five images with the keyboard and decide one
by key; tick three tiles and remove them in one action, then undo it in one step; keep the best of a
duplicate group; reload and find the same dataset, filters and page; a shared link to a second dataset opens it.
"""
from __future__ import annotations

import re
import urllib.parse

import numpy as np
from PIL import Image

from browser_support import (REPO, WAIT_MS, app, browser, close_viewer, main_area, open_buttons,  # noqa: F401
                             open_image, require_chromium, tile_boxes, tiles_shown, viewer, wait_idle)

import inspect_core
from inspect_core.review import ReviewStore
from inspect_core.ui import bulk
from inspect_core.ui.query import DEFAULT_PAGE_SIZE

SAMPLE = REPO / "sample_data"

require_chromium()


def _second_dataset(root):
    """Twelve 32x32 images in two classes: small images, a dataset other than the one the app was started on."""
    rng = np.random.default_rng(7)
    for cls in ("ant", "bee"):
        for k in range(6):
            path = root / cls / f"{cls}_{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return root


def _match_line(page) -> str:
    return main_area(page).get_by_text(re.compile(r"images match; page")).first.inner_text()


def _gallery_ready(page, n_tiles: int) -> None:
    main_area(page).get_by_text(re.compile(r"images match; page")).first.wait_for()
    wait_idle(page)
    tiles_shown(page, n_tiles)


def test_review_at_the_speed_of_looking(app, browser, tmp_path):
    workspace = app.cache / "dataset-inspector"
    scan = inspect_core.scan(SAMPLE, workspace=workspace)
    second = _second_dataset(tmp_path / "second")
    inspect_core.scan(second, workspace=workspace)
    store = ReviewStore(scan.workspace)
    ordered = sorted(scan.images["image_id"])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)

    # 1. The last tile of the page, far below the fold: its image opens where the user looks.
    page.goto(app.url + "/Gallery", wait_until="domcontentloaded")
    _gallery_ready(page, DEFAULT_PAGE_SIZE)
    last = open_buttons(page).nth(DEFAULT_PAGE_SIZE - 1)
    last.scroll_into_view_if_needed()
    last.click()
    # the name line (and the stats table)
    viewer(page).get_by_text(ordered[DEFAULT_PAGE_SIZE - 1], exact=True).first.wait_for()
    wait_idle(page)
    big = viewer(page).get_by_test_id("stImage").first
    big.wait_for()
    box = big.bounding_box()
    assert box and 0 <= box["y"] < 900 and box["height"] > 200, box        # in the viewport, large

    # 2. Five images on with the keyboard (past the end of the page), the shortcuts shown; K keeps one.
    assert viewer(page).get_by_text(re.compile(r"Keys: .* previous / next")).count() == 1
    for k in range(1, 6):
        page.keyboard.press("ArrowRight")
        viewer(page).get_by_text(ordered[DEFAULT_PAGE_SIZE - 1 + k], exact=True).first.wait_for()
        viewer(page).get_by_text(f"{DEFAULT_PAGE_SIZE + k} of {len(ordered):,}", exact=True).wait_for()
    wait_idle(page)
    page.keyboard.press("k")
    viewer(page).get_by_text("Decision: keep").wait_for()
    kept = ordered[DEFAULT_PAGE_SIZE + 4]
    assert store.decision_for(kept)["action"] == "keep"
    close_viewer(page)
    assert "page 2 of" in _match_line(page)                       # the grid followed the viewer to page 2

    # 3. Three tiles ticked (one click, then a shift-click on the third: the range), removed in one action
    #    with one note, undone in one step.
    boxes = tile_boxes(page)
    boxes.nth(0).click()
    main_area(page).get_by_text("1 selected", exact=True).wait_for()
    wait_idle(page)
    boxes.nth(2).click(modifiers=["Shift"])
    main_area(page).get_by_text("3 selected", exact=True).wait_for()
    wait_idle(page)
    assert [tile_boxes(page).nth(i).is_checked() for i in range(4)] == [True, True, True, False]
    main_area(page).get_by_label("Note for all").fill("three at once")
    main_area(page).get_by_label("Note for all").press("Enter")
    wait_idle(page)
    main_area(page).get_by_role("button", name=re.compile(r"^Apply to 3 selected")).click()
    main_area(page).get_by_text("0 selected", exact=True).wait_for()
    wait_idle(page)
    batch = store.last_batch()
    assert batch["actions"] == {"remove": 3} and batch["note"] == "three at once"
    removed = set(store.current().query("action == 'remove'")["image_id"])
    assert removed == set(ordered[DEFAULT_PAGE_SIZE:DEFAULT_PAGE_SIZE + 3])
    main_area(page).get_by_role("button", name=re.compile(r"Undo last bulk action")).click()
    wait_idle(page)
    page.wait_for_function("() => true")
    assert set(store.current()["image_id"]) == {kept}

    # 4. Keep the best of a duplicate group, from the viewer.
    groups = bulk.duplicate_groups(scan.findings)
    gid, members = next((g, m) for g, m in groups.items() if len(m) >= 2)
    open_image(page, members[0])
    viewer(page).get_by_role("button", name=re.compile(r"^Keep the best, remove the rest")).click()
    wait_idle(page)
    best = bulk.keep_best_rows(scan.images, bulk.groups_of(scan.findings, members[0]))[1]
    cur = store.current().set_index("image_id")["action"]
    assert all(cur[b] == "keep" for b in best)
    assert all(cur[m] == "remove" for m in members if m not in best)
    close_viewer(page)

    # 5. A reload opens the same dataset, filters and page.
    search = page.get_by_test_id("stSidebar").get_by_label("Path contains")
    search.fill("circle")
    search.press("Enter")
    wait_idle(page)
    n_circle = sum("circle" in i for i in ordered)
    main_area(page).get_by_text(re.compile(rf"^{n_circle} of [\d,]+ images match; page 1 of")).wait_for()
    tiles_shown(page, min(n_circle, DEFAULT_PAGE_SIZE), exact=True)
    tiles_before = [b.get_attribute("title") or "" for b in open_buttons(page).all()][:3]
    url = page.url
    assert "path=circle" in url and "root=" in url
    page.reload(wait_until="domcontentloaded")
    _gallery_ready(page, 1)
    tiles_shown(page, min(n_circle, DEFAULT_PAGE_SIZE), exact=True)
    assert re.match(rf"^{n_circle} of [\d,]+ images match; page 1 of", _match_line(page))
    assert page.get_by_test_id("stSidebar").get_by_label("Path contains").input_value() == "circle"
    assert [b.get_attribute("title") or "" for b in open_buttons(page).all()][:3] == tiles_before
    page.goto(app.url + "/Gallery?" + urllib.parse.urlencode({"root": str(SAMPLE), "page": "3"}),
              wait_until="domcontentloaded")
    _gallery_ready(page, 1)
    assert "page 3 of" in _match_line(page)

    # 6. A shared link to a second dataset opens that dataset, and says so.
    other = browser.new_page(viewport={"width": 1400, "height": 900})
    other.set_default_timeout(WAIT_MS)
    other.goto(app.url + "/Gallery?" + urllib.parse.urlencode({"root": str(second), "label": "bee"}),
               wait_until="domcontentloaded")
    _gallery_ready(other, 6)
    main_area(other).get_by_text(re.compile("Opened the dataset of the link")).wait_for()
    assert _match_line(other).startswith("6 of 12 images match")
    other.close()
    page.close()
