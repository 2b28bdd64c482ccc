"""inspect_core.suite.compare: per slice the accuracy of both models and the difference; flipped images ranked."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inspect_core.suite.compare import RIGHT_TO_WRONG, WRONG_TO_RIGHT, compare
from inspect_core.suite.metrics import ScoreArrays
from inspect_core.suite.runner import Evaluation
from inspect_core.suite.slices import SliceData
from inspect_core.suite.spec import parse_suite


def arrays(labels, preds, right_p):
    labels, preds = np.asarray(labels), np.asarray(preds)
    probs = np.full((len(labels), 2), 0.0)
    probs[np.arange(len(labels)), preds] = right_p
    probs[np.arange(len(labels)), 1 - preds] = 1 - np.asarray(right_p)
    return ScoreArrays(["a", "b"], labels, preds, probs, -np.log(probs[np.arange(len(labels)), labels]))


def test_slices_and_flips_by_hand():
    images = pd.DataFrame({"image_id": list("pqrstu"), "label": ["a", "a", "a", "b", "b", "b"]})
    labels = [0, 0, 0, 1, 1, 1]
    base = arrays(labels, [0, 0, 0, 0, 1, 1], [0.9, 0.8, 0.7, 0.6, 0.9, 0.9])    # wrong on s
    cur = arrays(labels, [0, 1, 1, 1, 1, 1], [0.9, 0.6, 0.9, 0.8, 0.9, 0.9])     # wrong on q, r; right on s
    ev = Evaluation(data=SliceData(images), scores=cur, score_columns=None, baseline=base, baseline_columns=None)
    suite = parse_suite("slices:\n  as: {where: {label: a}}\ntests:\n  - {name: t, metric: accuracy, min: 0}\n")
    c = compare(suite, ev)
    table = c.slices.set_index("slice")
    assert table.loc["all", "baseline"] == pytest.approx(5 / 6) and table.loc["all", "current"] == pytest.approx(4 / 6)
    assert table.loc["as", "difference"] == pytest.approx(1 / 3 - 1)
    # r went right -> wrong with loss -log(0.7) -> -log(0.1) (the larger rise), q -log(0.8) -> -log(0.4)
    assert list(c.flips["image_id"]) == ["r", "q", "s"]
    assert list(c.flips["change"]) == [RIGHT_TO_WRONG, RIGHT_TO_WRONG, WRONG_TO_RIGHT]
    assert c.flips.loc[0, "loss_change"] == pytest.approx(np.log(0.7) - np.log(0.1))
    assert (c.flips.loc[0, "pred_baseline"], c.flips.loc[0, "pred_current"]) == ("a", "b")
