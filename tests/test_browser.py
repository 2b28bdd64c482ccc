"""The app in a real browser: Playwright for Python driving Debian's chromium (headless) against
``streamlit run Home.py -- --root sample_data`` started here on a free port, with its workspace in a
temporary XDG_CACHE_HOME.

Skipped, with the reason, only where /usr/bin/chromium is missing and CI is not set; under CI a missing
chromium fails. Every wait is bounded.
"""
from __future__ import annotations

import csv
import io
import re

from browser_support import (REPO, WAIT_MS, app, browser, main_area, open_buttons, open_image, tiles_shown,  # noqa: F401
                             pick_option, require_chromium, viewer, wait_idle)

from inspect_core.ui.query import DEFAULT_PAGE_SIZE

SAMPLE = REPO / "sample_data"
XSS = "<img src=x onerror=alert(1)>"

require_chromium()


def n_matching(page) -> int:
    text = main_area(page).get_by_text(re.compile(r"images match; page")).first.inner_text()
    return int(text.split(" of ")[0].replace(",", ""))


def test_review_in_a_real_browser(app, browser, tmp_path):
    dialogs: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(WAIT_MS)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # Home on sample_data: scan, then the headline figures.
    page.goto(app.url + "/", wait_until="domcontentloaded")
    main_area(page).get_by_role("button", name="Scan", exact=True).click()
    main_area(page).get_by_text("Findings by family").wait_for()
    wait_idle(page)
    import inspect_core
    from inspect_core.workspace import workspace_dir
    scan = inspect_core.load_scan(workspace_dir(SAMPLE, base=app.cache / "dataset-inspector"))
    assert scan is not None
    images = scan.images
    metric = main_area(page).get_by_test_id("stMetric").filter(has_text="Images")
    assert metric.get_by_test_id("stMetricValue").inner_text().strip() == f"{len(images):,}"

    # Gallery: thumbnails.
    page.goto(app.url + "/Gallery", wait_until="domcontentloaded")
    main_area(page).get_by_text(re.compile(r"images match; page")).wait_for()
    wait_idle(page)
    tiles_shown(page, DEFAULT_PAGE_SIZE)
    assert open_buttons(page).count() == DEFAULT_PAGE_SIZE
    assert n_matching(page) == len(images)

    # Filtering by a check narrows them.
    counts = {c[3:]: int(images[c].sum()) for c in images.columns if c.startswith("is_") and images[c].dtype == bool}
    check = max((c for c, n in counts.items() if 0 < n < DEFAULT_PAGE_SIZE), key=lambda c: counts[c])
    sidebar = page.get_by_test_id("stSidebar")
    box = sidebar.get_by_test_id("stMultiSelect").filter(has_text="Check")
    box.click()
    page.keyboard.type(check)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_idle(page)
    main_area(page).get_by_text(re.compile(rf"^{counts[check]} of [\d,]+ images match")).wait_for()
    tiles_shown(page, counts[check], exact=True)
    assert open_buttons(page).count() == counts[check]
    flagged = sorted(images.loc[images[f"is_{check}"], "image_id"])

    # A relabel made by clicking.
    target = flagged[0]
    old = images.set_index("image_id").loc[target, "label"]
    new = next(c for c in scan.dataset.classes if c != old)
    open_buttons(page).first.click()
    viewer(page).get_by_text(target, exact=True).first.wait_for()
    wait_idle(page)
    pick_option(page, viewer(page).get_by_test_id("stSelectbox").filter(has_text="New label"), new)
    viewer(page).get_by_role("button", name="Relabel").click()
    viewer(page).get_by_text(f"Decision: relabel -> {new}").wait_for()

    # A second relabel to a new class named like an HTML tag: shown as those characters, never run.
    other = sorted(images.loc[~images[f"is_{check}"], "image_id"])[0]
    page.goto(app.url + "/Gallery", wait_until="domcontentloaded")
    main_area(page).get_by_text(re.compile(r"images match; page")).wait_for()
    wait_idle(page)
    open_image(page, other)
    pick_option(page, viewer(page).get_by_test_id("stSelectbox").filter(has_text="New label"), "(new class...)")
    viewer(page).get_by_label("New class name").fill(XSS)
    viewer(page).get_by_label("New class name").press("Enter")
    wait_idle(page)
    viewer(page).get_by_role("button", name="Relabel").click()
    viewer(page).get_by_text(f"Decision: relabel -> {XSS}").wait_for()
    assert page.locator("img[src='x']").count() == 0
    assert not dialogs

    # It survives a reload ...
    page.reload(wait_until="domcontentloaded")
    main_area(page).get_by_text(re.compile(r"images match; page")).wait_for()
    wait_idle(page)
    open_image(page, target)
    viewer(page).get_by_text(f"Decision: relabel -> {new}").wait_for()

    # ... and an app restart.
    app.stop()
    app.start()
    page.goto(app.url + "/Gallery", wait_until="domcontentloaded")
    main_area(page).get_by_text(re.compile(r"images match; page")).wait_for()
    wait_idle(page)
    open_image(page, target)
    viewer(page).get_by_text(f"Decision: relabel -> {new}").wait_for()

    # The export downloads a CSV that contains it.
    page.goto(app.url + "/Review", wait_until="domcontentloaded")
    main_area(page).get_by_text("Export", exact=True).wait_for()
    wait_idle(page)
    with page.expect_download(timeout=WAIT_MS) as info:
        main_area(page).get_by_role("button", name="Relabel list (CSV)").click()
    path = tmp_path / "relabels.csv"
    info.value.save_as(path)
    rows = {r["image_id"]: r for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))}
    assert rows[target]["action"] == "relabel"
    assert rows[target]["old_label"] == old and rows[target]["new_label"] == new
    assert rows[target]["path"] == str(SAMPLE / target)
    assert rows[other]["new_label"] == XSS
    assert not dialogs
    page.close()
