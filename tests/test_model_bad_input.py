"""Bad input to model triage is normal input: predictions files with extra columns, rounded or percentage
probabilities, class names that do not match the labels, models that fail on some images, end in a softmax or
return NaN, and CLI paths that cannot work. Each gives a right result or a one-line message naming the thing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from inspect_core.model import cache as score_cache
from inspect_core.model import pipeline
from inspect_core.model import predictions as predictions_file
from inspect_core.loaders import load_dataset
from inspect_core.model.models import load_model
from inspect_core.model.preprocess import read_preprocess
from inspect_core.sample_model import make_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
MODEL_DIR = SAMPLE / "model"
CLASSES = ["circle", "square", "triangle", "star", "hexagon"]


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(SAMPLE)


@pytest.fixture(scope="module")
def spec():
    return read_preprocess(MODEL_DIR / "model.preprocess.json")


@pytest.fixture(scope="module")
def reference(dataset, spec):
    """The sample model's scores, and a 'good model' predictions frame: 0.96 on the given label."""
    res = pipeline.score_dataset(load_model(MODEL_DIR / "model.pt2", spec), SAMPLE, dataset.images, workers=0)
    labelled = dataset.images[dataset.images["label"].isin(CLASSES)]
    probs = np.full((len(labelled), 5), 0.01)
    probs[np.arange(len(labelled)), [CLASSES.index(v) for v in labelled["label"]]] = 0.96
    good = pd.DataFrame(probs, columns=CLASSES)
    good.insert(0, "image_id", labelled["image_id"].to_numpy())
    return res, good


class FailsOnBright(nn.Module):
    """The sample model, raising on any batch with a bright input (like a model with a shape or range check)."""
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        if bool((x.mean(dim=(1, 2, 3)) > 0.3).any()):
            raise RuntimeError("boom: unsupported input")
        return self.m(x)


def _inner():
    m = make_model()
    m.load_state_dict(torch.load(MODEL_DIR / "model_state.pt", weights_only=True))
    return m.eval()


# ---------------------------------------------------------------------------------------- predictions files

def test_extra_numeric_columns_are_not_classes(tmp_path, dataset, reference):
    _, good = reference
    path = tmp_path / "preds.csv"
    good.assign(fold=1).to_csv(path)                        # pandas' default: the index becomes "Unnamed: 0"
    res = predictions_file.score_predictions(path, dataset.images, dataset_classes=dataset.classes)
    assert res.class_names == CLASSES
    loss = res.table["loss"].dropna()
    assert loss.max() == pytest.approx(-np.log(0.96), abs=1e-4)
    assert any("Unnamed: 0" in n and "fold" in n for n in res.notes), res.notes


def test_rounded_probabilities_and_percentages_are_probabilities(tmp_path, dataset, reference):
    res, _ = reference
    frame = res.to_frame()[["image_id"] + [f"prob_{c}" for c in CLASSES]].dropna()
    exact = predictions_file.score_predictions(_save(frame, tmp_path / "exact.csv"), dataset.images)
    rounded = predictions_file.score_predictions(_save(frame.round(2), tmp_path / "rounded.csv"), dataset.images)
    assert rounded.source["values"] == "probabilities"
    # two decimals keep every loss below -log(0.05) = 3 to within 0.2 (smaller probabilities round to 0 or 0.01)
    near = exact.table["loss"].to_numpy() < 3
    np.testing.assert_allclose(rounded.table["loss"].to_numpy()[near], exact.table["loss"].to_numpy()[near], atol=0.2)
    assert any("probabilities" in n for n in rounded.notes)
    pct = frame.copy()
    pct[pct.columns[1:]] *= 100
    as_pct = predictions_file.score_predictions(_save(pct, tmp_path / "pct.csv"), dataset.images)
    assert as_pct.source["values"] == "percentages"
    np.testing.assert_allclose(as_pct.table["loss"].to_numpy(), exact.table["loss"].to_numpy(), atol=1e-4)


def test_probabilities_with_a_missing_column_are_refused_not_read_as_logits(tmp_path, dataset, reference):
    _, good = reference
    path = _save(good.drop(columns=["hexagon"]), tmp_path / "four.csv")
    with pytest.raises(predictions_file.PredictionsError, match="sum"):
        predictions_file.score_predictions(path, dataset.images)
    # the dataset's classes name what is missing
    with pytest.raises(predictions_file.PredictionsError, match="hexagon"):
        predictions_file.score_predictions(path, dataset.images, dataset_classes=dataset.classes)


