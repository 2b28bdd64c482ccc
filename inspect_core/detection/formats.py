"""Detector outputs in the forms users have, read into one predictions table.

- COCO results JSON: a list of ``{"image_id" | "file_name", "category_id", "bbox": [x, y, w, h] px, "score"}``;
  an integer ``image_id`` is the dataset's COCO image id, a string one the dataset's image_id.
- YOLO prediction folder: one ``<image stem>.txt`` per image, lines ``class cx cy w h conf`` normalised to the
  image size (what ``yolo predict save_txt=True save_conf=True`` writes); class k is a YOLO dataset's class k,
  for other datasets the k-th category sorted by id.
- CSV / Parquet table: ``image_id, category, box_x_px, box_y_px, box_w_px, box_h_px, score``; ``category``
  holds category names or ids (``category_id`` is read too).

The table (``PREDICTION_COLUMNS``) has boxes in pixels and categories by name. A whole file that cannot be
read (bad JSON, no such file, missing columns, no category in common with the dataset) raises
``PredictionsError`` with a message naming the file and what to do; a bad row (a NaN box, a negative size, an
unknown image or category) is a finding and the other rows are read.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..limits import (
    LIMITS,
    LimitError,
    check_input_file,
    load_json,
    read_capped,
    read_input_bytes,
)
from ..textsafe import shown_entry

PREDICTION_COLUMNS = ["pred_id", "image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"]
FAMILY = "detection"
# findings about the predictions file itself
FORMAT_CHECKS = {
    "prediction_malformed": "A prediction's box or score is not usable (not a number, NaN, zero or negative size); "
                            "the row was skipped.",
    "prediction_unknown_image": "Predictions name an image that is not in the dataset; they were skipped.",
    "prediction_unknown_category": "Predictions name a category that is not in the dataset's categories; they were "
                                   "skipped.",
    "detector_no_output": "A detector model file gave no usable output for this image (the image is unreadable, "
                          "or the output has NaN or a wrong shape); the image counts as predicted empty.",
}
TABLE_BOX_ALIASES = {"box_x_px": ("box_x_px", "x"), "box_y_px": ("box_y_px", "y"),
                     "box_w_px": ("box_w_px", "w", "width"), "box_h_px": ("box_h_px", "h", "height")}


class PredictionsError(ValueError):
    """The predictions cannot be read at all; the message names the file and what to do."""


def _problem(image_id: str, check: str, detail: str) -> dict:
    return {"image_id": image_id, "check": check, "family": FAMILY, "score": 1.0, "detail": detail}


class Categories:
    """The dataset's box categories: names, and ids where the annotations have them."""

    def __init__(self, names: list[str], id_to_name: dict):
        self.names = list(dict.fromkeys(str(n) for n in names))
        self.id_to_name = {k: str(v) for k, v in id_to_name.items()}
        by_id = sorted(self.id_to_name.items(), key=lambda kv: (str(type(kv[0])), kv[0]))
        ordered = [v for _, v in by_id] + [n for n in self.names if n not in self.id_to_name.values()]
        self.by_index = list(dict.fromkeys(ordered))   # YOLO class k -> the k-th category

    @classmethod
    def of(cls, ann: pd.DataFrame, names: list[str] = ()) -> Categories:
        pairs = ann[["category_id", "category"]].dropna().drop_duplicates() if len(ann) else ann
        id_to_name = {int(i): str(n) for i, n in zip(pairs.get("category_id", []), pairs.get("category", []))}
        all_names = list(names) + [str(c) for c in ann["category"].dropna().unique()] if len(ann) else list(names)
        return cls(all_names, id_to_name)

    def shown(self) -> str:
        ids = ", ".join(f"{k}={v}" for k, v in list(self.id_to_name.items())[:30])
        return f"names [{shown_entry(', '.join(self.names[:30]), 300)}]" + (f" (ids {ids})" if ids else "")

    def resolve(self, values: pd.Series, by_index: bool = False) -> pd.Series:
        """Category names for raw values (names or ids; YOLO class indices when ``by_index``); NA if unknown."""
        out = pd.Series(pd.NA, index=values.index, dtype="object")
        known = set(self.names)
        for raw in values.dropna().unique():
            name = None
            as_int = _as_int(raw)
            if by_index:
                name = self.by_index[as_int] if as_int is not None and 0 <= as_int < len(self.by_index) else None
            elif isinstance(raw, str) and raw in known:
                name = raw
            elif as_int is not None and as_int in self.id_to_name:
                name = self.id_to_name[as_int]
            elif str(raw) in known:
                name = str(raw)
            if name is not None:
                out[values == raw] = name
        return out


