"""Thumbnails cached in the workspace, display images, and boxes drawn on an image.

Files are opened only through ``resolve_inside``: an image_id that escapes the dataset root gets a
placeholder and is never opened. A file that cannot be decoded gets a placeholder naming the reason.
Thumbnails are written once to ``<workspace>/thumbs/<aa>/<sha1>.jpg``; the key includes the image_id,
the size and the file's mtime and byte size, so an edited file gets a fresh thumbnail. Every thumbnail is
a ``size_px`` square: the image scaled to fit and centred on a light grey ground. An image smaller than the
tile is enlarged to fill it; when it is enlarged 2x or more (a 32x32 image in a 128 px tile) with
nearest-neighbour resampling, so its pixels stay visible as pixels instead of a blur.

A remote root (``s3://bucket/prefix``) is read through ``storage``: the key then holds the object's version stamp
(its ETag) in place of the mtime, and the thumbnail is cached in the local workspace, never in the bucket.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inspect_core import storage
from inspect_core.limits import LIMITS
from inspect_core.paths import is_regular_file, resolve_inside

log = logging.getLogger(__name__)

THUMB_SIZE_PX = 160
DISPLAY_MAX_SIDE_PX = 1024
THUMB_QUALITY = 80
_PLACEHOLDER_BG = (235, 235, 235)


@dataclass(frozen=True)
class Thumb:
    """A thumbnail as JPEG bytes; ``ok`` False means a placeholder, ``reason`` says why."""
    data: bytes
    ok: bool
    reason: str | None = None


THUMB_RENDERING = "fill-nearest-2"  # part of the cache key: a change in how thumbnails are drawn makes new ones
NEAREST_FROM_SCALE = 2.0             # enlarging by this factor or more uses nearest-neighbour


def thumb_key(image_id: str, size_px: int, mtime_ns: int, file_size_bytes: int) -> str:
    text = f"{image_id}\x00{size_px}\x00{mtime_ns}\x00{file_size_bytes}\x00{THUMB_RENDERING}"
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _placeholder(size_px: int, reason: str) -> bytes:
    img = Image.new("RGB", (size_px, size_px), _PLACEHOLDER_BG)
    draw = ImageDraw.Draw(img)
    draw.line([(0, 0), (size_px - 1, size_px - 1)], fill=(200, 80, 80), width=3)
    draw.line([(0, size_px - 1), (size_px - 1, 0)], fill=(200, 80, 80), width=3)
    text = reason[:22]
    draw.rectangle([(0, size_px // 2 - 8), (size_px, size_px // 2 + 8)], fill=(255, 255, 255))
    draw.text((4, size_px // 2 - 6), text, fill=(120, 0, 0), font=ImageFont.load_default())
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


_PLACEHOLDERS: dict[tuple[int, str], bytes] = {}


def placeholder(size_px: int, reason: str) -> Thumb:
    key = (size_px, reason)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = _placeholder(size_px, reason)
    return Thumb(_PLACEHOLDERS[key], ok=False, reason=reason)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB for display (16-bit and float images are stretched to 0..255)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 1.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.nan_to_num((arr - lo) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB") if img.mode != "RGB" else img


class NotRegularFileError(OSError):
    """The path is a folder, pipe, device or socket: never opened (reading a FIFO blocks forever)."""


NOT_REGULAR = "not a regular file"


def open_reduced(path: Path | str, max_side_px: int) -> tuple[Image.Image, tuple[int, int]]:
    """``(image, original_size)``: the image decoded no larger than needed (JPEG draft mode), as RGB,
    first frame, and the file's own ``(width, height)`` in pixels.

    Only regular files are opened (a FIFO named .jpg would block forever): anything else raises
    ``NotRegularFileError``. EXIF orientation is not applied: the pixels are shown as stored, which is
    how box coordinates and most training loaders see them. A URL (``s3://...``) is read through ``storage``
    (at most ``max_file_bytes``).
    """
    if storage.is_remote(path):
        cap = LIMITS["max_file_bytes"]
        data = storage.read_bytes(path, cap)
        if len(data) > cap:
            raise Image.DecompressionBombError(f"{path} is over the max_file_bytes cap")
        source = io.BytesIO(data)
    elif not is_regular_file(path):
        if not os.path.lexists(path):
            raise FileNotFoundError(str(path))
        raise NotRegularFileError(f"{path}: {NOT_REGULAR}")
    else:
        source = path
    with Image.open(source) as img:
        w, h = img.size
        if w <= 0 or h <= 0:
            raise ValueError("image has no pixels")
        limit = Image.MAX_IMAGE_PIXELS
        if limit and w * h > limit:
            raise Image.DecompressionBombError(f"{w * h} pixels is over the limit of {limit}")
        if img.format == "JPEG":
            img.draft("RGB", (max_side_px, max_side_px))
        img.load()
        out = to_rgb(img)
        if max(out.size) > max_side_px:
            out = out.copy()
            out.thumbnail((max_side_px, max_side_px), Image.Resampling.BILINEAR)
        return out, (w, h)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "too many pixels"
    if isinstance(exc, NotRegularFileError):
        return NOT_REGULAR
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, FileNotFoundError):
        return "file missing"
    if isinstance(exc, storage.StorageError):
        return "cannot reach storage"
    if isinstance(exc, OSError) and "truncated" in str(exc).lower():
        return "truncated file"
    return "cannot decode"


def thumbnail(root: Path | str, image_id: str, workspace: Path | str, size_px: int = THUMB_SIZE_PX) -> Thumb:
    """The cached thumbnail of ``image_id`` (made on first use), or a placeholder."""
    path = resolve_inside(root, image_id)
    if path is None:
        return placeholder(size_px, "outside dataset root")
    if storage.is_remote(root):
        try:
            version = storage.remote_version(root, str(image_id))
        except FileNotFoundError:
            return placeholder(size_px, "file missing")
        except storage.StorageError:
            return placeholder(size_px, "cannot reach storage")
        size_bytes, stamp = version.size_bytes, version.stamp
    else:
        try:
            st = os.stat(path)
        except OSError:
            return placeholder(size_px, "file missing")
        if not stat.S_ISREG(st.st_mode):
            return placeholder(size_px, NOT_REGULAR)
        size_bytes, stamp = st.st_size, st.st_mtime_ns
    if size_bytes == 0:
        return placeholder(size_px, "empty file")
    key = thumb_key(str(image_id), size_px, stamp, size_bytes)
    cache = Path(workspace) / "thumbs" / key[:2] / f"{key}.jpg"
    try:
        return Thumb(cache.read_bytes(), ok=True)
    except OSError:
        pass
    try:
        img, _size = open_reduced(path, size_px)
    except Exception as exc:  # one bad file gives a placeholder, never stops the page
        log.debug("thumbnail of %s failed: %s", image_id, exc)
        return placeholder(size_px, _reason(exc))
    buf = io.BytesIO()
    square(fit_to_tile(img, size_px), size_px).save(buf, "JPEG", quality=THUMB_QUALITY)
    data = buf.getvalue()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # sessions are threads of one process: the pid alone would let two writers share a temp file
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cache)
    except OSError as exc:  # a read-only workspace still shows thumbnails
        log.warning("cannot cache thumbnail %s: %s", cache, exc)
    return Thumb(data, ok=True)


def thumbnails(root: Path | str, image_ids: Iterable[str], workspace: Path | str,
               size_px: int = THUMB_SIZE_PX, workers: int = 4) -> list[Thumb]:
    """Thumbnails for a page of images, made in a small thread pool (PIL decodes without the GIL)."""
    ids = list(image_ids)
    if len(ids) <= 1 or workers <= 1:
        return [thumbnail(root, i, workspace, size_px) for i in ids]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(workers, len(ids))) as pool:
        return list(pool.map(lambda i: thumbnail(root, i, workspace, size_px), ids))


def display_image(root: Path | str, image_id: str,
                  max_side_px: int = DISPLAY_MAX_SIDE_PX) -> tuple[Image.Image | None, float, str | None]:
    """``(image, scale, reason)``: the image reduced to ``max_side_px`` and the factor from file pixels
    to shown pixels, or ``(None, 1.0, reason)`` when it cannot be shown."""
    path = resolve_inside(root, image_id)
    if path is None:
        return None, 1.0, "outside dataset root"
    try:
        img, (full_w, _full_h) = open_reduced(path, max_side_px)
    except Exception as exc:
        return None, 1.0, _reason(exc)
    return img, (img.size[0] / full_w if full_w else 1.0), None


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN
    except TypeError:  # pandas NA
        return True


_BOX_OK = (40, 200, 60)
_BOX_FLAGGED = (230, 30, 30)


def draw_boxes(img: Image.Image, boxes: Iterable[dict], scale: float = 1.0, width_px: int = 2) -> Image.Image:
    """A copy of ``img`` with boxes drawn. Each box: ``box_x_px, box_y_px, box_w_px, box_h_px`` in file
    pixels (top-left, width, height), optional ``category`` (text drawn as pixels) and ``flagged``
    (drawn red). Boxes partly or wholly outside the image are drawn clipped to a visible frame."""
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    w_img, h_img = out.size
    for box in boxes:
        try:
            x, y = float(box["box_x_px"]) * scale, float(box["box_y_px"]) * scale
            w, h = float(box["box_w_px"]) * scale, float(box["box_h_px"]) * scale
        except (KeyError, TypeError, ValueError):
            continue
        if not all(np.isfinite([x, y, w, h])):
            continue
        colour = _BOX_FLAGGED if box.get("flagged") else _BOX_OK
        x0, x1 = sorted((x, x + w))
        y0, y1 = sorted((y, y + h))
        x0c, y0c = min(max(x0, 0), w_img - 1), min(max(y0, 0), h_img - 1)
        x1c, y1c = min(max(x1, 0), w_img - 1), min(max(y1, 0), h_img - 1)
        draw.rectangle([(x0c, y0c), (max(x1c, x0c), max(y1c, y0c))], outline=colour, width=width_px)
        label = box.get("category")
        if not _missing(label):
            text = str(label)[:30]
            ty = max(y0c - 11, 0)
            tw = draw.textlength(text, font=font)
            draw.rectangle([(x0c, ty), (x0c + tw + 4, ty + 11)], fill=colour)
            draw.text((x0c + 2, ty), text, fill=(255, 255, 255), font=font)
    return out


def image_bytes(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=quality) if fmt == "JPEG" else img.save(buf, fmt)
    return buf.getvalue()


def fit_to_tile(img: Image.Image, size_px: int) -> Image.Image:
    """``img`` scaled so its long side is ``size_px``: reduced smoothly, enlarged with nearest-neighbour when
    the factor is ``NEAREST_FROM_SCALE`` or more (pixels stay sharp squares), else bicubic."""
    w, h = img.size
    if w <= 0 or h <= 0 or max(w, h) == size_px:
        return img
    scale = size_px / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale >= NEAREST_FROM_SCALE:
        return img.resize(new, Image.Resampling.NEAREST)
    return img.resize(new, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BILINEAR)


def square(img: Image.Image, size_px: int, fill=(242, 242, 242)) -> Image.Image:
    """The image centred on a ``size_px`` square (as it is: ``fit_to_tile`` scales it), so a grid lines up."""
    canvas = Image.new("RGB", (size_px, size_px), fill)
    canvas.paste(img, ((size_px - img.size[0]) // 2, (size_px - img.size[1]) // 2))
    return canvas
