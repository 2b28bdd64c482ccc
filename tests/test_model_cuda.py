"""The CUDA path on a real GPU. Skipped where torch sees no CUDA device (CI has none); run on a GPU box with
``python -m pytest -q tests/test_model_cuda.py``. Every branch that needs no GPU is covered on the CPU by
test_model_scoring.py and test_model_loading.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspect_core import models as M
from inspect_core.preprocess import image_to_array, image_to_pixels, load_image_file, normalize_batch, read_preprocess

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
    from inspect_core.scoring import score_dataset
    gpu = M.load_model(MODEL_DIR / name, spec, factory=factory, device="cuda")
    cpu = M.load_model(MODEL_DIR / name, spec, factory=factory, device="cpu")
    assert gpu.device.type == "cuda"
    res_gpu = score_dataset(gpu, SAMPLE, images, use_cache=False, workers=2)     # pinned memory, workers, fp16
    res_cpu = score_dataset(cpu, SAMPLE, images, use_cache=False, workers=0)
    ok = res_cpu.table["error"].isna().to_numpy()
    assert ok.sum() > 300 and np.array_equal(ok, res_gpu.table["error"].isna().to_numpy())
    np.testing.assert_allclose(res_gpu.probs[ok], res_cpu.probs[ok], atol=2e-2)   # float16 autocast vs float32
    agree = (res_gpu.probs[ok].argmax(1) == res_cpu.probs[ok].argmax(1)).mean()
    assert agree >= 0.99


def test_batch_independence_holds_on_cuda(spec, images):
    from inspect_core.sanity import batch_independence
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
