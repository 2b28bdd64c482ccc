"""Broken or unusual preprocessing input: specs with bad fields and images with more than 8 bits per pixel.

Every bad spec must raise ``PreprocessError`` with one line naming the field; 16-bit, 32-bit integer and float
images must reach the model as the same picture as their 8-bit version (not a solid white or black one).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from inspect_core.model.preprocess import (MAX_SIDE_PX, Preprocess, PreprocessError, decode_array, image_to_pixels,
                                     load_image_file, read_preprocess, what_the_model_sees)

BASE = {"input_size": [16, 12], "class_names": ["a", "b"], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _spec(**kw) -> Preprocess:
    return Preprocess.from_dict({**BASE, **kw})


def _error(match: str, **kw) -> str:
    with pytest.raises(PreprocessError, match=match) as info:
        _spec(**kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# -- input_size ---------------------------------------------------------------------------------------------------
def test_input_size_as_width_height_object_is_accepted(tmp_path):
    assert _spec(input_size={"width": 96, "height": 72}).input_size == (96, 72)
    path = tmp_path / "m.preprocess.json"
    path.write_text(json.dumps({**BASE, "input_size": {"width": 96, "height": 72}}))
    spec = read_preprocess(path)
    assert spec.input_size == (96, 72) and spec.input_shape == (3, 72, 96)
    assert spec.to_dict()["input_size"] == [96, 72]        # saved back in the canonical form


@pytest.mark.parametrize("size", [{"w": 96, "h": 72}, {"width": 96}, {"width": 96, "height": 72, "depth": 3},
                                  "96", "96x72", [96], [96, 72, 3], [96.5, 72], [True, 72], None, ["96", "72"]])
def test_bad_input_size_names_the_field_and_the_accepted_forms(size):
    msg = _error("input_size", input_size=size)
    assert "[width, height]" in msg


def test_input_size_integral_float_is_accepted():
    assert _spec(input_size=[96.0, 72.0]).input_size == (96, 72)


@pytest.mark.parametrize("size", [[8192, 8192], [MAX_SIDE_PX + 1, 10], [10, MAX_SIDE_PX + 1], [0, 10], [10, -3]])
def test_input_size_out_of_range_names_value_and_limit(size):
    msg = _error("input_size", input_size=size)
    assert str(MAX_SIDE_PX) in msg and str(max(size, key=abs)) in msg


def test_input_size_at_the_limit_is_accepted():
    assert MAX_SIDE_PX == 4096
    assert _spec(input_size=[MAX_SIDE_PX, MAX_SIDE_PX]).input_size == (4096, 4096)


@pytest.mark.parametrize("shorter", [MAX_SIDE_PX + 1, 100000, 0, -5, "abc", 20.5, True])
def test_bad_resize_shorter_px_is_rejected(shorter):
    msg = _error("resize_shorter_px", input_size=[16, 12], resize="shorter_then_center_crop",
                 resize_shorter_px=shorter)
    if isinstance(shorter, int) and not isinstance(shorter, bool) and shorter > MAX_SIDE_PX:
        assert str(MAX_SIDE_PX) in msg and str(shorter) in msg


def test_resize_shorter_px_in_range_is_accepted():
    spec = _spec(input_size=[16, 12], resize="shorter_then_center_crop", resize_shorter_px=MAX_SIDE_PX)
    assert spec.resize_shorter_px == MAX_SIDE_PX
    assert _spec(resize_shorter_px=None).resize_shorter_px is None


# -- mean / std ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["mean", "std"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_mean_or_std_is_rejected(field, bad):
    _error(field, **{field: [0.5, bad, 0.5]})
    _error(field, **{field: bad})                          # one number for every channel


def test_nan_std_in_a_sidecar_file_is_rejected(tmp_path):
    path = tmp_path / "m.preprocess.json"
    path.write_text(json.dumps({**BASE, "std": [float("nan")] * 3}))     # Python writes the NaN literal
    assert "NaN" in path.read_text()
    with pytest.raises(PreprocessError, match="std"):
        read_preprocess(path)


def test_non_finite_mean_is_rejected_by_validate_on_a_built_spec():
    spec = Preprocess(input_size=(8, 8), class_names=("a", "b"), mean=(0.5, float("nan"), 0.5))
    with pytest.raises(PreprocessError, match="mean"):
        spec.validate()


@pytest.mark.parametrize("field", ["mean", "std"])
@pytest.mark.parametrize("bad", [["x", 0.5, 0.5], [True, 0.5, 0.5], [[0.5], 0.5, 0.5], {"r": 0.5}])
def test_non_numeric_mean_or_std_names_the_field(field, bad):
    _error(field, **{field: bad})


# -- booleans -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["false", "true", "False", "no", 0, 1, 0.0, [], {}])
def test_exif_transpose_must_be_a_json_boolean(value):
    msg = _error("exif_transpose", exif_transpose=value)
    assert "true or false" in msg


def test_exif_transpose_real_booleans_are_read_as_given(tmp_path):
    assert _spec(exif_transpose=True).exif_transpose is True
    assert _spec(exif_transpose=False).exif_transpose is False
    assert _spec().exif_transpose is False
    path = tmp_path / "m.preprocess.json"
    path.write_text('{"input_size": [16, 12], "class_names": ["a", "b"], "exif_transpose": false}')
    assert read_preprocess(path).exif_transpose is False


# -- images with more than 8 bits ---------------------------------------------------------------------------------
def _gradient8(width_px: int = 32, height_px: int = 24) -> np.ndarray:
    """A 2-D uint8 gradient spanning 0..255 exactly."""
    x = np.linspace(0, 1, width_px)[None, :]
    y = np.linspace(0, 1, height_px)[:, None]
    g = np.rint((x * 0.7 + y * 0.3) * 255).astype(np.uint8)
    assert g.min() == 0 and g.max() == 255
    return g


def _write_high_bit_files(tmp_path, g8: np.ndarray) -> dict[str, tuple]:
    """The same picture as 8-bit PNG (reference) and in every wider format; {name: (path, expected mode)}."""
    files = {}
    ref = tmp_path / "g8.png"
    Image.fromarray(g8).save(ref)
    files["ref"] = (ref, "L")
    p = tmp_path / "g16.png"
    Image.fromarray(g8.astype(np.uint16) * 257).save(p)                 # 16-bit PNG, 0..65535
    files["i16_png"] = (p, "I;16")
    p = tmp_path / "g16.tif"
    Image.fromarray(g8.astype(np.uint16) * 257).save(p)
    files["i16_tif"] = (p, "I;16")
    p = tmp_path / "g16b.tif"
    big = Image.frombytes("I;16B", (g8.shape[1], g8.shape[0]), (g8.astype(">u2") * 257).tobytes())
    big.save(p)
    files["i16b_tif"] = (p, None)                                        # Pillow may read it back as I;16 / I;16B
    p = tmp_path / "gi.tif"
    Image.fromarray(g8.astype(np.int32) * 1000 - 40000).save(p)          # 32-bit ints, negative offset
    files["i32_tif"] = (p, "I")
    p = tmp_path / "gf.tif"
    Image.fromarray(g8.astype(np.float32) / 255).save(p)                 # float 0..1
    files["f_tif"] = (p, "F")
    p = tmp_path / "gf_wide.tif"
    Image.fromarray(g8.astype(np.float32) * 3.5 - 100).save(p)           # float, any range
    files["f_wide_tif"] = (p, "F")
    return files


@pytest.mark.parametrize("order", ["RGB", "BGR", "L"])
@pytest.mark.parametrize("kind", ["i16_png", "i16_tif", "i16b_tif", "i32_tif", "f_tif", "f_wide_tif"])
def test_high_bit_images_match_their_8_bit_version(tmp_path, kind, order):
    g8 = _gradient8()
    files = _write_high_bit_files(tmp_path, g8)
    path, mode = files[kind]
    img = load_image_file(path)
    if mode is not None:
        assert img.mode == mode
    n_ch = 1 if order == "L" else 3
    spec = _spec(input_size=[32, 24], channel_order=order, mean=[0.5] * n_ch, std=[0.5] * n_ch,
                 interpolation="nearest")
    ref = image_to_pixels(load_image_file(files["ref"][0]), spec).astype(int)
    got = image_to_pixels(img, spec).astype(int)
    assert got.shape == ref.shape == (n_ch, 24, 32)
    assert got.std() > 50 and len(np.unique(got)) > 100                  # a gradient, not a solid picture
    assert np.abs(got - ref).max() <= 1
    # resized: the conversion comes before the resize, so the resized pictures agree too
    small = _spec(input_size=[13, 9], channel_order=order, mean=[0.5] * n_ch, std=[0.5] * n_ch)
    assert np.abs(image_to_pixels(img, small).astype(int)
                  - image_to_pixels(load_image_file(files["ref"][0]), small).astype(int)).max() <= 1
    # "what the model sees" goes through the same function
    arr, picture = what_the_model_sees(path, spec)
    _, ref_picture = what_the_model_sees(files["ref"][0], spec)
    assert np.abs(np.asarray(picture, dtype=int) - np.asarray(ref_picture, dtype=int)).max() <= 1
    assert np.asarray(decode_array(arr, spec)).std() > 50


def test_16_bit_values_map_by_their_high_byte():
    # I;16 keeps its absolute scale: a dark 16-bit picture stays dark (not stretched)
    values = np.array([[0, 255, 256, 1000, 32768, 65535]], dtype=np.uint16)
    spec = _spec(input_size=[6, 1], channel_order="L", mean=[0.5], std=[0.5], interpolation="nearest")
    got = image_to_pixels(Image.fromarray(values), spec)[0, 0]
    assert got.tolist() == [0, 0, 1, 3, 128, 255]


def test_32_bit_and_float_images_map_their_own_range():
    spec = _spec(input_size=[4, 1], channel_order="L", mean=[0.5], std=[0.5], interpolation="nearest")
    ints = Image.fromarray(np.array([[-10, 0, 10, 30]], dtype=np.int32))
    assert image_to_pixels(ints, spec)[0, 0].tolist() == [0, 64, 128, 255]
    floats = Image.fromarray(np.array([[2.0, 2.5, 3.0, 4.0]], dtype=np.float32))
    assert image_to_pixels(floats, spec)[0, 0].tolist() == [0, 64, 128, 255]
    # a constant picture becomes black, not an error or noise
    for const in (np.full((1, 4), 7, np.int32), np.full((1, 4), 0.25, np.float32)):
        assert image_to_pixels(Image.fromarray(const), spec).tolist() == [[[0, 0, 0, 0]]]
    # NaN counts as the minimum and +/-inf as the ends of the range; the finite values keep their spread
    odd = Image.fromarray(np.array([[np.nan, 1.0, 3.0, np.inf]], dtype=np.float32))
    assert image_to_pixels(odd, spec)[0, 0].tolist() == [0, 0, 255, 255]
    rgb = _spec(input_size=[4, 1], interpolation="nearest")
    assert image_to_pixels(floats, rgb)[:, 0].tolist() == [[0, 64, 128, 255]] * 3
