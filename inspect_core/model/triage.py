"""Model triage in one call: score -> label issues -> metrics -> baselines -> sanity -> embedding findings -> save.

``triage(images, model=... | predictions=... | scores=...)`` returns a ``TriageResult``; ``TriageResult.save(dir)``
writes what the ``score`` command writes. The CLI (``cli_score``), the Model triage page (``ui.model_triage``) and
``bench/bench_triage.py`` all call it: this is the one place the chain exists. Every task-specific step goes
through the task object (``tasks.get_task``), so a second task needs no change here.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .table import ScoreResult
from .tasks import Task, get_task

# what ``TriageResult.save`` writes into its folder
OUTPUT_FILES = ("scores.parquet", "label_issues.csv", "label_issues.parquet", "embeddings.npy", "sanity.json")


@dataclass
class TriageResult:
    """Everything the triage found for one scored dataset.

    ``scores``: the per-example table with probabilities and embeddings (``table.ScoreResult``); ``issues`` ranked
    worst first, ``listed`` the rows of them written to label_issues.csv, ``model_problems`` classes the model has
    not learnt (not label errors), ``label_notes`` how in-sample rows were handled; ``headline`` / ``per_class`` /
    ``confusion`` the metrics; ``baselines`` and ``class_alarms`` the sanity checks; ``embedding`` the kNN
    findings ``(near-duplicate pairs, outliers)``, None without embeddings or before ``find_embedding_findings``.
    """
    scores: ScoreResult
    task: str
    issues: pd.DataFrame
    listed: pd.DataFrame
    model_problems: pd.DataFrame
    label_notes: list[str]
    label_options: tuple
    headline: dict
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    baselines: list
    baseline_records: list[dict]
    class_alarms: pd.DataFrame
    workspace: Path | None = None
    embedding: tuple | None = None
    embedding_checked: bool = False
    timings_s: dict = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        """The scores' notes (outputs, decoder, embeddings, labels the model lacks) and then the label notes."""
        return list(self.scores.notes) + list(self.label_notes)

    def find_embedding_findings(self):
        """The embedding kNN findings ``(pairs, outliers)``, computed once (and kept in the workspace beside a
        model's cached scores: ``cache.embedding_findings_cached``); None without embeddings."""
        if not self.embedding_checked:
            from .cache import embedding_findings_cached
            self.embedding = embedding_findings_cached(self.scores, self.workspace)
            self.embedding_checked = True
        return self.embedding

    def save(self, out: Path | str) -> list[Path]:
        """Write scores.parquet, label_issues.csv (+ .parquet), embeddings.npy (removed when there are none, so an
        earlier run's never sits beside these scores) and sanity.json into ``out``; returns the files written."""
        from ..export import safe_csv_bytes
        from .sanity import embedding_findings
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "scores.parquet", out / "label_issues.csv", out / "label_issues.parquet"]
        self.scores.to_frame().to_parquet(written[0], index=False)
        written[1].write_bytes(safe_csv_bytes(self.listed))       # labels and paths never run as formulas
        self.listed.to_parquet(written[2], index=False)
        dups, outliers = self.find_embedding_findings() or embedding_findings([], None)
        if self.scores.embeddings is not None:
            np.save(out / "embeddings.npy", self.scores.embeddings)
            written.append(out / "embeddings.npy")
        else:
            (out / "embeddings.npy").unlink(missing_ok=True)
        sanity = {"baselines": self.baseline_records,
                  "embedding_near_duplicates": dups.to_dict(orient="records"),
                  "embedding_outliers": outliers.to_dict(orient="records"),
                  "source": self.scores.source, "notes": self.scores.notes}
        (out / "sanity.json").write_text(json.dumps(sanity, indent=1, default=str) + "\n")
        written.append(out / "sanity.json")
        return written


