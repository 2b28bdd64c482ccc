"""What the AppTest page tests share (test_model_page.py, test_model_page_state.py): open a page of the app on a
dataset, and the text a page shows."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "Home.py")
SAMPLE = REPO / "sample_data"
TIMEOUT_S = 120


def open_page(page: str, root: Path | str = SAMPLE) -> AppTest:
    """The app on dataset ``root``, switched to ``page`` (e.g. "pages/5_Model_triage.py"), without an exception."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["di_root"] = str(root)
    at.run()
    at.switch_page(page).run()
    assert not at.exception
    return at


def texts(at: AppTest) -> str:
    """Every text, caption, info, error and warning on the page, one per line."""
    parts = [e.value for e in at.text] + [e.value for e in at.caption] + [e.value for e in at.info]
    parts += [e.value for e in at.error] + [e.value for e in at.warning]
    return "\n".join(str(p) for p in parts)


def write_sample_predictions(images, path: Path):
    """Score ``images`` of sample_data with the sample model and write its probabilities as a predictions CSV
    (image_id, prob_<class>) at ``path``. Returns the ScoreResult."""
    from inspect_core.model.models import load_model
    from inspect_core.model.preprocess import read_preprocess
    from inspect_core.model.pipeline import score_dataset
    model_dir = SAMPLE / "model"
    res = score_dataset(load_model(model_dir / "model.pt2", read_preprocess(model_dir / "model.preprocess.json")),
                        SAMPLE, images, workers=0)
    res.to_frame()[["image_id"] + [f"prob_{c}" for c in res.class_names]].dropna().to_csv(path, index=False)
    return res


def open_on_predictions(images, path: Path):
    """The Model triage page on sample_data, scored from a predictions file of the sample model written at
    ``path`` (``write_sample_predictions``). Returns (AppTest, ScoreResult)."""
    res = write_sample_predictions(images, path)
    at = open_page("pages/5_Model_triage.py")
    at.segmented_control(key="di_mt_source").set_value("Predictions file").run()
    at.text_input(key="di_mt_pred").set_value(str(path)).run()
    assert not at.exception
    return at, res


def open_id(button) -> str:
    """The image_id an Open button of a grid opens: its tooltip, which carries it escaped (text, never Markdown)."""
    import re
    return re.sub(r"\\(.)", r"\1", button.help or "")
