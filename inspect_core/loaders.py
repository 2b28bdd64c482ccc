"""Loaders: any on-disk layout -> the same canonical tables.

``images``: one row per image, keyed by ``image_id`` (POSIX path relative to the root), with
``label``, ``split`` and metadata columns. ``annotations``: one row per box with
``box_x_px, box_y_px, box_w_px, box_h_px`` (top-left corner, width, height, in pixels).
Problems met while loading (a path outside the root, a malformed label line...) are findings in
``problems``, never exceptions; only an unusable root or manifest raises ``DatasetError``.

This module detects the layout, dispatches (``load_dataset``) and reads class folders and manifests; COCO is read
in ``loader_coco``, YOLO in ``loader_yolo``; ``Dataset``, ``DatasetError`` and the helpers all three share live
in ``loader_base`` (and ``Dataset`` / ``DatasetError`` are imported from here as before).

A root may be a URL on object storage (``s3://bucket/prefix``): the same loaders then read the root's listing and
files through ``storage`` (``Dataset.root`` is the normalised URL, as text).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import storage
from .export import from_spreadsheet_safe
from .limits import LimitError, check_input_file
from .loader_base import (SPLIT_ALIASES, Dataset, DatasetError, _bad_name_problems, _empty_annotations,
                          _images_frame, _inside_file, _problem, _read_small_text, bad_entry, dir_exists, file_exists,
                          read_input, walk_images)
from .loader_coco import _find_coco_json, attach_coco_boxes, load_coco
from .loader_yolo import load_yolo
from .schema import finding_frame
from .textsafe import shown_entry

FORMATS = ("folder", "csv", "coco", "yolo")
MANIFEST_NAMES = ("manifest.csv", "manifest.parquet", "labels.csv", "labels.parquet")
PATH_COLUMNS = ("path", "image_id", "file", "filename", "file_name", "image", "filepath")


def cell_text(value) -> object:
    """A manifest cell (label, split) as text; an empty or missing cell is ``pd.NA``.

    Parquet keeps a column's type, and pandas turns an integer column with one empty cell into float64
    (0.0, 1.0, NaN), so a whole-number float reads as the integer it stands for ("0", not "0.0");
    other numbers keep their own text ("0.5"). Nullable missing values (pd.NA, NaT) stay missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return pd.NA
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return pd.NA
        if np.isfinite(value) and float(value).is_integer():
            return str(int(value))
    text = str(value).strip()
    return text if text else pd.NA


def normalise_split(value) -> object:
    text = cell_text(value)
    return pd.NA if text is pd.NA else SPLIT_ALIASES.get(text.lower(), text)


def _read_classes_txt(root: Path, problems: list) -> list[str] | None:
    p = storage.join(root, "classes.txt")
    if not _inside_file(root, p):
        return None
    text = _read_small_text(p, problems, "classes.txt", "unreadable", "integrity")
    if text is None:
        return None
    names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n and not n.startswith("#")]


# ----------------------------------------------------------------------------- detection

def _top_dirs_with_images(root) -> list[str]:
    if storage.is_remote(root):
        return sorted({rel.split("/")[0] for rel in storage.list_files(root)
                       if "/" in rel and not rel.startswith(".")})
    out = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            out.append(entry.name)
    return out


def detect_format(root, manifest=None) -> str:
    """Guess the layout: csv (a manifest), yolo (data.yaml or images/+labels/), coco (a COCO JSON and an
    images/ folder, or no class folders), else folder."""
    if manifest is not None or any(file_exists(root, n) for n in MANIFEST_NAMES):
        return "csv"
    if file_exists(root, "data.yaml") or (dir_exists(root, "images") and dir_exists(root, "labels")):
        return "yolo"
    for d in _top_dirs_with_images(root):
        if dir_exists(root, f"{d}/images") and dir_exists(root, f"{d}/labels"):
            return "yolo"
    coco = _find_coco_json(root)
    if coco is not None:
        dirs = _top_dirs_with_images(root)
        if not dirs or set(dirs) <= {"images", "annotations", "img", "imgs"}:
            return "coco"
    return "folder"


