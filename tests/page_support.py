"""What the AppTest page tests share (test_model_page.py, test_model_page_state.py): open a page of the app on a
dataset, and the text a page shows."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
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
