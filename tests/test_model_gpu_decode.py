"""GPU JPEG decoding (inspect_core/model/gpu_decode.py) on the CPU: the plumbing with a Pillow-based stand-in for
torchvision's decode_jpeg, ``preprocess.geometry_tensor`` against Pillow's ``geometry``, and the decoder choice.
The real nvJPEG path is checked on a GPU by tests/test_model_cuda.py."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from inspect_core.model import gpu_decode as G
from inspect_core.model import cache as score_cache
from inspect_core.model import pipeline
from inspect_core.model import runtime
from inspect_core.model.models import LoadedModel
from inspect_core.model.preprocess import (Preprocess, geometry, geometry_tensor, image_to_pixels, rgb_to_l_tensor,
                                     what_the_model_sees)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
CLASSES = ("red", "green", "blue")


def _sample_images(n: int = 4) -> list[Image.Image]:
    """Real-looking pictures: sample_data JPEGs (anti-aliased shapes on textured backgrounds), RGB."""
    files = sorted((SAMPLE / "train").glob("*/*.jpg"))[::25][:n]
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(im.convert("RGB"))
    assert len(out) == n
    return out


def _chw(image: Image.Image) -> torch.Tensor:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _geo_spec(resize: str, interpolation: str, size=(96, 72)) -> Preprocess:
    return Preprocess(input_size=size, class_names=("a", "b"), resize=resize, interpolation=interpolation,
                      resize_shorter_px=max(size) + 9 if resize == "shorter_then_center_crop" else None)


# ------------------------------------------------------------------------------------------ geometry_tensor
# Measured on the sample's JPEGs and odd-sized crops of them (this test): nearest and center_crop identical to
# Pillow; bilinear max 1 level (mean about 0.1); bicubic max a few levels (mean about 0.1) where Pillow's uint8
# rounding between its two passes clips an overshoot.
TOLERANCE = {"nearest": (0, 0.0), "bilinear": (1, 0.25), "bicubic": (8, 0.3)}


@pytest.mark.parametrize("resize", ["stretch", "shorter_then_center_crop", "center_crop", "letterbox"])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_geometry_tensor_matches_pillow_geometry(resize, interpolation):
    images = _sample_images()
    images += [images[0].crop((3, 5, 206, 156)), images[1].crop((0, 0, 41, 97)), images[2].resize((61, 45))]
    worst, means = 0, []
    for size in [(96, 72), (224, 224), (40, 64)]:
        spec = _geo_spec(resize, interpolation, size)
        for im in images:
            want = np.asarray(geometry(im, spec)).astype(np.int16)
            got = geometry_tensor(_chw(im), spec).numpy().transpose(1, 2, 0).astype(np.int16)
            assert got.shape == want.shape
            diff = np.abs(got - want)
            worst, means = max(worst, int(diff.max())), means + [float(diff.mean())]
    max_ok, mean_ok = TOLERANCE["nearest" if resize == "center_crop" else interpolation]
    assert worst <= max_ok and np.mean(means) <= mean_ok, (worst, np.mean(means))


def test_geometry_tensor_on_a_batch_equals_one_by_one():
    images = [im.resize((120, 90)) for im in _sample_images(3)]
    spec = _geo_spec("shorter_then_center_crop", "bilinear")
    batch = geometry_tensor(torch.stack([_chw(im) for im in images]), spec)
    assert batch.shape == (3, 3, 72, 96) and batch.dtype == torch.uint8
    for k, im in enumerate(images):
        assert torch.equal(batch[k], geometry_tensor(_chw(im), spec))


def test_rgb_to_l_tensor_is_pillows_conversion():
    im = _sample_images(1)[0]
    got = rgb_to_l_tensor(_chw(im))
    assert got.shape == (1, im.height, im.width)
    assert np.array_equal(got[0].numpy(), np.asarray(im.convert("L")))


# ---------------------------------------------------------------------------------------------- JPEG sniffing
def _jpeg_bytes(mode: str = "RGB", size=(48, 36), colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode != "L" else 120).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _header_only_jpeg() -> bytes:
    """A JPEG whose header is fine (3 components, end marker present) but holds no image data: Pillow and the
    decoder both refuse it."""
    data = _jpeg_bytes()
    i = data.find(b"\xff\xc0")
    return data[:i + 2 + int.from_bytes(data[i + 2:i + 4], "big")] + b"\x00" * 50 + b"\xff\xd9"


def test_only_complete_rgb_or_grey_jpegs_go_to_the_gpu():
    arr = lambda b: np.frombuffer(b, dtype=np.uint8)   # noqa: E731
    rgb, grey, cmyk = _jpeg_bytes(), _jpeg_bytes("L"), _jpeg_bytes("CMYK", colour=(0, 200, 200, 0))
    assert G.jpeg_frame(rgb)[0] == 3 and G.jpeg_frame(grey)[0] == 1 and G.jpeg_frame(cmyk)[0] == 4
    assert G.gpu_decodable(arr(rgb)) and G.gpu_decodable(arr(grey))
    assert not G.gpu_decodable(arr(cmyk))                              # Pillow's CMYK conversion, not nvJPEG's
    assert not G.gpu_decodable(arr(rgb[: len(rgb) // 2]))              # truncated: Pillow's error
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    assert not G.gpu_decodable(arr(png.getvalue())) and not G.gpu_decodable(arr(b"\xff\xd8"))


def test_frame_header_after_large_camera_blocks_and_the_pillow_size_limit(monkeypatch):
    arr = lambda b: np.frombuffer(b, dtype=np.uint8)   # noqa: E731
    plain = _jpeg_bytes(size=(48, 36))
    assert G.jpeg_frame(plain) == (3, 48, 36)
    # an APP2 block (ICC profiles are stored so) of 60 KB, twice: the frame header lies past the first 64 KB
    app2 = b"\xff\xe2" + (65533).to_bytes(2, "big") + b"\0" * 65531
    camera = plain[:2] + app2 + app2 + plain[2:]
    assert G.jpeg_frame(camera) == (3, 48, 36) and G.gpu_decodable(arr(camera))
    # above Pillow's decompression-bomb limit: left to Pillow (its size check), never sent to the GPU
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 36 - 1)
    assert not G.gpu_decodable(arr(plain))


# ------------------------------------------------------------------------------------------- decoder choice
def _fake_decoder(calls: list):
    """Stands in for torchvision's decode_jpeg: Pillow-decodes each JPEG into uint8 RGB (3, H, W) on the device;
    like nvJPEG's batched call it raises when any file of the batch is bad; it refuses 33-px-wide images (as nvJPEG
    refuses some valid files) so the per-file fallback to Pillow is exercised on a good file too."""
    def decode(datas, device):
        calls.append(len(datas))
        out = []
        for d in datas:
            assert d.dtype == torch.uint8 and d.dim() == 1
            with Image.open(io.BytesIO(d.numpy().tobytes())) as im:
                if im.width == 33:
                    raise RuntimeError("nvjpeg: unsupported")
                out.append(_chw(im.convert("RGB")).to(device))
        return out
    return decode


def test_plan_decoder_choices(monkeypatch):
    spec = _geo_spec("stretch", "bilinear")
    cpu = torch.device("cpu")
    assert G.plan_decoder("pillow", cpu, spec) == G.DecoderPlan("pillow", None)
    auto = G.plan_decoder("auto", cpu, spec)
    assert auto.name == "pillow" and auto.decode is None and auto.note is None      # auto on a CPU: quietly Pillow
    gpu = G.plan_decoder("gpu", cpu, spec)
    assert gpu.name == "pillow" and "not a CUDA GPU" in gpu.note
    with pytest.raises(ValueError, match="not one of"):
        G.plan_decoder("libjpeg-turbo", cpu, spec)
    fake = _fake_decoder([])
    monkeypatch.setattr(G, "available_decoder", lambda device: fake)
    assert G.plan_decoder("auto", cpu, spec) == G.DecoderPlan("nvjpeg", fake)
    assert G.plan_decoder("nvjpeg", cpu, spec).name == "nvjpeg"
    assert G.plan_decoder("pillow", cpu, spec).name == "pillow"                       # the caller turned it off
    exif = Preprocess(input_size=(8, 8), class_names=("a", "b"), exif_transpose=True)
    assert G.plan_decoder("auto", cpu, exif).name == "pillow"
    assert "EXIF" in G.plan_decoder("gpu", cpu, exif).note


def test_no_torchvision_or_no_cuda_means_pillow(monkeypatch):
    G.torchvision_decode.cache_clear()
    monkeypatch.setitem(sys.modules, "torchvision", None)          # import torchvision -> ImportError
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    try:
        assert G.torchvision_decode() is None
        assert G.available_decoder(torch.device("cpu")) is None
        assert G.available_decoder("cuda:0") is None                 # no CUDA here, or no torchvision
        assert runtime.runtime_settings("cpu").decoder == "auto"
        assert runtime.RuntimeSettings("cpu", 0, False, False, False, None, 4).decoder == "auto"
    finally:
        G.torchvision_decode.cache_clear()


# ---------------------------------------------------------------------------------------------- the plumbing
class MeanColourNet(nn.Module):
    """Logits = 10 x the mean of each channel (after normalisation): the answer is known for solid colours."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(3) * 10)
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(x.mean(dim=(2, 3)))


