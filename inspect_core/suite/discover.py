"""Slice discovery: slices where the model's accuracy is significantly lower than on the other images.

Candidates are the levels of the images' labels, splits, ``meta_*`` columns (few values), finding flags
(``is_<check>``) and quantile bins of numeric image statistics (brightness, width_px, n_boxes, ...), and every
pair of levels of two different features. Each candidate with at least ``min_size`` counted images (and as many
outside it) is tested one-sided against the rest with a two-proportion z-test (pooled; errors in the slice vs
errors outside); the p-values of all candidates tested are corrected by Benjamini-Hochberg, and those with a
q-value at most ``fdr`` are proposed: among them at most a share ``fdr`` are expected to be false discoveries.
A pair is proposed only when it is worse than each of its two single levels (else the single one says it), and
a proposal only when, tested again on the images no worse proposal holds, it is still significant at the BH
cut-off (else a worse slice explains it: a bad class makes every bin where it is common look bad).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..schema import check_of_column
from .metrics import ScoreArrays

DISCOVER_DEFAULTS = {
    "fdr": 0.05,            # Benjamini-Hochberg false-discovery rate
    "min_size": 30,         # counted images a candidate slice needs (and as many outside it)
    "n_bins": 4,            # quantile bins per numeric statistic
    "max_levels": 12,       # a text column with more distinct values is not a feature
    "pairs": True,          # pairs of levels of two features
    "max_proposals": 20,
}
# numeric columns that say nothing about the image's content, or are hashes
SKIP_NUMERIC = {"mtime_ns", "pixel_hash", "content_hash", "phash", "dhash", "n_frames", "exif_orientation",
                "n_findings"}


@dataclass
class Feature:
    name: str
    codes: np.ndarray             # int32 per image, -1: not in any level
    levels: list[tuple[str, dict]]  # (description, where-condition for the test file)


@dataclass
class Discovery:
    proposals: pd.DataFrame       # slice, n, accuracy, overall_accuracy, p_value, q_value, where
    n_tested: int
    overall_accuracy: float
    n_counted: int


def _text_feature(name: str, col: pd.Series, max_levels: int) -> Feature | None:
    values = col.astype("string")
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) < 2 or len(uniques) > max_levels:
        return None
    return Feature(name, codes.astype(np.int32), [(f"{name} = {u}", {name: str(u)}) for u in uniques])


def _flag_feature(name: str, col: pd.Series) -> Feature | None:
    flag = col.to_numpy(dtype=bool, na_value=False)
    if not flag.any() or flag.all():
        return None
    return Feature(name, np.where(flag, 0, -1).astype(np.int32), [(name, {name: True})])


def _numeric_feature(name: str, col: pd.Series, n_bins: int, max_levels: int) -> Feature | None:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(values)
    if finite.sum() < 2:
        return None
    uniq = np.unique(values[finite])
    if len(uniq) < 2:
        return None
    if len(uniq) <= min(max_levels, 6):                 # a few values (n_boxes): one level each
        codes = np.full(len(values), -1, dtype=np.int32)
        codes[finite] = np.searchsorted(uniq, values[finite]).astype(np.int32)
        return Feature(name, codes, [(f"{name} = {u:g}", {name: {"min": float(u), "max": float(u)}}) for u in uniq])
    edges = np.unique(np.quantile(values[finite], np.linspace(0, 1, n_bins + 1)))
    if len(edges) < 3:
        return None
    codes = np.full(len(values), -1, dtype=np.int32)
    inner = edges[1:-1]
    codes[finite] = np.searchsorted(inner, values[finite], side="right").astype(np.int32)
    levels = []
    for i in range(len(edges) - 1):
        lo, hi = float(edges[i]), float(edges[i + 1])
        # bin i holds lo <= v < hi (the last one lo <= v <= hi); the test file's range is inclusive: just below hi
        top = hi if i == len(edges) - 2 else float(np.nextafter(hi, -np.inf))
        levels.append((f"{name} in [{lo:.4g}, {hi:.4g}{']' if i == len(edges) - 2 else ')'}",
                       {name: {"min": lo, "max": top}}))
    return Feature(name, codes, levels)


def features_of(images: pd.DataFrame, options: dict | None = None) -> list[Feature]:
    o = {**DISCOVER_DEFAULTS, **(options or {})}
    out = []
    for c in images.columns:
        if c == "image_id":
            continue
        col = images[c]
        f = None
        if pd.api.types.is_bool_dtype(col.dtype):
            if check_of_column(c) is not None:
                f = _flag_feature(c, col)
        elif c in ("label", "split") or c.startswith("meta_") and not pd.api.types.is_numeric_dtype(col.dtype):
            f = _text_feature(c, col, o["max_levels"])
        elif pd.api.types.is_numeric_dtype(col.dtype) and c not in SKIP_NUMERIC and not c.endswith("_hash"):
            f = _numeric_feature(c, col, o["n_bins"], o["max_levels"])
        if f is not None:
            out.append(f)
    return out


_erfc = np.frompyfunc(math.erfc, 1, 1)


def one_sided_p(err_in: np.ndarray, n_in: np.ndarray, err_all: int, n_all: int) -> np.ndarray:
    """P-value of 'the error rate inside is higher than outside' (pooled two-proportion z-test)."""
    err_in = err_in.astype(float)
    n_in = n_in.astype(float)
    n_out = n_all - n_in
    err_out = err_all - err_in
    pooled = err_all / n_all
    se = np.sqrt(pooled * (1 - pooled) * (1.0 / n_in + 1.0 / n_out))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (err_in / n_in - err_out / n_out) / se
    z = np.where(se > 0, z, 0.0)
    return (0.5 * _erfc(z / math.sqrt(2.0)).astype(float)).astype(float)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """q-values (BH-adjusted p-values) in the order of ``p``."""
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def discover(images: pd.DataFrame, scores: ScoreArrays, findings=None, options: dict | None = None) -> Discovery:
    """Propose slices of ``images`` where ``scores``' accuracy is significantly lower than elsewhere."""
    o = {**DISCOVER_DEFAULTS, **(options or {})}
    counted = scores.counted
    err = counted & (scores.pred_index != scores.label_index)
    n_all, e_all = int(counted.sum()), int(err.sum())
    overall = 1.0 - e_all / n_all if n_all else math.nan
    feats = features_of(images, o)
    cand_desc: list[tuple] = []
    cand_n, cand_e = [], []
    single_acc: dict[tuple[int, int], float] = {}
    cw = counted.astype(np.float64)
    ew = err.astype(np.float64)
    for fi, f in enumerate(feats):
        k = len(f.levels)
        ok = f.codes >= 0
        n = np.bincount(f.codes[ok], weights=cw[ok], minlength=k)
        e = np.bincount(f.codes[ok], weights=ew[ok], minlength=k)
        for li in range(k):
            single_acc[(fi, li)] = 1 - e[li] / n[li] if n[li] else math.nan
            cand_desc.append(((fi, li),))
        cand_n.append(n)
        cand_e.append(e)
    if o["pairs"]:
        for fa in range(len(feats)):
            a = feats[fa]
            for fb in range(fa + 1, len(feats)):
                b = feats[fb]
                ka, kb = len(a.levels), len(b.levels)
                ok = (a.codes >= 0) & (b.codes >= 0) & counted
                code = a.codes[ok].astype(np.int64) * kb + b.codes[ok]
                n = np.bincount(code, minlength=ka * kb).astype(float)
                e = np.bincount(code, weights=ew[ok], minlength=ka * kb)
                for c in range(ka * kb):
                    cand_desc.append(((fa, c // kb), (fb, c % kb)))
                cand_n.append(n)
                cand_e.append(e)
    n_c = np.concatenate(cand_n) if cand_n else np.zeros(0)
    e_c = np.concatenate(cand_e) if cand_e else np.zeros(0)
    testable = (n_c >= o["min_size"]) & (n_all - n_c >= o["min_size"])
    idx = np.flatnonzero(testable)
    p = one_sided_p(e_c[idx], n_c[idx], e_all, n_all) if len(idx) else np.zeros(0)
    q = benjamini_hochberg(p)
    rows = []
    significant = np.flatnonzero(q <= o["fdr"])
    p_cut = float(p[significant].max()) if len(significant) else 0.0       # the BH cut-off on p
    for j in significant:
        c = idx[j]
        desc = cand_desc[c]
        acc = 1 - e_c[c] / n_c[c]
        if acc >= overall:
            continue
        if len(desc) == 2 and not all(acc < single_acc[d] for d in desc):
            continue
        where: dict = {}
        for fi, li in desc:
            where.update(feats[fi].levels[li][1])
        rows.append({"slice": " & ".join(feats[fi].levels[li][0] for fi, li in desc), "n": int(n_c[c]),
                     "accuracy": float(acc), "overall_accuracy": overall, "p_value": float(p[j]),
                     "q_value": float(q[j]), "where": where, "_desc": desc})
    frame = pd.DataFrame(rows, columns=["slice", "n", "accuracy", "overall_accuracy", "p_value", "q_value", "where",
                                        "_desc"])
    frame["_gap"] = frame["overall_accuracy"] - frame["accuracy"]
    frame = frame.sort_values(["_gap", "p_value"], ascending=[False, True], kind="stable").drop(columns="_gap")
    # a proposal must stand on its own: tested again on the images no earlier (worse) proposal holds, it must still
    # be worse at the BH cut-off, else an earlier one explains it (the images of a bad class make every bin where
    # that class is common look bad too)
    explained = np.zeros(len(counted), dtype=bool)
    keep = []
    for desc in frame["_desc"]:
        m = counted.copy()
        for fi, li in desc:
            m &= feats[fi].codes == li
        rest = counted & ~explained
        n_in, e_in = int((m & rest).sum()), int((m & rest & err).sum())
        n_rest, e_rest = int(rest.sum()), int((rest & err).sum())
        ok = n_in >= o["min_size"] and n_rest - n_in >= o["min_size"] and \
            float(one_sided_p(np.array([e_in]), np.array([n_in]), e_rest, n_rest)[0]) <= p_cut
        keep.append(ok)
        if ok:
            explained |= m
    frame = frame[np.asarray(keep, dtype=bool)].drop(columns="_desc") if len(frame) else frame.drop(columns="_desc")
    return Discovery(proposals=frame.head(int(o["max_proposals"])).reset_index(drop=True), n_tested=len(idx),
                     overall_accuracy=overall, n_counted=n_all)


def proposals_text(d: Discovery, options: dict | None = None) -> str:
    o = {**DISCOVER_DEFAULTS, **(options or {})}
    if d.proposals.empty:
        return (f"slice discovery: no slice significantly worse than the overall accuracy {d.overall_accuracy:.3f} "
                f"({d.n_tested} candidate slices tested, Benjamini-Hochberg at FDR {o['fdr']:g})")
    head = (f"slice discovery: {len(d.proposals)} slices significantly worse than the overall accuracy "
            f"{d.overall_accuracy:.3f} ({d.n_tested} candidates tested; Benjamini-Hochberg at FDR {o['fdr']:g}: "
            "at most that share of these is expected to be a false discovery)")
    lines = [head]
    for i, r in enumerate(d.proposals.itertuples(index=False), 1):
        lines.append(f"  {i:>2}. {r.slice}: n={r.n}, accuracy {r.accuracy:.3f}, p={r.p_value:.2g}, "
                     f"q={r.q_value:.2g}")
    lines.append("add one to the test file with --add-proposal N")
    return "\n".join(lines)


def proposal_test(proposal, name: str | None = None) -> dict:
    """A test (with its slice inline) for a proposal: its accuracy must not fall below today's value rounded down
    to 0.05, judged on the interval (a guard against a further drop; raise ``min`` to demand a fix)."""
    name = name or f"discovered: {proposal['slice']}"
    return {"name": name, "slice": {"where": dict(proposal["where"])}, "metric": "accuracy",
            "min": math.floor(float(proposal["accuracy"]) * 20) / 20, "decide_on": "interval", "severity": "warn",
            "min_support": min(int(proposal["n"]), DISCOVER_DEFAULTS["min_size"])}
