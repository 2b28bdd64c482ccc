"""The gallery's filter / sort / page logic and the Distributions helpers, without Streamlit."""
from __future__ import annotations

import numpy as np
import pandas as pd

from inspect_core.ui.charts import scatter_data, scatter_figure, selected_image_ids
from inspect_core.ui.query import (NO_LABEL, GalleryQuery, filter_mask, gallery_page, numeric_columns)
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


def test_scatter_outliers_are_the_property_checks_findings_and_sampling_keeps_them():
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n),
                       "is_dark": False, "is_blurry": False})
    df.loc[7, "a"] = 50.0                      # far out, but no check flags it: not red
    df.loc[[3, 11], "is_dark"] = True
    df.loc[11, "is_blurry"] = True
    pts, total = scatter_data(df, "a", "b", flag_checks=["dark", "blurry", "odd_size"], max_points=300)
    assert total == n and len(pts) == 300
    flagged = pts.set_index("image_id").loc[pts["flagged"].to_numpy(), "checks"].to_dict()
    assert flagged == {"i3": "dark", "i11": "dark, blurry"}
    fig = scatter_figure(pts, "a", "b")
    assert [t.name for t in fig.data] == ["images", "flagged by a property check"]
    event = {"selection": {"points": [{"customdata": ["i7"]}, {"customdata": ["i3"]}, {"customdata": ["i7"]}],
                           "point_indices": [0, 1, 0], "box": [], "lasso": []}}
    assert selected_image_ids(event) == ["i7", "i3"]
    assert selected_image_ids({"selection": {"points": []}}) == []
    assert selected_image_ids(None) == []


def test_charts_are_aggregated_coloured_the_same_and_keep_text_as_text():
    from inspect_core.ui.charts import SPLIT_COLOURS, count_figure, distribution_figure, histogram_data
    xss = "<b>bold</b><a href='javascript:alert(1)'>x</a>"
    n = 10_000
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "v": rng.normal(0, 1, n),
                       "label": rng.choice(["cat", "dog", xss], n), "split": rng.choice(["train", "val"], n)})
    edges, counts = histogram_data(df, "v", "label")
    assert len(edges) == 51 and sum(int(c.sum()) for c in counts.values()) == n
    hist = distribution_figure(df, "v", "label", classes=["dog", "cat"])
    assert sum(len(t.x) for t in hist.data) == 3 * 50                    # bins, not 10,000 values
    names = {t.name for t in hist.data}
    assert "&lt;b&gt;bold&lt;/b&gt;&lt;a href='javascript:alert(1)'&gt;x&lt;/a&gt;" in names and xss not in names
    dog = next(t for t in hist.data if t.name == "dog").line.color
    bars = count_figure(df, "label", None, classes=["dog", "cat"])
    assert list(bars.data[0].marker.color)[list(bars.data[0].x).index("dog")] == dog   # one colour per class
    by_split = count_figure(df, "label", "split")
    assert {t.name: t.marker.color for t in by_split.data} == {"train": SPLIT_COLOURS["train"],
                                                               "val": SPLIT_COLOURS["val"]}
    box = distribution_figure(df, "v", "split", kind="box")
    assert all(t.q1 is not None and t.y is None for t in box.data)      # quartiles computed here


def test_md_escape_shows_characters():
    assert md_escape("<img src=x onerror=alert(1)>") == r"\<img src\=x onerror\=alert\(1\)\>"
    assert md_escape("**bold** :red[x]\nnext") == r"\*\*bold\*\* \:red\[x\] next"


def test_boxes_flagged_by_the_box_tables_check_columns():
    from types import SimpleNamespace

    from inspect_core.ui.viewer import _boxes_of
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
