"""What the detection section shows, computed apart from drawing (no Streamlit here): a ``DetectionView`` of a
``DetectionResult`` (codes and ranks precomputed once, so filters are numpy), the image filter, the boxes of an
image and the images behind a confusion-matrix cell. ``inspect_core/ui/detection_triage.py`` draws them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .decisions import ann_key, pred_key

BOX_BOUNDS_PX2 = {"small": 32 ** 2, "medium": 96 ** 2}   # COCO object sizes: area below 32^2, below 96^2, else large
SIZES = ("small", "medium", "large")
TIDE_TYPES = ("classification", "localization", "both", "duplicate", "background", "missed")

def predictions_fingerprint(path) -> str:
    """Size and modification time of a predictions file, or of the .txt files of a YOLO predictions folder."""
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            stats = [e.stat() for e in os.scandir(p) if e.name.endswith(".txt")]
            return f"dir:{len(stats)}:{max((s.st_mtime_ns for s in stats), default=0)}:{sum(s.st_size for s in stats)}"
        s = p.stat()
        return f"file:{s.st_mtime_ns}:{s.st_size}"
    except OSError:
        return "missing"


class DetectionView:
    """What the section needs from a DetectionResult. Built at once: each box's image rank (an integer), so the
    boxes of one image are a comparison of integers; built on the first filter (``boxes``): every box as
    integer codes (class, size, error type, check), so a filter is a few numpy comparisons."""

    def __init__(self, result):
        self.result = result
        images = result.images.reset_index(drop=True)
        self.image_index = pd.Index(images["image_id"].astype("str"))     # image_id -> 0-based rank
        self.images = images.assign(rank=np.arange(1, len(images) + 1))  # worst first, rank 1 = worst
        a, p = result.annotations, result.predictions
        self.ann_rank = _ranks(a["image_id"], self.image_index)
        self.pred_rank = _ranks(p["image_id"], self.image_index)
        err = result.errors
        self.check_names = [""] + sorted(str(c) for c in pd.unique(err["check"].astype("str")))
        self._checks_ann = _CheckLookup(err.loc[err["ann_id"] >= 0].drop_duplicates("ann_id").set_index("ann_id")
                                        ["check"], self.check_names)
        self._checks_pred = _CheckLookup(err.loc[err["ann_id"] < 0].drop_duplicates("pred_id").set_index("pred_id")
                                         ["check"], self.check_names)
        cats = list(result.summary.get("categories") or [])
        self.categories = sorted(set(cats) | set(pd.unique(a["category"].astype("str"))) |
                                 set(pd.unique(p["category"].astype("str"))))
        present = set(pd.unique(a["error_type"].astype("str"))) | set(pd.unique(p["error_type"].astype("str")))
        # the error types to filter by: the TIDE types present, then the annotation-error checks present
        self.tags = [t for t in TIDE_TYPES if t in present] + [c for c in self.check_names if c]
        self._boxes = None
        self._memo: dict = {}

    def memo(self, key, make):
        """``make()`` once per view (tables and figures of the result that every rerun shows unchanged)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def boxes(self) -> pd.DataFrame:
        """One row per annotated then predicted box: rank (0-based, -1 unknown), kind (0 ann, 1 pred), category /
        tag / check (codes into ``category_names`` / ``tag_names`` / ``check_names``), size (index in SIZES),
        score (NaN for annotations). Built once, on the first filter."""
        if self._boxes is None:
            a, p = self.result.annotations, self.result.predictions
            category, self.category_names = _codes(a["category"], p["category"])
            tag, self.tag_names = _codes(a["error_type"], p["error_type"])
            check = np.r_[self._checks_ann.codes(a["ann_id"]), self._checks_pred.codes(p["pred_id"])]
            self._boxes = pd.DataFrame({
                "rank": np.r_[self.ann_rank, self.pred_rank],
                "kind": np.r_[np.zeros(len(a), np.int8), np.ones(len(p), np.int8)],
                "category": category, "tag": tag, "check": check,
                "size": np.r_[_size_of(a["box_w_px"], a["box_h_px"]),
                              _size_of(p["box_w_px"], p["box_h_px"])].astype(np.int8),
                "score": np.r_[np.full(len(a), np.nan), p["score"].to_numpy(np.float64)]})
        return self._boxes

    def check_of(self, ids: pd.Series, kind: str) -> np.ndarray:
        """The annotation-error check of annotations (``kind`` "ann", by ann_id) or predictions (by pred_id)."""
        lookup = self._checks_ann if kind == "ann" else self._checks_pred
        return lookup.names[lookup.codes(ids)]


def _size_of(w, h) -> np.ndarray:
    area = np.asarray(w, np.float64) * np.asarray(h, np.float64)
    return np.where(area < BOX_BOUNDS_PX2["small"], 0, np.where(area < BOX_BOUNDS_PX2["medium"], 1, 2))


def _codes(*columns) -> tuple[np.ndarray, list[str]]:
    """The columns' text values as one int32 code array (concatenated) and the names the codes index. Each
    column is factorized on its own (fast on Arrow strings; no per-row Python objects), then the few distinct
    values are merged."""
    names: list[str] = []
    out = []
    for col in columns:
        codes, uniq = pd.factorize(col, use_na_sentinel=False)
        uniq = ["" if pd.isna(u) else str(u) for u in uniq]
        for u in uniq:
            if u not in names:
                names.append(u)
        remap = np.array([names.index(u) for u in uniq] + [0], dtype=np.int32)
        out.append(remap[codes] if len(codes) else np.zeros(0, np.int32))
    return np.concatenate(out) if out else np.zeros(0, np.int32), names


