"""property: images whose statistics are far from the rest of the dataset (robust statistics).

Each cut adapts to the dataset: median +/- K robust standard deviations (1.4826 x MAD), further
bounded by an absolute limit, so that a uniformly dark dataset does not flag half its images and a
clean dataset does not flag its mildest images. The detail of each finding names the value, the cut and
how the cut was made.
"""
from __future__ import annotations

import numpy as np

from .registry import finding, register

K_ROBUST = 4.0
CHECKS = {
    "dark": ("Mean brightness far below the dataset's (median - 4 robust sd, but at least 0.35 x median) "
             "and below 0.25 on a 0-1 scale."),
    "overexposed": ("Mean brightness far above the dataset's (median + 4 robust sd, but at most "
                    "1 - 0.35 x (1 - median)) and above 0.85."),
    "low_contrast": "Brightness spread (std) far below the dataset's (and below 0.08).",
    "blurry": ("Sharpness far below the dataset's: variance of the Laplacian at the scan's 80 px size divided by the "
               "grey-level variance (so low contrast alone does not read as blur), on a log scale."),
    "low_information": "Grey-level entropy far below the dataset's (and below 4 bits): nearly uniform.",
    "odd_size": "Pixel count (log scale) far from the dataset's typical size.",
    "odd_aspect_ratio": "Width/height ratio (log scale) far from the dataset's typical shape.",
    "grayscale": "A grey image in a dataset that is mostly colour (at least 80% colour images).",
}


# the robust statistics the cuts read: statistic name -> (column of ``property_frame``, on a log scale). A caller that
# has them already (a cluster scan: ``cluster.sketch.column_stats_from_sketches``) passes them as
# ``CheckContext.column_stats`` = {name: {"median", "robust_sd", "n"}, "grayscale": {"n_decoded", "n_gray"}}.
ROBUST_COLUMNS = {"brightness": ("brightness", False), "contrast": ("contrast", False),
                  "log_sharpness": ("sharpness", True), "entropy_bits": ("entropy_bits", False),
                  "log_pixel_count": ("pixel_count", True), "log_aspect_ratio": ("aspect_ratio", True)}


def property_frame(images):
    """The columns the cuts read, plus the derived ones (pixel_count, sharpness; aspect_ratio when absent); the
    scan's table is not copied or changed."""
    cols = ["image_id", "error_kind", "brightness", "contrast", "blur_laplacian_var", "entropy_bits", "width_px",
            "height_px", "gray_mode", "colourfulness", "mode"]
    img = images[cols + (["aspect_ratio"] if "aspect_ratio" in images else [])].copy()
    if "aspect_ratio" not in img:
        img["aspect_ratio"] = img["width_px"] / img["height_px"].where(img["height_px"] > 0)
    img["pixel_count"] = img["width_px"].astype(float) * img["height_px"].astype(float)
    img["sharpness"] = img["blur_laplacian_var"] / np.maximum((img["contrast"] * 255.0) ** 2, 1.0)
    return img


def robust_values(img, column: str, log: bool = False):
    """(raw values, the values the statistics are of (log-scaled when ``log``), rows that count: decoded, finite)."""
    raw = img[column].to_numpy(dtype=float)
    v = np.log(np.clip(raw, 1e-6, None)) if log else raw
    return raw, v, img["error_kind"].isna().to_numpy() & np.isfinite(v)


def gray_rows(img):
    """(decoded rows, grey rows among them): the grayscale check's counts."""
    decoded = img["error_kind"].isna()
    return decoded, decoded & (img["gray_mode"].astype(bool) | (img["colourfulness"] < 0.005))


