"""tasks/: the task seam. A second task registered from a test goes through the batch pipeline and ``triage()``
with no edit there: the pipeline hands it the model's raw outputs, triage() its scores, and save() writes its
issues."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inspect_core.model import tasks
from inspect_core.model.models import load_model
from inspect_core.model.tasks import LabelFindings, Metrics, SanityFindings, Task, TaskScores, get_task
from inspect_core.model.triage import triage
from model_support import MODEL_DIR, SAMPLE, sample_dataset, sample_spec


class TopScore:
    """A toy task: per image, the largest raw output is its 'score'; the issues are the lowest scores."""
    name = "top_score"

    def __init__(self):
        self.outputs_seen = None

    def from_outputs(self, images, outputs, class_names, errors):
        self.outputs_seen = np.array(outputs)
        finite = np.isfinite(outputs).all(axis=1)
        best = np.where(finite, np.nan_to_num(outputs, nan=-np.inf).max(axis=1), np.nan)
        table = pd.DataFrame({"image_id": images["image_id"].astype(str).to_numpy(), "label": images["label"],
                              "split": images["split"], "score": best,
                              "error": pd.array([e or None for e in errors], dtype="string")})
        return TaskScores(table, np.asarray(outputs, dtype=np.float32), [], [f"{len(table)} images read by {self.name}"])

    def from_predictions(self, path, images, **options):
        raise NotImplementedError

    def out_of_fold(self, paths, images, scores, **options):
        raise NotImplementedError

    def label_issues(self, scores, *, trained_on=None, probe=False, oof=None):
        issues = scores.table.sort_values("score", kind="stable").reset_index(drop=True)
        return LabelFindings(issues, pd.DataFrame({"finding": []}), ["lowest score first"])

    def metrics(self, scores, issues):
        return Metrics({"n_scored": int(scores.table["error"].isna().sum())}, pd.DataFrame(), pd.DataFrame())

    def sanity(self, scores):
        return SanityFindings([], pd.DataFrame(columns=["level", "verdict"]), [])

    def listed_issues(self, issues):
        return issues.head(5)


@pytest.fixture()
def top_score(monkeypatch):
    task = TopScore()
    monkeypatch.setitem(tasks.TASKS, task.name, lambda: task)
    return task


def test_classification_is_registered_and_satisfies_the_protocol():
    task = get_task("classification")
    assert isinstance(task, Task) and task.name == "classification"
    assert isinstance(get_task(task), Task) and get_task(task) is task
    with pytest.raises(ValueError, match="unknown model task 'segmentation'.*classification"):
        get_task("segmentation")


def test_a_second_task_needs_no_edit_of_the_pipeline_or_triage(top_score, tmp_path):
    dataset = sample_dataset()
    model = load_model(MODEL_DIR / "model.pt2", sample_spec())
    found = triage(dataset.images, root=SAMPLE, model=model, task="top_score", scoring_options={"workers": 0})
    assert isinstance(top_score, Task) and found.task == "top_score"
    table = found.scores.table
    assert list(table.columns) == ["image_id", "label", "split", "score", "error"] and len(table) == len(dataset.images)
    # the pipeline handed the task the raw outputs: the same logits the classification task turns into probabilities
    assert np.array_equal(top_score.outputs_seen, found.scores.logits, equal_nan=True)
    scored = table["error"].isna()
    assert found.headline == {"n_scored": int(scored.sum())}
    assert found.issues["score"].head(int(scored.sum())).is_monotonic_increasing
    assert "images read by top_score" in " ".join(found.scores.notes) and found.label_notes == ["lowest score first"]
    assert found.embedding is not None                # the embeddings are the pipeline's, not the task's
    written = {p.name for p in found.save(tmp_path / "out")}
    assert {"scores.parquet", "label_issues.csv", "sanity.json"} <= written
    assert len(pd.read_csv(tmp_path / "out" / "label_issues.csv")) == 5


def test_registering_a_taken_name_is_an_error(monkeypatch):
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))
    tasks.register_task("top_score", TopScore)
    tasks.register_task("top_score", TopScore)                  # the same again: fine
    assert get_task("top_score").name == "top_score"
    with pytest.raises(ValueError, match="already registered"):
        tasks.register_task("classification", TopScore)
