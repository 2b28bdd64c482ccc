"""Per-box decisions applied to the dataset's boxes, exported as a corrected COCO JSON, a YOLO label folder and a
relabel list (CSV). The dataset is only read: ``write_detection_exports`` refuses a folder inside its root.

``corrected_annotations`` is the one place where decisions are applied to the annotation table (px): a
``delete`` drops the box, a ``relabel`` changes its class, an ``accept`` appends the predicted box as a new
annotation (new ids after the largest one). The COCO export starts from the dataset's own COCO file when it has
one (every other field kept: images, licenses, segmentation, iscrowd...); otherwise (YOLO, CSV) it is built
from the table. The YOLO export writes ``labels/<image path>.txt`` (``class cx cy w h``, normalised) for every
image, and ``classes.txt``.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .. import loader_coco, loaders
from ..export import joined_path, safe_csv_bytes
from ..paths import is_within
from .decisions import BOX_COLUMNS, CURRENT_COLUMNS, key_id

RELABEL_COLUMNS = ["image_id", "path", "box_key", "ann_id", "action", "category", "new_category"] + BOX_COLUMNS + \
    ["note", "decided_at"]


def boxes_px(dataset_or_scan) -> tuple[loaders.Dataset, pd.DataFrame, object]:
    """(dataset, annotation table in px, ``size_of(image_id) -> (width_px, height_px) | None``), as
    ``triage_detections`` reads them (a scan's sizes first, else the image headers)."""
    from .triage import _annotations_px, _dataset_of, _image_sizes, _size_reader
    ds = _dataset_of(dataset_or_scan)
    size_of = _size_reader(ds, _image_sizes(dataset_or_scan, ds))
    return ds, _annotations_px(dataset_or_scan, ds, size_of), size_of


def _in_force(decisions: pd.DataFrame, action: str) -> pd.DataFrame:
    return decisions.loc[decisions["action"].astype("str") == action]


def _ann_ids(decisions: pd.DataFrame) -> pd.Series:
    return decisions["box_key"].astype("str").map(lambda k: key_id(k)[1])


def corrected_annotations(annotations: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """``annotations`` (ann_id, image_id, category, box_*_px) with the box decisions in force applied; a column
    ``origin``: "dataset" or "accepted" (then ``box_key`` names the predicted box)."""
    ann = annotations[["ann_id", "image_id", "category"] + BOX_COLUMNS].copy()
    ann["category"] = ann["category"].astype("object")
    ann["origin"], ann["box_key"] = "dataset", ""
    if decisions is None or decisions.empty:
        return ann.reset_index(drop=True)
    dele = _in_force(decisions, "delete")
    ann = ann.loc[~ann["ann_id"].isin(set(_ann_ids(dele)))] if len(dele) else ann
    rel = _in_force(decisions, "relabel")
    if len(rel):
        new = dict(zip(_ann_ids(rel), rel["new_category"].astype("str")))
        hit = ann["ann_id"].isin(set(new))
        ann.loc[hit, "category"] = ann.loc[hit, "ann_id"].map(new)
    acc = _in_force(decisions, "accept")
    if len(acc):
        start = int(annotations["ann_id"].max()) + 1 if len(annotations) else 1
        add = pd.DataFrame({"ann_id": np.arange(start, start + len(acc)),
                            "image_id": acc["image_id"].astype("str").to_numpy(),
                            "category": acc["new_category"].astype("str").to_numpy(),
                            **{c: acc[c].astype("float64").to_numpy() for c in BOX_COLUMNS},
                            "origin": "accepted", "box_key": acc["box_key"].astype("str").to_numpy()})
        ann = pd.concat([ann, add], ignore_index=True)
    return ann.reset_index(drop=True)


def usable(corrected: pd.DataFrame) -> pd.DataFrame:
    """The boxes an export can write: a class, finite coordinates and an area (the scan reports the others as
    box_unknown_category / box_degenerate findings)."""
    xywh = corrected[BOX_COLUMNS].to_numpy(np.float64)
    ok = corrected["category"].notna().to_numpy() & np.isfinite(xywh).all(axis=1) & (xywh[:, 2] > 0) & \
        (xywh[:, 3] > 0)
    return corrected.loc[ok]


def _coco_file(ds: loaders.Dataset) -> Path | None:
    return loader_coco._find_coco_json(Path(ds.root)) if ds.format in ("coco", "folder", "csv") else None


def corrected_coco(dataset_or_scan, decisions: pd.DataFrame) -> dict:
    """The dataset's annotations as a COCO dict with the box decisions applied (loadable by pycocotools)."""
    ds, ann_px, size_of = boxes_px(dataset_or_scan)
    decisions = decisions if decisions is not None else pd.DataFrame(columns=CURRENT_COLUMNS)
    coco_path = _coco_file(ds)
    base = None
    if coco_path is not None:
        try:
            base = json.loads(Path(coco_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            base = None
    if not isinstance(base, dict) or not isinstance(base.get("annotations"), list):
        return _coco_from_table(ds, usable(corrected_annotations(ann_px, decisions)), size_of)
    return _coco_from_file(ds, base, ann_px, decisions, size_of)


def _category_ids(cats: list, names) -> dict:
    """name -> COCO category id, adding a category for a class the file lacks."""
    ids = {str(c.get("name")): c["id"] for c in cats if isinstance(c, dict) and isinstance(c.get("id"), int)}
    for name in names:
        if name not in ids:
            new_id = max(list(ids.values()) + [0]) + 1
            cats.append({"id": new_id, "name": name, "supercategory": ""})
            ids[name] = new_id
    return ids


def _coco_from_file(ds, base: dict, ann_px: pd.DataFrame, decisions: pd.DataFrame, size_of) -> dict:
    out = dict(base)
    out["categories"] = [dict(c) for c in base.get("categories") or [] if isinstance(c, dict)]
    out["images"] = [dict(e) for e in base.get("images") or [] if isinstance(e, dict)]
    rel = _in_force(decisions, "relabel")
    acc = _in_force(decisions, "accept")
    new_names = set(rel["new_category"].astype("str")) | set(acc["new_category"].astype("str"))
    cat_ids = _category_ids(out["categories"], sorted(new_names))
    deleted = set(_ann_ids(_in_force(decisions, "delete")))
    relabel = dict(zip(_ann_ids(rel), rel["new_category"].astype("str")))
    anns = []
    for k, a in enumerate(base["annotations"]):
        if not isinstance(a, dict):
            continue
        ann_id = a.get("id")
        ann_id = ann_id if isinstance(ann_id, int) and not isinstance(ann_id, bool) else k   # as the loader
        if ann_id in deleted:
            continue
        a = dict(a)
        if ann_id in relabel:
            a["category_id"] = cat_ids[relabel[ann_id]]
        anns.append(a)
    image_of = {}
    for e in out["images"]:
        if isinstance(e.get("id"), int) and isinstance(e.get("file_name"), str):
            image_of.setdefault(loader_coco._coco_resolve(Path(ds.root), e["file_name"], ["", "images"]), e["id"])
    next_ann = max([a["id"] for a in anns if isinstance(a.get("id"), int)] +
                   [int(ann_px["ann_id"].max()) if len(ann_px) else 0, 0]) + 1
    next_img = max(list(image_of.values()) + [0]) + 1
    for r in acc.itertuples(index=False):
        image_id = str(r.image_id)
        if image_id not in image_of:             # an image the COCO file does not list yet
            size = size_of(image_id) or (0.0, 0.0)
            out["images"].append({"id": next_img, "file_name": image_id, "width": int(size[0]),
                                  "height": int(size[1])})
            image_of[image_id] = next_img
            next_img += 1
        box = [round(float(getattr(r, c)), 2) for c in BOX_COLUMNS]
        anns.append({"id": next_ann, "image_id": image_of[image_id], "category_id": cat_ids[str(r.new_category)],
                     "bbox": box, "area": round(box[2] * box[3], 2), "iscrowd": 0})
        next_ann += 1
    out["annotations"] = anns
    return out


def _coco_from_table(ds, corrected: pd.DataFrame, size_of) -> dict:
    names = list(ds.box_categories) or list(ds.classes)
    names += sorted(set(corrected["category"].astype("str")) - set(names))
    cats = [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(names)]
    cat_ids = {n: k + 1 for k, n in enumerate(names)}
    images, img_ids = [], {}
    for k, image_id in enumerate(ds.images["image_id"].astype("str")):
        size = size_of(image_id) or (0.0, 0.0)
        images.append({"id": k + 1, "file_name": image_id, "width": int(size[0]), "height": int(size[1])})
        img_ids[image_id] = k + 1
    anns = []
    for r in corrected.itertuples(index=False):
        if str(r.image_id) not in img_ids:
            continue
        box = [round(float(getattr(r, c)), 2) for c in BOX_COLUMNS]
        anns.append({"id": int(r.ann_id) + 1, "image_id": img_ids[str(r.image_id)],
                     "category_id": cat_ids[str(r.category)], "bbox": box, "area": round(box[2] * box[3], 2),
                     "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": cats}


def yolo_labels(dataset_or_scan, decisions: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """({label path: text}, class names): one ``labels/<image path without suffix>.txt`` per image, one line
    ``class cx cy w h`` (normalised to the image size) per corrected box; the class is its index in the names.
    A box on an image of unknown size cannot be normalised and is left out, as is a box without a class or area;
    an image id that would lead out of the folder (absolute, '..') gets no label file."""
    ds, ann_px, size_of = boxes_px(dataset_or_scan)
    corrected = usable(corrected_annotations(ann_px, decisions if decisions is not None else pd.DataFrame(
        columns=CURRENT_COLUMNS)))
    names = list(ds.box_categories) or list(ds.classes)
    names += sorted(set(corrected["category"].astype("str")) - set(names))
    index = {n: k for k, n in enumerate(names)}
    lines: dict[str, list[str]] = {str(i): [] for i in ds.images["image_id"].astype("str")}
    for r in corrected.itertuples(index=False):
        size = size_of(str(r.image_id))
        if not size or size[0] <= 0 or size[1] <= 0:
            continue
        w_px, h_px = size
        x, y, w, h = (float(getattr(r, c)) for c in BOX_COLUMNS)
        lines.setdefault(str(r.image_id), []).append(
            f"{index[str(r.category)]} {(x + w / 2) / w_px:.6f} {(y + h / 2) / h_px:.6f} {w / w_px:.6f} {h / h_px:.6f}")
    files = {str(PurePosixPath("labels") / PurePosixPath(i).with_suffix(".txt")): "".join(s + "\n" for s in v)
             for i, v in lines.items() if _stays_inside(i)}
    return files, names


def _stays_inside(image_id: str) -> bool:
    """Whether ``labels/<image_id>`` stays inside the export folder (no absolute path, no '..')."""
    p = PurePosixPath(str(image_id).replace("\\", "/"))
    return bool(p.parts) and not p.is_absolute() and ".." not in p.parts


def relabel_list(decisions: pd.DataFrame, root) -> pd.DataFrame:
    """One row per box decision in force: what to change in the labelling tool (``path``: the image file)."""
    if decisions is None or decisions.empty:
        return pd.DataFrame(columns=RELABEL_COLUMNS)
    df = decisions.copy()
    kinds = df["box_key"].astype("str").map(key_id)
    df["ann_id"] = [i if k == "ann" else pd.NA for k, i in kinds]
    df["path"] = df["image_id"].astype("str").map(lambda i: joined_path(root, i))
    return df[RELABEL_COLUMNS].sort_values(["image_id", "box_key"]).reset_index(drop=True)


def yolo_zip_bytes(files: dict[str, str], names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("classes.txt", "".join(n + "\n" for n in names))
        for path, text in files.items():
            z.writestr(path, text)
    return buf.getvalue()


def write_detection_exports(out_dir, dataset_or_scan, decisions: pd.DataFrame) -> dict[str, Path]:
    """Write corrected_annotations.json (COCO), yolo/labels/... + yolo/classes.txt and box_relabels.csv into
    ``out_dir``. Raises ValueError when ``out_dir`` lies inside the dataset root (the dataset is never written)."""
    from .triage import _dataset_of
    ds = _dataset_of(dataset_or_scan)
    out = Path(out_dir).expanduser()
    if is_within(out, ds.root):
        raise ValueError(f"export folder {out} lies inside the dataset root {ds.root}; choose a folder outside it")
    out.mkdir(parents=True, exist_ok=True)
    files, names = yolo_labels(dataset_or_scan, decisions)
    written = {"coco": out / "corrected_annotations.json", "relabels": out / "box_relabels.csv",
               "yolo": out / "yolo"}
    _atomic(written["coco"], json.dumps(corrected_coco(dataset_or_scan, decisions)).encode("utf-8"))
    _atomic(written["relabels"], safe_csv_bytes(relabel_list(decisions, ds.root)))
    yolo = written["yolo"]
    (yolo / "labels").mkdir(parents=True, exist_ok=True)
    _atomic(yolo / "classes.txt", "".join(n + "\n" for n in names).encode("utf-8"))
    for rel, text in files.items():
        path = yolo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic(path, text.encode("utf-8"))
    return written


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
