"""The Tests page in a real browser (Playwright + Debian's chromium, as test_browser.py): opened on sample_data
with the regressed predictions, it shows the planted FAILs; with the shipped model's predictions as the baseline,
the comparison. With SCREENSHOT_DIR set, it saves the README's screenshots there."""
from __future__ import annotations

import os
import re
from pathlib import Path

from browser_support import (  # noqa: F401
    REPO,
    WAIT_MS,
    app,
    browser,
    main_area,
    require_chromium,
    wait_idle,
)

import inspect_core

SAMPLE = REPO / "sample_data"
REGRESSED = SAMPLE / "model" / "regressed_predictions.csv"

require_chromium()


def _fill(page, label: str, value: str) -> None:
    box = main_area(page).get_by_role("textbox", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page)


def test_tests_page_shows_the_planted_fail(app, browser, tmp_path):  # noqa: F811 - fixtures
    scan = inspect_core.scan(SAMPLE, workspace=app.cache / "dataset-inspector")
    # the shipped model's scores as a predictions file: the baseline the regressed predictions are compared with
    from inspect_core.suite.scores import score_model
    base = score_model(scan, SAMPLE / "model" / "model.ts.pt")
    baseline = tmp_path / "shipped_predictions.csv"
    base.to_frame()[["image_id"] + [f"prob_{c}" for c in base.class_names]].dropna().to_csv(baseline, index=False)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(app.url + "/Tests")
    wait_idle(page)
    main_area(page).get_by_text("Test file (YAML)").wait_for()
    _fill(page, "Model or predictions file", str(REGRESSED))
    failed = main_area(page).get_by_test_id("stMetric").filter(has_text="Failed")
    failed.wait_for()
    assert int(re.search(r"Failed\s*(\d+)", failed.inner_text()).group(1)) >= 5
    # the first failing test is open: its FAIL line names the test and why
    fail_line = main_area(page).get_by_text(re.compile(r"^FAIL: held-out"))
    fail_line.first.wait_for()
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "tests_page.png"))
    main_area(page).get_by_role("combobox", name=re.compile("Test")).first.click()
    page.get_by_role("option", name="star recall", exact=True).click()
    wait_idle(page)
    main_area(page).get_by_text(re.compile(r"^FAIL: star recall .*value 0\.3953")).wait_for()
    assert main_area(page).get_by_text(re.compile(r"^86 images in slice stars, worst loss first")).count() == 1
    _fill(page, "Baseline: a previous model or predictions file (optional)", str(baseline))
    main_area(page).get_by_text("Comparison with the baseline").wait_for()
    # (Markdown shows "->" as an arrow)
    main_area(page).get_by_text(re.compile(r"^50 images went right (->|\u2192) wrong, 0 wrong")).wait_for()
    if shots:
        main_area(page).get_by_text("Comparison with the baseline").scroll_into_view_if_needed()
        page.screenshot(path=str(Path(shots) / "tests_page_compare.png"))
