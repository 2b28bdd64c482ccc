"""Detection triage in a real browser (Playwright + Debian's chromium, as test_browser.py): the page on sample_data
with sample_data/detections.json lists the worst images first, a planted box error among them; opening it shows
the image with its annotated boxes (solid green/red) and predicted boxes (dashed blue/orange) drawn; the confusion
matrix is drawn and a click on a cell opens its images. With "Detector model file", the shipped
sample_data/model/detector.ts.pt is offered, runs on a click, and its worst images paint and open.
Screenshots go to bench/screenshots/detection_*.png."""
from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from browser_support import REPO, WAIT_MS, app, browser, main_area, require_chromium, tiles_shown, \
    wait_idle  # noqa: F401

import inspect_core
from inspect_core.ui import detection_drawing as dd

SAMPLE = REPO / "sample_data"
SHOTS = REPO / "bench" / "screenshots"

require_chromium()


def planted_box_errors() -> set[str]:
    import pandas as pd
    p = pd.read_csv(SAMPLE / "PLANTED.csv")
    return set(p.loc[p["check"].isin(["missing_box", "spurious_box", "wrong_box_class", "badly_placed_box"]),
                     "image_id"])


def colour_pixels(png: bytes, colour) -> int:
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(a - np.array(colour)).sum(axis=2) < 40).sum())


def test_planted_error_image_opens_with_its_boxes(app, browser):
    inspect_core.scan(SAMPLE, workspace=app.cache / "dataset-inspector")
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(app.url + "/Model_triage?task=detection", wait_until="domcontentloaded")
    main_area(page).get_by_text(re.compile(r"images match; worst detection error score first")).wait_for()
    wait_idle(page)
    tiles_shown(page, 12)                   # the grid: one element (tile_grid), its 12 pictures decoded
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "detection_worst.png"), full_page=True)
    first = main_area(page).locator(".di-tile").first.get_by_role("button", name="Open")   # the worst image's Open
    planted = planted_box_errors()
    # the tile's caption names the image: the worst one is a planted box error
    caption = main_area(page).get_by_text(re.compile(r"^#1 ")).first.inner_text()
    image_id = caption.split(" ", 1)[1].strip().replace("\\", "")
    assert image_id in planted, image_id
    first.click()
    main_area(page).get_by_role("heading").filter(has_text=image_id).first.wait_for()
    wait_idle(page)
    big = main_area(page).get_by_test_id("stImage").first
    big.scroll_into_view_if_needed()
    shot = big.screenshot()
    assert colour_pixels(shot, dd.ANN_COLOUR) + colour_pixels(shot, dd.ANN_ERROR_COLOUR) > 100   # solid annotations
    assert colour_pixels(shot, dd.TP_COLOUR) + colour_pixels(shot, dd.FP_COLOUR) > 50           # dashed predictions
    assert main_area(page).get_by_text(re.compile(r"wrong_box_class|missing_box|spurious_box|badly_placed_box")).count()
    page.screenshot(path=str(SHOTS / "detection_detail.png"), full_page=False)
    main_area(page).get_by_role("tab", name="Confusion matrix").click()
    wait_idle(page)
    main_area(page).locator(".js-plotly-plot >> visible=true").first.wait_for()
    page.wait_for_timeout(800)
    main_area(page).locator(".js-plotly-plot >> visible=true").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "detection_confusion.png"), full_page=False)
    # a cell opens its images: the first square (annotated circle, predicted circle)
    main_area(page).locator(".js-plotly-plot >> visible=true").first.locator("path.point").first.click(force=True)
    main_area(page).get_by_text(re.compile(r"^annotated circle -> predicted circle: \d+ images")).wait_for()
    wait_idle(page)
    n_cell = int(re.search(r"(\d+) images", main_area(page).get_by_text(
        re.compile(r"^annotated circle -> predicted circle")).first.inner_text()).group(1))
    assert n_cell > 100                                  # the diagonal: most circles are found
    cell_grid = main_area(page).locator(".di-grid").nth(1)       # the worst images' grid, then the cell's
    cell_grid.locator(".di-tile img").nth(11).wait_for()
    assert cell_grid.locator(".di-tile").count() >= 12


def test_the_shipped_detector_model_file_runs_in_the_browser(app, browser):
    """"Detector model file": the shipped sample_data/model/detector.ts.pt is offered, runs on a click, the worst
    images are painted and one opens with the annotations and the model's boxes drawn."""
    inspect_core.scan(SAMPLE, workspace=app.cache / "dataset-inspector")
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(app.url + "/Model_triage?task=detection", wait_until="domcontentloaded")
    main = main_area(page)
    main.get_by_text("Detector model file", exact=True).click()
    wait_idle(page)
    path_box = main.get_by_role("textbox", name=re.compile(r"^Detector model file"))
    assert path_box.input_value() == str(SAMPLE / "model" / "detector.ts.pt")        # the shipped one, offered
    assert not main.get_by_text(re.compile(r"AP50")).count()                          # nothing runs before the click
    main.get_by_role("button", name="Run the detector").click()
    main.get_by_text(re.compile(r"images match; worst detection error score first")).wait_for(timeout=300_000)
    wait_idle(page)
    tiles_shown(page, 12)
    line = main.get_by_text(re.compile(r"Predicted boxes .*AP50")).first.inner_text()       # one Markdown line
    metrics = dict(part.strip().rsplit(" ", 1) for part in line.replace("\xa0", " ").split("·"))
    assert int(metrics["Predicted boxes"].replace(",", "")) > 300                    # the model's own boxes
    assert 0.5 < float(metrics["AP50"]) < 1.0                                        # README: AP50 0.88 on all
    caption = main.get_by_text(re.compile(r"^#1 ")).first.inner_text()
    image_id = caption.split(" ", 1)[1].strip().replace("\\", "")
    main.locator(".di-tile").first.get_by_role("button", name="Open").click()
    main.get_by_role("heading").filter(has_text=image_id).first.wait_for()
    wait_idle(page)
    big = main.get_by_test_id("stImage").first
    big.scroll_into_view_if_needed()
    shot = big.screenshot()
    assert colour_pixels(shot, dd.ANN_COLOUR) + colour_pixels(shot, dd.ANN_ERROR_COLOUR) > 100   # annotations
    assert colour_pixels(shot, dd.TP_COLOUR) + colour_pixels(shot, dd.FP_COLOUR) > 50           # the model's boxes
    legend = main.get_by_text(re.compile(r"Predictions scoring .{1,4}0\.3 dashed")).first.inner_text()       # the key
    assert re.search(r"\d+ blue \(true positive\), \d+ orange", legend), legend
