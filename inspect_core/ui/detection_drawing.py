"""Drawing the detection section's boxes with PIL: annotations solid (red when in error, grey when deleted), predictions
dashed with their score (blue true, orange false positives, magenta accepted), crowd regions hatched teal; the PR
figure. Used by ``ui/detection_triage.py``."""
from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw, ImageFont

from inspect_core.detection.decisions import key_id

ANN_COLOUR, ANN_ERROR_COLOUR, ANN_DELETED_COLOUR = (40, 200, 60), (230, 30, 30), (150, 150, 150)
TP_COLOUR, FP_COLOUR, ACCEPTED_COLOUR = (30, 120, 230), (245, 150, 20), (200, 40, 200)
CROWD_COLOUR = (0, 190, 200)        # a crowd region (COCO iscrowd) and the predictions ignored inside it
CROWD_HATCH = {"spacing_px": 8, "alpha": 0.55}


# -- drawing ---------------------------------------------------------------------------------------
def _dashed_rect(draw: ImageDraw.ImageDraw, x0, y0, x1, y1, colour, width_px: int, dash_px: int = 6) -> None:
    for (ax, ay, bx, by) in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
        length = max(abs(bx - ax), abs(by - ay))
        n = max(1, int(length // (2 * dash_px)))
        for k in range(n + 1):
            t0, t1 = min(1.0, 2 * k * dash_px / max(length, 1)), min(1.0, (2 * k + 1) * dash_px / max(length, 1))
            if t0 >= 1.0:
                break
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=colour, width=width_px)


@lru_cache(maxsize=1)
def _font():
    """PIL's built-in bitmap font (no TrueType file read: ``load_default()`` loads one when FreeType is there)."""
    return ImageFont.load_default_imagefont()


@lru_cache(maxsize=8192)
def _label_image(text: str, colour: tuple) -> Image.Image:
    """A box's label (white text on its colour), rendered once: a rerun pastes it (text rendering is the slow part
    of drawing a tile)."""
    font = _font()
    tw = int(np.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font)))
    img = Image.new("RGB", (tw + 5, 12), colour)
    ImageDraw.Draw(img).text((2, 0), text, fill=(255, 255, 255), font=font)
    return img


def _label(out: Image.Image, x, y, text, colour, below: bool = False) -> None:
    ty = y if below else max(y - 11, 0)
    out.paste(_label_image(text, tuple(colour)), (int(x), int(ty)))


def short_key(box_key: str) -> str:
    kind, num = key_id(box_key)
    return f"{'A' if kind == 'ann' else 'P'}{num}"


def _truthy(v) -> bool:
    return False if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else bool(v)


def is_crowd(boxes: pd.DataFrame) -> np.ndarray:
    """Per row of an annotations table: a crowd region (COCO ``iscrowd``; absent column: none)."""
    if "iscrowd" not in boxes.columns:
        return np.zeros(len(boxes), bool)
    return np.array([_truthy(v) for v in boxes["iscrowd"]], bool)


def _hatch(out: Image.Image, f, colour, spacing_px: int, alpha: float) -> None:
    """Diagonal lines across the box ``f`` (x0, y0, x1, y1), blended into ``out`` (the picture stays visible)."""
    x0, y0, x1, y1 = (int(round(v)) for v in f)
    if x1 <= x0 or y1 <= y0:
        return
    region = out.crop((x0, y0, x1 + 1, y1 + 1))
    lined = region.copy()
    d = ImageDraw.Draw(lined)
    w, h = region.size
    for k in range(-h, w, spacing_px):
        d.line([(k, 0), (k + h, h)], fill=colour, width=1)
    out.paste(Image.blend(region, lined, alpha), (x0, y0))


