"""Plotly figures for the Distributions page (no Streamlit import): compute here, draw on the page.

Every chart is aggregated here, so the browser gets bins and counts, never a column of 100,000 values; the
scatter gets a fixed random sample (``MAX_SCATTER_POINTS``, the size stated on the page) plus every image a
property check flags. Colours are fixed per split (``SPLIT_COLOURS``) and per class (by its place in the
dataset's class list), the same in every chart. Labels, paths and column names reach plotly escaped
(``plot_text``): plotly reads ``<b>``, ``<a href>`` and entities in text, so data must stay text.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..schema import issue_column

MAX_SCATTER_POINTS = 5_000
HIST_BINS = 50
NONE = "(none)"
SPLIT_COLOURS = {"train": "#4c78a8", "val": "#f58518", "valid": "#f58518", "validation": "#f58518",
                 "test": "#54a24b", "(no split)": "#9d9d9d"}
CLASS_COLOURS = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6",
                 "#9d755d", "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
FLAGGED_COLOUR = "#d62728"
_LAYOUT = dict(margin=dict(l=10, r=10, t=30, b=10))


def plot_text(value) -> str:
    """Data shown by plotly as the characters themselves: ``<b>x</b>`` stays those characters."""
    return html.escape("" if value is None else str(value), quote=False)


def _group(df: pd.DataFrame, by: str | None) -> pd.Series | None:
    if not by or by == NONE or by not in df.columns:
        return None
    return df[by].astype("string").fillna(f"(no {by})")


def colours(by: str | None, values, classes=()) -> dict[str, str]:
    """value -> colour: splits by name (``SPLIT_COLOURS``), classes by their place in ``classes`` (then the
    other values in sorted order), so a class or split has one colour in every chart."""
    values = [str(v) for v in values]
    if by == "split":
        rest = sorted(v for v in values if v not in SPLIT_COLOURS)
        out = {v: SPLIT_COLOURS[v] for v in values if v in SPLIT_COLOURS}
        out.update({v: CLASS_COLOURS[(i + 5) % len(CLASS_COLOURS)] for i, v in enumerate(rest)})
        return out
    order = list(dict.fromkeys([str(c) for c in classes] + sorted(set(values))))
    return {v: CLASS_COLOURS[order.index(v) % len(CLASS_COLOURS)] for v in values}


def _finite(values) -> np.ndarray:
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return x[np.isfinite(x)]


def histogram_data(df: pd.DataFrame, column: str, by: str | None = None,
                   bins: int = HIST_BINS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(edges, {group: counts})``: one set of bin edges over all finite values, counts per group."""
    x = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(x)
    if not ok.any():
        return np.array([0.0, 1.0]), {}
    lo, hi = float(x[ok].min()), float(x[ok].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    g = _group(df, by)
    if g is None:
        return edges, {"all images": np.histogram(x[ok], edges)[0]}
    groups = g.to_numpy()
    return edges, {str(v): np.histogram(x[ok & (groups == v)], edges)[0] for v in sorted(set(groups[ok]))}


def distribution_figure(df: pd.DataFrame | None, column: str, by: str | None = None, kind: str = "histogram",
                        classes=(), data=None) -> go.Figure:
    """Histogram (one outline per value of ``by``, so ten classes stay readable) or box plot of ``column``;
    bins and quartiles computed here, or given as ``data`` (a big scan's, from its memory-mapped columns:
    ``histogram_data``'s result, or the box plot's {group: values})."""
    fig = go.Figure()
    if kind == "box":
        g = _group(df, by) if data is None else None
        groups = data if data is not None else {"all images": df[column]} if g is None else {
            str(v): df.loc[(g == v).to_numpy(), column] for v in sorted(g.unique())}
        cmap = colours(by, groups, classes)
        for name, vals in groups.items():
            v = _finite(vals)
            if not len(v):
                continue
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            iqr = q3 - q1
            lo_f, hi_f = v[v >= q1 - 1.5 * iqr].min(), v[v <= q3 + 1.5 * iqr].max()
            fig.add_trace(go.Box(name=plot_text(name), q1=[q1], median=[med], q3=[q3], lowerfence=[lo_f],
                                 upperfence=[hi_f], mean=[float(v.mean())],
                                 marker_color=cmap.get(name, CLASS_COLOURS[0])))
        fig.update_layout(yaxis_title=plot_text(column), showlegend=False, height=380, **_LAYOUT)
        return fig
    edges, counts = histogram_data(df, column, by) if data is None else data
    centres = (edges[:-1] + edges[1:]) / 2
    cmap = colours(by, counts, classes)
    for name, c in counts.items():
        fig.add_trace(go.Scatter(x=centres, y=c, mode="lines", line_shape="hvh", name=plot_text(name),
                                 line=dict(color=cmap.get(name, CLASS_COLOURS[0]), width=2)))
    fig.update_layout(xaxis_title=plot_text(column), yaxis_title="images", height=380, hovermode="x unified",
                      **_LAYOUT)
    return fig


def count_figure(df: pd.DataFrame | None, by: str = "label", color: str | None = "split", classes=(),
                 counts=None) -> go.Figure:
    """Image counts per ``by`` value, split into colours (class balance, train vs val); ``counts``: given (a big
    scan's, from its memory-mapped columns) as the crosstab (a DataFrame) or the value counts (a Series)."""
    fig = go.Figure()
    if counts is None:
        x = _group(df, by)
        x = x if x is not None else pd.Series(["(all)"] * len(df), dtype="string")
        c = _group(df, color) if color != by else None
        counts = pd.crosstab(x.to_numpy(), c.to_numpy()) if c is not None else x.value_counts().sort_index()
    if isinstance(counts, pd.DataFrame):
        cmap = colours(color, counts.columns, classes)
        for col in counts.columns:
            fig.add_trace(go.Bar(x=[plot_text(v) for v in counts.index], y=counts[col].to_numpy(),
                                 name=plot_text(col), marker_color=cmap[str(col)]))
        fig.update_layout(barmode="group", legend_title_text=plot_text(color))
    else:
        cmap = colours(by, counts.index, classes)
        fig.add_trace(go.Bar(x=[plot_text(v) for v in counts.index], y=counts.to_numpy(),
                             marker_color=[cmap[str(v)] for v in counts.index]))
    fig.update_layout(xaxis_title=plot_text(by), yaxis_title="images", height=360, **_LAYOUT)
    return fig


def default_scatter_axes(nums: list[str]) -> tuple[str, str]:
    """The Distributions scatter's first x and y among the numeric columns ``nums``."""
    x = next((c for c in ("brightness", "width_px") if c in nums), nums[0])
    y = next((c for c in ("contrast", "blur_laplacian_var", "height_px") if c in nums and c != x),
             nums[min(1, len(nums) - 1)])
    return x, y


def flagged_by(df: pd.DataFrame, checks) -> tuple[np.ndarray, list[str]]:
    """``(flagged, names)``: per row, whether any of ``checks`` flags it (its ``is_<check>`` column), and the
    names of those checks for each row ("" when none)."""
    cols = [c for c in checks if issue_column(c) in df.columns]
    if not cols:
        return np.zeros(len(df), dtype=bool), [""] * len(df)
    flags = np.column_stack([df[issue_column(c)].to_numpy(dtype=bool, na_value=False) for c in cols])
    flagged = flags.any(axis=1)
    names = np.full(len(df), "", dtype=object)
    hit = np.flatnonzero(flagged)   # names built for the flagged rows only (a Python loop over 100,000 took 3 s)
    names[hit] = [", ".join(cols[j] for j in np.flatnonzero(r)) for r in flags[hit]]
    return flagged, list(names)


def scatter_data(df: pd.DataFrame, x: str, y: str, flag_checks=(), max_points: int = MAX_SCATTER_POINTS,
                 seed: int = 0) -> tuple[pd.DataFrame, int]:
    """``(points, n_total)``: image_id, x, y, ``flagged`` (a finding of one of ``flag_checks``: the property
    checks' own findings, no second definition) and ``checks``. Above ``max_points`` every flagged image is
    kept and the rest is a fixed random sample."""
    flagged, names = flagged_by(df, flag_checks)
    pts = pd.DataFrame({"image_id": df["image_id"].to_numpy(),
                        "x": pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float, na_value=np.nan),
                        "y": pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=float, na_value=np.nan),
                        "flagged": flagged, "checks": names})
    pts = pts[np.isfinite(pts["x"]) & np.isfinite(pts["y"])]
    n_total = len(pts)
    if n_total > max_points:
        out = pts[pts["flagged"]]
        rest = pts[~pts["flagged"]]
        keep = max(max_points - len(out), 0)
        rest = rest.sample(n=min(keep, len(rest)), random_state=seed)
        pts = pd.concat([out, rest]).sort_index()
    return pts.reset_index(drop=True), n_total


