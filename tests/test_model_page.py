"""The Model triage page under AppTest: renders on sample_data with the sample model, clear messages for no
model / a bad path / a bad file, a relabel made on the page reaches the review store."""
from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from inspect_core.review import ReviewStore
from inspect_core.ui import charts
from model_support import MODEL_DIR, sample_spec
import grid_support
from page_support import SAMPLE, open_on_predictions, open_page
from page_support import texts as _texts

WORST = "di_mt_open_grid"   # the worst-loss grid (one element, tile_grid)
PAGE = "pages/5_Model_triage.py"
MODEL = SAMPLE / "model" / "model.pt2"


pytestmark = pytest.mark.usefixtures("module_cache")   # one cache folder for the module (conftest.py)


def _page(sample_scan) -> AppTest:
    return open_page(PAGE)


def test_no_model_bad_path_and_bad_file_give_clear_messages(sample_scan, tmp_path):
    at = _page(sample_scan)
    assert any("Type the path of your trained model" in e.value for e in at.info)
    assert any("trust" in e.value for e in at.warning)
    at.text_input(key="di_mt_model").set_value(str(tmp_path / "nope.pt")).run()
    assert not at.exception
    assert any("not found" in e.value for e in at.error)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    (tmp_path / "junk.preprocess.json").write_text((SAMPLE / "model" / "model.preprocess.json").read_text())
    at.text_input(key="di_mt_model").set_value(str(junk)).run()
    assert not at.exception
    assert any("not a PyTorch file" in e.value for e in at.error), _texts(at)
    # a state dict without its factory
    at.text_input(key="di_mt_model").set_value(str(SAMPLE / "model" / "model_state.pt")).run()
    assert any("factory" in e.value for e in at.error)
    # the run after a Cancel click says that scoring was cancelled (nothing scored yet in this module)
    at.session_state["di_mt_cancel_flag"] = True
    at.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    assert not at.exception
    assert any("Scoring cancelled" in e.value for e in at.warning)
    assert [b for b in at.button if b.key == "di_mt_score"]


def test_scores_sample_shows_worst_losses_and_relabel_reaches_store(sample_scan):
    at = _page(sample_scan)
    at.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    assert not at.exception
    at.button(key="di_mt_score").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    n_ok = int((sample_scan.images["image_id"].notna()).sum())
    assert int(metrics["Scored images"].replace(",", "")) + int(metrics["Errors"]) == n_ok
    acc = float(metrics["Accuracy"].rstrip("%"))
    assert acc > 80
    assert "Images decoded by Pillow on the CPU." in [c.value for c in at.caption]   # no GPU here: Pillow
    shown = grid_support.tile_ids(at, WORST)
    assert len(shown) == 24
    planted = pd.read_csv(SAMPLE / "PLANTED.csv")
    mislabeled = set(planted.loc[planted["check"] == "mislabeled", "image_id"])
    assert len(mislabeled & set(shown)) >= 5          # the worst-loss grid surfaces planted mislabels
    target = next(i for i in shown if i in mislabeled)
    grid_support.open_tile(at, target, WORST)
    assert not at.exception
    text = _texts(at)
    assert "What the model sees: 96x72 px" in text and "Suggested:" in text
    suggested = text.split("Suggested: ")[1].split()[0]
    label_box = next(s for s in at.selectbox if s.label == "New label")
    assert label_box.value == suggested                  # the suggested label is pre-filled
    next(b for b in at.button if b.label == "Relabel").click().run()
    assert not at.exception
    dec = ReviewStore(sample_scan.workspace).decision_for(target)
    given = sample_scan.images.set_index("image_id").loc[target, "label"]
    assert dec["action"] == "relabel" and dec["new_label"] == suggested and dec["old_label"] == given
    # the grid marks the decided image, and "Hide decided" leaves it out
    tile = next(t for t in grid_support.tiles(at, WORST) if t["id"] == target)
    assert f"decided: relabel -> {suggested}" in tile["lines"]
    at.toggle(key="di_mt_f_undecided").set_value(True).run()
    assert target not in grid_support.tile_ids(at, WORST)
    at.toggle(key="di_mt_f_undecided").set_value(False).run()

    # sanity checks: baselines beaten, and the shipped model is batch independent (it was saved in eval mode)
    at.button(key="di_mt_batch_check").click().run()
    assert not at.exception
    assert any("same logits alone and in a batch" in e.value for e in at.success), [e.value for e in at.error]
    assert any(e.value.startswith("val\\: beats the baselines") for e in at.success), [e.value for e in at.success]

    # filters: a confusion pair narrows the grid to that pair
    pair = next(o for o in at.selectbox(key="di_mt_f_pair").options if o != "(any)")
    at.selectbox(key="di_mt_f_pair").set_value(pair).run()
    g, p = pair.split(" (")[0].split(" -> ")
    n_pair = int(pair.rsplit("(", 1)[1].rstrip(")"))
    shown = grid_support.tile_ids(at, WORST)
    assert len(shown) == min(n_pair, 24)
    sub = sample_scan.images.set_index("image_id").loc[shown, "label"]
    assert set(sub) == {g}

    # reopening in a new session: scores come from the workspace cache, no Score click needed
    at2 = _page(sample_scan)
    at2.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    assert not at2.exception
    assert not [b for b in at2.button if b.key == "di_mt_score"]
    assert "reopened from the workspace cache" in _texts(at2)


