"""The gallery's filter / sort / page logic and the Distributions helpers, without Streamlit."""
from __future__ import annotations

import numpy as np
import pandas as pd

from inspect_core.ui.charts import scatter_data, scatter_figure, selected_image_ids
from inspect_core.ui.query import (NO_LABEL, GalleryQuery, filter_mask, gallery_page, numeric_columns,
                                   robust_outliers)
from inspect_core.ui.text import md_escape


def _images():
    return pd.DataFrame({
        "image_id": pd.array([f"{s}/{c}/{k}.jpg" for s, c, k in
                              [("train", "cat", 0), ("train", "cat", 1), ("train", "dog", 2), ("val", "dog", 3),
                               ("val", "cat", 4), ("train", "x", 5)]], dtype="string"),
        "label": pd.array(["cat", "cat", "dog", "dog", "cat", None], dtype="string"),
        "split": pd.array(["train", "train", "train", "val", "val", "train"], dtype="string"),
        "brightness": [0.5, 0.1, np.nan, 0.9, 0.3, 0.7],
        "width_px": [10, 20, 30, 40, 50, 60],
        "is_dark": [False, True, False, False, True, False],
        "is_blurry": [False, False, True, False, False, False],
    })


FAMILIES = {"property": ["dark", "blurry"]}


def test_numeric_columns_leave_out_flags():
    assert numeric_columns(_images()) == ["brightness", "width_px"]


def test_filters_combine():
    df = _images()
    ids = lambda q: list(df.loc[filter_mask(df, q, FAMILIES)[0], "image_id"])  # noqa: E731
    assert ids(GalleryQuery(labels=("cat",), splits=("train",))) == ["train/cat/0.jpg", "train/cat/1.jpg"]
    assert ids(GalleryQuery(labels=(NO_LABEL,))) == ["train/x/5.jpg"]
    assert ids(GalleryQuery(checks=("dark",))) == ["train/cat/1.jpg", "val/cat/4.jpg"]
    assert ids(GalleryQuery(families=("property",))) == ["train/cat/1.jpg", "train/dog/2.jpg", "val/cat/4.jpg"]
    assert ids(GalleryQuery(ranges=(("width_px", 20, 40),))) == ["train/cat/1.jpg", "train/dog/2.jpg",
                                                                  "val/dog/3.jpg"]
    assert ids(GalleryQuery(ranges=(("brightness", 0.0, 1.0),))) == [
        i for i in df["image_id"] if i != "train/dog/2.jpg"]  # a missing value is outside every range
    assert ids(GalleryQuery(search="VAL/")) == ["val/dog/3.jpg", "val/cat/4.jpg"]
    assert ids(GalleryQuery(checks=("no_such_check",))) == []
    mask, warnings = filter_mask(df, GalleryQuery(ranges=(("nope", 0, 1),)), FAMILIES)
    assert mask.all() and "nope" in warnings[0]


def test_review_status_filter():
    df = _images()
    dec = pd.DataFrame({"image_id": ["train/cat/0.jpg", "val/dog/3.jpg"], "action": ["remove", "keep"]})
    ids = lambda q: list(df.loc[filter_mask(df, q, FAMILIES, dec)[0], "image_id"])  # noqa: E731
    assert ids(GalleryQuery(decisions=("remove",))) == ["train/cat/0.jpg"]
    assert len(ids(GalleryQuery(decisions=("undecided",)))) == 4
    assert ids(GalleryQuery(decisions=("keep", "remove"))) == ["train/cat/0.jpg", "val/dog/3.jpg"]


def test_sort_both_ways_missing_last_and_pages():
    df = _images()
    up = gallery_page(df, GalleryQuery(sort_by="brightness", page_size=4), FAMILIES)
    assert list(up.rows["brightness"]) == [0.1, 0.3, 0.5, 0.7]
    assert (up.n_match, up.n_pages, up.page) == (6, 2, 1)
    last = gallery_page(df, GalleryQuery(sort_by="brightness", page=2, page_size=4), FAMILIES)
    assert list(last.rows["image_id"]) == ["val/dog/3.jpg", "train/dog/2.jpg"]  # 0.9 then the missing value
    down = gallery_page(df, GalleryQuery(sort_by="brightness", descending=True, page_size=3), FAMILIES)
    assert list(down.rows["brightness"]) == [0.9, 0.7, 0.5]
    clamped = gallery_page(df, GalleryQuery(page=99, page_size=4), FAMILIES)
    assert clamped.page == 2 and len(clamped.rows) == 2
    by_label = gallery_page(df, GalleryQuery(sort_by="label", descending=True), FAMILIES)
    assert list(by_label.rows["label"].fillna("-")) == ["dog", "dog", "cat", "cat", "cat", "-"]
    empty = gallery_page(df, GalleryQuery(search="zzz"), FAMILIES)
    assert (empty.n_match, empty.n_pages, len(empty.rows)) == (0, 1, 0)


