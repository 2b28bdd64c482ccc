"""What every check sees: the scanned images table, the boxes, and the duplicate pairs (computed once)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from .. import neardup

# The near-duplicate rule, as data (a caller may pass its own: CheckContext(near_rule=...), scan(near_threshold=)).
# Each size band lists its cuts, [cosine, pHash distance] clauses: an image accepts a partner when their tiny-image
# cosine >= the clause's cosine and their pHash distance <= its pHash distance, for some clause. A pair is near when
# both images accept it, so the smaller image's band (its shorter side, px: the first band whose
# max_short_side_px it does not exceed; None = no limit) decides. A near-uniform image (entropy_bits below
# low_information's entropy_bits_max) carries little in its descriptor: low_information's cuts replace its band's.
# near_threshold: the reference cut (images over 48 px, the clause with pHash <= 16) that --near-threshold moves.
# Conflicting labels need the same picture: an exact pair, or a near pair within "same_picture" whose images both
# have a contrast (grey-level standard deviation, 0-1) of at least contrast_min: two near-blank images (a dark
# corner, a plain page) prove nothing about a label.
# mirror: left-right mirrored copies (the descriptor of one against the other's mirrored descriptor, and a pHash of
# both thumbnails within phash_max bits: neardup.mirror_pairs); near-uniform images are left out (None: no search,
# the default until the 1M search time with it is measured on a quiet machine: MIRROR_RULE below).
# Calibrated on real photos at 8 px to 800 px with edited copies and distinct look-alikes, for precision:
# bench/bench_realdata.py and BENCHMARKS.md ("Near duplicates on real data").
NEAR_RULE = {
    "size_bands": [
        {"max_short_side_px": 12, "cuts": [[0.99, 10]]},
        {"max_short_side_px": 48, "cuts": [[0.95, 14], [0.80, 8]]},
        {"max_short_side_px": None, "cuts": [[0.975, 22], [0.94, 16], [0.75, 12]]},
    ],
    "low_information": {"entropy_bits_max": 3.0, "cuts": [[0.95, 24]]},
    "same_picture": {"cosine": 0.955, "phash_max": 12, "contrast_min": 0.03},
    "mirror": None,             # off by default: MIRROR_RULE turns the mirror search on (BENCHMARKS.md)
    "near_threshold": 0.94,
    "group_max_images": 50,
}
NEAR_THRESHOLD_DEFAULT = NEAR_RULE["near_threshold"]
# The mirror search's cuts (pass {**near_rule(), "mirror": MIRROR_RULE} to use it). Measured on bench_realdata.py
# --mirror: mirrored copies found 0 -> 95%, pair precision -0.7 to -1.9 points; +10-15% on the 1M search time.
MIRROR_RULE = {"cosine": 0.95, "phash_max": 8}


def near_rule(near_threshold: float | None = None, base: dict | None = None) -> dict:
    """The near-duplicate rule (a copy of ``base``, default NEAR_RULE) with every cosine cut moved so that the
    reference cut (images over 48 px) is ``near_threshold``; None keeps the defaults. Every other cosine keeps
    its place relative to it: its distance to 1 is scaled by (1 - threshold) / (1 - reference), so a threshold
    of 1 keeps only identical descriptors and a lower one widens every band alike."""
    rule = copy.deepcopy(NEAR_RULE if base is None else base)
    if near_threshold is None:
        return rule
    if not 0.0 < near_threshold <= 1.0:
        raise ValueError(f"near threshold {near_threshold} is not a cosine in (0, 1]")
    scale = (1.0 - near_threshold) / (1.0 - rule["near_threshold"])

    def moved(c):
        return round(max(0.0, 1.0 - (1.0 - c) * scale), 4)

    for part in [*rule["size_bands"], rule.get("low_information")]:
        if part:
            part["cuts"] = [[moved(c), ph] for c, ph in part["cuts"]]
    for part in ("same_picture", "mirror"):
        if rule.get(part):
            rule[part]["cosine"] = moved(rule[part]["cosine"])
    rule["near_threshold"] = near_threshold
    return rule


def _band_text(lo_px, hi_px) -> str:
    if hi_px is None:
        return f"short side over {lo_px} px"
    return f"short side {lo_px + 1}-{hi_px} px" if lo_px else f"short side up to {hi_px} px"


def _cuts_text(cuts) -> str:
    return ", or ".join(f"cosine >= {c:g} with pHash distance <= {ph}" for c, ph in cuts)


def near_cuts(images: pd.DataFrame, rule: dict) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """The near-duplicate cuts of every image, in row order: cosine and pHash arrays (n_images, K) of its
    clauses (unused ones padded with cosine 2), and per image the words for them: the band, and the cuts."""
    n = len(images)
    nan = pd.Series(np.nan, index=images.index)
    short = np.minimum(pd.to_numeric(images.get("width_px", nan), errors="coerce"),
                       pd.to_numeric(images.get("height_px", nan), errors="coerce")).to_numpy(np.float64)
    low = rule.get("low_information")
    # a near-uniform image must meet its band's cuts and low_information's: every pair of clauses, joined
    k_max = max(len(b["cuts"]) for b in rule["size_bands"]) * (len(low["cuts"]) if low else 1)
    cos, ph = np.full((n, k_max), 2.0, np.float32), np.zeros((n, k_max), np.int16)
    band_of = np.full(n, -1, np.int64)
    texts, todo, lo_px = [], np.ones(n, bool), 0
    for b, band in enumerate(rule["size_bands"]):
        hi_px = band["max_short_side_px"]
        sel = todo & (np.ones(n, bool) if hi_px is None else ~(short > hi_px))  # unknown size: the first band
        band_of[sel] = b
        texts.append(_band_text(lo_px, hi_px))
        todo &= ~sel
        lo_px = hi_px or lo_px
    band_of[band_of < 0] = len(rule["size_bands"]) - 1
    flat = np.zeros(n, bool)
    if low and "entropy_bits" in images:
        flat = (pd.to_numeric(images["entropy_bits"], errors="coerce") < low["entropy_bits_max"]).to_numpy()
    cut_text = {}
    for b, band in enumerate(rule["size_bands"]):
        for is_flat in ((False, True) if low else (False,)):
            rows = (band_of == b) & (flat == is_flat)
            cuts = band["cuts"] if not is_flat else [[max(c1, c2), min(p1, p2)] for c1, p1 in band["cuts"]
                                                      for c2, p2 in low["cuts"]]
            for k, (c, p) in enumerate(cuts):
                cos[rows, k], ph[rows, k] = c, p
            cut_text[(b, is_flat)] = _cuts_text(cuts)
    band_text = [texts[b] + (f", near-uniform (entropy under {low['entropy_bits_max']} bits)" if f else "")
                 for b, f in zip(band_of.tolist(), flat.tolist())]
    cuts_text = [cut_text[(b, f)] for b, f in zip(band_of.tolist(), flat.tolist())]
    return cos, ph, band_text, cuts_text


def describe_near_rule(rule: dict) -> str:
    """The rule in words, for the checks table and the docs."""
    parts, lo_px = [], 0
    for band in rule["size_bands"]:
        parts.append(f"{_band_text(lo_px, band['max_short_side_px'])}: {_cuts_text(band['cuts'])}")
        lo_px = band["max_short_side_px"] or lo_px
    low = rule.get("low_information")
    if low:
        parts.append(f"near-uniform images (entropy under {low['entropy_bits_max']} bits) must also meet "
                     f"{_cuts_text(low['cuts'])}")
    mirror = rule.get("mirror")
    if mirror:
        parts.append(f"a left-right mirrored copy: cosine >= {mirror['cosine']:g} of one with the other mirrored, "
                     f"with thumbnail pHash distance <= {mirror['phash_max']} (near-uniform images left out)")
    return "; ".join(parts)


@dataclass
class CheckContext:
    images: pd.DataFrame          # one row per image, scanned signals included; row order = desc order
    desc: np.ndarray              # (n_images, DESC_DIM) int8 descriptors
    annotations: pd.DataFrame
    classes: list
    has_image_labels: bool
    has_boxes: bool
    near_rule: dict = field(default_factory=near_rule)
    # the robust statistics of the whole dataset when ``images`` is one part of it (a cluster scan):
    # property.ROBUST_COLUMNS; None: computed from ``images``
    column_stats: dict | None = None
    # where the pairs are found: None, here (pandas groups, neardup.near_pairs); else an object with the same two
    # steps, ``exact_pairs(keys, column=) -> (a, b)`` (column: the key's column name) and
    # ``near_pairs(desc, phash=, subset=, cuts=) -> (i, j, cosine)``,
    # that runs them elsewhere (a cluster scan: cluster.steps.ClusterSteps, on Ray)
    pair_source: object | None = None

    @cached_property
    def decoded(self) -> np.ndarray:
        """Rows whose pixels were read (no integrity error)."""
        return self.images["error_kind"].isna().to_numpy()

    @cached_property
    def box_flags(self) -> pd.DataFrame:
        """The boxes with their per-box check flags (annotation.box_flags), computed once per scan."""
        from .annotation import box_flags
        return box_flags(self.annotations, self.images)

    @cached_property
    def pairs(self) -> pd.DataFrame:
        """Duplicate pairs: one row per pair (a < b) with kind exact|near, score, evidence (``why``: the value
        and the cut), phash_distance, both sides' image_id/split/label, same_picture (exact, or near within the
        rule's same_picture cut), group_id (the group holding both sides, else -1), to_representative (the
        pair links a group member with its representative) and representative (that image_id, else None)."""
        pairs = self._pair_table.copy()
        n = len(self.images)
        a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
        same = self.near_rule.get("same_picture")
        if same:
            contrast = pd.to_numeric(self.images.get("contrast", pd.Series(np.inf, index=self.images.index)),
                                     errors="coerce").fillna(np.inf).to_numpy()
            pairs["same_picture"] = pairs["kind"].eq("exact") | (
                pairs["score"].ge(same["cosine"]) & pairs["phash_distance"].le(same["phash_max"])
                & (np.minimum(contrast[a], contrast[b]) >= same.get("contrast_min", 0.0)))
        else:
            pairs["same_picture"] = True
        return neardup.pairs_with_groups(pairs, self.groups, n)

    @cached_property
    def groups(self) -> pd.DataFrame:
        """Duplicate groups without chaining (neardup.star_groups over every pair): one row per grouped image
        (``node`` = its row) with group_id, representative, score_to_representative, part, n_parts."""
        p = self._pair_table
        return neardup.star_groups(len(self.images), p["a"].to_numpy(np.int64), p["b"].to_numpy(np.int64),
                                   p["score"].to_numpy(np.float64), self.near_rule.get("group_max_images", 50))

    @cached_property
    def _pair_table(self) -> pd.DataFrame:
        """Every exact and near pair with its evidence, before grouping."""
        img = self.images
        frames = []
        ok = self.decoded
        keyed = {"content_hash": img["content_hash"].where(img["file_size_bytes"].gt(0)),
                 "pixel_hash": img["pixel_hash"].where(pd.Series(ok, index=img.index))}
        for col, why in (("content_hash", "same bytes"), ("pixel_hash", "same pixels")):
            keys = keyed[col]
            if self.pair_source is not None:
                a, b = self.pair_source.exact_pairs(keys, column=col)
                if len(a):
                    frames.append(pd.DataFrame({"a": a, "b": b, "kind": "exact", "score": 1.0, "why": why}))
                continue
            codes, uniques = pd.factorize(keys, use_na_sentinel=True)
            codes = np.asarray(codes)
            valid = codes >= 0
            if not valid.any():
                continue
            order = np.argsort(codes[valid], kind="stable")
            rows = np.nonzero(valid)[0][order]
            c = codes[rows]
            starts = np.r_[0, np.nonzero(np.diff(c))[0] + 1]
            sizes = np.diff(np.r_[starts, len(c)])
            a_list, b_list = [], []
            for s, size in zip(starts[sizes > 1], sizes[sizes > 1]):
                members = rows[s:s + size]
                # every member against the first: a star is enough to group them; all pairs up to 20 members
                if size <= 20:
                    ia, ib = np.triu_indices(size, 1)
                    a_list.append(members[ia]), b_list.append(members[ib])
                else:
                    a_list.append(np.repeat(members[0], size - 1)), b_list.append(members[1:])
            if a_list:
                a, b = np.concatenate(a_list), np.concatenate(b_list)
                frames.append(pd.DataFrame({"a": a, "b": b, "kind": "exact", "score": 1.0, "why": why}))
        # one representative per exact group: n copies of one image must not become n^2/2 near pairs
        first_copy = ~(img["content_hash"].where(img["file_size_bytes"].gt(0)).duplicated()
                       & img["content_hash"].notna()).to_numpy()
        first_copy &= ~(img["pixel_hash"].duplicated() & img["pixel_hash"].notna()).to_numpy()
        use = ok & first_copy
        ph = img["phash"].to_numpy(np.int64)
        # the whole descriptor array with a mask, not a copy of its rows (256 bytes an image)
        cos_cut, ph_cut, band_text, cuts_text = near_cuts(img, self.near_rule)
        find = neardup.near_pairs if self.pair_source is None else self.pair_source.near_pairs
        i, j, cos = find(self.desc, phash=ph, subset=use, cuts=(cos_cut, ph_cut))
        frames.append(pd.DataFrame({"a": i, "b": j, "kind": "near", "score": cos.astype(float),
                                    "why": _near_why(i, j, cos, ph, cos_cut, band_text, cuts_text)}))
        mirror = self.near_rule.get("mirror")
        if mirror:
            low = self.near_rule.get("low_information")
            flat = np.zeros(len(img), bool)
            if low and "entropy_bits" in img:
                flat = (pd.to_numeric(img["entropy_bits"], errors="coerce") < low["entropy_bits_max"]).to_numpy()
            mi, mj, mcos, mdist = neardup.mirror_pairs(self.desc, mirror["cosine"], mirror["phash_max"],
                                                       subset=use & ~flat)
            frames.append(pd.DataFrame({
                "a": mi, "b": mj, "kind": "near", "score": mcos.astype(float), "mirror": True,
                "why": [f"mirror image: cosine {c:.3f} of one with the other flipped left-right, thumbnail pHash "
                        f"distance {d}; cut for mirror images: cosine >= {mirror['cosine']:g} with thumbnail pHash "
                        f"distance <= {mirror['phash_max']}" for c, d in zip(mcos.tolist(), mdist.tolist())]}))
        pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["a", "b", "kind", "score", "why"])
        pairs["a"], pairs["b"] = np.minimum(pairs["a"], pairs["b"]), np.maximum(pairs["a"], pairs["b"])
        # a pair that is exact is not also near, and a near pair is not also a mirror pair
        pairs["mirror"] = pairs["mirror"].fillna(False).astype(bool) if "mirror" in pairs else False
        pairs = pairs.sort_values(["a", "b", "kind", "mirror"]).drop_duplicates(["a", "b"], keep="first")
        pairs = pairs.drop(columns=["mirror"]).reset_index(drop=True)
        a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
        pairs["phash_distance"] = neardup.hamming64(ph[a], ph[b]) if len(a) else np.zeros(0, np.int16)
        for side, idx in (("a", a), ("b", b)):
            pairs[f"image_id_{side}"] = img["image_id"].to_numpy()[idx]
            pairs[f"split_{side}"] = img["split"].to_numpy()[idx]
            pairs[f"label_{side}"] = img["label"].to_numpy()[idx]
        return pairs


def _near_why(i, j, cos, phash, cos_cut, band_text, cuts_text) -> list[str]:
    """Each near pair's evidence: its cosine and pHash distance, and the cuts it met: those of the stricter of its
    two images (the one whose loosest cosine clause is higher: the smaller or the near-uniform one), and why."""
    if len(i) == 0:
        return []
    dist = neardup.hamming64(phash[i], phash[j])
    loosest = cos_cut.min(1)
    strict = np.where(loosest[i] >= loosest[j], i, j)
    return [f"cosine {v:.3f}, pHash distance {d}; cut for {band_text[s]}: {cuts_text[s]}"
            for s, v, d in zip(strict.tolist(), cos.tolist(), dist.tolist())]