def draw_detections(img: Image.Image, scale: float, ann: pd.DataFrame, pred: pd.DataFrame, min_score: float,
                    decisions: dict | None = None, width_px: int = 2) -> Image.Image:
    """A copy of ``img`` with the annotated boxes solid (green; red when in an error; grey when deleted) and the
    predictions scoring at least ``min_score`` dashed (blue: true positive, orange: false positive; magenta and
    solid once accepted) with class and score. A crowd region (``iscrowd``) is hatched teal under the other boxes,
    labelled "crowd", and the predictions ignored inside it are dashed teal (neither TP nor FP).
    ``decisions``: {box_key: decision in force}."""
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    decisions = decisions or {}
    w_img, h_img = out.size

    def frame(r):
        x, y, w, h = (float(v) * scale for v in (r.box_x_px, r.box_y_px, r.box_w_px, r.box_h_px))
        if not np.isfinite([x, y, w, h]).all():
            return None
        return (min(max(x, 0), w_img - 1), min(max(y, 0), h_img - 1),
                min(max(x + w, 0), w_img - 1), min(max(y + h, 0), h_img - 1))

    crowd = is_crowd(ann)
    box = ["box_x_px", "box_y_px", "box_w_px", "box_h_px", "box_key", "category"]
    ann = ann[[c for c in box + ["error_type", "check"] if c in ann.columns]]       # the columns drawn: the rows
    pred = pred[[c for c in box + ["score", "is_tp", "error_type"] if c in pred.columns]]   # are read fast
    for r, c in zip(ann.itertuples(index=False), crowd):       # crowd regions first: every box stays on top
        f = frame(r) if c else None
        if f is not None:
            _hatch(out, f, CROWD_COLOUR, **CROWD_HATCH)
    for r in pred.itertuples(index=False):
        if r.score < min_score:
            continue
        f = frame(r)
        if f is None:
            continue
        d = decisions.get(r.box_key)
        accepted = d is not None and d["action"] == "accept"
        in_crowd = str(getattr(r, "error_type", "")) == "ignored"
        colour = ACCEPTED_COLOUR if accepted else (TP_COLOUR if r.is_tp else CROWD_COLOUR if in_crowd else FP_COLOUR)
        if accepted:
            draw.rectangle([f[:2], (max(f[2], f[0]), max(f[3], f[1]))], outline=colour, width=width_px)
        else:
            _dashed_rect(draw, *f, colour, width_px)
        cat = d["new_category"] if accepted else r.category
        _label(out, f[0], min(f[3] + 1, h_img - 12), f"{short_key(r.box_key)} {cat} {r.score:.2f}"
               + (" in crowd" if in_crowd and not accepted else ""), colour, below=True)
    for r, c in zip(ann.itertuples(index=False), crowd):
        f = frame(r)
        if f is None:
            continue
        d = decisions.get(r.box_key)
        deleted = d is not None and d["action"] == "delete"
        colour = (ANN_DELETED_COLOUR if deleted else CROWD_COLOUR if c else
                  ANN_ERROR_COLOUR if (r.error_type or r.check) else ANN_COLOUR)
        draw.rectangle([f[:2], (max(f[2], f[0]), max(f[3], f[1]))], outline=colour, width=width_px)
        cat = f"{r.category}->{d['new_category']}" if d is not None and d["action"] == "relabel" else str(r.category)
        _label(out, f[0], f[1], f"{short_key(r.box_key)} " + ("crowd " if c else "") + cat
               + (" (deleted)" if deleted else ""), colour)
    return out


def image_with_boxes(scan, image_id: str, ann, pred, min_score: float, max_side_px: int,
                     decisions: dict | None = None) -> tuple[Image.Image, str | None]:
    """The display image with its boxes, or a grey frame of the image's size (boxes drawn) naming why the
    image itself cannot be shown."""
    img, scale, reason = _display_image(str(scan.dataset.root), str(image_id), int(max_side_px),
                                        _file_stamp(scan.dataset.root, image_id))
    if img is None:
        row = scan.images.loc[scan.images["image_id"] == image_id]
        known = len(row) and "width_px" in row and \
            np.isfinite(row.iloc[0][["width_px", "height_px"]].astype(float)).all()
        w, h = (float(row.iloc[0]["width_px"]), float(row.iloc[0]["height_px"])) if known else (640, 480)
        scale = min(1.0, max_side_px / max(w, h, 1))
        img = Image.new("RGB", (max(1, int(w * scale)), max(1, int(h * scale))), (200, 200, 200))
    return draw_detections(img, scale, ann, pred, min_score, decisions), reason


def _file_stamp(root, image_id: str) -> str:
    """Size and mtime of an image file ('' when it cannot be read): the display cache's version of the file."""
    try:
        st_ = (Path(root) / str(image_id)).stat()
        return f"{st_.st_size}:{st_.st_mtime_ns}"
    except (OSError, ValueError):
        return ""


@st.cache_resource(show_spinner=False, max_entries=128)
def _display_image(root: str, image_id: str, max_side_px: int, stamp: str):
    """The image decoded and reduced once per file version and size (a slider move or a filter redraws the boxes
    on it, never decodes it again); shared and read-only: ``draw_detections`` draws on a copy."""
    from inspect_core.thumbs import display_image
    return display_image(root, image_id, max_side_px)


def pr_figure(curves: pd.DataFrame, iou: float):
    import plotly.graph_objects as go
    fig = go.Figure()
    for cat, g in curves.loc[np.isclose(curves["iou"], iou)].groupby("category"):
        fig.add_trace(go.Scatter(x=g["recall"], y=g["precision"], mode="lines", name=html.escape(str(cat))))
    fig.update_layout(xaxis_title="recall", yaxis_title="precision", height=380,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, title=f"Precision-recall at IoU {iou:g}")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return fig