def test_a_list_column_takes_the_dataset_classes(tmp_path, dataset, reference):
    _, good = reference
    lists = pd.DataFrame({"image_id": good["image_id"], "probs": list(good[CLASSES].to_numpy())})
    path = tmp_path / "lists.parquet"
    lists.to_parquet(path)
    res = predictions_file.score_predictions(path, dataset.images, dataset_classes=dataset.classes)
    assert res.class_names == CLASSES
    assert res.table["loss"].notna().sum() == len(good)


def test_labels_the_model_does_not_know_are_reported(tmp_path, dataset, reference):
    _, good = reference
    path = _save(good.rename(columns={"hexagon": "Hexagon"}).assign(Hexagon=good["hexagon"]), tmp_path / "h.csv")
    res = predictions_file.score_predictions(path, dataset.images)
    labels = dataset.images["label"]
    n_unknown = int((labels.notna() & ~labels.isin(CLASSES[:4])).sum())          # hexagon, and the planted "blob"
    assert any(f"{n_unknown} labelled images" in n and "hexagon" in n for n in res.notes), res.notes


def test_a_folder_or_a_bool_array_is_named_for_what_it_is(tmp_path, dataset):
    folder = tmp_path / "preds.csv"
    folder.mkdir()
    with pytest.raises(predictions_file.PredictionsError, match="is a folder"):
        predictions_file.score_predictions(folder, dataset.images)
    flags = tmp_path / "flags.npy"
    np.save(flags, np.zeros((len(dataset.images), 5), dtype=bool))
    with pytest.raises(predictions_file.PredictionsError, match="bool values"):
        predictions_file.score_predictions(flags, dataset.images, dataset_classes=dataset.classes)


# ---------------------------------------------------------------------------------------- models

def test_a_model_returning_an_unknown_dict_names_its_keys_and_the_accepted_ones():
    from inspect_core.model.models import ModelLoadError, logits_of
    with pytest.raises(ModelLoadError, match="keys scores, aux.*'logits', 'out' or 'output'"):
        logits_of({"scores": torch.zeros(1, 5), "aux": torch.zeros(1)})


def test_a_model_that_fails_on_some_images_scores_the_rest(tmp_path, dataset, spec):
    path = tmp_path / "fails.ts.pt"
    torch.jit.script(FailsOnBright(_inner())).save(str(path))
    res = pipeline.score_dataset(load_model(path, spec), SAMPLE, dataset.images, workers=0, batch_size=16)
    errors = res.table["error"].dropna()
    failed = errors[errors.str.contains("boom")]
    assert len(failed) > 0 and res.table["loss"].notna().sum() > 100
    assert failed.str.contains("the model failed on this image").all()


