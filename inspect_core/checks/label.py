"""label: image labels that are absent, outside the class list, or contradicted by a duplicate."""
from __future__ import annotations

from .context import NEAR_RULE
from .registry import finding, register

CHECKS = {
    "missing_label": "The image has no label (e.g. it sits directly in a split folder, or its manifest label is empty).",
    "unknown_label": "The label is not in the class list (classes.txt, data.yaml, or the COCO categories).",
    "conflicting_labels": ("The same picture (an exact duplicate, or a near duplicate at the strict same-picture cut: "
                           f"cosine >= {NEAR_RULE['same_picture']['cosine']} with pHash distance <= "
                           f"{NEAR_RULE['same_picture']['phash_max']}, both with a contrast of at least "
                           f"{NEAR_RULE['same_picture']['contrast_min']}) carries a different label: one of the two is "
                           "wrong. The detail names both images and both labels."),
    "listed_twice": "The manifest lists this path more than once (maybe with different labels); the first row is used.",
}


def label_row_findings(img, classes, has_image_labels: bool) -> list:
    """missing_label and unknown_label: each from its own row only (a cluster scan runs this per partition)."""
    out = []
    if has_image_labels:
        known = set(classes)
        for image_id, label, err in zip(img["image_id"], img["label"], img["error_kind"]):
            if err in ("missing_file", "path_outside_root"):
                continue
            if label is None or label != label or str(label) == "<NA>" or str(label).strip() == "":
                out.append(finding(image_id, "missing_label", 1.0,
                                   "no label: put the image in a class folder or give it a label in the manifest"))
            elif known and label not in known:
                out.append(finding(image_id, "unknown_label", 1.0,
                                   f"label '{label}' is not in the class list ({len(known)} classes); "
                                   "fix the label or add the class to classes.txt"))
    return out


def label_pair_findings(ctx) -> list:
    """conflicting_labels: from the duplicate pairs (the same picture with two labels)."""
    out = []
    pairs = ctx.pairs
    if not pairs.empty:
        # only pairs that are the same picture: a look-alike with another label is no evidence of a wrong label
        la, lb = pairs["label_a"], pairs["label_b"]
        differ = pairs["same_picture"] & la.notna() & lb.notna() & (la.astype("str") != lb.astype("str"))
        seen = set()
        for p in pairs.loc[differ].sort_values("score", ascending=False).itertuples(index=False):
            text = (f"'{p.image_id_a}' is labelled '{p.label_a}' and '{p.image_id_b}' is labelled '{p.label_b}', "
                    f"but they are the same picture ({p.kind}: {p.why})")
            for me in (p.image_id_a, p.image_id_b):
                if me in seen:
                    continue
                seen.add(me)
                out.append(finding(me, "conflicting_labels", p.score, text, p.group_id))
    return out


@register("label", CHECKS)
def check_label(ctx):
    return label_row_findings(ctx.images, ctx.classes, ctx.has_image_labels) + label_pair_findings(ctx)
