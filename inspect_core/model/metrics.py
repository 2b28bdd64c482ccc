"""Summaries of a classification scores table: confusion matrix, per-class metrics, headline figures."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def confusion_matrix(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Counts: rows = given label, columns = predicted class (scored, labelled images only)."""
    names = list(class_names)
    ok = (table["label_index"] >= 0) & (table["pred_index"] >= 0)
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(counts, (table.loc[ok, "label_index"].to_numpy(dtype=np.int64),
                       table.loc[ok, "pred_index"].to_numpy(dtype=np.int64)), 1)
    frame = pd.DataFrame(counts, index=pd.Index(names, name="given"), columns=pd.Index(names, name="predicted"))
    return frame


def per_class_metrics(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Per given class: n_images, accuracy (recall), precision, mean_loss, median_loss, n_errors."""
    names = list(class_names)
    n_classes = len(names)
    y_all = table["label_index"].to_numpy(dtype=np.int64)
    p_all = table["pred_index"].to_numpy(dtype=np.int64)
    ok = (y_all >= 0) & (p_all >= 0)
    y, p = y_all[ok], p_all[ok]
    loss = pd.Series(table["loss"].to_numpy(dtype=np.float64)[ok])
    n_given = np.bincount(y, minlength=n_classes)[:n_classes]
    n_predicted = np.bincount(p, minlength=n_classes)[:n_classes]
    n_right = np.bincount(y[p == y], minlength=n_classes)[:n_classes]
    by_class = loss.groupby(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            "class": names, "n_images": n_given.astype(np.int64),
            "accuracy": np.where(n_given > 0, n_right / n_given, np.nan),
            "precision": np.where(n_predicted > 0, n_right / n_predicted, np.nan),
            "mean_loss": by_class.mean().reindex(range(n_classes)).to_numpy(dtype=np.float64),
            "median_loss": by_class.median().reindex(range(n_classes)).to_numpy(dtype=np.float64),
            "n_errors": (n_given - n_right).astype(np.int64)})


def headline(table: pd.DataFrame, issues: pd.DataFrame) -> dict:
    """The headline figures: images scored and in error, labelled ones, accuracy and mean loss over the labelled
    scored images (None without any), and the confident-learning flags among ``issues``."""
    scored = table["error"].isna().to_numpy()
    labelled = scored & (table["label_index"].to_numpy() >= 0)
    return {"n_scored": int(scored.sum()), "n_errors": int((~scored).sum()),
            "n_labelled": int(labelled.sum()),
            "accuracy": float(table["correct"].to_numpy(dtype=float, na_value=np.nan)[labelled].mean())
            if labelled.any() else None,
            "mean_loss": float(np.nanmean(table["loss"].to_numpy(dtype=float)[labelled]))
            if labelled.any() else None,
            "n_flagged": int(issues["cl_issue"].sum())}