def scatter_figure(pts: pd.DataFrame, x: str, y: str) -> go.Figure:
    """Scatter of two columns; images a property check flags in red (hover names the checks)."""
    fig = go.Figure()
    for flag, name, colour, size in ((False, "images", "#4c78a8", 5),
                                     (True, "flagged by a property check", FLAGGED_COLOUR, 8)):
        part = pts[pts["flagged"] == flag]
        shown = np.column_stack([part["image_id"].to_numpy(dtype=object),
                                 [plot_text(v) for v in part["image_id"]],
                                 [plot_text(v) for v in part["checks"]]]) if len(part) else np.empty((0, 3))
        fig.add_trace(go.Scattergl(x=part["x"], y=part["y"], mode="markers", name=name, customdata=shown,
                                   marker=dict(color=colour, size=size, opacity=0.7),
                                   hovertemplate="%{customdata[1]}<br>x=%{x}<br>y=%{y}<br>%{customdata[2]}"
                                                 "<extra></extra>"))
    fig.update_layout(xaxis_title=plot_text(x), yaxis_title=plot_text(y), dragmode="lasso", height=480, **_LAYOUT)
    return fig


def box_size_figure(ann: pd.DataFrame, max_points: int = MAX_SCATTER_POINTS, seed: int = 0,
                    classes=()) -> tuple[go.Figure, int, int]:
    """``(figure, n_shown, n_total)``: box width vs height in pixels, one colour per category. Above
    ``max_points`` boxes a fixed random sample of ``max_points`` is drawn (the same cap as ``scatter_data``),
    so a dataset with millions of boxes does not send them all to the browser on every rerun."""
    cols = [c for c in ("box_w_px", "box_h_px", "category") if c in ann.columns]
    data = ann[cols]
    n_total = len(data)
    if n_total > max_points:
        data = data.sample(n=max_points, random_state=seed).sort_index()
    fig = go.Figure()
    groups = data["category"].astype("string").fillna("(no category)") if "category" in data.columns else \
        pd.Series(["boxes"] * len(data), index=data.index, dtype="string")
    cmap = colours("category", groups.unique(), classes)
    for cat in sorted(groups.unique()):
        part = data[(groups == cat).to_numpy()]
        fig.add_trace(go.Scattergl(x=part["box_w_px"], y=part["box_h_px"], mode="markers", name=plot_text(cat),
                                   marker=dict(color=cmap[str(cat)], size=5, opacity=0.7)))
    fig.update_layout(title="Box width vs height (px)", xaxis_title="box_w_px", yaxis_title="box_h_px", **_LAYOUT)
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


