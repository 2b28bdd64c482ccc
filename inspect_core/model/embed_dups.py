"""Model embeddings as duplicate and leakage evidence, beside the pixel rule (issues 9 and 16).

A scored model gives every image an embedding (the input of its last linear layer). A fixed cosine-distance cut
means nothing across models (one model's 0.001 is another's 0.3, and the old cut of 0.001 found almost nothing on
real data), so the cut is **calibrated per model and per image**, from the embeddings' own nearest-neighbour
distances (``knn.knn``, k = ``k``):

- the ratio test (as in Lowe's SIFT matching): a pair (i, j) is a near duplicate when its distance is at most
  ``ratio_max`` times the distance from i, and from j, to its nearest *other* neighbour: the partner is far closer
  than anything else the model sees near either image. This holds however the model spreads its embeddings;
- and its distance is at most ``typical_ratio_max`` times ``typical``, the median over images of the distance to
  the ``reference_rank``-th nearest neighbour: two odd images alone in an empty region are not paired because they
  are each other's only company;
- a looser ratio, ``confirmed_ratio_max``, holds when the pixel evidence agrees at a cut looser than the pixel-only
  rule: tiny-image descriptor cosine >= ``confirm_cosine`` (when the scan's descriptors are at hand) or else
  pHash distance <= ``confirm_phash_max``.

Near-uniform images (the pixel rule's ``low_information``) are left to the pixel rule: a model places every plain
grey, black or sky tile together (``skip_near_uniform``). A group of three or more copies of one picture fails the
ratio test (each copy's nearest other is a copy): those
are the pixel rule's to find; the model adds what the pixels miss (crops, mirrors, heavy edits).
The pairs become findings in the scan's schema through the scan's own checks (``checks/duplicate.py``,
``leakage.py``, ``label.py``), so a model pair reads like a pixel pair, its evidence naming the model, the
distance, the cut and how the cut was made. Conflicting labels come only from pairs the pixel evidence calls the
same picture (the scan's ``same_picture`` cut): a model can place two different pictures of one class together.
Groups never chain (``neardup.star_groups``).

``merged_duplicate_findings`` joins the scan's pixel pairs with the model's: a pair found by both is one pair
whose evidence names both; a pair only the model finds says so. ``model_evidence`` does the whole chain and
keeps the result in the workspace beside the scan (``<workspace>/model_evidence/<key>/``), keyed by the scan's
fingerprint, the model's scores and the thresholds. The search is ``knn.knn`` (exact up to
``knn.EXACT_MAX_ROWS`` rows, an inverted file above): bench/bench_embed_dups.py measures it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import neardup
from ..schema import finding_frame
from .knn import knn

log = logging.getLogger(__name__)

# Thresholds as data: pass a dict (all or a few keys) to override. Calibrated on bench/bench_embed_dups.py
# (real photos with edited copies; BENCHMARKS.md "Model embeddings as duplicate evidence").
EMBED_RULE = {
    "k": 5,                     # neighbours searched per image (pairs come from these)
    "ratio_max": 0.10,          # model alone: distance <= this x each side's distance to its nearest other
    "confirmed_ratio_max": 0.30,  # with pixel agreement: distance <= this x that distance, and ...
    "confirm_cosine": 0.60,     # ... tiny-image descriptor cosine >= this (pixel-only rule: 0.75-0.99)
    "confirm_phash_max": 20,    # ... or, without descriptors, pHash distance <= this (pixel-only rule: 8-24)
    "reference_rank": 5,        # typical = median distance to this nearest neighbour (1 = the nearest) ...
    "typical_ratio_max": 0.5,   # ... and no pair farther apart than this x typical
    "min_typical": 1e-6,        # a model whose embeddings barely differ gives no evidence (a note says so)
    "skip_near_uniform": True,  # no model pair with a near-uniform image (entropy under the pixel rule's
                                # low_information cut): a model places every plain grey, black or sky tile together
}
DUPLICATE_CHECKS = ("exact_duplicate", "near_duplicate", "split_leakage", "conflicting_labels")
EVIDENCE_DIR = "model_evidence"
EVIDENCE_VERSION = 1            # bump when what is saved changes
PAIR_COLUMNS = ["image_id_a", "image_id_b", "kind", "score", "why", "phash_distance", "split_a", "split_b",
                "label_a", "label_b", "same_picture", "evidence", "model_distance", "model_ratio", "pixel_cosine"]


def embed_rule(thresholds: dict | None = None) -> dict:
    """EMBED_RULE with ``thresholds`` (a dict of some of its keys) applied; an unknown key is an error."""
    rule = dict(EMBED_RULE)
    for key, value in (thresholds or {}).items():
        if key not in EMBED_RULE:
            raise ValueError(f"unknown embedding-duplicate threshold '{key}' (known: {', '.join(EMBED_RULE)})")
        rule[key] = value
    return rule


@dataclass
class Calibration:
    typical: float              # median distance to the reference_rank-th neighbour, over the images searched
    distance_cap: float         # typical_ratio_max x typical: no pair is farther apart
    n_rows: int                 # embeddings searched (finite rows that are images of the scan)
    note: str = ""

    def text(self, rule: dict) -> str:
        return (f"no pair farther apart than {self.distance_cap:.4f} = {rule['typical_ratio_max']:g} x the median "
                f"distance to the {_ordinal(rule['reference_rank'])} nearest neighbour over {self.n_rows:,} images")


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(int(n), f"{int(n)}th")


def _scan_parts(scan):
    """(images, desc or None, pixel pairs, near rule) of a ScanResult (or any object with those attributes)."""
    images = scan.images.reset_index(drop=True)
    desc = getattr(scan, "desc", None)
    if desc is not None and len(desc) != len(images):
        desc = None
    pairs = getattr(scan, "pairs", None)
    summary = getattr(scan, "summary", None) or {}
    rule = summary.get("near_rule")
    if not rule:
        from ..checks.context import near_rule
        rule = near_rule()
    return images, desc, pairs if pairs is not None else pd.DataFrame(), rule


def _finite_rows(embeddings: np.ndarray) -> np.ndarray:
    return np.concatenate([np.isfinite(embeddings[s:s + 65536]).all(axis=1)      # by blocks: no N x D temporary
                           for s in range(0, len(embeddings), 65536)] or [np.zeros(0, dtype=bool)])


def _pixel_cosine(desc: np.ndarray | None, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if desc is None or len(a) == 0:
        return np.full(len(a), np.nan)
    x = neardup.UnitRows(desc)
    return np.einsum("ij,ij->i", x[a], x[b]).astype(np.float64)


def model_duplicate_pairs(scan, image_ids, embeddings: np.ndarray, thresholds: dict | None = None) -> pd.DataFrame:
    """The near-duplicate pairs the model's embeddings give, with the cut calibrated on them (see the module
    docstring): one row per pair (``PAIR_COLUMNS`` plus ``a``/``b``, the rows of ``scan.images``), closest first.
    ``image_ids[r]`` names the image of ``embeddings[r]``; rows that are not finite (an image the model could
    not score) or not images of the scan are skipped. ``attrs["calibration"]`` holds the ``Calibration``."""
    rule = embed_rule(thresholds)
    images, desc, _, near = _scan_parts(scan)
    empty = pd.DataFrame(columns=["a", "b", *PAIR_COLUMNS])
    emb = np.asarray(embeddings) if embeddings is not None else np.zeros((0, 0), np.float32)
    row_of = pd.Series(np.arange(len(images)), index=images["image_id"].astype(str).to_numpy())
    row_of = row_of[~row_of.index.duplicated()]
    ids = pd.Series(list(image_ids), dtype=object).astype(str)
    scan_row = ids.map(row_of).to_numpy(dtype=np.float64)
    if len(ids) != len(emb):
        raise ValueError(f"{len(ids)} image ids for {len(emb)} embedding rows: they must match row for row")
    ok = _finite_rows(emb) & ~np.isnan(scan_row) if len(emb) else np.zeros(0, bool)
    keep = np.nonzero(ok)[0]
    if len(keep) < 3:
        empty.attrs["calibration"] = Calibration(float("nan"), 0.0, len(keep),
                                                 "fewer than 3 images with embeddings: no model evidence")
        return empty
    sub = emb if len(keep) == len(emb) else emb[keep]
    k = max(int(rule["k"]), int(rule["reference_rank"]), 2)
    dist, idx = knn(sub, k=k)
    cal, lo_s, hi_s, d, ratio = ratio_candidates(dist, idx, rule)
    if cal.note:
        empty.attrs["calibration"] = cal
        return empty
    rows = scan_row[keep].astype(np.int64)
    a, b = rows[lo_s], rows[hi_s]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    phash = images["phash"].to_numpy(np.int64) if "phash" in images else None
    ph = neardup.hamming64(phash[lo], phash[hi]).astype(np.int64) if phash is not None and len(lo) \
        else np.full(len(lo), -1, np.int64)
    pcos = _pixel_cosine(desc, lo, hi)
    if desc is not None:
        confirmed = pcos >= rule["confirm_cosine"]
        confirm_text = f"tiny-image cosine >= {rule['confirm_cosine']:g}"
    else:
        confirmed = (ph >= 0) & (ph <= rule["confirm_phash_max"])
        confirm_text = f"pHash distance <= {rule['confirm_phash_max']}"
    alone = ratio <= rule["ratio_max"]
    accept = (alone | confirmed) & (lo != hi)
    if rule["skip_near_uniform"] and "entropy_bits" in images and (near or {}).get("low_information"):
        flat = (pd.to_numeric(images["entropy_bits"], errors="coerce")
                < near["low_information"]["entropy_bits_max"]).to_numpy()
        accept &= ~(flat[lo] | flat[hi])
    # copies of one file or of one picture are the scan's exact duplicates: not paired again by the model
    for col in ("content_hash", "pixel_hash"):
        if col in images:
            h = images[col].to_numpy(dtype=object)
            accept &= ~((h[lo] == h[hi]) & pd.notna(h[lo]))
    lo, hi, d, ratio, ph, pcos, alone = (v[accept] for v in (lo, hi, d, ratio, ph, pcos, alone))
    pixel_words = [("" if np.isnan(c) else f"tiny-image cosine {c:.3f}, ") + (f"pHash distance {p}" if p >= 0 else "")
                   for c, p in zip(pcos.tolist(), ph.tolist())]
    why = [f"model embedding cosine distance {v:.4f}, {r:.2f} x the distance of either image to its nearest other "
           f"image <= {rule['ratio_max'] if solo else rule['confirmed_ratio_max']:g}"
           + ("" if solo else f" with the pixels agreeing ({confirm_text})")
           + f" (model-calibrated; {cal.text(rule)}); pixels: {w}"
           for v, r, solo, w in zip(d.tolist(), ratio.tolist(), alone.tolist(), pixel_words)]
    same_pic = _same_picture(images, near, pcos, ph, lo, hi)
    out = pd.DataFrame({"a": lo, "b": hi, "image_id_a": images["image_id"].to_numpy()[lo],
                        "image_id_b": images["image_id"].to_numpy()[hi], "kind": "near",
                        "score": 1.0 - d, "why": why, "phash_distance": ph,
                        "split_a": images["split"].to_numpy()[lo] if "split" in images else None,
                        "split_b": images["split"].to_numpy()[hi] if "split" in images else None,
                        "label_a": images["label"].to_numpy()[lo] if "label" in images else None,
                        "label_b": images["label"].to_numpy()[hi] if "label" in images else None,
                        "same_picture": same_pic, "evidence": "model", "model_distance": d, "model_ratio": ratio,
                        "pixel_cosine": pcos})
    out = out.sort_values("model_distance", kind="stable").reset_index(drop=True)
    out.attrs["calibration"] = cal
    return out


def ratio_candidates(dist: np.ndarray, idx: np.ndarray, rule: dict):
    """The calibration and the candidate pairs of a kNN result (``dist``/``idx`` from ``knn.knn``, rows = the
    searched embeddings): ``(Calibration, lo, hi, distance, ratio)``, each pair once (lo < hi, row numbers of
    the search), within the distance cap and with ratio <= ``confirmed_ratio_max``. ``Calibration.note`` is set
    (and the arrays empty) when the embeddings barely differ. The one definition of the model's cut: the scan's
    model evidence (``model_duplicate_pairs``) and the Model triage page's kNN pairs (``sanity.embedding_findings``)
    both use it."""
    ref = dist[:, min(int(rule["reference_rank"]), dist.shape[1]) - 1]
    typical = float(np.median(ref))
    cal = Calibration(typical, rule["typical_ratio_max"] * typical, len(dist))
    none = np.zeros(0, np.int64)
    if not typical > rule["min_typical"]:
        cal.note = (f"the model's embeddings barely differ between images (median distance to the "
                    f"{_ordinal(rule['reference_rank'])} neighbour {typical:.2g}): they give no duplicate evidence")
        return cal, none, none, np.zeros(0), np.zeros(0)
    # candidates: each row's neighbours within the cap, each pair once (as searched rows p < q)
    k_pairs = min(int(rule["k"]), dist.shape[1])
    cand_r, cand_s = np.nonzero(dist[:, :k_pairs] <= cal.distance_cap)
    p, q = cand_r, idx[cand_r, cand_s]
    lo_s, hi_s = np.minimum(p, q), np.maximum(p, q)
    _, first = np.unique(lo_s * len(dist) + hi_s, return_index=True)
    lo_s, hi_s = lo_s[first], hi_s[first]
    d = dist[cand_r, cand_s][first].astype(np.float64)
    # the ratio test: the pair's distance over each side's distance to its nearest other neighbour
    other = np.minimum(_nearest_other(dist, idx, lo_s, hi_s), _nearest_other(dist, idx, hi_s, lo_s))
    ratio = d / np.maximum(other, 1e-12)
    keep_pair = (ratio <= rule["confirmed_ratio_max"]) & (lo_s != hi_s)
    return cal, lo_s[keep_pair], hi_s[keep_pair], d[keep_pair], ratio[keep_pair]


def _nearest_other(dist: np.ndarray, idx: np.ndarray, rows: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """Each row's distance to its nearest neighbour other than ``partner`` (from its kNN lists)."""
    first_is_partner = idx[rows, 0] == partner
    return np.where(first_is_partner, dist[rows, 1], dist[rows, 0]).astype(np.float64)