def _as_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return None


def _json_rows(path: Path) -> list:
    try:
        obj = load_json(read_input_bytes(path, "predictions file", "max_json_bytes"), f"predictions file {path}")
    except LimitError as exc:
        raise PredictionsError(str(exc)) from None
    except ValueError as exc:
        raise PredictionsError(f"{exc}. Check that it is valid JSON (a COCO results list).") from None
    if isinstance(obj, dict) and isinstance(obj.get("annotations"), list):
        obj = obj["annotations"]          # a COCO file whose annotations carry scores
    if not isinstance(obj, list):
        raise PredictionsError(f"predictions file {path} is not a COCO results list: expected "
                               '[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]')
    return obj


def read_coco_results(path: Path, coco_ids: dict | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Raw rows of a COCO results JSON: image (dataset image_id or COCO id), raw category, box, score."""
    problems: list[dict] = []
    rows = []
    for k, r in enumerate(_json_rows(path)):
        if not isinstance(r, dict):
            problems.append(_problem(f"<{path.name}>", "prediction_malformed",
                                     f"{path.name} entry {k} is not an object: {shown_entry(r, 60)}"))
            continue
        img = r.get("file_name", r.get("image_id"))
        if isinstance(img, int) and not isinstance(img, bool) and "file_name" not in r:
            img = (coco_ids or {}).get(img, f"<coco image id {img}>")
        bbox = r.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
            problems.append(_problem(str(img), "prediction_malformed",
                                     f"{path.name} entry {k} has bbox {shown_entry(bbox, 60)}, not [x, y, w, h]"))
            continue
        rows.append({"image_id": str(img), "category": r.get("category_id", r.get("category")),
                     "box_x_px": bbox[0], "box_y_px": bbox[1], "box_w_px": bbox[2], "box_h_px": bbox[3],
                     "score": r.get("score"), "where": f"{path.name} entry {k}"})
    return pd.DataFrame(rows), problems


def read_yolo_predictions(folder: Path, image_ids: list[str], size_of) -> tuple[pd.DataFrame, list[dict]]:
    """Raw rows of a YOLO prediction folder; ``size_of(image_id) -> (width_px, height_px) | None``."""
    problems: list[dict] = []
    by_path = {str(Path(i).with_suffix("")): i for i in image_ids}
    by_stem: dict[str, list[str]] = {}
    for i in image_ids:
        by_stem.setdefault(Path(i).stem, []).append(i)
    rows = []
    for txt in sorted(folder.rglob("*.txt")):
        rel = txt.relative_to(folder).with_suffix("")
        parts = rel.parts
        cands = [str(rel), str(Path(*[("images" if p == "labels" else p) for p in parts])),
                 str(Path(*parts[1:])) if len(parts) > 1 and parts[0] == "labels" else ""]
        image_id = next((by_path[c] for c in cands if c in by_path), None)
        if image_id is None and len(by_stem.get(rel.name, [])) == 1:
            image_id = by_stem[rel.name][0]
        shown = txt.relative_to(folder).as_posix()
        if image_id is None:
            many = len(by_stem.get(rel.name, [])) > 1
            problems.append(_problem(shown, "prediction_unknown_image",
                                     f"{shown}: " + ("several images have this name; put the .txt files in the same "
                                                     "folders as the images" if many else
                                                     "no image of the dataset has this name; its predictions were "
                                                     "skipped")))
            continue
        size = size_of(image_id)
        if size is None:
            problems.append(_problem(image_id, "prediction_malformed",
                                     f"{shown}: the image's size is unknown (unreadable image), so its normalised "
                                     "boxes cannot be placed; skipped"))
            continue
        w_px, h_px = size
        try:
            text = read_input_bytes(txt, "YOLO prediction file", "max_text_bytes").decode("utf-8", "replace")
        except (LimitError, OSError) as exc:
            problems.append(_problem(image_id, "prediction_malformed", f"{shown}: {exc}"))
            continue
        for n, line in enumerate(text.splitlines(), 1):
            f = line.split()
            if not f:
                continue
            if len(f) < 6:
                problems.append(_problem(image_id, "prediction_malformed",
                                         f"{shown} line {n}: '{shown_entry(line.strip(), 60)}' is not "
                                         "'class cx cy w h conf'"))
                continue
            try:
                cx, cy, w, h, conf = (float(v) for v in f[1:6])
            except ValueError:
                problems.append(_problem(image_id, "prediction_malformed",
                                         f"{shown} line {n}: '{shown_entry(line.strip(), 60)}' has a value that is "
                                         "not a number"))
                continue
            rows.append({"image_id": image_id, "category": f[0], "box_x_px": (cx - w / 2) * w_px,
                         "box_y_px": (cy - h / 2) * h_px, "box_w_px": w * w_px, "box_h_px": h * h_px,
                         "score": conf, "where": f"{shown} line {n}"})
    return pd.DataFrame(rows), problems


def read_table(path: Path) -> tuple[pd.DataFrame, list[dict]]:
    try:
        check_input_file(path, "predictions table", "max_table_bytes")
        df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except LimitError as exc:
        raise PredictionsError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any parser error is one message naming the file
        raise PredictionsError(f"predictions table {path} cannot be read ({type(exc).__name__}: "
                               f"{shown_entry(str(exc), 200)}); give a CSV or Parquet file") from None
    return table_rows(df, path.name)


def table_rows(df: pd.DataFrame, name: str) -> tuple[pd.DataFrame, list[dict]]:
    """Raw rows of a predictions table already in memory (a model wing's output, or a read file)."""
    cols = {str(c).lower(): c for c in df.columns}
    out = pd.DataFrame(index=df.index)
    image_col = next((cols[c] for c in ("image_id", "file_name", "path", "image") if c in cols), None)
    cat_col = next((cols[c] for c in ("category", "category_id", "class", "label") if c in cols), None)
    wanted = (("image_id", image_col), ("category", cat_col), ("score", cols.get("score")))
    missing = [n for n, c in wanted if c is None]
    for key, aliases in TABLE_BOX_ALIASES.items():
        col = next((cols[a] for a in aliases if a in cols), None)
        if col is None:
            missing.append(key)
        else:
            out[key] = df[col]
    if missing:
        raise PredictionsError(f"predictions table {name} lacks the column(s) {', '.join(missing)}; expected "
                               f"{', '.join(PREDICTION_COLUMNS[1:])} (boxes as top-left x, y, width, height in px)")
    out["image_id"] = df[image_col].astype("str")
    out["category"] = df[cat_col]
    out["score"] = df[cols["score"]]
    out["where"] = [f"{name} row {k + 2}" for k in range(len(df))]
    return out, []


def clean_predictions(raw: pd.DataFrame, categories: Categories, image_ids: set, by_index: bool = False
                      ) -> tuple[pd.DataFrame, list[dict]]:
    """Raw rows -> the predictions table: categories resolved, numbers checked, unknown images dropped (each a
    finding). Raises PredictionsError when no category at all is the dataset's (the lists differ)."""
    problems: list[dict] = []
    if raw.empty:
        return pd.DataFrame({c: pd.Series([], dtype="float64" if c.startswith("box") or c == "score"
                                          else "object") for c in PREDICTION_COLUMNS}), problems
    df = raw.copy()
    nums = ["box_x_px", "box_y_px", "box_w_px", "box_h_px", "score"]
    for c in nums:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    bad_num = ~np.isfinite(df[nums].to_numpy(np.float64)).all(axis=1)
    bad_size = ~bad_num & ((df["box_w_px"] <= 0) | (df["box_h_px"] <= 0))
    for why, mask in (("a box value or the score is missing or not a finite number", bad_num),
                      ("a zero or negative width or height", bad_size)):
        for r in df.loc[mask].itertuples():
            problems.append(_problem(r.image_id, "prediction_malformed",
                                     f"{r.where}: {why} (box {r.box_x_px:g}, {r.box_y_px:g}, {r.box_w_px:g}, "
                                     f"{r.box_h_px:g}; score {r.score:g}); skipped"))
    df = df.loc[~bad_num & ~bad_size]
    names = categories.resolve(df["category"], by_index=by_index)
    unknown = names.isna()
    if unknown.all() and len(df):
        seen = ", ".join(str(v) for v in df["category"].drop_duplicates().head(20))
        how = "YOLO class indices" if by_index else "names or ids"
        raise PredictionsError(f"no predicted category matches the dataset's categories: predictions give {how} "
                               f"[{shown_entry(seen, 300)}], the dataset has {categories.shown()}. Map the classes "
                               "(same names, or the same ids) and try again")
    for raw_cat, grp in df.loc[unknown].groupby(df.loc[unknown, "category"].astype("str")):
        problems.append(_problem("<predictions>", "prediction_unknown_category",
                                 f"{len(grp):,} prediction(s) of category {shown_entry(raw_cat, 60)} (first: "
                                 f"{grp['where'].iloc[0]}), which is not among the dataset's {categories.shown()}; "
                                 "skipped"))
    df = df.loc[~unknown].assign(category=names[~unknown])
    known = df["image_id"].isin(image_ids)
    for img, grp in df.loc[~known].groupby("image_id"):
        problems.append(_problem(str(img), "prediction_unknown_image",
                                 f"{len(grp):,} prediction(s) for image {shown_entry(img)} (first: "
                                 f"{grp['where'].iloc[0]}), which is not in the dataset; skipped"))
    df = df.loc[known].reset_index(drop=True)
    df.insert(0, "pred_id", np.arange(len(df)))
    return df[PREDICTION_COLUMNS], problems


def read_predictions(path, categories: Categories, image_ids: list[str], coco_ids: dict | None = None,
                     size_of=None) -> tuple[pd.DataFrame, list[dict], str]:
    """Predictions from a COCO results JSON, a YOLO .txt folder or a CSV/Parquet table (chosen by what
    ``path`` is), or a DataFrame with the table's columns (a detector run in memory). Returns (predictions,
    findings, form)."""
    if isinstance(path, pd.DataFrame):
        raw, problems = table_rows(path.reset_index(drop=True), "predictions table")
        pred, more = clean_predictions(raw, categories, set(image_ids))
        return pred, problems + more, "table"
    if path is None or str(path).strip() == "":
        raise PredictionsError("no predictions given: pass a COCO results JSON, a YOLO prediction folder or a "
                               "CSV/Parquet table")
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise PredictionsError(f"predictions {p} do not exist: check the path")
    if p.is_dir():
        if not any(p.rglob("*.txt")):
            raise PredictionsError(f"predictions folder {p} has no .txt files: expected YOLO prediction files "
                                   "'class cx cy w h conf' (yolo predict save_txt=True save_conf=True)")
        raw, problems = read_yolo_predictions(p, image_ids, size_of or (lambda _i: None))
        form, by_index = "yolo", True
    elif p.suffix.lower() == ".json":
        raw, problems = read_coco_results(p, coco_ids)
        form, by_index = "coco", False
    elif p.suffix.lower() in (".csv", ".parquet", ".tsv"):
        raw, problems = read_table(p)
        form, by_index = "table", False
    else:
        raise PredictionsError(f"predictions {p}: unknown form '{p.suffix}'; give a COCO results .json, a YOLO "
                               "prediction folder, or a .csv/.parquet table")
    pred, more = clean_predictions(raw, categories, set(image_ids), by_index=by_index)
    return pred, problems + more, form


def coco_image_ids(coco_path: Path | None, resolve) -> tuple[dict, dict]:
    """(COCO image id -> dataset image_id, COCO category id -> name), from the images and categories lists of
    the dataset's COCO file (``resolve`` maps a file_name to an image_id the way the loader does; the loader
    keeps neither id). Empty when there is no such file or it is unusable (the scan reports that)."""
    if coco_path is None:
        return {}, {}
    try:
        with open(coco_path, "rb") as fh:
            obj = load_json(read_capped(fh, Path(coco_path).stat().st_size, LIMITS["max_json_bytes"]), str(coco_path))
    except (OSError, ValueError):
        return {}, {}
    if not isinstance(obj, dict):
        return {}, {}
    ids, cats = {}, {}
    for e in obj.get("images") if isinstance(obj.get("images"), list) else []:
        if isinstance(e, dict) and isinstance(e.get("id"), int) and isinstance(e.get("file_name"), str):
            ids.setdefault(e["id"], resolve(e["file_name"]))
    for c in obj.get("categories") if isinstance(obj.get("categories"), list) else []:
        if isinstance(c, dict) and isinstance(c.get("id"), int) and not isinstance(c.get("id"), bool):
            cats.setdefault(c["id"], str(c.get("name", c["id"]))[:200])
    return ids, cats
