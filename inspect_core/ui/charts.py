"""Plotly figures for the Distributions page (no Streamlit import): compute here, draw on the page."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from inspect_core.ui.query import robust_outliers

MAX_SCATTER_POINTS = 50_000
NONE = "(none)"


def _group(df: pd.DataFrame, by: str | None) -> pd.Series | None:
    if not by or by == NONE or by not in df.columns:
        return None
    return df[by].astype("string").fillna(f"(no {by})")


def distribution_figure(df: pd.DataFrame, column: str, by: str | None = None, kind: str = "histogram") -> go.Figure:
    """Histogram or box plot of ``column``, one colour per value of ``by`` (label, split...)."""
    data = pd.DataFrame({column: pd.to_numeric(df[column], errors="coerce")})
    g = _group(df, by)
    color = None
    if g is not None:
        data[by] = g.to_numpy()
        color = by
    if kind == "box":
        fig = px.box(data, x=color, y=column, color=color, points="outliers")
    else:
        fig = px.histogram(data, x=column, color=color, barmode="overlay", opacity=0.65, nbins=50)
    fig.update_layout(margin=dict(l=10, r=10, t=30, b=10), height=380)
    return fig


def count_figure(df: pd.DataFrame, by: str = "label", color: str | None = "split") -> go.Figure:
    """Image counts per ``by`` value, split into colours (class balance, train vs val)."""
    x = _group(df, by)
    data = pd.DataFrame({by: x.to_numpy() if x is not None else ["(all)"] * len(df)})
    c = _group(df, color)
    if c is not None and color != by:
        data[color] = c.to_numpy()
        counts = data.groupby([by, color]).size().rename("images").reset_index()
        fig = px.bar(counts, x=by, y="images", color=color, barmode="group")
    else:
        counts = data.groupby(by).size().rename("images").reset_index()
        fig = px.bar(counts, x=by, y="images")
    fig.update_layout(margin=dict(l=10, r=10, t=30, b=10), height=360)
    return fig


def scatter_data(df: pd.DataFrame, x: str, y: str, max_points: int = MAX_SCATTER_POINTS,
                 seed: int = 0) -> tuple[pd.DataFrame, int]:
    """``(points, n_total)``: image_id, x, y, outlier flag; above ``max_points`` every outlier is kept
    and the rest sampled."""
    pts = pd.DataFrame({"image_id": df["image_id"].to_numpy(),
                        "x": pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float, na_value=np.nan),
                        "y": pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=float, na_value=np.nan)})
    pts["outlier"] = robust_outliers(pts["x"]) | robust_outliers(pts["y"])
    pts = pts[np.isfinite(pts["x"]) & np.isfinite(pts["y"])]
    n_total = len(pts)
    if n_total > max_points:
        out = pts[pts["outlier"]]
        rest = pts[~pts["outlier"]]
        keep = max(max_points - len(out), 0)
        rest = rest.sample(n=min(keep, len(rest)), random_state=seed)
        pts = pd.concat([out, rest]).sort_index()
    return pts.reset_index(drop=True), n_total


def scatter_figure(pts: pd.DataFrame, x: str, y: str) -> go.Figure:
    """Scatter of two columns; robust outliers (beyond median -/+ K_ROBUST robust sd on either axis, the
    property checks' cut) in red."""
    fig = go.Figure()
    for flag, name, colour, size in ((False, "images", "#4c78a8", 5), (True, "outliers", "#e45756", 8)):
        part = pts[pts["outlier"] == flag]
        fig.add_trace(go.Scattergl(x=part["x"], y=part["y"], mode="markers", name=name,
                                   customdata=part[["image_id"]].to_numpy(),
                                   marker=dict(color=colour, size=size, opacity=0.7),
                                   hovertemplate="%{customdata[0]}<br>x=%{x}<br>y=%{y}<extra></extra>"))
    fig.update_layout(xaxis_title=x, yaxis_title=y, dragmode="lasso", height=480,
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def box_size_figure(ann: pd.DataFrame, max_points: int = MAX_SCATTER_POINTS,
                    seed: int = 0) -> tuple[go.Figure, int, int]:
    """``(figure, n_shown, n_total)``: box width vs height in pixels, one colour per category. Above
    ``max_points`` boxes a fixed random sample of ``max_points`` is drawn (the same cap as ``scatter_data``),
    so a dataset with millions of boxes does not send them all to the browser on every rerun."""
    cols = [c for c in ("box_w_px", "box_h_px", "category") if c in ann.columns]
    data = ann[cols]
    n_total = len(data)
    if n_total > max_points:
        data = data.sample(n=max_points, random_state=seed).sort_index()
    fig = px.scatter(data, x="box_w_px", y="box_h_px", color="category" if "category" in data.columns else None,
                     title="Box width vs height (px)", render_mode="webgl")
    return fig, len(data), n_total


def selected_image_ids(event) -> list[str]:
    """image_ids of the points selected in a ``st.plotly_chart(on_select="rerun")`` event, in order."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        try:
            points = event.selection.points
        except AttributeError:
            return []
    ids = []
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)) and cd:
            cd = cd[0]
        if cd is not None:
            ids.append(str(cd))
    return list(dict.fromkeys(ids))