def _same_picture(images, near: dict, pcos, ph, lo, hi) -> np.ndarray:
    """The scan's same-picture cut (``near_rule['same_picture']``) applied to the pairs' pixel evidence: only
    these may raise conflicting labels. Without descriptors, no pair is the same picture on this evidence."""
    same = (near or {}).get("same_picture")
    if not same or len(lo) == 0:
        return np.zeros(len(lo), bool)
    contrast = pd.to_numeric(images.get("contrast", pd.Series(np.inf, index=images.index)),
                             errors="coerce").fillna(np.inf).to_numpy()
    return ((np.nan_to_num(pcos, nan=-1.0) >= same["cosine"]) & (ph >= 0) & (ph <= same["phash_max"])
            & (np.minimum(contrast[lo], contrast[hi]) >= same.get("contrast_min", 0.0)))


@dataclass
class _PairContext:
    """What the scan's duplicate, leakage and label checks read (``CheckContext``'s pairs, groups, images)."""
    images: pd.DataFrame
    pairs: pd.DataFrame
    groups: pd.DataFrame
    has_image_labels: bool = False
    classes: list = field(default_factory=list)


def _findings_from_pairs(images: pd.DataFrame, pairs: pd.DataFrame, group_max_images: int) -> tuple[pd.DataFrame,
                                                                                                      pd.DataFrame]:
    """The duplicate, leakage and conflicting-label findings of ``pairs`` (with ``a``/``b`` rows), made by the
    scan's own checks, and the pairs with their star groups (group_id, to_representative, representative)."""
    from ..checks.duplicate import check_duplicate
    from ..checks.label import check_label
    from ..checks.leakage import check_leakage
    from ..checks.registry import family_of

    pairs = pairs.reset_index(drop=True)
    a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    groups = neardup.star_groups(len(images), a, b, pairs["score"].to_numpy(np.float64), group_max_images)
    pairs = neardup.pairs_with_groups(pairs, groups, len(images))
    pairs["same_picture"] = pairs["same_picture"].fillna(False).astype(bool)
    ctx = _PairContext(images=images, pairs=pairs, groups=groups)
    rows = [*check_duplicate(ctx), *check_leakage(ctx), *check_label(ctx)]
    findings = finding_frame(rows)
    findings["family"] = [family_of(c) or "" for c in findings["check"]]
    return findings.sort_values(["check", "image_id"], kind="stable").reset_index(drop=True), pairs