def _model(spec: Preprocess) -> LoadedModel:
    return LoadedModel(module=MeanColourNet().eval(), kind="state_dict", path=Path("colour.pt"), file_sha256="abc",
                       device=torch.device("cpu"), spec=spec, factory="x:y")


def _mixed_dataset(root: Path) -> pd.DataFrame:
    """JPEGs of three sizes, a grey JPEG, a 33-px JPEG the fake decoder refuses, a PNG, a CMYK JPEG, a truncated
    JPEG, a header-only JPEG, a missing file, a path outside the root."""
    colours = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
    rows = []

    def add(image_id: str, data: bytes | None, label: str):
        if data is not None:
            (root / image_id).parent.mkdir(parents=True, exist_ok=True)
            (root / image_id).write_bytes(data)
        rows.append({"image_id": image_id, "label": label, "split": "train"})

    for cls, colour in colours.items():
        for k, size in enumerate([(48, 36), (48, 36), (64, 40), (30, 50)]):
            add(f"{cls}/{cls}_{k}.jpg", _jpeg_bytes(size=size, colour=colour), cls)
        png = io.BytesIO()
        Image.new("RGB", (40, 30), colour).save(png, "PNG")
        add(f"{cls}/{cls}.png", png.getvalue(), cls)
    add("red/refused_by_gpu.jpg", _jpeg_bytes(size=(33, 20), colour=colours["red"]), "red")
    add("green/grey.jpg", _jpeg_bytes("L"), "green")
    add("blue/cmyk.jpg", _jpeg_bytes("CMYK", colour=(220, 220, 0, 0)), "blue")
    good = _jpeg_bytes(size=(64, 48))
    add("red/truncated.jpg", good[: len(good) // 2], "red")
    add("red/header_only.jpg", _header_only_jpeg(), "red")
    add("red/missing.jpg", None, "red")
    add("../outside.jpg", None, "red")
    return pd.DataFrame(rows)


@pytest.mark.parametrize("workers", [0, 1])
def test_gpu_path_scores_like_pillow_with_the_same_errors(tmp_path, monkeypatch, workers):
    root = tmp_path / "data"
    images = _mixed_dataset(root)
    spec = Preprocess(input_size=(16, 12), class_names=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3)
    calls: list[int] = []
    monkeypatch.setattr(G, "available_decoder", lambda device: _fake_decoder(calls))
    model = _model(spec)
    ref = pipeline.score_dataset(model, root, images, workers=0, batch_size=8, decoder="pillow")
    assert not calls and ref.source["decoder"] == "pillow"
    res = pipeline.score_dataset(model, root, images, workers=workers, batch_size=8, decoder="auto")
    assert res.source["decoder"] == "nvjpeg" and calls
    # the same rows fail, with the same words: a broken file reads "unreadable: ..." whichever decoder ran
    assert res.table["error"].fillna("").tolist() == ref.table["error"].fillna("").tolist()
    errors = dict(zip(images["image_id"], res.table["error"]))
    for bad in ("red/truncated.jpg", "red/header_only.jpg", "red/missing.jpg"):
        assert str(errors[bad]).startswith("unreadable: "), errors[bad]
    assert "outside the dataset root" in str(errors["../outside.jpg"])
    ok = res.table["error"].isna().to_numpy()
    assert ok.sum() == len(images) - 4
    np.testing.assert_allclose(res.probs[ok], ref.probs[ok], atol=2e-3)
    assert (res.table["pred_label"][ok] == ref.table["pred_label"][ok]).all()
    # the header-only JPEG spoils its batch (retried file by file) and, like the 33-px one, is refused one by one
    assert any(n > 1 for n in calls) and calls.count(1) >= 2
    assert any("could not decode were decoded with Pillow" in note for note in res.notes)
    assert any("nvJPEG" in note for note in res.notes)


def test_decode_batch_pixels_and_channel_orders(tmp_path):
    """Pixels from decode_batch = Pillow's to a rounding step; BGR and L as image_to_pixels gives them; a non-JPEG
    payload passes through; a refused JPEG falls back to Pillow from its file."""
    photo = _sample_images(1)[0]
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=92)
    refused = tmp_path / "narrow.jpg"
    photo.resize((33, 40)).save(refused, quality=92)
    for order in ("RGB", "BGR", "L"):
        n_ch = 1 if order == "L" else 3
        spec = Preprocess(input_size=(64, 48), class_names=("a", "b"), resize="shorter_then_center_crop",
                          resize_shorter_px=70, channel_order=order, mean=(0.5,) * n_ch, std=(0.5,) * n_ch)
        data, jpeg = G.read_payload(path, spec)
        assert jpeg and data.dtype == np.uint8 and data.ndim == 1
        with Image.open(path) as im:
            want = image_to_pixels(im, spec)
        with Image.open(refused) as im:
            want_refused = image_to_pixels(im, spec)
        calls: list[int] = []
        payloads = [torch.from_numpy(data), torch.from_numpy(want.copy()),
                    torch.from_numpy(G.read_payload(refused, spec)[0])]
        paths = [path, None, refused]
        pixels, errors, n_fallback = G.decode_batch(payloads, [True, False, True], spec, torch.device("cpu"),
                                                    _fake_decoder(calls), path_of=lambda k: paths[k])
        assert pixels.shape == (3, n_ch, 48, 64) and errors == ["", "", ""] and n_fallback == 1
        assert int((pixels[0].numpy().astype(int) - want).__abs__().max()) <= 1
        assert np.array_equal(pixels[1].numpy(), want) and np.array_equal(pixels[2].numpy(), want_refused)


def test_score_cache_key_and_cache_hold_the_decoder(tmp_path, monkeypatch):
    root = tmp_path / "data"
    images = _mixed_dataset(root).head(6)
    spec = Preprocess(input_size=(16, 12), class_names=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert score_cache.score_cache_key("m", spec, "d", True, "pillow") != score_cache.score_cache_key("m", spec, "d", True, "nvjpeg")
    assert score_cache.score_cache_key("m", spec, "d", True) == score_cache.score_cache_key("m", spec, "d", True, "pillow")
    model = _model(spec)
    ws = tmp_path / "ws"
    plain = pipeline.score_dataset(model, root, images, workspace=ws, workers=0, decoder="auto")     # CPU: Pillow
    assert plain.source["decoder"] == "pillow"
    calls: list[int] = []
    monkeypatch.setattr(G, "available_decoder", lambda device: _fake_decoder(calls))
    assert pipeline.cached_scores(model, root, images, ws) is None          # auto now means nvJPEG: not scored yet
    gpu = pipeline.score_dataset(model, root, images, workspace=ws, workers=0, decoder="gpu")
    assert gpu.source["decoder"] == "nvjpeg" and gpu.source["cache_key"] != plain.source["cache_key"] and calls
    again = pipeline.cached_scores(model, root, images, ws, decoder="gpu")
    assert again is not None and again.from_cache and again.source["decoder"] == "nvjpeg"
    back = pipeline.cached_scores(model, root, images, ws, decoder="pillow")
    assert back is not None and back.source["decoder"] == "pillow"
    assert back.source["cache_key"] == plain.source["cache_key"]


def test_what_the_model_sees_uses_the_scoring_decoder(tmp_path, monkeypatch):
    photo = _sample_images(1)[0]
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=92)
    spec = Preprocess(input_size=(64, 48), class_names=("a", "b"), resize="letterbox")
    arr_pil, _ = what_the_model_sees(path, spec)
    arr, picture, note = G.what_the_model_sees_as(path, spec, "pillow", "cpu")
    assert note is None and np.array_equal(arr, arr_pil)
    # nvJPEG scores but no GPU decoder on this machine: Pillow's view, and a note saying so
    monkeypatch.setattr(G, "available_decoder", lambda device: None)
    arr, _, note = G.what_the_model_sees_as(path, spec, "nvjpeg", "cuda:0")
    assert np.array_equal(arr, arr_pil) and "Pillow" in note and "rounding step" in note
    # a PNG was decoded by Pillow while scoring too: no note that the model saw nvJPEG's pixels
    photo.save(tmp_path / "photo.png")
    assert G.what_the_model_sees_as(tmp_path / "photo.png", spec, "nvjpeg", "cuda:0")[2] is None
    # with the decoder available: the scoring code's pixels (a rounding step from Pillow's)
    monkeypatch.setattr(G, "available_decoder", lambda device: _fake_decoder([]))
    arr, picture, note = G.what_the_model_sees_as(path, spec, "nvjpeg", "cpu")
    assert note is None and arr.shape == arr_pil.shape and picture.size == (64, 48)
    assert 0 < np.abs(arr - arr_pil).max() <= 1.01 / 255 / min(spec.std)
    # an unreadable file raises (the page shows "Cannot read this image")
    (tmp_path / "bad.jpg").write_bytes(_header_only_jpeg())
    with pytest.raises(OSError, match="unreadable"):
        G.what_the_model_sees_as(tmp_path / "bad.jpg", spec, "nvjpeg", "cpu")


def test_cli_takes_the_decoder_knob():
    import argparse

    from inspect_core import cli_score
    parser = argparse.ArgumentParser()
    cli_score.add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["score", "root", "--out", "o"]).decoder == "auto"
    assert parser.parse_args(["score", "root", "--out", "o", "--decoder", "gpu"]).decoder == "gpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["score", "root", "--out", "o", "--decoder", "turbo"])


