"""COCO reading: a COCO JSON -> image entries, boxes (``box_*_px``), category names and problems; the
``coco`` format (``load_coco``) and COCO boxes for a folder or manifest dataset (``attach_coco_boxes``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import storage
from .limits import LIMITS, LimitError, how_to_raise, load_json
from .loader_base import (ANNOTATION_COLUMNS, Dataset, DatasetError, _empty_annotations, _images_frame,
                          _inside_file, _problem, _split_from_path, bad_entry, read_input)
from .paths import resolve_inside
from .schema import finding_frame
from .textsafe import shown_entry


def _find_remote_coco_json(root: str) -> str | None:
    """``_find_coco_json`` of a remote root: the same candidates, from its listing, each judged by its first bytes."""
    files = storage.list_files(root)
    names = ["annotations.json"] + sorted(r for r in files if "/" not in r and r.endswith(".json"))
    names += sorted(r for r in files if r.startswith("annotations/") and r.count("/") == 1 and r.endswith(".json"))
    for rel in names:
        version = files.get(rel)
        if version is None or version.size_bytes > LIMITS["max_json_bytes"]:
            continue
        url = storage.join(root, rel)
        try:
            head = storage.read_head(url)
            if b'"images"' in head or b'"annotations"' in head or b'"categories"' in head:
                return url
            if version.size_bytes < 50_000_000:
                obj = load_json(storage.read_bytes(url), rel)
                if isinstance(obj, dict) and "images" in obj:
                    return url
        except (OSError, ValueError):
            continue
    return None


def _find_coco_json(root):
    if storage.is_remote(root):
        return _find_remote_coco_json(root)
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


def _coco_resolve(root, file_name: str, base_dirs: list[str]) -> str:
    name = str(file_name).replace("\\", "/")
    if name.startswith("./"):
        name = name[2:]
    remote = storage.is_remote(root)
    for base in base_dirs:
        cand = f"{base}/{name}" if base else name
        try:
            if storage.is_file(root, cand) if remote else (root / cand).exists():
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
                                 f"(max_boxes_per_image); the first {cap:,} were kept; "
                                 f"{how_to_raise('max_boxes_per_image')}",
                                 "annotation"))
    seen: dict = {}
    kept = []
    for r in rows:
        k = seen.get(r["image_id"], 0)
        if k < cap:
            kept.append(r)
        seen[r["image_id"]] = k + 1
    return kept


def read_coco(root, coco_path) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[dict]]:
    """Parse a COCO JSON. Returns (image entries, boxes, category names, problems).

    The file is at most ``max_json_bytes`` and ``max_json_depth`` levels deep, and its integers are kept to 64
    bits (LimitError / DatasetError otherwise, one line). Within it, every bad entry (an odd id, a repeated
    image id, a file_name that cannot be a path, a bbox that is not four finite numbers) is a finding naming
    the entry, and the others are read."""
    try:
        obj = load_json(read_input(coco_path, "COCO file", "max_json_bytes"), f"COCO file {coco_path}")
    except LimitError as exc:
        raise DatasetError(str(exc)) from None
    except ValueError as exc:
        raise DatasetError(f"{exc}. Check that it is valid JSON.") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"COCO file {coco_path} is not a JSON object with images/annotations/categories")
    problems: list[dict] = []
    where = storage.name_of(coco_path)

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
                                     f"{shown_entry(id_to_image[e.get('id')])}); its boxes go to the first",
                                     "annotation"))
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
                         "box_w_px": float(bbox[2]), "box_h_px": float(bbox[3]),
                         "iscrowd": a.get("iscrowd") in (1, True)})     # COCO crowd region: matched, never missed
    box_rows = _cap_boxes(box_rows, problems, where)
    images = pd.DataFrame(img_rows, columns=["image_id", "coco_width_px", "coco_height_px"])
    boxes = (pd.DataFrame(box_rows, columns=ANNOTATION_COLUMNS + ["iscrowd"]) if box_rows
             else _empty_annotations().assign(iscrowd=pd.Series([], dtype=bool)))
    if box_rows:
        boxes["category_id"] = boxes["category_id"].astype("Int64")
        boxes["category"] = boxes["category"].astype("str")
    return images, boxes, list(cats.values()), problems


def load_coco(root, coco_path=None) -> Dataset:
    if coco_path and not storage.is_remote(coco_path):
        coco_path = Path(coco_path)
    coco_path = coco_path or _find_coco_json(root)
    if coco_path is None:
        raise DatasetError(f"no COCO JSON found in {root}: expected annotations.json or annotations/*.json")
    entries, boxes, categories, problems = read_coco(root, coco_path)
    entries = entries.drop_duplicates("image_id")
    images = _images_frame(entries["image_id"].tolist(),
                           splits=[_split_from_path(i) for i in entries["image_id"]])
    return Dataset(root=root, format="coco", images=images, annotations=boxes.reset_index(drop=True),
                   classes=categories, has_image_labels=False, has_boxes=True,
                   problems=finding_frame(problems))


def attach_coco_boxes(ds: Dataset, coco_path) -> Dataset:
    """Boxes for a folder or manifest dataset from a COCO JSON whose file_names are image_ids."""
    where = storage.name_of(coco_path)
    entries, boxes, categories, problems = read_coco(ds.root, coco_path)
    known = set(ds.images["image_id"])
    for image_id in entries["image_id"]:
        if image_id in known:
            continue
        if resolve_inside(ds.root, image_id) is None:
            problems.append(_problem(image_id, "path_outside_root",
                                     f"{where} lists '{image_id}', which resolves outside the dataset root; "
                                     "it was not opened", "integrity"))
        else:
            problems.append(_problem(image_id, "box_missing_image",
                                     f"{where} lists '{image_id}' with boxes, but no such image is in "
                                     "the dataset",
                                     "annotation"))
    inside = boxes["image_id"].isin(known)
    ds.annotations = boxes.loc[inside].reset_index(drop=True)
    ds.has_boxes = True
    ds.problems = finding_frame(ds.problems.to_dict("records") + problems)
    ds.box_categories = categories
    return ds
