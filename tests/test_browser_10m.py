"""The Gallery in a real browser on a scan read lazily (``DI_LAZY_GALLERY=1``) with its pages' data prepared at the
end of the scan (``DI_LAZY_MIN_ROWS``: ``lazy_kept``), as a 10,000,000-row scan is: a few thousand small images,
the thumbnails paint, a filter narrows them, a sort reads the prepared order.

Skipped, with the reason, only where /usr/bin/chromium is missing and CI is not set (``require_chromium``)."""
from __future__ import annotations

import re

import numpy as np
from browser_support import (App, WAIT_MS, browser, main_area, open_buttons, require_chromium,  # noqa: F401
                             tiles_shown, wait_idle)
from PIL import Image

from inspect_core.ui.query import DEFAULT_PAGE_SIZE

require_chromium()
N_IMAGES = 2_000
N_DARK = 30   # every 67th image nearly black: the property check "dark" flags them


def _folder(root) -> None:
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        d = root / ("val" if i % 5 == 0 else "train") / f"class_{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        level = 4 if i % 67 == 0 else int(rng.integers(90, 220))
        pixels = np.clip(rng.normal(level, 25 if level > 10 else 1, (24, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(d / f"img_{i:05d}.jpg", quality=80)


def test_gallery_on_a_lazily_read_scan(browser, tmp_path, monkeypatch):  # noqa: F811
    import inspect_core
    from inspect_core import lazy_kept
    from inspect_core.workspace import workspace_dir
    root = tmp_path / "many"
    _folder(root)
    monkeypatch.setenv("DI_LAZY_GALLERY", "1")
    monkeypatch.setenv(lazy_kept.MIN_ROWS_ENV, "1000")
    app = App(tmp_path / "cache", root=str(root))
    app.cache.mkdir()
    app.start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        page.goto(app.url + "/", wait_until="domcontentloaded")
        main_area(page).get_by_role("button", name="Scan", exact=True).click()
        main_area(page).get_by_text("Findings by family").wait_for(timeout=180_000)
        wait_idle(page)
        ws = workspace_dir(root, base=app.cache / "dataset-inspector")
        assert (lazy_kept.kept_dir(ws) / lazy_kept.MANIFEST).is_file()   # prepared at the end of the scan
        images = inspect_core.load_scan(ws, lazy=False).images
        assert len(images) == N_IMAGES

        page.goto(app.url + "/Gallery", wait_until="domcontentloaded")
        main_area(page).get_by_text(re.compile(rf"^{N_IMAGES:,} of {N_IMAGES:,} images match")).wait_for()
        wait_idle(page)
        tiles_shown(page, DEFAULT_PAGE_SIZE)
        assert open_buttons(page).count() == DEFAULT_PAGE_SIZE

        n_dark = int(images["is_dark"].sum())
        assert 0 < n_dark < DEFAULT_PAGE_SIZE
        box = page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").filter(has_text="Check")
        box.click()
        page.keyboard.type("dark")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        wait_idle(page)
        main_area(page).get_by_text(re.compile(rf"^{n_dark} of {N_IMAGES:,} images match")).wait_for()
        tiles_shown(page, n_dark, exact=True)
        shown = [b.get_attribute("title") for b in main_area(page).locator(".di-grid button[title]").all()]
        assert shown == sorted(images.loc[images["is_dark"], "image_id"])   # by image_id, the default sort
    finally:
        app.stop()
