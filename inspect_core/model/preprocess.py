"""The preprocessing a model was trained with, and the ONE function that applies it.

``image_to_array`` turns a PIL image into exactly the array the model is fed; ``to_tensor`` wraps it
for torch, and ``decode_array`` turns such an array back into a picture ("what the model sees").
Scoring and the viewer both go through these functions, so the view cannot drift from what the
model really received.

A spec comes from a JSON sidecar beside the model (``<model>.preprocess.json``) or from a form
(``Preprocess.from_dict``). Sidecar fields::

    {"input_size": [64, 64],              # (width, height) of the tensor, pixels
     "resize": "shorter_then_center_crop", # or "stretch", "center_crop", "letterbox"
     "resize_shorter_px": 73,              # shorter side before the crop (shorter_then_center_crop)
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],   # on 0..1 pixel values
     "channel_order": "RGB",              # or "BGR"; "L" for one-channel models
     "class_names": ["circle", "square"], # in the model's output order
     "interpolation": "bilinear",         # or "nearest", "bicubic"
     "exif_transpose": false}             # true: turn photos upright by their EXIF orientation first

``input_size`` may also be ``{"width": 64, "height": 64}`` or one number for a square. Sizes are whole
numbers of pixels, each side (and ``resize_shorter_px``) 1 to ``MAX_SIDE_PX`` (4096): a bigger input does not
fit in memory for a batch. ``mean`` / ``std`` are finite numbers (one per channel, or one for all);
``exif_transpose`` is a JSON boolean (``"false"`` in quotes is refused, not read as true). A spec that breaks
any of these raises ``PreprocessError`` with one line naming the field.

Images with more than 8 bits per pixel become 8-bit grey before anything else (``to_8_bit``): 16-bit
(``I;16*``) by their high byte (``value >> 8``: 0..65535 -> 0..255, a dark 16-bit picture stays dark);
32-bit integer (``I``) and float (``F``) pictures by their own range (min -> 0, max -> 255, linear).
"""
from __future__ import annotations

import io
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .. import storage
from ..limits import LIMITS
from ..paths import is_regular_file

RESIZE_MODES = ("stretch", "shorter_then_center_crop", "center_crop", "letterbox")
CHANNEL_ORDERS = ("RGB", "BGR", "L")
INTERPOLATIONS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                  "bicubic": Image.Resampling.BICUBIC}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIDECAR_SUFFIX = ".preprocess.json"
MAX_SIDE_PX = 4096          # largest input_size side / resize_shorter_px: 4096 x 4096 x 3 float32 is 200 MB an image


class PreprocessError(ValueError):
    """A preprocessing spec that cannot be used; the message is one line and says what to fix."""


