"""Detection metrics in the model unit tests (inspect_core/suite/det_metrics.py, runner.py, cli_test.py): mAP, AP50,
AP75, AP by size, per class, computed per slice; `test SUITE ROOT --detections FILE`; a metric of the other kind is a
clear error."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspect_core.detection import triage_detections
from inspect_core.detection.metrics import coco_metrics
from inspect_core.loaders import load_dataset
from inspect_core.suite import FAIL, PASS, WARN, SuiteError, parse_suite
from inspect_core.suite.runner import evaluation

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DETECTIONS = SAMPLE / "detections.json"


@pytest.fixture(scope="module")
def sample():
    ds = load_dataset(SAMPLE)
    return ds, triage_detections(ds, DETECTIONS)


def suite_of(text: str):
    return parse_suite(text)


def test_detection_metrics_per_slice_and_class_are_the_triage_numbers(sample):
    ds, result = sample
    suite = suite_of("""
slices:
  held_out: {where: {split: [val, test]}}
  train: {where: {split: train}}
tests:
  - {name: all map, slice: all, metric: map, min: 0.5}
  - {name: held-out ap50, slice: held_out, metric: ap50, min: 0.5}
  - {name: held-out star ap50, slice: held_out, metric: ap50, class: star, min: 0.5}
  - {name: train ap75 circle, slice: train, metric: ap75, class: circle, min: 0.99}
  - {name: small, slice: all, metric: ap_small, min: 0.1}
""")
    run = evaluation(ds.images, detection_result=result).run(suite)
    r = run.results.set_index("test")
    whole = result.metrics.summary()
    assert r.loc["all map", "value"] == pytest.approx(whole["map"], abs=1e-12)
    assert r.loc["small", "value"] == pytest.approx(whole["ap_small"], abs=1e-12)
    # a slice: the same metrics on its images' boxes only
    held = set(ds.images.loc[ds.images["split"].astype(str).isin(["val", "test"]), "image_id"])
    ann = result.annotations.loc[result.annotations["image_id"].isin(held)]
    pred = result.predictions.loc[result.predictions["image_id"].isin(held)]
    m = coco_metrics(ann, pred)
    assert r.loc["held-out ap50", "value"] == pytest.approx(m.ap(0.5), abs=1e-12)
    per_class = m.per_class().set_index("category")
    assert r.loc["held-out star ap50", "value"] == pytest.approx(per_class.loc["star", "ap50"], abs=1e-12)
    assert r.loc["held-out star ap50", "value"] != pytest.approx(r.loc["held-out ap50", "value"], abs=1e-3)
    # support: the non-crowd annotated boxes counted
    assert r.loc["held-out ap50", "n"] == len(ann)
    assert r.loc["held-out star ap50", "n"] == int((ann["category"] == "star").sum())
    assert r.loc["all map", "status"] == PASS and r.loc["train ap75 circle", "status"] == FAIL
    assert "outside >= 0.99" in r.loc["train ap75 circle", "reason"]


def test_unknown_class_an_empty_slice_and_a_metric_of_the_other_kind(sample):
    ds, result = sample
    suite = suite_of("""
slices:
  nothing: {id_contains: no-such-image}
tests:
  - {name: bird, slice: all, metric: ap50, class: bird, min: 0.5}
  - {name: empty, slice: nothing, metric: map, min: 0.5}
  - {name: accuracy, slice: all, metric: accuracy, min: 0.5}
""")
    r = evaluation(ds.images, detection_result=result).run(suite).results.set_index("test")
    assert r.loc["bird", "status"] == FAIL
    assert "'bird' is not among the dataset's box categories" in r.loc["bird", "reason"]
    assert "circle" in r.loc["bird", "reason"]
    assert r.loc["empty", "status"] == WARN and r.loc["empty", "n"] == 0
    assert r.loc["accuracy", "status"] == FAIL and "classification metric" in r.loc["accuracy", "reason"]
    # and a detection metric with no detector's boxes at all
    r = evaluation(ds.images).run(suite_of("tests: [{name: m, slice: all, metric: map, min: 0.1}]")).results
    assert r["status"].tolist() == [FAIL] and "detection metric" in r["reason"].iloc[0]


def test_the_spec_validates_detection_parameters():
    with pytest.raises(SuiteError, match="tests"):
        suite_of("tests: [{name: m, slice: all, metric: map, k: 3, min: 0.1}]")
    t = suite_of("tests: [{name: m, slice: all, metric: ap50, class: 7, min: 0.1}]").tests[0]
    assert t.params == {"class": "7"} and t.higher_is_better


def test_cli_runs_the_sample_detection_tests_and_gates_on_them(tmp_path, capsys):
    from inspect_core.cli import main
    suite = SAMPLE / "detection_tests.yaml"
    junit = tmp_path / "det.xml"
    assert main(["test", str(suite), str(SAMPLE), "--detections", str(DETECTIONS), "--junit", str(junit)]) == 0
    out = capsys.readouterr().out
    assert "ap50(class=star)" in out and "4 passed" in out and junit.read_text().count("<testcase") == 4
    # the same boxes shifted by 40 % of their width: a worse detector fails the file
    rows = json.loads(DETECTIONS.read_text())
    for r in rows:
        r["bbox"][0] += 0.4 * r["bbox"][2]
    worse = tmp_path / "shifted.json"
    worse.write_text(json.dumps(rows), encoding="utf-8")
    assert main(["test", str(suite), str(SAMPLE), "--detections", str(worse)]) == 1
    assert "FAIL mAP" in capsys.readouterr().out
    # a metric of the other kind is a usage error naming the test and its line, before anything runs
    assert main(["test", str(SAMPLE / "model_tests.yaml"), str(SAMPLE), "--detections", str(DETECTIONS)]) == 2
    err = capsys.readouterr().err
    assert "'held-out accuracy' (line" in err and "classification metric accuracy" in err and err.count("\n") == 1
    assert main(["test", str(suite), str(SAMPLE), "--predictions",
                 str(SAMPLE / "model" / "regressed_predictions.csv")]) == 2
    err = capsys.readouterr().err
    assert "'mAP' (line" in err and "detection metric map" in err and err.count("\n") == 1


def test_cli_runs_a_detector_model_for_the_detection_metrics(tmp_path, capsys):
    """The sample detector (a tiny trained one) runs over the dataset and fails the file; its mAP is the one
    `score --model` reports."""
    from inspect_core.cli import main
    suite = tmp_path / "t.yaml"
    suite.write_text("slices: {test_split: {where: {split: test}}}\n"
                     "tests: [{name: test map, slice: test_split, metric: map, min: 0.9}]\n", encoding="utf-8")
    assert main(["test", str(suite), str(SAMPLE), "--model", str(SAMPLE / "model" / "detector.ts.pt")]) == 1
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("test map")][0]
    value = float(line.split()[5])
    assert main(["score", str(SAMPLE), "--model", str(SAMPLE / "model" / "detector.ts.pt"), "--split", "test",
                 "--workers", "0", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "detection_summary.json").read_text())
    assert value == pytest.approx(summary["metrics"]["map"], abs=1e-4) and np.isfinite(value)
    assert pd.read_csv(tmp_path / "o" / "detection_images.csv")["image_id"].str.startswith("test/").all()