def score(images: pd.DataFrame, *, root: Path | str | None = None, model=None, predictions: Path | str | None = None,
          task: str | Task = "classification", workspace: Path | str | None = None,
          predictions_options: dict | None = None, scoring_options: dict | None = None,
          progress: Callable[[int, int], None] | None = None, cancel=None) -> ScoreResult:
    """The scores of ``images``: from ``model`` (a ``models.LoadedModel``, run over the files under ``root``; cached
    in ``workspace``) or from a ``predictions`` file. ``scoring_options``: batch_size, workers, amp, embeddings,
    use_cache, decoder (``pipeline.score_dataset``); ``predictions_options``: class_names, kind, order,
    dataset_classes (the task's ``from_predictions``). ``progress`` / ``cancel`` reach the batch pipeline."""
    task = get_task(task)
    if (model is None) == (predictions is None):
        raise ValueError("give a model or a predictions file (one of them)")
    if predictions is not None:
        return task.from_predictions(predictions, images, **(predictions_options or {}))
    if root is None:
        raise ValueError("scoring with a model needs the dataset root (root=)")
    from .pipeline import score_dataset
    return score_dataset(model, root, images, workspace=workspace, progress=progress, cancel=cancel, task=task,
                         **(scoring_options or {}))


def triage(images: pd.DataFrame, *, root: Path | str | None = None, model=None,
           predictions: Path | str | None = None, scores: ScoreResult | None = None,
           task: str | Task = "classification", workspace: Path | str | None = None,
           trained_on: str | Sequence[str] | None = None, probe: bool = False,
           oof_predictions: Sequence[Path | str] = (), predictions_options: dict | None = None,
           scoring_options: dict | None = None, source: dict | None = None, embedding_findings: bool = True,
           progress: Callable[[int, int], None] | None = None, cancel=None) -> TriageResult:
    """Triage a model on a dataset: score (``scores`` already made, else ``model`` or ``predictions``: see
    ``score``), then the label issues (in-sample rows of the ``trained_on`` splits ranked apart, with out-of-fold
    flags from the linear ``probe`` or the user's ``oof_predictions`` files), the metrics, the baselines and
    per-class alarms, and the embedding kNN findings (``embedding_findings=False`` leaves them to
    ``TriageResult.find_embedding_findings``, for a caller that shows them later).

    ``images``: image_id, label, split (``Dataset.images``). ``source``: extra entries for ``scores.source``
    (e.g. the preprocessing file). Raises ``predictions.PredictionsError`` for an unusable predictions or
    out-of-fold file and ``pipeline.ScoringCancelled`` when ``cancel`` fires; a model failing on every image
    raises its error."""
    task_obj = get_task(task)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if scores is None:
        scores = score(images, root=root, model=model, predictions=predictions, task=task_obj, workspace=workspace,
                       predictions_options=predictions_options, scoring_options=scoring_options, progress=progress,
                       cancel=cancel)
        timings["score"] = time.perf_counter() - t0
    scores.source.update(source or {})
    if model is not None and getattr(model, "form_reason", None):
        scores.source["model_form"] = f"{model.kind} ({model.form_reason})"
    t0 = time.perf_counter()
    oof = None
    if oof_predictions:
        dataset_classes = (predictions_options or {}).get("dataset_classes")
        oof = task_obj.out_of_fold(list(oof_predictions), images, scores, dataset_classes=dataset_classes)
    found = task_obj.label_issues(scores, trained_on=trained_on, probe=probe, oof=oof)
    timings["label_issues"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = task_obj.metrics(scores, found.issues)
    timings["metrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sanity = task_obj.sanity(scores)
    timings["sanity"] = time.perf_counter() - t0
    result = TriageResult(
        scores=scores, task=task_obj.name, issues=found.issues, listed=task_obj.listed_issues(found.issues),
        model_problems=found.model_problems, label_notes=list(found.notes), label_options=(trained_on, probe),
        headline=metrics.headline, per_class=metrics.per_class, confusion=metrics.confusion,
        baselines=sanity.baselines, baseline_records=sanity.records, class_alarms=sanity.class_alarms,
        workspace=Path(workspace) if workspace is not None else None, timings_s=timings)
    if embedding_findings:
        t0 = time.perf_counter()
        result.find_embedding_findings()
        timings["embedding_findings"] = time.perf_counter() - t0
    return result