def test_predictions_file_needs_no_model(sample_scan, tmp_path):
    path = tmp_path / "preds.csv"
    at, res = open_on_predictions(sample_scan.dataset.images, path)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Scored images"] == f"{int(res.table['error'].isna().sum()):,}"
    at.text_input(key="di_mt_pred").set_value(str(tmp_path / "missing.csv")).run()
    assert any("not found" in e.value for e in at.error)


def test_confusion_helpers_and_cell_selection():
    import numpy as np

    from inspect_core.model.metrics import confusion_matrix, per_class_metrics
    from inspect_core.model.table import build_table
    from inspect_core.ui import model_triage as mt
    names = ["a", "b", "c"]
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]],
                     dtype=np.float32)
    images = pd.DataFrame({"image_id": [f"i{k}" for k in range(5)], "label": ["a", "b", "c", "c", "c"],
                           "split": ["train", "train", "val", "val", "val"]})
    table = build_table(images, probs, names)
    matrix = confusion_matrix(table, names)
    assert matrix.loc["c", "a"] == 1 and matrix.loc["c", "b"] == 1 and matrix.loc["c", "c"] == 1
    assert int(matrix.to_numpy().sum()) == 5
    per = per_class_metrics(table, names).set_index("class")
    assert per.loc["c", "accuracy"] == pytest.approx(1 / 3) and per.loc["a", "precision"] == pytest.approx(0.5)
    pts = charts.confusion_points(matrix)
    assert len(pts) == 9 and int(pts.loc[(pts["given"] == "c") & (pts["predicted"] == "b"), "count"].iloc[0]) == 1
    assert charts.selected_cell({"selection": {"points": [{"x": "b", "y": "c"}]}}) == ("c", "b")
    assert charts.selected_cell({"selection": {"points": []}}) is None
    from inspect_core.model.label_issues import rank_label_issues
    issues = rank_label_issues(table, probs, names)
    rows = mt.filter_scores(issues, pair=("c", "b"))
    assert list(rows["image_id"]) == ["i4"]
    assert set(mt.filter_scores(issues, splits=["train"])["image_id"]) == {"i0", "i1"}
    assert set(mt.filter_scores(issues, only_wrong=True)["image_id"]) == {"i2", "i4"}
    fig = charts.confusion_figure(matrix)
    assert list(fig.data[0].text) == [str(v) for v in pts["count"]]
    xss = "<img src=x onerror=alert(1)>"
    odd = charts.confusion_figure(matrix.rename(index={"a": xss}, columns={"a": xss}))
    assert xss not in set(odd.data[0].y) and "&lt;img src=x onerror=alert(1)&gt;" in set(odd.data[0].y)
    assert charts.selected_cell({"selection": {"points": [{"x": "b", "y": "&lt;img src=x onerror=alert(1)&gt;"}]}}) == (xss, "b")


