"""Loaders: any on-disk layout -> the same canonical tables.

``images``: one row per image, keyed by ``image_id`` (POSIX path relative to the root), with
``label``, ``split`` and metadata columns. ``annotations``: one row per box with
``box_x_px, box_y_px, box_w_px, box_h_px`` (top-left corner, width, height, in pixels).
Problems met while loading (a path outside the root, a malformed label line...) are findings in
``problems``, never exceptions; only an unusable root or manifest raises ``DatasetError``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .export import from_spreadsheet_safe
from .limits import LIMITS, LimitError, check_input_file, how_to_raise, load_json, read_input_bytes
from .paths import is_image_name, is_within, resolve_inside
from .schema import finding_frame
from .textsafe import shown_entry

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


def walk_images(root: Path, bad_names: list | None = None, unreadable_dirs: list | None = None) -> list[str]:
    """All image files under root (any extension case), as sorted POSIX paths relative to root.
    Hidden files and folders are skipped; folder symlinks are not followed. Names that are not valid
    UTF-8 cannot be keys: they go to ``bad_names`` (shown with replacement characters) instead; folders that
    cannot be listed go to ``unreadable_dirs`` as (relative path, reason)."""
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


def _read_small_text(path: Path, problems: list, shown: str, check: str, family: str) -> str | None:
    """A small text file of the dataset (classes.txt, data.yaml, a label file), at most ``max_text_bytes``; a
    file over the cap or unreadable is a finding in ``problems`` and None."""
    try:
        return read_input_bytes(path, shown, "max_text_bytes").decode("utf-8", errors="replace")
    except LimitError as exc:
        problems.append(_problem(shown, check, str(exc), family))
        return None


def _inside_file(root: Path, p: Path) -> bool:
    """A file the loader finds by itself (classes.txt, data.yaml, a manifest, a COCO JSON) is read only when it
    really lies inside the root: a symlink there must not make us read a file elsewhere."""
    return p.is_file() and is_within(p, root)


def _read_classes_txt(root: Path, problems: list) -> list[str] | None:
    p = root / "classes.txt"
    if not _inside_file(root, p):
        return None
    text = _read_small_text(p, problems, "classes.txt", "unreadable", "integrity")
    if text is None:
        return None
    names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n and not n.startswith("#")]


# ----------------------------------------------------------------------------- detection

def _find_coco_json(root: Path) -> Path | None:
    candidates = [root / "annotations.json"]
    candidates += sorted(root.glob("*.json"))
    if (root / "annotations").is_dir():
        candidates += sorted((root / "annotations").glob("*.json"))
    for p in candidates:
        if not _inside_file(root, p) or p.stat().st_size > LIMITS["max_json_bytes"]:
            continue
        try:
            with open(p, "rb") as fh:
                head = fh.read(4096)
            if b'"images"' in head or b'"annotations"' in head or b'"categories"' in head:
                return p
            if p.stat().st_size < 50_000_000:
                obj = load_json(p.read_bytes(), p.name)
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


def _read_manifest(path: Path) -> pd.DataFrame:
    try:
        check_input_file(path, "manifest", "max_table_bytes")
    except LimitError as exc:
        raise DatasetError(str(exc)) from None
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
    if not os.path.lexists(manifest):
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
        text = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else from_spreadsheet_safe(str(raw).strip())
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
                                 f"listed {len(g)} times in the manifest (labels: {labels_seen}); the first row is used",
                                 "label"))
    images = images.loc[~images["image_id"].duplicated(keep="first")].reset_index(drop=True)
    classes = _read_classes_txt(root, problems) or sorted(images["label"].dropna().unique().tolist())
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
        try:
            if (root / cand).exists():
                return cand
        except (OSError, ValueError):
            continue
    return name


def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _cap_boxes(rows: list[dict], problems: list, where: str) -> list[dict]:
    """At most ``max_boxes_per_image`` boxes per image (the first ones); a too_many_boxes finding for each image
    over the cap."""
    cap = LIMITS["max_boxes_per_image"]
    if len(rows) <= cap:
        return rows
    counts = pd.Series([r["image_id"] for r in rows]).value_counts()
    over = counts[counts > cap]
    if over.empty:
        return rows
    for image_id, n in over.items():
        problems.append(_problem(image_id, "too_many_boxes",
                                 f"{where} gives {n:,} boxes for this image, over the cap of {cap:,} "
                                 f"(max_boxes_per_image); the first {cap:,} were kept; {how_to_raise('max_boxes_per_image')}",
                                 "annotation"))
    seen: dict = {}
    kept = []
    for r in rows:
        k = seen.get(r["image_id"], 0)
        if k < cap:
            kept.append(r)
        seen[r["image_id"]] = k + 1
    return kept


def read_coco(root: Path, coco_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[dict]]:
    """Parse a COCO JSON. Returns (image entries, boxes, category names, problems).

    The file is at most ``max_json_bytes`` and ``max_json_depth`` levels deep, and its integers are kept to 64
    bits (LimitError / DatasetError otherwise, one line). Within it, every bad entry (an odd id, a repeated
    image id, a file_name that cannot be a path, a bbox that is not four finite numbers) is a finding naming
    the entry, and the others are read."""
    try:
        obj = load_json(read_input_bytes(coco_path, "COCO file", "max_json_bytes"), f"COCO file {coco_path}")
    except LimitError as exc:
        raise DatasetError(str(exc)) from None
    except ValueError as exc:
        raise DatasetError(f"{exc}. Check that it is valid JSON.") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"COCO file {coco_path} is not a JSON object with images/annotations/categories")
    problems: list[dict] = []
    where = coco_path.name

    def section(name: str) -> list:
        value = obj.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            problems.append(_problem(f"<{where}>", "box_malformed",
                                     f"'{name}' in {where} is not a list; it was ignored", "annotation"))
            return []
        return value

    def ok_id(v) -> bool:
        return isinstance(v, (int, str)) and not isinstance(v, bool) and (not isinstance(v, str) or len(v) <= 200)

    cats = {}
    for c in section("categories"):
        if isinstance(c, dict) and ok_id(c.get("id")):
            cats[c["id"]] = str(c.get("name", c["id"]))[:200]
    base_dirs = ["", "images"]
    img_rows = []
    id_to_image = {}
    for k, e in enumerate(section("images")):
        if not isinstance(e, dict) or "file_name" not in e or not ok_id(e.get("id", 0)):
            problems.append(_problem("<coco>", "box_malformed",
                                     f"{where} images[{k}] has no file_name or an odd id: {shown_entry(e)}",
                                     "annotation"))
            continue
        why = bad_entry(e["file_name"])
        if why:
            problems.append(_problem(f"<coco image {shown_entry(e.get('id'), 40)}>", "box_malformed",
                                     f"{where} images[{k}] file_name {shown_entry(e['file_name'])}: {why}; skipped",
                                     "annotation"))
            continue
        image_id = _coco_resolve(root, e["file_name"], base_dirs)
        if e.get("id") in id_to_image:
            problems.append(_problem(image_id, "box_malformed",
                                     f"{where} images[{k}] repeats image id {shown_entry(e.get('id'), 40)} (already "
                                     f"{shown_entry(id_to_image[e.get('id')])}); its boxes go to the first", "annotation"))
            continue
        id_to_image[e.get("id")] = image_id
        w_px, h_px = e.get("width"), e.get("height")
        img_rows.append({"image_id": image_id, "coco_width_px": w_px if _finite_number(w_px) else None,
                         "coco_height_px": h_px if _finite_number(h_px) else None})
    box_rows = []
    for k, a in enumerate(section("annotations")):
        if not isinstance(a, dict):
            continue
        image_id = id_to_image.get(a.get("image_id")) if ok_id(a.get("image_id")) else None
        bbox = a.get("bbox")
        ann = a.get("id", k)
        ann = ann if isinstance(ann, int) and not isinstance(ann, bool) else k
        if image_id is None:
            problems.append(_problem(f"<coco image {shown_entry(a.get('image_id'), 40)}>", "box_missing_image",
                                     f"annotation {ann} refers to image id {shown_entry(a.get('image_id'), 40)} "
                                     "that is not in the COCO images list", "annotation"))
            continue
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_finite_number(v) for v in bbox)):
            problems.append(_problem(image_id, "box_malformed",
                                     f"annotation {ann} has bbox {shown_entry(bbox, 60)}, not [x, y, w, h] finite "
                                     "numbers", "annotation"))
            continue
        cid = a.get("category_id")
        cid = cid if ok_id(cid) else None
        box_rows.append({"ann_id": ann,
                         "image_id": image_id, "category": cats.get(cid, pd.NA),
                         "category_id": cid if isinstance(cid, int) else pd.NA,
                         "box_x_px": float(bbox[0]), "box_y_px": float(bbox[1]),
                         "box_w_px": float(bbox[2]), "box_h_px": float(bbox[3])})
    box_rows = _cap_boxes(box_rows, problems, where)
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


def _names_from_map(names: dict[int, str], problems: list | None) -> list[str]:
    """A class list from an index -> name map; indices over ``max_class_index`` are dropped (a finding in
    ``problems``), so that a 30-byte file cannot ask for a list of a billion names."""
    cap = LIMITS["max_class_index"]
    over = sorted(i for i in names if i > cap)
    if over and problems is not None:
        problems.append(_problem("data.yaml", "unknown_label",
                                 f"data.yaml names class index {over[0]:,}"
                                 f"{f' and {len(over) - 1} more' if len(over) > 1 else ''}, over the cap of {cap:,} "
                                 f"(max_class_index); ignored; {how_to_raise('max_class_index')}", "label"))
    names = {i: n for i, n in names.items() if i <= cap}
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


def parse_yolo_names(text: str, problems: list | None = None) -> list[str]:
    """Class names from a YOLO data.yaml: `names: [a, b]` (also over several lines), a block list `- a`,
    or a map `0: a`. (A small reader for this one key, so we need no YAML dependency.) Map indices over
    ``max_class_index`` are ignored, with a finding in ``problems``."""
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
                if key.strip().isdigit() and len(key.strip()) <= 18:
                    names[int(key)] = _unquote(val)
            return _names_from_map(names, problems)
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
                mm = re.match(r"^(\d{1,18})\s*:\s*(.+)$", item)
                if mm:
                    names[int(mm.group(1))] = _unquote(mm.group(2))
        if seq:
            return seq
        if names:
            return _names_from_map(names, problems)
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


def yolo_class(text: str) -> int:
    """The class of a YOLO label line: a whole number 0..max_class_index ('3' or '3.0'); ValueError with the
    reason otherwise ('1.7' is not read as 1, nor '1e30' as a class)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"class '{text[:20]}' is not a number") from None
    if not np.isfinite(value) or not value.is_integer():
        raise ValueError(f"class '{text[:20]}' is not a whole number")
    if not 0 <= value <= LIMITS["max_class_index"]:
        raise ValueError(f"class '{text[:20]}' is outside 0..{LIMITS['max_class_index']:,} (max_class_index)")
    return int(value)


