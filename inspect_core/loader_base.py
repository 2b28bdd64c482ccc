"""What every loader shares: the ``Dataset`` they return, ``DatasetError``, and the helpers that build the
canonical tables (``images``, ``annotations``, ``problems``) described in ``loaders``.

``loaders`` (dispatch, class folders, manifests), ``loader_coco`` and ``loader_yolo`` import from here; this
module imports none of them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from . import storage
from .limits import LIMITS, LimitError, how_to_raise, human_bytes, read_input_bytes
from .paths import is_image_name, is_within, resolve_inside
from .schema import finding_frame

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
ANNOTATION_COLUMNS = ["ann_id", "image_id", "category", "category_id",
                      "box_x_px", "box_y_px", "box_w_px", "box_h_px"]


class DatasetError(ValueError):
    """The dataset cannot be loaded at all (bad root, unreadable manifest). The message says what to do."""


@dataclass
class Dataset:
    root: Path | str            # a local folder, or a URL (s3://bucket/prefix) read through ``storage``
    format: str
    images: pd.DataFrame
    annotations: pd.DataFrame
    classes: list[str]
    has_image_labels: bool
    has_boxes: bool
    problems: pd.DataFrame = field(default_factory=lambda: finding_frame([]))
    # YOLO boxes are normalised until the scan knows each image's size.
    boxes_normalised: bool = False
    box_categories: list[str] = field(default_factory=list)

    def path_of(self, image_id: str) -> Path | None:
        return resolve_inside(self.root, image_id)


def _problem(image_id: str, check: str, detail: str, family: str) -> dict:
    return {"image_id": image_id, "check": check, "family": family, "score": 1.0,
            "detail": detail, "group_id": pd.NA}


def _empty_annotations() -> pd.DataFrame:
    return pd.DataFrame({
        "ann_id": pd.Series([], dtype="int64"), "image_id": pd.Series([], dtype="str"),
        "category": pd.Series([], dtype="str"), "category_id": pd.Series([], dtype="Int64"),
        "box_x_px": pd.Series([], dtype="float64"), "box_y_px": pd.Series([], dtype="float64"),
        "box_w_px": pd.Series([], dtype="float64"), "box_h_px": pd.Series([], dtype="float64"),
    })


def _images_frame(image_ids, labels=None, splits=None, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    n = len(image_ids)
    df = pd.DataFrame({
        "image_id": pd.Series(list(image_ids), dtype="str"),
        "label": pd.Series(list(labels) if labels is not None else [pd.NA] * n, dtype="str"),
        "split": pd.Series(list(splits) if splits is not None else [pd.NA] * n, dtype="str"),
    })
    if extra is not None:
        for c in extra.columns:
            if c not in df.columns:
                df[c] = extra[c].to_numpy()
    return df


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def walk_images(root: Path, bad_names: list | None = None, unreadable_dirs: list | None = None) -> list[str]:
    """All image files under root (any extension case), as sorted POSIX paths relative to root.
    Hidden files and folders are skipped; folder symlinks are not followed. Names that are not valid
    UTF-8 cannot be keys: they go to ``bad_names`` (shown with replacement characters) instead; folders that
    cannot be listed go to ``unreadable_dirs`` as (relative path, reason)."""
    if storage.is_remote(root):
        return _walk_remote_images(root)
    out = []
    root_s = str(root)

    def on_error(exc: OSError) -> None:
        if unreadable_dirs is not None and exc.filename:
            rel = os.path.relpath(exc.filename, root_s).replace(os.sep, "/")
            rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            unreadable_dirs.append((rel, exc.strerror or str(exc)))
    for dirpath, dirnames, filenames in os.walk(root_s, onerror=on_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root_s)
        for name in filenames:
            if name.startswith(".") or not is_image_name(name):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if not _utf8_ok(rel):
                if bad_names is not None:
                    bad_names.append(rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                continue
            out.append(rel)
    out.sort()
    return out


def _walk_remote_images(root: str) -> list[str]:
    """``walk_images`` of a remote root: its listing's image files, hidden files and folders left out."""
    return sorted(rel for rel in storage.list_files(root)
                  if is_image_name(rel) and not any(part.startswith(".") for part in rel.split("/")))


