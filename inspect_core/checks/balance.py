"""balance (dataset level): how the classes are spread over the dataset and its splits."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import finding, register

IMBALANCE_RATIO = 10.0      # largest / smallest class count at or above this is reported
RARE_MIN_COUNT = 10         # fewer examples than this: too few to learn a class
RARE_FRACTION_OF_MEDIAN = 0.1
SPLIT_TVD = 0.15            # total variation distance between train and another split's class shares

CHECKS = {
    "class_imbalance": f"The largest class has at least {IMBALANCE_RATIO:g}x the images of the smallest.",
    "rare_class": (f"A class has fewer than {RARE_MIN_COUNT} images, or under {RARE_FRACTION_OF_MEDIAN:.0%} "
                   "of the median class count: too few to learn or to evaluate."),
    "split_mismatch": (f"A split's class shares differ from train's by a total variation distance above {SPLIT_TVD}: "
                       "validation measures a different distribution."),
}


def balance_table(images: pd.DataFrame, classes: list) -> pd.DataFrame:
    """One row per class: count per split, total, share, and a suggested class weight for the loss
    (n_train / (n_classes * n_train_of_class), the 'balanced' weighting, from the train split when there is one)."""
    labelled = images[images["label"].notna() & images["error_kind"].isna()]
    names = list(dict.fromkeys(list(classes) + sorted(labelled["label"].unique().tolist())))
    splits = sorted(labelled["split"].dropna().unique().tolist())
    table = pd.DataFrame({"class": pd.Series(names, dtype="str")})
    for s in splits:
        counts = labelled.loc[labelled["split"] == s, "label"].value_counts()
        table[f"n_{s}"] = table["class"].map(counts).fillna(0).astype(int)
    counts_all = labelled["label"].value_counts()
    table["n_images"] = table["class"].map(counts_all).fillna(0).astype(int)
    total = max(int(table["n_images"].sum()), 1)
    table["share"] = table["n_images"] / total
    base = table["n_train"] if "n_train" in table else table["n_images"]
    n_classes = int((base > 0).sum()) or 1
    table["suggested_class_weight"] = np.where(base > 0, base.sum() / (n_classes * base.where(base > 0, 1)), np.nan)
    table["in_class_list"] = table["class"].isin(classes)
    return table


@register("balance", CHECKS, dataset_level=True)
def check_balance(ctx):
    if not ctx.has_image_labels:
        return []
    table = balance_table(ctx.images, ctx.classes)
    present = table[(table["n_images"] > 0) & (table["in_class_list"] | (len(ctx.classes) == 0))]
    if len(present) < 2:
        return []
    out = []
    big, small = present.loc[present["n_images"].idxmax()], present.loc[present["n_images"].idxmin()]
    ratio = big["n_images"] / max(small["n_images"], 1)
    if ratio >= IMBALANCE_RATIO:
        out.append(finding("", "class_imbalance", ratio,
                           f"'{big['class']}' has {big['n_images']} images, '{small['class']}' {small['n_images']}: "
                           f"ratio {ratio:.1f} >= {IMBALANCE_RATIO:g}; weight the loss (see suggested_class_weight) "
                           "or resample"))
    median = float(present["n_images"].median())
    cut = max(RARE_MIN_COUNT, RARE_FRACTION_OF_MEDIAN * median)
    for name, n, listed in zip(table["class"], table["n_images"], table["in_class_list"]):
        if n < cut and (listed or n > 0):
            out.append(finding("", "rare_class", float(n),
                               f"class '{name}' has {n} images < {cut:g} "
                               f"(max of {RARE_MIN_COUNT} and {RARE_FRACTION_OF_MEDIAN:.0%} of the median "
                               f"class count {median:g}); collect more"))
    if "n_train" in table:
        train = table["n_train"] / max(table["n_train"].sum(), 1)
        for col in [c for c in table.columns if c.startswith("n_") and c not in ("n_train", "n_images")]:
            if table[col].sum() < 1:
                continue
            other = table[col] / table[col].sum()
            tvd = 0.5 * float(np.abs(train - other).sum())
            if tvd > SPLIT_TVD:
                worst = (other - train).abs().idxmax()
                out.append(finding("", "split_mismatch", tvd,
                                   f"{col[2:]} vs train class shares differ by TVD {tvd:.2f} > {SPLIT_TVD}; "
                                   f"most for '{table.loc[worst, 'class']}' ({train[worst]:.0%} of train, "
                                   f"{other[worst]:.0%} of {col[2:]})"))
    return out