def _ranks(values, image_index: pd.Index) -> np.ndarray:
    """The 0-based rank of each value's image (-1: not among the images), vectorised over the distinct ids."""
    codes, uniq = pd.factorize(values, use_na_sentinel=False)
    pos = np.r_[image_index.get_indexer(pd.Index(uniq)), -1].astype(np.int32)
    return pos[codes] if len(codes) else np.zeros(0, np.int32)


class _CheckLookup:
    """Box id -> the code of its annotation-error check (0: none); the hash index is built once."""

    def __init__(self, checks: pd.Series, names: list[str]):
        self.index = pd.Index(checks.index)
        self.table = np.r_[pd.Index(names).get_indexer(checks.astype("str")), 0].astype(np.int32)
        self.names = np.asarray(names, dtype=object)

    def codes(self, ids) -> np.ndarray:
        return self.table[self.index.get_indexer(np.asarray(ids))]


def prepare_view(result, codes: bool = False) -> DetectionView:
    """What the section needs from a ``DetectionResult`` (no drawing); the filter codes follow on first use, or
    now with ``codes`` (the app does it inside the triage step the person already waits for, so that the first
    filter costs no more than the next)."""
    view = DetectionView(result)
    if codes:
        view.boxes  # noqa: B018 - built and kept
    return view


def _code_list(names: list[str], wanted) -> list[int]:
    return [k for k, n in enumerate(names) if n in set(wanted)]


def filter_images(view: DetectionView, *, tags=(), categories=(), sizes=(), min_score: float = 0.0) -> pd.DataFrame:
    """The images (worst first) with at least one box that has one of ``tags`` (a TIDE error type or an
    annotation-error check), one of ``categories`` and one of ``sizes``, all on the same box; a prediction counts
    when it scores at least ``min_score``. No filter: every image."""
    if not (tags or categories or sizes):
        return view.images
    b = view.boxes
    keep = ~(b["score"].to_numpy() < min_score)
    if tags:
        keep &= np.isin(b["tag"].to_numpy(), _code_list(view.tag_names, set(tags) - {""})) | \
            np.isin(b["check"].to_numpy(), _code_list(view.check_names, set(tags) - {""}))
    if categories:
        keep &= np.isin(b["category"].to_numpy(), _code_list(view.category_names, categories))
    if sizes:
        keep &= np.isin(b["size"].to_numpy(), [SIZES.index(s) for s in sizes])
    ranks = np.unique(b["rank"].to_numpy()[keep])
    return view.images.iloc[ranks[ranks >= 0]]


def boxes_of(view: DetectionView, result, image_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotated boxes, predicted boxes) of one image, from the result's tables, with ``box_key`` and ``check``."""
    return boxes_of_many(view, result, [image_id])[str(image_id)]


def boxes_of_many(view: DetectionView, result, image_ids) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``boxes_of`` for several images (a grid's tiles) at the cost of one: one pass over each table's image
    ranks and one row take per table, then split per image (a take from a table of millions of rows is what
    costs, not its size)."""
    ids = [str(i) for i in image_ids]
    ranks = view.image_index.get_indexer(ids)
    out = {}
    parts = []
    for table, rank_of, col, key in ((result.annotations, view.ann_rank, "ann_id", ann_key),
                                     (result.predictions, view.pred_rank, "pred_id", pred_key)):
        rows = np.flatnonzero(np.isin(rank_of, ranks[ranks >= 0]))
        taken = table.iloc[rows]
        kind = "ann" if col == "ann_id" else "pred"
        taken = taken.assign(check=view.check_of(taken[col], kind), box_key=[key(i) for i in taken[col]])
        parts.append((taken, rank_of[rows]))
    for image_id, r in zip(ids, ranks):
        out[image_id] = tuple(t.iloc[np.flatnonzero(rk == r)] if r >= 0 else t.iloc[:0] for t, rk in parts)
    return out


def cell_images(result, annotated: str, predicted: str, min_score: float, background: str) -> list[str]:
    """The images behind a confusion-matrix cell (annotated class x predicted class, ``background`` for none),
    from the matching of all predictions: true positives on the diagonal, classification errors off it, other
    false positives in the background row, missed annotations in the background column."""
    p = result.predictions
    p = p.loc[p["score"] >= min_score]
    if predicted == background:
        a = result.annotations
        rows = a.loc[(a["error_type"] == "missed") & (a["category"].astype("str") == annotated)]
    elif annotated == background:
        rows = p.loc[~p["is_tp"] & (p["error_type"] != "classification") & (p["category"].astype("str") == predicted)]
    elif annotated == predicted:
        rows = p.loc[p["is_tp"] & (p["category"].astype("str") == predicted)]
    else:
        rows = p.loc[(p["error_type"] == "classification") & (p["category"].astype("str") == predicted)
                     & (p["other_category"].astype("str") == annotated)]
    return list(dict.fromkeys(rows["image_id"].astype("str")))
