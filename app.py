"""Compatibility entry point: ``streamlit run app.py`` (and ``AppTest.from_file("app.py")``) still open the app.

The home page is ``Home.py``: under Streamlit's pages-folder navigation the entry file's name is the sidebar's
label, so ``streamlit run Home.py`` shows "Home" (this file would show "app")."""
import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name("Home.py")), run_name="__main__")
