"""preprocess.py: the preprocessing spec, its sidecar file, and image decoding for the model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from inspect_core.model import pipeline
from inspect_core.model.models import load_model
from inspect_core.model.preprocess import Preprocess, PreprocessError, decode_array, image_to_array, read_preprocess
from model_support import MODEL_DIR, _spec, sample_spec


@pytest.fixture(scope="module")
def spec():
    return sample_spec()


def test_an_empty_image_file_is_named_as_empty(tmp_path, spec):
    from inspect_core.model.preprocess import load_image_file
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(OSError, match=r"empty file \(0 bytes\)"):
        load_image_file(empty)
    res = pipeline.score_dataset(load_model(MODEL_DIR / "model.pt2", spec), tmp_path,
                          pd.DataFrame({"image_id": ["empty.jpg"], "label": ["circle"]}), workers=0)
    assert "empty file (0 bytes)" in res.table["error"].iloc[0]


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


def test_the_suggested_sidecar_name_is_the_models_own():
    from inspect_core.model.preprocess import sidecar_candidates, sidecar_name
    assert sidecar_name("runs/net.v3.ts.pt") == "net.v3.preprocess.json"
    assert sidecar_name("model.pt2") == "model.preprocess.json" and sidecar_name("best.ckpt.pt") == "best.preprocess.json"
    # and the lookup tries it before any shorter name
    names = [c.name for c in sidecar_candidates(Path("runs/net.v3.ts.pt"))]
    assert names.index("net.v3.preprocess.json") < names.index("net.preprocess.json")


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
