"""Optional JPEG decoding on the GPU for scoring: nvJPEG through ``torchvision.io.decode_jpeg``.

CPU JPEG decoding in the loader's workers is what limits scoring on a GPU (bench/bench_scoring.py). When the model is
on a CUDA device, ``torchvision.io.decode_jpeg`` imports, and the preprocessing spec is one this module can apply in
torch (no EXIF transpose), the workers only read each file's bytes; the main process decodes a batch of JPEGs on the
GPU in one call, resizes / crops them there (``preprocess.geometry_tensor``, Pillow's geometry) and hands uint8 pixels
to ``normalize_batch`` as before (scoring.model_outputs: a background thread on its own CUDA stream decodes up to two
batches ahead while the model runs on another stream). Everything else goes through the Pillow path (``preprocess.image_to_pixels``):
non-JPEG files and JPEGs that look truncated or CMYK (in the worker), and every JPEG nvJPEG refuses (in the main
process, file by file), so a broken file gives the same ``unreadable: ...`` error as with Pillow.

torchvision is never a dependency: it is imported lazily, and any failure to import it means "not available".
"""
from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Callable, Sequence

import numpy as np

from ..paths import is_regular_file
from .preprocess import (Preprocess, decode_array, geometry_tensor, image_to_pixels, load_image_file,
                         normalize_batch, rgb_to_l_tensor)

if TYPE_CHECKING:   # torch is imported where it is used: importing this module stays cheap
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

DECODER_CHOICES = ("auto", "pillow", "gpu")
PILLOW = "pillow"       # the decoder names recorded with the scores (and in the score cache key)
NVJPEG = "nvjpeg"
JPEG_MAGIC = b"\xff\xd8\xff"
EOI_TAIL_BYTES = 256    # a JPEG whose end-of-image marker is not in its last bytes is left to Pillow (truncated?)

# decode(list of 1-D uint8 CPU tensors (file bytes), device) -> list of uint8 (3, H, W) RGB tensors on the device;
# raises when it cannot decode. torchvision's decode_jpeg in production; tests inject a Pillow-based stand-in.
DecodeFn = Callable[[Sequence["torch.Tensor"], "torch.device"], Sequence["torch.Tensor"]]


@dataclass(frozen=True)
class DecoderPlan:
    name: str                    # PILLOW or NVJPEG: what produced the pixels
    decode: DecodeFn | None      # None for PILLOW
    note: str | None = None      # why an asked-for GPU decoder is not used


def error_text(exc: BaseException) -> str:
    """The one-line error of an unreadable file (the same words as the Pillow path's)."""
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return f"unreadable: {text}"


# -- availability ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def torchvision_decode() -> DecodeFn | None:
    """torchvision's batched nvJPEG decoder, or None when torchvision does not import (or fails in any way)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as exc:  # noqa: BLE001 - an absent or broken torchvision only means "not available"
        log.debug("torchvision.io.decode_jpeg not available: %s", exc)
        return None

    def decode(datas, device):
        return list(decode_jpeg(list(datas), mode=ImageReadMode.RGB, device=device))

    return decode


def available_decoder(device) -> DecodeFn | None:
    """The GPU decoder for a model on ``device``: only on an available CUDA device with torchvision importable."""
    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return None
    try:
        import torch
        if not torch.cuda.is_available():
            return None
    except Exception:  # noqa: BLE001
        return None
    return torchvision_decode()


def unsupported_reason(spec: Preprocess) -> str | None:
    """Why the GPU path cannot apply this spec exactly as Pillow does, or None when it can."""
    if spec.exif_transpose:
        return "the preprocessing applies the EXIF orientation"
    if spec.channel_order not in ("RGB", "BGR", "L"):
        return f"channel order {spec.channel_order}"
    if spec.resize not in ("stretch", "shorter_then_center_crop", "center_crop", "letterbox"):
        return f"resize {spec.resize}"
    if spec.interpolation not in ("nearest", "bilinear", "bicubic"):
        return f"interpolation {spec.interpolation}"
    return None


def plan_decoder(choice: str | None, device, spec: Preprocess) -> DecoderPlan:
    """Which decoder scores with: "pillow" always Pillow; "auto" nvJPEG when the model is on CUDA, torchvision's
    decode_jpeg imports and the spec is supported, else Pillow; "gpu" the same, with a note saying why not when it
    falls back (one bad setting never stops a run). "nvjpeg" is read as "gpu"."""
    choice = (choice or "auto").strip().lower()
    if choice == NVJPEG:
        choice = "gpu"
    if choice not in DECODER_CHOICES:
        raise ValueError(f"decoder {choice!r} is not one of {', '.join(DECODER_CHOICES)}")
    if choice == PILLOW:
        return DecoderPlan(PILLOW, None)
    reason = unsupported_reason(spec)
    decode = None
    if reason is None:
        decode = available_decoder(device)
        if decode is None:
            on_cuda = getattr(device, "type", str(device)) == "cuda"
            reason = ("torchvision.io.decode_jpeg is not available (install torchvision built for this torch)"
                      if on_cuda else f"the model is on {device}, not a CUDA GPU")
    if decode is None:
        note = f"GPU JPEG decoding asked for but not used: {reason}; images decoded with Pillow" \
            if choice == "gpu" else None
        return DecoderPlan(PILLOW, None, note)
    return DecoderPlan(NVJPEG, decode)


# -- in the loader's workers ---------------------------------------------------------------------------
def jpeg_frame(data: np.ndarray | bytes) -> tuple[int, int, int] | None:
    """(colour components, width_px, height_px) of a JPEG from its frame header (SOFn), or None when the header
    cannot be read. The whole file is searched: a camera's EXIF or ICC blocks can push the header far in."""
    buf = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:              # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(buf[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 >= len(buf):
                return None
            height_px = int.from_bytes(buf[pos + 5:pos + 7], "big")
            width_px = int.from_bytes(buf[pos + 7:pos + 9], "big")
            return buf[pos + 9], width_px, height_px
        if marker in (0xDA, 0xD9) or length < 2:
            return None
        pos += 2 + length
    return None