def test_gpu_path_falls_back_to_float32_when_mixed_precision_fails(tmp_path, monkeypatch):
    root = tmp_path / "data"
    images = _mixed_dataset(root).head(8)
    spec = Preprocess(input_size=(16, 12), class_names=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3)
    monkeypatch.setattr(G, "available_decoder", lambda device: _fake_decoder([]))
    real = pipeline._launch_batch

    def flaky(m, x, st, tap):
        if st.use_amp:
            raise RuntimeError("autocast not supported by this op")
        return real(m, x, st, tap)

    monkeypatch.setattr(pipeline, "_launch_batch", flaky)
    settings = runtime.RuntimeSettings("cpu", 0, False, False, True, "bfloat16", 3, decoder="gpu")
    logits, _, errors, notes = pipeline.model_outputs(_model(spec), root, list(images["image_id"]), settings=settings)
    assert any("mixed precision failed" in n for n in notes)
    ok = [e is None for e in errors]
    assert sum(ok) == 8 and np.isfinite(logits[ok]).all()


def test_cancel_stops_the_gpu_decode_thread(tmp_path, monkeypatch):
    import threading
    root = tmp_path / "data"
    images = _mixed_dataset(root)
    spec = Preprocess(input_size=(16, 12), class_names=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3)
    monkeypatch.setattr(G, "available_decoder", lambda device: _fake_decoder([]))
    seen: list[int] = []
    with pytest.raises(pipeline.ScoringCancelled):
        pipeline.score_dataset(_model(spec), root, images, workers=0, batch_size=2, decoder="gpu",
                        progress=lambda done, total: seen.append(done), cancel=lambda: len(seen) >= 2)
    assert seen == [2, 4]
    assert not [t for t in threading.enumerate() if t.name == "di-gpu-decode" and t.is_alive()]


def test_decoder_caption_names_the_decoder():
    pytest.importorskip("streamlit")          # the UI module; a bare GPU box may lack the app's packages
    from inspect_core.ui.model_triage import decoder_caption
    assert "nvJPEG" in decoder_caption({"kind": "state_dict", "decoder": "nvjpeg", "device": "cuda:0"})
    assert "Pillow" in decoder_caption({"kind": "state_dict", "decoder": "pillow"})
    assert decoder_caption({"kind": "predictions"}) is None and decoder_caption(None) is None
