"""Shared Streamlit helpers for the app's pages.

- ``inspect_core.ui.query``: filter / sort / paginate the image table (pure, no Streamlit import).
- ``inspect_core.ui.state``: the chosen dataset in ``st.session_state``, recent roots, cached scan access.
- ``inspect_core.ui.widgets``: filter widgets, the pager, thumbnails grid, the decision widget, bulk bars.
- ``inspect_core.ui.viewer``: the image viewer (one image large with its detail, previous / next).
- ``inspect_core.ui.text``: render user text (labels, paths, notes) as text.

This package file imports nothing, so that ``inspect_core.ui.query`` can be used without Streamlit.
"""
