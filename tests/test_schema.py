"""Column names: one helper names issue columns and tells them from signal columns, so a boolean signal is never
taken for a check (the Gallery's check filter once listed 'gray_mode')."""
from __future__ import annotations

import re
from pathlib import Path

import inspect_core
from inspect_core import filescan, schema
from inspect_core.checks import all_check_names
from inspect_core.scanner import BOX_STAT_COLUMNS, DERIVED_COLUMNS
from inspect_core.ui.query import check_columns

REPO = Path(__file__).resolve().parents[1]


def test_issue_column_round_trips_and_no_signal_reads_as_a_check():
    for check in all_check_names():
        assert schema.check_of_column(schema.issue_column(check)) == check
    signals = [*filescan.TEXT_COLUMNS, *filescan.NUMERIC_COLUMNS, *filescan.BOOL_COLUMNS, *BOX_STAT_COLUMNS,
               *DERIVED_COLUMNS]
    assert [c for c in signals if schema.check_of_column(c) is not None] == []


def test_gallery_check_filter_lists_checks_only(tmp_path, textured):
    root = tmp_path / "ds"
    for k in range(8):
        p = root / "cat" / f"img_{k}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        im = textured(50 + k, (64, 48))
        (im.convert("L") if k == 0 else im).save(p)      # one grey-mode image: a boolean signal, not a check
    result = inspect_core.scan(root, workers=1)
    assert result.images.set_index("image_id").loc["cat/img_0.png", "gray_mode"]
    found = check_columns(result.images)
    assert "gray_mode" not in found
    assert set(found) == {c for c in all_check_names() if schema.issue_column(c) in result.images.columns}
    assert set(found) <= set(all_check_names())


def test_the_issue_prefix_is_spelled_in_one_place():
    # a string literal starting with the prefix ("is_x", f"is_{c}") names an issue column by hand
    # not hasattr(x, "is_set"); not detection's per-box columns (is_tp, is_matched: columns of its box tables, not
    # the scan's issue columns)
    by_hand = re.compile(r"""(?<![\w])[fF]?["']is_(?!(?:set|tp|matched)["'])""")
    elsewhere = {"inspect_core/schema.py"}
    spelled = sorted(str(p.relative_to(REPO)) for p in [*REPO.glob("inspect_core/**/*.py"), REPO / "Home.py",
                                                         *REPO.glob("pages/*.py")]
                     if by_hand.search(p.read_text()) and str(p.relative_to(REPO)) not in elsewhere)
    assert spelled == []
