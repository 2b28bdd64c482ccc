"""The K-fold linear probe (inspect_core/model/probe.py): out-of-fold by construction, useful on separable data."""
from __future__ import annotations

import numpy as np
import pytest

from inspect_core.model.probe import PROBE_DEFAULTS, out_of_fold_probs, stratified_folds


def _clusters(n_per_class: int = 200, n_classes: int = 3, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    emb = centres[labels] + rng.normal(0, 1, (len(labels), dim))
    return emb.astype(np.float32), labels


def test_folds_are_stratified_and_leave_unlabelled_rows_out():
    labels = np.array([0] * 10 + [1] * 7 + [-1] * 3)
    folds = stratified_folds(labels, 5, seed=1)
    assert (folds[labels < 0] == -1).all()
    for c in (0, 1):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1          # each class spread evenly over the folds
    assert (stratified_folds(labels, 5, seed=1) == folds).all()


def test_an_images_own_label_cannot_reach_its_probability():
    emb, labels = _clusters()
    folds = stratified_folds(labels, 5)
    before = out_of_fold_probs(emb, labels, 3, folds=folds)
    flipped = labels.copy()
    i = 17
    flipped[i] = 2                                        # its label changes; its fold does not
    after = out_of_fold_probs(emb, flipped, 3, folds=folds)
    np.testing.assert_array_equal(after.probs[i], before.probs[i])
    # the test can fail: the label did reach the probes of the other folds, so their rows moved
    others = folds != folds[i]
    assert np.abs(after.probs[others] - before.probs[others]).max() > 1e-6


def test_flipped_labels_get_a_low_out_of_fold_probability():
    emb, labels = _clusters(seed=3)
    rng = np.random.default_rng(0)
    flip = rng.choice(len(labels), 30, replace=False)
    given = labels.copy()
    given[flip] = (labels[flip] + 1) % 3
    res = out_of_fold_probs(emb, given, 3)
    p_given = res.probs[np.arange(len(given)), given]
    assert (p_given[flip] < 0.5).mean() >= 0.9
    clean = np.setdiff1d(np.arange(len(given)), flip)
    assert (p_given[clean] > 0.5).mean() >= 0.95
    assert 0.85 < res.accuracy < 0.97                    # the flips count as misses: about 1 - 30/600
    assert "5-fold linear probe" in res.note and "trained on the training split" in res.note


def test_missing_embeddings_and_unlabelled_rows():
    emb, labels = _clusters(n_per_class=50)
    emb[3] = np.nan
    labels = labels.copy()
    labels[5] = -1
    res = out_of_fold_probs(emb, labels, 3)
    assert np.isnan(res.probs[3]).all() and res.fold[3] == -1
    assert np.isfinite(res.probs[5]).all() and res.fold[5] == -1      # scored by a probe that never saw it
    np.testing.assert_allclose(res.probs[np.isfinite(res.probs).all(1)].sum(1), 1, atol=1e-5)
    empty = out_of_fold_probs(np.zeros((0, 4), np.float32), np.zeros(0, int), 3)
    assert empty.probs.shape == (0, 3) and "no probe" in empty.note


def test_options_are_checked():
    emb, labels = _clusters(n_per_class=20)
    with pytest.raises(ValueError, match="unknown probe option"):
        out_of_fold_probs(emb, labels, 3, n_fold=3)
    with pytest.raises(ValueError, match="at least 2"):
        out_of_fold_probs(emb, labels, 3, n_folds=1)
    assert set(PROBE_DEFAULTS) >= {"n_folds", "dims", "max_train_rows"}


def _sample_predictions(tmp_path):
    """The sample model's probabilities for sample_data as a predictions CSV (page_support's helper)."""
    from inspect_core.loaders import load_dataset
    from page_support import SAMPLE, write_sample_predictions
    images = load_dataset(SAMPLE).images
    path = tmp_path / "pred.csv"
    write_sample_predictions(images, path)
    return SAMPLE, images, path


def test_cli_ranks_the_training_split_apart_and_reads_out_of_fold_files(tmp_path, capsys):
    import pandas as pd

    from inspect_core.cli import main
    sample, images, pred = _sample_predictions(tmp_path)
    assert main(["score", str(sample), "--predictions", str(pred), "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    n_train = int((images["split"] == "train").sum() - images.loc[images["split"] == "train", "label"].isna().sum())
    assert "in-sample (the model was trained on the split(s) train)" in text and "ranked apart" in text
    listed = pd.read_csv(tmp_path / "a" / "label_issues.csv")
    assert set(listed.loc[listed["split"] == "train", "in_sample"]) == {True}
    assert set(listed.loc[listed["split"] != "train", "in_sample"]) == {False}
    # the user's own cross-validated predictions, one file per fold: read, merged, used for the training split
    frame = pd.read_csv(pred)
    half = len(frame) // 2
    frame.iloc[:half].to_csv(tmp_path / "fold0.csv", index=False)
    frame.iloc[half:].to_csv(tmp_path / "fold1.csv", index=False)
    assert main(["score", str(sample), "--predictions", str(pred), "--out", str(tmp_path / "b"),
                 "--oof-predictions", str(tmp_path / "fold0.csv"), "--oof-predictions", str(tmp_path / "fold1.csv")]) == 0
    text = capsys.readouterr().out
    assert "from your out-of-fold predictions" in text
    listed = pd.read_csv(tmp_path / "b" / "label_issues.csv")
    assert set(listed.loc[listed["in_sample"], "probabilities"]) == {"out-of-fold"}
    assert f"{n_train:,} of them have one" in text or f"{n_train - 1:,} of them have one" in text
    # --trained-on none: nothing in-sample
    assert main(["score", str(sample), "--predictions", str(pred), "--out", str(tmp_path / "c"),
                 "--trained-on", "none"]) == 0
    assert "in-sample" not in capsys.readouterr().out.split("label issues:")[1].split("\n")[1]
    assert not pd.read_csv(tmp_path / "c" / "label_issues.csv")["in_sample"].any()
    # --probe without embeddings (a predictions file) says so
    assert main(["score", str(sample), "--predictions", str(pred), "--out", str(tmp_path / "d"), "--probe"]) == 0
    assert "the model gave no embeddings for a probe" in capsys.readouterr().out


def test_cli_probe_gives_out_of_fold_flags_for_the_training_split(tmp_path, capsys):
    import pandas as pd

    from inspect_core.cli import main
    from page_support import SAMPLE
    model = SAMPLE / "model" / "model.pt2"
    assert main(["score", str(SAMPLE), "--model", str(model), "--out", str(tmp_path / "o"), "--probe",
                 "--workers", "0", "--workspace", str(tmp_path / "ws")]) == 0
    text = capsys.readouterr().out
    assert "5-fold linear probe on the model's embeddings" in text
    listed = pd.read_parquet(tmp_path / "o" / "label_issues.parquet")
    assert set(listed.loc[listed["in_sample"], "probabilities"]) == {"out-of-fold"}
    # the planted mislabels of the training split are found through the probe
    planted = pd.read_csv(SAMPLE / "PLANTED.csv")
    wrong = set(planted.loc[planted["check"] == "mislabeled", "image_id"])
    train_wrong = {i for i in wrong if i.startswith("train/")}
    flagged = set(listed.loc[listed["cl_issue"] & listed["in_sample"], "image_id"])
    assert train_wrong and len(train_wrong & flagged) >= len(train_wrong) // 2


@pytest.mark.usefixtures("module_cache")
def test_the_page_ranks_the_training_split_apart_and_offers_the_probe(sample_scan):
    from page_support import SAMPLE, open_page, texts
    at = open_page("pages/5_Model_triage.py")
    at.text_input(key="di_mt_model").set_value(str(SAMPLE / "model" / "model.pt2")).run()
    at.button(key="di_mt_score").click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="di_mt_trained_on").value == ["train"]
    shown = texts(at).replace("\\", "")
    assert "in-sample (the model was trained on the split(s) train)" in shown and "memorised wrong label" in shown
    issues = at.session_state["di_mt_result"]["issues"]
    assert set(issues.loc[issues["split"] == "train", "in_sample"]) == {True}
    at.toggle(key="di_mt_probe").set_value(True).run()
    assert not at.exception
    shown = texts(at).replace("\\", "")
    assert "5-fold linear probe on the model's embeddings" in shown
    issues = at.session_state["di_mt_result"]["issues"]
    assert set(issues.loc[issues["in_sample"], "probabilities"]) == {"out-of-fold"}
    # nothing trained on: no in-sample rows, the probe toggle is off-limits
    at.multiselect(key="di_mt_trained_on").set_value([]).run()
    issues = at.session_state["di_mt_result"]["issues"]
    assert not issues["in_sample"].any()
