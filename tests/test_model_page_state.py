"""The Model triage page keeps what the user typed across a page switch (Streamlit drops the state of widgets
not drawn on a run unless they persist): the model path, factory, preprocessing path, the predictions path,
the "Scores from" choice and the hand-filled preprocessing form. The page's "The file" panel shows a photo
upright by its EXIF orientation (the model input stays as configured)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import inspect_core
import grid_support
from page_support import SAMPLE, open_on_predictions, open_page

WORST = "di_mt_open_grid"   # the worst-loss grid (one element, tile_grid)

PAGE = "pages/5_Model_triage.py"
OTHER_PAGE = "pages/4_Review.py"
MODEL = SAMPLE / "model" / "model.pt2"
SIDECAR = SAMPLE / "model" / "model.preprocess.json"

pytestmark = pytest.mark.usefixtures("module_cache")   # one cache folder for the module (conftest.py)


def _page(root: Path | str) -> AppTest:
    return open_page(PAGE, root)


def _away_and_back(at: AppTest) -> None:
    at.switch_page(OTHER_PAGE).run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception


def _metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def test_model_path_and_scores_survive_a_page_switch(sample_scan):
    at = _page(SAMPLE)
    at.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    at.button(key="di_mt_score").click().run()
    assert not at.exception
    scored = _metrics(at)
    assert scored["Scored images"] != "0"
    _away_and_back(at)
    assert at.text_input(key="di_mt_model").value == str(MODEL)
    assert _metrics(at) == scored                      # results shown again without retyping or rescoring
    assert not [e for e in at.info if "Type the path of your trained model" in e.value]
    assert not [b for b in at.button if b.key == "di_mt_score"]


def test_factory_and_preprocessing_path_survive_a_page_switch(sample_scan):
    at = _page(SAMPLE)
    at.text_input(key="di_mt_model").set_value(str(SAMPLE / "model" / "model_state.pt")).run()
    at.text_input(key="di_mt_preprocess").set_value(str(SIDECAR)).run()
    at.text_input(key="di_mt_factory").set_value("no_such_pkg.models:make_model").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors
    _away_and_back(at)
    assert at.text_input(key="di_mt_model").value == str(SAMPLE / "model" / "model_state.pt")
    assert at.text_input(key="di_mt_preprocess").value == str(SIDECAR)
    assert at.text_input(key="di_mt_factory").value == "no_such_pkg.models:make_model"
    assert [e.value for e in at.error] == errors       # the same model and factory are tried again


def test_predictions_source_and_path_survive_a_page_switch(sample_scan, tmp_path):
    path = tmp_path / "preds.csv"
    at, res = open_on_predictions(sample_scan.dataset.images, path)
    scored = _metrics(at)
    assert scored["Scored images"] == f"{int(res.table['error'].isna().sum()):,}"
    _away_and_back(at)
    assert at.segmented_control(key="di_mt_source").value == "Predictions file"
    assert at.text_input(key="di_mt_pred").value == str(path)
    assert _metrics(at) == scored


FORM = {"w": 96, "h": 72, "resize": "stretch", "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25",
        "classes": "circle\nsquare\ntriangle\nstar\nhexagon"}


def _form_values(at: AppTest) -> dict:
    return {"w": at.number_input(key="di_mt_form_w").value, "h": at.number_input(key="di_mt_form_h").value,
            "resize": at.selectbox(key="di_mt_form_resize").value,
            "mean": at.text_input(key="di_mt_form_mean").value, "std": at.text_input(key="di_mt_form_std").value,
            "classes": _classes_box(at).value}


def _classes_box(at: AppTest):
    """The class-names text area (its key carries the dataset's classes, so each dataset has its own)."""
    return next(t for t in at.text_area if t.label.startswith("Class names"))


def test_hand_filled_preprocessing_form_survives_a_page_switch(sample_scan, tmp_path):
    model = tmp_path / "net.ts.pt"                       # no sidecar beside it: the form is used
    shutil.copy(SAMPLE / "model" / "model.ts.pt", model)
    at = _page(SAMPLE)
    at.text_input(key="di_mt_model").set_value(str(model)).run()
    assert any("No preprocessing file beside the model" in e.value for e in at.info)
    at.number_input(key="di_mt_form_w").set_value(FORM["w"]).run()
    at.number_input(key="di_mt_form_h").set_value(FORM["h"]).run()
    at.selectbox(key="di_mt_form_resize").set_value(FORM["resize"]).run()
    at.text_input(key="di_mt_form_mean").set_value(FORM["mean"]).run()
    at.text_input(key="di_mt_form_std").set_value(FORM["std"]).run()
    _classes_box(at).set_value(FORM["classes"]).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert _form_values(at) == FORM
    _away_and_back(at)
    assert at.text_input(key="di_mt_model").value == str(model)
    assert _form_values(at) == FORM                     # not back at the defaults (224 x 224, ImageNet mean)
    assert not at.error, [e.value for e in at.error]
    at.button(key="di_mt_score").click().run()          # scoring uses the kept form: the sample's preprocessing
    assert not at.exception
    assert float(_metrics(at)["Accuracy"].rstrip("%")) > 80
    _away_and_back(at)
    assert _form_values(at) == FORM and float(_metrics(at)["Accuracy"].rstrip("%")) > 80


# -- "The file" panel: upright by EXIF orientation ------------------------------------------------------
def _jpeg_with_orientation(path: Path, image: Image.Image, orientation: int | None) -> None:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())