def load_yolo(root: Path) -> Dataset:
    classes = []
    problems: list[dict] = []
    if _inside_file(root, root / "data.yaml"):
        text = _read_small_text(root / "data.yaml", problems, "data.yaml", "unreadable", "integrity")
        classes = parse_yolo_names(text, problems) if text is not None else []
    bad_names: list = []
    unreadable_dirs: list = []
    all_images = walk_images(root, bad_names, unreadable_dirs)
    in_images_dir = [i for i in all_images if "images" in i.split("/")[:-1]]
    image_ids = in_images_dir or all_images
    problems += _bad_name_problems(bad_names, unreadable_dirs)
    rows = []
    ann_id = 0
    for image_id in image_ids:
        label_path = _yolo_label_path(root, image_id)
        try:
            if label_path is None or not label_path.exists():
                continue
        except OSError:
            continue
        if not is_within(label_path, root):
            problems.append(_problem(image_id, "path_outside_root",
                                     f"its label file {label_path.relative_to(root).as_posix()} resolves outside the "
                                     "dataset root; not read", "integrity"))
            continue
        shown = label_path.relative_to(root).as_posix()
        text = _read_small_text(label_path, problems, image_id, "box_malformed", "annotation")
        if text is None:
            continue
        n_boxes = 0
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) < 5:
                    raise ValueError("not 'class cx cy w h'")
                cid = yolo_class(parts[0])
                cx, cy, w, h = (float(v) for v in parts[1:5])
                if not all(np.isfinite(v) for v in (cx, cy, w, h)):
                    raise ValueError("a coordinate is not a finite number")
            except (ValueError, IndexError, OverflowError) as exc:
                problems.append(_problem(image_id, "box_malformed",
                                         f"{shown} line {n}: '{shown_entry(line.strip(), 60)}': {exc or 'not class cx cy w h'}",
                                         "annotation"))
                continue
            n_boxes += 1
            if n_boxes > LIMITS["max_boxes_per_image"]:
                problems.append(_problem(image_id, "too_many_boxes",
                                         f"{shown} has more than {LIMITS['max_boxes_per_image']:,} boxes (max_boxes_per_image); "
                                         f"lines from {n} on were not read; {how_to_raise('max_boxes_per_image')}",
                                         "annotation"))
                break
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