def robust_center_scale(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    return med, mad


def _outliers(img, column, check, side, absolute=None, log=False, unit="", fmt="{:.3f}", min_scale=0.0,
              k=K_ROBUST, relative=None, stats=None):
    """Flag values beyond median -/+ k robust sd. ``relative`` (on a 0..1 quantity) keeps the cut from running
    off the scale when the spread is wide: on the low side the cut is at least median*relative, on the high side
    at most 1-(1-median)*relative. ``absolute`` then caps the cut (low side) or floors it (high side).
    ``stats``: the dataset's {"median", "robust_sd", "n"} of these values when computed elsewhere (``img`` is then
    a part of the dataset); else computed here from ``img``."""
    raw, v, ok = robust_values(img, column, log)
    if (stats["n"] if stats is not None else ok.sum()) < 8:
        return []
    med, scale = (stats["median"], stats["robust_sd"]) if stats is not None else robust_center_scale(v[ok])
    scale = max(scale, min_scale)
    adaptive = med - k * scale if side == "low" else med + k * scale
    cut = adaptive
    rel_cut = None
    if relative is not None:
        rel_cut = med * relative if side == "low" else 1.0 - (1.0 - med) * relative
        cut = max(cut, rel_cut) if side == "low" else min(cut, rel_cut)
    if absolute is not None:
        cut = min(cut, absolute) if side == "low" else max(cut, absolute)
    hit = ok & ((v < cut) if side == "low" else (v > cut))
    show = (lambda t: fmt.format(np.exp(t))) if log else (lambda t: fmt.format(t))
    how = (f"median {show(med)} {'-' if side == 'low' else '+'} {k:g} robust sd"
           + (f", kept {'above' if side == 'low' else 'below'} {show(rel_cut)} ("
              + (f"{relative:g} x median" if side == "low" else f"1 - {relative:g} x (1 - median)") + ")"
              if rel_cut is not None else "")
           + (f", {'capped' if side == 'low' else 'floored'} at {show(absolute)}" if absolute is not None else "")
           + (" (on a log scale)" if log else ""))
    out = []
    for image_id, val, z in zip(img.loc[hit, "image_id"], raw[hit], v[hit]):
        score = abs(z - med) / scale if scale > 0 else float("inf")
        out.append(finding(image_id, check, min(score, 1e6),
                           f"{column} {fmt.format(val)}{unit} {'<' if side == 'low' else '>'} cut {show(cut)}{unit} "
                           f"({how})"))
    return out


@register("property", CHECKS)
def check_property(ctx):
    img = property_frame(ctx.images)
    given = getattr(ctx, "column_stats", None) or {}

    def outliers(column, check, side, log=False, **kw):
        name = next(n for n, (c, lg) in ROBUST_COLUMNS.items() if c == column and lg == log)
        return _outliers(img, column, check, side, log=log, stats=given.get(name), **kw)

    out = []
    out += outliers("brightness", "dark", "low", absolute=0.25, min_scale=0.02, relative=0.35)
    out += outliers("brightness", "overexposed", "high", absolute=0.85, min_scale=0.02, relative=0.35)
    out += outliers("contrast", "low_contrast", "low", absolute=0.08, min_scale=0.01)
    # sharpness spreads widely on a log scale (textures vs smooth scenes): a slightly lower K
    out += outliers("sharpness", "blurry", "low", log=True, fmt="{:.3f}", min_scale=0.25, k=3.5)
    out += outliers("entropy_bits", "low_information", "low", absolute=4.0, unit=" bits", fmt="{:.2f}",
                    min_scale=0.1)
    out += outliers("pixel_count", "odd_size", "low", log=True, unit=" px", fmt="{:,.0f}", min_scale=0.1)
    out += outliers("pixel_count", "odd_size", "high", log=True, unit=" px", fmt="{:,.0f}", min_scale=0.1)
    out += outliers("aspect_ratio", "odd_aspect_ratio", "low", log=True, fmt="{:.2f}", min_scale=0.1)
    out += outliers("aspect_ratio", "odd_aspect_ratio", "high", log=True, fmt="{:.2f}", min_scale=0.1)
    decoded, gray = gray_rows(img)
    n_dec, n_gray = int(decoded.sum()), int(gray.sum())
    if "grayscale" in given:
        n_dec, n_gray = int(given["grayscale"]["n_decoded"]), int(given["grayscale"]["n_gray"])
    if n_dec and (n_dec - n_gray) / n_dec >= 0.8:
        for image_id, mode, c in zip(img.loc[gray, "image_id"], img.loc[gray, "mode"], img.loc[gray, "colourfulness"]):
            out.append(finding(image_id, "grayscale", 1.0,
                               f"grey image (mode {mode}, colourfulness {c:.4f} < 0.005) in a dataset where "
                               f"{(n_dec - n_gray) / n_dec:.0%} of images are colour"))
    return out
