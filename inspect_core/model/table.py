"""The scores table of a single-label classifier: one row per image from its class probabilities.

Per image: cross-entropy loss of the given label, predicted class, confidence, margin, self-confidence (probability
of the given label), entropy (entropy_nats). ``ScoreResult`` holds that table with the probabilities and the
embeddings; ``model_probabilities`` turns a model's raw outputs into probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np
import pandas as pd

PROB_PREFIX = "prob_"


@dataclass
class ScoreResult:
    table: pd.DataFrame                 # one row per image (see build_table)
    probs: np.ndarray                   # (n_images, n_classes) float32, NaN rows for errors
    class_names: list[str]
    embeddings: np.ndarray | None = None   # (n_images, dim) float32, NaN rows for errors
    logits: np.ndarray | None = None
    source: dict = field(default_factory=dict)
    from_cache: bool = False
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def prob_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.probs, columns=[PROB_PREFIX + c for c in self.class_names])

    def to_frame(self) -> pd.DataFrame:
        """The table plus one ``prob_<class>`` column per class (what scores.parquet holds)."""
        return pd.concat([self.table.reset_index(drop=True), self.prob_frame()], axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax; rows with any NaN stay NaN."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.full(logits.shape, np.nan)
    ok = np.isfinite(logits).all(axis=1)
    if ok.any():
        z = logits[ok] - logits[ok].max(axis=1, keepdims=True)
        e = np.exp(z)
        out[ok] = e / e.sum(axis=1, keepdims=True)
    return out


OUTPUTS_ARE_PROBABILITIES = ("the model's outputs are already probabilities (every row in 0..1, summing to 1): used "
                             "as they are, not passed through another softmax")
NAN_OUTPUT = ("the model returned NaN or inf for this image: check the preprocessing's mean and std, and the model "
              "on this input")


def model_probabilities(logits: np.ndarray, errors: list) -> tuple[np.ndarray, list[str]]:
    """Probabilities from a model's outputs: a softmax, unless every finite row already is a probability
    distribution (a model exported with its final softmax). Rows with NaN/inf outputs get NAN_OUTPUT as their
    error (``errors`` is updated in place)."""
    logits = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(logits).all(axis=1)
    for i in np.flatnonzero(~finite):
        if not errors[i]:
            errors[i] = NAN_OUTPUT
    # with 2 classes a few logit rows can happen to lie on the simplex: ask for several rows there
    enough = finite.sum() >= (8 if logits.shape[1] == 2 else 1)
    if enough and logits.shape[1] >= 2 and looks_like_probabilities(logits[finite], tol=1e-3):
        probs = np.where(finite[:, None], np.clip(logits, 0.0, None), np.nan)
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32), [OUTPUTS_ARE_PROBABILITIES]
    return softmax(logits).astype(np.float32), []


def looks_like_probabilities(matrix: np.ndarray, tol: float = 5e-3) -> bool:
    """True when every finite row lies in [0, 1] and sums to 1 (within ``tol``); else treat as logits."""
    rows = matrix[np.isfinite(matrix).all(axis=1)]
    if rows.size == 0:
        return True
    if rows.min() < -1e-6 or rows.max() > 1 + 1e-6:
        return False
    return bool(np.all(np.abs(rows.sum(axis=1) - 1.0) <= tol))


def _as_text(values) -> pd.api.extensions.ExtensionArray:
    """A column as pandas strings: each value as ``str(value)``, missing values as <NA>. (A categorical column
    gives its categories' values: ``np.asarray`` alone would turn integer categories into floats.)"""
    objects = values.astype(object) if isinstance(values, pd.Series) else values
    return pd.array(np.asarray(objects, dtype=object), dtype="string")


def id_texts(values) -> list[str]:
    """image_ids as ``str(value)`` each (a missing id: "nan" / "<NA>" / "None", as ``str`` gives), in C loops."""
    objects = values.astype(object) if isinstance(values, pd.Series) else values
    return np.asarray(objects, dtype=object).astype(str).tolist()


def build_table(images: pd.DataFrame, probs: np.ndarray, class_names: Sequence[str],
                errors: Sequence[str | None] | None = None) -> pd.DataFrame:
    """Per-image metrics from probabilities. ``images`` has image_id, label, split (in the row order of probs)."""
    n, n_classes = probs.shape
    class_names = list(class_names)
    labels = _as_text(images["label"]) if "label" in images else pd.array([None] * n, dtype="string")
    splits = _as_text(images["split"]) if "split" in images else pd.array([None] * n, dtype="string")
    index = {c: i for i, c in enumerate(class_names)}            # a repeated name: its last position
    found = pd.Index(list(index)).get_indexer(labels)             # vectorised: 1,000,000 labels in ~0.1 s
    label_idx = np.where(found >= 0, np.asarray(list(index.values()), dtype=np.int64)[np.clip(found, 0, None)], -1)
    ok = np.isfinite(probs).all(axis=1)
    safe = np.where(ok[:, None], probs, 1.0 / max(n_classes, 1))
    pred = safe.argmax(axis=1)
    top2 = -np.sort(-safe, axis=1)[:, :2] if n_classes >= 2 else np.concatenate([safe, np.zeros((n, 1))], axis=1)
    confidence = top2[:, 0]
    margin = top2[:, 0] - top2[:, 1]
    eps = 1e-12
    entropy = -(safe * np.log(np.clip(safe, eps, 1.0))).sum(axis=1)
    has_label = label_idx >= 0
    self_conf = np.where(has_label, safe[np.arange(n), np.clip(label_idx, 0, None)], np.nan)
    loss = np.where(has_label, -np.log(np.clip(self_conf, eps, 1.0)), np.nan)
    # margin of the given label against the best other class (negative = model prefers another class)
    masked = safe.copy()
    masked[np.arange(n), np.clip(label_idx, 0, None)] = -np.inf
    best_other = masked.max(axis=1) if n_classes >= 2 else np.zeros(n)
    label_margin = np.where(has_label, self_conf - best_other, np.nan)
    err = list(errors) if errors is not None else [None] * n
    table = pd.DataFrame({
        "image_id": images["image_id"].astype("string").to_numpy(),
        "label": labels,
        "split": splits,
        "pred_label": pd.array(np.asarray(class_names, dtype=object)[pred], dtype="string"),
        "pred_index": pred.astype(np.int64),
        "label_index": label_idx,
        "confidence": confidence.astype(np.float64),
        "margin": margin.astype(np.float64),
        "self_confidence": self_conf.astype(np.float64),
        "label_margin": label_margin.astype(np.float64),
        "loss": loss.astype(np.float64),
        "entropy_nats": entropy.astype(np.float64),
        "correct": pd.arrays.BooleanArray(pred == label_idx, label_idx < 0),
        "error": pd.array(err, dtype="string"),
    })
    bad = ~ok
    if bad.any():
        for col in ("confidence", "margin", "self_confidence", "label_margin", "loss", "entropy_nats"):
            table.loc[bad, col] = np.nan
        table.loc[bad, "pred_label"] = pd.NA
        table.loc[bad, "pred_index"] = -1
        table.loc[bad, "correct"] = pd.NA
        missing_err = bad & table["error"].isna().to_numpy()
        table.loc[missing_err, "error"] = "no score"
    return table


def image_frame(images: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("image_id", "label", "split") if c in images.columns]
    frame = images[cols].copy().reset_index(drop=True)
    for c in ("label", "split"):
        if c not in frame:
            frame[c] = pd.NA
    return frame


def unknown_label_notes(frame: pd.DataFrame, class_names: Sequence[str]) -> list[str]:
    """A note when labelled images carry labels that are not among the model's classes (they get no loss)."""
    if "label" not in frame:
        return []
    labels = frame["label"].dropna().astype(str)
    unknown = labels[~labels.isin(set(map(str, class_names)))]
    if unknown.empty:
        return []
    names = unknown.value_counts().index.tolist()
    shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
    if len(unknown) == len(labels):
        return [f"none of the {len(labels)} labelled images has a label among the model's classes "
                f"({', '.join(map(str, list(class_names)[:6]))}); the dataset's labels are {shown}: check the class "
                "names (in the model's output order) in the preprocessing or the predictions file"]
    many = len(unknown) != 1
    return [f"{len(unknown)} labelled image{'s have labels' if many else ' has a label'} the model has no class for "
            f"({shown}): {'they are' if many else 'it is'} scored but get{'' if many else 's'} no loss"]

