"""The training recipe's sanity checks, applied to a scored dataset.

- baselines: mean loss vs the uniform baseline -log(1/C) and the class-prior baseline; accuracy vs
  always predicting the majority class. A model that does not beat them has not learnt from the input.
- per-class alarm: a class whose accuracy (recall) is far below the accuracy on the other classes' images, judged
  on the upper end of its binomial (Wilson) interval so that a class of a few images does not flap; the
  chance-by-shares baseline (a guess in proportion to the class shares is right on a class as often as its share)
  is shown beside it. A class at 0% while the others are at 90% turns the panel red.
- batch independence: an image scored alone and inside a batch must give the same logits (catches a
  model left in train mode, batch-norm statistics leaking across the batch, ops mixing the batch).
- embeddings kNN: near duplicates (tiny cosine distance to the nearest neighbour) and outliers (large
  mean distance to the k nearest neighbours).
"""
from __future__ import annotations

import math
import statistics
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .knn import exact_rows, is_exact, knn

VERIFY_MAX_ROWS = 1000      # outlier flags of the approximate kNN confirmed by an exact search (highest first)

# The per-class alarm's cuts (thresholds as data: pass your own dict, or a few keys, to class_alarms)
CLASS_ALARM = {
    "confidence": 0.95,     # two-sided Wilson interval of a class's accuracy
    "red_ratio": 0.5,       # red: even the interval's upper end is below this share of the other classes' accuracy
    "amber_ratio": 0.8,     # amber: the upper end is below this share of it (clearly worse than the rest)
}
CLASS_ALARM_COLUMNS = ["class", "level", "n_images", "n_correct", "accuracy", "accuracy_low", "accuracy_high",
                       "other_classes_accuracy", "chance_accuracy", "verdict"]


@dataclass
class Baselines:
    split: str
    n_images: int
    n_classes: int
    model_loss: float
    uniform_loss: float
    prior_loss: float
    model_accuracy: float
    majority_class: str | None
    majority_accuracy: float
    verdicts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.model_loss < self.prior_loss) and (self.model_accuracy > self.majority_accuracy)


def baselines(table: pd.DataFrame, class_names: list[str], *, prior_split: str | None = "train") -> list[Baselines]:
    """Per split (plus "all" first): model loss/accuracy against the dumb baselines. Every split present gets
    a row: train, val, test first, then any other split name (holdout, fold1...) in sorted order.

    Class priors come from the ``prior_split`` labels (the training split) when present, else from all labels.
    """
    n_classes = len(class_names)
    labelled = table[(table["label_index"] >= 0) & table["loss"].notna()]
    prior_rows = labelled
    if prior_split is not None and "split" in labelled and (labelled["split"] == prior_split).any():
        prior_rows = labelled[labelled["split"] == prior_split]
    counts = np.bincount(prior_rows["label_index"].to_numpy(dtype=np.int64), minlength=n_classes).astype(float)
    prior = (counts + 1e-3) / (counts + 1e-3).sum()   # tiny smoothing so an unseen class has finite loss
    majority = int(np.argmax(counts)) if counts.sum() > 0 else None
    groups = [("all", labelled)]
    if "split" in labelled:
        # every split present: train/val/test first, then any other (holdout, fold1...) in sorted order
        present = {str(s) for s in labelled["split"].dropna().unique()}
        usual = [s for s in ("train", "val", "test") if s in present]
        split_text = labelled["split"].astype("string")
        for split in usual + sorted(present - set(usual)):
            groups.append((split, labelled[(split_text == split).fillna(False).to_numpy(dtype=bool)]))
    out = []
    uniform = math.log(n_classes) if n_classes else float("nan")
    for name, rows in groups:
        if rows.empty:
            continue
        y = rows["label_index"].to_numpy(dtype=np.int64)
        prior_loss = float(np.mean(-np.log(prior[y])))
        correct = rows["pred_index"].to_numpy() == y
        b = Baselines(split=name, n_images=len(rows), n_classes=n_classes,
                      model_loss=float(rows["loss"].mean()), uniform_loss=uniform, prior_loss=prior_loss,
                      model_accuracy=float(correct.mean()),
                      majority_class=class_names[majority] if majority is not None else None,
                      majority_accuracy=float(np.mean(y == majority)) if majority is not None else float("nan"))
        if b.model_loss >= b.uniform_loss:
            b.verdicts.append(f"loss {b.model_loss:.3f} is not below the uniform baseline {b.uniform_loss:.3f} "
                              f"(-log(1/{n_classes})): the model predicts no better than chance")
        elif b.model_loss >= b.prior_loss:
            b.verdicts.append(f"loss {b.model_loss:.3f} is not below the class-prior baseline {b.prior_loss:.3f}: "
                              "the model learnt the class balance but nothing from the images")
        if b.model_accuracy <= b.majority_accuracy:
            b.verdicts.append(f"accuracy {b.model_accuracy:.1%} does not beat always answering "
                              f"{b.majority_class!r} ({b.majority_accuracy:.1%})")
        if not b.verdicts:
            b.verdicts.append(f"beats the baselines: loss {b.model_loss:.3f} < prior {b.prior_loss:.3f} < uniform "
                              f"{b.uniform_loss:.3f}; accuracy {b.model_accuracy:.1%} > majority {b.majority_accuracy:.1%}")
        out.append(b)
    return out


