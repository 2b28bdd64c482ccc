"""YOLO reading: ``data.yaml`` class names (``parse_yolo_names``) and ``labels/*.txt`` boxes, kept
normalised (``Dataset.boxes_normalised``) until the scan knows each image's size."""
from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from . import storage
from .limits import LIMITS, how_to_raise
from .loader_base import (ANNOTATION_COLUMNS, Dataset, _bad_name_problems, _empty_annotations, _images_frame,
                          _inside_file, _problem, _read_small_text, _split_from_path, walk_images)
from .paths import is_within
from .schema import finding_frame
from .textsafe import shown_entry


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


def _yolo_label_path(root, image_id: str):
    """labels/<same path>.txt for the last 'images' folder on the image's path: root/images/... and
    root/<split>/images/... (Roboflow, Ultralytics exports) alike."""
    parts = image_id.split("/")
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            rel = "/".join(parts[:k] + ["labels"] + parts[k + 1:])
            return storage.join(root, os.path.splitext(rel)[0] + ".txt")
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


def load_yolo(root) -> Dataset:
    classes = []
    problems: list[dict] = []
    remote = storage.is_remote(root)
    if _inside_file(root, storage.join(root, "data.yaml")):
        text = _read_small_text(storage.join(root, "data.yaml"), problems, "data.yaml", "unreadable", "integrity")
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
            if label_path is None or not (storage.is_file(root, storage.relative(root, label_path)) if remote
                                          else label_path.exists()):
                continue
        except OSError:
            continue
        if not is_within(label_path, root):
            problems.append(_problem(image_id, "path_outside_root",
                                     f"its label file {storage.relative(root, label_path)} resolves outside the "
                                     "dataset root; not read", "integrity"))
            continue
        shown = storage.relative(root, label_path)
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
                                         f"{shown} line {n}: '{shown_entry(line.strip(), 60)}': "
                                         f"{exc or 'not class cx cy w h'}",
                                         "annotation"))
                continue
            n_boxes += 1
            if n_boxes > LIMITS["max_boxes_per_image"]:
                problems.append(_problem(image_id, "too_many_boxes",
                                         f"{shown} has more than {LIMITS['max_boxes_per_image']:,} boxes "
                                         "(max_boxes_per_image); "
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