def model_duplicate_findings(scan, image_ids, embeddings: np.ndarray, thresholds: dict | None = None) -> pd.DataFrame:
    """Findings (the scan's schema: near_duplicate, split_leakage, conflicting_labels) from the model's
    embeddings alone; ``attrs["pairs"]`` holds the pairs, ``attrs["calibration"]`` the cut and how it was made."""
    images, _, _, near = _scan_parts(scan)
    pairs = model_duplicate_pairs(scan, image_ids, embeddings, thresholds)
    findings, grouped = _findings_from_pairs(images, pairs, int(near.get("group_max_images", 50)))
    findings.attrs["pairs"] = grouped
    findings.attrs["calibration"] = pairs.attrs.get("calibration")
    return findings


def merged_duplicate_pairs(scan, model_pairs: pd.DataFrame) -> pd.DataFrame:
    """The scan's pixel pairs and the model's in one table (with ``a``/``b`` rows of ``scan.images``): a pair
    found by both is one row (evidence "pixels+model", its ``why`` naming both); a pair only the model finds has
    evidence "model"; only the pixels, "pixels"."""
    images, _, pixel, _ = _scan_parts(scan)
    row_of = pd.Series(np.arange(len(images)), index=images["image_id"].astype(str).to_numpy())
    row_of = row_of[~row_of.index.duplicated()]
    cols = [c for c in PAIR_COLUMNS if c not in ("evidence", "model_distance", "model_ratio", "pixel_cosine")]
    px = pixel.reindex(columns=cols).copy() if len(pixel) else pd.DataFrame(columns=cols)
    pa_ = px["image_id_a"].astype(str).map(row_of)
    pb_ = px["image_id_b"].astype(str).map(row_of)
    known = pa_.notna() & pb_.notna()
    px = px[known.to_numpy()].copy()
    px["a"] = np.minimum(pa_[known], pb_[known]).astype(np.int64).to_numpy()
    px["b"] = np.maximum(pa_[known], pb_[known]).astype(np.int64).to_numpy()
    px["evidence"], px["model_distance"], px["model_ratio"], px["pixel_cosine"] = "pixels", np.nan, np.nan, np.nan
    if model_pairs is None or model_pairs.empty:
        return px.reset_index(drop=True)
    mp = model_pairs.set_index(model_pairs["a"].astype(np.int64) * len(images) + model_pairs["b"].astype(np.int64))
    pkey = px["a"].to_numpy(np.int64) * len(images) + px["b"].to_numpy(np.int64)
    both = np.isin(pkey, mp.index.to_numpy())
    if both.any():
        m = mp.loc[pkey[both]]
        px.loc[both, "why"] = [f"{w}; and the model: {mw}" for w, mw in zip(px.loc[both, "why"], m["why"])]
        px.loc[both, "evidence"] = "pixels+model"
        px.loc[both, "model_distance"] = m["model_distance"].to_numpy()
        px.loc[both, "model_ratio"] = m["model_ratio"].to_numpy()
        px.loc[both, "pixel_cosine"] = m["pixel_cosine"].to_numpy()
    only = mp[~mp.index.isin(pkey)].copy()
    only["why"] = "model evidence only: " + only["why"].astype(str)
    out = pd.concat([px, only.reset_index(drop=True)], ignore_index=True) if len(px) else only.reset_index(drop=True)
    return out.sort_values(["a", "b"], kind="stable").reset_index(drop=True)