def baselines_frame(items: list[Baselines]) -> pd.DataFrame:
    return pd.DataFrame([{"split": b.split, "n_images": b.n_images, "model_loss": b.model_loss,
                          "uniform_loss": b.uniform_loss, "prior_loss": b.prior_loss,
                          "model_accuracy": b.model_accuracy, "majority_class": b.majority_class,
                          "majority_accuracy": b.majority_accuracy, "ok": b.ok,
                          "verdict": "; ".join(b.verdicts)} for b in items])


def wilson_interval(n_correct: np.ndarray, n_images: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wilson score interval of the proportion n_correct / n_images (elementwise; NaN where n = 0)."""
    k, n = np.asarray(n_correct, dtype=np.float64), np.asarray(n_images, dtype=np.float64)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def class_alarms(table: pd.DataFrame, class_names: list[str], thresholds: dict | None = None) -> pd.DataFrame:
    """Per class (with labelled, scored images): its accuracy against the accuracy on the other classes' images,
    with the evidence. ``level`` "red" when the upper end of the class's Wilson interval is below
    ``red_ratio`` x the others' accuracy, "amber" when below ``amber_ratio`` x it, else "ok" (CLASS_ALARM,
    overridable by ``thresholds``). Sorted red, amber, ok, then by accuracy."""
    from .label_issues import class_recall_counts
    cuts = {**CLASS_ALARM, **(thresholds or {})}
    labelled = (table["label_index"].to_numpy() >= 0) & table["loss"].notna().to_numpy()
    n_images, n_right = class_recall_counts(table["label_index"].to_numpy(dtype=np.int64)[labelled],
                                            table["pred_index"].to_numpy(dtype=np.int64)[labelled], len(class_names))
    low, high = wilson_interval(n_right, n_images, cuts["confidence"])
    others_n, others_right = n_images.sum() - n_images, n_right.sum() - n_right
    with np.errstate(invalid="ignore", divide="ignore"):
        others = others_right / others_n
        accuracy = n_right / n_images
    chance = n_images / max(1, n_images.sum())
    rows = []
    for j in np.flatnonzero(n_images > 0):
        level = ("red" if high[j] < cuts["red_ratio"] * others[j] else
                 "amber" if high[j] < cuts["amber_ratio"] * others[j] else "ok")
        evidence = (f"class {class_names[j]!r}: accuracy {accuracy[j]:.0%} ({n_right[j]} of {n_images[j]}; "
                    f"{cuts['confidence']:.0%} interval {low[j]:.0%}-{high[j]:.0%}) against {others[j]:.0%} on the "
                    f"other classes' images; a guess by the class shares gets {chance[j]:.1%}")
        verdict = {"red": f"{evidence}: far below the others (upper end under {cuts['red_ratio']:.0%} of their "
                          "accuracy): the model has not learnt this class (too few training images?)",
                   "amber": f"{evidence}: well below the others (upper end under {cuts['amber_ratio']:.0%} of their "
                            "accuracy)",
                   "ok": evidence}[level]
        rows.append({"class": str(class_names[j]), "level": level, "n_images": int(n_images[j]),
                     "n_correct": int(n_right[j]), "accuracy": float(accuracy[j]), "accuracy_low": float(low[j]),
                     "accuracy_high": float(high[j]), "other_classes_accuracy": float(others[j]),
                     "chance_accuracy": float(chance[j]), "verdict": verdict})
    out = pd.DataFrame(rows, columns=CLASS_ALARM_COLUMNS)
    order = out["level"].map({"red": 0, "amber": 1, "ok": 2})
    return out.assign(_o=order).sort_values(["_o", "accuracy"], kind="stable").drop(columns="_o").reset_index(drop=True)


@dataclass
class BatchIndependence:
    ok: bool
    max_abs_diff: float
    tolerance: float
    n_images: int
    detail: str


_TF32_LOCK = threading.Lock()
_TF32_USERS = 0
_TF32_SAVED: tuple[bool, bool] | None = None


@contextmanager
def _no_tf32():
    """Full float32 on GPUs while the check runs. Reference-counted: checks that overlap in threads share it,
    and the last one out restores the process's own TF32 settings."""
    import torch
    global _TF32_USERS, _TF32_SAVED
    with _TF32_LOCK:
        if _TF32_USERS == 0:
            _TF32_SAVED = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        _TF32_USERS += 1
    try:
        yield
    finally:
        with _TF32_LOCK:
            _TF32_USERS -= 1
            if _TF32_USERS == 0 and _TF32_SAVED is not None:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = _TF32_SAVED
                _TF32_SAVED = None