def confusion_points(matrix: pd.DataFrame) -> pd.DataFrame:
    """Long form of a confusion matrix: given (the row: the given label, or the annotated class), predicted,
    count; one row per cell."""
    long = matrix.stack().rename("count").reset_index()
    long.columns = ["given", "predicted", "count"]
    return long


def confusion_figure(matrix: pd.DataFrame, *, rows: str = "given label", unit: str = "images") -> go.Figure:
    """A clickable confusion matrix (rows: ``rows``, columns: predicted): one square marker per cell, coloured and
    labelled by its count of ``unit``. The Model triage page's classes and its detection section's boxes (with
    a background row and column) both use it; ``selected_cell`` reads a click."""
    # plotly reads a little HTML in tick and hover text: class names are shown escaped, as plain text
    matrix = matrix.rename(index=html.escape, columns=html.escape)
    pts = confusion_points(matrix)
    size = max(18, min(60, int(420 / max(1, len(matrix)))))
    fig = go.Figure(go.Scatter(
        x=pts["predicted"], y=pts["given"], mode="markers+text", text=pts["count"].astype(str),
        textfont={"color": ["white" if c > pts["count"].max() / 2 else "black" for c in pts["count"]]},
        customdata=np.stack([pts["given"], pts["predicted"]], axis=1),
        marker={"symbol": "square", "size": size, "color": np.log1p(pts["count"]), "colorscale": "Blues",
                "line": {"width": 1, "color": "#888"}},
        hovertemplate=f"{rows.split()[0]} %{{y}}<br>predicted %{{x}}<br>%{{text}} {unit}<extra></extra>"))
    fig.update_layout(xaxis_title="predicted", yaxis_title=rows, height=120 + size * len(matrix),
                      margin={"l": 10, "r": 10, "t": 10, "b": 10}, clickmode="event+select")
    fig.update_yaxes(autorange="reversed", type="category", categoryorder="array", categoryarray=list(matrix.index))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(matrix.columns), side="top")
    return fig


def selected_cell(event) -> tuple[str, str] | None:
    """(row, predicted) of the clicked confusion-matrix cell, from a plotly selection event."""
    try:
        points = event.selection.points if hasattr(event, "selection") else event["selection"]["points"]
    except (KeyError, TypeError, AttributeError):
        return None
    for p in points or []:
        given, predicted = p.get("y"), p.get("x")
        if given is not None and predicted is not None:
            return html.unescape(str(given)), html.unescape(str(predicted))
    return None