@dataclass(frozen=True)
class Preprocess:
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    resize: str = "stretch"
    resize_shorter_px: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"
    interpolation: str = "bilinear"
    exif_transpose: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def n_channels(self) -> int:
        return 1 if self.channel_order == "L" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one example."""
        width_px, height_px = self.input_size
        return (self.n_channels, height_px, width_px)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "preprocess spec") -> Preprocess:
        if not isinstance(data, dict):
            raise PreprocessError(f"{source}: expected a JSON object with input_size, mean, std, class_names")
        known = {"input_size", "class_names", "resize", "resize_shorter_px", "mean", "std",
                 "channel_order", "interpolation", "exif_transpose"}
        try:
            width_px, height_px = _input_size(data.get("input_size"), source)
            names = data.get("class_names")
            if not names or not isinstance(names, (list, tuple)):
                raise PreprocessError(f"{source}: class_names must list the classes in the model's output order")
            order = str(data.get("channel_order", "RGB")).upper()
            n_ch = 1 if order == "L" else 3
            mean = _per_channel(data.get("mean", IMAGENET_MEAN if n_ch == 3 else (0.5,)), "mean", n_ch, source)
            std = _per_channel(data.get("std", IMAGENET_STD if n_ch == 3 else (0.5,)), "std", n_ch, source)
            shorter = data.get("resize_shorter_px")
            spec = cls(
                input_size=(width_px, height_px),
                class_names=tuple(str(n) for n in names),
                resize=str(data.get("resize", "stretch")),
                resize_shorter_px=(_whole_px(shorter, "resize_shorter_px", source)
                                   if shorter not in (None, "") else None),
                mean=mean, std=std, channel_order=order,
                interpolation=str(data.get("interpolation", "bilinear")).lower(),
                exif_transpose=_json_bool(data.get("exif_transpose", False), "exif_transpose", source),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except PreprocessError:
            raise
        except (TypeError, ValueError) as exc:
            raise PreprocessError(f"{source}: {exc}") from None
        spec.validate(source)
        return spec

    def validate(self, source: str = "preprocess spec") -> None:
        width_px, height_px = self.input_size
        if not (1 <= width_px <= MAX_SIDE_PX and 1 <= height_px <= MAX_SIDE_PX):
            raise PreprocessError(f"{source}: input_size [{width_px}, {height_px}] is out of range: each side must be "
                                  f"1 to {MAX_SIDE_PX} pixels; give the size the model was trained with")
        if self.resize_shorter_px is not None and not 1 <= self.resize_shorter_px <= MAX_SIDE_PX:
            raise PreprocessError(f"{source}: resize_shorter_px {self.resize_shorter_px} is out of range: it must be "
                                  f"1 to {MAX_SIDE_PX} pixels")
        if self.resize not in RESIZE_MODES:
            raise PreprocessError(f"{source}: resize {self.resize!r} is not one of {', '.join(RESIZE_MODES)}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise PreprocessError(f"{source}: channel_order {self.channel_order!r} is not one of RGB, BGR, L")
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessError(f"{source}: interpolation {self.interpolation!r} is not one of "
                                  f"{', '.join(INTERPOLATIONS)}")
        if len(self.mean) != self.n_channels or len(self.std) != self.n_channels:
            raise PreprocessError(f"{source}: mean and std need {self.n_channels} values for {self.channel_order}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if not all(math.isfinite(v) for v in values):
                raise PreprocessError(f"{source}: {name} {list(values)} must be finite numbers (no NaN or infinity); "
                                      f"give the per-channel {name} on 0..1 pixel values")
        if any(s <= 0 for s in self.std):
            raise PreprocessError(f"{source}: std values must be > 0")
        if not isinstance(self.exif_transpose, bool):
            raise PreprocessError(f"{source}: exif_transpose {self.exif_transpose!r} must be true or false")
        if self.resize == "shorter_then_center_crop":
            if self.resize_shorter_px is None or self.resize_shorter_px < min(self.input_size):
                raise PreprocessError(f"{source}: resize_shorter_px must be >= the input size for "
                                      "shorter_then_center_crop")
        if len(set(self.class_names)) != len(self.class_names):
            raise PreprocessError(f"{source}: class_names has duplicates")

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        data["input_size"] = list(self.input_size)
        data["class_names"] = list(self.class_names)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def cache_key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _short(value, limit: int = 60) -> str:
    """A user's value as JSON (``repr`` if it is no JSON) for a one-line message, cut to ``limit`` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _whole_px(value, name: str, source: str) -> int:
    """A JSON number that is a whole number of pixels (96 or 96.0), else ``PreprocessError`` naming the field."""
    if _is_number(value) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise PreprocessError(f"{source}: {name} {_short(value)} must be a whole number of pixels")