def test_heavy_work_runs_once_per_scored_result_not_per_rerun(sample_scan, monkeypatch):
    """The embedding kNN, the confusion matrix and the image_id index are computed once per result; reruns
    (every tab runs on each) reuse them."""
    import inspect_core.model.sanity as sanity
    from inspect_core.model import metrics as table_metrics
    from inspect_core.ui import model_triage as mt
    calls = {"knn": 0, "confusion": 0, "index": 0}

    def counted(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapper
    monkeypatch.setattr(sanity, "embedding_findings", counted("knn", sanity.embedding_findings))
    monkeypatch.setattr(table_metrics, "confusion_matrix", counted("confusion", table_metrics.confusion_matrix))
    monkeypatch.setattr(mt, "row_positions", counted("index", mt.row_positions))
    at = _page(sample_scan)
    at.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    if [b for b in at.button if b.key == "di_mt_score"]:
        at.button(key="di_mt_score").click().run()
    assert not at.exception, at.exception
    assert any(t.value.startswith("Embedding kNN:") for t in at.text)
    after_first = dict(calls)
    # the kNN findings may come from the workspace, saved beside the scores by an earlier test of this module
    assert after_first["knn"] <= 1 and after_first["confusion"] == 1 and after_first["index"] == 1
    at.toggle(key="di_mt_f_wrong").set_value(True).run()
    shown = grid_support.tile_ids(at, WORST)
    assert shown and not at.exception
    grid_support.open_tile(at, shown[0], WORST)
    assert not at.exception
    assert calls == after_first
    # the grid's captions still show the top probabilities of each image
    entry = at.session_state[mt.RESULT_KEY]
    iid = shown[0]
    assert mt._top_probs_text(entry["result"], iid, positions=entry["positions"]) == \
        mt._top_probs_text(entry["result"], iid)
    tile = next(t for t in grid_support.tiles(at, WORST) if t["id"] == iid)
    assert mt._top_probs_text(entry["result"], iid) in tile["lines"]


def test_a_gpu_model_offers_exact_pillow_decoding(sample_scan, monkeypatch):
    """On a CUDA model the page offers a toggle for exact Pillow decoding, and scoring gets that choice; on the
    CPU there is nothing to choose (Pillow is the only decoder)."""
    import dataclasses

    import torch

    from inspect_core.ui import model_triage as mt
    real_get = mt.get_model
    seen: list[str] = []
    monkeypatch.setattr(mt, "get_model", lambda *a, **k: dataclasses.replace(real_get(*a, **k),
                                                                              device=torch.device("cuda")))
    monkeypatch.setattr(mt, "run_scoring", lambda model, scan, **kw: seen.append(kw.get("decoder")))
    from inspect_core.model import pipeline
    monkeypatch.setattr(pipeline, "cached_scores", lambda *a, **k: None)   # other tests' scores stay unopened
    at = _page(sample_scan)
    at.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    assert not at.exception, at.exception
    assert [t.label for t in at.toggle if t.key == "di_mt_pillow_decoder"] == ["Exact Pillow decoding"]
    at.button(key="di_mt_score").click().run()
    at.toggle(key="di_mt_pillow_decoder").set_value(True).run()
    at.button(key="di_mt_score").click().run()
    assert not at.exception, at.exception
    assert seen == ["auto", "pillow"]


def test_a_cpu_model_has_no_decoder_toggle(sample_scan):
    at = _page(sample_scan)
    at.text_input(key="di_mt_model").set_value(str(MODEL)).run()
    assert not at.exception
    assert not [t for t in at.toggle if t.key == "di_mt_pillow_decoder"]


@pytest.fixture(scope="module")
def spec():
    return sample_spec()


def test_the_page_reloads_an_edited_factory(tmp_path, monkeypatch, spec):
    import sys

    from inspect_core.ui import model_triage as mt
    code = "from inspect_core.sample_model import make_model as _m\ndef make(num_classes=5):\n    return _m()\n"
    (tmp_path / "page_factory_t.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    first = mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "page_factory_t:make")
    assert mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "page_factory_t:make") is first
    (tmp_path / "page_factory_t.py").write_text(code + "# edited, and longer\n")
    second = mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "page_factory_t:make")
    assert second is not first and second.cache_key() != first.cache_key()
    sys.modules.pop("page_factory_t", None)


