"""Single-label classification: the model gives one score per class (logits or probabilities) for each image, the
dataset one label. Per-example loss is the cross-entropy of the given label; issues are likely label errors
(confident learning, ``label_issues``), with in-sample rows ranked apart (``probe.label_triage``); metrics are the
confusion matrix and per-class accuracy; the sanity checks are the baselines and the per-class alarms.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import LabelFindings, Metrics, SanityFindings, TaskScores


class Classification:
    name = "classification"

    def from_outputs(self, images: pd.DataFrame, outputs: np.ndarray, class_names: Sequence[str],
                     errors: list) -> TaskScores:
        """Logits (or probabilities, for a model exported with its softmax) -> probabilities -> the scores table."""
        from ..table import build_table, model_probabilities, unknown_label_notes
        probs, prob_notes = model_probabilities(outputs, errors)
        target_notes = unknown_label_notes(images, class_names)
        return TaskScores(build_table(images, probs, class_names, errors), probs, prob_notes, target_notes)

    def from_predictions(self, path, images: pd.DataFrame, *, class_names: Sequence[str] | None = None,
                         kind: str = "auto", order: Sequence[str] | None = None,
                         dataset_classes: Sequence[str] | None = None):
        from ..predictions import score_predictions
        return score_predictions(path, images, class_names=class_names, kind=kind, order=order,
                                 dataset_classes=dataset_classes)

    def out_of_fold(self, paths: Sequence, images: pd.DataFrame, scores, *,
                    dataset_classes: Sequence[str] | None = None) -> np.ndarray:
        """The user's out-of-fold predictions files (one with a fold column, or one per fold) -> probabilities in
        the model's class order; a file with other classes, or in another order, is a PredictionsError."""
        from ..predictions import PredictionsError
        from ..probe import merge_out_of_fold
        parts = [self.from_predictions(f, images, class_names=scores.class_names, dataset_classes=dataset_classes)
                 for f in paths]
        for f, part in zip(paths, parts):
            if list(part.class_names) != list(scores.class_names):
                raise PredictionsError(f"{f}: its classes ({', '.join(part.class_names[:5])}) are not the model's "
                                       f"({', '.join(scores.class_names[:5])}) in the same order")
        return merge_out_of_fold([part.probs for part in parts])

    def label_issues(self, scores, *, trained_on=None, probe: bool = False, oof=None) -> LabelFindings:
        from ..probe import label_triage
        found = label_triage(scores, trained_on=trained_on, probe=probe, oof_probs=oof)
        return LabelFindings(found.issues, found.model_problems, found.notes)

    def metrics(self, scores, issues: pd.DataFrame) -> Metrics:
        from ..metrics import confusion_matrix, headline, per_class_metrics
        table = scores.table
        return Metrics(headline(table, issues), per_class_metrics(table, scores.class_names),
                       confusion_matrix(table, scores.class_names))

    def sanity(self, scores) -> SanityFindings:
        from ..sanity import baselines, baselines_frame, class_alarms
        base = baselines(scores.table, scores.class_names)
        return SanityFindings(base, class_alarms(scores.table, scores.class_names),
                              baselines_frame(base).to_dict(orient="records"))

    def listed_issues(self, issues: pd.DataFrame) -> pd.DataFrame:
        """Flagged by confident learning, or predicted as another class than the given label."""
        return issues[issues["cl_issue"] | (issues["pred_label"] != issues["given_label"])]