def merged_duplicate_findings(scan, model_pairs: pd.DataFrame) -> pd.DataFrame:
    """The scan's findings with its duplicate, leakage and conflicting-label findings made again from the merged
    pixel and model pairs (``merged_duplicate_pairs``); every other finding is the scan's own. ``attrs["pairs"]``
    holds the merged pairs with their groups (what ``neardup.group_members`` reads)."""
    images, _, _, near = _scan_parts(scan)
    merged = merged_duplicate_pairs(scan, model_pairs)
    found, grouped = _findings_from_pairs(images, merged, int(near.get("group_max_images", 50)))
    rest = scan.findings[~scan.findings["check"].isin(DUPLICATE_CHECKS)]
    out = pd.concat([rest, found], ignore_index=True) if len(rest) else found
    out = finding_frame(out).assign(family=lambda f: f["family"].astype(str))
    out.attrs["pairs"] = grouped
    return out


@dataclass
class ModelEvidence:
    findings: pd.DataFrame      # the scan's findings, duplicate/leakage/conflicting-label ones merged with the model's
    pairs: pd.DataFrame         # merged pairs with groups and an ``evidence`` column (pixels, model, pixels+model)
    note: str                   # one line: the cut, how it was made, and what the model added
    folder: Path | None = None  # where it is kept (None: not saved)
    key: str = ""               # evidence_key: scan, model and thresholds (a cache key for pages)


