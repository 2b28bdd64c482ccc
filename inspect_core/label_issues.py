"""Rank likely label errors from a model's out-of-sample-ish probabilities.

Two rankings, each with a suggested label:
- by loss: cross-entropy of the given label (largest first); suggestion = the predicted class.
- confident learning (Northcutt et al., "Confident Learning", JAIR 2021), written here from the paper:
  per-class thresholds t_j = mean p(j | x) over examples GIVEN label j; an example counts toward the
  confident joint C[given, j] for the class j with the largest p among those with p_j >= t_j (up to
  a relative AT_THRESHOLD_TOL = 1e-6, so float32 rounding of a probability equal to the threshold does not drop it);
  the joint is calibrated so each row sums to that class's count n_i (C[i, j] * n_i / sum_j C[i, j]) and
  rounded row by row keeping the row totals (largest remainder, in exact integer arithmetic); then for every
  off-diagonal cell (i, j) the C[i, j] examples given i with the largest margin p_j - p_i are flagged
  ("prune by noise rate"; equal margins: lower example index first); examples whose prediction equals the
  given label are not flagged.
  Rounding ties: the fractional parts of a calibrated row are multiples of 1 / sum_j C[i, j], so several cells
  often have exactly the same remainder (always when their counts are equal). Such ties carry no evidence
  from the joint; the spare example goes to the tied cell whose next example in line is least likely to carry
  its given label (lowest p_i, the paper's self-confidence), the diagonal ("keep") last, then the lower class
  index. Deterministic and independent of floating-point noise.
  (cleanlab implements the same paper but is AGPL; this is an independent implementation. On the bench
  scenarios, given the same integer counts, its flagged sets equal ours; the counts differ where exact ties
  are resolved differently (cleanlab's choice there follows floating-point rounding and sort order, so either
  is as faithful to the paper) and, rarely, where several classes clear their thresholds: the paper, and this
  module, then take the argmax among those classes only.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# p_j counts as reaching t_j when p_j >= t_j * (1 - AT_THRESHOLD_TOL): probabilities from float32 models carry
# ~1e-7 of relative rounding noise, so a value a few ulps below the (float64 mean) threshold is "at" it. Relative,
# so that a class the model almost never predicts (t_j near 0) is not cleared by every example.
AT_THRESHOLD_TOL = 1e-6


@dataclass
class ConfidentLearning:
    thresholds: np.ndarray          # (C,) per-class self-confidence thresholds
    confident_joint: np.ndarray     # (C, C) integer counts: rows given label, cols confidently-predicted class
    calibrated_joint: np.ndarray    # (C, C) float, rows sum to the class counts
    issue_mask: np.ndarray          # (N,) bool
    suggested: np.ndarray           # (N,) int, -1 where no suggestion
    margin: np.ndarray              # (N,) p[suggested] - p[given] (higher = more likely a label error)


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j = mean probability of class j over the examples whose given label is j (inf for unseen classes)."""
    n_classes = probs.shape[1]
    thresholds = np.full(n_classes, np.inf)
    for j in range(n_classes):
        rows = labels == j
        if rows.any():
            thresholds[j] = float(np.mean(probs[rows, j]))
    return thresholds


def confident_joint(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None):
    """(joint counts (C, C), confident class per example (-1 when none clears its threshold))."""
    n_classes = probs.shape[1]
    if thresholds is None:
        thresholds = per_class_thresholds(probs, labels)
    above = probs >= (thresholds * (1.0 - AT_THRESHOLD_TOL))[None, :]
    masked = np.where(above, probs, -np.inf)
    confident = masked.argmax(axis=1)
    confident[~above.any(axis=1)] = -1
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = (confident >= 0) & (labels >= 0)
    np.add.at(joint, (labels[ok], confident[ok]), 1)
    return joint, confident


