"""The Tests page under AppTest, on sample_data: the regressed predictions show the planted FAILs; a Gallery filter
saved as a slice becomes a slice of the test file (a copy in the workspace: the dataset is never written), and a
test added on it runs; the comparison with the shipped model and a discovery proposal added as a test."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from page_support import SAMPLE, open_page, texts

from inspect_core.suite import load_suite

PAGE = "pages/6_Tests.py"
REGRESSED = SAMPLE / "model" / "regressed_predictions.csv"

pytestmark = pytest.mark.usefixtures("module_cache")


def plain(text: str) -> str:
    """Text as shown: Markdown escapes removed."""
    return re.sub(r"\\(.)", r"\1", text)


def results(at):
    frame = next(d for d in at.dataframe if d.value is not None and "status" in d.value.columns).value
    return frame.set_index("test")


def test_regressed_predictions_fail_and_a_gallery_filter_becomes_a_tested_slice(sample_scan, tmp_path):
    suite = tmp_path / "tests.yaml"
    shutil.copyfile(SAMPLE / "model_tests.yaml", suite)
    at = open_page(PAGE)
    assert at.text_input(key="di_tests_suite").value == str(SAMPLE / "model_tests.yaml")   # found beside the data
    at.text_input(key="di_tests_suite").set_value(str(suite)).run()
    at.text_input(key="di_tests_scores").set_value(str(REGRESSED)).run()
    assert not at.exception, at.exception
    r = results(at)
    assert r.loc["star recall", "status"] == "FAIL" and r.loc["no unreadable files", "status"] == "PASS"
    assert {m.label: m.value for m in at.metric}["Failed"] == str((r["status"] == "FAIL").sum())
    # a test opens its slice's images, worst loss first
    at.selectbox(key="di_tests_test").set_value("held-out star recall").run()
    assert "27 images in slice held_out_stars, worst loss first" in plain(texts(at))
    assert any(plain(e.value).startswith("FAIL: held-out star recall") for e in at.error)
    # the Gallery's filter (label star, split val) saved as a slice
    at.multiselect(key="label").set_value(["star"]).run()
    at.multiselect(key="split").set_value(["val"]).run()
    at.text_input(key="di_tests_slice_name").set_value("val stars").run()
    at.button(key="di_tests_save_slice").click().run()
    assert not at.exception, at.exception
    assert load_suite(suite).slices["val stars"].spec == {"where": {"label": ["star"], "split": ["val"]}}
    # a test on it, added on the page, runs
    at.text_input(key="di_tests_new_name").set_value("val star accuracy").run()
    at.selectbox(key="di_tests_new_slice").set_value("val stars").run()
    at.selectbox(key="di_tests_new_metric").set_value("accuracy").run()
    at.number_input(key="di_tests_new_bound").set_value(0.9).run()
    at.number_input(key="di_tests_new_support").set_value(5).run()
    at.button(key="di_tests_add_test").click().run()
    assert not at.exception, at.exception
    r = results(at)
    n_val_stars = int(((sample_scan.images["label"] == "star") & (sample_scan.images["split"] == "val")).sum())
    assert r.loc["val star accuracy", "n"] == n_val_stars
    assert r.loc["val star accuracy", "status"] == "FAIL"


def test_the_sample_file_inside_the_dataset_is_edited_as_a_copy(sample_scan):
    before = (SAMPLE / "model_tests.yaml").read_text()
    at = open_page(PAGE)
    at.text_input(key="di_tests_scores").set_value(str(REGRESSED)).run()
    at.text_input(key="di_tests_baseline").set_value(str(REGRESSED)).run()
    assert not at.exception
    assert any("Comparison" in s.value for s in at.subheader)
    at.button(key="di_tests_discover").click().run()
    assert not at.exception, at.exception
    at.button(key="di_tests_add_prop_0").click().run()
    assert not at.exception, at.exception
    assert (SAMPLE / "model_tests.yaml").read_text() == before
    copy = Path(at.text_input(key="di_tests_suite").value)
    assert copy.parent.name == "tests" and copy != SAMPLE / "model_tests.yaml"
    assert "lies inside the dataset" in plain(texts(at))
    assert any(t.name.startswith("discovered: ") for t in load_suite(copy).tests)


def test_a_bad_test_file_or_scores_file_is_a_message(sample_scan, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tests:\n  - {name: a, metric: acc, min: 1}\n")
    at = open_page(PAGE)
    at.text_input(key="di_tests_suite").set_value(str(bad)).run()
    assert not at.exception
    assert any("bad.yaml:2: field 'tests[0] (a).metric': unknown metric 'acc'" in plain(e.value) for e in at.error)
    at.text_input(key="di_tests_suite").set_value(str(SAMPLE / "model_tests.yaml")).run()
    at.text_input(key="di_tests_scores").set_value(str(tmp_path / "none.csv")).run()
    assert not at.exception
    assert any("none.csv not found" in plain(e.value) for e in at.error)
    assert results(at).loc["no unreadable files", "status"] == "PASS"      # data tests still run
