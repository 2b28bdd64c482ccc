"""Rank likely label errors from a model's out-of-sample-ish probabilities.

Two rankings, each with a suggested label:
- by loss: cross-entropy of the given label (largest first); suggestion = the predicted class.
- confident learning (Northcutt et al., "Confident Learning", JAIR 2021), written here from the paper:
  per-class thresholds t_j = mean p(j | x) over examples GIVEN label j; an example counts toward the
  confident joint C[given, j] for the class j with the largest p among those with p_j >= t_j (up to
  a relative AT_THRESHOLD_TOL = 1e-6, so float32 rounding of a probability equal to the threshold does not drop it);
  the joint is calibrated so each row sums to that class's count n_i (C[i, j] * n_i / sum_j C[i, j]) and
  rounded row by row keeping the row totals (largest remainder, in exact integer arithmetic); then for every
  off-diagonal cell (i, j) the C[i, j] examples given i with the largest margin p_j - p_i are marked
  ("prune by noise rate"; equal margins: lower example index first); examples whose prediction equals the
  given label are not flagged.
  Rounding ties: the fractional parts of a calibrated row are multiples of 1 / sum_j C[i, j], so several cells
  often have exactly the same remainder (always when their counts are equal). Such ties carry no evidence
  from the joint; the spare example goes to the tied cell whose next example in line is least likely to carry
  its given label (lowest p_i, the paper's self-confidence), the diagonal ("keep") last, then the lower class
  index. Deterministic and independent of floating-point noise.

  Which examples (``select``). "margin" flags the marked examples themselves: the paper's rule.
  "posterior" (the default) keeps the paper's number of flags per given class, m_i, and flags the m_i examples
  given i (prediction != i) whose given label is least likely under the noise the joint estimated:
    T[i, j] = P(given i | true j), the calibrated joint's column j normalised; for the posterior, T' from the
    calibrated joint plus CL_SETTINGS["noise_pseudo_count"] (5) in every off-diagonal cell: a prior that an
    error can come from any class. On real images the joint's few counts per cell are mostly the model's own
    confusions (a 93%-accurate model on 1,797 digits puts ~10 errors in a row), and taken at face value they
    steered the flags toward images that merely look like the confusable class;
    q_j(x) proportional to p_j(x)^tau * T'[i, j] (Bayes: the model's belief that x is j, times the chance a j is
    labelled i), with one temperature tau fitted to the given labels by maximum likelihood of
    sum_j p_j^tau T[given, j] (a grid, 2^-3 .. 2^3), because p is rarely calibrated (label smoothing makes it
    underconfident, training data overconfident);
    ranked by the log-odds log max_{j != i} q_j - log q_i; a flagged example's suggestion is that j.
  The ranking score reported (``margin``, the page's cl_margin) is the model's own log-odds, log max_{j != i} p_j
  - log p_i: across classes it put more true errors in the first k than cleanlab's self-confidence ranking and
  than the posterior (whose per-class noise estimates do not compare across classes) on the real-image bench.
  Model problems: a class whose images the model predicts right less than CL_SETTINGS
  ["model_problem_recall_ratio"] (0.2) times its accuracy on the other classes' images is one the model has not
  learnt. Confident learning would see each of its images as "confidently another class" and flag the class
  wholesale (on sample_data: 4 of the 6 correct hexagons, with "circle" as the fix), and its near-zero threshold
  would let other classes' images count as "truly" it. Unless p(class) still ranks its images above the others
  (AUC >= "model_problem_min_auc", 0.85) its column and row leave the joint: its images are never flagged, it is
  never suggested; ``model_problems`` reports it. When it does rank them, at most as many are flagged as have a
  p(class) no higher than the "model_problem_other_quantile" (0.9) quantile of the other classes' images' p(class),
  divided by that quantile.
  Every other labelled example's suggestion is the model's most likely class other than its label (its
  prediction when that differs): where the joint saw no label-i errors from a class, q gives that class no chance
  at all, however sure the model is, so q is used only to choose among the flagged. (1 - q_i is not reported as
  a probability of error: it inherits the joint's estimate of the noise rate, which runs high when the model is
  often wrong, and it is exactly 0 or 1 where the noise matrix has zeros.)
  Within a given class the margin rule ranks each confusion cell separately by p_j - p_i; the posterior weighs
  every alternative class by how often the joint says such labels come from it, so with pairwise noise (cats
  labelled dog) a dog that is a bit cat-like outranks one that is a bit car-like. With the same number of flags,
  more of them are true flips: bench/bench_label_issues.py, in BENCHMARKS.md.
  (cleanlab implements the same paper but is AGPL; this is an independent implementation. With
  select="margin" and the same integer counts its flagged sets equal ours; the counts differ only where exact
  ties are resolved differently (cleanlab's choice there follows floating-point rounding and sort order, so
  either is as faithful to the paper) and, rarely, where several classes clear their thresholds: the paper,
  and this module, then take the argmax among those classes only.)
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import pandas as pd

# p_j counts as reaching t_j when p_j >= t_j * (1 - AT_THRESHOLD_TOL): probabilities from float32 models carry
# ~1e-7 of relative rounding noise, so a value a few ulps below the (float64 mean) threshold is "at" it. Relative,
# so that a class the model almost never predicts (t_j near 0) is not cleared by every example.
AT_THRESHOLD_TOL = 1e-6
# the temperatures tried for the posterior (p^tau); a seeded sample of at most this many rows, and of at most
# TEMPERATURE_FIT_VALUES probabilities (rows x classes), fits it: one number on a coarse grid
TEMPERATURES = 2.0 ** np.arange(-3.0, 3.01, 0.25)
TEMPERATURE_FIT_ROWS = 20_000
TEMPERATURE_FIT_VALUES = 4_000_000

# The defaults of the choices a caller can override (``settings={...}`` of find_issues_confident_learning,
# rank_label_issues and model_problems); each one's reason is in the module docstring.
CL_SETTINGS = {
    # pseudo-count added to every off-diagonal cell of the calibrated joint (among the learnt classes) before its
    # columns are normalised into the noise matrix the posterior uses: a prior that label errors can come from
    # any class, which the joint's few counts per cell then move
    "noise_pseudo_count": 5.0,
    # a class whose labelled images the model predicts as that class for less than this share of the accuracy
    # it reaches on the other classes' images is a model problem (reported as such)
    "model_problem_recall_ratio": 0.2,
    # ... and its labels are judged only if the model still ranks the class: p(class) separates the images
    # labelled with it from the others with at least this area under the ROC curve; else none is flagged
    "model_problem_min_auc": 0.85,
    # ... and then at most as many of its images are flagged as look no more like it than the other classes'
    # images do: those whose p(class) is at most this quantile of p(class) over the other classes' images,
    # divided by the quantile (the expected count of such images if every one of them were another class)
    "model_problem_other_quantile": 0.9,
}


def cl_settings(settings: dict | None = None) -> dict:
    """CL_SETTINGS with the caller's overrides (an unknown name is an error, not silently ignored)."""
    unknown = set(settings or {}) - set(CL_SETTINGS)
    if unknown:
        raise ValueError(f"unknown confident-learning settings {sorted(unknown)}; known: {sorted(CL_SETTINGS)}")
    return {**CL_SETTINGS, **(settings or {})}