def calibrate_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scale each row of the joint so it sums to the number of examples given that label."""
    n_classes = joint.shape[0]
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    row_sums = joint.sum(axis=1).astype(np.float64)
    scale = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    return joint * scale[:, None]


def round_calibrated_joint(joint: np.ndarray, counts: np.ndarray, tie_key: np.ndarray | None = None) -> np.ndarray:
    """Integer version of ``calibrate_joint``: row i of C * n_i / sum_j C[i, j] rounded by largest remainder so
    it sums to n_i exactly, computed in exact integer arithmetic.

    The fractional parts are multiples of 1 / sum_j C[i, j], so equal fractional parts (ties) are common, also
    between cells with different counts; in floating point such ties come out a few ulps apart and would be
    decided by rounding noise. Here they are exact, and the spare units go to the largest remainders, ties to
    the larger ``tie_key`` (same shape), then to the lower column index.
    """
    joint = np.asarray(joint, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    row_sums = joint.sum(axis=1)
    safe_sums = np.where(row_sums > 0, row_sums, 1)
    scaled = joint * counts[:, None]
    out = scaled // safe_sums[:, None]
    rem = scaled % safe_sums[:, None]
    if tie_key is None:
        tie_key = np.zeros(joint.shape)
    cols = np.arange(joint.shape[1])
    for i in np.flatnonzero(row_sums > 0):
        short = int(counts[i] - out[i].sum())
        if short > 0:
            out[i, np.lexsort((cols, -tie_key[i], -rem[i]))[:short]] += 1
    out[row_sums == 0] = 0
    return out


def find_issues_confident_learning(probs: np.ndarray, labels: np.ndarray, *,
                                   drop_if_prediction_agrees: bool = True) -> ConfidentLearning:
    """Flag likely label errors by confident learning with pruning by noise rate.

    ``labels`` are class indices, -1 for images without a (known) label (never flagged).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, n_classes = probs.shape
    valid = (labels >= 0) & np.isfinite(probs).all(axis=1)
    lab = np.where(valid, labels, -1)
    safe = np.where(valid[:, None], probs, 0.0)
    thresholds = per_class_thresholds(safe[valid], lab[valid])
    joint, _ = confident_joint(safe[valid], lab[valid], thresholds)
    calibrated = calibrate_joint(joint, lab[valid])
    issue = np.zeros(n, dtype=bool)
    suggested = np.full(n, -1, dtype=np.int64)
    counts = np.bincount(lab[valid], minlength=n_classes)
    floor = (joint * counts[:, None]) // np.maximum(joint.sum(axis=1), 1)[:, None]
    # per given class i: the margins p_j - p_i of its examples, ranked within each column j (0 = largest
    # margin, ties: lower example index first). Made one class at a time and dropped at once: all classes'
    # (n_i, C) arrays together would take 16 bytes x N x C (0.4 GB at 50,000 x 1,000).
    def ranked(idx: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        margins = safe[idx] - safe[idx, i][:, None]                     # (n_i, C)
        return margins, np.argsort(-margins, axis=0, kind="stable")

    members = [np.flatnonzero(lab == i) for i in range(n_classes)]
    tie_key = np.full((n_classes, n_classes), -np.inf)
    cols = np.arange(n_classes)
    for i, idx in enumerate(members):
        if idx.size == 0:
            continue
        _, order = ranked(idx, i)
        # rounding tie between cells (i, j): the spare unit goes to the cell whose next example in line (rank
        # floor[i, j]) is least likely to carry its given label i (lowest p_i); the diagonal ("keep") comes last
        nxt = idx[order[np.minimum(floor[i], idx.size - 1), cols]]
        key = np.where(floor[i] < idx.size, -safe[nxt, i], -np.inf)
        key[i] = -np.inf
        tie_key[i] = key
    counts_to_prune = round_calibrated_joint(joint, counts, tie_key)
    for i, idx in enumerate(members):
        k = np.clip(counts_to_prune[i], 0, idx.size)
        k[i] = 0
        if idx.size == 0 or not k.any():
            continue
        margins, order = ranked(idx, i)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(idx.size)[:, None], axis=0)
        pruned = rank < k[None, :]                                       # (n_i, C): flagged by cell (i, j)
        cand = np.where(pruned, margins, -np.inf)
        hit = pruned.any(axis=1)
        issue[idx[hit]] = True
        suggested[idx[hit]] = cand[hit].argmax(axis=1)                 # the cell with the largest margin
    if drop_if_prediction_agrees:
        agree = valid & (safe.argmax(axis=1) == lab)
        issue &= ~agree
    # suggestion for every labelled example: the most likely other class
    others = safe.copy()
    others[np.arange(n), np.clip(lab, 0, None)] = -np.inf
    fallback = others.argmax(axis=1)
    no_sugg = valid & (suggested < 0)
    suggested[no_sugg] = fallback[no_sugg]
    margin = np.where(valid, safe[np.arange(n), np.clip(suggested, 0, None)] - safe[np.arange(n), np.clip(lab, 0, None)],
                      np.nan)
    issue &= valid
    return ConfidentLearning(thresholds=thresholds, confident_joint=joint, calibrated_joint=calibrated,
                             issue_mask=issue, suggested=np.where(valid, suggested, -1), margin=margin)


def rank_label_issues(table: pd.DataFrame, probs: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Both rankings for a scores table (from ``scoring.build_table``), one row per labelled, scored image.

    Columns: image_id, split, given_label, pred_label, suggested_label (confident-learning suggestion,
    else the prediction), loss, self_confidence, confidence, loss_rank (1 = worst), cl_issue, cl_margin,
    cl_rank (1 = most likely error among flagged; <NA> when not flagged). Sorted by loss_rank.
    """
    labels = table["label_index"].to_numpy(dtype=np.int64)
    cl = find_issues_confident_learning(probs, labels)
    ok = (labels >= 0) & np.isfinite(table["loss"].to_numpy(dtype=np.float64))
    out = pd.DataFrame({
        "image_id": table["image_id"].to_numpy(),
        "split": table["split"].to_numpy() if "split" in table else pd.NA,
        "given_label": table["label"].to_numpy(),
        "pred_label": table["pred_label"].to_numpy(),
        "suggested_label": [class_names[s] if s >= 0 else None for s in cl.suggested],
        "loss": table["loss"].to_numpy(dtype=np.float64),
        "self_confidence": table["self_confidence"].to_numpy(dtype=np.float64),
        "confidence": table["confidence"].to_numpy(dtype=np.float64),
        "cl_issue": cl.issue_mask,
        "cl_margin": cl.margin,
    })[ok].copy()
    for col in ("image_id", "split", "given_label", "pred_label", "suggested_label"):
        out[col] = out[col].astype("string")
    out = out.sort_values(["loss", "image_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.insert(0, "loss_rank", np.arange(1, len(out) + 1))
    flagged = out[out["cl_issue"]].sort_values(["cl_margin", "loss"], ascending=[False, False], kind="stable")
    out["cl_rank"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out.loc[flagged.index, "cl_rank"] = np.arange(1, len(flagged) + 1)
    return out


def recall_at_k(ranked_ids, planted_ids, k: int) -> float:
    """Share of planted ids found in the first k of a ranked list."""
    planted = set(planted_ids)
    if not planted:
        return float("nan")
    top = set(list(ranked_ids)[:k])
    return len(planted & top) / len(planted)