def _marked(size=(64, 32)) -> Image.Image:
    """A landscape picture with a red top-left quarter, so a turn or a mirror shows."""
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, size[0] // 2, size[1] // 2))
    return im


def _red_corners(im: Image.Image) -> list[bool]:
    w, h = im.size
    return [im.getpixel(xy)[0] > 128 for xy in ((2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3))]


def test_upright_for_display_follows_exif_orientation(tmp_path):
    from PIL import ImageOps

    from inspect_core.thumbs import image_bytes
    from inspect_core.ui import model_triage as mt
    stored = _marked()
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.jpg"
        _jpeg_with_orientation(path, stored, orientation)
        assert mt.exif_orientation_of(path) == orientation
        with Image.open(path) as im:
            want = ImageOps.exif_transpose(im).convert("RGB")
        shown = Image.open(io.BytesIO(mt.upright_for_display(image_bytes(stored), orientation)))
        assert shown.size == want.size, orientation
        assert _red_corners(shown) == _red_corners(want), orientation   # the red quarter lands where it should
    plain = tmp_path / "plain.jpg"
    stored.save(plain, "JPEG")
    assert mt.exif_orientation_of(plain) == 0
    assert mt.upright_for_display(b"data", 0) == b"data" and mt.upright_for_display(b"data", 1) == b"data"
    assert mt.exif_orientation_of(tmp_path / "missing.jpg") == 0
    (tmp_path / "junk.jpg").write_text("not an image")
    assert mt.exif_orientation_of(tmp_path / "junk.jpg") == 0


def test_the_file_panel_shows_a_turned_photo_upright_and_says_so(tmp_path, textured):
    root = tmp_path / "ds"
    classes = ["circle", "square", "triangle", "star", "hexagon"]
    for i, cls in enumerate(classes):
        for j in range(2):
            d = root / "train" / cls
            d.mkdir(parents=True, exist_ok=True)
            textured(10 * i + j, size=(96, 72)).save(d / f"{j}.jpg", "JPEG")
    turned = "train/circle/turned.jpg"
    _jpeg_with_orientation(root / turned, textured(99, size=(96, 72)), 6)
    inspect_core.scan(root)
    at = _page(root)
    at.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    at.button(key="di_mt_score").click().run()
    assert not at.exception
    grid_support.open_tile(at, turned, WORST)
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any("EXIF orientation 6" in c for c in captions), captions
    upright = next(i for i in grid_support.tile_ids(at, WORST) if i != turned)
    grid_support.open_tile(at, upright, WORST)
    assert not any("EXIF orientation" in c.value for c in at.caption)