@dataclass
class ConfidentLearning:
    thresholds: np.ndarray          # (C,) per-class self-confidence thresholds
    confident_joint: np.ndarray     # (C, C) integer counts: rows given label, cols confidently-predicted class
    calibrated_joint: np.ndarray    # (C, C) float, rows sum to the class counts
    issue_mask: np.ndarray          # (N,) bool
    suggested: np.ndarray           # (N,) int, -1 where no suggestion
    margin: np.ndarray              # (N,) ranking score, higher = more likely a label error: select="posterior":
                                    # q[suggested] - q[given]; select="margin": p[suggested] - p[given]
    noise_matrix: np.ndarray        # (C, C) T[i, j] = P(given i | true j), columns sum to 1 (0 for unseen j)
    temperature: float              # tau of the posterior q ~ p^tau * T[given, :]
    class_images: np.ndarray        # (C,) labelled, scored images per class
    class_predicted_right: np.ndarray  # (C,) of those, how many the model predicts as their label
    model_problem: np.ndarray       # (C,) bool: classes the model (almost) never predicts for their own images
                                    # (model_problem_classes)
    class_auc: np.ndarray           # (C,) how well p(class) ranks the images labelled with it above the others
                                    # (area under the ROC curve; computed for the model-problem classes, else NaN)
    unjudged: np.ndarray            # (C,) bool: model-problem classes the model does not even rank (class_auc below
                                    # the setting): left out of the joint, their images never flagged, never suggested
    flag_bound: np.ndarray          # (C,) most flags a model-problem class may get (its evidence bound; -1: no bound)


