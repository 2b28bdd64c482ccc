"""leakage: the same image in two splits, so the evaluation sees training data."""
from __future__ import annotations

import pandas as pd

from .registry import finding, register

CHECKS = {
    "split_leakage": ("An exact or near duplicate of this image (a pair of the near-duplicate rule, which is set "
                      "for precision) sits in another split (e.g. train vs test): evaluation on it measures memory, "
                      "not generalisation. Every such pair is in pairs.parquet."),
}


@register("leakage", CHECKS)
def check_leakage(ctx):
    pairs = ctx.pairs
    if pairs.empty:
        return []
    sa, sb = pairs["split_a"], pairs["split_b"]
    cross = sa.notna() & sb.notna() & (sa.astype("str") != sb.astype("str"))
    out = []
    for p in pairs.loc[cross].itertuples(index=False):
        for me, my_split, other, other_split in ((p.image_id_a, p.split_a, p.image_id_b, p.split_b),
                                                 (p.image_id_b, p.split_b, p.image_id_a, p.split_a)):
            out.append(finding(me, "split_leakage", p.score,
                               f"{p.kind} duplicate in {my_split} of {other} in {other_split} ({p.why})",
                               p.group_id))
    if not out:
        return []
    df = pd.DataFrame(out)
    # one finding per image: the strongest pair, with the count of others
    df = df.sort_values("score", ascending=False)
    counts = df.groupby("image_id")["image_id"].transform("size")
    df = df.drop_duplicates("image_id").copy()
    n = counts.loc[df.index]
    df["detail"] = [d if k == 1 else f"{d} (and {k - 1} more cross-split pairs)" for d, k in zip(df["detail"], n)]
    return df.to_dict("records")
