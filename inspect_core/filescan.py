"""One pass over one file: everything the checks need, read once.

This module is what the scan's worker processes import, so it imports only numpy and Pillow (and ``storage``,
which imports fsspec only for a remote root). Every function here returns values, never raises for a bad file: a
bad file becomes a row with ``error_kind`` / ``error_detail`` set.

A remote root (``s3://bucket/prefix``) is read through ``storage``: the bytes of a chunk's files are fetched by
``REMOTE_FETCH_THREADS`` threads at once (object stores answer in tens of ms; the CPU work stays serial), and a
file's ``mtime_ns`` holds its version stamp (``storage.etag_stamp``), the cache key beside its size.
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
import warnings
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageFile

from . import storage
from .limits import LIMITS, how_to_raise, human_bytes, read_capped
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
BOOL_COLUMNS = ("gray_mode",)   # signals, never named like issue columns (schema.check_of_column)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * x + 1) / (2 * n)).astype(np.float64)


_DCT32 = _dct_matrix(32)
_BITS64 = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)
_RESIZE: dict[tuple[int, int], np.ndarray] = {}


def resize_matrix(out_n: int, in_n: int) -> np.ndarray:
    """Pillow's bilinear filter (a triangle, widened when shrinking: antialiased) as an (out_n, in_n)
    matrix, so a stack of images resizes in two matrix products: ``R_rows @ images @ R_cols.T``.
    Equal to Image.resize(BILINEAR) up to Pillow's rounding between its two passes (at most 1 grey level)."""
    key = (out_n, in_n)
    m = _RESIZE.get(key)
    if m is None:
        scale = in_n / out_n
        support = max(scale, 1.0)
        centres = (np.arange(out_n) + 0.5) * scale
        w = np.maximum(0.0, 1.0 - np.abs(np.arange(in_n)[None, :] + 0.5 - centres[:, None]) / support)
        m = (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
        if len(_RESIZE) < 4096:
            _RESIZE[key] = m
    return m


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, 64) bool -> (n,) int64, first bit most significant."""
    return (bits.astype(np.uint64) * _BITS64).sum(axis=1, dtype=np.uint64).view(np.int64)


def sandwich(x: np.ndarray, rows_m: np.ndarray, cols_m: np.ndarray) -> np.ndarray:
    """``rows_m @ x[k] @ cols_m.T`` for every image k of a stack x (n, rows, cols), as two large 2-D matrix
    products (one BLAS call each) rather than 2n small ones."""
    if len(x) == 1:
        # OpenBLAS takes another kernel for a one-image product, whose last bits differ from the same image's
        # within a stack (1.5e-5 at 480x640 in float32; measured): a file's hashes then depended on whether its
        # chunk held another image of its shape (3 pHashes of 20,000 moved with the chunk size). Two copies take
        # the stack's kernel, so a file's signals never depend on the files read beside it.
        return sandwich(np.concatenate([x, x]), rows_m, cols_m)[:1]
    n, rows, cols = x.shape
    out_r, out_c = rows_m.shape[0], cols_m.shape[0]
    a = x.reshape(n * rows, cols) @ cols_m.T                                   # (n*rows, out_c)
    a = a.reshape(n, rows, out_c).transpose(0, 2, 1).reshape(n * out_c, rows) @ rows_m.T
    return a.reshape(n, out_c, out_r).transpose(0, 2, 1)


_DCT8 = np.ascontiguousarray(_DCT32[:8])


def phash_batch(g32: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes of (n, 32, 32) grey images: DCT, the 8x8 lowest frequencies against their
    median (the construction of imagehash.phash)."""
    low = sandwich(g32.astype(np.float64), _DCT8, _DCT8).reshape(len(g32), 64)
    return _pack_bits(low > np.median(low, axis=1)[:, None])


def dhash_batch(g32: np.ndarray) -> np.ndarray:
    """64-bit difference hashes of (n, 32, 32) grey images: on a 9x8 version, is each pixel brighter
    than its right neighbour."""
    a = np.rint(sandwich(g32.astype(np.float32), resize_matrix(8, 32), resize_matrix(9, 32)))
    return _pack_bits((a[:, :, 1:] > a[:, :, :-1]).reshape(len(g32), 64))