def class_recall_counts(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images labelled j, of those how many are predicted j) per class j; labels < 0 are left out."""
    labels = np.asarray(labels, dtype=np.int64)
    ok = labels >= 0
    n_images = np.bincount(labels[ok], minlength=n_classes)
    n_right = np.bincount(labels[ok & (np.asarray(predicted) == labels)], minlength=n_classes)
    return n_images, n_right


def class_auc(probs: np.ndarray, labels: np.ndarray, j: int) -> float:
    """Area under the ROC curve of p_j as a score for "labelled j" (Mann-Whitney, ties counted half); NaN when
    no image or every image is labelled j. ``probs``/``labels``: the scored rows only."""
    positive = labels == j
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(probs[:, j]).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def model_problem_classes(n_images: np.ndarray, n_right: np.ndarray, recall_ratio: float) -> np.ndarray:
    """Classes whose images the model predicts as their label (recall) for less than ``recall_ratio`` times the
    accuracy it reaches on the other classes' images: the model has not learnt them (too few training images?).
    Confident learning cannot tell label errors there: the model sees every image of such a class as another
    class, so it would flag the class wholesale and read its correct images as errors."""
    n_images, n_right = np.asarray(n_images, dtype=np.int64), np.asarray(n_right, dtype=np.int64)
    others_images, others_right = n_images.sum() - n_images, n_right.sum() - n_right
    others_accuracy = np.divide(others_right, others_images, out=np.zeros(n_images.size), where=others_images > 0)
    recall = np.divide(n_right, n_images, out=np.ones(n_images.size), where=n_images > 0)
    return (n_images > 0) & (recall < recall_ratio * others_accuracy)


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j = mean probability of class j over the examples whose given label is j (inf for unseen classes)."""
    n_classes = probs.shape[1]
    thresholds = np.full(n_classes, np.inf)
    for j in range(n_classes):
        rows = labels == j
        if rows.any():
            thresholds[j] = float(np.mean(probs[rows, j]))
    return thresholds


def confident_joint(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None):
    """(joint counts (C, C), confident class per example (-1 when none clears its threshold))."""
    n_classes = probs.shape[1]
    if thresholds is None:
        thresholds = per_class_thresholds(probs, labels)
    above = probs >= (thresholds * (1.0 - AT_THRESHOLD_TOL))[None, :]
    masked = np.where(above, probs, -np.inf)
    confident = masked.argmax(axis=1)
    confident[~above.any(axis=1)] = -1
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = (confident >= 0) & (labels >= 0)
    np.add.at(joint, (labels[ok], confident[ok]), 1)
    return joint, confident


def calibrate_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scale each row of the joint so it sums to the number of examples given that label."""
    n_classes = joint.shape[0]
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    row_sums = joint.sum(axis=1).astype(np.float64)
    scale = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    return joint * scale[:, None]


def round_calibrated_joint(joint: np.ndarray, counts: np.ndarray, tie_key: np.ndarray | None = None) -> np.ndarray:
    """Integer version of ``calibrate_joint``: row i of C * n_i / sum_j C[i, j] rounded by largest remainder so
    it sums to n_i exactly, computed in exact integer arithmetic.

    The fractional parts are multiples of 1 / sum_j C[i, j], so equal fractional parts (ties) are common, also
    between cells with different counts; in floating point such ties come out a few ulps apart and would be
    decided by rounding noise. Here they are exact, and the spare units go to the largest remainders, ties to
    the larger ``tie_key`` (same shape), then to the lower column index.
    """
    joint = np.asarray(joint, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    row_sums = joint.sum(axis=1)
    safe_sums = np.where(row_sums > 0, row_sums, 1)
    scaled = joint * counts[:, None]
    out = scaled // safe_sums[:, None]
    rem = scaled % safe_sums[:, None]
    if tie_key is None:
        tie_key = np.zeros(joint.shape)
    cols = np.arange(joint.shape[1])
    for i in np.flatnonzero(row_sums > 0):
        short = int(counts[i] - out[i].sum())
        if short > 0:
            out[i, np.lexsort((cols, -tie_key[i], -rem[i]))[:short]] += 1
    out[row_sums == 0] = 0
    return out


def noise_matrix(calibrated: np.ndarray) -> np.ndarray:
    """T[i, j] = P(given i | true j) from a calibrated joint (rows: given, columns: true): columns normalised."""
    calibrated = np.asarray(calibrated, dtype=np.float64)
    col = calibrated.sum(axis=0, keepdims=True)
    return np.divide(calibrated, col, out=np.zeros_like(calibrated), where=col > 0)


def shifted_log(probs: np.ndarray) -> np.ndarray:
    """log p per row minus the row's largest (0 for the most likely class, -inf for zeros)."""
    with np.errstate(divide="ignore"):
        log_p = np.log(probs)
    return log_p - log_p.max(axis=1, keepdims=True)


