"""The Findings page's duplicate and label sections on sample_data: groups name their representative and each
member's score to it; conflicting labels are shown as pairs, both pictures and both labels side by side."""
from __future__ import annotations

import pytest

from inspect_core import neardup
from page_support import open_page, texts

pytestmark = pytest.mark.usefixtures("module_cache")


def test_label_section_shows_each_conflicting_pair_with_both_labels(sample_scan):
    at = open_page("pages/2_Findings.py")
    at.segmented_control(key="di_findings_family").set_value("label").run()
    assert not at.exception
    # the planted pair: a train circle filed again, near-copied, as a test square
    assert any(s.value == "Conflicting labels: the same picture, two labels" for s in at.subheader)
    shown = [m.value for m in at.markdown]
    assert "**label: circle**" in shown and "**label: square**" in shown
    page = texts(at).replace("\\", "")   # captions are Markdown-escaped
    assert "train/circle/circle_0031.jpg" in page and "test/square/square_0080.jpg" in page
    assert "pHash distance" in page and "cut for" in page


def test_duplicate_groups_name_the_representative_and_scores(sample_scan):
    members = neardup.group_members(sample_scan.pairs)
    assert not members.empty
    for _, g in members.groupby("group_id"):
        assert g["image_id"].iloc[0] == g["representative"].iloc[0]          # the representative first
        linked = {frozenset(p) for p in sample_scan.pairs[["image_id_a", "image_id_b"]].to_numpy().tolist()}
        assert all(frozenset((m, g["representative"].iloc[0])) in linked for m in g["image_id"].iloc[1:])
    at = open_page("pages/2_Findings.py")
    at.segmented_control(key="di_findings_family").set_value("duplicate").run()
    assert not at.exception
    page = texts(at)
    assert "each a duplicate of the representative" in page
    assert "score to representative" in page and "representative" in page
