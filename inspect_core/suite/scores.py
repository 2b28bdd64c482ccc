"""The one place the test suite gets a model's scores: from a model file (scored through the workspace's score
cache, the cache the Model triage page uses) or from a predictions / scores file (``score``'s scores.parquet is
one). Everything else in ``inspect_core.suite`` takes ``ScoreArrays``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import ScoreArrays

SCORE_COLUMNS = ("pred_label", "confidence", "loss", "correct")   # the score columns slices may query


class ScoresError(ValueError):
    """Scores that cannot be made or read; the message names the file and what to do."""


def score_model(scan, model_path: str | Path, *, preprocess: str | Path | None = None, factory: str | None = None,
                device: str = "auto", use_cache: bool = True, progress=None):
    """Score the scan's images with a model file (TorchScript, .pt2, or a state dict with ``factory``); cached in
    the scan's workspace. Returns a ``model.table.ScoreResult``."""
    from ..model.models import ModelLoadError, load_model
    from ..model.preprocess import (
        PreprocessError,
        find_sidecar,
        read_preprocess,
        sidecar_name,
    )
    from ..model.triage import score

    pre = Path(preprocess) if preprocess else find_sidecar(model_path)
    if pre is None:
        raise ScoresError(f"no preprocessing for {model_path}: put {sidecar_name(model_path)} beside it or give "
                          "--preprocess FILE")
    try:
        spec = read_preprocess(pre)
        model = load_model(model_path, spec, factory=factory, device=device)
        return score(scan.images, root=scan.dataset.root, model=model,
                     workspace=scan.workspace if use_cache else None, progress=progress)
    except (ModelLoadError, PreprocessError) as exc:
        raise ScoresError(str(exc)) from None


def score_file(scan, path: str | Path, *, class_names=None):
    """Scores from a predictions file (CSV/Parquet/NPY of probabilities or logits; ``score``'s scores.parquet
    too). Returns a ``model.table.ScoreResult``."""
    from ..limits import LimitError
    from ..model.predictions import PredictionsError
    from ..model.triage import score

    p = Path(path)
    if not p.is_file():
        raise ScoresError(f"predictions file {p} not found")
    try:
        return score(scan.images, predictions=p,
                     predictions_options={"class_names": class_names, "dataset_classes": list(scan.dataset.classes)})
    except (PredictionsError, LimitError, OSError) as exc:
        raise ScoresError(f"{p}: {exc}") from None


def arrays_of(result, images: pd.DataFrame) -> tuple[ScoreArrays, pd.DataFrame]:
    """A score result aligned with ``images`` by image_id: the arrays the metrics take and the score columns
    (SCORE_COLUMNS) the slices may query. Images without a score get -1 / NaN."""
    table = result.table
    ids = pd.Index(table["image_id"].astype(str))
    pos = ids.get_indexer(pd.Index(images["image_id"].astype(str)))
    have = pos >= 0
    n = len(images)
    take = np.where(have, pos, 0)

    def pick(values: np.ndarray, fill):
        out = values[take]
        return np.where(have, out, fill) if out.ndim == 1 else np.where(have[:, None], out, fill)

    probs = np.asarray(result.probs, dtype=np.float32)
    arrays = ScoreArrays(class_names=[str(c) for c in result.class_names],
                         label_index=pick(table["label_index"].to_numpy(dtype=np.int64), -1),
                         pred_index=pick(table["pred_index"].to_numpy(dtype=np.int64), -1),
                         probs=pick(probs, np.nan) if n else probs[:0],
                         loss=pick(table["loss"].to_numpy(dtype=np.float64, na_value=np.nan), np.nan))
    cols = {}
    for c in SCORE_COLUMNS:
        if c in table.columns:
            col = table[c].iloc[take].reset_index(drop=True)
            cols[c] = col.where(pd.Series(have), pd.NA) if c in ("pred_label", "correct") else \
                col.astype("float64").where(pd.Series(have), np.nan)
    return arrays, pd.DataFrame(cols, index=images.index)
