"""inspect_core.suite.slices: each slice kind on a tiny images table, the right rows worked out by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspect_core.suite.slices import (
    SliceData,
    SliceError,
    SliceEvaluator,
    gallery_query_to_slice,
    mask_of,
)
from inspect_core.suite.spec import parse_suite
from inspect_core.ui.query import GalleryQuery, filter_mask

IMAGES = pd.DataFrame({
    "image_id": ["tr/cat/1.jpg", "tr/cat/2.jpg", "tr/dog/3.jpg", "va/cat/4.jpg", "va/dog/5.jpg", "va/dog/6.jpg",
                 "te/cat/7.jpg", "te/dog/8.jpg", "te/dog/9.jpg", "te/cat/10.jpg"],
    "label": pd.array(["cat", "cat", "dog", "cat", "dog", "dog", "cat", "dog", "dog", "cat"], dtype="string"),
    "split": pd.array(["train"] * 3 + ["val"] * 3 + ["test"] * 4, dtype="string"),
    "brightness": [10.0, 200, 50, 20, 120, 90, 5, 250, 60, 130],
    "n_boxes": [0, 1, 2, 0, 1, 3, 1, 0, 2, 1],
    "meta_camera": pd.array(["A", "B", "A", "A", None, "B", "B", "A", "A", "B"], dtype="string"),
    "is_dark": [True, False, False, True, False, False, True, False, False, False],
})
FINDINGS = pd.DataFrame({"image_id": ["tr/cat/1.jpg", "va/cat/4.jpg", "te/dog/8.jpg"],
                         "check": ["dark", "dark", "overexposed"], "family": ["exposure"] * 3})
DECISIONS = pd.DataFrame({"image_id": ["tr/dog/3.jpg", "va/dog/6.jpg", "te/cat/7.jpg"],
                          "action": ["relabel", "remove", "relabel"]})


def ids(mask):
    return [int(Path(i).stem) for i in IMAGES["image_id"][mask]]


def m(spec, scores=None, folder=Path(".")):
    return ids(mask_of(spec, SliceData(IMAGES, scores, FINDINGS, DECISIONS, folder), "s"))


def test_where_values_lists_ranges_flags_and_metadata():
    assert m({"where": {"label": "cat"}}) == [1, 2, 4, 7, 10]
    assert m({"where": {"split": ["val", "test"], "label": "dog"}}) == [5, 6, 8, 9]
    assert m({"where": {"brightness": {"min": 50, "max": 130}}}) == [3, 5, 6, 9, 10]
    assert m({"where": {"n_boxes": [0, 3]}}) == [1, 4, 6, 8]
    assert m({"where": {"is_dark": True}}) == [1, 4, 7]
    assert m({"where": {"meta_camera": "B"}}) == [2, 6, 7, 10]


def test_quantile_cuts():
    assert m({"lowest": {"column": "brightness", "share": 0.2}}) == [1, 7]          # darkest 20%: 5 and 10
    assert m({"highest": {"column": "brightness", "share": 0.1}}) == [8]            # brightest 10%: 250


def test_findings_ids_review_and_search(tmp_path: Path):
    assert m({"finding": "dark"}) == [1, 4, 7]            # the findings table, and the is_dark column (7)
    assert m({"finding": ["exposure"]}) == [1, 4, 8]
    assert m({"review": "relabel"}) == [3, 7]
    assert m({"review": ["remove", "undecided"]}) == [1, 2, 4, 5, 6, 8, 9, 10]
    assert m({"id_contains": "DOG/"}) == [3, 5, 6, 8, 9]
    (tmp_path / "hard.txt").write_text("# hard ones\nva/cat/4.jpg\nte/dog/9.jpg\nnot/there.jpg\n")
    assert m({"ids_file": "hard.txt"}, folder=tmp_path) == [4, 9]
    pd.DataFrame({"image_id": ["tr/cat/2.jpg"]}).to_csv(tmp_path / "ids.csv", index=False)
    assert m({"ids_file": "ids.csv"}, folder=tmp_path) == [2]


def test_score_columns_and_combinations():
    scores = pd.DataFrame({"loss": np.arange(10, dtype=float), "correct": [True, False] * 5})
    assert m({"where": {"loss": {"min": 7}}}, scores) == [8, 9, 10]
    suite = parse_suite("""
slices:
  cats: {where: {label: cat}}
  dark: {where: {is_dark: true}}
  dark_cats: {all_of: [cats, dark]}
  cats_or_dark: {any_of: [cats, dark]}
  not_cats: {not: cats}
  bright_cats: {all_of: [cats], not: dark}
tests:
  - {name: t, metric: accuracy, min: 0}
""")
    ev = SliceEvaluator(suite, SliceData(IMAGES, None, FINDINGS, DECISIONS))
    assert ids(ev.mask("dark_cats")) == [1, 4, 7]
    assert ids(ev.mask("cats_or_dark")) == [1, 2, 4, 7, 10]
    assert ids(ev.mask("not_cats")) == [3, 5, 6, 8, 9]
    assert ids(ev.mask("bright_cats")) == [2, 10]
    assert ids(ev.mask("all")) == list(range(1, 11))


def test_a_missing_column_names_the_slice():
    with pytest.raises(SliceError, match="slice 's': column 'meta_lens'"):
        m({"where": {"meta_lens": "x"}})


def test_a_gallery_filter_becomes_the_same_slice():
    q = GalleryQuery(labels=("dog",), splits=("val", "test"), checks=("overexposed",), ranges=(("n_boxes", 0, 1),),
                     search="te/")
    spec = gallery_query_to_slice(q)
    assert spec == {"where": {"label": ["dog"], "split": ["val", "test"], "n_boxes": {"min": 0.0, "max": 1.0}},
                    "finding": ["overexposed"], "id_contains": "te/"}
    gallery, _ = filter_mask(IMAGES.assign(is_overexposed=IMAGES["image_id"].eq("te/dog/8.jpg")), q)
    assert m(spec) == ids(gallery) == [8]
