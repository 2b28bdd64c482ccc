"""Every page under Streamlit's AppTest: renders on sample_data, clear messages on bad input, filters and
sorts change what is shown, decisions made through a page reach the review store, user text stays text."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import inspect_core
from inspect_core.review import ReviewStore
from inspect_core.ui.query import DEFAULT_PAGE_SIZE
from inspect_core.workspace import workspace_dir

import grid_support

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "Home.py")
SAMPLE = REPO / "sample_data"
PAGES = ["pages/1_Gallery.py", "pages/2_Findings.py", "pages/3_Distributions.py", "pages/4_Review.py"]
XSS = "<img src=x onerror=alert(1)>"
TIMEOUT_S = 60


pytestmark = pytest.mark.usefixtures("module_cache")   # one cache folder for the module (conftest.py)


def _scan(root, cache_home):
    return inspect_core.scan(root, workspace=cache_home / "dataset-inspector")


@pytest.fixture(scope="module")
def sample_scan(cache_home):
    return _scan(SAMPLE, cache_home)


def _img(path: Path, grey: int, size=(48, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(grey)
    arr = np.clip(grey + rng.integers(-12, 12, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


@pytest.fixture(scope="module")
def small(cache_home, tmp_path_factory):
    """A made dataset: split/class folders, grey levels known, one class named like an HTML tag."""
    root = tmp_path_factory.mktemp("small") / "data"
    greys = {("train", "cat"): [30, 70, 110, 150], ("train", "dog"): [50, 90, 130, 170],
             ("val", "cat"): [60, 120], ("val", "dog"): [80, 140], ("train", XSS): [100, 200]}
    for (split, cls), levels in greys.items():
        for k, g in enumerate(levels):
            _img(root / split / cls / f"{cls[:3]}_{k}.png", g)
    return root, _scan(root, cache_home)


def _app(root, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["di_root"] = str(root)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def _shown_ids(at: AppTest) -> list[str]:
    """image_ids of the gallery's thumbnails, in the order drawn (the grid's payload); [] when no grid is drawn."""
    drawn = any(g.proto.id.endswith("-gallery_grid") for g in grid_support.grids(at))
    return grid_support.tile_ids(at) if drawn else []


def _unescape(text: str) -> str:
    """md_escape undone (text shown through Markdown carries user text escaped)."""
    return re.sub(r"\\(.)", r"\1", text or "")


def _open(at: AppTest, image_id: str) -> None:
    """Click the Open button of ``image_id`` in the grid (the event the grid sends from the browser)."""
    grid_support.open_tile(at, image_id)


def _all_text(at: AppTest) -> str:
    parts = [e.value for e in at.text] + [e.value for e in at.caption] + [e.value for e in at.markdown]
    parts += [e.value for e in at.info] + [e.value for e in at.error] + [e.value for e in at.warning]
    return "\n".join(str(p) for p in parts)


# -- rendering on sample_data ---------------------------------------------------------------------
def test_home_renders_headline_figures(sample_scan):
    at = _app(SAMPLE)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics, _all_text(at)
    assert metrics["Images"] == f"{len(sample_scan.images):,}"
    assert metrics["Classes"] == str(len(sample_scan.dataset.classes))
    assert metrics["Findings"] == f"{len(sample_scan.findings):,}"
    links = [p.label for p in at.get("page_link")]
    for fam, n in sample_scan.findings["family"].value_counts().items():
        assert any(label.startswith(f"{fam}: {n:,} findings") for label in links), (fam, links)


def test_findings_link_opens_its_family(sample_scan):
    fams = sorted(sample_scan.findings["family"].unique())
    at = _app(SAMPLE)
    for fam in (fams[-1], fams[0]):
        at.query_params["family"] = fam
        at.switch_page(PAGES[1]).run()
        assert at.segmented_control(key="di_findings_family").value == fam


def test_home_takes_root_from_command_line(sample_scan, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", "--root", str(SAMPLE)])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert at.text_input(key="di_home_root_input").value == str(SAMPLE)
    assert {m.label: m.value for m in at.metric}["Images"] == f"{len(sample_scan.images):,}"


def test_every_page_renders_on_sample_data(sample_scan):
    at = _app(SAMPLE)
    n = len(sample_scan.images)
    at.switch_page(PAGES[0]).run()
    assert not at.exception
    assert f"{n:,} of {n:,} images match" in _all_text(at)
    assert len(_shown_ids(at)) == min(n, DEFAULT_PAGE_SIZE)
    tiles = grid_support.tiles(at)
    assert all(t["src"].startswith("data:image/jpeg;base64,") and len(t["src"]) > 200 for t in tiles)

    at.switch_page(PAGES[1]).run()
    assert not at.exception
    summary = at.dataframe[0].value.set_index("family")["findings"].to_dict()
    assert summary == {k: int(v) for k, v in sample_scan.findings["family"].value_counts().items()}

    at.switch_page(PAGES[2]).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 4

    at.switch_page(PAGES[3]).run()
    assert not at.exception
    assert {m.label for m in at.metric} >= {"Decisions", "Relabel", "Remove", "Keep"}
    assert len(at.get("download_button")) == 3


def test_findings_page_shows_every_family_with_evidence(sample_scan):
    at = _app(SAMPLE, PAGES[1])
    fams = sorted(sample_scan.findings["family"].unique())
    for fam in fams:
        at.segmented_control(key="di_findings_family").set_value(fam).run()
        assert not at.exception, fam
        n = int((sample_scan.findings["family"] == fam).sum())
        assert any(h.value == f"{fam}: {n:,} findings" for h in at.header), fam
        if fam == "balance":
            tables = [d.value for d in at.dataframe]
            assert any("suggested_class_weight" in t.columns for t in tables)
        if fam in ("duplicate", "leakage"):
            assert "groups; page 1 of" in _all_text(at)


# -- bad input gives a clear message ---------------------------------------------------------------
@pytest.mark.parametrize("page", [None] + PAGES)
def test_no_dataset_chosen(cache_home, page):
    at = _app("", page)
    assert not at.exception
    assert any("No dataset chosen" in i.value for i in at.info)


@pytest.mark.parametrize("page", [None] + PAGES)
def test_bad_path(cache_home, tmp_path, page):
    at = _app(tmp_path / "does" / XSS / "exist", page)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("does not exist" in e for e in errors)
    assert all("<img" not in e.replace("\\<", "") for e in errors)  # the path is shown as text
    assert any(XSS in re.sub(r"\\(.)", r"\1", e) for e in errors)


@pytest.mark.parametrize("page", [None] + PAGES)
def test_empty_folder(cache_home, tmp_path, page):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    at = _app(tmp_path / "empty", page)
    assert not at.exception
    assert any("holds no image files" in e.value for e in at.error)


def test_unscanned_dataset_offers_a_scan_and_scans(cache_home, tmp_path):
    root = tmp_path / "fresh"
    for k in range(3):
        _img(root / "a" / f"{k}.png", 40 * k + 40)
        _img(root / "b" / f"{k}.png", 40 * k + 60)
    at = _app(root, PAGES[0])
    assert not at.exception
    assert any("has not been scanned yet" in w.value for w in at.warning)
    at.button(key="di_scan_now").click().run()
    assert not at.exception
    assert "6 of 6 images match" in _all_text(at)
    # once scanned, the notice and its button are gone from the page that shows the scan (seen in the browser)
    assert not any("has not been scanned yet" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "di_scan_now"]


# -- filters and sorts --------------------------------------------------------------------------------
def test_gallery_filters_and_sorts(small):
    root, scan = small
    at = _app(root, PAGES[0])
    assert len(_shown_ids(at)) == len(scan.images) == 14

    at.multiselect(key="label").set_value(["cat"]).run()
    shown = _shown_ids(at)
    assert sorted(shown) == sorted(scan.images.loc[scan.images["label"] == "cat", "image_id"])

    at.multiselect(key="split").set_value(["val"]).run()
    assert sorted(_shown_ids(at)) == ["val/cat/cat_0.png", "val/cat/cat_1.png"]

    at.multiselect(key="label").set_value([]).run()
    at.multiselect(key="split").set_value([]).run()
    at.selectbox(key="sort").set_value("brightness").run()
    at.toggle(key="desc").set_value(True).run()
    by_brightness = scan.images.sort_values("brightness", ascending=False)["image_id"].tolist()
    assert _shown_ids(at) == by_brightness
    at.toggle(key="desc").set_value(False).run()
    assert _shown_ids(at) == by_brightness[::-1]

    at.text_input(key="path").set_value("DOG_").run()
    assert sorted(_shown_ids(at)) == sorted(i for i in scan.images["image_id"] if "dog_" in i)
    at.text_input(key="path").set_value("").run()

    at.selectbox(key="range_on").set_value("brightness").run()
    lo = float(scan.images["brightness"].median())
    at.slider(key="range_brightness").set_value((lo, float(scan.images["brightness"].max()))).run()
    assert not at.exception
    expected = scan.images.loc[scan.images["brightness"] >= lo, "image_id"]
    assert sorted(_shown_ids(at)) == sorted(expected)


def test_gallery_filters_by_check_and_family(sample_scan):
    images = sample_scan.images
    counts = {c: int(images[c].sum()) for c in images.columns if c.startswith("is_") and images[c].dtype == bool}
    check_col = max((c for c, n in counts.items() if 0 < n < len(images)), key=lambda c: counts[c])
    at = _app(SAMPLE, PAGES[0])
    at.multiselect(key="check").set_value([check_col[3:]]).run()
    assert not at.exception
    assert sorted(_shown_ids(at)) == sorted(images.loc[images[check_col], "image_id"])[:DEFAULT_PAGE_SIZE]
    assert f"{counts[check_col]:,} of {len(images):,} images match" in _all_text(at)

    fam = sample_scan.findings.loc[sample_scan.findings["image_id"] != "", "family"].value_counts().index[0]
    at.multiselect(key="check").set_value([]).run()
    at.multiselect(key="family").set_value([fam]).run()
    want = set(sample_scan.findings.loc[sample_scan.findings["family"] == fam, "image_id"]) - {""}
    want &= set(images["image_id"])
    assert f"{len(want):,} of {len(images):,} images match" in _all_text(at)


def test_gallery_link_from_home_presets_family(sample_scan):
    fam = sample_scan.findings.loc[sample_scan.findings["image_id"] != "", "family"].value_counts().index[0]
    at = _app(SAMPLE)
    at.query_params["family"] = fam
    at.switch_page(PAGES[0]).run()
    assert at.multiselect(key="family").value == [fam]


def test_gallery_pages(sample_scan):
    at = _app(SAMPLE, PAGES[0])
    first = _shown_ids(at)
    pager = at.get("pagination")[0]
    pager.set_value(2).run()
    second = _shown_ids(at)
    assert not at.exception
    size = DEFAULT_PAGE_SIZE
    assert len(second) == size and not set(first) & set(second)
    ordered = sorted(sample_scan.images["image_id"])
    assert second == ordered[size:2 * size]


# -- decisions through the pages -------------------------------------------------------------------
def test_relabel_remove_keep_undo_through_gallery(small):
    root, scan = small
    store = ReviewStore(workspace_dir(root))
    at = _app(root, PAGES[0])
    target = "train/cat/cat_1.png"
    _open(at, target)
    assert not at.exception
    assert target in [t.value for t in at.text]
    label_box = next(s for s in at.selectbox if s.label == "New label")
    label_box.set_value("dog").run()
    next(t for t in at.text_input if t.label == "Note (optional)").set_value("ears look like a dog").run()
    next(b for b in at.button if b.label == "Relabel").click().run()
    assert not at.exception
    dec = store.decision_for(target)
    assert dec["action"] == "relabel" and dec["old_label"] == "cat" and dec["new_label"] == "dog"
    assert dec["note"] == "ears look like a dog"

    next(b for b in at.button if b.label == "Remove").click().run()
    assert store.decision_for(target)["action"] == "remove"
    next(b for b in at.button if b.label == "Undo").click().run()
    assert store.decision_for(target)["action"] == "relabel"
    assert list(store.history(target)["action"]) == ["relabel", "remove", "undo"]

    # a new class typed by hand
    next(s for s in at.selectbox if s.label == "New label").set_value("(new class...)").run()
    next(t for t in at.text_input if t.label == "New class name").set_value("lynx").run()
    next(b for b in at.button if b.label == "Relabel").click().run()
    assert store.decision_for(target)["new_label"] == "lynx"

    # the review page lists it, and the relabel list offered for download contains it
    at.switch_page(PAGES[3]).run()
    assert not at.exception
    editor = at.data_editor[0].value
    assert editor.set_index("image_id").loc[target, "new_label"] == "lynx"
    csv = next(d for d in at.get("download_button") if "CSV" in d.proto.label)
    assert csv is not None


def _edit_review_table(at: AppTest, store, image_id: str, **changes) -> None:
    """Edit the Review page's table as a person would: the change lands on the row of ``image_id`` as the
    table was last shown."""
    rows = at.data_editor[0].value
    pos = int(rows.index[rows["image_id"] == image_id][0])
    at.session_state[at.session_state["di_review_editor_key"]] = {
        "edited_rows": {pos: changes}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception


def test_review_page_edit_is_saved(small):
    root, scan = small
    store = ReviewStore(workspace_dir(root))
    target = "val/dog/dog_0.png"
    store.decide(target, "keep", old_label="dog")
    at = _app(root, PAGES[3])
    _edit_review_table(at, store, target, action="relabel", new_label="cat", note="edited on the review page")
    dec = store.decision_for(target)
    assert (dec["action"], dec["new_label"], dec["note"]) == ("relabel", "cat", "edited on the review page")
    assert store.history(target)["source"].iloc[-1] == "review-page"


def test_review_edit_is_kept_when_another_tab_decides_meanwhile(small):
    """Issue 14: an edit was silently dropped when any decision was recorded between showing the table and
    the edit (the table was keyed by the store's last decision id, so the edit landed on a table that no
    longer existed)."""
    root, scan = small
    store = ReviewStore(workspace_dir(root))
    a, b, c = "val/cat/cat_0.png", "val/cat/cat_1.png", "val/dog/dog_1.png"
    for iid in (a, b):
        store.decide(iid, "keep", old_label="cat")
    at = _app(root, PAGES[3])
    store.decide(c, "remove", old_label="dog", note="another tab")      # after the table was shown
    _edit_review_table(at, store, b, note="edited while another tab decided")
    assert store.decision_for(b)["note"] == "edited while another tab decided"
    assert store.decision_for(c)["note"] == "another tab"


def test_review_edit_of_a_row_decided_elsewhere_is_a_conflict_shown_never_dropped(small):
    root, scan = small
    store = ReviewStore(workspace_dir(root))
    a = "train/dog/dog_2.png"
    store.decide(a, "keep", old_label="dog")
    at = _app(root, PAGES[3])
    store.decide(a, "remove", old_label="dog", note="the other tab's decision")
    _edit_review_table(at, store, a, action="relabel", new_label="cat")
    assert store.decision_for(a)["note"] == "the other tab's decision"   # not overwritten blindly
    shown = _unescape(_all_text(at))
    assert "was decided elsewhere" in shown and "Your edit, not applied yet: relabel -> cat" in shown
    # the user chooses: apply theirs or mine; mine is still there to apply
    next(b for b in at.button if b.label == "Apply my edit").click().run()
    assert not at.exception
    dec = store.decision_for(a)
    assert (dec["action"], dec["new_label"]) == ("relabel", "cat")
    assert "was decided elsewhere" not in _all_text(at)


# -- user text is text ------------------------------------------------------------------------------
def test_html_label_is_shown_as_text(small):
    root, scan = small
    at = _app(root, PAGES[0])
    at.multiselect(key="label").set_value([XSS]).run()
    assert not at.exception
    ids = _shown_ids(at)
    assert len(ids) == 2 and all(XSS in i for i in ids)
    for md in list(at.markdown) + list(at.caption):
        assert not md.allow_html
        assert "<img" not in md.value.replace("\\<", "")  # every "<" of user text is escaped
    captions = [line for t in grid_support.tiles(at) for line in t["lines"]]   # drawn with textContent
    assert any(XSS in c for c in captions)
    _open(at, ids[0])
    assert f"Label: {XSS}   Split: train" in [t.value for t in at.text]


# -- choosing datasets ------------------------------------------------------------------------------
def test_switching_datasets_resets_filters_and_remembers_recent(small, sample_scan, cache_home):
    root, scan = small
    at = _app(root, PAGES[0])
    at.multiselect(key="label").set_value([XSS]).run()
    assert len(_shown_ids(at)) == 2
    at.switch_page("Home.py").run()
    at.text_input(key="di_home_root_input").set_value(str(SAMPLE)).run()
    assert not at.exception
    n = len(sample_scan.images)
    assert {m.label: m.value for m in at.metric}["Images"] == f"{n:,}"
    at.switch_page(PAGES[0]).run()
    assert not at.exception
    assert f"{n:,} of {n:,} images match" in _all_text(at)

    recent = json.loads((cache_home / "dataset-inspector" / "recent.json").read_text())
    roots = [r["root"] for r in recent]
    assert str(SAMPLE.resolve()) in roots and str(root.resolve()) in roots
    at.switch_page("Home.py").run()
    at.selectbox(key="di_home_recent").set_value(str(root.resolve())).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Images"] == f"{len(scan.images):,}"


def test_remember_root_from_threads_uses_distinct_temp_files(tmp_path, monkeypatch):
    """Sessions are threads of one process: two saving recent.json at once must not share a temp file."""
    import os
    import threading
    from inspect_core.ui import state as S
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    names: list[str] = []
    barrier = threading.Barrier(4)
    real_replace = os.replace

    def replace_together(src, dst):
        names.append(os.path.basename(src))
        barrier.wait(10)  # all four temp files exist at once
        return real_replace(src, dst)
    monkeypatch.setattr(S.os, "replace", replace_together)
    dirs = []
    for i in range(4):
        (tmp_path / f"d{i}").mkdir()
        dirs.append(str(tmp_path / f"d{i}"))
    threads = [threading.Thread(target=S.remember_root, args=(d, "folder")) for d in dirs]
    [t.start() for t in threads]
    [t.join(20) for t in threads]
    assert len(names) == 4 and len(set(names)) == 4
    saved = json.loads(S.recent_file().read_text())
    assert saved and all(r["root"] in {str(Path(d).resolve()) for d in dirs} for r in saved)


def test_review_exports_are_built_once_per_decision_version(small, monkeypatch):
    """Reruns of the Review page reuse the export payloads; a new decision rebuilds them."""
    import streamlit as st
    from inspect_core import export
    root, scan = small
    store = ReviewStore(workspace_dir(root))
    calls = []
    real = export.cleaned_manifest

    def counting(images, current):
        calls.append(len(current))
        return real(images, current)
    monkeypatch.setattr(export, "cleaned_manifest", counting)
    st.cache_data.clear()
    store.decide("val/cat/cat_0.png", "remove", old_label="cat")
    at = _app(root, PAGES[3])
    assert not at.exception
    n = len(calls)
    at.run()
    at.run()
    assert not at.exception and len(calls) == n  # reruns: no rebuild
    store.decide("val/cat/cat_1.png", "remove", old_label="cat")
    at.run()
    assert len(calls) == n + 1
    manifest = next(d for d in at.get("download_button") if "manifest" in d.proto.label.lower())
    assert manifest is not None
    shown = [t.value for t in at.text if t.value.startswith("Cleaned manifest")]
    removed = int((store.current()["action"] == "remove").sum())
    assert shown and f"{len(scan.images) - removed:,} of {len(scan.images):,} images" in shown[0]


def test_image_detail_decodes_once_not_per_keystroke(tmp_path, cache_home, monkeypatch):
    """Typing a note reruns the page: the large view comes from the display cache, decoded once."""
    import os

    import streamlit as st
    from inspect_core.ui import viewer
    root = tmp_path / "data"
    for cls, greys in (("cat", (40, 90)), ("dog", (140, 190))):
        for k, g in enumerate(greys):
            _img(root / "train" / cls / f"{cls}_{k}.png", g)
    _scan(root, cache_home)
    decoded = []
    real = viewer.display_image

    def counting(root_, image_id, max_side_px=1024):
        decoded.append((image_id, max_side_px))
        return real(root_, image_id, max_side_px=max_side_px)
    monkeypatch.setattr(viewer, "display_image", counting)
    st.cache_data.clear()
    at = _app(root, PAGES[0])
    target = "train/dog/dog_1.png"
    _open(at, target)
    assert not at.exception
    first = list(decoded)
    assert first.count((target, 1024)) == 1
    for text in ("s", "so", "som"):
        next(t for t in at.text_input if t.label == "Note (optional)").set_value(text).run()
        assert not at.exception
    assert decoded == first  # no decode on reruns
    # an edited file is decoded afresh
    _img(root / target, 99)
    st_ = os.stat(root / target)
    os.utime(root / target, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10_000_000))
    at.run()
    assert not at.exception and decoded.count((target, 1024)) == 2


# -- the view in the URL ------------------------------------------------------------------------------
def test_url_opens_the_same_dataset_filters_sort_and_page(small, sample_scan):
    root, scan = small
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["di_root"] = str(SAMPLE)            # the session's own choice (as from --root) ...
    for k, v in {"root": str(root), "label": ["cat", "dog"], "sort": "brightness", "desc": "true",
                 "per_page": "48", "tile": "large"}.items():
        at.query_params[k] = v                           # ... and a link to another dataset and view
    at.run()
    at.switch_page(PAGES[0]).run()
    assert not at.exception
    assert at.multiselect(key="label").value == ["cat", "dog"]
    assert at.selectbox(key="sort").value == "brightness" and at.toggle(key="desc").value is True
    n = int(scan.images["label"].isin(["cat", "dog"]).sum())
    assert f"{n:,} of {len(scan.images):,} images match" in _all_text(at)
    assert at.query_params["root"] in (str(root), [str(root)])
    expected = scan.images[scan.images["label"].isin(["cat", "dog"])].sort_values(
        ["brightness", "image_id"], ascending=[False, True])["image_id"].tolist()
    assert _shown_ids(at) == expected


def test_url_link_to_another_dataset_switches_visibly(small, sample_scan):
    root, scan = small
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["di_root"] = str(SAMPLE)
    at.run()
    assert {m.label: m.value for m in at.metric}["Images"] == f"{len(sample_scan.images):,}"
    at2 = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at2.session_state["di_root"] = str(SAMPLE)
    at2.query_params["root"] = str(root)
    at2.run()
    assert not at2.exception
    assert {m.label: m.value for m in at2.metric}["Images"] == f"{len(scan.images):,}"
    assert any("Opened the dataset of the link" in i.value for i in at2.info)
    assert at2.text_input(key="di_home_root_input").value == str(root)


def test_url_page_and_open_image(sample_scan):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["di_root"] = str(SAMPLE)
    ordered = sorted(sample_scan.images["image_id"])
    at.query_params["page"] = "2"
    at.query_params["image"] = ordered[DEFAULT_PAGE_SIZE + 3]
    at.run()
    at.switch_page(PAGES[0]).run()
    assert not at.exception
    assert _shown_ids(at) == ordered[DEFAULT_PAGE_SIZE:2 * DEFAULT_PAGE_SIZE]
    texts = [t.value for t in at.text]
    assert ordered[DEFAULT_PAGE_SIZE + 3] in texts and f"{DEFAULT_PAGE_SIZE + 4} of {len(ordered)}" in texts
    next(b for b in at.button if b.label == "Next").click().run()
    assert ordered[DEFAULT_PAGE_SIZE + 4] in [t.value for t in at.text]