def batch_independence(forward, inputs, *, tolerance: float = 1e-3) -> BatchIndependence:
    """Score each input alone, in a batch, and in the batch reversed; all logits must agree.

    ``forward`` maps a (B, C, H, W) tensor to (B, n_classes) logits (e.g. ``LoadedModel.forward``).
    ``inputs`` is a (B, C, H, W) tensor of real images (B >= 2). The tolerance is relative to the
    logits' scale (max |logit|, at least 1).
    """
    import torch

    x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    n = int(x.shape[0])
    if n < 2:
        return BatchIndependence(False, float("nan"), tolerance, n, "needs at least 2 images to compare")
    try:
        # full float32 on GPUs (no TF32): TF32 rounds differently per cuDNN algorithm, and the algorithm
        # depends on the batch size, which would look like mixing across the batch
        with torch.inference_mode(), _no_tf32():
            alone = torch.cat([forward(x[i:i + 1]).float().cpu() for i in range(n)])
            together = forward(x).float().cpu()
            rev = torch.flip(forward(torch.flip(x, dims=[0])).float().cpu(), dims=[0])
            # a second pass of the same batch: a model in train mode (dropout) or updating running stats differs
            again = forward(x).float().cpu()
    except Exception as exc:  # noqa: BLE001 - e.g. BatchNorm in train mode refuses a batch of one
        return BatchIndependence(False, float("nan"), tolerance, n,
                                 f"scoring one image alone failed ({' '.join(str(exc).split())[:140]}); "
                                 "the model may be in train mode (BatchNorm needs a batch)")
    scale = max(1.0, float(together.abs().max()))
    diffs = {
        "alone vs batch": float((alone - together).abs().max()),
        "batch vs reversed batch": float((rev - together).abs().max()),
        "batch vs same batch again": float((again - together).abs().max()),
    }
    worst_name, worst = max(diffs.items(), key=lambda kv: kv[1])
    ok = worst <= tolerance * scale
    if ok:
        detail = (f"{n} images give the same logits alone and in a batch (max difference {worst:.2e}, "
                  f"tolerance {tolerance * scale:.1e})")
    else:
        detail = (f"logits change with the batch ({worst_name}: max difference {worst:.3g} > {tolerance * scale:.2g}); "
                  "check for a model left in train mode (call model.eval() before saving), batch-norm "
                  "statistics computed from the batch, or reshapes that mix examples across the batch")
    return BatchIndependence(ok, worst, tolerance, n, detail)


