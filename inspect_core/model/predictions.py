"""Predictions files (no model needed): CSV / Parquet / NPY of per-class probabilities or logits, read and aligned
with the dataset's images by image_id."""
from __future__ import annotations

import json
import time
from pathlib import Path
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .table import PROB_PREFIX, ScoreResult, build_table, id_texts, image_frame, softmax, unknown_label_notes


class PredictionsError(ValueError):
    """A predictions file that cannot be used; one-line message."""


LIST_COLUMNS = ("probs", "probabilities", "pred_probs", "logits", "scores", "outputs")


# rows of probabilities written with a few decimals sum to 1 only roughly: 2 decimals over 5 classes, +-0.025
ROUNDED_SUM_TOL = 0.05


def detect_values(matrix: np.ndarray, source: str = "the values") -> str:
    """What a predictions matrix holds: "probabilities" (every finite row in 0..1, summing to 1 within the
    rounding of C values: max(ROUNDED_SUM_TOL, C x 0.005), so 2-decimal probabilities count), "percentages"
    (0..100, summing to 100 within 100 x that: integer percentages count), or "logits" (anything else).
    Rows in 0..1 that do not sum to 1 are refused: they are probabilities with a class missing, or per-class
    scores, and reading them as logits would be wrong. All-zero rows (placeholders) are left out of the test;
    they become missing predictions. Float error down to -1e-4 counts as 0."""
    rows = matrix[np.isfinite(matrix).all(axis=1)]
    rows = rows[np.abs(rows).sum(axis=1) > 0]
    if rows.size == 0:
        return "probabilities"
    tol = max(ROUNDED_SUM_TOL, rows.shape[1] * 0.005)
    sums = rows.sum(axis=1)
    lo, hi = float(rows.min()), float(rows.max())
    if lo >= -1e-4 and hi <= 1 + 1e-4:
        if np.all(np.abs(sums - 1.0) <= tol):
            return "probabilities"
        raise PredictionsError(
            f"{source} lie in 0..1 but their rows sum to {sums.min():.3g}..{sums.max():.3g}, not 1: if they are "
            "probabilities, a class column is missing (give one column per class); if they are logits, name the "
            "columns logit_<class>")
    if lo >= -1e-2 and hi <= 100 + 1e-2 and np.all(np.abs(sums - 100.0) <= 100 * tol):
        return "percentages"
    return "logits"


