"""cli_score.py: the ``score`` command's outputs and its one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from inspect_core.model.preprocess import read_preprocess
from model_support import MODEL_DIR, REPO, SAMPLE, SHAPES, sample_dataset, sample_reference


@pytest.fixture(scope="module")
def dataset():
    return sample_dataset()


@pytest.fixture(scope="module")
def reference():
    return sample_reference()


def test_cli_refuses_unusable_paths_and_unknown_class_names_before_scoring(tmp_path, capsys):
    from inspect_core.cli_score import main
    model = str(MODEL_DIR / "model.ts.pt")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert main(["score", str(SAMPLE), "--model", model, "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "afile" in err and err.count("\n") == 1
    assert main(["score", str(SAMPLE), "--model", model, "--out", str(tmp_path / "o"),
                 "--workspace", str(SAMPLE / "ws")]) == 2
    err = capsys.readouterr().err
    assert "inside the dataset" in err and err.count("\n") == 1
    assert not (SAMPLE / "ws").exists()
    pre = read_preprocess(MODEL_DIR / "model.preprocess.json")
    shouting = tmp_path / "shout.preprocess.json"
    import dataclasses
    import json
    d = dataclasses.asdict(pre)
    d["class_names"] = [c.upper() for c in SHAPES]
    shouting.write_text(json.dumps(d))
    assert main(["score", str(SAMPLE), "--model", model, "--preprocess", str(shouting),
                 "--out", str(tmp_path / "o2"), "--no-cache", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "CIRCLE" in err and "circle" in err and err.count("\n") == 1


def test_cli_says_when_the_dataset_has_no_images(tmp_path, capsys):
    from inspect_core.cli_score import main
    (tmp_path / "data").mkdir()
    rc = main(["score", str(tmp_path / "data"), "--model", str(MODEL_DIR / "model.ts.pt"),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no images" in err and err.count("\n") == 1


def test_cli_names_its_preprocessing_drops_stale_embeddings_and_explains_unlabelled_data(tmp_path, capsys, dataset,
                                                                                       reference):
    import json

    from inspect_core.cli_score import main
    out = tmp_path / "o"
    assert main(["score", str(SAMPLE), "--model", str(MODEL_DIR / "model.ts.pt"), "--out", str(out),
                 "--workspace", str(tmp_path / "ws"), "--workers", "0"]) == 0
    text = capsys.readouterr().out
    assert f"preprocessing: {MODEL_DIR / 'model.preprocess.json'}" in text
    assert json.loads((out / "sanity.json").read_text())["source"]["preprocess_path"].endswith("model.preprocess.json")
    assert (out / "embeddings.npy").exists()
    _, good = reference
    good.to_csv(tmp_path / "p.csv", index=False)
    assert main(["score", str(SAMPLE), "--predictions", str(tmp_path / "p.csv"), "--out", str(out)]) == 0
    capsys.readouterr()
    assert not (out / "embeddings.npy").exists()                     # it belonged to the model run
    # a dataset with no labels at all (a folder of images): the summary says why there are no losses
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((SAMPLE / "train" / "circle").glob("*.jpg"))[:3]:
        (flat / p.name).write_bytes(p.read_bytes())
    assert main(["score", str(flat), "--model", str(MODEL_DIR / "model.ts.pt"), "--out", str(tmp_path / "o3"),
                 "--no-cache", "--workers", "0"]) == 0
    assert "no image has a label" in capsys.readouterr().out


def test_cli_says_when_split_folders_were_read_as_labels(tmp_path, capsys):
    from inspect_core.cli_score import main
    root = tmp_path / "data"
    for split in ("train", "valid"):
        for cls in ("circle", "square"):
            d = root / split / cls
            d.mkdir(parents=True)
            for p in sorted((SAMPLE / "train" / cls).glob("*.jpg"))[:2]:
                (d / p.name).write_bytes(p.read_bytes())
    (root / "previews").mkdir()
    (root / "previews" / "a.jpg").write_bytes(next((SAMPLE / "train" / "circle").glob("*.jpg")).read_bytes())
    rc = main(["score", str(root), "--model", str(MODEL_DIR / "model.ts.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "split names" in err and err.count("\n") == 1


def test_cli_score_writes_outputs_and_fails_cleanly(tmp_path, capsys):
    from inspect_core.cli_score import main
    root = REPO / "sample_data"
    out = tmp_path / "out"
    rc = main(["score", str(root), "--model", str(MODEL_DIR / "model.ts.pt"), "--out", str(out),
               "--workspace", str(tmp_path / "ws"), "--workers", "0"])
    text = capsys.readouterr().out
    assert rc == 0, text
    scores = pd.read_parquet(out / "scores.parquet")
    assert len(scores) == 354 and {"loss", "pred_label", "prob_circle", "error"} <= set(scores.columns)
    issues = pd.read_csv(out / "label_issues.csv")
    assert "val/star/star_0062.jpg" in set(issues["image_id"].head(10))
    star = issues.set_index("image_id").loc["val/star/star_0062.jpg"]
    assert star["cl_issue"] and star["suggested_label"] not in ("star", None) and star["cl_rank"] >= 1
    assert (out / "label_issues.parquet").exists() and json.loads((out / "sanity.json").read_text())["baselines"]
    assert "worst" in text
    # the predictions path: feed our own scores back in, no model
    rc = main(["score", str(root), "--predictions", str(out / "scores.parquet"), "--out", str(tmp_path / "out2")])
    assert rc == 0
    again = pd.read_parquet(tmp_path / "out2" / "scores.parquet")
    np.testing.assert_allclose(again["loss"].to_numpy(), scores["loss"].to_numpy(), atol=1e-4)
    capsys.readouterr()
    for argv, needle in (
        (["score", str(root), "--out", str(tmp_path / "o")], "--model"),
        (["score", str(root), "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")],
         "no preprocessing"),
        (["score", str(root), "--model", str(MODEL_DIR / "model_state.pt"), "--out", str(tmp_path / "o")], "factory"),
        (["score", str(root), "--model", str(MODEL_DIR / "model.ts.pt"), "--out", str(root / "x")],
         "inside the dataset"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
