"""pipeline.py: the batch pipeline over image files (errors per image, the cache, cancel, AMP fallback, workers)."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from inspect_core.model import pipeline, runtime
from inspect_core.model.models import load_model
from model_support import (
    SAMPLE,
    SHAPES,
    ColourNet,
    FailsOnBright,
    _colour_dataset,
    _inner,
    _loaded,
    _spec,
    sample_dataset,
    sample_reference,
    sample_spec,
)


@pytest.fixture(scope="module")
def dataset():
    return sample_dataset()


@pytest.fixture(scope="module")
def spec():
    return sample_spec()


@pytest.fixture(scope="module")
def reference():
    return sample_reference()


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


def test_a_model_failing_on_the_first_images_still_scores_the_rest(tmp_path, dataset, spec):
    path = tmp_path / "fails.ts.pt"
    torch.jit.script(FailsOnBright(_inner())).save(str(path))
    model = load_model(path, spec)
    # the images it fails on first: those whose model input is bright, then the others
    from inspect_core.model.preprocess import what_the_model_sees
    images = dataset.images[dataset.images["label"].isin(SHAPES)].copy()

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


def test_score_dataset_metrics_errors_cache_and_cancel(tmp_path):
    root = tmp_path / "data"
    images = _colour_dataset(root)
    ws = tmp_path / "ws"
    spec = _spec()
    model = _loaded(ColourNet(), spec)
    calls = []
    result = pipeline.score_dataset(model, root, images, workspace=ws, workers=0, batch_size=4,
                             progress=lambda done, total: calls.append((done, total)))
    t = result.table
    assert calls[-1] == (len(images), len(images))
    broken = t[t["image_id"] == "red/broken.png"].iloc[0]
    assert broken["error"].startswith("unreadable") and np.isnan(broken["loss"])
    ok = t["error"].isna()
    truth = images["true"].to_numpy()
    assert (t.loc[ok, "pred_label"].to_numpy() == truth[ok.to_numpy()]).all()
    flipped = ok & (t["label"] != pd.Series(truth))
    assert flipped.sum() == 3
    assert t.loc[flipped, "loss"].min() > t.loc[ok & ~flipped, "loss"].max()
    row = t[ok].iloc[0]
    p = result.probs[t.index[ok][0]]
    assert row["confidence"] == pytest.approx(p.max(), abs=1e-6)
    assert row["entropy_nats"] == pytest.approx(-(p * np.log(p)).sum(), abs=1e-5)
    assert row["margin"] == pytest.approx(np.sort(p)[-1] - np.sort(p)[-2], abs=1e-6)
    assert result.embeddings is not None and result.embeddings.shape == (len(images), 3)
    # second call: from the cache, same numbers, model not called
    model.module = None
    again = pipeline.score_dataset(model, root, images, workspace=ws, workers=0)
    assert again.from_cache
    np.testing.assert_allclose(again.probs[ok.to_numpy()], result.probs[ok.to_numpy()])
    # a changed file changes the key
    Image.new("RGB", (40, 30), (1, 2, 3)).save(root / images["image_id"][0])
    model.module = ColourNet().eval()
    assert not pipeline.score_dataset(model, root, images, workspace=ws, workers=0).from_cache
    stop = threading.Event()
    stop.set()
    with pytest.raises(pipeline.ScoringCancelled):
        pipeline.score_dataset(model, root, images, workers=0, cancel=stop, use_cache=False)
    with pytest.raises(pipeline.ScoringCancelled):
        pipeline.score_dataset(model, root, images, workers=0, cancel=lambda: True, use_cache=False)


def test_score_with_worker_processes_matches_in_process(tmp_path):
    root = tmp_path / "data"
    images = _colour_dataset(root, n_per_class=3)
    model = _loaded(ColourNet(), _spec())
    a = pipeline.score_dataset(model, root, images, workers=0, batch_size=2)
    b = pipeline.score_dataset(model, root, images, workers=1, batch_size=2)
    np.testing.assert_allclose(np.nan_to_num(a.probs), np.nan_to_num(b.probs))
    assert a.table["error"].isna().equals(b.table["error"].isna())


def test_amp_failure_falls_back_to_float32(tmp_path, monkeypatch):
    root = tmp_path / "data"
    images = _colour_dataset(root, n_per_class=2, flipped=0)
    model = _loaded(ColourNet(), _spec())
    settings = runtime.RuntimeSettings("cpu", 0, False, False, True, "float16", 4)
    real = pipeline._forward_batch

    def flaky(m, x, st, tap):
        if st.use_amp:
            raise RuntimeError("autocast not supported by this op")
        return real(m, x, st, tap)

    monkeypatch.setattr(pipeline, "_forward_batch", flaky)
    logits, _, errors, notes = pipeline.model_outputs(model, root, list(images["image_id"]), settings=settings)
    assert any("mixed precision failed" in n for n in notes)
    assert np.isfinite(logits[[e is None for e in errors]]).all()


def test_gpu_style_settings_run_on_cpu(tmp_path):
    """The CUDA branch's loader and precision settings (pinned memory, non-blocking copies, worker processes,
    autocast + float32 logits) exercised on CPU: autocast runs in bfloat16, pinning is a no-op without a GPU."""
    import warnings
    root = tmp_path / "data"
    images = _colour_dataset(root, n_per_class=3)
    model = _loaded(ColourNet(), _spec())
    ids = list(images["image_id"])
    plain = runtime.runtime_settings("cpu", workers=0, batch_size=4)
    gpu_like = runtime.RuntimeSettings(device_type="cpu", num_workers=1, pin_memory=True, non_blocking=True,
                                 use_amp=True, amp_dtype="bfloat16", batch_size=4)
    ref, ref_emb, ref_err, _ = pipeline.model_outputs(model, root, ids, settings=plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "pin_memory ... no accelerator is found"
        out, emb, err, notes = pipeline.model_outputs(model, root, ids, settings=gpu_like)
    assert not notes and err == ref_err
    assert out.dtype == np.float32 and emb.dtype == np.float32
    ok = [e is None for e in err]
    np.testing.assert_allclose(out[ok], ref[ok], rtol=2e-2, atol=5e-2)   # bfloat16 precision
    np.testing.assert_allclose(emb[ok], ref_emb[ok], rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_in_dataset_gives_an_error_row_never_a_hang(tmp_path):
    import os

    from inspect_core.model.preprocess import load_image_file
    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "ok.png")
    os.mkfifo(root / "pipe.jpg")
    files = pipeline.ImageFiles(root, ["ok.png", "pipe.jpg"], _spec())
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(rows=[files[0], files[1]]), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    (_a, _i, err_ok), (_b, _j, err_pipe) = out["rows"]
    assert err_ok == "" and "not a regular file" in err_pipe
    with pytest.raises(OSError, match="not a regular file"):
        load_image_file(root)
