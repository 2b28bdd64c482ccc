"""The per-class alarm of the sanity checks (issue 9): a class far below the others' accuracy turns the panel red
or amber with its numbers, a tiny class does not flap, and the CLI summary and the Model triage page say so."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from inspect_core.model import table as scores_table
from inspect_core.model.sanity import (
    CLASS_ALARM,
    baselines,
    batch_independence,
    class_alarms,
    embedding_findings,
    wilson_interval,
)
from inspect_core.model.table import build_table
from model_support import BNNet, MixNet, _synthetic

NAMES = ["a", "b", "c"]


def _unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _table(right_of: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """A scores table whose class k has n images, the first `right` predicted k and the rest predicted the next
    class: ``right_of = {"a": (right, n), ...}``."""
    labels, probs = [], []
    for k, name in enumerate(NAMES):
        right, n = right_of[name]
        for i in range(n):
            p = np.full(3, 0.05)
            p[k if i < right else (k + 1) % 3] = 0.9
            probs.append(p)
            labels.append(name)
    images = pd.DataFrame({"image_id": [f"i{j}" for j in range(len(labels))], "label": labels})
    return build_table(images, np.array(probs, dtype=np.float32), NAMES)


def test_wilson_interval_by_hand():
    # 0 of 6 at 95% (z = 1.95996): centre = (z^2 / 12) / (1 + z^2 / 6) = 0.19517 = half width -> [0, 0.39033]
    low, high = wilson_interval(np.array([0, 5]), np.array([6, 10]), 0.95)
    assert low[0] == 0.0 and high[0] == pytest.approx(0.39033, abs=1e-5)
    # 5 of 10: symmetric around 0.5, [0.23659, 0.76341]
    assert (low[1], high[1]) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))


def test_a_class_at_zero_accuracy_is_red_with_its_numbers():
    alarms = class_alarms(_table({"a": (45, 50), "b": (46, 50), "c": (0, 6)}), NAMES)
    assert alarms["class"].tolist() == ["c", "a", "b"] and alarms["level"].tolist() == ["red", "ok", "ok"]
    c = alarms.iloc[0]
    assert (c["n_images"], c["n_correct"], c["accuracy"]) == (6, 0, 0.0)
    assert c["other_classes_accuracy"] == pytest.approx(91 / 100) and c["chance_accuracy"] == pytest.approx(6 / 106)
    assert c["verdict"].startswith("class 'c': accuracy 0% (0 of 6; 95% interval 0%-39%) against 91% on the other "
                                   "classes' images; a guess by the class shares gets 5.7%: far below the others")


def test_amber_when_clearly_below_and_a_tiny_class_does_not_flap():
    # c: 20 of 40 -> interval 35%-65%, under 0.8 x 91% = 72.8% but not under half of it: amber
    assert class_alarms(_table({"a": (45, 50), "b": (46, 50), "c": (20, 40)}), NAMES)["level"].tolist() == \
        ["amber", "ok", "ok"]
    # c: 1 of 2 (50%) -> interval 9%-91%: too few images to say it is worse; no alarm
    assert set(class_alarms(_table({"a": (45, 50), "b": (46, 50), "c": (1, 2)}), NAMES)["level"]) == {"ok"}
    # thresholds are data: with the cuts at 0 nothing is ever flagged
    off = class_alarms(_table({"a": (45, 50), "b": (46, 50), "c": (0, 6)}), NAMES, {"red_ratio": 0, "amber_ratio": 0})
    assert set(off["level"]) == {"ok"} and CLASS_ALARM["red_ratio"] == 0.5


def test_cli_summary_prints_the_alarm_and_the_model_problem(tmp_path, capsys, sample_predictions):
    from inspect_core.cli_score import main
    from page_support import SAMPLE
    rc = main(["score", str(SAMPLE), "--predictions", str(sample_predictions), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "  per-class alarm (red): class 'hexagon': accuracy 0% (0 of 6; 95% interval 0%-39%)" in text
    assert "  model problem: the model predicts class 'hexagon' for 0 of 6 images labelled 'hexagon'" in text
    issues = pd.read_csv(tmp_path / "out" / "label_issues.csv")
    assert not issues.loc[issues["given_label"] == "hexagon", "cl_issue"].any()


@pytest.mark.usefixtures("module_cache")      # the app sees the module's scan of sample_data (conftest.py)
def test_model_triage_page_shows_the_alarm_and_the_model_problem(sample_scan, tmp_path):
    from page_support import open_on_predictions
    at, _ = open_on_predictions(sample_scan.dataset.images, tmp_path / "preds.csv")
    errors = [_unescaped(e.value) for e in at.error]
    warnings = [_unescaped(e.value) for e in at.warning]
    assert any(e.startswith("Per-class accuracy (red): class 'hexagon': accuracy 0% (0 of 6") for e in errors), errors
    assert any(w.startswith("The model predicts class 'hexagon' for 0 of 6 images labelled 'hexagon'")
               and "not label errors; its images are not flagged" in w for w in warnings), warnings
    # the flag count shown is that of the label-issue list, with no hexagon in it
    entry = at.session_state["di_mt_result"]
    flagged = entry["issues"][entry["issues"]["cl_issue"]]
    assert not (flagged["given_label"] == "hexagon").any()
    assert {m.label: m.value for m in at.metric}["Confident-learning flags"] == str(len(flagged))


@pytest.fixture(scope="module")
def sample_predictions(tmp_path_factory):
    """The sample model's probabilities on sample_data as a predictions CSV (scored once for the module)."""
    from inspect_core.loaders import load_dataset
    from page_support import SAMPLE, write_sample_predictions
    path = tmp_path_factory.mktemp("preds") / "preds.csv"
    write_sample_predictions(load_dataset(SAMPLE).images, path)
    return path


