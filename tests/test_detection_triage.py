"""triage_detections on the shipped sample data, its saved tables and the CLI hook
(inspect_core/detection/triage.py, cli.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

import inspect_core
from inspect_core.detection import cli as det_cli
from inspect_core.detection import triage_detections
from inspect_core.detection.errors import CHECKS

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="module")
def result():
    return triage_detections(SAMPLE, SAMPLE / "detections.json")


def planted() -> set[tuple[str, str]]:
    rows = pd.read_csv(SAMPLE / "PLANTED.csv", keep_default_na=False)
    rows = rows[rows["check"].isin(CHECKS)]
    return set(zip(rows["image_id"], rows["check"]))


def test_planted_box_errors_are_found_near_the_top(result):
    want = planted()
    assert {c for _, c in want} == set(CHECKS) and len(want) >= 8      # every kind planted
    top = result.errors.head(2 * len(want))
    found = want & set(zip(top["image_id"], top["check"]))
    assert len(found) / len(want) >= 0.9, sorted(want - found)
    # the planted images are among the worst by detection error score
    worst = set(result.images.head(2 * len(want))["image_id"])
    assert len({i for i, _ in want} & worst) / len({i for i, _ in want}) >= 0.9


def test_every_box_is_accounted_for(result):
    a, p = result.annotations, result.predictions
    assert set(a["error_type"]) <= {"", "missed"} and (a["is_matched"] == (a["error_type"] == "")).all()
    assert set(p["error_type"]) <= {"", "classification", "localization", "both", "duplicate", "background"}
    assert (p["is_tp"] == (p["error_type"] == "")).all()
    assert p["is_tp"].sum() == a["is_matched"].sum()
    # every matched pair is a same-class pair at IoU >= 0.5
    tp = p[p["is_tp"]]
    assert (a.loc[tp["ann_row"], "category"].to_numpy() == tp["category"].to_numpy()).all()
    assert (tp["iou"] >= 0.5).all()
    s = result.summary
    assert s["n_annotations"] == len(a) and s["n_predictions"] == len(p)
    assert s["tide_counts"]["missed"] == (a["error_type"] == "missed").sum()


def test_left_out_boxes_and_unknown_images_are_reported(result):
    # the scan's box_unknown_category and box_degenerate boxes are not evaluated
    assert result.summary["n_annotations_left_out"] == 2
    # predictions for the COCO entries that are not images of the dataset are findings
    assert set(result.problems["check"]) == {"prediction_unknown_image"}
    assert "train/circle/circle_9999.jpg" in set(result.problems["image_id"])


def test_save_writes_the_tables(result, tmp_path):
    paths = result.save(tmp_path / "out")
    errors = pd.read_csv(paths["detection_errors"], keep_default_na=False)
    assert errors["check"].tolist() == result.errors["check"].tolist()
    images = pd.read_csv(paths["detection_images"])
    assert images["image_id"].tolist() == result.images["image_id"].tolist()
    assert len(pd.read_csv(paths["detection_predictions"])) == len(result.predictions)
    assert len(pd.read_csv(paths["detection_annotations"])) == len(result.annotations)
    per_class = pd.read_csv(paths["detection_per_class"])
    assert set(per_class["category"]) == {"circle", "square", "triangle", "star", "hexagon"}
    summary = json.loads(paths["detection_summary"].read_text())
    assert summary["metrics"]["ap50"] == pytest.approx(result.summary["metrics"]["ap50"], abs=1e-6)
    confusion = pd.read_csv(paths["detection_confusion"]).set_index("annotated")
    assert confusion.loc["(background)", "(background)"] == 0 and confusion.to_numpy().trace() > 500
    assert not (SAMPLE / "detection_errors.csv").exists()          # the dataset is never written into


def test_scan_result_and_split(tmp_path, result):
    scan = inspect_core.scan(SAMPLE, workspace=tmp_path / "ws", workers=1)
    r = triage_detections(scan, SAMPLE / "detections.json")
    assert r.summary["metrics"] == pytest.approx(result.summary["metrics"])
    val = triage_detections(scan, SAMPLE / "detections.json", split="val")
    assert set(val.images["image_id"]) == set(scan.images.loc[scan.images["split"] == "val", "image_id"])
    assert val.predictions["image_id"].str.startswith("val/").all()


def args(**kw):
    return argparse.Namespace(**{"root": str(SAMPLE), "detections": str(SAMPLE / "detections.json"), "out": None,
                                 "split": None, "workspace": None, "fail_on": [], **kw})


def test_cli_run_writes_tables_and_fails_on(tmp_path, capsys):
    assert det_cli.run(args(out=str(tmp_path / "o"))) == 0
    out = capsys.readouterr().out
    assert "mAP@[.5:.95]" in out and "wrong_box_class" in out
    assert (tmp_path / "o" / "detection_errors.csv").is_file()
    assert det_cli.run(args(out=str(tmp_path / "o"), fail_on=["wrong_box_class:0"])) == 1
    assert det_cli.run(args(out=str(tmp_path / "o"), fail_on=["wrong_box_class:99"])) == 0
    assert det_cli.run(args(out=str(tmp_path / "o"), fail_on=["nonsense"])) == 2
    assert det_cli.run(args(out=str(tmp_path / "o"), detections=str(tmp_path / "missing.json"))) == 2
    err = capsys.readouterr().err
    assert "missing.json" in err and "Traceback" not in err
    # the dataset is never written into
    assert det_cli.run(args(out=str(SAMPLE / "detection_out"))) == 2
    assert "inside the dataset root" in capsys.readouterr().err and not (SAMPLE / "detection_out").exists()
    (tmp_path / "afile").write_text("x")
    assert det_cli.run(args(out=str(tmp_path / "afile"))) == 2


def test_add_arguments_fits_a_parser_that_has_some_options_already(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--out", required=True)          # as 'score' has it
    det_cli.add_arguments(parser)
    a = parser.parse_args([str(SAMPLE), "--out", str(tmp_path / "o"), "--detections",
                           str(SAMPLE / "detections.json"), "--fail-on", "spurious_box:99"])
    assert det_cli.run(a) == 0 and (tmp_path / "o" / "detection_images.csv").is_file()
    assert det_cli.main([str(SAMPLE), "--out", str(tmp_path / "p")]) == 2          # no --detections


def test_params_override_and_typos_are_refused(result):
    strict = triage_detections(SAMPLE, SAMPLE / "detections.json", params={"min_confidence": 0.95})
    assert (strict.errors["check"] == "missing_box").sum() < (result.errors["check"] == "missing_box").sum()
    with pytest.raises(ValueError, match="min_confidenc.*known: iou_match"):
        triage_detections(SAMPLE, SAMPLE / "detections.json", params={"min_confidenc": 0.9})


def test_score_command_takes_detections(tmp_path, capsys):
    """`python -m inspect_core score ROOT --detections FILE` runs the detection triage (issue 13, item 6)."""
    from inspect_core.cli import main
    out = tmp_path / "det"
    assert main(["score", str(SAMPLE), "--detections", str(SAMPLE / "detections.json"), "--out", str(out)]) == 0
    errors = pd.read_csv(out / "detection_errors.csv")
    planted = pd.read_csv(SAMPLE / "PLANTED.csv")
    box_rows = planted[planted["check"].isin(["missing_box", "badly_placed_box", "wrong_box_class", "spurious_box"])]
    assert len(box_rows) and set(box_rows["image_id"]) <= set(errors["image_id"])
    assert main(["score", str(SAMPLE), "--detections", str(SAMPLE / "detections.json"), "--out", str(out),
                 "--fail-on", "wrong_box_class:0"]) == 1
    assert main(["score", str(SAMPLE), "--detections", str(SAMPLE / "detections.json"),
                 "--predictions", str(SAMPLE / "model" / "regressed_predictions.csv"), "--out", str(out)]) == 2
    assert "mAP" in capsys.readouterr().out