def gpu_decodable(data: np.ndarray) -> bool:
    """A JPEG (magic bytes FF D8 FF) with its end-of-image marker, 1 or 3 colour components and no more pixels
    than Pillow's decompression-bomb limit: nvJPEG decodes it as Pillow would. Truncated, CMYK, oversized or
    unparsable JPEGs are left to Pillow (its errors, its colour conversion, its size limit)."""
    if data.size < 4 or data[:3].tobytes() != JPEG_MAGIC:
        return False
    if b"\xff\xd9" not in data[-EOI_TAIL_BYTES:].tobytes():
        return False
    frame = jpeg_frame(data)
    if frame is None or frame[0] not in (1, 3):
        return False
    from PIL import Image
    limit = Image.MAX_IMAGE_PIXELS
    return limit is None or frame[1] * frame[2] <= limit


def read_payload(path: Path | str, spec: Preprocess) -> tuple[np.ndarray, bool]:
    """What a worker hands over for one file: ``(file bytes, True)`` for a JPEG the GPU decodes, else
    ``(uint8 pixels (C, H, W) from the Pillow path, False)``. Raises on unreadable files like ``load_image_file``."""
    if not is_regular_file(path):
        load_image_file(path)           # raises its "file missing" / "not a regular file" error
    data = np.fromfile(path, dtype=np.uint8)
    if gpu_decodable(data):
        return data, True
    return image_to_pixels(load_image_file(path), spec), False     # the Pillow path, its errors word for word


# -- in the main process ---------------------------------------------------------------------------------
def _pillow_pixels(data: torch.Tensor, spec: Preprocess, path: Path | str | None) -> np.ndarray:
    """The Pillow path for a JPEG the GPU refused: from its file (the same error text as ever) or its bytes."""
    if path is not None:
        return image_to_pixels(load_image_file(path), spec)
    from PIL import Image
    with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
        img.load()
        return image_to_pixels(img, spec)


DECODE_CHUNK = 32   # JPEGs per decoder call: a bad file spoils only its chunk, and other threads run between calls


def _decode_chunk(datas: list, device, decode: DecodeFn) -> list:
    """One batched decode; when it raises (one bad file spoils the batch), file by file. None where it failed."""
    def valid(t) -> bool:
        return getattr(t, "dim", lambda: 0)() == 3 and t.shape[0] == 3 and t.shape[1] > 0 and t.shape[2] > 0

    if not datas:
        return []
    try:
        out = list(decode(datas, device))
        if len(out) == len(datas):
            return [t if valid(t) else None for t in out]
    except Exception as exc:  # noqa: BLE001 - retried one by one below
        log.debug("batched JPEG decode failed (%s); decoding file by file", exc)
    single = []
    for data in datas:
        try:
            t = list(decode([data], device))[0]
            single.append(t if valid(t) else None)
        except Exception:  # noqa: BLE001 - this file goes to Pillow
            single.append(None)
    return single