def tempered(probs: np.ndarray, tau: float, log_p: np.ndarray | None = None) -> np.ndarray:
    """Rows of p^tau renormalised (softmax of tau * log p); zeros stay zero. ``log_p``: ``shifted_log(probs)``
    when the caller already has it (one log for many taus)."""
    out = np.exp(tau * (shifted_log(probs) if log_p is None else log_p))
    out /= out.sum(axis=1, keepdims=True)
    return out


def fit_temperature(probs: np.ndarray, labels: np.ndarray, noise: np.ndarray,
                    temperatures: np.ndarray = TEMPERATURES, max_rows: int = TEMPERATURE_FIT_ROWS) -> float:
    """The tau that maximises the likelihood of the given labels, sum log sum_j p_j^tau T[given, j]: the model's
    beliefs sharpened or softened until, passed through the estimated label noise, they explain the labels
    best. At most ``max_rows`` rows and TEMPERATURE_FIT_VALUES probabilities (a seeded sample) take part; ties
    go to the tau nearest 1."""
    max_rows = max(1, min(max_rows, TEMPERATURE_FIT_VALUES // max(1, probs.shape[1])))
    if len(labels) > max_rows:
        rows = np.sort(np.random.default_rng(0).choice(len(labels), size=max_rows, replace=False))
        probs, labels = probs[rows], labels[rows]
    weights = noise[labels]                                               # (n, C): T[given, j]
    log_p = shifted_log(probs)
    best_tau, best_nll = 1.0, None
    for tau in sorted(temperatures, key=lambda t: abs(np.log(t))):
        nll = -np.log(np.maximum((tempered(probs, tau, log_p) * weights).sum(axis=1), 1e-300)).sum()
        if best_nll is None or nll < best_nll - 1e-9 * abs(best_nll):
            best_tau, best_nll = float(tau), nll
    return best_tau


def posterior(probs: np.ndarray, given: int, noise: np.ndarray, tau: float) -> np.ndarray:
    """q_j proportional to p_j^tau * T[given, j], rows summing to 1 (probs: examples all given ``given``)."""
    lik = tempered(probs, tau) * noise[given][None, :]
    total = lik.sum(axis=1, keepdims=True)
    return np.divide(lik, total, out=np.zeros_like(lik), where=total > 0)


def best_other_log_odds(values: np.ndarray, given: int) -> tuple[np.ndarray, np.ndarray]:
    """(log v_j - log v_given for the best other class j, that j) per row of ``values`` (probabilities, or any
    non-negative scores), floored at the smallest positive float so the odds stay finite. Two logs per row, not
    one per value."""
    other = values.copy()
    other[:, given] = -np.inf
    best = other.argmax(axis=1)
    tiny = np.finfo(np.float64).tiny
    top = np.maximum(other[np.arange(len(other)), best], tiny)
    return np.log(top) - np.log(np.maximum(values[:, given], tiny)), best


def _value_at_rank(values: np.ndarray, rank: int) -> tuple[float, int]:
    """(the value at 0-based ``rank`` of ``values`` in descending order, how many values are larger)."""
    v = np.partition(values, values.size - 1 - rank)[values.size - 1 - rank]
    return v, int(np.count_nonzero(values > v))


def position_at_rank(values: np.ndarray, rank: int) -> int:
    """The position of the element at 0-based ``rank`` of a stable descending sort of ``values`` (equal values:
    lower position first), i.e. ``np.argsort(-values, kind="stable")[rank]``, found in linear time."""
    v, larger = _value_at_rank(values, rank)
    return int(np.flatnonzero(values == v)[rank - larger])


def first_in_order(values: np.ndarray, count: int) -> np.ndarray:
    """Mask of the first ``count`` elements of a stable descending sort of ``values`` (equal values: lower
    position first), i.e. of ``np.argsort(-values, kind="stable")[:count]``, found in linear time."""
    mask = np.zeros(values.size, dtype=bool)
    if count <= 0:
        return mask
    if count >= values.size:
        mask[:] = True
        return mask
    v, larger = _value_at_rank(values, count - 1)
    mask[values > v] = True
    mask[np.flatnonzero(values == v)[:count - larger]] = True
    return mask


def find_issues_confident_learning(probs: np.ndarray, labels: np.ndarray, *, select: str = "posterior",
                                   drop_if_prediction_agrees: bool = True,
                                   settings: dict | None = None) -> ConfidentLearning:
    """Flag likely label errors by confident learning: as many per given class as pruning by noise rate marks;
    ``select`` "posterior" (default) or "margin" picks which (module docstring). A class the model has not learnt
    (``model_problem_classes``) is left out, never flagged nor suggested, unless p(class) still ranks its images
    (then at most its evidence bound of them is flagged). ``settings``: overrides of CL_SETTINGS.

    ``labels`` are class indices, -1 for images without a (known) label (never flagged).
    """
    if select not in ("posterior", "margin"):
        raise ValueError(f"select must be 'posterior' or 'margin', not {select!r}")
    settings = cl_settings(settings)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, n_classes = probs.shape
    # a row that is not a probability distribution (NaN, negative, all zero) is treated as unscored
    valid = (labels >= 0) & np.isfinite(probs).all(axis=1) & (probs >= 0).all(axis=1) & (probs.sum(axis=1) > 0)
    lab = np.where(valid, labels, -1)
    safe = probs if valid.all() else np.where(valid[:, None], probs, 0.0)
    scored = safe if valid.all() else safe[valid]
    predicted = safe.argmax(axis=1)
    class_images, class_right = class_recall_counts(lab, predicted, n_classes)
    problem = model_problem_classes(class_images, class_right, settings["model_problem_recall_ratio"])
    auc = np.full(n_classes, np.nan)
    for j in np.flatnonzero(problem):
        auc[j] = class_auc(scored, lab[valid], j)
    unjudged = problem & ~(auc >= settings["model_problem_min_auc"])
    bound = np.full(n_classes, -1, dtype=np.int64)
    q = settings["model_problem_other_quantile"]
    for j in np.flatnonzero(problem & ~unjudged):
        own = lab[valid] == j
        cut = np.quantile(scored[~own, j], q)
        bound[j] = int(np.count_nonzero(scored[own, j] <= cut) / q)
    thresholds = per_class_thresholds(scored, lab[valid])
    measured_joint, _ = confident_joint(scored, lab[valid], thresholds)
    # a class the model neither predicts nor ranks is nobody's confident class (its threshold, near 0, would let
    # every image clear it) and its own images' labels are not judged: its column and row leave the joint here
    joint = measured_joint
    if unjudged.any():
        joint, _ = confident_joint(scored, lab[valid], np.where(unjudged, np.inf, thresholds))
        joint[unjudged] = 0
    calibrated = calibrate_joint(joint, lab[valid])
    issue = np.zeros(n, dtype=bool)
    suggested = np.full(n, -1, dtype=np.int64)
    counts = np.bincount(lab[valid], minlength=n_classes)
    floor = (joint * counts[:, None]) // np.maximum(joint.sum(axis=1), 1)[:, None]
    # per given class i and column j != i: the margins p_j - p_i of its examples, in descending order (ties: lower
    # example index first). Only the columns where C[i, j] > 0: a cell with C[i, j] = 0 prunes nothing and, with a
    # zero remainder, never gets a spare unit (more cells than spare units have a positive remainder). Only the
    # places in that order that are needed are found (a partition per column, not a sort).
    members = [np.flatnonzero(lab == i) for i in range(n_classes)]
    tie_key = np.full((n_classes, n_classes), -np.inf)
    for i, idx in enumerate(members):
        cols = np.flatnonzero(joint[i] > 0)
        cols = cols[(cols != i) & (floor[i, cols] < idx.size)]
        if cols.size == 0:
            continue
        block = safe[idx]
        own = block[:, i]
        for j in cols:
            # rounding tie between cells (i, j): the spare unit goes to the cell whose next example in line (place
            # floor[i, j]) is least likely to carry its given label i (lowest p_i); the diagonal ("keep") comes last
            tie_key[i, j] = -own[position_at_rank(block[:, j] - own, int(floor[i, j]))]
    counts_to_prune = round_calibrated_joint(joint, counts, tie_key)
    for i, idx in enumerate(members):
        k = np.clip(counts_to_prune[i], 0, idx.size)
        k[i] = 0
        cols = np.flatnonzero(k)
        if cols.size == 0:
            continue
        block = safe[idx]
        own = block[:, i]
        best = np.full(idx.size, -np.inf)                                # largest margin among the cells that
        best_col = np.full(idx.size, -1, dtype=np.int64)                 # flag the example, and that cell
        for j in cols:
            margins = block[:, j] - own
            better = first_in_order(margins, int(k[j])) & (margins > best)
            best[better] = margins[better]
            best_col[better] = j
        hit = best_col >= 0
        issue[idx[hit]] = True
        suggested[idx[hit]] = best_col[hit]
    agree = valid & (predicted == lab)
    if drop_if_prediction_agrees:
        issue &= ~agree
    issue &= valid
    # the posterior q ~ p^tau * T'[given, :] of every labelled example, T' from the joint plus pseudo-counts
    # (module docstring); its log-odds choose which examples of a class to flag
    noise = noise_matrix(calibrated)
    learnt = ~unjudged
    prior_counts = settings["noise_pseudo_count"] * (np.outer(learnt, learnt) & ~np.eye(n_classes, dtype=bool))
    posterior_noise = noise_matrix(calibrated + prior_counts)
    fit_rows = learnt[lab[valid]]
    tau = fit_temperature(scored[fit_rows], lab[valid][fit_rows], noise) if fit_rows.any() else 1.0
    post_odds = np.full(n, np.nan)
    post_suggested = np.full(n, -1, dtype=np.int64)
    model_odds = np.full(n, np.nan)
    for i, idx in enumerate(members):
        if idx.size == 0:
            continue
        model_odds[idx] = best_other_log_odds(safe[idx], i)[0]
        if unjudged[i]:
            continue
        post_odds[idx], post_suggested[idx] = best_other_log_odds(posterior(safe[idx], i, posterior_noise, tau), i)
    if select == "posterior":
        # the paper's number of flags per given class; which ones: the highest posterior log-odds
        n_flags = np.bincount(lab[issue], minlength=n_classes)
        issue = np.zeros(n, dtype=bool)
        for i, idx in enumerate(members):
            if n_flags[i] == 0:
                continue
            cand = idx[~agree[idx]] if drop_if_prediction_agrees else idx
            issue[cand[np.argsort(-post_odds[cand], kind="stable")[:n_flags[i]]]] = True
        suggested = np.where(issue, post_suggested, -1)
    # a model-problem class keeps at most its evidence bound of flags: those least likely to be of the class
    for j in np.flatnonzero(bound >= 0):
        mine = members[j][issue[members[j]]]
        if mine.size > bound[j]:
            drop = mine[np.argsort(safe[mine, j], kind="stable")[bound[j]:]]
            issue[drop] = False
            suggested[drop] = -1
    # suggestion for every other labelled example: the model's most likely class other than the label
    for i, idx in enumerate(members):
        rest = idx[suggested[idx] < 0]
        if rest.size:
            others = safe[rest]
            others[:, i] = -np.inf
            suggested[rest] = others.argmax(axis=1)
    if select == "posterior":
        margin = model_odds
    else:
        margin = np.where(valid, safe[np.arange(n), np.clip(suggested, 0, None)]
                          - safe[np.arange(n), np.clip(lab, 0, None)], np.nan)
    return ConfidentLearning(thresholds=thresholds, confident_joint=measured_joint, calibrated_joint=calibrated,
                             issue_mask=issue, suggested=np.where(valid, suggested, -1), margin=margin,
                             noise_matrix=noise, temperature=float(tau), class_images=class_images,
                             class_predicted_right=class_right, model_problem=problem,
                             class_auc=auc, unjudged=unjudged, flag_bound=bound)


def _worst_loss_first(frame: pd.DataFrame) -> np.ndarray:
    """Row order by loss, highest first, equal losses by image_id: a numeric sort, then the image_id sort only
    for the rows whose loss ties another's (a two-key sort with strings took 1 s at 1,000,000 rows)."""
    loss = frame["loss"].to_numpy(dtype=np.float64)
    order = np.argsort(-loss, kind="stable")
    ranked = loss[order]
    same_as_next = ranked[1:] == ranked[:-1]
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same_as_next
    tied[:-1] |= same_as_next
    if tied.any():
        rows = order[tied]               # blocks of equal loss, in descending loss: each block sorted by image_id
        sub = pd.DataFrame({"loss": loss[rows], "image_id": frame["image_id"].to_numpy()[rows], "row": rows})
        order[tied] = sub.sort_values(["loss", "image_id"], ascending=[False, True], kind="stable")["row"].to_numpy()
    return order


def rank_label_issues(table: pd.DataFrame, probs: np.ndarray, class_names: list[str],
                      settings: dict | None = None) -> pd.DataFrame:
    """Both rankings for a scores table (from ``scoring.build_table``), one row per labelled, scored image
    (``triage_labels`` without the model-problem report).

    Columns: image_id, split, given_label, pred_label, suggested_label (for a flagged image the most likely
    true class under the estimated label noise, else the model's most likely other class), loss,
    self_confidence, confidence, loss_rank (1 = worst), cl_issue, cl_margin (the confident-learning ranking
    score: the model's log-odds of its best other class against the label), cl_rank (1 = most likely error
    among flagged; <NA> when not flagged). Sorted by loss_rank.
    """
    return triage_labels(table, probs, class_names, settings)[0]


# The splits a model is taken to have been trained on, unless the user says otherwise (--trained-on, the page).
TRAINED_ON_DEFAULT = ("train", "training")


def trained_on_mask(splits, trained_on: str | Sequence[str] | None = None) -> np.ndarray:
    """Per row, whether the model was trained on it (its probabilities are in-sample), from its split:
    ``trained_on`` a split name or names (comma-separated text too), "all" or "none"; default
    ``TRAINED_ON_DEFAULT``. Split names compare without case; a row without a split is out-of-sample unless "all"."""
    splits = pd.Series(splits, dtype="string").str.strip().str.lower()
    if trained_on is None:
        names = set(TRAINED_ON_DEFAULT)
    else:
        items = trained_on.split(",") if isinstance(trained_on, str) else list(trained_on)
        names = {str(t).strip().lower() for t in items if str(t).strip()}
    if "all" in names:
        return np.ones(len(splits), dtype=bool)
    if "none" in names or not names:
        return np.zeros(len(splits), dtype=bool)
    return splits.isin(names).fillna(False).to_numpy(dtype=bool)


def triage_labels(table: pd.DataFrame, probs: np.ndarray, class_names: list[str],
                  settings: dict | None = None, *, in_sample: np.ndarray | None = None,
                  oos_probs: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the ``rank_label_issues`` table, the ``model_problems`` report): what the page and the CLI show.

    ``in_sample``: per row, whether the model was trained on it (``trained_on_mask``). In-sample and
    out-of-sample rows are flagged by confident learning apart (each its own noise estimate) and ranked apart
    (``cl_rank`` counts within each); the table says which in ``in_sample``. ``oos_probs``: out-of-sample
    probabilities for in-sample rows (``probe.out_of_fold_probs``, or the user's cross-validated predictions),
    used for the flags where finite; ``probabilities`` names the source of each row's flag ("model" or
    "out-of-fold"). The model-problem report counts every labelled row; each group's own flags leave out the
    classes that are a model problem within it."""
    labels = table["label_index"].to_numpy(dtype=np.int64)
    n = len(labels)
    ins = np.zeros(n, dtype=bool) if in_sample is None else np.asarray(in_sample, dtype=bool)
    use, source = probs, np.full(n, "model", dtype=object)
    if oos_probs is not None and ins.any():
        have = ins & np.isfinite(oos_probs).all(axis=1)
        if have.any():
            use = np.where(have[:, None], oos_probs, probs)
            source[have] = "out-of-fold"
    groups = [g for g in (~ins, ins) if (g & (labels >= 0)).any()] or [np.ones(n, dtype=bool)]
    issue, margin = np.zeros(n, dtype=bool), np.full(n, np.nan)
    suggested = np.full(n, -1, dtype=np.int64)
    for g in groups:
        cl = find_issues_confident_learning(use, np.where(g, labels, -1), settings=settings)
        issue[g], margin[g], suggested[g] = cl.issue_mask[g], cl.margin[g], cl.suggested[g]
    if len(groups) > 1:                 # the model-problem report counts every labelled image of a class
        cl = find_issues_confident_learning(use, labels, settings=settings)
    problems = model_problems(cl, class_names)
    ok = (labels >= 0) & np.isfinite(table["loss"].to_numpy(dtype=np.float64))
    out = pd.DataFrame({
        "image_id": table["image_id"].to_numpy(),
        "split": table["split"].to_numpy() if "split" in table else pd.NA,
        "given_label": table["label"].to_numpy(),
        "pred_label": table["pred_label"].to_numpy(),
        "suggested_label": np.asarray(list(class_names) + [None], dtype=object)[
            np.where(suggested >= 0, suggested, len(class_names))],
        "loss": table["loss"].to_numpy(dtype=np.float64),
        "self_confidence": table["self_confidence"].to_numpy(dtype=np.float64),
        "confidence": table["confidence"].to_numpy(dtype=np.float64),
        "cl_issue": issue,
        "cl_margin": margin,
        "in_sample": ins,
        "probabilities": source,
    })[ok].copy()
    for col in ("image_id", "split", "given_label", "pred_label", "suggested_label", "probabilities"):
        out[col] = out[col].astype("string")
    out = out.iloc[_worst_loss_first(out)].reset_index(drop=True)
    out.insert(0, "loss_rank", np.arange(1, len(out) + 1))
    out["cl_rank"] = pd.arrays.IntegerArray(np.zeros(len(out), dtype=np.int64), np.ones(len(out), dtype=bool))
    for flag_group in (False, True):                  # out-of-sample and in-sample flags are ranked apart
        flagged = out[out["cl_issue"] & (out["in_sample"] == flag_group)]
        flagged = flagged.sort_values(["cl_margin", "loss"], ascending=[False, False], kind="stable")
        out.loc[flagged.index, "cl_rank"] = np.arange(1, len(flagged) + 1)
    return out, problems


MODEL_PROBLEM_COLUMNS = ["class", "n_images", "n_predicted_as_class", "recall", "other_classes_accuracy",
                         "class_auc", "max_flags", "finding"]


def model_problems(cl: ConfidentLearning, class_names: list[str]) -> pd.DataFrame:
    """One row per class the model (almost) never predicts for its own images (``model_problem_classes``), with
    the evidence and a finding that says it is a model problem, not a class of label errors. ``max_flags``: 0
    when its images are not judged at all, else its evidence bound."""
    rows = []
    right, images = cl.class_predicted_right, cl.class_images
    for j in np.flatnonzero(cl.model_problem):
        name = str(class_names[j])
        others = (right.sum() - right[j]) / max(1, images.sum() - images[j])
        text = (f"the model predicts class {name!r} for {right[j]} of {images[j]} images labelled {name!r} "
                f"(it predicts {others:.0%} of the other classes' images right): a model problem (too few "
                "training images?), not label errors; ")
        if cl.unjudged[j]:
            text += (f"its images are not flagged (p({name}) ranks them above the other images too weakly to "
                     f"judge them: AUC {cl.class_auc[j]:.2f})")
        else:
            text += (f"at most {cl.flag_bound[j]} of its images are flagged, those that look no more like "
                     f"{name!r} than the other classes' images (p({name}) still ranks them: AUC {cl.class_auc[j]:.2f})")
        rows.append({"class": name, "n_images": int(images[j]), "n_predicted_as_class": int(right[j]),
                     "recall": right[j] / max(1, images[j]), "other_classes_accuracy": float(others),
                     "class_auc": float(cl.class_auc[j]),
                     "max_flags": 0 if cl.unjudged[j] else int(cl.flag_bound[j]), "finding": text})
    return pd.DataFrame(rows, columns=MODEL_PROBLEM_COLUMNS)


def recall_at_k(ranked_ids, planted_ids, k: int) -> float:
    """Share of planted ids found in the first k of a ranked list."""
    planted = set(planted_ids)
    if not planted:
        return float("nan")
    top = set(list(ranked_ids)[:k])
    return len(planted & top) / len(planted)
