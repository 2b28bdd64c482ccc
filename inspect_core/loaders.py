"""Loaders: any on-disk layout -> the same canonical tables.

``images``: one row per image, keyed by ``image_id`` (POSIX path relative to the root), with
``label``, ``split`` and metadata columns. ``annotations``: one row per box with
``box_x_px, box_y_px, box_w_px, box_h_px`` (top-left corner, width, height, in pixels).
Problems met while loading (a path outside the root, a malformed label line...) are findings in
``problems``, never exceptions; only an unusable root or manifest raises ``DatasetError``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .paths import is_image_name, is_within, resolve_inside
from .schema import finding_frame

FORMATS = ("folder", "csv", "coco", "yolo")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
MANIFEST_NAMES = ("manifest.csv", "manifest.parquet", "labels.csv", "labels.parquet")
PATH_COLUMNS = ("path", "image_id", "file", "filename", "file_name", "image", "filepath")
ANNOTATION_COLUMNS = ["ann_id", "image_id", "category", "category_id",
                      "box_x_px", "box_y_px", "box_w_px", "box_h_px"]


class DatasetError(ValueError):
    """The dataset cannot be loaded at all (bad root, unreadable manifest). The message says what to do."""


@dataclass
class Dataset:
    root: Path
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


def walk_images(root: Path, bad_names: list | None = None) -> list[str]:
    """All image files under root (any extension case), as sorted POSIX paths relative to root.
    Hidden files and folders are skipped; folder symlinks are not followed. Names that are not valid
    UTF-8 cannot be keys: they go to ``bad_names`` (shown with replacement characters) instead."""
    out = []
    root_s = str(root)
    for dirpath, dirnames, filenames in os.walk(root_s):
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


def _bad_name_problems(bad_names: list) -> list[dict]:
    return [_problem(n, "unreadable", "file name is not valid UTF-8, so it cannot be listed; rename the file",
                     "integrity") for n in bad_names]


def _inside_file(root: Path, p: Path) -> bool:
    """A file the loader finds by itself (classes.txt, data.yaml, a manifest, a COCO JSON) is read only when it
    really lies inside the root: a symlink there must not make us read a file elsewhere."""
    return p.is_file() and is_within(p, root)


def _read_classes_txt(root: Path) -> list[str] | None:
    p = root / "classes.txt"
    if not _inside_file(root, p):
        return None
    names = [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [n for n in names if n and not n.startswith("#")]


# ----------------------------------------------------------------------------- detection

def _find_coco_json(root: Path) -> Path | None:
    candidates = [root / "annotations.json"]
    candidates += sorted(root.glob("*.json"))
    if (root / "annotations").is_dir():
        candidates += sorted((root / "annotations").glob("*.json"))
    for p in candidates:
        if not _inside_file(root, p) or p.stat().st_size > 2_000_000_000:
            continue
        try:
            with open(p, "rb") as fh:
                head = fh.read(4096)
            if b'"images"' in head or b'"annotations"' in head or b'"categories"' in head:
                return p
            if p.stat().st_size < 50_000_000:
                obj = json.loads(p.read_bytes())
                if isinstance(obj, dict) and "images" in obj:
                    return p
        except (OSError, ValueError):
            continue
    return None


def _top_dirs_with_images(root: Path) -> list[str]:
    out = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            out.append(entry.name)
    return out


def detect_format(root: Path, manifest: Path | None = None) -> str:
    """Guess the layout: csv (a manifest), yolo (data.yaml or images/+labels/), coco (a COCO JSON and an
    images/ folder, or no class folders), else folder."""
    if manifest is not None or any((root / n).is_file() for n in MANIFEST_NAMES):
        return "csv"
    if (root / "data.yaml").is_file() or ((root / "images").is_dir() and (root / "labels").is_dir()):
        return "yolo"
    for d in _top_dirs_with_images(root):
        if (root / d / "images").is_dir() and (root / d / "labels").is_dir():
            return "yolo"
    coco = _find_coco_json(root)
    if coco is not None:
        dirs = _top_dirs_with_images(root)
        if not dirs or set(dirs) <= {"images", "annotations", "img", "imgs"}:
            return "coco"
    return "folder"


# ----------------------------------------------------------------------------- loaders

def load_folder(root: Path) -> Dataset:
    bad_names: list = []
    image_ids = walk_images(root, bad_names)
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
    classes = _read_classes_txt(root) or sorted(images["label"].dropna().unique().tolist())
    return Dataset(root=root, format="folder", images=images, annotations=_empty_annotations(),
                   classes=classes, has_image_labels=True, has_boxes=False,
                   problems=finding_frame(_bad_name_problems(bad_names)))


def _read_manifest(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"cannot read manifest {path}: {type(exc).__name__}: {exc}. "
                           "Give a CSV or Parquet file with columns path,label[,split].") from exc


def load_manifest(root: Path, manifest: Path | None = None) -> Dataset:
    if manifest is None:
        manifest = next((root / n for n in MANIFEST_NAMES if _inside_file(root, root / n)), None)
        if manifest is None:
            raise DatasetError(f"no manifest found in {root}: pass --manifest FILE (CSV or Parquet with path,label[,split])")
    manifest = Path(manifest)
    if not manifest.is_file():
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
        text = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw).strip()
        if not text:
            problems.append(_problem(f"<row {k + 2}>", "missing_file",
                                     f"manifest row {k + 2} has an empty path", "integrity"))
            continue
        norm = text.replace("\\", "/")
        if norm.startswith("./"):
            norm = norm[2:]
        image_ids.append(norm)
        keep_rows.append(k)
    kept = df.iloc[keep_rows].reset_index(drop=True)
    labels = [cell_text(v) for v in kept[label_col].tolist()] if label_col else None
    splits = [normalise_split(v) for v in kept[split_col].tolist()] if split_col else None
    extra = kept.drop(columns=[c for c in (path_col, label_col, split_col) if c])
    extra.columns = [f"meta_{c}" if c in ("image_id", "label", "split") else str(c) for c in extra.columns]
    images = _images_frame(image_ids, labels, splits, extra)
    dup = images["image_id"].duplicated(keep=False)
    for image_id, g in images.loc[dup].groupby("image_id", sort=True):
        labels_seen = ", ".join(str(v) for v in g["label"].tolist())
        problems.append(_problem(image_id, "listed_twice",
                                 f"listed {len(g)} times in the manifest (labels: {labels_seen}); the first row is used",
                                 "label"))
    images = images.loc[~images["image_id"].duplicated(keep="first")].reset_index(drop=True)
    classes = _read_classes_txt(root) or sorted(images["label"].dropna().unique().tolist())
    ds = Dataset(root=root, format="csv", images=images, annotations=_empty_annotations(),
                 classes=classes, has_image_labels=label_col is not None, has_boxes=False,
                 problems=finding_frame(problems))
    return ds


def _coco_resolve(root: Path, file_name: str, base_dirs: list[str]) -> str:
    name = str(file_name).replace("\\", "/")
    if name.startswith("./"):
        name = name[2:]
    for base in base_dirs:
        cand = f"{base}/{name}" if base else name
        if (root / cand).exists():
            return cand
    return name


def read_coco(root: Path, coco_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[dict]]:
    """Parse a COCO JSON. Returns (image entries, boxes, category names, problems)."""
    try:
        obj = json.loads(coco_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read COCO file {coco_path}: {exc}. Check that it is valid JSON.") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"COCO file {coco_path} is not a JSON object with images/annotations/categories")
    problems: list[dict] = []

    def section(name: str) -> list:
        value = obj.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            problems.append(_problem(f"<{coco_path.name}>", "box_malformed",
                                     f"'{name}' in {coco_path.name} is not a list; it was ignored", "annotation"))
            return []
        return value

    def ok_id(v) -> bool:
        return isinstance(v, (int, str)) and not isinstance(v, bool)

    cats = {}
    for c in section("categories"):
        if isinstance(c, dict) and ok_id(c.get("id")):
            cats[c["id"]] = str(c.get("name", c["id"]))
    base_dirs = ["", "images"]
    img_rows = []
    id_to_image = {}
    for e in section("images"):
        if not isinstance(e, dict) or "file_name" not in e or not ok_id(e.get("id", 0)):
            problems.append(_problem("<coco>", "box_malformed",
                                     f"COCO image entry without a file_name or with an odd id: {str(e)[:80]}",
                                     "annotation"))
            continue
        image_id = _coco_resolve(root, e["file_name"], base_dirs)
        id_to_image[e.get("id")] = image_id
        img_rows.append({"image_id": image_id, "coco_width_px": e.get("width"), "coco_height_px": e.get("height")})
    box_rows = []
    for k, a in enumerate(section("annotations")):
        if not isinstance(a, dict):
            continue
        image_id = id_to_image.get(a.get("image_id")) if ok_id(a.get("image_id")) else None
        bbox = a.get("bbox")
        if image_id is None:
            problems.append(_problem(f"<coco image {a.get('image_id')}>", "box_missing_image",
                                     f"annotation {a.get('id', k)} refers to image id {a.get('image_id')} "
                                     "that is not in the COCO images list", "annotation"))
            continue
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(isinstance(v, (int, float)) for v in bbox)):
            problems.append(_problem(image_id, "box_malformed",
                                     f"annotation {a.get('id', k)} has bbox {str(bbox)[:60]}, not [x, y, w, h] numbers",
                                     "annotation"))
            continue
        cid = a.get("category_id")
        cid = cid if ok_id(cid) else None
        box_rows.append({"ann_id": int(a.get("id", k)) if isinstance(a.get("id", k), int) else k,
                         "image_id": image_id, "category": cats.get(cid, pd.NA),
                         "category_id": cid if isinstance(cid, int) else pd.NA,
                         "box_x_px": float(bbox[0]), "box_y_px": float(bbox[1]),
                         "box_w_px": float(bbox[2]), "box_h_px": float(bbox[3])})
    images = pd.DataFrame(img_rows, columns=["image_id", "coco_width_px", "coco_height_px"])
    boxes = pd.DataFrame(box_rows, columns=ANNOTATION_COLUMNS) if box_rows else _empty_annotations()
    if box_rows:
        boxes["category_id"] = boxes["category_id"].astype("Int64")
        boxes["category"] = boxes["category"].astype("str")
    return images, boxes, list(cats.values()), problems


def load_coco(root: Path, coco_path: Path | None = None) -> Dataset:
    coco_path = Path(coco_path) if coco_path else _find_coco_json(root)
    if coco_path is None:
        raise DatasetError(f"no COCO JSON found in {root}: expected annotations.json or annotations/*.json")
    entries, boxes, categories, problems = read_coco(root, coco_path)
    entries = entries.drop_duplicates("image_id")
    images = _images_frame(entries["image_id"].tolist(),
                           splits=[_split_from_path(i) for i in entries["image_id"]])
    return Dataset(root=root, format="coco", images=images, annotations=boxes.reset_index(drop=True),
                   classes=categories, has_image_labels=False, has_boxes=True,
                   problems=finding_frame(problems))


def _split_from_path(image_id: str):
    for part in PurePosixPath(image_id).parts[:-1]:
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return pd.NA


def _strip_comment(line: str) -> str:
    """A YAML line without its trailing '# comment' (a '#' inside quotes is kept)."""
    quote = None
    for k, ch in enumerate(line):
        if ch in "'\"":
            quote = None if quote == ch else (ch if quote is None else quote)
        elif ch == "#" and quote is None and (k == 0 or line[k - 1] in " \t"):
            return line[:k].rstrip()
    return line.rstrip()


def _unquote(text: str) -> str:
    return text.strip().strip("'\"").strip()


def parse_yolo_names(text: str) -> list[str]:
    """Class names from a YOLO data.yaml: `names: [a, b]` (also over several lines), a block list `- a`,
    or a map `0: a`. (A small reader for this one key, so we need no YAML dependency.)"""
    lines = [_strip_comment(line) for line in text.splitlines()]
    for k, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*)$", line)
        if not m:
            continue
        rest = m.group(1).strip()
        if rest.startswith("["):
            body = rest
            j = k
            while "]" not in body and j + 1 < len(lines):
                j += 1
                body += " " + lines[j].strip()
            body = body[1:body.index("]")] if "]" in body else body[1:]
            return [_unquote(x) for x in body.split(",") if _unquote(x)]
        if rest.startswith("{"):
            body = rest.strip("{}")
            names = {}
            for item in body.split(","):
                key, _, val = item.partition(":")
                if key.strip().isdigit():
                    names[int(key)] = _unquote(val)
            return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []
        names: dict[int, str] = {}
        seq: list[str] = []
        for sub in lines[k + 1:]:
            if not sub.strip():
                continue
            if not sub.startswith((" ", "\t", "-")):
                break
            item = sub.strip()
            if item.startswith("-"):
                seq.append(_unquote(item[1:]))
            else:
                mm = re.match(r"^(\d+)\s*:\s*(.+)$", item)
                if mm:
                    names[int(mm.group(1))] = _unquote(mm.group(2))
        if seq:
            return seq
        if names:
            return [names.get(i, str(i)) for i in range(max(names) + 1)]
    return []


def _yolo_label_path(root: Path, image_id: str) -> Path | None:
    """labels/<same path>.txt for the last 'images' folder on the image's path: root/images/... and
    root/<split>/images/... (Roboflow, Ultralytics exports) alike."""
    parts = image_id.split("/")
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            rel = "/".join(parts[:k] + ["labels"] + parts[k + 1:])
            return root / (os.path.splitext(rel)[0] + ".txt")
    return None


def load_yolo(root: Path) -> Dataset:
    classes = []
    if _inside_file(root, root / "data.yaml"):
        classes = parse_yolo_names((root / "data.yaml").read_text(encoding="utf-8", errors="replace"))
    bad_names: list = []
    all_images = walk_images(root, bad_names)
    in_images_dir = [i for i in all_images if "images" in i.split("/")[:-1]]
    image_ids = in_images_dir or all_images
    problems: list[dict] = _bad_name_problems(bad_names)
    rows = []
    ann_id = 0
    for image_id in image_ids:
        label_path = _yolo_label_path(root, image_id)
        if label_path is None or not label_path.is_file():
            continue
        if not is_within(label_path, root):
            problems.append(_problem(image_id, "path_outside_root",
                                     f"its label file {label_path.relative_to(root).as_posix()} resolves outside the "
                                     "dataset root; not read", "integrity"))
            continue
        shown = label_path.relative_to(root).as_posix()
        try:
            text = label_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            problems.append(_problem(image_id, "box_malformed", f"cannot read {shown}: {exc}", "annotation"))
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) < 5:
                    raise ValueError
                cid = int(float(parts[0]))
                cx, cy, w, h = (float(v) for v in parts[1:5])
                if not all(np.isfinite(v) for v in (cx, cy, w, h)):
                    raise ValueError
            except (ValueError, IndexError, OverflowError):
                problems.append(_problem(image_id, "box_malformed",
                                         f"{shown} line {n}: '{line.strip()[:60]}' is not 'class cx cy w h'",
                                         "annotation"))
                continue
            rows.append({"ann_id": ann_id, "image_id": image_id,
                         "category": classes[cid] if 0 <= cid < len(classes) else pd.NA,
                         "category_id": cid, "box_x_px": cx - w / 2, "box_y_px": cy - h / 2,
                         "box_w_px": w, "box_h_px": h})
            ann_id += 1
    boxes = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS) if rows else _empty_annotations()
    if rows:
        boxes["category_id"] = boxes["category_id"].astype("Int64")
        boxes["category"] = boxes["category"].astype("str")
    images = _images_frame(image_ids, splits=[_split_from_path(i) for i in image_ids])
    if not classes:
        classes = [str(c) for c in sorted(boxes["category_id"].dropna().unique().tolist())]
        boxes["category"] = boxes["category_id"].astype("str")
    return Dataset(root=root, format="yolo", images=images, annotations=boxes, classes=classes,
                   has_image_labels=False, has_boxes=True, problems=finding_frame(problems),
                   boxes_normalised=True)


def attach_coco_boxes(ds: Dataset, coco_path: Path) -> Dataset:
    """Boxes for a folder or manifest dataset from a COCO JSON whose file_names are image_ids."""
    entries, boxes, categories, problems = read_coco(ds.root, coco_path)
    known = set(ds.images["image_id"])
    for image_id in entries["image_id"]:
        if image_id in known:
            continue
        if resolve_inside(ds.root, image_id) is None:
            problems.append(_problem(image_id, "path_outside_root",
                                     f"{coco_path.name} lists '{image_id}', which resolves outside the dataset root; "
                                     "it was not opened", "integrity"))
        else:
            problems.append(_problem(image_id, "box_missing_image",
                                     f"{coco_path.name} lists '{image_id}' with boxes, but no such image is in the dataset",
                                     "annotation"))
    inside = boxes["image_id"].isin(known)
    ds.annotations = boxes.loc[inside].reset_index(drop=True)
    ds.has_boxes = True
    ds.problems = finding_frame(ds.problems.to_dict("records") + problems)
    ds.box_categories = categories
    return ds


def load_dataset(root, format: str = "auto", manifest=None, boxes=None) -> Dataset:
    """Load a dataset from ``root``. ``format`` is auto|folder|csv|coco|yolo; ``manifest`` a CSV/Parquet
    file for the csv format; ``boxes`` a COCO JSON of boxes for a folder/csv dataset (auto: root/annotations.json)."""
    if root is None or str(root).strip() == "":
        raise DatasetError("no dataset root given: pass the folder that holds the images")
    root_path = Path(os.path.expanduser(str(root)))
    if not root_path.exists():
        raise DatasetError(f"dataset root {root_path} does not exist: check the path")
    if not root_path.is_dir():
        raise DatasetError(f"dataset root {root_path} is not a folder: give the folder that holds the images")
    try:
        os.listdir(root_path)
    except OSError as exc:
        raise DatasetError(f"cannot list {root_path}: {exc.strerror}. Check its permissions.") from exc
    root_path = Path(os.path.realpath(root_path))
    fmt = (format or "auto").lower()
    if fmt not in ("auto",) + FORMATS:
        raise DatasetError(f"unknown format '{format}': use one of auto, {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(root_path, Path(manifest) if manifest else None)
    if fmt == "folder":
        ds = load_folder(root_path)
    elif fmt == "csv":
        ds = load_manifest(root_path, Path(manifest) if manifest else None)
    elif fmt == "coco":
        ds = load_coco(root_path, Path(boxes) if boxes else None)
    else:
        ds = load_yolo(root_path)
    if fmt in ("folder", "csv"):
        coco_path = Path(boxes) if boxes else _find_coco_json(root_path)
        if coco_path is not None:
            ds = attach_coco_boxes(ds, coco_path)
    if ds.annotations is not None and len(ds.annotations):
        ds.annotations = ds.annotations.reset_index(drop=True)
    return ds
