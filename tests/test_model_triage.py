"""triage.py: the one chain score -> label issues -> metrics -> baselines -> sanity -> embedding findings -> save,
on sample_data with its shipped model and with a predictions file; the CLI, the page and the bench give the same
numbers as ``triage()`` because they call it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspect_core.cli import main as cli_main
from inspect_core.model.models import load_model
from inspect_core.model.triage import OUTPUT_FILES, TriageResult, triage
from model_support import MODEL_DIR, REPO, SAMPLE, SHAPES, sample_dataset, sample_spec


@pytest.fixture(scope="module")
def dataset():
    return sample_dataset()


@pytest.fixture(scope="module")
def model_run(tmp_path_factory, dataset):
    """triage() with the shipped model (its scores cached in a workspace), and that workspace."""
    from inspect_core.workspace import workspace_dir
    ws = tmp_path_factory.mktemp("triage_ws")
    model = load_model(MODEL_DIR / "model.pt2", sample_spec())
    found = triage(dataset.images, root=SAMPLE, model=model, workspace=workspace_dir(SAMPLE, base=ws),
                   scoring_options={"workers": 0},
                   source={"preprocess_path": str(MODEL_DIR / "model.preprocess.json")})
    return found, ws


@pytest.fixture(scope="module")
def predictions_csv(tmp_path_factory, model_run):
    """The shipped model's probabilities as a predictions file (image_id, prob_<class>)."""
    path = tmp_path_factory.mktemp("preds") / "predictions.csv"
    scores = model_run[0].scores
    scores.to_frame()[["image_id"] + [f"prob_{c}" for c in scores.class_names]].dropna().to_csv(path, index=False)
    return path


def test_triage_with_the_shipped_model_fills_every_field(model_run, dataset):
    found, _ = model_run
    table = found.scores.table
    assert isinstance(found, TriageResult) and found.task == "classification"
    assert len(table) == len(dataset.images) and list(found.scores.class_names) == SHAPES
    # metrics agree with the per-image table
    labelled = table[table["error"].isna() & (table["label_index"] >= 0)]
    assert found.headline["n_scored"] + found.headline["n_errors"] == len(table)
    assert found.headline["n_errors"] == int(table["error"].notna().sum()) > 0         # the planted broken files
    assert found.headline["accuracy"] == pytest.approx(labelled["correct"].astype(bool).mean())
    assert found.headline["n_flagged"] == int(found.issues["cl_issue"].sum()) > 0
    assert int(found.confusion.to_numpy().sum()) == len(labelled)
    assert found.per_class["n_images"].tolist() == found.confusion.sum(axis=1).tolist()
    # issues in rank order; the listed rows are the flagged or mispredicted ones
    assert found.issues["loss_rank"].is_monotonic_increasing
    listed = found.issues["cl_issue"] | (found.issues["pred_label"] != found.issues["given_label"])
    assert found.listed["image_id"].tolist() == found.issues.loc[listed, "image_id"].tolist()
    # the train split is in-sample by default, ranked apart, and said so; hexagon is a model problem
    assert found.issues.loc[found.issues["split"] == "train", "in_sample"].all()
    assert any("in-sample" in n for n in found.label_notes) and found.label_options == (None, False)
    assert "hexagon" in " ".join(found.model_problems["finding"])
    # sanity and embeddings
    assert found.baselines and len(found.baseline_records) == len(found.baselines)
    assert set(found.class_alarms["class"]) == set(SHAPES)
    pairs, outliers = found.embedding
    assert found.scores.embeddings is not None and found.embedding_checked
    assert {"image_id"} <= set(outliers.columns)
    assert found.scores.source["model_form"].startswith("export (")
    assert found.notes[:len(found.scores.notes)] == found.scores.notes


def test_save_writes_what_the_cli_writes(model_run, tmp_path, capsys):
    """The CLI on the same workspace (so the same scores, from the cache) writes the same five files as save()."""
    found, ws = model_run
    mine = tmp_path / "mine"
    written = found.save(mine)
    assert sorted(p.name for p in written) == sorted(OUTPUT_FILES)
    cli_out = tmp_path / "cli"
    assert cli_main(["score", str(SAMPLE), "--model", str(MODEL_DIR / "model.pt2"), "--out", str(cli_out),
                     "--workspace", str(ws)]) == 0
    assert "(from cache)" in capsys.readouterr().out
    assert sorted(p.name for p in cli_out.iterdir()) == sorted(OUTPUT_FILES)
    assert (mine / "label_issues.csv").read_bytes() == (cli_out / "label_issues.csv").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(mine / "scores.parquet"), pd.read_parquet(cli_out / "scores.parquet"))
    assert np.array_equal(np.load(mine / "embeddings.npy"), np.load(cli_out / "embeddings.npy"), equal_nan=True)
    a, b = json.loads((mine / "sanity.json").read_text()), json.loads((cli_out / "sanity.json").read_text())
    assert a["baselines"] == b["baselines"] and a["embedding_outliers"] == b["embedding_outliers"]
    assert a["embedding_near_duplicates"] == b["embedding_near_duplicates"]
    assert a["source"] == b["source"]


