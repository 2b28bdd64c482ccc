"""Safe path handling: every file we open must resolve inside the dataset root."""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from .storage import is_remote, join

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def resolve_inside(root: Path | str, image_id: str) -> Path | None:
    """Return the real path of ``image_id`` under ``root``, or None when it escapes the root. For a remote root
    (``s3://bucket/prefix``) the file's URL, or None for an id with a ``..`` part.

    ``image_id`` is a POSIX path relative to the root. Absolute paths, ``..`` segments that
    climb out, and symlinks whose target lies outside the root all return None; such a path
    is reported (integrity/path_outside_root) and never opened.
    """
    if image_id is None:
        return None
    text = str(image_id)
    if not text or text.startswith("/"):
        return None
    if is_remote(root):      # an object key under the root's prefix: no symlinks, only a climb out to refuse
        if any(part == ".." for part in text.split("/")) or any(ord(ch) < 32 for ch in text):
            return None
        return join(root, text)
    if os.name == "nt":  # a drive letter or a backslash means something only on Windows
        if text.startswith("\\") or (len(text) > 1 and text[1] == ":"):
            return None
        text = text.replace("\\", "/")
    rel = PurePosixPath(text)
    if any(part == ".." for part in rel.parts):
        return None
    root_real = Path(os.path.realpath(root))
    full = Path(os.path.realpath(root_real.joinpath(*rel.parts)))
    if full != root_real and root_real not in full.parents:
        return None
    return full


def is_within(path: Path | str, root: Path | str) -> bool:
    """Whether ``path`` (resolved, symlinks followed) is ``root`` or lies inside it. Used to refuse writing
    into the dataset folder."""
    if is_remote(path) or is_remote(root):   # a local folder never lies in a bucket, nor a bucket in a folder
        if not (is_remote(path) and is_remote(root)):
            return False
        p, r = str(path).rstrip("/"), str(root).rstrip("/")
        return p == r or p.startswith(r + "/")
    p, r = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return p == r or r in p.parents


def is_regular_file(path: Path | str) -> bool:
    """Whether ``path`` is a regular file (not a folder, pipe, device or socket): only those are opened, since
    reading a FIFO named .jpg would block forever."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