def decode_batch(payloads: Sequence[torch.Tensor], is_jpeg: Sequence[bool], spec: Preprocess, device,
                 decode: DecodeFn, path_of: Callable[[int], Path | str | None] | None = None
                 ) -> tuple[torch.Tensor, list[str], int]:
    """Pixels for one loader batch on ``device``: ``(uint8 (N, C, H, W), errors, n_pillow_fallbacks)``.

    ``payloads[k]`` is a JPEG's bytes (``is_jpeg[k]``) or pixels already made by the Pillow path. JPEGs are decoded
    together, then grouped by size so one interpolate call resizes each group; a JPEG the decoder refuses is decoded
    with Pillow here, from its file ``path_of(k)`` when given (``errors[k]`` = "unreadable: ..." when Pillow cannot
    either; its row stays zeros)."""
    import torch
    n = len(payloads)
    out = torch.zeros((n,) + spec.input_shape, dtype=torch.uint8, device=device)
    errors = [""] * n
    jpeg_rows = [k for k in range(n) if is_jpeg[k]]
    n_fallback = 0
    # DECODE_CHUNK files at a time, each chunk resized before the next is decoded: only that many full-size
    # images are on the GPU at once (a batch of 128 twelve-megapixel photos would hold 4.6 GB)
    for start in range(0, len(jpeg_rows), DECODE_CHUNK):
        rows_here = jpeg_rows[start:start + DECODE_CHUNK]
        decoded = _decode_chunk([payloads[k] for k in rows_here], device, decode)
        groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
        for k, img in zip(rows_here, decoded):
            if img is None:
                n_fallback += 1
                try:
                    px = _pillow_pixels(payloads[k], spec, path_of(k) if path_of else None)
                    out[k] = torch.from_numpy(np.array(px, copy=True)).to(device)
                except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
                    errors[k] = error_text(exc)
                continue
            groups.setdefault((int(img.shape[1]), int(img.shape[2])), []).append((k, img))
        del decoded
        for members in groups.values():
            rows = [k for k, _ in members]
            x = torch.stack([img for _, img in members]).to(device)
            if spec.channel_order == "L":
                x = rgb_to_l_tensor(x)          # Pillow converts to L before resizing, so here too
            y = geometry_tensor(x, spec)
            if spec.channel_order == "BGR":
                y = y.flip(1)
            out[torch.as_tensor(rows, device=device)] = y
    for k in range(n):
        if not is_jpeg[k]:
            out[k] = payloads[k].reshape(spec.input_shape).to(device)
    return out, errors, n_fallback


# -- "what the model sees" with the decoder that made the scores ----------------------------------------------
def what_the_model_sees_as(path: Path | str, spec: Preprocess, decoder: str | None = None,
                           device: str | None = None) -> tuple[np.ndarray, Image.Image, str | None]:
    """``(model input array, that array as a picture, note)`` for one file, made the way the scores were made.

    ``decoder``/``device``: what the scores record (``result.source``). nvJPEG scores are redone on the GPU with the
    scoring code when this machine can (same device type, torchvision importable); else the view is Pillow's and the
    note says it may differ by a rounding step from what the model saw. Raises on unreadable files."""
    from .preprocess import what_the_model_sees
    if decoder != NVJPEG:
        arr, picture = what_the_model_sees(path, spec)
        return arr, picture, None
    import torch
    decode = None
    dev = None
    try:
        dev = torch.device(device or "cuda")
        decode = available_decoder(dev) if unsupported_reason(spec) is None else None
    except Exception:  # noqa: BLE001 - a device name this machine does not know
        decode = None
    if decode is None:
        arr, picture = what_the_model_sees(path, spec)
        try:
            by_gpu = unsupported_reason(spec) is None and gpu_decodable(np.fromfile(path, dtype=np.uint8))
        except OSError:
            by_gpu = False
        # only JPEGs went through nvJPEG when scoring; other files were decoded by Pillow then too
        note = ("This view was made with Pillow; the model saw pixels decoded by nvJPEG on the GPU, which may "
                "differ by a rounding step.") if by_gpu else None
        return arr, picture, note
    data, jpeg = read_payload(path, spec)
    pixels, errors, _ = decode_batch([torch.from_numpy(data)], [jpeg], spec, dev, decode, path_of=lambda _k: path)
    if errors[0]:
        raise OSError(errors[0])
    arr = normalize_batch(pixels, spec)[0].cpu().numpy()
    return arr, decode_array(arr, spec), None