def descriptor_batch(g32: np.ndarray) -> np.ndarray:
    """Normalised tiny-image vectors (n, DESC_DIM) int8 of (n, 32, 32) grey images: 2x2-box-averaged to
    16x16, mean removed, L2-normalised to 127. Robust to re-encoding, resizing and brightness/contrast/colour
    shifts; all zeros for a flat image."""
    n = len(g32)
    v = np.rint(g32.astype(np.float32).reshape(n, DESC_SIDE, 2, DESC_SIDE, 2).mean(axis=(2, 4))).reshape(n, DESC_DIM)
    v -= v.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", v, v))
    flat = norm < 1e-3 * DESC_DIM
    out = np.rint(v * (127.0 / np.where(flat, 1.0, norm))[:, None]).astype(np.int8)
    out[flat] = 0
    return out


def _grey32(gray_img: Image.Image) -> np.ndarray:
    if gray_img.mode != "L":
        gray_img = gray_img.convert("L")
    if gray_img.size != (32, 32):
        gray_img = gray_img.resize((32, 32), Image.Resampling.BILINEAR)
    return np.asarray(gray_img, dtype=np.float32)[None]


def phash64(gray_img: Image.Image) -> int:
    """64-bit perceptual hash of one image (resized to 32x32 grey first); see ``phash_batch``."""
    return int(phash_batch(_grey32(gray_img))[0])


def descriptor(gray_img: Image.Image) -> np.ndarray:
    """Tiny-image descriptor of one image; see ``descriptor_batch``."""
    return descriptor_batch(_grey32(gray_img))[0]


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