def _input_size(value, source: str) -> tuple[int, int]:
    """(width_px, height_px) from ``[width, height]``, ``{"width": W, "height": H}`` or one number (a square)."""
    forms = '[width, height] in pixels (or {"width": W, "height": H}, or one number for a square)'
    if _is_number(value):
        side = _whole_px(value, "input_size", source)
        return side, side
    if isinstance(value, dict) and set(value) == {"width", "height"}:
        pair = (value["width"], value["height"])
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise PreprocessError(f"{source}: input_size {_short(value)} must be {forms}")
    if not all(_is_number(v) and math.isfinite(v) and float(v).is_integer() for v in pair):
        raise PreprocessError(f"{source}: input_size {_short(value)} must be {forms}, whole numbers")
    return int(pair[0]), int(pair[1])


def _per_channel(value, name: str, n_channels: int, source: str) -> tuple[float, ...]:
    """mean / std: one JSON number per channel, or one number for all of them (finiteness: ``validate``)."""
    if _is_number(value):
        return (float(value),) * n_channels
    if isinstance(value, (list, tuple)) and all(_is_number(v) for v in value):
        return tuple(float(v) for v in value)
    raise PreprocessError(f"{source}: {name} {_short(value)} must be {n_channels} numbers (one per channel, "
                          "on 0..1 pixel values) or one number")


def _json_bool(value, name: str, source: str) -> bool:
    """A real JSON boolean (null: false). ``"false"``, ``0`` or ``1`` are refused rather than guessed at."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise PreprocessError(f"{source}: {name} {_short(value)} must be true or false (a JSON boolean, no quotes)")


def read_preprocess(path: Path | str) -> Preprocess:
    path = Path(path)
    if not path.is_file():
        raise PreprocessError(f"preprocess file {path} not found; give --preprocess FILE or fill in the form")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreprocessError(f"preprocess file {path} is not valid JSON ({exc})") from None
    return Preprocess.from_dict(data, source=f"preprocess file {path.name}")


def sidecar_candidates(model_path: Path | str) -> list[Path]:
    """Where a model's sidecar may lie, most specific first: for ``model.v2.ts.pt``: ``model.v2.ts.pt``,
    ``model.v2.ts``, ``model.v2`` and ``model`` + ``.preprocess.json``, then ``preprocess.json``, in the model's
    folder; for a symbolic link, the same beside the file it points to after those beside the link."""
    model_path = Path(model_path)
    places = [model_path]
    target = Path(os.path.realpath(model_path))
    if target != model_path.absolute():
        places.append(target)
    out: list[Path] = []
    for place in places:
        folder, name = place.parent, place.name
        parts = name.split(".")
        stems = [".".join(parts[:k]) for k in range(len(parts), 0, -1)]      # drop one suffix at a time
        for cand in [folder / f"{stem}{SIDECAR_SUFFIX}" for stem in stems if stem] + [folder / "preprocess.json"]:
            if cand not in out:
                out.append(cand)
    return out


MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".jit", ".torchscript", ".ckpt", ".bin", ".safetensors")


def sidecar_name(model_path: Path | str) -> str:
    """The sidecar file name to suggest for a model: its name without model suffixes + ``.preprocess.json``
    (``net.v3.ts.pt`` -> ``net.v3.preprocess.json``: found first for that model, and by no other ``net.*``)."""
    name = Path(model_path).name
    while Path(name).suffix.lower() in MODEL_SUFFIXES and Path(name).stem:
        name = Path(name).stem
    return f"{name}{SIDECAR_SUFFIX}"


def find_sidecar(model_path: Path | str) -> Path | None:
    """The sidecar for a model file (``sidecar_candidates``), or else the only ``*.preprocess.json`` in its
    folder when it is named for a variant of this model (``model.preprocess.json`` for ``model_state.pt``) or for
    no other file there (``a.preprocess.json`` beside ``a.ts.pt`` belongs to model ``a``, never to
    ``b.ts.pt``), or None."""
    for cand in sidecar_candidates(model_path):
        if cand.is_file():
            return cand
    folder = Path(model_path).parent
    others = sorted(folder.glob(f"*{SIDECAR_SUFFIX}")) if folder.is_dir() else []
    name = Path(model_path).name
    variant_of = [o for o in others                      # model_state.pt, model-ema.pt: variants of model
                  if any(name.startswith(o.name[:-len(SIDECAR_SUFFIX)] + sep) for sep in "._-")]
    if len(variant_of) == 1:
        return variant_of[0]
    if len(others) != 1:
        return None
    stem = others[0].name[:-len(SIDECAR_SUFFIX)]
    owned = any(f.name.startswith(f"{stem}.") and f.suffix.lower() in MODEL_SUFFIXES for f in folder.iterdir())
    return None if owned else others[0]


# --------------------------------------------------------------------------------------------
# The one preprocessing function
# --------------------------------------------------------------------------------------------

def geometry(image: Image.Image, spec: Preprocess) -> Image.Image:
    """Resize / crop a PIL image to the spec's input size (no colour change)."""
    width_px, height_px = spec.input_size
    resample = INTERPOLATIONS[spec.interpolation]
    if spec.resize == "stretch":
        return image.resize((width_px, height_px), resample)
    if spec.resize == "letterbox":
        return ImageOps.pad(image, (width_px, height_px), method=resample, color=_pad_colour(image, spec))
    if spec.resize == "shorter_then_center_crop":
        src_w, src_h = image.size
        scale = spec.resize_shorter_px / max(1, min(src_w, src_h))
        new_w, new_h = max(width_px, round(src_w * scale)), max(height_px, round(src_h * scale))
        # resize only the centre crop's part of the source (Pillow's box): the same filter taps as resizing
        # the whole image and cropping after, without computing the pixels the crop throws away
        left, top = (new_w - width_px) // 2, (new_h - height_px) // 2
        fx, fy = src_w / new_w, src_h / new_h
        box = (left * fx, top * fy, (left + width_px) * fx, (top + height_px) * fy)
        return image.resize((width_px, height_px), resample, box=box)
    # center crop (pads with zeros when the image is smaller than the crop)
    src_w, src_h = image.size
    left = (src_w - width_px) // 2
    top = (src_h - height_px) // 2
    return image.crop((left, top, left + width_px, top + height_px))