def test_robust_outliers():
    x = pd.Series([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 25.0, np.nan])
    assert list(robust_outliers(x)) == [False] * 6 + [True, False]
    assert not robust_outliers(pd.Series([2.0] * 10)).any()


def test_robust_outliers_use_the_property_checks_cut():
    """Red points in a scatter are exactly the values beyond median -/+ K_ROBUST robust sd, as in the checks."""
    from inspect_core.checks.property import K_ROBUST, robust_center_scale
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, 400)
    med, scale = robust_center_scale(x)
    # planted values between the old 3.5 cut and K_ROBUST, and just beyond K_ROBUST
    x[:5] = med + 3.8 * scale
    x[5:10] = med - (K_ROBUST + 0.3) * scale
    med, scale = robust_center_scale(x)
    expected = np.abs(x - med) > K_ROBUST * scale
    got = robust_outliers(pd.Series(x))
    assert (got == expected).all()
    assert not got[:5].any() and got[5:10].all()


def test_scatter_keeps_outliers_when_sampling_and_selection_gives_ids():
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n)})
    df.loc[7, "a"] = 50.0
    pts, total = scatter_data(df, "a", "b", max_points=300)
    assert total == n and len(pts) == 300
    assert "i7" in set(pts.loc[pts["outlier"], "image_id"])
    fig = scatter_figure(pts, "a", "b")
    assert [t.name for t in fig.data] == ["images", "outliers"]
    event = {"selection": {"points": [{"customdata": ["i7"]}, {"customdata": ["i3"]}, {"customdata": ["i7"]}],
                           "point_indices": [0, 1, 0], "box": [], "lasso": []}}
    assert selected_image_ids(event) == ["i7", "i3"]
    assert selected_image_ids({"selection": {"points": []}}) == []
    assert selected_image_ids(None) == []


def test_md_escape_shows_characters():
    assert md_escape("<img src=x onerror=alert(1)>") == r"\<img src\=x onerror\=alert\(1\)\>"
    assert md_escape("**bold** :red[x]\nnext") == r"\*\*bold\*\* \:red\[x\] next"


def test_boxes_flagged_by_the_box_tables_check_columns():
    from types import SimpleNamespace

    from inspect_core.ui.widgets import _boxes_of
    ann = pd.DataFrame({"ann_id": [1, 2, 3], "image_id": ["a.jpg", "a.jpg", "b.jpg"],
                        "is_box_degenerate": [False, True, False], "is_box_duplicate": [False, False, True]})
    scan = SimpleNamespace(annotations=ann, findings=pd.DataFrame())
    assert [(b["ann_id"], b["flagged"]) for b in _boxes_of(scan, "a.jpg")] == [(1, False), (2, True)]
    assert [(b["ann_id"], b["flagged"]) for b in _boxes_of(scan, "b.jpg")] == [(3, True)]
    assert _boxes_of(scan, "c.jpg") == []


def test_sort_by_a_mixed_type_column():
    df = _images()
    df["meta"] = pd.Series([3, "b", None, 1.5, "a", 2], dtype=object)
    page = gallery_page(df, GalleryQuery(sort_by="meta"), FAMILIES)
    assert page.n_match == 6 and list(page.rows["image_id"])[-1] == "train/dog/2.jpg"


def test_box_scatter_is_sampled_with_the_scatter_cap():
    from inspect_core.ui.charts import box_size_figure
    rng = np.random.default_rng(1)
    n = 1200
    ann = pd.DataFrame({"image_id": [f"i{k % 300}" for k in range(n)], "box_w_px": rng.uniform(1, 100, n),
                        "box_h_px": rng.uniform(1, 100, n), "category": rng.choice(["a", "b"], n)})
    fig, shown, total = box_size_figure(ann, max_points=500)
    assert (shown, total) == (500, n)
    assert sum(len(t.x) for t in fig.data) == 500
    fig, shown, total = box_size_figure(ann.head(100), max_points=500)
    assert (shown, total) == (100, 100) and sum(len(t.x) for t in fig.data) == 100