def test_a_model_that_ends_in_softmax_is_not_softmaxed_twice(tmp_path, dataset, spec, reference):
    res, _ = reference

    class WithSoftmax(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return torch.softmax(self.m(x), dim=1)
    path = tmp_path / "softmax.ts.pt"
    torch.jit.script(WithSoftmax(_inner())).save(str(path))
    twice = pipeline.score_dataset(load_model(path, spec), SAMPLE, dataset.images, workers=0)
    np.testing.assert_allclose(twice.table["loss"].to_numpy(), res.table["loss"].to_numpy(), atol=2e-3)
    assert any("already probabilities" in n for n in twice.notes)


def test_nan_outputs_are_named(tmp_path, dataset, spec):
    class NanOnBright(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            out = self.m(x)
            bright = (x.mean(dim=(1, 2, 3)) > 0.3)[:, None]
            return torch.where(bright, torch.full_like(out, float("nan")), out)
    path = tmp_path / "nan.ts.pt"
    torch.jit.script(NanOnBright(_inner())).save(str(path))
    res = pipeline.score_dataset(load_model(path, spec), SAMPLE, dataset.images, workers=0)
    errors = res.table["error"].dropna()
    assert errors.str.contains("NaN").sum() > 0 and not (errors == "no score").any()


# ---------------------------------------------------------------------------------------- CLI

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
    d["class_names"] = [c.upper() for c in CLASSES]
    shouting.write_text(json.dumps(d))
    assert main(["score", str(SAMPLE), "--model", model, "--preprocess", str(shouting),
                 "--out", str(tmp_path / "o2"), "--no-cache", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "CIRCLE" in err and "circle" in err and err.count("\n") == 1


def _save(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_an_empty_image_file_is_named_as_empty(tmp_path, spec):
    from inspect_core.model.preprocess import load_image_file
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(OSError, match=r"empty file \(0 bytes\)"):
        load_image_file(empty)
    res = pipeline.score_dataset(load_model(MODEL_DIR / "model.pt2", spec), tmp_path,
                          pd.DataFrame({"image_id": ["empty.jpg"], "label": ["circle"]}), workers=0)
    assert "empty file (0 bytes)" in res.table["error"].iloc[0]


def test_cli_says_when_the_dataset_has_no_images(tmp_path, capsys):
    from inspect_core.cli_score import main
    (tmp_path / "data").mkdir()
    rc = main(["score", str(tmp_path / "data"), "--model", str(MODEL_DIR / "model.ts.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no images" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------- round 2

def test_sidecar_lookup_prefers_the_longest_matching_name_and_never_another_models_file(tmp_path):
    from inspect_core.model.preprocess import find_sidecar
    for name in ("model.ts.pt", "model.v2.ts.pt", "model.preprocess.json", "model.v2.preprocess.json"):
        (tmp_path / name).write_text("{}")
    assert find_sidecar(tmp_path / "model.v2.ts.pt") == tmp_path / "model.v2.preprocess.json"
    assert find_sidecar(tmp_path / "model.ts.pt") == tmp_path / "model.preprocess.json"
    other = tmp_path / "b"
    other.mkdir()
    for name in ("resnet_a.ts.pt", "resnet_b.ts.pt", "resnet_a.preprocess.json"):
        (other / name).write_text("{}")
    assert find_sidecar(other / "resnet_b.ts.pt") is None            # resnet_a's file is not resnet_b's
    lone = tmp_path / "c"
    lone.mkdir()
    (lone / "net.ts.pt").write_text("{}")
    (lone / "settings.preprocess.json").write_text("{}")
    assert find_sidecar(lone / "net.ts.pt") == lone / "settings.preprocess.json"   # the only one, for nobody else
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "model.ts.pt").write_text("{}")
    (runs / "model.preprocess.json").write_text("{}")
    link_dir = tmp_path / "d"
    link_dir.mkdir()
    (link_dir / "latest.ts.pt").symlink_to(runs / "model.ts.pt")
    assert find_sidecar(link_dir / "latest.ts.pt") == runs / "model.preprocess.json"


def test_a_damaged_score_cache_is_a_miss(tmp_path):
    ids = ["a.jpg", "b.jpg"]
    folder = score_cache.save_cache(tmp_path, "k", ids, np.zeros((2, 3)), None, ["", ""], {})
    assert score_cache.load_cache(tmp_path, "k") is not None
    npz = folder / "outputs.npz"
    npz.write_bytes(npz.read_bytes()[:40])
    assert score_cache.load_cache(tmp_path, "k") is None


def test_factory_code_is_part_of_the_cache_key_and_is_not_compiled_into_the_dataset(tmp_path, monkeypatch, spec):
    import sys
    data = tmp_path / "data"
    data.mkdir()
    code = "from inspect_core.sample_model import make_model as _m\ndef make(num_classes=5):\n    return _m()\n"
    (data / "mynet_factory_t.py").write_text(code)
    monkeypatch.chdir(data)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    first = load_model(MODEL_DIR / "model_state.pt", spec, factory="mynet_factory_t:make")
    assert not (data / "__pycache__").exists()                       # nothing written into the user's folder
    (data / "mynet_factory_t.py").write_text(code + "# edited\n")
    second = load_model(MODEL_DIR / "model_state.pt", spec, factory="mynet_factory_t:make")
    assert first.cache_key() != second.cache_key()
    sys.modules.pop("mynet_factory_t", None)


def test_cli_names_its_preprocessing_drops_stale_embeddings_and_explains_unlabelled_data(tmp_path, capsys, dataset,
                                                                                       reference):
    from inspect_core.cli_score import main
    import json
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


def test_the_page_reloads_an_edited_factory(tmp_path, monkeypatch, spec):
    import sys
    from inspect_core.ui import model_triage as mt
    code = "from inspect_core.sample_model import make_model as _m\ndef make(num_classes=5):\n    return _m()\n"
    (tmp_path / "page_factory_t.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    first = mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "page_factory_t:make")
    assert mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "page_factory_t:make") is first
    (tmp_path / "page_factory_t.py").write_text(code + "# edited, and longer\n")
    second = mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "page_factory_t:make")
    assert second is not first and second.cache_key() != first.cache_key()
    sys.modules.pop("page_factory_t", None)


def test_the_suggested_sidecar_name_is_the_models_own():
    from inspect_core.model.preprocess import sidecar_candidates, sidecar_name
    assert sidecar_name("runs/net.v3.ts.pt") == "net.v3.preprocess.json"
    assert sidecar_name("model.pt2") == "model.preprocess.json" and sidecar_name("best.ckpt.pt") == "best.preprocess.json"
    # and the lookup tries it before any shorter name
    names = [c.name for c in sidecar_candidates(Path("runs/net.v3.ts.pt"))]
    assert names.index("net.v3.preprocess.json") < names.index("net.preprocess.json")


# ---------------------------------------------------------------------------------------- review of the fixes

def test_a_model_class_the_dataset_lacks_is_kept_not_renormalised_away(tmp_path):
    images = pd.DataFrame({"image_id": ["a", "b"], "label": ["cat", "dog"]})
    frame = pd.DataFrame({"image_id": ["a", "b"], "prob_cat": [0.1, 0.2], "prob_dog": [0.1, 0.7],
                          "prob_fox": [0.8, 0.1], "fold": [1, 2]})
    res = predictions_file.score_predictions(_save(frame, tmp_path / "p.csv"), images, dataset_classes=["cat", "dog"])
    assert res.class_names == ["cat", "dog", "fox"]
    np.testing.assert_allclose(res.probs[0], [0.1, 0.1, 0.8], atol=1e-6)
    assert any("fold" in n for n in res.notes)


def test_rounded_values_over_many_classes_and_float_error_are_still_probabilities():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(100), size=50)
    assert predictions_file.detect_values(np.round(p, 2)) == "probabilities"
    assert predictions_file.detect_values(np.round(p * 100)) == "percentages"
    two = np.array([[0.25, 0.75], [1 + 2e-6, -2e-6]])
    assert predictions_file.detect_values(two) == "probabilities"
    with_placeholder = np.vstack([p[:3], np.zeros((1, 100))])
    assert predictions_file.detect_values(with_placeholder) == "probabilities"
    assert predictions_file.detect_values(rng.normal(size=(20, 100))) == "logits"


def test_a_model_failing_on_the_first_images_still_scores_the_rest(tmp_path, dataset, spec):
    path = tmp_path / "fails.ts.pt"
    torch.jit.script(FailsOnBright(_inner())).save(str(path))
    model = load_model(path, spec)
    # the images it fails on first: those whose model input is bright, then the others
    from inspect_core.model.preprocess import what_the_model_sees
    images = dataset.images[dataset.images["label"].isin(CLASSES)].copy()

    def input_mean(image_id):
        try:
            return float(what_the_model_sees(SAMPLE / image_id, spec)[0].mean())
        except OSError:                                      # the sample's planted broken files
            return -9.0
    images["m"] = [input_mean(i) for i in images["image_id"]]
    bright, dark = images[images["m"] > 0.3], images[(images["m"] <= 0.3) & (images["m"] > -9)]
    assert len(bright) >= 16 and len(dark) >= 16
    images = pd.concat([bright.head(16), dark.head(16)])
    res = pipeline.score_dataset(model, SAMPLE, images, workers=0, batch_size=8)
    failed = res.table["error"].fillna("").str.contains("boom")
    assert failed.iloc[:16].all() and not failed.iloc[16:].any() and res.table["loss"].iloc[16:].notna().all()


def test_sidecar_fallback_ignores_files_that_are_not_models(tmp_path):
    from inspect_core.model.preprocess import find_sidecar
    for name in ("model.preprocess.json", "model.preprocess.json~", "best.pt"):
        (tmp_path / name).write_text("{}")
    assert find_sidecar(tmp_path / "best.pt") == tmp_path / "model.preprocess.json"
    other = tmp_path / "r"
    other.mkdir()
    for name in ("resnet50.preprocess.json", "resnet50.md", "checkpoint.pt"):
        (other / name).write_text("{}")
    assert find_sidecar(other / "checkpoint.pt") == other / "resnet50.preprocess.json"


def test_the_page_does_not_run_a_factory_package_outside_the_safe_import(tmp_path, monkeypatch, spec):
    import sys
    from inspect_core.model.models import ModelLoadError
    from inspect_core.ui import model_triage as mt
    pkg = tmp_path / "badpkg_t"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('needs CUDA_HOME')\n")
    (pkg / "nets.py").write_text("def make():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    with pytest.raises(ModelLoadError, match="needs CUDA_HOME"):
        mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "badpkg_t.nets:make")
    assert not (pkg / "__pycache__").exists()


def test_a_model_that_fails_on_everything_stops_with_its_error(tmp_path, dataset, spec):
    class AlwaysFails(nn.Module):              # passes the load-time check (an all-zero input), fails on images
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            if bool(x.abs().sum() > 0):
                raise RuntimeError("boom: this model is broken")
            return self.m(x)
    path = tmp_path / "broken.ts.pt"
    torch.jit.script(AlwaysFails(_inner())).save(str(path))
    model = load_model(path, spec)
    with pytest.raises(Exception, match="this model is broken"):
        pipeline.score_dataset(model, SAMPLE, dataset.images, workers=0, batch_size=32)
