"""What every check sees: the scanned images table, the boxes, and the duplicate pairs (computed once)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .. import neardup

# Near duplicates: descriptor cosine >= NEAR_COS_STRONG, or >= NEAR_COS and pHash distance <= NEAR_PHASH_MAX.
# Calibrated on real photos edited by crop (<=5%), resize (50-100%), brightness, saturation and JPEG
# re-encoding: see bench/bench_neardup.py and BENCHMARKS.md for recall and false pairs.
NEAR_COS_STRONG = 0.95
NEAR_COS = 0.75
NEAR_PHASH_MAX = 12


@dataclass
class CheckContext:
    images: pd.DataFrame          # one row per image, scanned signals included; row order = desc order
    desc: np.ndarray              # (n_images, DESC_DIM) int8 descriptors
    annotations: pd.DataFrame
    classes: list
    has_image_labels: bool
    has_boxes: bool

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
        """Duplicate pairs: one row per pair (a < b) with kind exact|near, score and evidence."""
        img = self.images
        n = len(img)
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
        i, j, cos = neardup.near_pairs(self.desc, NEAR_COS_STRONG, NEAR_COS, ph, NEAR_PHASH_MAX, subset=use)
        frames.append(pd.DataFrame({"a": i, "b": j, "kind": "near", "score": cos.astype(float), "why": ""}))
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
        groups = neardup.connected_groups(n, a, b)
        pairs["group_id"] = groups[a] if len(a) else np.zeros(0, np.int64)
        return pairs