def test_a_predictions_file_gives_the_same_numbers_in_triage_the_cli_and_the_page(predictions_csv, dataset,
                                                                                 tmp_path, capsys):
    found = triage(dataset.images, predictions=predictions_csv,
                   predictions_options={"dataset_classes": list(dataset.classes)})
    assert found.scores.source["kind"] == "predictions" and found.scores.embeddings is None
    assert found.embedding is None and found.embedding_checked
    found.save(tmp_path / "mine")
    assert not (tmp_path / "mine" / "embeddings.npy").exists()
    assert cli_main(["score", str(SAMPLE), "--predictions", str(predictions_csv), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    n_flag = int(found.issues["cl_issue"].sum()) - int((found.issues["cl_issue"] & found.issues["in_sample"]).sum())
    assert f"label issues: {n_flag} flagged by confident learning" in out
    for name in ("label_issues.csv", "sanity.json"):
        assert (tmp_path / "mine" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    # the page keeps what make_entry builds from triage(): the same figures
    from inspect_core.ui import model_triage as mt
    entry = mt.make_entry(found.scores, "k")
    assert entry["headline"] == found.headline
    pd.testing.assert_frame_equal(entry["per_class"], found.per_class)
    pd.testing.assert_frame_equal(entry["issues"], found.issues)
    as_page = triage(dataset.images, scores=found.scores, trained_on=["train"], embedding_findings=False)
    assert mt.make_entry(as_page, "k")["triage"] is as_page        # made with the page's default options: kept
    assert mt.make_entry(as_page, "k", ("train",), True)["triage"] is not as_page      # the probe asked: ranked again


def test_out_of_fold_files_reach_the_label_issues_and_a_mismatch_is_named(predictions_csv, dataset, tmp_path):
    frame = pd.read_csv(predictions_csv)
    plain = triage(dataset.images, predictions=predictions_csv,
                   predictions_options={"dataset_classes": list(dataset.classes)}, embedding_findings=False)
    with_oof = triage(dataset.images, scores=plain.scores, oof_predictions=[predictions_csv],
                      predictions_options={"dataset_classes": list(dataset.classes)}, embedding_findings=False)
    assert any("out-of-fold predictions" in n for n in with_oof.label_notes)
    swapped = frame.rename(columns={"prob_circle": "prob_oval"})
    swapped.to_csv(tmp_path / "other.csv", index=False)
    from inspect_core.model.predictions import PredictionsError
    with pytest.raises(PredictionsError, match="other.csv"):
        triage(dataset.images, scores=plain.scores, oof_predictions=[tmp_path / "other.csv"],
               predictions_options={"dataset_classes": list(dataset.classes)}, embedding_findings=False)


def test_triage_needs_one_source(dataset):
    with pytest.raises(ValueError, match="one of them"):
        triage(dataset.images)
    with pytest.raises(ValueError, match="root"):
        triage(dataset.images, model=object())


def test_embedding_findings_can_wait_until_asked_and_run_once(model_run, dataset, monkeypatch):
    import inspect_core.model.sanity as sanity
    calls = []
    real = sanity.embedding_findings
    monkeypatch.setattr(sanity, "embedding_findings", lambda *a, **k: calls.append(1) or real(*a, **k))
    later = triage(dataset.images, scores=model_run[0].scores, embedding_findings=False)
    assert later.embedding is None and not later.embedding_checked and not calls
    first = later.find_embedding_findings()
    assert later.find_embedding_findings() is first and len(calls) == 1     # no workspace: computed once, kept


def test_the_bench_imports_neither_streamlit_nor_the_ui_and_calls_triage():
    code = ("import sys; sys.path.insert(0, 'bench'); import bench_triage, inspect_core.model.triage as t; "
            "assert bench_triage.triage is t.triage and bench_triage.score is t.score; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'streamlit' or m.startswith('inspect_core.ui')); "
            "print(bad); assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_chain_is_written_once():
    """Only triage.py (and the task it calls) chains the steps: the CLI, the page helpers and the bench call
    triage() and none of the steps' own functions."""
    steps = ("label_triage(", "baselines(", "class_alarms(", "confusion_matrix(", "per_class_metrics(",
             "embedding_findings_cached(", "score_predictions(", "score_dataset(")
    for rel in ("inspect_core/cli_score.py", "inspect_core/ui/model_triage.py", "bench/bench_triage.py",
                "pages/5_Model_triage.py"):
        text = (REPO / rel).read_text()
        assert "triage(" in text or rel.startswith("pages/"), rel
        assert not [s for s in steps if s in text], (rel, [s for s in steps if s in text])
    assert "label_triage(" in Path(REPO / "inspect_core/model/tasks/classification.py").read_text()