def embedding_findings(image_ids, embeddings: np.ndarray | None, *, k: int = 5,
                       thresholds: dict | None = None, outlier_z: float = 6.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(near-duplicate pairs, outliers) from model embeddings.

    Near duplicates: the model's calibrated cut (``embed_dups.ratio_candidates``, the same cut the Findings page's
    model evidence uses, here without the pixels: the pair is far closer than either image's nearest other
    image, ratio <= ``ratio_max``, and within the distance cap; ``thresholds`` overrides ``embed_dups.EMBED_RULE``). Outliers: mean distance to the k nearest neighbours more than ``outlier_z``
    robust standard deviations (1.4826 * MAD) above the median. Rows with NaN embeddings are skipped.
    Above ``knn.EXACT_MAX_ROWS`` rows the neighbours come from an inverted-file search (see ``knn``), and the
    outliers it flags are confirmed by an exact search of their neighbours (up to ``VERIFY_MAX_ROWS`` of them,
    highest score first; more than that are flagged on the approximate distances).
    """
    dup_cols = ["image_id", "neighbour_id", "cosine_distance", "distance_ratio"]
    out_cols = ["image_id", "knn_mean_distance", "robust_z", "nearest_id", "nearest_distance"]
    if embeddings is None:
        return pd.DataFrame(columns=dup_cols), pd.DataFrame(columns=out_cols)
    ids = np.asarray(pd.Series(image_ids, dtype=object), dtype=object).astype(str).astype(object)
    ok = np.concatenate([np.isfinite(embeddings[s:s + 65536]).all(axis=1)      # by blocks: no N x D temporary
                         for s in range(0, len(embeddings), 65536)] or [np.zeros(0, dtype=bool)])
    if ok.all():                    # no copy of what can be gigabytes (1,000,000 x 2048 float32: 8 GB)
        emb = embeddings
    else:
        ids, emb = ids[ok], embeddings[ok]
    if len(ids) < 3:
        return pd.DataFrame(columns=dup_cols), pd.DataFrame(columns=out_cols)
    dist, idx = knn(emb, k=k)
    mean_d = dist.mean(axis=1)
    med = float(np.median(mean_d))
    mad = float(np.median(np.abs(mean_d - med))) * 1.4826
    scale = max(mad, 1e-12)
    z = (mean_d - med) / scale
    if not is_exact(len(emb)):
        # The inverted file can miss a true neighbour, which only makes a row look farther from the rest than
        # it is: the rows it flags are searched again exactly (the VERIFY_MAX_ROWS highest scores) and keep
        # their flag only if the exact distances confirm it.
        flagged = np.flatnonzero(z >= outlier_z)
        check = flagged[np.argsort(-z[flagged], kind="stable")[:VERIFY_MAX_ROWS]]
        if len(check):
            dist[check], idx[check] = exact_rows(emb, check, k=dist.shape[1])
            mean_d[check] = dist[check].mean(axis=1)
            z[check] = (mean_d[check] - med) / scale
    # pairs by the model's calibrated cut (one definition: embed_dups.ratio_candidates), each once
    from .embed_dups import embed_rule, ratio_candidates
    rule = embed_rule(thresholds)
    _, lo, hi, d, ratio = ratio_candidates(dist, idx, rule)
    alone = ratio <= rule["ratio_max"]
    dups = pd.DataFrame({"image_id": ids[lo[alone]], "neighbour_id": ids[hi[alone]],
                         "cosine_distance": d[alone].astype(float), "distance_ratio": ratio[alone].astype(float)},
                        columns=dup_cols)
    dups = dups.sort_values("cosine_distance", kind="stable").reset_index(drop=True)
    order = np.argsort(-z, kind="stable")
    sel = order[z[order] >= outlier_z]
    outliers = pd.DataFrame({"image_id": ids[sel], "knn_mean_distance": mean_d[sel].astype(float),
                             "robust_z": z[sel].astype(float), "nearest_id": ids[idx[sel, 0]],
                             "nearest_distance": dist[sel, 0].astype(float)}, columns=out_cols)
    for frame in (dups, outliers):
        for c in frame.columns:
            if c.endswith("_id"):
                frame[c] = frame[c].astype("string")
    return dups, outliers