def to_probabilities(matrix: np.ndarray, kind: str = "auto", source: str = "the values") -> tuple[np.ndarray, str]:
    """(probabilities, 'probabilities' | 'percentages' | 'logits') from a predictions matrix; ``kind`` "auto"
    decides by ``detect_values``. Probabilities and percentages are renormalised so rows sum to 1 exactly."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if kind == "auto":
        kind = detect_values(matrix, source)
    if kind in ("probabilities", "percentages"):
        clipped = np.clip(matrix, 0.0, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = clipped / clipped.sum(axis=1, keepdims=True)
    elif kind == "logits":
        probs = softmax(matrix)
    else:
        raise PredictionsError(f"unknown predictions kind {kind!r}; use auto, probabilities or logits")
    return probs.astype(np.float32), kind


def _parse_list_cell(value):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _numeric_matrix(frame: pd.DataFrame, columns: list, file_name: str) -> np.ndarray:
    """The given columns as a float64 matrix; a cell that is not a number (text in a class column) is a
    PredictionsError naming the column, the row and the value. Empty cells are NaN (that row gets an error)."""
    out = np.empty((len(frame), len(columns)), np.float64)
    for k, c in enumerate(columns):
        col = frame[c]
        if isinstance(col, pd.DataFrame):
            raise PredictionsError(f"{file_name} has more than one column named {str(c)[:40]!r}")
        values = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(col) else col
        bad = np.flatnonzero(values.isna().to_numpy() & col.notna().to_numpy() & (col.astype(str).str.strip() != "")
                             .to_numpy())
        if len(bad):
            from ..textsafe import safe_text
            raise PredictionsError(f"{file_name}: column {safe_text(str(c))[:40]!r} row {bad[0] + 2} holds "
                                   f"{safe_text(str(col.iloc[bad[0]]))[:40]!r}, not a number"
                                   f"{f' ({len(bad)} such cells)' if len(bad) > 1 else ''}; class columns hold "
                                   "probabilities or logits")
        out[:, k] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def read_predictions(path: Path | str, *, class_names: Sequence[str] | None = None,
                     image_ids: Sequence[str] | None = None, kind: str = "auto",
                     dataset_classes: Sequence[str] | None = None):
    """Read a predictions file. Returns (image_ids, probabilities (N,C), class_names, kind_detected, notes).

    CSV/Parquet: an ``image_id`` column plus either one column per class (named as the class, or
    ``prob_<class>`` / ``logit_<class>``) or one list column (probs / logits / scores). NPY: an (N, C)
    array whose rows follow ``image_ids`` (the dataset's image order unless a list is given).
    ``class_names``: the model's classes in output order (all must have a column). Without them,
    ``dataset_classes`` (the dataset's labels) pick the class columns when the file has columns for them,
    and name the list column's values when their count matches; other numeric columns are ignored (a note
    names them); a dataset class without a column is an error when the values are probabilities.
    """
    notes: list[str] = []
    path = Path(path).expanduser()
    if path.is_dir():
        raise PredictionsError(f"predictions file {path} is a folder; give the CSV, Parquet or NPY file in it")
    if not path.is_file() and not path.exists():
        raise PredictionsError(f"predictions file {path} not found; check the path")
    from ..limits import check_input_file
    try:
        check_input_file(path, "predictions file", "max_table_bytes")   # a regular file, within the cap
    except ValueError as exc:
        raise PredictionsError(str(exc)) from None
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            # memory-mapped first: a header that claims more rows than the file holds fails here, before any
            # allocation (a 100-byte file must not ask for terabytes); the copy is then at most the file's size
            matrix = np.array(np.load(path, allow_pickle=False, mmap_mode="r"))
        except (ValueError, OSError, MemoryError):
            raise PredictionsError(f"{path.name} is not a plain numeric .npy array (save it with "
                                   "numpy.save(path, array_of_numbers))") from None
        if matrix.ndim != 2:
            raise PredictionsError(f"{path.name} holds shape {matrix.shape}; expected (n_images, n_classes) numbers")
        if not np.issubdtype(matrix.dtype, np.number) or matrix.dtype == np.bool_:
            raise PredictionsError(f"{path.name} holds {matrix.dtype} values; expected numbers (probabilities or "
                                   "logits), shape (n_images, n_classes)")
        if image_ids is None:
            raise PredictionsError(f"{path.name} is an .npy array: give the image_id order its rows follow")
        if len(image_ids) != matrix.shape[0]:
            raise PredictionsError(f"{path.name} has {matrix.shape[0]} rows but there are {len(image_ids)} image_ids; "
                                   "rows must follow the image_id order one to one")
        names = list(class_names or dataset_classes or []) or [str(i) for i in range(matrix.shape[1])]
        if len(names) != matrix.shape[1]:
            raise PredictionsError(f"{path.name} has {matrix.shape[1]} columns but there are {len(names)} classes")
        probs, kind = to_probabilities(matrix, kind, path.name)
        return [str(i) for i in image_ids], probs, names, kind, notes
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise PredictionsError(f"{path.name}: predictions must be .csv, .parquet or .npy")
    except PredictionsError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PredictionsError(f"could not read predictions {path.name}: {' '.join(str(exc).split())[:160]}") from None
    if "image_id" not in frame.columns:
        raise PredictionsError(f"{path.name} has no image_id column")
    ids = id_texts(frame["image_id"])
    list_col = next((c for c in frame.columns if str(c).lower() in LIST_COLUMNS), None)
    ignore = {"image_id", "label", "split", "given_label", "pred_label", "path"}
    num_cols = [c for c in frame.columns if c not in ignore and pd.api.types.is_numeric_dtype(frame[c])]

    def column_for(name: str):
        return next((c for c in (f"{PROB_PREFIX}{name}", f"logit_{name}", name) if c in frame.columns), None)
    by_dataset = {n: column_for(str(n)) for n in (dataset_classes or [])}
    by_dataset = {n: c for n, c in by_dataset.items() if c is not None}
    if class_names is None and len(by_dataset) >= 2:
        per_class = dict(by_dataset)
        # prob_<x> / logit_<x> columns are classes even when the dataset has no image of x (a model that knows
        # more classes): dropping them would renormalise the probabilities over a subset
        for c in num_cols:
            text = str(c)
            if c not in set(per_class.values()) and text.startswith((PROB_PREFIX, "logit_")):
                per_class[text.split("_", 1)[1]] = c
        others = [str(c) for c in num_cols if c not in set(per_class.values())]
        if others:
            notes.append(f"{len(others)} numeric columns that name no class of the dataset were ignored: "
                         f"{', '.join(others[:6])}{' ...' if len(others) > 6 else ''}")
        unmatched = [str(n) for n in dataset_classes if n not in per_class]
        if unmatched:
            values = _numeric_matrix(frame, list(per_class.values()), path.name)
            if not all(str(c).startswith("logit_") for c in per_class.values()) and kind != "logits" \
                    and detect_values_quietly(values) != "logits":
                raise PredictionsError(f"{path.name} has no column for classes {', '.join(unmatched[:6])}: give one "
                                       "probability column per class (prob_<class> or the class name)")
            notes.append(f"no column for classes {', '.join(unmatched[:6])}: their images count as unlabelled")
    elif class_names is None:
        inferred = [str(c) for c in num_cols if str(c).startswith((PROB_PREFIX, "logit_"))] or [str(c) for c in num_cols]
        per_class = {}
        for c in inferred:
            name = c[len(PROB_PREFIX):] if c.startswith(PROB_PREFIX) else c[len("logit_"):] if c.startswith("logit_") else c
            per_class[name] = c
    else:
        per_class = {}
        for name in class_names:
            for cand in (f"{PROB_PREFIX}{name}", f"logit_{name}", name):
                if cand in frame.columns:
                    per_class[name] = cand
                    break
        if len(per_class) != len(class_names):
            per_class = {}
    if per_class and (class_names is None or len(per_class) == len(class_names)) and len(per_class) >= 2:
        names = list(per_class)
        matrix = _numeric_matrix(frame, [per_class[n] for n in names], path.name)
        if kind == "auto" and all(str(per_class[n]).startswith("logit_") for n in names):
            kind = "logits"
    elif list_col is not None:
        rows = [_parse_list_cell(v) for v in frame[list_col]]
        width = max((len(r) for r in rows if r is not None), default=0)
        if width < 2:
            raise PredictionsError(f"{path.name}: column {list_col} holds no lists of per-class values")
        matrix = np.array([r if r is not None and len(r) == width else [np.nan] * width for r in rows], dtype=np.float64)
        names = list(class_names) if class_names else \
            list(dataset_classes) if dataset_classes and len(dataset_classes) == width else [str(i) for i in range(width)]
        if len(names) != width:
            raise PredictionsError(f"{path.name}: lists have {width} values but there are {len(names)} classes")
        if kind == "auto" and str(list_col).lower() == "logits":
            kind = "logits"
    else:
        missing = [n for n in (class_names or []) if not any(c in frame.columns for c in (n, PROB_PREFIX + n, "logit_" + n))]
        hint = f"; missing columns for classes: {', '.join(missing[:5])}" if missing else ""
        raise PredictionsError(f"{path.name}: no per-class columns and no probs/logits list column{hint}")
    probs, kind = to_probabilities(matrix, kind, path.name)
    return ids, probs, names, kind, notes


def detect_values_quietly(matrix: np.ndarray) -> str:
    """``detect_values``, with "mixed" instead of an error."""
    try:
        return detect_values(matrix)
    except PredictionsError:
        return "mixed"


def score_predictions(path: Path | str, images: pd.DataFrame, *, class_names: Sequence[str] | None = None,
                      kind: str = "auto", order: Sequence[str] | None = None,
                      dataset_classes: Sequence[str] | None = None) -> ScoreResult:
    """Score a dataset from a predictions file, aligning rows by image_id (no model needed).

    Images with no prediction get an error row; predictions for unknown image_ids are counted in notes.
    For .npy files the row order is ``order`` (default: ``images["image_id"]``).
    """
    t0 = time.perf_counter()
    frame = image_frame(images)
    dataset_ids = id_texts(frame["image_id"])
    ids, probs, names, kind, notes = read_predictions(path, class_names=class_names, image_ids=order or dataset_ids,
                                                      kind=kind, dataset_classes=dataset_classes)
    given = pd.Index(ids)
    first = ~given.duplicated(keep="first")                      # a repeated image_id: its first row is used
    unique_ids, unique_rows = given[first], np.flatnonzero(first)
    pos = unique_ids.get_indexer(pd.Index(dataset_ids))          # -1: no prediction for that image
    have = pos >= 0
    full = np.full((len(dataset_ids), len(names)), np.nan, dtype=np.float32)
    full[have] = probs[unique_rows[pos[have]]]
    errors = np.full(len(dataset_ids), None, dtype=object)
    errors[~have] = "no prediction for this image in the predictions file"
    errors[have & ~np.isfinite(full).all(axis=1)] = "prediction row has missing values"
    errors = errors.tolist()
    notes.append(f"values read as {kind}" + (" (divided by 100)" if kind == "percentages" else "")
                 + (" and renormalised to sum to 1" if kind != "logits" else ", turned into probabilities by softmax"))
    notes += unknown_label_notes(frame, names)
    extra = len(unique_ids) - len(np.unique(pos[have]))          # predicted ids that name no dataset image
    if extra:
        notes.append(f"{extra} predictions name image_ids not in the dataset (ignored)")
    if len(unique_ids) < len(ids):
        notes.append(f"{len(ids) - len(unique_ids)} duplicate image_id rows in the predictions file (first kept)")
    table = build_table(frame, full, names, errors)
    return ScoreResult(table=table, probs=full, class_names=list(names), source={"kind": "predictions",
                       "predictions_path": str(path), "values": kind}, elapsed_s=time.perf_counter() - t0, notes=notes)

