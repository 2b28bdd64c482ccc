"""annotation: boxes that cannot be right, and images that should have boxes but have none."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..limits import LIMITS, how_to_raise
from ..schema import issue_column
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
    "too_many_boxes": "An image has more boxes than the cap (max_boxes_per_image; the rest were dropped), or boxes "
                      "packed so densely that the duplicate-box check would exceed max_box_pairs_per_image "
                      "comparisons (it was not run on that image).",
}


PAIR_COLUMNS = ["row_a", "row_b", "ann_id_a", "ann_id_b", "image_id", "iou"]
# Candidate pairs compared at once (memory: about 100 bytes a pair).
_PAIR_BLOCK = 2_000_000
# Neighbouring cells of a box in the grid: width band, height band, x cell, y cell, each -1, 0 or +1.
_OFFSETS = np.array(np.meshgrid(*[[-1, 0, 1]] * 4, indexing="ij")).reshape(4, -1).T
_CELL_CLAMP = 1 << 40


def _iou(x, y, w, h, a, b) -> np.ndarray:
    ix = np.clip(np.minimum(x[a] + w[a], x[b] + w[b]) - np.maximum(x[a], x[b]), 0, None)
    iy = np.clip(np.minimum(y[a] + h[a], y[b] + h[b]) - np.maximum(y[a], y[b]), 0, None)
    inter = ix * iy
    union = w[a] * h[a] + w[b] * h[b] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _grid_cells(group, x, y, band_w, band_h, t: float):
    """The grid cell of each box for width band ``band_w`` and height band ``band_h`` (arrays of the same
    length): two boxes with IoU >= t lie in width bands at most one apart (their widths differ by at most a
    factor 1/t), likewise for heights, and in x (y) cells at most one apart, the cells of a band being
    (1 - t) * the largest width of the band above it wide: IoU <= 1 - |x_a - x_b| / max(w_a, w_b)."""
    cell_w = (1.0 - t) * np.power(1.0 / t, band_w + 2.0)
    cell_h = (1.0 - t) * np.power(1.0 / t, band_h + 2.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kx, ky = (np.floor(np.nan_to_num(v / c, nan=0.0, posinf=_CELL_CLAMP, neginf=-_CELL_CLAMP))
                  for v, c in ((x, cell_w), (y, cell_h)))
    kx, ky = (np.clip(k, -_CELL_CLAMP, _CELL_CLAMP).astype(np.int64) for k in (kx, ky))
    return [group, band_w, band_h, kx, ky]


def duplicate_box_pairs(boxes: pd.DataFrame, iou_min: float = DUPLICATE_IOU,
                        max_pairs_per_image: int | None = None) -> pd.DataFrame:
    """Pairs of boxes (same image, same category) with IoU >= ``iou_min``, in about linear time.

    Boxes with the same coordinates are grouped first (each is a duplicate of the group's first box). The
    other boxes go into a grid keyed by image, category, log-size band and position cell sized to the band,
    and each box is compared only with the boxes of its 81 neighbouring cells (see ``_grid_cells``). Where
    boxes on one image are so dense that this would take more than ``max_pairs_per_image`` comparisons
    (limits ``max_box_pairs_per_image``), that image is not compared; it is listed in
    ``result.attrs["unchecked"]`` ({image_id: comparisons it would take}). ``row_a`` / ``row_b`` are
    positions in ``boxes``."""
    cap = LIMITS["max_box_pairs_per_image"] if max_pairs_per_image is None else max_pairs_per_image
    n = len(boxes)
    empty = pd.DataFrame({c: pd.Series([], dtype="int64" if c.startswith("row") else "float64" if c == "iou"
                                       else "object") for c in PAIR_COLUMNS})
    empty.attrs["unchecked"] = {}
    if n < 2:
        return empty
    x, y, w, h = (boxes[c].to_numpy(np.float64) for c in ("box_x_px", "box_y_px", "box_w_px", "box_h_px"))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(h) & (w > 0) & (h > 0)
    image_code = pd.factorize(boxes["image_id"])[0]
    cat_code = pd.factorize(boxes["category_id"].astype("float64").fillna(-1.0))[0]
    group = image_code.astype(np.int64) * (int(cat_code.max()) + 1) + cat_code
    rows = np.nonzero(ok)[0]
    # 1. boxes with identical coordinates: every member pairs with the group's first box
    same = pd.DataFrame({"g": group[rows], "x": x[rows], "y": y[rows], "w": w[rows], "h": h[rows]})
    first_pos = same.groupby(["g", "x", "y", "w", "h"], sort=False).ngroup().to_numpy()
    _, rep_idx = np.unique(first_pos, return_index=True)
    reps = rows[rep_idx]                                   # one box per distinct (image, category, coordinates)
    rep_of = reps[first_pos]                               # the first box with the same coordinates
    twins = rows != rep_of
    pair_a, pair_b = [rep_of[twins]], [rows[twins]]
    # 2. the distinct boxes in the grid
    log_t = np.log(1.0 / iou_min)
    bw = np.clip(np.floor(np.log(w[reps]) / log_t), -8000, 8000).astype(np.int64)
    bh = np.clip(np.floor(np.log(h[reps]) / log_t), -8000, 8000).astype(np.int64)
    xr, yr, gr = x[reps], y[reps], group[reps]
    cells = pd.MultiIndex.from_arrays(_grid_cells(gr, xr, yr, bw, bh, iou_min))
    cell_id, uniq = cells.factorize()
    order = np.argsort(cell_id, kind="stable")
    cell_count = np.bincount(cell_id, minlength=len(uniq))
    cell_start = np.concatenate([[0], np.cumsum(cell_count)[:-1]])
    neighbours = []
    cost = np.zeros(int(image_code.max()) + 1, np.int64)
    for dbw, dbh, dx, dy in _OFFSETS:
        key = _grid_cells(gr, xr, yr, bw + dbw, bh + dbh, iou_min)
        key[3] = key[3] + dx
        key[4] = key[4] + dy
        nb = uniq.get_indexer(pd.MultiIndex.from_arrays(key))
        hit = np.nonzero(nb >= 0)[0]
        neighbours.append((hit, nb[hit]))
        cost += np.bincount(image_code[reps[hit]], weights=cell_count[nb[hit]],
                            minlength=len(cost)).astype(np.int64)
    unchecked_codes = np.nonzero(cost > cap)[0]
    skip_image = np.zeros(len(cost), bool)
    skip_image[unchecked_codes] = True
    images_by_code = pd.unique(boxes["image_id"])
    unchecked = {str(images_by_code[c]): int(cost[c]) for c in unchecked_codes}
    for hit, nb in neighbours:
        keep = ~skip_image[image_code[reps[hit]]]
        hit, nb = hit[keep], nb[keep]
        counts = cell_count[nb]
        # in blocks of about _PAIR_BLOCK candidate pairs, so that memory stays bounded
        ends = np.cumsum(counts)
        s0 = 0
        while s0 < len(hit):
            base = ends[s0 - 1] if s0 else 0
            s1 = max(s0 + 1, int(np.searchsorted(ends, base + _PAIR_BLOCK, side="right")))
            q, c = hit[s0:s1], counts[s0:s1]
            q_rep = np.repeat(q, c)
            within = np.arange(len(q_rep)) - np.repeat(np.cumsum(c) - c, c)
            k_rep = order[np.repeat(cell_start[nb[s0:s1]], c) + within]
            sel = q_rep < k_rep
            a, b = reps[q_rep[sel]], reps[k_rep[sel]]
            iou = _iou(x, y, w, h, a, b)
            close = iou >= iou_min
            pair_a.append(a[close])
            pair_b.append(b[close])
            s0 = s1
    a, b = np.concatenate(pair_a), np.concatenate(pair_b)
    if len(a):
        code = np.unique(np.minimum(a, b) * n + np.maximum(a, b))
        a, b = code // n, code % n
    ann = boxes["ann_id"].to_numpy()
    ids = boxes["image_id"].to_numpy()
    out = pd.DataFrame({"row_a": a.astype(np.int64), "row_b": b.astype(np.int64), "ann_id_a": ann[a],
                        "ann_id_b": ann[b], "image_id": ids[a], "iou": _iou(x, y, w, h, a, b)})
    out.attrs["unchecked"] = unchecked
    return out


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
    b[issue_column("box_degenerate")] = degenerate.to_numpy(bool)
    b[issue_column("box_outside_image")] = (known_size & ~degenerate & (
        (x < -tol) | (y < -tol) | (x + w > b["width_px"] + tol) | (y + h > b["height_px"] + tol))).to_numpy(bool)
    b[issue_column("box_unknown_category")] = b["category"].isna().to_numpy(bool)
    keep = ~degenerate.to_numpy()
    dups = duplicate_box_pairs(boxes[keep])
    rows_kept = np.nonzero(keep)[0]
    flag = np.zeros(len(b), bool)
    flag[rows_kept[dups["row_a"].to_numpy(np.int64)]] = True
    flag[rows_kept[dups["row_b"].to_numpy(np.int64)]] = True
    b[issue_column("box_duplicate")] = flag
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
    out += _per_image(b[b[issue_column("box_degenerate")]], "box_degenerate",
                      lambda r: f"box {r.ann_id} is {r.box_w_px:g} x {r.box_h_px:g} px")
    out += _per_image(b[b[issue_column("box_outside_image")]], "box_outside_image",
                      lambda r: (f"box {r.ann_id} [x {r.box_x_px:g}, y {r.box_y_px:g}, w {r.box_w_px:g}, "
                                 f"h {r.box_h_px:g}] px on a {r.width_px} x {r.height_px} px image"))
    out += _per_image(b[b[issue_column("box_unknown_category")]], "box_unknown_category",
                      lambda r: f"box {r.ann_id} has category id {r.category_id}, not in the category list")
    missing = b["error_kind"].isin(["missing_file"])
    out += _per_image(b[missing], "box_missing_image", lambda r: f"box {r.ann_id} is for a file that does not exist")
    out += _per_image(b.attrs["duplicate_pairs"], "box_duplicate",
                      lambda r: f"boxes {r.ann_id_a} and {r.ann_id_b} overlap with IoU {r.iou:.2f}")
    cap = LIMITS["max_box_pairs_per_image"]
    for image_id, n_pairs in sorted(b.attrs["duplicate_pairs"].attrs.get("unchecked", {}).items()):
        out.append(finding(image_id, "too_many_boxes", 1.0,
                           f"its boxes are packed so densely that the duplicate-box check would compare {n_pairs:,} "
                           f"pairs, over the cap of {cap:,} (max_box_pairs_per_image); it was not run on this image; "
                           f"{how_to_raise('max_box_pairs_per_image')}"))
    counts = boxes["image_id"].value_counts()
    no_box = img["error_kind"].isna() & ~img["image_id"].isin(counts.index)
    for image_id in img.loc[no_box, "image_id"]:
        out.append(finding(image_id, "no_boxes", 1.0,
                           f"no boxes, while {len(counts)} of {len(img)} images have some"))
    return out