def test_baselines_detect_a_model_that_learnt_nothing():
    probs, given, _, _ = _synthetic(n=400, noise=0.0, seed=2)
    names = ["0", "1", "2", "3"]
    images = pd.DataFrame({"image_id": [str(i) for i in range(400)], "label": [str(g) for g in given],
                           "split": "train"})
    good = baselines(scores_table.build_table(images, probs.astype(np.float32), names), names)[0]
    assert good.ok and good.uniform_loss == pytest.approx(np.log(4))
    prior = np.bincount(given, minlength=4) / 400
    dumb = baselines(scores_table.build_table(images, np.tile(prior, (400, 1)).astype(np.float32), names), names)[0]
    verdicts = " ".join(dumb.verdicts)
    assert not dumb.ok and "class-prior baseline" in verdicts or "does not beat" in verdicts
    assert dumb.model_loss == pytest.approx(dumb.prior_loss, abs=1e-3)


def test_batch_independence_catches_train_mode_batchnorm_and_batch_mixing():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    net = BNNet()
    with torch.no_grad():
        net.bn.running_mean.fill_(0.3)
    net.eval()
    assert batch_independence(net, x).ok
    net.train()
    bad = batch_independence(net, x)
    assert not bad.ok and "train mode" in bad.detail
    mixed = batch_independence(MixNet(), x)
    assert not mixed.ok and "batch" in mixed.detail


def test_embedding_knn_finds_duplicates_and_outliers():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 4.0                           # three tight clusters
    emb = (centres[np.arange(60) % 3] + rng.normal(0, 0.3, (60, 8))).astype(np.float32)
    emb[10] = emb[3] * 1.0001                               # same direction: a duplicate for the model
    emb[20] = np.array([0, 0, 0, 0, 0, 3, -3, 3], dtype=np.float32)   # far from every cluster
    ids = [f"i{i}" for i in range(60)]
    dups, outliers = embedding_findings(ids, emb, k=5)
    assert {tuple(r) for r in dups[["image_id", "neighbour_id"]].itertuples(index=False)} == {("i3", "i10")}
    assert list(outliers["image_id"]) == ["i20"]
    none = embedding_findings(ids, None)
    assert none[0].empty and none[1].empty
