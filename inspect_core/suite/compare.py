"""Two scored models on the same scan, side by side: per slice the accuracy of each and the difference; the images
whose prediction went from right to wrong (and wrong to right), ranked by how much their loss moved. This is the
regression an aggregate hides: a slice that got much worse while the rest got a little better."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import metrics as M
from .runner import Evaluation
from .slices import SliceData, SliceError, SliceEvaluator
from .spec import ALL_SLICE, DEFAULTS, Suite

RIGHT_TO_WRONG, WRONG_TO_RIGHT = "right -> wrong", "wrong -> right"


@dataclass
class Comparison:
    slices: pd.DataFrame     # slice, n, baseline, current, difference (current - baseline), each an accuracy
    flips: pd.DataFrame      # image_id, label, split, change, pred_baseline, pred_current, loss_*, loss_change


def _accuracy(s: M.ScoreArrays, mask: np.ndarray) -> M.MetricValue:
    return M.accuracy(s, mask, {}, DEFAULTS)


def slice_table(suite: Suite, ev: Evaluation) -> pd.DataFrame:
    """Accuracy of the baseline and the current model on 'all' and on every slice of the suite."""
    cur = SliceEvaluator(suite, SliceData(ev.data.images, ev.score_columns, ev.data.findings, ev.data.decisions,
                                          suite.folder))
    base = SliceEvaluator(suite, SliceData(ev.data.images, ev.baseline_columns, ev.data.findings,
                                           ev.data.decisions, suite.folder))
    rows = []
    for name in [ALL_SLICE] + list(suite.slices):
        try:
            a, b = _accuracy(ev.baseline, base.mask(name)), _accuracy(ev.scores, cur.mask(name))
        except SliceError:
            continue
        rows.append({"slice": name, "n": b.n, "baseline": a.value, "current": b.value,
                     "difference": b.value - a.value})
    return pd.DataFrame(rows, columns=["slice", "n", "baseline", "current", "difference"])


def flips(ev: Evaluation) -> pd.DataFrame:
    """Images counted by both models whose prediction changed from right to wrong or wrong to right; right to
    wrong first, each group by the rise (fall) of its loss, largest first."""
    a, b = ev.baseline, ev.scores
    both = a.counted & b.counted
    right_a = a.pred_index == a.label_index
    right_b = b.pred_index == b.label_index
    moved = both & (right_a != right_b)
    idx = np.flatnonzero(moved)
    images = ev.data.images
    names_a, names_b = np.asarray(a.class_names, dtype=object), np.asarray(b.class_names, dtype=object)
    frame = pd.DataFrame({
        "image_id": images["image_id"].to_numpy()[idx],
        "label": images["label"].to_numpy()[idx] if "label" in images else None,
        "split": images["split"].to_numpy()[idx] if "split" in images else None,
        "change": np.where(right_a[idx], RIGHT_TO_WRONG, WRONG_TO_RIGHT),
        "pred_baseline": names_a[a.pred_index[idx]], "pred_current": names_b[b.pred_index[idx]],
        "loss_baseline": a.loss[idx], "loss_current": b.loss[idx],
        "loss_change": b.loss[idx] - a.loss[idx]})
    frame["_group"] = np.where(frame["change"] == RIGHT_TO_WRONG, 0, 1)
    frame["_order"] = np.where(frame["change"] == RIGHT_TO_WRONG, -frame["loss_change"], frame["loss_change"])
    frame = frame.sort_values(["_group", "_order", "image_id"], kind="stable")
    return frame.drop(columns=["_group", "_order"]).reset_index(drop=True)


def compare(suite: Suite, ev: Evaluation) -> Comparison:
    if ev.scores is None or ev.baseline is None:
        raise ValueError("a comparison needs the scores of two models (the current one and a baseline)")
    return Comparison(slices=slice_table(suite, ev), flips=flips(ev))


def slices_text(c: Comparison) -> str:
    lines = ["accuracy per slice (baseline -> current):"]
    w = max([len(s) for s in c.slices["slice"]] + [5])
    for r in c.slices.itertuples(index=False):
        lines.append(f"  {r.slice:<{w}}  n={r.n:<6} {r.baseline:7.3f} -> {r.current:7.3f}  ({r.difference:+.3f})")
    return "\n".join(lines)


def flips_text(c: Comparison, top: int = 10) -> str:
    f = c.flips
    n_rw = int((f["change"] == RIGHT_TO_WRONG).sum())
    lines = [f"{n_rw} images went right -> wrong, {len(f) - n_rw} wrong -> right; the first {top} of each:"]
    for change in (RIGHT_TO_WRONG, WRONG_TO_RIGHT):
        for r in f[f["change"] == change].head(top).itertuples(index=False):
            lines.append(f"  {change}  {r.image_id}  given {r.label}: {r.pred_baseline} -> {r.pred_current}  "
                         f"loss {r.loss_baseline:.3f} -> {r.loss_current:.3f}")
    return "\n".join(lines)
