"""The CUDA path on a real GPU (and nvJPEG decoding where torchvision is there). Skipped where torch sees no CUDA
device (CI has none); run on a GPU box with
``python -m pytest -q tests/test_model_cuda.py``. Every branch that needs no GPU is covered on the CPU by
test_model_pipeline.py and test_model_loading.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspect_core.model import models as M
from inspect_core.model.preprocess import image_to_array, image_to_pixels, load_image_file, normalize_batch, read_preprocess

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
MODEL_DIR = SAMPLE / "model"
FACTORY = "inspect_core.sample_model:make_model"
FORMS = (("model.ts.pt", None), ("model.pt2", None), ("model_state.pt", FACTORY))


@pytest.fixture(scope="module")
def spec():
    return read_preprocess(MODEL_DIR / "model.preprocess.json")


@pytest.fixture(scope="module")
def images():
    from inspect_core.loaders import load_dataset
    return load_dataset(SAMPLE).images


def test_device_normalisation_on_cuda_matches_the_cpu_array(spec):
    path = SAMPLE / "train" / "circle" / sorted(p.name for p in (SAMPLE / "train" / "circle").glob("*.jpg"))[0]
    img = load_image_file(path)
    on_gpu = normalize_batch(torch.from_numpy(image_to_pixels(img, spec)[None]).cuda(), spec)[0].cpu().numpy()
    np.testing.assert_allclose(on_gpu, image_to_array(img, spec), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,factory", FORMS)
def test_every_form_scores_on_cuda_like_on_the_cpu(spec, images, name, factory):
    from inspect_core.model.pipeline import score_dataset
    gpu = M.load_model(MODEL_DIR / name, spec, factory=factory, device="cuda")
    cpu = M.load_model(MODEL_DIR / name, spec, factory=factory, device="cpu")
    assert gpu.device.type == "cuda"
    # pinned memory, workers, fp16; Pillow decoding on both sides (nvJPEG: test_nvjpeg_decoder_scores_like_pillow)
    res_gpu = score_dataset(gpu, SAMPLE, images, use_cache=False, workers=2, decoder="pillow")
    res_cpu = score_dataset(cpu, SAMPLE, images, use_cache=False, workers=0)
    ok = res_cpu.table["error"].isna().to_numpy()
    assert ok.sum() > 300 and np.array_equal(ok, res_gpu.table["error"].isna().to_numpy())
    np.testing.assert_allclose(res_gpu.probs[ok], res_cpu.probs[ok], atol=2e-2)   # float16 autocast vs float32
    agree = (res_gpu.probs[ok].argmax(1) == res_cpu.probs[ok].argmax(1)).mean()
    assert agree >= 0.99


def test_batch_independence_holds_on_cuda(spec, images):
    from inspect_core.model.sanity import batch_independence
    gpu = M.load_model(MODEL_DIR / "model.ts.pt", spec, device="cuda")
    arrays = []
    for image_id in images["image_id"]:
        try:
            arrays.append(image_to_array(load_image_file(SAMPLE / image_id), spec))
        except Exception:  # noqa: BLE001 - the sample's planted broken files
            continue
        if len(arrays) == 16:
            break
    result = batch_independence(gpu.forward, torch.from_numpy(np.stack(arrays)).cuda())
    assert result.ok and result.n_images == 16, result.detail


def _nvjpeg_available() -> bool:
    from inspect_core.model.gpu_decode import available_decoder
    return torch.cuda.is_available() and available_decoder(torch.device("cuda")) is not None


@pytest.mark.skipif(not _nvjpeg_available(), reason="needs CUDA and torchvision (nvJPEG)")
def test_nvjpeg_decoder_scores_like_pillow(spec, images):
    """decoder="gpu" (workers read bytes, nvJPEG decodes, torch resizes on the GPU) against the Pillow path."""
    from inspect_core.model.gpu_decode import what_the_model_sees_as
    from inspect_core.model.pipeline import score_dataset
    gpu = M.load_model(MODEL_DIR / "model.pt2", spec, device="cuda")
    res_gpu = score_dataset(gpu, SAMPLE, images, use_cache=False, workers=2, decoder="gpu")
    res_pil = score_dataset(gpu, SAMPLE, images, use_cache=False, workers=2, decoder="pillow")
    assert res_gpu.source["decoder"] == "nvjpeg" and res_pil.source["decoder"] == "pillow"
    ok = res_pil.table["error"].isna().to_numpy()
    assert ok.sum() > 300 and np.array_equal(ok, res_gpu.table["error"].isna().to_numpy())
    assert res_gpu.table["error"].fillna("").tolist() == res_pil.table["error"].fillna("").tolist()
    agree = (res_gpu.probs[ok].argmax(1) == res_pil.probs[ok].argmax(1)).mean()
    assert agree >= 0.99, agree
    # nvJPEG's chroma upsampling differs from libjpeg's at sharp colour edges (the sample's shapes are all edges):
    # measured on an H100, 5 of 1,755 probabilities differ by 0.03-0.043, the rest by less
    diff = np.abs(res_gpu.probs[ok] - res_pil.probs[ok])
    assert (diff <= 3e-2).mean() >= 0.995 and diff.max() <= 6e-2 and diff.mean() <= 3e-3, (diff.max(), diff.mean())
    # "what the model sees" is made by the same code: its tensor gives the scored probabilities
    first = [i for i, good in zip(images["image_id"], ok) if good and str(i).endswith(".jpg")][:4]
    for image_id in first:
        arr, _, note = what_the_model_sees_as(SAMPLE / image_id, spec, "nvjpeg", "cuda")
        assert note is None
        with torch.inference_mode():
            probs = torch.softmax(gpu.forward(torch.from_numpy(arr[None]).cuda()).float(), 1)[0].cpu().numpy()
        row = int(np.flatnonzero(res_gpu.table["image_id"].to_numpy() == image_id)[0])
        np.testing.assert_allclose(probs, res_gpu.probs[row], atol=2e-2)


def test_geometry_tensor_on_cuda_matches_the_cpu(spec):
    from inspect_core.model.preprocess import geometry_tensor
    img = load_image_file(SAMPLE / "train" / "circle" / "circle_0003.jpg").convert("RGB")
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1)))
    for resize in ("stretch", "shorter_then_center_crop", "center_crop", "letterbox"):
        for interpolation in ("nearest", "bilinear", "bicubic"):
            s = type(spec)(input_size=(64, 48), class_names=spec.class_names, resize=resize,
                           resize_shorter_px=70, interpolation=interpolation)
            cpu, cuda = geometry_tensor(x, s), geometry_tensor(x.cuda(), s).cpu()
            assert int((cpu.int() - cuda.int()).abs().max()) <= 1, (resize, interpolation)


def test_the_sample_detector_on_cuda_finds_the_boxes_it_finds_on_the_cpu():
    """Issue 13: a TorchScript detector runs on CUDA (the batch pipeline, workers, pinned memory) with the boxes it
    gives on the CPU, mapped back to source pixels the same way."""
    from inspect_core.loaders import load_dataset
    from inspect_core.model.tasks.detection import load_detector, run_detector
    spec = read_preprocess(MODEL_DIR / "detector.preprocess.json")
    dataset = load_dataset(SAMPLE)
    out = {}
    for device in ("cuda", "cpu"):
        model = load_detector(MODEL_DIR / "detector.ts.pt", spec, device=device)
        assert model.device.type == device
        result, scores = run_detector(dataset, model, workers=2 if device == "cuda" else 0)
        out[device] = (result, scores)
    (res_gpu, sc_gpu), (res_cpu, sc_cpu) = out["cuda"], out["cpu"]
    assert sc_gpu.table["error"].fillna("").tolist() == sc_cpu.table["error"].fillna("").tolist()
    keys = ["image_id", "category"]
    a = res_cpu.predictions.sort_values(keys + ["score"]).reset_index(drop=True)
    b = res_gpu.predictions.sort_values(keys + ["score"]).reset_index(drop=True)
    assert len(a) > 300 and abs(len(a) - len(b)) <= 0.02 * len(a), (len(a), len(b))   # score-floor ties may differ
    # the boxes of each (image, class) both devices give as many of (nearly all): within a pixel
    n_a, n_b = a.groupby(keys).size(), b.groupby(keys).size()
    same = n_a.index[n_a.reindex(n_b.index).eq(n_b).reindex(n_a.index, fill_value=False).to_numpy()]
    assert len(same) >= 0.95 * len(n_a), (len(same), len(n_a))
    box = ["box_x_px", "box_y_px", "box_w_px", "box_h_px"]

    def pick(d):
        return d.set_index(keys).loc[same].reset_index().sort_values(keys + ["box_x_px"])[box].to_numpy(float)
    close = np.abs(pick(a) - pick(b)).max(axis=1) <= 1.0
    assert close.mean() >= 0.98, close.mean()
    assert abs(res_gpu.summary["metrics"]["map"] - res_cpu.summary["metrics"]["map"]) <= 0.01


def test_score_on_a_local_ray_cluster_puts_the_model_on_the_gpu_with_the_local_losses(tmp_path, capsys):
    """Issue 15 item 4: on a machine with a GPU, ``score --cluster local:N`` places one num_gpus=1 model actor on it
    (Pillow decoding on the CPU workers) and gives the local CPU path's losses (float16 autocast tolerance)."""
    pytest.importorskip("ray")
    import pandas as pd

    from inspect_core.cli_score import main
    model = str(MODEL_DIR / "model.pt2")
    local, clustered = tmp_path / "local", tmp_path / "cluster"
    assert main(["score", str(SAMPLE), "--model", model, "--out", str(local), "--no-cache", "--workers", "0",
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["score", str(SAMPLE), "--model", model, "--out", str(clustered), "--workspace", str(tmp_path / "ws"),
                 "--cluster", "local:4"]) == 0
    text = capsys.readouterr().out
    assert "1 model worker(s) on GPU" in text, text
    a, b = pd.read_parquet(local / "scores.parquet"), pd.read_parquet(clustered / "scores.parquet")
    assert a["image_id"].tolist() == b["image_id"].tolist() and len(a) > 300
    assert a["error"].fillna("").tolist() == b["error"].fillna("").tolist()
    ok = a["error"].isna().to_numpy()
    np.testing.assert_allclose(b["loss"].to_numpy(float)[ok], a["loss"].to_numpy(float)[ok], atol=5e-2, rtol=5e-2)
