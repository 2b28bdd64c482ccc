"""Scoring, preprocessing, predictions files, label issues, sanity checks and the score CLI (CPU only)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from inspect_core.model import cache as score_cache
from inspect_core.model import pipeline
from inspect_core.model import predictions as predictions_file
from inspect_core.model import runtime
from inspect_core.model import table as scores_table
from inspect_core.model.label_issues import find_issues_confident_learning, rank_label_issues, recall_at_k
from inspect_core.model.models import LoadedModel
from inspect_core.model.preprocess import Preprocess, PreprocessError, decode_array, image_to_array, read_preprocess
from inspect_core.model.sanity import baselines, batch_independence, embedding_findings

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "sample_data" / "model"
CLASSES = ("red", "green", "blue")


def _spec(**kw) -> Preprocess:
    base = {"input_size": [16, 12], "class_names": list(CLASSES), "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    return Preprocess.from_dict({**base, **kw})


class ColourNet(nn.Module):
    """Logits = mean of each channel * 10: a 'classifier' whose answer is known for solid colours."""

    def __init__(self):
        super().__init__()
        self.body = nn.Identity()
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(3) * 10)
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def _colour_dataset(root: Path, n_per_class: int = 4, flipped: int = 1):
    """Solid-colour images under root/<class>/; the first ``flipped`` of each class are filed under the next class."""
    rows = []
    colours = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
    names = list(colours)
    for ci, cls in enumerate(names):
        for i in range(n_per_class):
            filed = names[(ci + 1) % 3] if i < flipped else cls
            (root / filed).mkdir(parents=True, exist_ok=True)
            image_id = f"{filed}/{cls}_{i}.png"
            Image.new("RGB", (40, 30), colours[cls]).save(root / image_id)
            rows.append({"image_id": image_id, "label": filed, "split": "train", "true": cls})
    (root / "red" / "broken.png").write_bytes(b"not an image")
    rows.append({"image_id": "red/broken.png", "label": "red", "split": "train", "true": "red"})
    return pd.DataFrame(rows)


def _loaded(module, spec) -> LoadedModel:
    module.eval()
    return LoadedModel(module=module, kind="state_dict", path=Path("colour.pt"), file_sha256="abc", device=torch.device("cpu"),
                       spec=spec, factory="x:y")


# --------------------------------------------------------------------------------------------- preprocessing

def test_preprocess_round_trip_and_bgr(tmp_path):
    img = Image.new("RGB", (32, 24), (200, 100, 50))
    spec = _spec(input_size=[8, 6])
    arr = image_to_array(img, spec)
    assert arr.shape == (3, 6, 8) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[:, 0, 0], (np.array([200, 100, 50]) / 255 - 0.5) / 0.5, atol=1e-6)
    assert decode_array(arr, spec).getpixel((0, 0)) == (200, 100, 50)
    bgr = _spec(input_size=[8, 6], channel_order="BGR")
    arr_bgr = image_to_array(img, bgr)
    np.testing.assert_allclose(arr_bgr[0], arr[2])
    assert decode_array(torch.from_numpy(arr_bgr), bgr).getpixel((3, 3)) == (200, 100, 50)


@pytest.mark.parametrize("order", ["RGB", "BGR", "L"])
def test_device_normalisation_is_the_same_arithmetic_as_image_to_array(order):
    # scoring ships uint8 pixels and normalises on the device; the model must get exactly image_to_array's input
    from inspect_core.model.preprocess import image_to_pixels, normalize_batch
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    mean, std = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if order != "L" else ([0.4], [0.3])
    spec = _spec(input_size=[20, 16], channel_order=order, mean=mean, std=std, resize="shorter_then_center_crop",
                 resize_shorter_px=18)
    pixels = image_to_pixels(img, spec)
    assert pixels.dtype == np.uint8 and pixels.shape == spec.input_shape
    batch = normalize_batch(torch.from_numpy(np.stack([pixels, pixels])), spec)
    assert batch.dtype == torch.float32
    np.testing.assert_array_equal(batch[1].numpy(), image_to_array(img, spec))


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "nearest"])
def test_shorter_then_crop_resizes_only_the_crop_yet_equals_resize_then_crop(interp):
    from inspect_core.model.preprocess import INTERPOLATIONS, geometry
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)            # smooth-ish photo-like content
    img = Image.fromarray(small).resize((97, 61), Image.Resampling.BICUBIC)
    spec = _spec(input_size=[40, 30], resize="shorter_then_center_crop", resize_shorter_px=36, interpolation=interp)
    new_w, new_h = round(97 * 36 / 61), 36
    left, top = (new_w - 40) // 2, (new_h - 30) // 2
    full = img.resize((new_w, new_h), INTERPOLATIONS[interp]).crop((left, top, left + 40, top + 30))
    diff = np.abs(np.asarray(geometry(img, spec), np.int16) - np.asarray(full, np.int16))
    assert geometry(img, spec).size == (40, 30)
    assert diff.max() <= 2 and diff.mean() < 0.01     # the same filter taps; at most a rounding step apart


def test_preprocess_crop_modes_and_sidecar_errors(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))          # white left quarter
    crop = _spec(input_size=[10, 10], resize="shorter_then_center_crop", resize_shorter_px=10)
    arr = image_to_array(img, crop)                     # 40x20 -> 20x10 -> centre 10x10: the white part is cut off
    assert arr.shape == (3, 10, 10) and arr.max() < 0
    stretch = image_to_array(img, _spec(input_size=[10, 10]))
    assert stretch[:, :, 0].min() > 0.9                 # stretched: the left column stays white
    with pytest.raises(PreprocessError, match="class_names"):
        Preprocess.from_dict({"input_size": [8, 8]})
    with pytest.raises(PreprocessError, match="resize"):
        _spec(resize="zoom")
    bad = tmp_path / "m.preprocess.json"
    bad.write_text("{nope")
    with pytest.raises(PreprocessError, match="not valid JSON"):
        read_preprocess(bad)
    spec = _spec()
    spec.save(tmp_path / "ok.json")
    assert read_preprocess(tmp_path / "ok.json") == spec


# --------------------------------------------------------------------------------------------- scoring

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


@pytest.mark.parametrize("device_type,amp,pin,workers", [("cuda", True, True, 7), ("mps", False, False, 4), ("cpu", False, False, 0)])
def test_runtime_settings_per_device(device_type, amp, pin, workers):
    s = runtime.runtime_settings(device_type, n_cpus=8 if device_type != "cpu" else 2)
    assert (s.use_amp, s.pin_memory, s.num_workers) == (amp, pin, workers)
    assert s.non_blocking == (device_type == "cuda")
    assert s.amp_dtype == ("float16" if amp else None)
    kw = s.loader_kwargs()
    assert kw["pin_memory"] == pin and ("prefetch_factor" in kw) == (workers > 0)
    assert runtime.runtime_settings(device_type, amp=False).use_amp is False
    assert runtime.runtime_settings("cpu", amp=True).use_amp is False          # autocast only on CUDA
    assert runtime.runtime_settings(device_type, batch_size=500, max_batch=1).batch_size == 1
    assert runtime.runtime_settings("cpu", n_cpus=1).num_workers == 0
    assert runtime.runtime_settings("cpu", n_cpus=16).num_workers == 4
    assert runtime.runtime_settings("cuda", n_cpus=16).num_workers == 15   # decoding limits a GPU: all cores but one


def test_autocast_context_is_built_for_cuda_settings():
    cuda = runtime.runtime_settings("cuda", n_cpus=4)
    ctx = runtime.autocast_context(cuda)
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.float16
    assert not isinstance(runtime.autocast_context(runtime.runtime_settings("cpu")), torch.autocast)


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


# --------------------------------------------------------------------------------------------- predictions files

def test_predictions_files_need_no_model(tmp_path):
    root = tmp_path / "data"
    images = _colour_dataset(root)
    ok_rows = images[images["image_id"] != "red/broken.png"].reset_index(drop=True)
    idx = {c: i for i, c in enumerate(CLASSES)}
    logits = np.full((len(ok_rows), 3), -2.0)
    logits[np.arange(len(ok_rows)), [idx[t] for t in ok_rows["true"]]] = 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    # per-class columns of probabilities, CSV
    csv = tmp_path / "p.csv"
    pd.DataFrame({"image_id": ok_rows["image_id"], **{f"prob_{c}": probs[:, i] for i, c in enumerate(CLASSES)}}).to_csv(csv, index=False)
    r_csv = predictions_file.score_predictions(csv, images)
    assert r_csv.source["values"] == "probabilities" and r_csv.class_names == list(CLASSES)
    # logits in a list column, parquet
    pq = tmp_path / "p.parquet"
    pd.DataFrame({"image_id": ok_rows["image_id"], "scores": list(logits)}).to_parquet(pq)
    r_pq = predictions_file.score_predictions(pq, images, class_names=CLASSES)
    assert r_pq.source["values"] == "logits"
    # npy aligned with a given order
    npy = tmp_path / "p.npy"
    np.save(npy, logits)
    r_npy = predictions_file.score_predictions(npy, images, class_names=CLASSES, order=list(ok_rows["image_id"]))
    for r in (r_csv, r_pq, r_npy):
        t = r.table
        assert t.loc[t["image_id"] == "red/broken.png", "error"].iloc[0].startswith("no prediction")
        ok = t["error"].isna()
        np.testing.assert_allclose(r.probs[ok.to_numpy()], probs, atol=1e-5)
        assert (t.loc[ok, "label"] != t.loc[ok, "pred_label"]).sum() == 3
    with pytest.raises(predictions_file.PredictionsError, match="rows"):
        predictions_file.score_predictions(npy, images, class_names=CLASSES)        # 12 rows vs 13 dataset images
    with pytest.raises(predictions_file.PredictionsError, match="not found"):
        predictions_file.score_predictions(tmp_path / "none.csv", images)
    (tmp_path / "noid.csv").write_text("a,b\n1,2\n")
    with pytest.raises(predictions_file.PredictionsError, match="image_id"):
        predictions_file.score_predictions(tmp_path / "noid.csv", images)


def test_logits_vs_probabilities_decision():
    p = np.array([[0.2, 0.8], [0.5, 0.5]])
    assert scores_table.looks_like_probabilities(p)
    assert not scores_table.looks_like_probabilities(np.array([[0.2, 0.3], [0.1, 0.1]]))     # in [0,1] but not summing to 1
    assert not scores_table.looks_like_probabilities(np.array([[2.0, -1.0], [0.1, 0.9]]))
    probs, kind = predictions_file.to_probabilities(np.array([[0.0, np.log(3.0)]]))
    assert kind == "logits" and probs[0, 1] == pytest.approx(0.75)


# --------------------------------------------------------------------------------------------- label issues

def _synthetic(n=2000, n_classes=4, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n)
    logits = rng.normal(0, 1.0, (n, n_classes))
    logits[np.arange(n), true] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flip = rng.random(n) < noise
    given[flip] = (true[flip] + rng.integers(1, n_classes, flip.sum())) % n_classes
    return probs, given, true, flip


def test_confident_learning_finds_injected_flips():
    probs, given, true, flip = _synthetic()
    cl = find_issues_confident_learning(probs, given)
    found = cl.issue_mask
    precision = (found & flip).sum() / found.sum()
    recall = (found & flip).sum() / flip.sum()
    assert precision > 0.6 and recall > 0.5, (precision, recall)
    # suggestion is the true class for most found flips
    assert (cl.suggested[found & flip] == true[found & flip]).mean() > 0.8
    # thresholds are the per-class mean self-confidence
    assert cl.thresholds[0] == pytest.approx(probs[given == 0, 0].mean())
    # calibrated joint rows sum to the class counts
    np.testing.assert_allclose(cl.calibrated_joint.sum(1), np.bincount(given, minlength=4))
    # no noise at all: (almost) nothing flagged
    clean = find_issues_confident_learning(probs, true)
    assert clean.issue_mask.sum() < found.sum() / 3


def test_rank_label_issues_orders_by_loss_and_skips_unlabelled():
    probs, given, _, flip = _synthetic(n=300, seed=1)
    images = pd.DataFrame({"image_id": [f"img_{i}.png" for i in range(300)],
                           "label": [str(g) for g in given], "split": "train"})
    images.loc[0, "label"] = None
    table = scores_table.build_table(images, probs.astype(np.float32), ["0", "1", "2", "3"])
    issues = rank_label_issues(table, probs, ["0", "1", "2", "3"])
    assert len(issues) == 299 and "img_0.png" not in set(issues["image_id"])
    assert issues["loss"].is_monotonic_decreasing and list(issues["loss_rank"][:3]) == [1, 2, 3]
    flipped_ids = [f"img_{i}.png" for i in np.flatnonzero(flip) if i != 0]
    assert recall_at_k(issues["image_id"], flipped_ids, 2 * len(flipped_ids)) > 0.6
    flagged = issues[issues["cl_issue"]]
    assert flagged["cl_rank"].notna().all() and issues.loc[~issues["cl_issue"], "cl_rank"].isna().all()


# --------------------------------------------------------------------------------------------- sanity checks

def test_baselines_detect_a_model_that_learnt_nothing():
    probs, given, _, _ = _synthetic(n=400, noise=0.0, seed=2)
    names = ["0", "1", "2", "3"]
    images = pd.DataFrame({"image_id": [str(i) for i in range(400)], "label": [str(g) for g in given], "split": "train"})
    good = baselines(scores_table.build_table(images, probs.astype(np.float32), names), names)[0]
    assert good.ok and good.uniform_loss == pytest.approx(np.log(4))
    prior = np.bincount(given, minlength=4) / 400
    dumb = baselines(scores_table.build_table(images, np.tile(prior, (400, 1)).astype(np.float32), names), names)[0]
    assert not dumb.ok and "class-prior baseline" in " ".join(dumb.verdicts) or "does not beat" in " ".join(dumb.verdicts)
    assert dumb.model_loss == pytest.approx(dumb.prior_loss, abs=1e-3)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3)))


class MixNet(nn.Module):
    """Mixes examples across the batch (subtracts the batch mean): a bug the check must catch."""

    def forward(self, x):
        m = x.mean(dim=(2, 3))
        return (m - m.mean(0, keepdim=True))[:, :3]


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


# --------------------------------------------------------------------------------------------- CLI

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
        (["score", str(root), "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")], "no preprocessing"),
        (["score", str(root), "--model", str(MODEL_DIR / "model_state.pt"), "--out", str(tmp_path / "o")], "factory"),
        (["score", str(root), "--model", str(MODEL_DIR / "model.ts.pt"), "--out", str(root / "x")], "inside the dataset"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


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


@pytest.mark.parametrize("rows_text", ['{"image_ids": ["a.png"]}', '["a.png"]', '{"image_ids": 3, "errors": 4}',
                                       '{"image_ids": ["a.png", "b.png"], "errors": ["", ""]}'])
def test_damaged_score_cache_is_a_miss_not_a_crash(tmp_path, rows_text):
    ws = tmp_path / "ws"
    folder = score_cache.save_cache(ws, "k1", ["a.png"], np.zeros((1, 3), np.float32), None, [""], {"notes": []})
    assert score_cache.load_cache(ws, "k1") is not None
    (folder / "rows.json").write_text(rows_text)
    assert score_cache.load_cache(ws, "k1") is None