def evidence_key(scan, model_key: str, thresholds: dict | None = None) -> str:
    """The key of saved evidence: the scan's fingerprint, the model's scores (``model_key``, e.g. the scores cache
    key) and the thresholds; a different scan, model or cut gives a different folder."""
    with_desc = getattr(scan, "desc", None) is not None     # the pixel confirmation reads descriptors, else pHash
    payload = json.dumps([EVIDENCE_VERSION, str(getattr(scan, "fingerprint", "")), str(model_key),
                          embed_rule(thresholds), with_desc], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:20]


def model_evidence(scan, image_ids, embeddings: np.ndarray | None, model_key: str, thresholds: dict | None = None,
                   workspace: Path | str | None = None) -> ModelEvidence | None:
    """Pixel and model duplicate evidence merged (None without embeddings): read from
    ``<workspace>/model_evidence/<evidence_key>/`` when saved there before, else computed and saved there.
    ``workspace``: default ``scan.workspace`` (never the dataset). A damaged or unwritable folder costs only a
    recomputation."""
    if embeddings is None:
        return None
    ws = Path(workspace) if workspace is not None else getattr(scan, "workspace", None)
    key = evidence_key(scan, model_key, thresholds)
    folder = Path(ws) / EVIDENCE_DIR / key if ws is not None else None
    if folder is not None and all((folder / n).is_file() for n in ("findings.parquet", "pairs.parquet", "note.txt")):
        try:
            return ModelEvidence(finding_frame(pd.read_parquet(folder / "findings.parquet")),
                                 pd.read_parquet(folder / "pairs.parquet"), (folder / "note.txt").read_text(), folder,
                                 key)
        except Exception as exc:  # noqa: BLE001 - a damaged file (pyarrow raises several types): computed again
            log.warning("recomputing the damaged model evidence in %s: %s", folder, exc)
    model_pairs = model_duplicate_pairs(scan, image_ids, embeddings, thresholds)
    findings = merged_duplicate_findings(scan, model_pairs)
    pairs = findings.attrs.pop("pairs")
    note = evidence_note(pairs, model_pairs.attrs.get("calibration"), embed_rule(thresholds))
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tag = f"{os.getpid()}.{threading.get_ident()}.tmp"
            for name, frame in (("findings.parquet", findings), ("pairs.parquet", pairs)):
                frame = frame.copy()
                frame.attrs = {}            # the calibration is in the note, not in the file
                frame.to_parquet(folder / f"{name}.{tag}", index=False)
                os.replace(folder / f"{name}.{tag}", folder / name)
            (folder / "note.txt").write_text(note)
            (folder / "meta.json").write_text(json.dumps({"scan_fingerprint": str(getattr(scan, "fingerprint", "")),
                                                          "model_key": str(model_key),
                                                          "thresholds": embed_rule(thresholds)}, default=str))
        except OSError:                 # a read-only workspace: shown, just not kept
            folder = None
    return ModelEvidence(findings, pairs, note, folder, key)