def _pad_colour(image: Image.Image, spec: Preprocess):
    return 0 if image.mode == "L" else (0, 0, 0)


HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_8_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float picture as an 8-bit grey ("L") one; other pictures unchanged.

    Pillow's own ``convert("L")`` / ``convert("RGB")`` clips such pictures at 255, which turns them solid white
    (or black). The rule here:

    * 16-bit (modes ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): the high byte, ``value >> 8``; 0..65535 maps to
      0..255 on the format's own scale (the 8-bit picture ``v`` saved as 16-bit ``v * 257`` comes back as ``v``),
      so a dark 16-bit picture stays dark.
    * 32-bit integer (``I``, and other ``I;*`` modes) and float (``F``): the picture's own range, linearly:
      its smallest value -> 0, its largest -> 255, rounded to the nearest level. These formats have no fixed
      white level (floats may be 0..1, 0..255 or physical units), so the range is the one scale that always
      shows the picture. A constant picture becomes 0 (black). Only finite values set the range; NaN counts
      as the minimum (0), -inf as 0 and +inf as 255.
    """
    mode = image.mode
    if not (mode in HIGH_BIT_MODES or mode.startswith("I;")):
        return image
    try:
        values = np.asarray(image)
    except (TypeError, ValueError, KeyError):       # a mode numpy has no dtype for: its values as float32
        values = np.asarray(image.convert("F"))
    if mode.startswith("I;16") and values.dtype.kind == "u":
        return Image.fromarray((values.astype(np.uint16) >> 8).astype(np.uint8))      # 2-D uint8: mode L
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    out = np.zeros(values.shape, dtype=np.float64)
    if finite.any():
        low, high = values[finite].min(), values[finite].max()
        if high > low:
            out = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    out[values == np.inf] = 255.0
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def image_to_pixels(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """The geometric half of THE preprocessing: PIL image -> uint8 array (channels, height, width).

    Steps: optional EXIF transpose; 16-bit / 32-bit / float pictures to 8-bit grey (``to_8_bit``: 16-bit by
    the high byte, 32-bit and float by their own min..max); convert to RGB (or L; transparency composited on
    black); resize/crop; reorder channels (BGR); HWC -> CHW. ``normalize_pixels`` (or ``normalize_batch`` on
    the model's device) finishes the job. Scoring ships these uint8 pixels to the device (4x fewer bytes than
    float32) and normalises there; the arithmetic is the same float32 arithmetic as ``image_to_array``.
    """
    if spec.exif_transpose:
        image = ImageOps.exif_transpose(image)
    image = to_8_bit(image)
    if image.mode != ("L" if spec.channel_order == "L" else "RGB"):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("L" if spec.channel_order == "L" else "RGB")
    image = geometry(image, spec)
    hwc = np.asarray(image, dtype=np.uint8)
    if hwc.ndim == 2:
        hwc = hwc[:, :, None]
    if spec.channel_order == "BGR":
        hwc = hwc[:, :, ::-1]
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def normalize_pixels(pixels: np.ndarray, spec: Preprocess) -> np.ndarray:
    """uint8 (C, H, W) or (N, C, H, W) pixels -> float32 model input: scale to 0..1, then (x - mean) / std."""
    arr = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((arr - mean) / std, dtype=np.float32)


def normalize_batch(pixels, spec: Preprocess):
    """``normalize_pixels`` for a torch uint8 batch (N, C, H, W) on any device (the same float32 steps)."""
    import torch
    shape = (1, -1, 1, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=pixels.device).reshape(shape)
    std = torch.tensor(spec.std, dtype=torch.float32, device=pixels.device).reshape(shape)
    return (pixels.to(torch.float32) / 255.0 - mean) / std


def image_to_array(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """THE preprocessing: PIL image -> float32 array (channels, height, width) fed to the model.

    ``normalize_pixels(image_to_pixels(image, spec), spec)``: EXIF transpose (optional), RGB/L, resize/crop,
    channel order, CHW, then 0..1 and mean/std.
    """
    return normalize_pixels(image_to_pixels(image, spec), spec)


def to_tensor(image: Image.Image, spec: Preprocess):
    """``image_to_array`` as a torch tensor (channels, height, width)."""
    import torch
    return torch.from_numpy(image_to_array(image, spec))


def decode_array(arr, spec: Preprocess) -> Image.Image:
    """Inverse of the normalisation: a (C, H, W) model input (numpy or torch) back into an RGB/L picture.

    Values outside 0..1 after un-normalising are clipped (that is visible when mean/std are wrong).
    """
    if hasattr(arr, "detach"):
        arr = arr.detach().float().cpu().numpy()
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr[0]
    hwc = arr.transpose(1, 2, 0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    hwc = hwc * std + mean
    if spec.channel_order == "BGR":
        hwc = hwc[:, :, ::-1]
    pixels = np.clip(np.rint(hwc * 255.0), 0, 255).astype(np.uint8)
    if pixels.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))
    return Image.fromarray(np.ascontiguousarray(pixels))


def load_image_file(path: Path | str) -> Image.Image:
    """Open and fully decode an image file (raises OSError / PIL errors on broken files).

    Only regular files are opened: a folder, pipe, device or socket raises OSError "not a regular file"
    (reading a FIFO named .jpg would block forever). A URL (``s3://...``, a file of a remote dataset) is read
    through ``storage`` (FileNotFoundError when the object is missing)."""
    if storage.is_remote(path):
        data = storage.read_bytes(path, LIMITS["max_file_bytes"])
        if not data:
            raise OSError(f"{path}: empty file (0 bytes)")
        if len(data) > LIMITS["max_file_bytes"]:
            raise OSError(f"{path}: over the max_file_bytes cap")
        try:
            img = Image.open(io.BytesIO(data))
        except Image.UnidentifiedImageError:
            raise Image.UnidentifiedImageError(f"cannot identify image file '{path}'") from None
        with img:
            img.load()
            return img.convert("RGBA") if img.mode == "P" else img
    if not is_regular_file(path):
        if not os.path.lexists(path):
            raise FileNotFoundError(f"{path}: file missing")
        raise OSError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise OSError(f"{path}: empty file (0 bytes)")
    with Image.open(path) as img:
        img.load()
        # the decoded pixels outlive the closed file; palette images become RGBA here
        return img.convert("RGBA") if img.mode == "P" else img


def what_the_model_sees(path: Path | str, spec: Preprocess) -> tuple[np.ndarray, Image.Image]:
    """(model input array, that array decoded back into a picture) for one image file."""
    arr = image_to_array(load_image_file(path), spec)
    return arr, decode_array(arr, spec)


# --------------------------------------------------------------------------------------------
# The same geometry on torch tensors (GPU decoding: inspect_core/model/gpu_decode.py)
# --------------------------------------------------------------------------------------------

TORCH_MODES = {"bilinear": "bilinear", "bicubic": "bicubic"}


def _nearest_index(out_n: int, in_n: int, start: float, end: float) -> list[int]:
    """Source index of each output pixel for Pillow's NEAREST resize over the box [start, end) of the source
    (its ImagingScaleAffine): the box held as C floats (float32), a double stepped by ``(end - start) / out_n`` from
    ``start + step / 2`` and truncated; the same arithmetic in the same order as Pillow, so the same pixels."""
    start32, end32 = np.float32(start), np.float32(end)
    step = float(end32 - start32) / out_n
    v = float(start32) + step * 0.5
    out = []
    for _ in range(out_n):
        out.append(min(max(int(v) if v >= 0 else -1, 0), in_n - 1))
        v += step
    return out


def resize_tensor(pixels, out_shape: tuple[int, int], interpolation: str,
                  box_xyxy_px: tuple[float, float, float, float] | None = None):
    """uint8 (N, C, H, W) -> uint8 (N, C, out_shape[0], out_shape[1]) (rows, cols) with Pillow's filters.

    bilinear / bicubic: torch's antialias mode (Pillow's support and taps) in float32, rounded and clamped back to
    uint8 once (Pillow rounds between its two passes: a rounding step apart). nearest: Pillow's own index rule,
    exact; ``box_xyxy_px`` (nearest only) is Pillow's resize box in source pixels. Same size, no box: a copy (as
    Pillow)."""
    import torch
    import torch.nn.functional as F
    out_h, out_w = int(out_shape[0]), int(out_shape[1])
    in_h, in_w = int(pixels.shape[-2]), int(pixels.shape[-1])
    if interpolation == "nearest":
        x0, y0, x1, y1 = box_xyxy_px if box_xyxy_px is not None else (0.0, 0.0, float(in_w), float(in_h))
        if box_xyxy_px is None and (out_h, out_w) == (in_h, in_w):
            return pixels.clone()
        cols = torch.tensor(_nearest_index(out_w, in_w, x0, x1), dtype=torch.long, device=pixels.device)
        rows = torch.tensor(_nearest_index(out_h, in_h, y0, y1), dtype=torch.long, device=pixels.device)
        return pixels.index_select(-1, cols).index_select(-2, rows)
    if box_xyxy_px is not None:
        raise ValueError("resize_tensor: box_xyxy_px is for nearest only")
    if (out_h, out_w) == (in_h, in_w):
        return pixels.clone()
    y = F.interpolate(pixels.float(), size=(out_h, out_w), mode=TORCH_MODES[interpolation], align_corners=False,
                      antialias=True)
    return y.round_().clamp_(0, 255).to(pixels.dtype)


def letterbox_size(source_size: tuple[float, float], input_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) px of an image of ``source_size`` scaled to fit ``input_size`` keeping its aspect ratio,
    rounded as Pillow's ``ImageOps.contain`` rounds (the letterbox resize before the black padding)."""
    src_w, src_h = source_size
    new_w, new_h = input_size
    im_ratio, dest_ratio = src_w / src_h, new_w / new_h
    if im_ratio > dest_ratio:
        new_h = round(src_h / src_w * input_size[0])
    elif im_ratio < dest_ratio:
        new_w = round(src_w / src_h * input_size[1])
    return new_w, new_h


