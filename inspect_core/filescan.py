"""One pass over one file: everything the checks need, read once.

This module is what the scan's worker processes import, so it imports only numpy and Pillow.
Every function here returns values, never raises for a bad file: a bad file becomes a row
with ``error_kind`` / ``error_detail`` set.
"""
from __future__ import annotations

import hashlib
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageFile

from .paths import resolve_inside

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must raise, so we can report it

# Images above this many pixels are reported as decompression bombs and never decoded.
# Pillow's own default (about 89.5 megapixels, i.e. 1024*1024*1024 // 4 // 3).
MAX_PIXELS = 89_478_485

# The reduced decode: the longer side is brought to about this many pixels before any statistic.
STATS_SIDE_PX = 80
# Tiny-image descriptor used for near-duplicate search: a DESC_SIDE x DESC_SIDE grey image,
# mean-removed and L2-normalised, stored as int8 (value * 127).
DESC_SIDE = 16
DESC_DIM = DESC_SIDE * DESC_SIDE

EXT_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF",
}

# Columns produced per file, with their numpy dtype (strings are object).
NUMERIC_COLUMNS = {
    "file_size_bytes": np.int64,
    "mtime_ns": np.int64,
    "width_px": np.int32,
    "height_px": np.int32,
    "n_frames": np.int32,
    "exif_orientation": np.int8,
    "brightness": np.float32,
    "contrast": np.float32,
    "colourfulness": np.float32,
    "entropy_bits": np.float32,
    "blur_laplacian_var": np.float32,
    "phash": np.int64,
    "dhash": np.int64,
}
TEXT_COLUMNS = ("image_id", "content_hash", "pixel_hash", "format", "ext_format", "mode",
                "error_kind", "error_detail")
BOOL_COLUMNS = ("is_gray_mode",)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * x + 1) / (2 * n)).astype(np.float64)


_DCT32 = _dct_matrix(32)
_BITS64 = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def _bits_to_int64(bits: np.ndarray) -> int:
    value = int(np.sum(_BITS64[bits.ravel()], dtype=np.uint64))
    return value - (1 << 64) if value >= (1 << 63) else value


def phash64(gray_img: Image.Image) -> int:
    """64-bit perceptual hash: DCT of a 32x32 grey image, 8x8 low frequencies against their median
    (the same construction as imagehash.phash)."""
    if gray_img.size != (32, 32):
        gray_img = gray_img.resize((32, 32), Image.Resampling.BILINEAR)
    pixels = np.asarray(gray_img, dtype=np.float64)
    dct = _DCT32 @ pixels @ _DCT32.T
    low = dct[:8, :8]
    return _bits_to_int64(low > np.median(low))