def read_input(path, what: str, limit: str) -> bytes:
    """The bytes of an input file of the dataset (a manifest, a COCO JSON, a label file), local or remote, at most
    ``LIMITS[limit]``; LimitError (one line naming the file, the cap and how to raise it) otherwise."""
    if not storage.is_remote(path):
        return read_input_bytes(path, what, limit)
    cap = LIMITS[limit]
    try:
        data = storage.read_bytes(path, cap)
    except FileNotFoundError:
        raise LimitError(f"{what} {path} not found; check the path") from None
    except storage.StorageError as exc:
        raise LimitError(f"{what}: {exc}") from None
    if len(data) > cap:
        raise LimitError(f"{what} {path} is over the {human_bytes(cap)} cap ({limit}); {how_to_raise(limit)}")
    return data


def file_exists(root, rel: str) -> bool:
    """Whether ``rel`` is a file under ``root`` (local: ``is_file``, symlinks followed as before; remote: listed)."""
    if storage.is_remote(root):
        return storage.is_file(root, rel)
    return (Path(root) / rel).is_file()


def dir_exists(root, rel: str) -> bool:
    if storage.is_remote(root):
        return storage.is_dir(root, rel)
    return (Path(root) / rel).is_dir()


def _bad_name_problems(bad_names: list, unreadable_dirs: list = ()) -> list[dict]:
    return [_problem(n, "unreadable", "file name is not valid UTF-8, so it cannot be listed; rename the file",
                     "integrity") for n in bad_names] + [
        _problem(f"{rel}/", "unreadable", f"folder {rel} cannot be listed ({why}); its images were not scanned: "
                 "check its permissions", "integrity") for rel, why in unreadable_dirs]


def bad_entry(name) -> str | None:
    """Why a path given by a manifest row or an annotation file cannot be an image key, or None when it can:
    not text, a NUL or other control character, longer than ``max_path_chars`` characters, or a part longer
    than ``max_name_bytes`` bytes (no file system holds such a name)."""
    if not isinstance(name, str):
        return f"the path is {type(name).__name__}, not text"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "the path holds a control character (such as NUL, a tab or a newline)"
    if len(name) > LIMITS["max_path_chars"]:
        return (f"the path is {len(name):,} characters long, over the cap of {LIMITS['max_path_chars']:,} "
                f"(max_path_chars)")
    longest = max((len(part.encode("utf-8", "surrogatepass")) for part in name.split("/")), default=0)
    if longest > LIMITS["max_name_bytes"]:
        return (f"a part of the path is {longest:,} bytes long, over the cap of {LIMITS['max_name_bytes']:,} "
                f"(max_name_bytes)")
    return None


def _read_small_text(path, problems: list, shown: str, check: str, family: str) -> str | None:
    """A small text file of the dataset (classes.txt, data.yaml, a label file), at most ``max_text_bytes``; a
    file over the cap or unreadable is a finding in ``problems`` and None."""
    try:
        return read_input(path, shown, "max_text_bytes").decode("utf-8", errors="replace")
    except LimitError as exc:
        problems.append(_problem(shown, check, str(exc), family))
        return None


def _inside_file(root, p) -> bool:
    """A file the loader finds by itself (classes.txt, data.yaml, a manifest, a COCO JSON) is read only when it
    really lies inside the root: a symlink there must not make us read a file elsewhere. (A remote file: when
    the root's listing holds it.)"""
    if storage.is_remote(root):
        return is_within(p, root) and storage.is_file(root, storage.relative(root, p))
    return p.is_file() and is_within(p, root)


def _split_from_path(image_id: str):
    for part in PurePosixPath(image_id).parts[:-1]:
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return pd.NA