def geometry_tensor(pixels, spec: Preprocess):
    """``geometry`` for torch uint8 pixels (C, H, W) or (N, C, H, W) (same-size images) on any device.

    Same output size and the same crop / pad offsets as ``geometry`` (Python's own ``round`` where Pillow uses it);
    shorter_then_center_crop resizes the whole image to the size ``geometry`` computes and crops there (the same
    filter taps as Pillow's box resize). Pixels agree with Pillow's to a rounding step (Pillow rounds to uint8
    between its horizontal and vertical passes): tests/test_model_gpu_decode.py measures it."""
    import torch
    single = pixels.dim() == 3
    x = pixels[None] if single else pixels
    n, c, src_h, src_w = x.shape
    width_px, height_px = spec.input_size
    if spec.resize == "stretch":
        out = resize_tensor(x, (height_px, width_px), spec.interpolation)
    elif spec.resize == "letterbox":
        # ImageOps.pad -> ImageOps.contain: the aspect-preserving size, then pasted centred on black
        new_w, new_h = letterbox_size((src_w, src_h), (width_px, height_px))
        out = torch.zeros((n, c, height_px, width_px), dtype=x.dtype, device=x.device)
        if new_w > 0 and new_h > 0:
            left, top = round((width_px - new_w) * 0.5), round((height_px - new_h) * 0.5)
            out[:, :, top:top + new_h, left:left + new_w] = resize_tensor(x, (new_h, new_w), spec.interpolation)
    elif spec.resize == "shorter_then_center_crop":
        scale = spec.resize_shorter_px / max(1, min(src_w, src_h))
        new_w, new_h = max(width_px, round(src_w * scale)), max(height_px, round(src_h * scale))
        left, top = (new_w - width_px) // 2, (new_h - height_px) // 2
        if spec.interpolation == "nearest":     # Pillow's box, as geometry() gives it
            fx, fy = src_w / new_w, src_h / new_h
            box = (left * fx, top * fy, (left + width_px) * fx, (top + height_px) * fy)
            out = resize_tensor(x, (height_px, width_px), "nearest", box_xyxy_px=box)
        else:
            out = resize_tensor(x, (new_h, new_w), spec.interpolation)
            out = out[:, :, top:top + height_px, left:left + width_px].contiguous()
    else:
        # center crop; zeros where the crop reaches past the image (Pillow's crop)
        left, top = (src_w - width_px) // 2, (src_h - height_px) // 2
        out = torch.zeros((n, c, height_px, width_px), dtype=x.dtype, device=x.device)
        sx0, sy0 = max(left, 0), max(top, 0)
        sx1, sy1 = min(left + width_px, src_w), min(top + height_px, src_h)
        if sx1 > sx0 and sy1 > sy0:
            out[:, :, sy0 - top:sy1 - top, sx0 - left:sx1 - left] = x[:, :, sy0:sy1, sx0:sx1]
    return out[0] if single else out


def rgb_to_l_tensor(pixels):
    """Pillow's RGB -> L conversion (ITU-R 601-2 luma, its integer arithmetic) on uint8 (..., 3, H, W) tensors."""
    import torch
    x = pixels.to(torch.int32)
    r, g, b = x.unbind(dim=-3)
    luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    return luma.to(torch.uint8).unsqueeze(-3)
