"""annotation: boxes that cannot be right, and images that should have boxes but have none."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import finding, register

DUPLICATE_IOU = 0.9
EDGE_TOLERANCE_PX = 1.0

CHECKS = {
    "box_outside_image": f"A box extends more than {EDGE_TOLERANCE_PX:g} px beyond the image border.",
    "box_degenerate": "A box has zero or negative width or height.",
    "box_unknown_category": "A box's category is not in the category list.",
    "box_missing_image": "Boxes are given for an image that is not in the dataset (no such file).",
    "box_duplicate": f"Two boxes of the same category on one image overlap with IoU >= {DUPLICATE_IOU}.",
    "no_boxes": "The dataset has boxes, but this image has none (unannotated, or truly empty?).",
    "box_malformed": "An annotation line or bbox cannot be parsed (not 'class cx cy w h' / not [x, y, w, h]).",
}


def duplicate_box_pairs(boxes: pd.DataFrame) -> pd.DataFrame:
    """Pairs of boxes (same image, same category) with IoU >= DUPLICATE_IOU."""
    b = boxes[["ann_id", "image_id", "category_id", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]].copy()
    b["category_id"] = b["category_id"].fillna(-1)
    b["row"] = np.arange(len(b))  # pair by position: two boxes may share an ann_id (merged files, id 0)
    m = b.merge(b, on=["image_id", "category_id"], suffixes=("_a", "_b"))
    m = m[m["row_a"] < m["row_b"]]
    if m.empty:
        return m.assign(iou=[])
    x1 = np.maximum(m["box_x_px_a"], m["box_x_px_b"])
    y1 = np.maximum(m["box_y_px_a"], m["box_y_px_b"])
    x2 = np.minimum(m["box_x_px_a"] + m["box_w_px_a"], m["box_x_px_b"] + m["box_w_px_b"])
    y2 = np.minimum(m["box_y_px_a"] + m["box_h_px_a"], m["box_y_px_b"] + m["box_h_px_b"])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = m["box_w_px_a"] * m["box_h_px_a"] + m["box_w_px_b"] * m["box_h_px_b"] - inter
    m = m.assign(iou=np.where(union > 0, inter / union.where(union > 0, 1), 0.0))
    return m[m["iou"] >= DUPLICATE_IOU]


def _per_image(rows: pd.DataFrame, check: str, describe) -> list:
    out = []
    for image_id, g in rows.groupby("image_id", sort=True):
        parts = [describe(r) for r in g.itertuples(index=False)]
        text = "; ".join(parts[:4]) + (f"; and {len(parts) - 4} more" if len(parts) > 4 else "")
        out.append(finding(image_id, check, float(len(g)), text))
    return out


BOX_CHECKS = ("box_outside_image", "box_degenerate", "box_unknown_category", "box_duplicate")


def box_flags(boxes: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """The boxes table with one bool column per box-level check (``is_box_outside_image`` ...) and the
    image size beside each box; the scan keeps these columns, so a page can draw flagged boxes."""
    sizes = images.set_index("image_id")[["width_px", "height_px", "error_kind"]]
    b = boxes.join(sizes, on="image_id")
    x, y, w, h = b["box_x_px"], b["box_y_px"], b["box_w_px"], b["box_h_px"]
    degenerate = ~((w > 0) & (h > 0))
    known_size = b["error_kind"].isna() & (b["width_px"] > 0)
    tol = EDGE_TOLERANCE_PX
    b["is_box_degenerate"] = degenerate.to_numpy(bool)
    b["is_box_outside_image"] = (known_size & ~degenerate & (
        (x < -tol) | (y < -tol) | (x + w > b["width_px"] + tol) | (y + h > b["height_px"] + tol))).to_numpy(bool)
    b["is_box_unknown_category"] = b["category"].isna().to_numpy(bool)
    keep = ~degenerate.to_numpy()
    dups = duplicate_box_pairs(boxes[keep])
    rows_kept = np.nonzero(keep)[0]
    dup_rows = set(rows_kept[dups["row_a"].to_numpy(int)]) | set(rows_kept[dups["row_b"].to_numpy(int)]) \
        if len(dups) else set()
    b["is_box_duplicate"] = np.isin(np.arange(len(b)), list(dup_rows))
    b.attrs["duplicate_pairs"] = dups
    return b


@register("annotation", CHECKS)
def check_annotation(ctx):
    if not ctx.has_boxes:
        return []
    out = []
    img = ctx.images
    boxes = ctx.annotations
    b = ctx.box_flags
    out += _per_image(b[b["is_box_degenerate"]], "box_degenerate",
                      lambda r: f"box {r.ann_id} is {r.box_w_px:g} x {r.box_h_px:g} px")
    out += _per_image(b[b["is_box_outside_image"]], "box_outside_image",
                      lambda r: (f"box {r.ann_id} [x {r.box_x_px:g}, y {r.box_y_px:g}, w {r.box_w_px:g}, "
                                 f"h {r.box_h_px:g}] px on a {r.width_px} x {r.height_px} px image"))
    out += _per_image(b[b["is_box_unknown_category"]], "box_unknown_category",
                      lambda r: f"box {r.ann_id} has category id {r.category_id}, not in the category list")
    missing = b["error_kind"].isin(["missing_file"])
    out += _per_image(b[missing], "box_missing_image", lambda r: f"box {r.ann_id} is for a file that does not exist")
    out += _per_image(b.attrs["duplicate_pairs"], "box_duplicate",
                      lambda r: f"boxes {r.ann_id_a} and {r.ann_id_b} overlap with IoU {r.iou:.2f}")
    counts = boxes["image_id"].value_counts()
    no_box = img["error_kind"].isna() & ~img["image_id"].isin(counts.index)
    for image_id in img.loc[no_box, "image_id"]:
        out.append(finding(image_id, "no_boxes", 1.0,
                           f"no boxes, while {len(counts)} of {len(img)} images have some"))
    return out