def dhash64(gray_img: Image.Image) -> int:
    """64-bit difference hash: is each pixel of a 9x8 grey image brighter than its right neighbour."""
    pixels = np.asarray(gray_img.resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    return _bits_to_int64(pixels[:, 1:] > pixels[:, :-1])


def descriptor(gray_img: Image.Image) -> np.ndarray:
    """Normalised tiny-image vector (int8, DESC_DIM): robust to re-encoding, resizing and
    brightness/contrast/colour shifts; all zeros for a flat image."""
    v = np.asarray(gray_img.resize((DESC_SIDE, DESC_SIDE), Image.Resampling.BOX), dtype=np.float32).ravel()
    v = v - v.mean()
    norm = float(np.sqrt(np.dot(v, v)))
    if norm < 1e-3 * DESC_DIM:
        return np.zeros(DESC_DIM, np.int8)
    return np.round(v * (127.0 / norm)).astype(np.int8)


def _to_rgb_array(im: Image.Image) -> tuple[np.ndarray, bool]:
    """RGB uint8 array of any mode, and whether the mode itself is single-channel (grey)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = 65535.0 if mode.startswith("I;16") else max(float(a.max()), 1.0)
        g = np.clip(a * (255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2), True
    gray_mode = mode in ("1", "L", "LA", "La")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im), gray_mode


_LEVELS = np.arange(256, dtype=np.float64)


def image_stats(rgb: np.ndarray, gray_hist: np.ndarray | None = None) -> dict:
    """Statistics of an RGB uint8 array (rows, cols, 3). Brightness and contrast are on a 0..1 scale,
    from the grey-level histogram (ITU-R 601 luma); colourfulness is Hasler and Suesstrunk's metric."""
    if gray_hist is None:
        gray_hist = np.asarray(Image.fromarray(rgb).convert("L").histogram(), dtype=np.float64)
    n = gray_hist.sum()
    p = gray_hist / n
    mean = float((p * _LEVELS).sum())
    var = float((p * (_LEVELS - mean) ** 2).sum())
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    a = rgb.reshape(-1, 3).astype(np.int16)
    rg = a[:, 0] - a[:, 1]
    yb = ((a[:, 0] + a[:, 1]) >> 1) - a[:, 2]
    colourfulness = (np.sqrt(rg.var() + yb.var()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 255.0
    return {
        "brightness": mean / 255.0,
        "contrast": float(np.sqrt(var)) / 255.0,
        "colourfulness": float(colourfulness),
        "entropy_bits": entropy,
    }


def laplacian_var(gray_u8: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (grey levels 0..255) of an image at the fixed stats size."""
    a = gray_u8.astype(np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def inside_root(root: str, image_id: str, dir_cache: dict) -> str | None:
    """Fast form of paths.resolve_inside for the scan: one lstat per file, one realpath per folder.
    ``dir_cache`` holds folder verdicts for one pass only (a folder can become a symlink between scans)."""
    if not image_id or image_id.startswith("/") or ".." in image_id.split("/") or \
            (os.name == "nt" and ("\\" in image_id or ":" in image_id)):
        return None
    full = os.path.join(root, image_id)
    parent = os.path.dirname(image_id)
    key = (root, parent)
    ok = dir_cache.get(key)
    if ok is None:
        real_root = os.path.realpath(root)
        real_parent = os.path.realpath(os.path.join(root, parent))
        ok = real_parent == real_root or real_parent.startswith(real_root + os.sep)
        dir_cache[key] = ok
    if not ok:
        return None
    try:
        if os.path.islink(full):
            real = resolve_inside(root, image_id)
            return str(real) if real is not None else None
    except OSError:
        return None
    return full


def _empty_row(image_id: str) -> dict:
    row = {c: None for c in TEXT_COLUMNS}
    row.update({c: np.nan if np.dtype(t).kind == "f" else 0 for c, t in NUMERIC_COLUMNS.items()})
    row.update({c: False for c in BOOL_COLUMNS})
    row["image_id"] = image_id
    ext = os.path.splitext(image_id)[1].lower()
    row["ext_format"] = EXT_FORMATS.get(ext)
    row["desc"] = np.zeros(DESC_DIM, np.int8)
    return row


def scan_file(root: str, image_id: str, dir_cache: dict | None = None) -> dict:
    """Read one file once and return its row. Never raises for a bad file."""
    row = _empty_row(image_id)
    path = inside_root(root, image_id, {} if dir_cache is None else dir_cache)
    if path is None:
        row["error_kind"] = "path_outside_root"
        row["error_detail"] = "path resolves outside the dataset root; not opened"
        return row
    try:
        st = os.stat(path)
        row["file_size_bytes"] = st.st_size
        row["mtime_ns"] = st.st_mtime_ns
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device named .jpg would block or never end
            row["error_kind"] = "unreadable"
            row["error_detail"] = "not a regular file (a pipe, device or socket); not opened"
            return row
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        row["error_kind"] = "missing_file"
        row["error_detail"] = "listed but not found on disk"
        return row
    except OSError as exc:
        row["error_kind"] = "unreadable"
        row["error_detail"] = f"cannot read file: {exc.strerror or exc}"
        return row
    row["content_hash"] = hashlib.blake2b(data, digest_size=16).hexdigest()
    if not data:
        row["error_kind"] = "empty_file"
        row["error_detail"] = "file is 0 bytes"
        return row
    try:
        _decode_into(row, data)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        if row["error_kind"] is None:
            row["error_kind"] = "unreadable"
            row["error_detail"] = f"decode failed: {type(exc).__name__}: {exc}"[:300]
    return row


def _decode_into(row: dict, data: bytes) -> None:
    import io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        row["error_kind"] = "decompression_bomb"
        row["error_detail"] = str(exc)[:300]
        return
    except Exception as exc:  # noqa: BLE001
        row["error_kind"] = "unreadable"
        row["error_detail"] = f"not an image Pillow can identify ({type(exc).__name__})"
        return
    row["format"] = im.format
    width_px, height_px = im.size
    row["width_px"], row["height_px"] = width_px, height_px
    row["mode"] = im.mode
    if width_px * height_px > MAX_PIXELS:
        row["error_kind"] = "decompression_bomb"
        row["error_detail"] = (f"{width_px}x{height_px} = {width_px * height_px:,} px exceeds the "
                               f"{MAX_PIXELS:,} px limit; not decoded")
        return
    try:
        row["n_frames"] = int(getattr(im, "n_frames", 1))
        im.seek(0)
    except Exception:  # noqa: BLE001
        row["n_frames"] = 1
    try:
        orientation = int(im.getexif().get(0x0112, 0) or 0)
        row["exif_orientation"] = orientation if 0 <= orientation <= 8 else 0  # 1-8 are defined
    except Exception:  # noqa: BLE001
        row["exif_orientation"] = 0
    scale = STATS_SIDE_PX / max(width_px, height_px, 1)
    if im.format == "JPEG" and scale < 1:
        im.draft(im.mode if im.mode in ("RGB", "L") else None,
                 (max(1, int(width_px * scale)), max(1, int(height_px * scale))))
    try:
        im.load()
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or "broken data stream" in text or "premature" in text.lower():
            row["error_kind"] = "truncated"
            row["error_detail"] = f"decode stopped early: {text}"[:300]
        else:
            row["error_kind"] = "unreadable"
            row["error_detail"] = f"decode failed: {text}"[:300]
        return
    rgb, gray_mode = _to_rgb_array(im)
    h, w = rgb.shape[:2]
    if max(w, h) > STATS_SIDE_PX:
        f = max(w, h) / STATS_SIDE_PX
        rgb = np.asarray(Image.fromarray(rgb).resize(
            (max(1, round(w / f)), max(1, round(h / f))), Image.Resampling.BILINEAR))
    row["pixel_hash"] = hashlib.blake2b(
        f"{width_px}x{height_px}".encode() + rgb.tobytes(), digest_size=16).hexdigest()
    gray = Image.fromarray(rgb).convert("L")
    row.update(image_stats(rgb, np.asarray(gray.histogram(), dtype=np.float64)))
    row["is_gray_mode"] = gray_mode
    row["blur_laplacian_var"] = laplacian_var(np.asarray(gray))
    g32 = gray.resize((32, 32), Image.Resampling.BILINEAR)
    row["phash"] = phash64(g32)
    row["dhash"] = dhash64(g32)
    row["desc"] = descriptor(g32)


def scan_chunk(root: str, image_ids: list[str]) -> dict:
    """Scan several files; return columns (lists / arrays) so the transfer between processes is cheap."""
    dir_cache: dict = {}
    rows = [scan_file(root, i, dir_cache) for i in image_ids]
    out: dict = {c: [r[c] for r in rows] for c in TEXT_COLUMNS}
    for c, t in NUMERIC_COLUMNS.items():
        out[c] = np.array([r[c] for r in rows], dtype=t)
    for c in BOOL_COLUMNS:
        out[c] = np.array([r[c] for r in rows], dtype=bool)
    out["desc"] = np.stack([r["desc"] for r in rows]) if rows else np.zeros((0, DESC_DIM), np.int8)
    return out
