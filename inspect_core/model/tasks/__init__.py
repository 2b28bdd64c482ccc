"""Model tasks: what turns a model's raw outputs and the dataset's targets into per-example loss, predictions,
metrics and issues. One module per task; ``TASKS`` names them and ``get_task`` returns one.

The batch pipeline (``pipeline.score_dataset``) and ``triage.triage`` call a task only through the methods of
``Task`` below, never a task's own code, so a new task (detection, regression, multi-label) is a new module here
plus its entry in ``TASKS`` (or ``register_task`` from outside) and its section of the Model triage page.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable
from collections.abc import Sequence

import numpy as np
import pandas as pd


class TaskScores(NamedTuple):
    """A task's reading of the raw outputs: the per-example table (``image_id``, ``label``, ``split``, ``error``
    plus the task's own columns, e.g. ``loss``, ``pred_label``), the per-example output matrix kept beside it (a
    classifier's probabilities), notes about the outputs, and notes about the targets."""
    table: pd.DataFrame
    values: np.ndarray
    output_notes: list[str]
    target_notes: list[str]


class LabelFindings(NamedTuple):
    """A task's issues: one row per example ranked worst first (``issues``), problems of the model rather than of
    the labels (``model_problems``, a ``finding`` column of sentences), and notes on how they were found."""
    issues: pd.DataFrame
    model_problems: pd.DataFrame
    notes: list[str]


class Metrics(NamedTuple):
    """Headline figures (a dict of numbers), a per-class table, and a confusion table (or an empty frame)."""
    headline: dict
    per_class: pd.DataFrame
    confusion: pd.DataFrame


class SanityFindings(NamedTuple):
    """Baselines the model must beat (a list of records; ``records`` gives them as JSON rows) and per-class
    alarms (a frame with ``level`` and ``verdict`` columns; empty when the task has none)."""
    baselines: list
    class_alarms: pd.DataFrame
    records: list[dict]


@runtime_checkable
class Task(Protocol):
    """One model task. ``scores`` arguments are ``table.ScoreResult`` objects made by ``from_outputs`` /
    ``from_predictions``."""

    name: str

    def from_outputs(self, images: pd.DataFrame, outputs: np.ndarray, class_names: Sequence[str],
                     errors: list) -> TaskScores:
        """Raw model outputs (one row per image of ``images``: image_id, label, split) -> the table. ``errors``
        (None or text per image) may be updated in place for outputs the task cannot use (NaN)."""

    def from_predictions(self, path, images: pd.DataFrame, **options: Any):
        """A predictions file (no model) -> ``ScoreResult``; raises ``predictions.PredictionsError``."""

    def out_of_fold(self, paths: Sequence, images: pd.DataFrame, scores, **options: Any) -> np.ndarray:
        """The user's cross-validated predictions files -> per-example values for ``label_issues``' oof."""

    def label_issues(self, scores, *, trained_on=None, probe: bool = False, oof=None) -> LabelFindings:
        """Issues of the targets (label errors), in-sample rows (``trained_on`` splits) ranked apart."""

    def metrics(self, scores, issues: pd.DataFrame) -> Metrics:
        """Headline, per-class and confusion figures."""

    def sanity(self, scores) -> SanityFindings:
        """Baselines and per-class alarms."""

    def listed_issues(self, issues: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``issues`` written to label_issues.csv."""


def _classification() -> Task:
    from .classification import Classification
    return Classification()


def _detection() -> Task:
    from .detection import Detection
    return Detection()


# name -> a function making the task (imported on first use: no task module is loaded until asked for)
TASKS: dict[str, Any] = {"classification": _classification, "detection": _detection}


def register_task(name: str, make) -> None:
    """Register a task under ``name``: ``make`` is a Task class or a function returning one. A name already taken
    by another task is an error (no silent replacement)."""
    if name in TASKS and TASKS[name] is not make:
        raise ValueError(f"a model task named {name!r} is already registered")
    TASKS[name] = make


def get_task(task: str | Task = "classification") -> Task:
    """The task object for a name in ``TASKS`` (a Task object is returned as it is)."""
    if not isinstance(task, str):
        return task
    try:
        make = TASKS[task]
    except KeyError:
        raise ValueError(f"unknown model task {task!r}; known: {', '.join(sorted(TASKS))}") from None
    return make()
