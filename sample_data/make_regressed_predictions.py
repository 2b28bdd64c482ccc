"""Make ``model/regressed_predictions.csv``: a second "model" for the model-unit-tests tour, whose predictions
equal the shipped model's (``model/model.ts.pt``) except on one slice, where it regresses: for a seeded 60% of
the images labelled ``star`` the probabilities of ``star`` and ``triangle`` are swapped, so the model now calls
them triangles (as a checkpoint trained with star labels corrupted into triangles would).
The overall accuracy falls by about 10 points, the star recall by about 60: ``model_tests.yaml`` FAILs on it.

    .venv/bin/python sample_data/make_regressed_predictions.py      # rewrites model/regressed_predictions.csv

Seeded and CPU-only: the same file on every run (up to float rounding in the model's outputs, written to 6
decimals).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

REGRESSED_CLASS = "star"
CONFUSED_WITH = "triangle"
SHARE = 0.6
SEED = 12


def regress(probs: np.ndarray, labels: pd.Series, class_names: list[str], share: float = SHARE,
            seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Swap the REGRESSED_CLASS and CONFUSED_WITH probabilities of a seeded ``share`` of the images labelled
    REGRESSED_CLASS; returns (new probabilities, mask of the changed rows)."""
    a, b = class_names.index(REGRESSED_CLASS), class_names.index(CONFUSED_WITH)
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(labels.astype("string").eq(REGRESSED_CLASS).fillna(False).to_numpy(dtype=bool))
    chosen = np.zeros(len(probs), dtype=bool)
    chosen[rng.choice(rows, size=round(share * len(rows)), replace=False)] = True
    out = probs.copy()
    out[chosen, a], out[chosen, b] = probs[chosen, b], probs[chosen, a]
    return out, chosen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "model" / "regressed_predictions.csv"))
    args = ap.parse_args(argv)
    import torch

    from inspect_core.loaders import load_dataset
    from inspect_core.model.models import load_model
    from inspect_core.model.preprocess import read_preprocess
    from inspect_core.model.pipeline import score_dataset

    torch.manual_seed(0)
    ds = load_dataset(HERE)
    spec = read_preprocess(HERE / "model" / "model.preprocess.json")
    model = load_model(HERE / "model" / "model.ts.pt", spec, device="cpu")
    result = score_dataset(model, ds.root, ds.images, workspace=None, workers=0, embeddings=False)
    names = list(result.class_names)
    probs, chosen = regress(np.asarray(result.probs, dtype=np.float64), ds.images["label"], names)
    frame = pd.DataFrame(probs, columns=names).round(6)
    frame.insert(0, "image_id", ds.images["image_id"].astype(str).to_numpy())
    frame = frame[np.isfinite(probs).all(axis=1)]          # unreadable images: no prediction, as a model has none
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(frame)} rows; {REGRESSED_CLASS} and {CONFUSED_WITH} probabilities swapped on "
          f"{int(chosen.sum())} {REGRESSED_CLASS} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