def test_the_page_does_not_run_a_factory_package_outside_the_safe_import(tmp_path, monkeypatch, spec):
    import sys

    from inspect_core.model.models import ModelLoadError
    from inspect_core.ui import model_triage as mt
    pkg = tmp_path / "badpkg_t"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('needs CUDA_HOME')\n")
    (pkg / "nets.py").write_text("def make():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    with pytest.raises(ModelLoadError, match="needs CUDA_HOME"):
        mt.get_model(str(MODEL_DIR / "model_state.pt"), spec, "badpkg_t.nets:make")
    assert not (pkg / "__pycache__").exists()


def test_worst_loss_grid_is_the_gallery_grid_open_step_relabel_and_bulk(sample_scan, tmp_path):
    """The worst-loss grid is the one-element grid (tile_grid): an image opened from it shows in the viewer with
    the model's evidence, Next steps to the next-worst image, a relabel to the suggested label reaches the store;
    three ticked tiles are removed in one bulk action and undone in one step."""
    at, res = open_on_predictions(sample_scan.dataset.images, tmp_path / "preds.csv")
    store = ReviewStore(sample_scan.workspace)
    with store._connect() as con:
        con.execute("DELETE FROM decisions")
    shown = grid_support.tile_ids(at, WORST)
    issues = at.session_state["di_mt_result"]["issues"]
    assert shown == issues["image_id"].head(len(shown)).tolist()            # worst loss first
    grid_support.open_tile(at, shown[0], WORST)
    assert not at.exception
    assert shown[0] in [t.value for t in at.text] and f"1 of {len(issues):,}" in [t.value for t in at.text]
    next(b for b in at.button if b.label == "Next").click().run()
    assert not at.exception
    second = shown[1]
    assert second in [t.value for t in at.text] and f"2 of {len(issues):,}" in [t.value for t in at.text]
    rec = issues.set_index("image_id").loc[second]
    assert f"Loss rank: {rec['loss_rank']}" in " ".join(t.value for t in at.text)
    label_box = next(s for s in at.selectbox if s.label == "New label")
    assert label_box.value == rec["suggested_label"]                          # pre-filled from the model
    next(b for b in at.button if b.label == "Relabel").click().run()
    assert not at.exception
    dec = store.decision_for(second)
    assert dec["action"] == "relabel" and dec["new_label"] == rec["suggested_label"]
    assert dec["old_label"] == sample_scan.images.set_index("image_id").loc[second, "label"]
    # tick three tiles (the viewer closes: the page was used), remove them in one action, undo in one step
    for iid in shown[2:5]:
        grid_support.tick(at, [iid], key=WORST)
    assert not any(b.label == "Next" for b in at.button)
    assert "3 selected" in [t.value for t in at.text]
    next(b for b in at.button if b.label.startswith("Apply to 3 selected")).click().run()
    assert not at.exception
    cur = store.current().set_index("image_id")["action"]
    assert {i: cur.get(i) for i in shown[2:5]} == {i: "remove" for i in shown[2:5]}
    assert store.last_batch()["actions"] == {"remove": 3}
    next(b for b in at.button if b.label.startswith("Undo last bulk action")).click().run()
    assert set(store.current()["image_id"]) == {second}
