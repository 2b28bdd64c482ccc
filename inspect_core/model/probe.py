"""Out-of-sample class probabilities without retraining the user's network: a K-fold linear probe on its embeddings.

A network's own probabilities on the images it was trained on are in-sample: it has seen each image with its
label, so a memorised wrong label gets a low loss and escapes confident learning. This module fits a
multinomial logistic regression (a linear probe) on the model's penultimate embeddings, K times: the images
are split into K folds (stratified by label), and each fold's rows are given the probabilities of the probe
fitted on the other K - 1 folds. No probe ever sees the label of an image it scores.

What it is, and is not: the embeddings themselves come from the user's network, which was trained on the
training split, so an embedding may still carry some memory of its label. The probe removes the direct path
(the network's own head and its fit to each label); it cannot remove what the features learnt. It is the
approach cleanlab's documentation suggests when retraining the network K times is too costly.

Cost: the embeddings are centred, projected on at most ``dims`` principal axes (from a sample of rows) and
whitened; each fold's probe is fitted on at most ``max_train_rows`` rows with L-BFGS. On 1,000,000 x 512
embeddings this takes well under a minute on two cores: see BENCHMARKS.md (``bench/bench_probe.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Defaults, overridable per call (``out_of_fold_probs(..., **PROBE_DEFAULTS)``).
PROBE_DEFAULTS = {
    "n_folds": 5,
    "dims": 64,                # principal axes kept (the embedding's own width when smaller)
    "max_train_rows": 40_000,  # rows each fold's probe is fitted on (a random sample); more adds little
    "pca_rows": 100_000,       # rows the principal axes are estimated from
    "l2": 1e-3,                # ridge penalty on the probe's weights (on whitened inputs)
    "iters": 40,               # L-BFGS iterations per fold
    "seed": 0,
}


@dataclass
class ProbeResult:
    probs: np.ndarray          # (n, n_classes) float32; NaN rows where the embedding is missing
    fold: np.ndarray           # (n,) int8: the fold whose probe did NOT see the row (-1: unlabelled or no embedding)
    n_folds: int
    accuracy: float            # out-of-fold accuracy on the labelled rows
    elapsed_s: float
    note: str                  # one line saying what these probabilities are


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each row (int8): rows of each label spread evenly over the folds in a seeded random order;
    -1 for unlabelled rows (label < 0)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.full(len(labels), -1, np.int8)
    shuffled = rng.permutation(len(labels))
    labelled = shuffled[labels[shuffled] >= 0]
    by_label = labelled[np.argsort(labels[labelled], kind="stable")]
    lab = labels[by_label]
    starts = np.r_[0, np.nonzero(np.diff(lab))[0] + 1]
    rank = np.arange(len(by_label)) - np.repeat(starts, np.diff(np.r_[starts, len(by_label)]))
    fold[by_label] = (rank % n_folds).astype(np.int8)
    return fold


def _whitened(emb: np.ndarray, rows: np.ndarray, dims: int, pca_rows: int, rng) -> torch.Tensor:
    """The rows' embeddings centred, projected on the top ``dims`` principal axes and scaled to unit variance
    (the axes from a sample of at most ``pca_rows`` rows), as a float32 tensor."""
    import torch
    sample = rows if len(rows) <= pca_rows else np.sort(rng.choice(rows, pca_rows, replace=False))
    x = torch.from_numpy(np.ascontiguousarray(emb[sample], dtype=np.float32))
    mean = x.mean(0)
    x -= mean
    cov = (x.T @ x) / max(len(x) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov.double())
    keep = min(dims, emb.shape[1])
    evals, evecs = evals[-keep:].clamp_min(1e-9), evecs[:, -keep:]
    proj = (evecs / evals.sqrt()).float()
    out = torch.empty((len(rows), keep), dtype=torch.float32)
    for s in range(0, len(rows), 65536):
        block = torch.from_numpy(np.ascontiguousarray(emb[rows[s:s + 65536]], dtype=np.float32))
        out[s:s + 65536] = (block - mean) @ proj
    return out


def _fit_probe(x, y, n_classes: int, l2: float, iters: int):
    """Multinomial logistic regression on (x, y) by L-BFGS: (weights (d, C), bias (C,))."""
    import torch
    w = torch.zeros((x.shape[1], n_classes), requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    counts = torch.bincount(y, minlength=n_classes).float()
    with torch.no_grad():                       # start at the class prior: the probe need not learn it
        b.copy_(torch.log((counts + 1) / (counts.sum() + n_classes)))
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def out_of_fold_probs(embeddings: np.ndarray, labels: np.ndarray, n_classes: int, *, folds: np.ndarray | None = None,
                      **options) -> ProbeResult:
    """Out-of-fold probabilities of ``n_classes`` classes for every row of ``embeddings`` (n, d).

    ``labels``: class index per row, -1 for unlabelled rows (they get the probabilities of one probe, any of
    which is out-of-sample for them, and take no part in fitting). ``folds``: a fold per row to use instead of
    ``stratified_folds`` (tests). ``options``: any of ``PROBE_DEFAULTS``."""
    import torch
    opts = {**PROBE_DEFAULTS, **options}
    unknown = set(options) - set(PROBE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown probe option(s): {', '.join(sorted(unknown))}; known: {', '.join(PROBE_DEFAULTS)}")
    t0 = time.perf_counter()
    emb = np.asarray(embeddings)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = len(emb), int(opts["n_folds"])
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} embeddings")
    if k < 2:
        raise ValueError("n_folds must be at least 2")
    rng = np.random.default_rng(opts["seed"])
    valid = np.isfinite(emb).all(axis=1) if n else np.zeros(0, bool)
    labels = np.where(valid & (labels >= 0) & (labels < n_classes), labels, -1)
    if folds is None:
        folds = stratified_folds(labels, k, opts["seed"])
    folds = np.where(labels >= 0, np.asarray(folds), -1).astype(np.int8)
    probs = np.full((n, n_classes), np.nan, np.float32)
    rows = np.nonzero(valid)[0]
    if len(rows) == 0 or not (labels >= 0).any():
        return ProbeResult(probs, folds, k, float("nan"), time.perf_counter() - t0,
                           "no labelled rows with embeddings: no probe was fitted")
    x_all = _whitened(emb, rows, int(opts["dims"]), int(opts["pca_rows"]), rng)
    at = np.full(n, -1, np.int64)
    at[rows] = np.arange(len(rows))
    for f in range(k):
        train = np.nonzero((folds >= 0) & (folds != f))[0]
        if len(train) > opts["max_train_rows"]:
            train = np.sort(rng.choice(train, int(opts["max_train_rows"]), replace=False))
        score = np.nonzero(folds == f)[0]
        if f == 0:                               # unlabelled rows: fold 0's probe never saw them either
            score = np.concatenate([score, rows[labels[rows] < 0]])
        if len(train) == 0 or len(score) == 0:
            continue
        w, b = _fit_probe(x_all[at[train]], torch.from_numpy(labels[train]), n_classes, opts["l2"], int(opts["iters"]))
        with torch.no_grad():
            for s in range(0, len(score), 65536):
                part = score[s:s + 65536]
                probs[part] = torch.softmax(x_all[at[part]] @ w + b, dim=1).numpy()
    lab = np.nonzero(folds >= 0)[0]
    ok = lab[np.isfinite(probs[lab]).all(axis=1)]
    accuracy = float((probs[ok].argmax(1) == labels[ok]).mean()) if len(ok) else float("nan")
    note = (f"out-of-sample probabilities from a {k}-fold linear probe on the model's embeddings "
            f"(out-of-fold accuracy {accuracy:.1%}): no probe saw the label of an image it scored, but the "
            "embeddings come from the network, which was trained on the training split")
    return ProbeResult(probs, folds, k, accuracy, time.perf_counter() - t0, note)


@dataclass
class LabelTriage:
    """What the CLI and the Model triage page show of label issues, made by ``label_triage``."""
    issues: object              # the triage_labels table (with in_sample and probabilities columns)
    model_problems: object      # classes that are a model problem, not label errors
    notes: list                   # one line each: which rows are in-sample and where their flags come from
    n_in_sample: int
    oos_source: str               # "" (none), "probe" or "predictions"


def merge_out_of_fold(parts: list[np.ndarray]) -> np.ndarray:
    """One (n, C) array from several out-of-fold predictions (one file per fold, aligned to the same rows,
    NaN where a file has no prediction): each row from the first part that has it."""
    out = np.array(parts[0], dtype=np.float32, copy=True)
    for part in parts[1:]:
        missing = ~np.isfinite(out).all(axis=1)
        out[missing] = part[missing]
    return out


def label_triage(result, *, trained_on=None, probe: bool = False, oof_probs: np.ndarray | None = None,
                 settings: dict | None = None, probe_options: dict | None = None) -> LabelTriage:
    """Label issues of a scored result, with in-sample rows (the model was trained on them: ``trained_on``, see
    ``label_issues.trained_on_mask``) flagged and ranked apart from out-of-sample ones. Their flags come from
    ``oof_probs`` (the user's own cross-validated predictions) where given, else from this module's K-fold probe
    on the model's embeddings when ``probe`` is set, else from the model's in-sample probabilities, as stated."""
    from .label_issues import trained_on_mask, triage_labels
    table = result.table
    in_sample = trained_on_mask(table["split"], trained_on) & (table["label_index"].to_numpy() >= 0)
    n_in = int(in_sample.sum())
    notes, source, oos = [], "", None
    where = "the split(s) " + (", ".join(trained_on) if isinstance(trained_on, (list, tuple)) else
                               str(trained_on or "train"))
    if n_in and oof_probs is not None:
        oos, source = np.asarray(oof_probs, dtype=np.float32), "predictions"
        n_have = int((in_sample & np.isfinite(oos).all(axis=1)).sum())
        notes.append(f"{n_in:,} labelled images are in-sample (the model was trained on {where}): their label issues "
                     f"come from your out-of-fold predictions ({n_have:,} of them have one) and are ranked apart")
    elif n_in and probe and result.embeddings is not None:
        res = out_of_fold_probs(result.embeddings, table["label_index"].to_numpy(), len(result.class_names),
                                **(probe_options or {}))
        oos, source = res.probs, "probe"
        notes.append(f"{n_in:,} labelled images are in-sample (the model was trained on {where}) and ranked apart; "
                     f"their label issues come from {res.note}")
    elif n_in:
        why = " (the model gave no embeddings for a probe)" if probe else ""
        notes.append(f"{n_in:,} labelled images are in-sample (the model was trained on {where}): their "
                     f"probabilities are the model's own, so a memorised wrong label can escape{why}; they are "
                     "ranked apart. For out-of-sample ones use the linear probe (--probe) or your own "
                     "cross-validated predictions (--oof-predictions)")
    issues, problems = triage_labels(table, result.probs, result.class_names, settings, in_sample=in_sample,
                                     oos_probs=oos)
    return LabelTriage(issues, problems, notes, n_in, source)