def evidence_note(pairs: pd.DataFrame, cal: Calibration | None, rule: dict) -> str:
    """One line for the page: what the model added and the cut it used."""
    if cal is None:
        return "No model evidence."
    if cal.note:
        return f"Model evidence: none ({cal.note})."
    ev = pairs["evidence"].value_counts() if len(pairs) else pd.Series(dtype=int)
    n_model = int(ev.get("model", 0))
    return (f"Model evidence joined: {n_model:,} pair{'' if n_model == 1 else 's'} found by the model only, "
            f"{int(ev.get('pixels+model', 0)):,} by both, {int(ev.get('pixels', 0)):,} by the pixels only. "
            f"Model cut, calibrated on this model's embeddings: a pair at most {rule['ratio_max']:g} x (or "
            f"{rule['confirmed_ratio_max']:g} x when the pixels agree) the distance of either image to its nearest "
            f"other image; {cal.text(rule)}.")


def saved_evidence(scan, workspace: Path | str | None = None) -> ModelEvidence | None:
    """The newest model evidence saved for this scan (its fingerprint) in the workspace, whatever the model; None
    when there is none. Lets the Findings page show a model's evidence in a later session, without the model."""
    ws = Path(workspace) if workspace is not None else getattr(scan, "workspace", None)
    if ws is None or not (Path(ws) / EVIDENCE_DIR).is_dir():
        return None
    found = []
    for folder in (Path(ws) / EVIDENCE_DIR).iterdir():
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("scan_fingerprint") == str(getattr(scan, "fingerprint", "")):
                found.append(((folder / "findings.parquet").stat().st_mtime, folder))
        except (OSError, ValueError, AttributeError):
            continue
    for _, folder in sorted(found, reverse=True):
        try:
            return ModelEvidence(finding_frame(pd.read_parquet(folder / "findings.parquet")),
                                 pd.read_parquet(folder / "pairs.parquet"), (folder / "note.txt").read_text(), folder,
                                 folder.name)
        except Exception as exc:  # noqa: BLE001 - a damaged folder: the next newest
            log.warning("skipping the damaged model evidence in %s: %s", folder, exc)
    return None
