"""What every check sees: the scanned images table, the boxes, and the duplicate pairs (computed once)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from .. import neardup

# The near-duplicate rule, as data (a caller may pass its own: CheckContext(near_rule=...), scan(near_threshold=)).
# A pair is near when its tiny-image cosine >= "cosine" with pHash distance <= "phash_max", or cosine >=
# "lax_cosine" with pHash distance <= "lax_phash_max" (no lax branch where it is None). The cuts come from the
# size band of the pair's smaller image (its shorter side, px: the first band whose max_short_side_px it does
# not exceed; None = no limit). A near-uniform image (entropy_bits below low_information's entropy_bits_max)
# carries little in its descriptor: it is held to low_information's stricter cut, without the lax branch.
# Conflicting labels need the same picture: an exact pair, or a near pair within "same_picture" whose images both
# have a contrast (grey-level standard deviation, 0-1) of at least contrast_min: two near-blank images (a dark
# corner, a plain page) prove nothing about a label.
# Calibrated on real photos at 8 px to 800 px with edited copies and distinct look-alikes, for precision:
# bench/bench_realdata.py and BENCHMARKS.md ("Near duplicates on real data").
NEAR_RULE = {
    "size_bands": [
        {"max_short_side_px": 12, "cosine": 0.99, "phash_max": 10, "lax_cosine": None, "lax_phash_max": None},
        {"max_short_side_px": 48, "cosine": 0.95, "phash_max": 14, "lax_cosine": 0.80, "lax_phash_max": 8},
        {"max_short_side_px": None, "cosine": 0.94, "phash_max": 16, "lax_cosine": 0.80, "lax_phash_max": 12},
    ],
    "low_information": {"entropy_bits_max": 3.0, "cosine": 0.97, "phash_max": 8},
    "same_picture": {"cosine": 0.955, "phash_max": 12, "contrast_min": 0.03},
    "group_max_images": 50,
}
# The cosine cut that --near-threshold sets: the main cut for images over 48 px. Every other cosine cut keeps its
# place relative to it: its distance to 1 is scaled by (1 - threshold) / (1 - default), so a threshold of 1
# keeps only identical descriptors and a lower one widens every band alike.
NEAR_THRESHOLD_DEFAULT = NEAR_RULE["size_bands"][-1]["cosine"]


def near_rule(near_threshold: float | None = None, base: dict | None = None) -> dict:
    """The near-duplicate rule (a copy of ``base``, default NEAR_RULE) with every cosine cut moved so that the
    main cut (images over 48 px) is ``near_threshold``; None keeps the defaults."""
    rule = copy.deepcopy(NEAR_RULE if base is None else base)
    if near_threshold is None:
        return rule
    if not 0.0 < near_threshold <= 1.0:
        raise ValueError(f"near threshold {near_threshold} is not a cosine in (0, 1]")
    scale = (1.0 - near_threshold) / (1.0 - rule["size_bands"][-1]["cosine"])
    parts = [*rule["size_bands"], rule.get("low_information"), rule.get("same_picture")]
    for part in [p for p in parts if p]:
        for key in ("cosine", "lax_cosine"):
            if part.get(key) is not None:
                part[key] = round(max(0.0, 1.0 - (1.0 - part[key]) * scale), 4)
    return rule


def _band_text(lo_px, hi_px) -> str:
    if hi_px is None:
        return f"short side over {lo_px} px"
    return f"short side {lo_px + 1}-{hi_px} px" if lo_px else f"short side up to {hi_px} px"


def near_cuts(images: pd.DataFrame, rule: dict) -> pd.DataFrame:
    """The near-duplicate cuts of every image (one row per image, in order): cosine, phash_max, lax_cosine (2:
    none), lax_phash_max, and ``band``, the words for why these cuts."""
    n = len(images)
    short = np.minimum(pd.to_numeric(images.get("width_px", pd.Series(np.nan, index=images.index)), errors="coerce"),
                       pd.to_numeric(images.get("height_px", pd.Series(np.nan, index=images.index)), errors="coerce")
                       ).to_numpy(np.float64)
    out = pd.DataFrame({"cosine": np.ones(n), "phash_max": np.zeros(n, np.int64), "lax_cosine": np.full(n, 2.0),
                        "lax_phash_max": np.zeros(n, np.int64), "band": [""] * n})
    todo = np.ones(n, bool)
    lo_px = 0
    for band in rule["size_bands"]:
        hi_px = band["max_short_side_px"]
        sel = todo & (np.ones(n, bool) if hi_px is None else ~(short > hi_px))  # unknown size: the first band
        out.loc[sel, "cosine"], out.loc[sel, "phash_max"] = band["cosine"], band["phash_max"]
        if band.get("lax_cosine") is not None:
            out.loc[sel, "lax_cosine"], out.loc[sel, "lax_phash_max"] = band["lax_cosine"], band["lax_phash_max"]
        out.loc[sel, "band"] = _band_text(lo_px, hi_px)
        todo &= ~sel
        lo_px = hi_px or lo_px
    low = rule.get("low_information")
    if low and "entropy_bits" in images:
        flat = (pd.to_numeric(images["entropy_bits"], errors="coerce") < low["entropy_bits_max"]).to_numpy()
        out.loc[flat, "cosine"] = np.maximum(out.loc[flat, "cosine"], low["cosine"])
        out.loc[flat, "phash_max"] = np.minimum(out.loc[flat, "phash_max"], low["phash_max"])
        out.loc[flat, "lax_cosine"], out.loc[flat, "lax_phash_max"] = 2.0, 0
        out.loc[flat, "band"] = [f"{b}, near-uniform (entropy under {low['entropy_bits_max']} bits)"
                                 for b in out.loc[flat, "band"]]
    return out


def describe_near_rule(rule: dict) -> str:
    """The rule in words, for the checks table and the docs."""
    parts, lo_px = [], 0
    for band in rule["size_bands"]:
        text = f"{_band_text(lo_px, band['max_short_side_px'])}: cosine >= {band['cosine']} with pHash distance <= {band['phash_max']}"
        if band.get("lax_cosine") is not None:
            text += f", or >= {band['lax_cosine']} with pHash <= {band['lax_phash_max']}"
        parts.append(text)
        lo_px = band["max_short_side_px"] or lo_px
    low = rule.get("low_information")
    if low:
        parts.append(f"near-uniform images (entropy under {low['entropy_bits_max']} bits): cosine >= {low['cosine']} "
                     f"with pHash <= {low['phash_max']}")
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
        # a member's group and representative (a representative of a split group sits in every part: members
        # are looked up, so that a pair with the representative lands in the member's part)
        members = self.groups[self.groups["node"] != self.groups["representative"]]
        gid = np.full(n, -1, np.int64)
        rep = np.full(n, -1, np.int64)
        gid[members["node"].to_numpy()] = members["group_id"].to_numpy()
        rep[members["node"].to_numpy()] = members["representative"].to_numpy()
        a_is_rep, b_is_rep = rep[b] == a, rep[a] == b
        pairs["group_id"] = np.where(a_is_rep, gid[b], np.where(b_is_rep | ((gid[a] == gid[b]) & (gid[a] >= 0)),
                                                                gid[a], -1))
        pairs["to_representative"] = a_is_rep | b_is_rep
        pairs["representative"] = np.where(a_is_rep, pairs["image_id_a"], np.where(b_is_rep, pairs["image_id_b"], None))
        return pairs

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
        cuts = near_cuts(img, self.near_rule)
        cos_cut, ph_cut = cuts["cosine"].to_numpy(np.float32), cuts["phash_max"].to_numpy(np.int16)
        lax_cut, lax_ph = cuts["lax_cosine"].to_numpy(np.float32), cuts["lax_phash_max"].to_numpy(np.int16)
        i, j, cos = neardup.near_pairs(self.desc, cos_cut, lax_cut, ph, lax_ph, subset=use, strong_phash_max=ph_cut)
        frames.append(pd.DataFrame({"a": i, "b": j, "kind": "near", "score": cos.astype(float),
                                    "why": _near_why(i, j, cos, ph, cuts)}))
        pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["a", "b", "kind", "score", "why"])
        pairs["a"], pairs["b"] = np.minimum(pairs["a"], pairs["b"]), np.maximum(pairs["a"], pairs["b"])
        # a pair that is exact is not also near
        pairs = pairs.sort_values(["a", "b", "kind"]).drop_duplicates(["a", "b"], keep="first")
        pairs = pairs.reset_index(drop=True)
        a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
        pairs["phash_distance"] = neardup.hamming64(ph[a], ph[b]) if len(a) else np.zeros(0, np.int16)
        for side, idx in (("a", a), ("b", b)):
            pairs[f"image_id_{side}"] = img["image_id"].to_numpy()[idx]
            pairs[f"split_{side}"] = img["split"].to_numpy()[idx]
            pairs[f"label_{side}"] = img["label"].to_numpy()[idx]
        return pairs


def _near_why(i: np.ndarray, j: np.ndarray, cos: np.ndarray, phash: np.ndarray, cuts: pd.DataFrame) -> list[str]:
    """Each near pair's evidence: its cosine and pHash distance, the cut they met, and why that cut (the size
    band of the stricter of its two images)."""
    if len(i) == 0:
        return []
    dist = neardup.hamming64(phash[i], phash[j])
    c = cuts.to_numpy()  # cosine, phash_max, lax_cosine, lax_phash_max, band
    cos_cut = cuts["cosine"].to_numpy()
    strict = np.where(cos_cut[i] >= cos_cut[j], i, j)
    other = np.where(strict == i, j, i)
    out = []
    for s, o, v, d in zip(strict.tolist(), other.tolist(), cos.tolist(), dist.tolist()):
        cc, pc = max(c[s][0], c[o][0]), min(c[s][1], c[o][1])
        if v >= cc and d <= pc:
            cut = f"cosine {v:.3f} >= {cc:g} and pHash distance {d} <= {pc}"
        else:
            cut = (f"cosine {v:.3f} >= {max(c[s][2], c[o][2]):g} and pHash distance {d} <= "
                   f"{min(c[s][3], c[o][3])} (the lax branch)")
        out.append(f"{cut}; cut for {c[s][4]}")
    return out