def _row_mean_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each row of a float32 (n, k) array."""
    mean = x.mean(axis=1, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64) / x.shape[1]
    return mean, np.maximum(sq - mean * mean, 0.0)


def stats_batch(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of a stack of RGB uint8 images (n, rows, cols, 3) of one shape, and their 32x32 greys.

    Brightness and contrast are on a 0..1 scale, from the grey-level histogram (ITU-R 601 luma, the same
    integer formula as Pillow's convert("L")); entropy in bits of that histogram; colourfulness is Hasler
    and Suesstrunk's metric; blur is the variance of the 4-neighbour Laplacian of the grey image."""
    n, rows, cols = rgb.shape[:3]
    flat = rgb.reshape(n, rows * cols, 3)
    r, g, b = (flat[:, :, c].astype(np.int32) for c in range(3))
    gray = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    hist = np.bincount((gray + (np.arange(n) * 256)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    p = hist / float(rows * cols)
    mean = p @ _LEVELS
    var = np.maximum(p @ (_LEVELS ** 2) - mean ** 2, 0.0)
    plogp = np.zeros_like(p)
    np.log2(p, out=plogp, where=p > 0)
    entropy = -(p * plogp).sum(axis=1)
    rg_mean, rg_var = _row_mean_var((r - g).astype(np.float32))
    yb_mean, yb_var = _row_mean_var((((r + g) >> 1) - b).astype(np.float32))
    colourfulness = (np.sqrt(rg_var + yb_var) + 0.3 * np.hypot(rg_mean, yb_mean)) / 255.0
    grayf = gray.astype(np.float32).reshape(n, rows, cols)
    if rows >= 3 and cols >= 3:
        lap = (grayf[:, 1:-1, :-2] + grayf[:, 1:-1, 2:] + grayf[:, :-2, 1:-1] + grayf[:, 2:, 1:-1]
               - 4.0 * grayf[:, 1:-1, 1:-1])
        blur = _row_mean_var(lap.reshape(n, -1))[1]
    else:
        blur = np.zeros(n)
    g32 = np.clip(np.rint(sandwich(grayf, resize_matrix(32, rows), resize_matrix(32, cols))), 0, 255)
    return {"brightness": mean / 255.0, "contrast": np.sqrt(var) / 255.0, "colourfulness": colourfulness,
            "entropy_bits": entropy, "blur_laplacian_var": blur, "g32": g32}


def inside_root(root: str, image_id: str, dir_cache: dict) -> str | None:
    """Fast form of paths.resolve_inside for the scan: one lstat per file, one realpath per folder.
    ``dir_cache`` holds folder verdicts for one pass only (a folder can become a symlink between scans)."""
    if not image_id or "\0" in image_id or image_id.startswith("/") or ".." in image_id.split("/") or \
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
    except (OSError, ValueError):
        return None
    return full


# Images whose statistics are computed together: 24 reduced images keep the arrays of stats_batch near
# 6 MB (96 at once took 25 MB, page-faulted in anew by every worker).
STATS_GROUP = 24
STAT_COLUMNS = ("brightness", "contrast", "colourfulness", "entropy_bits", "blur_laplacian_var")


def _empty_row(image_id: str) -> dict:
    row = {c: None for c in TEXT_COLUMNS}
    row.update({c: np.nan if np.dtype(t).kind == "f" else 0 for c, t in NUMERIC_COLUMNS.items()})
    row.update({c: False for c in BOOL_COLUMNS})
    row["image_id"] = image_id
    ext = os.path.splitext(image_id)[1].lower()
    row["ext_format"] = EXT_FORMATS.get(ext)
    return row


def _content_hash(data) -> str:
    """The first 128 bits of the SHA-256 of the bytes, in hex (SHA-256 runs in hardware on most CPUs)."""
    return hashlib.sha256(data).hexdigest()[:32]


def read_file(root: str, image_id: str, dir_cache: dict) -> tuple[dict, np.ndarray | None]:
    """Read one file once: its row (size, hashes, format, size in pixels, mode, frames, EXIF orientation,
    or the error) and its reduced RGB pixels (longer side about STATS_SIDE_PX) for the statistics, None when
    it could not be decoded. Never raises for a bad file. A file over ``LIMITS["max_file_bytes"]`` is not
    read (error_kind ``file_too_large``): a scan holds one file of each worker in memory at a time."""
    row = _empty_row(image_id)
    try:
        path = inside_root(root, image_id, dir_cache)
    except (OSError, ValueError):
        path = None
    if path is None:
        row["error_kind"] = "path_outside_root"
        row["error_detail"] = "path resolves outside the dataset root; not opened"
        return row, None
    try:
        st = os.stat(path)
        row["file_size_bytes"] = st.st_size
        row["mtime_ns"] = st.st_mtime_ns
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device named .jpg would block or never end
            row["error_kind"] = "unreadable"
            row["error_detail"] = "not a regular file (a pipe, device or socket); not opened"
            return row, None
        cap = LIMITS["max_file_bytes"]
        if st.st_size > cap:
            return _too_large(row, st.st_size, cap), None
        with open(path, "rb") as fh:
            data = read_capped(fh, st.st_size, cap)   # never more than the cap, even from a growing file
        if len(data) > cap:
            return _too_large(row, len(data), cap), None
    except FileNotFoundError:
        row["error_kind"] = "missing_file"
        row["error_detail"] = "listed but not found on disk"
        return row, None
    except (OSError, ValueError) as exc:
        row["error_kind"] = "unreadable"
        row["error_detail"] = f"cannot read file: {getattr(exc, 'strerror', None) or exc}"[:300]
        return row, None
    return _hash_and_decode(row, data)


def read_remote_file(root: str, image_id: str) -> tuple[dict, np.ndarray | None]:
    """``read_file`` for a remote root: the object's size and version stamp (from the root's listing when this
    process keeps one, else a HEAD), then its bytes (one GET, at most ``max_file_bytes`` + 1). A missing object is
    ``missing_file``; one that cannot be read (access refused, server gone) is ``unreadable`` with the reason."""
    row = _empty_row(image_id)
    url = resolve_inside(root, image_id)
    if url is None:
        row["error_kind"] = "path_outside_root"
        row["error_detail"] = "path resolves outside the dataset root; not opened"
        return row, None
    try:
        version = storage.remote_version(root, image_id)
        row["file_size_bytes"], row["mtime_ns"] = version.size_bytes, version.stamp
        cap = LIMITS["max_file_bytes"]
        if version.size_bytes > cap:
            return _too_large(row, version.size_bytes, cap), None
        data = storage.read_bytes(url, cap) if version.size_bytes else b""   # a range of nothing is an error in S3
        if len(data) > cap:
            return _too_large(row, len(data), cap), None
    except FileNotFoundError:
        row["error_kind"] = "missing_file"
        row["error_detail"] = "listed but not found in the bucket"
        return row, None
    except (OSError, ValueError) as exc:   # StorageError is a ValueError: its text names the URL and what to do
        row["error_kind"] = "unreadable"
        row["error_detail"] = f"cannot read file: {exc}"[:300]
        return row, None
    return _hash_and_decode(row, data)


def _hash_and_decode(row: dict, data: bytes) -> tuple[dict, np.ndarray | None]:
    row["content_hash"] = _content_hash(data)
    if not data:
        row["error_kind"] = "empty_file"
        row["error_detail"] = "file is 0 bytes"
        return row, None
    try:
        return row, _decode(row, data)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        if row["error_kind"] is None:
            row["error_kind"] = "unreadable"
            row["error_detail"] = f"decode failed: {type(exc).__name__}: {exc}"[:300]
        return row, None


def _too_large(row: dict, size_bytes: int, cap: int) -> dict:
    row["error_kind"] = "file_too_large"
    row["error_detail"] = (f"{human_bytes(size_bytes)} ({size_bytes:,} bytes), over the {human_bytes(cap)} cap "
                           f"(max_file_bytes); not read; {how_to_raise('max_file_bytes')}")
    return row


def _decode(row: dict, data: bytes) -> np.ndarray | None:
    """Fill the header fields of ``row``; return the reduced RGB pixels (None on a decode error)."""
    import io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        row["error_kind"] = "decompression_bomb"
        row["error_detail"] = str(exc)[:300]
        return None
    except Exception as exc:  # noqa: BLE001
        row["error_kind"] = "unreadable"
        row["error_detail"] = f"not an image Pillow can identify ({type(exc).__name__})"
        return None
    row["format"] = im.format
    width_px, height_px = im.size
    row["width_px"], row["height_px"] = width_px, height_px
    row["mode"] = im.mode
    if width_px * height_px > MAX_PIXELS:
        row["error_kind"] = "decompression_bomb"
        row["error_detail"] = (f"{width_px}x{height_px} = {width_px * height_px:,} px exceeds the "
                               f"{MAX_PIXELS:,} px limit; not decoded")
        return None
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
        return None
    rgb, gray_mode = _to_rgb_array(im)
    h, w = rgb.shape[:2]
    if max(w, h) > STATS_SIDE_PX:
        f = max(w, h) / STATS_SIDE_PX
        rgb = np.asarray(Image.fromarray(rgb).resize(
            (max(1, round(w / f)), max(1, round(h / f))), Image.Resampling.BILINEAR))
    row["pixel_hash"] = _content_hash(f"{width_px}x{height_px}".encode() + rgb.tobytes())
    row["gray_mode"] = gray_mode
    return rgb


def _limit_blas():
    """Limit BLAS (OpenBLAS, MKL, ...) to one thread now; the limiter (to restore later), or None without
    threadpoolctl or with a BLAS it does not know."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - an unknown BLAS must not stop a scan
        return None


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER = None


@contextmanager
def one_blas_thread():
    """One BLAS thread while files are scanned in this process. The scan's matrix products are small: spread
    over threads that compete with the other scan workers they ran 2-10x slower (measured on 2 cores).
    Reference-counted: scans that overlap in threads share one limit, and the last one out restores the
    process's own setting."""
    global _BLAS_USERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = _limit_blas()
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0 and _BLAS_LIMITER is not None:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


_WARM = False


def warm_up() -> None:
    """Run the per-file code once, in this process, on a small JPEG made in memory, so that forked scan workers
    inherit the imports and lazily built state (Pillow's format plugins, threadpoolctl, numpy's first calls)
    instead of each building them anew: about 50 ms less per 2,000-file scan on 2 workers (measured)."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    try:
        import io

        import threadpoolctl  # noqa: F401 - imported here once, not in every worker
        buf = io.BytesIO()
        Image.new("RGB", (640, 480), (90, 120, 150)).save(buf, "JPEG")
        rgb = _decode(_empty_row("warm-up.jpg"), buf.getvalue())
        if rgb is not None:
            stats = stats_batch(rgb[None])
            phash_batch(stats["g32"]), dhash_batch(stats["g32"]), descriptor_batch(stats["g32"])
    except Exception:  # noqa: BLE001 - only a speed-up
        pass


def worker_init() -> None:
    """Initialiser of a scan worker process: one BLAS thread for the worker's whole life, and glibc told to
    keep freed memory for reuse. By default every array over 128 KB is a fresh mmap, so each chunk's stacks
    were page-faulted in anew: 40 faults and 0.1 ms of system time a file, 13% of a worker's time (measured).
    Workers are short-lived; the main process keeps the default and returns memory after each phase."""
    global _WORKER_LIMIT
    _WORKER_LIMIT = _limit_blas()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 << 20)    # M_MMAP_THRESHOLD: allocations below 64 MB come from the heap
            libc.mallopt(-1, 256 << 20)   # M_TRIM_THRESHOLD: keep up to 256 MB of freed heap
        except (OSError, AttributeError):
            pass


_WORKER_LIMIT = None


def release_freed_memory() -> None:
    """Give memory freed by the scan's last phase back to the operating system (glibc keeps it otherwise: measured,
    the scan's peak RSS grew 2.7x faster than its live allocations). No-op where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def scan_chunk(root: str, image_ids: list[str], dir_cache: dict | None = None) -> dict:
    """Scan several files; return columns (lists / arrays) so the transfer between processes is cheap.

    Each file is read once (``read_file``); the statistics, hashes and descriptors are then computed for
    all decoded images of one reduced shape at once (``stats_batch``): numpy on stacks, not per image."""
    dir_cache = {} if dir_cache is None else dir_cache
    n = len(image_ids)
    rows, pixels = [], []
    if storage.is_remote(root):
        read = _read_remote_chunk(root, image_ids)
    else:
        read = (read_file(root, image_id, dir_cache) for image_id in image_ids)
    for row, rgb in read:
        rows.append(row)
        pixels.append(rgb)
    out: dict = {c: [r[c] for r in rows] for c in TEXT_COLUMNS}
    for c, t in NUMERIC_COLUMNS.items():
        out[c] = np.array([r[c] for r in rows], dtype=t)
    for c in BOOL_COLUMNS:
        out[c] = np.array([r[c] for r in rows], dtype=bool)
    out["desc"] = np.zeros((n, DESC_DIM), np.int8)
    by_shape: dict[tuple, list[int]] = {}
    for k, rgb in enumerate(pixels):
        if rgb is not None:
            by_shape.setdefault(rgb.shape, []).append(k)
    groups = [same[s0:s0 + STATS_GROUP] for same in by_shape.values() for s0 in range(0, len(same), STATS_GROUP)]
    for idx in groups:
        stats = stats_batch(np.stack([pixels[k] for k in idx]))
        for c in STAT_COLUMNS:
            out[c][idx] = stats[c]
        out["phash"][idx] = phash_batch(stats["g32"])
        out["dhash"][idx] = dhash_batch(stats["g32"])
        out["desc"][idx] = descriptor_batch(stats["g32"])
    return out


REMOTE_FETCH_THREADS = 16


def _read_remote_chunk(root: str, image_ids: list[str]) -> list[tuple[dict, np.ndarray | None]]:
    """``read_remote_file`` of each id, ``REMOTE_FETCH_THREADS`` at once (the waits overlap; decoding releases the
    GIL in Pillow), in the order given."""
    if len(image_ids) <= 1:
        return [read_remote_file(root, i) for i in image_ids]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(REMOTE_FETCH_THREADS, len(image_ids))) as pool:
        return list(pool.map(lambda i: read_remote_file(root, i), image_ids))


def scan_file(root: str, image_id: str, dir_cache: dict | None = None) -> dict:
    """One file's row (a dict, with its descriptor under "desc"), computed exactly as a scan does."""
    cols = scan_chunk(root, [image_id], dir_cache)
    row = {c: (v[0].item() if isinstance(v, np.ndarray) and c != "desc" else v[0]) for c, v in cols.items()}
    return row
