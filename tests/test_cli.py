"""The command line, run as a user runs it: `python -m inspect_core scan ROOT ...` in a subprocess."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
FINDING_COLUMNS = ["image_id", "check", "family", "score", "detail", "group_id"]


def run_cli(*args, timeout_s: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspect_core", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture()
def dataset(tmp_path, textured) -> Path:
    """12 images in two classes; three exact-duplicate pairs (6 exact_duplicate findings) and one truncated file."""
    root = tmp_path / "ds"
    for k in range(12):
        cls = "cat" if k % 2 else "dog"
        (root / cls).mkdir(parents=True, exist_ok=True)
        textured(k, (64, 48)).save(root / cls / f"{k:02d}.jpg", quality=90)
    for k in range(3):
        cls = "cat" if k % 2 else "dog"
        shutil.copy(root / cls / f"{k:02d}.jpg", root / cls / f"copy_{k:02d}.jpg")
    data = (root / "cat" / "01.jpg").read_bytes()
    (root / "cat" / "cut.jpg").write_bytes(data[: len(data) // 2])
    return root


def test_scan_writes_the_report(dataset, tmp_path):
    out = tmp_path / "report"
    proc = run_cli("scan", dataset, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "truncated" in proc.stdout and "exact_duplicate" in proc.stdout  # the summary table
    images = pd.read_parquet(out / "images.parquet")
    assert len(images) == 16 and images["image_id"].is_unique
    for col in ("image_id", "label", "split", "width_px", "height_px", "brightness", "phash", "file_size_bytes",
                "is_truncated", "is_exact_duplicate", "is_dark", "n_findings"):
        assert col in images.columns, col
    rows = images.set_index("image_id")
    assert rows.loc["dog/00.jpg", ["width_px", "height_px", "label"]].tolist() == [64, 48, "dog"]
    assert rows.loc["cat/cut.jpg", "is_truncated"] and not rows.loc["dog/00.jpg", "is_truncated"]
    findings = pd.read_parquet(out / "findings.parquet")
    findings_csv = pd.read_csv(out / "findings.csv")
    assert list(findings.columns) == FINDING_COLUMNS
    assert list(findings_csv.columns) == FINDING_COLUMNS
    assert len(findings) == len(findings_csv)
    assert sorted(zip(findings["image_id"], findings["check"])) == sorted(
        zip(findings_csv["image_id"].fillna(""), findings_csv["check"]))
    assert sorted(findings.loc[findings["check"] == "exact_duplicate", "image_id"]) == [
        "cat/01.jpg", "cat/copy_01.jpg", "dog/00.jpg", "dog/02.jpg", "dog/copy_00.jpg", "dog/copy_02.jpg"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 16
    assert summary["findings_per_check"]["truncated"] == 1
    assert summary["findings_per_family"]["duplicate"] == 6


def test_fail_on_gates(dataset, tmp_path):
    tripped = run_cli("scan", dataset, "--out", tmp_path / "r1", "--fail-on", "truncated")
    assert tripped.returncode == 1, tripped.stderr
    assert "truncated: 1 findings > 0 allowed" in tripped.stderr
    family_ok = run_cli("scan", dataset, "--out", tmp_path / "r2", "--fail-on", "duplicate:6",
                        "--fail-on", "truncated:1")
    assert family_ok.returncode == 0, family_ok.stderr
    family_tripped = run_cli("scan", dataset, "--out", tmp_path / "r3", "--fail-on", "duplicate:5")
    assert family_tripped.returncode == 1
    assert "duplicate: 6 findings > 5 allowed" in family_tripped.stderr


def test_fail_on_passes_when_nothing_is_planted(dataset, tmp_path):
    (dataset / "cat" / "cut.jpg").unlink()
    proc = run_cli("scan", dataset, "--out", tmp_path / "r", "--fail-on", "truncated", "--fail-on", "unreadable")
    assert proc.returncode == 0, proc.stderr


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_usage_errors_exit_2_with_one_line(dataset, tmp_path):
    assert "does not exist" in one_line_error(run_cli("scan", tmp_path / "no_such_folder"))
    a_file = dataset / "dog" / "00.jpg"
    assert "not a folder" in one_line_error(run_cli("scan", a_file))
    assert "unknown check or family" in one_line_error(run_cli("scan", dataset, "--fail-on", "darkness"))
    assert "MAX_COUNT" in one_line_error(run_cli("scan", dataset, "--fail-on", "dark:many"))
    one_line_error(run_cli("scan", dataset, "--format", "voc"))
    assert "dataset folder" in one_line_error(run_cli("scan", dataset, "--out", dataset / "report"))
    assert not (dataset / "report").exists()


def test_format_override_coco(tmp_path, textured):
    root = tmp_path / "ds"
    (root / "photos" / "set1").mkdir(parents=True)
    for k in range(3):
        textured(k, (40, 30)).save(root / "photos" / "set1" / f"{k}.jpg")
    (root / "coco.json").write_text(json.dumps({
        "images": [{"id": k, "file_name": f"photos/set1/{k}.jpg"} for k in range(3)],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [30, 20, 20, 20]},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}],
        "categories": [{"id": 1, "name": "thing"}]}))
    out = tmp_path / "r"
    proc = run_cli("scan", root, "--format", "coco", "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "coco" and summary["n_boxes"] == 2 and summary["classes"] == ["thing"]
    findings = pd.read_parquet(out / "findings.parquet")
    assert sorted(zip(findings["image_id"], findings["check"])) == [
        ("photos/set1/0.jpg", "box_outside_image"), ("photos/set1/2.jpg", "no_boxes")]
    images = pd.read_parquet(out / "images.parquet").set_index("image_id")
    assert images["n_boxes"].to_dict() == {"photos/set1/0.jpg": 1, "photos/set1/1.jpg": 1, "photos/set1/2.jpg": 0}


def test_manifest_option(tmp_path, textured):
    root = tmp_path / "ds"
    (root / "pics").mkdir(parents=True)
    for k in range(3):
        textured(k, (40, 30)).save(root / "pics" / f"{k}.jpg")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,split,source\npics/0.jpg,a,train,web\npics/1.jpg,b,train,web\n"
                        "pics/2.jpg,a,valid,cam\npics/9.jpg,b,train,web\n")
    out = tmp_path / "r"
    proc = run_cli("scan", root, "--format", "csv", "--manifest", manifest, "--out", out)
    assert proc.returncode == 0, proc.stderr
    images = pd.read_parquet(out / "images.parquet").set_index("image_id")
    assert images[["label", "split", "source"]].to_dict("index") == {
        "pics/0.jpg": {"label": "a", "split": "train", "source": "web"},
        "pics/1.jpg": {"label": "b", "split": "train", "source": "web"},
        "pics/2.jpg": {"label": "a", "split": "val", "source": "cam"},
        "pics/9.jpg": {"label": "b", "split": "train", "source": "web"}}
    findings = pd.read_parquet(out / "findings.parquet")
    assert ("pics/9.jpg", "missing_file") in set(zip(findings["image_id"], findings["check"]))


def test_model_side_errors_are_input_errors_exit_2(capsys):
    """A model that cannot be loaded, a bad preprocessing file or predictions file is bad input (exit 2, one
    line), wherever the model wing keeps those errors."""
    import argparse

    from inspect_core.cli import EXIT, input_errors, run_guarded
    from inspect_core.model.models import ModelLoadError
    from inspect_core.model.preprocess import PreprocessError
    from inspect_core.model.predictions import PredictionsError

    for error in (ModelLoadError, PreprocessError, PredictionsError):
        assert issubclass(error, input_errors())

        def fail(args, error=error):
            raise error("model.pt: not a model; give a TorchScript file")
        assert run_guarded("score", fail, argparse.Namespace(), []) == EXIT["input_error"]
        assert capsys.readouterr().err.strip() == "inspect_core score: error: model.pt: not a model; give a " \
                                                  "TorchScript file"