# ----------------------------------------------------------------------------- loaders

def load_folder(root) -> Dataset:
    bad_names: list = []
    unreadable_dirs: list = []
    image_ids = walk_images(root, bad_names, unreadable_dirs)
    labels, splits = [], []
    top_dirs = {i.split("/")[0] for i in image_ids if "/" in i}
    split_layout = bool(top_dirs) and all(d.lower() in SPLIT_ALIASES for d in top_dirs)
    for i in image_ids:
        parts = i.split("/")
        if split_layout:
            splits.append(SPLIT_ALIASES[parts[0].lower()])
            labels.append(parts[1] if len(parts) >= 3 else pd.NA)
        else:
            splits.append(pd.NA)
            labels.append(parts[0] if len(parts) >= 2 else pd.NA)
    images = _images_frame(image_ids, labels, splits)
    problems = _bad_name_problems(bad_names, unreadable_dirs)
    classes = _read_classes_txt(root, problems) or sorted(images["label"].dropna().unique().tolist())
    return Dataset(root=root, format="folder", images=images, annotations=_empty_annotations(),
                   classes=classes, has_image_labels=True, has_boxes=False,
                   problems=finding_frame(problems))


def _read_manifest(path) -> pd.DataFrame:
    try:
        if storage.is_remote(path):
            source = io.BytesIO(read_input(path, "manifest", "max_table_bytes"))
        else:
            source = check_input_file(path, "manifest", "max_table_bytes")
    except LimitError as exc:
        raise DatasetError(str(exc)) from None
    try:
        if storage.name_of(path).lower().endswith((".parquet", ".pq")):
            return pd.read_parquet(source)
        return pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"cannot read manifest {path}: {type(exc).__name__}: {exc}. "
                           "Give a CSV or Parquet file with columns path,label[,split].") from exc


def load_manifest(root, manifest=None) -> Dataset:
    if manifest is None:
        manifest = next((storage.join(root, n) for n in MANIFEST_NAMES
                         if _inside_file(root, storage.join(root, n))), None)
        if manifest is None:
            raise DatasetError(f"no manifest found in {root}: pass --manifest FILE (CSV or Parquet with "
                               "path,label[,split])")
    manifest = _as_path(manifest)
    if not storage.is_remote(manifest) and not os.path.lexists(manifest):
        raise DatasetError(f"manifest {manifest} does not exist: check the path given to --manifest")
    df = _read_manifest(manifest)
    cols = {c.lower(): c for c in df.columns}
    path_col = next((cols[c] for c in PATH_COLUMNS if c in cols), None)
    if path_col is None:
        raise DatasetError(f"manifest {manifest} has no path column (one of {', '.join(PATH_COLUMNS)}); "
                           f"its columns are: {', '.join(map(str, df.columns))}")
    label_col = cols.get("label") or cols.get("class") or cols.get("category")
    split_col = cols.get("split") or cols.get("subset")
    problems, keep_rows, image_ids = [], [], []
    for k, raw in enumerate(df[path_col].tolist()):
        missing = raw is None or (isinstance(raw, float) and np.isnan(raw))
        text = "" if missing else from_spreadsheet_safe(str(raw).strip())
        if not text:
            problems.append(_problem(f"<row {k + 2}>", "missing_file",
                                     f"manifest row {k + 2} has an empty path", "integrity"))
            continue
        norm = text.replace("\\", "/")
        if norm.startswith("./"):
            norm = norm[2:]
        why = bad_entry(norm)
        if why:
            problems.append(_problem(f"<row {k + 2}>", "unreadable",
                                     f"manifest row {k + 2} ({shown_entry(norm)}): {why}; the row was skipped",
                                     "integrity"))
            continue
        image_ids.append(norm)
        keep_rows.append(k)
    kept = df.iloc[keep_rows].reset_index(drop=True)
    labels = [cell_text(from_spreadsheet_safe(v)) for v in kept[label_col].tolist()] if label_col else None
    splits = [normalise_split(from_spreadsheet_safe(v)) for v in kept[split_col].tolist()] if split_col else None
    extra = kept.drop(columns=[c for c in (path_col, label_col, split_col) if c])
    extra.columns = [f"meta_{c}" if c in ("image_id", "label", "split") else str(c) for c in extra.columns]
    images = _images_frame(image_ids, labels, splits, extra)
    dup = images["image_id"].duplicated(keep=False)
    for image_id, g in images.loc[dup].groupby("image_id", sort=True):
        labels_seen = ", ".join(str(v) for v in g["label"].tolist())
        problems.append(_problem(image_id, "listed_twice",
                                 f"listed {len(g)} times in the manifest (labels: {labels_seen}); the first row "
                                 "is used",
                                 "label"))
    images = images.loc[~images["image_id"].duplicated(keep="first")].reset_index(drop=True)
    classes = _read_classes_txt(root, problems) or sorted(images["label"].dropna().unique().tolist())
    ds = Dataset(root=root, format="csv", images=images, annotations=_empty_annotations(),
                 classes=classes, has_image_labels=label_col is not None, has_boxes=False,
                 problems=finding_frame(problems))
    return ds


def _as_path(path):
    """A file given by the user: a URL stays text, a local path becomes a Path."""
    return path if storage.is_remote(path) else Path(path)


def _remote_root(root: str) -> str:
    """The normalised URL of a remote root that can be listed (listing it afresh); DatasetError otherwise."""
    try:
        return storage.check_root(root)
    except storage.StorageError as exc:
        raise DatasetError(str(exc)) from None


def load_dataset(root, format: str = "auto", manifest=None, boxes=None) -> Dataset:
    """Load a dataset from ``root``. ``format`` is auto|folder|csv|coco|yolo; ``manifest`` a CSV/Parquet
    file for the csv format; ``boxes`` a COCO JSON of boxes for a folder/csv dataset (auto: root/annotations.json)."""
    if root is None or str(root).strip() == "":
        raise DatasetError("no dataset root given: pass the folder that holds the images")
    if storage.is_remote(str(root).strip()):
        root_path = _remote_root(str(root).strip())
    else:
        root_path = _local_root(root)
    fmt = (format or "auto").lower()
    if fmt not in ("auto",) + FORMATS:
        raise DatasetError(f"unknown format '{format}': use one of auto, {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(root_path, _as_path(manifest) if manifest else None)
    if fmt == "folder":
        ds = load_folder(root_path)
    elif fmt == "csv":
        ds = load_manifest(root_path, _as_path(manifest) if manifest else None)
    elif fmt == "coco":
        ds = load_coco(root_path, _as_path(boxes) if boxes else None)
    else:
        ds = load_yolo(root_path)
    if fmt in ("folder", "csv"):
        coco_path = _as_path(boxes) if boxes else _find_coco_json(root_path)
        if coco_path is not None:
            ds = attach_coco_boxes(ds, coco_path)
    if ds.annotations is not None and len(ds.annotations):
        ds.annotations = ds.annotations.reset_index(drop=True)
    return ds


def _local_root(root) -> Path:
    root_path = Path(os.path.expanduser(str(root)))
    if not root_path.exists():
        raise DatasetError(f"dataset root {root_path} does not exist: check the path")
    if not root_path.is_dir():
        raise DatasetError(f"dataset root {root_path} is not a folder: give the folder that holds the images")
    try:
        os.listdir(root_path)
    except OSError as exc:
        raise DatasetError(f"cannot list {root_path}: {exc.strerror}. Check its permissions.") from exc
    return Path(os.path.realpath(root_path))
