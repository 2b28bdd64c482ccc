"""Detection triage: a detector's boxes against the dataset's boxes; the worst images, the metrics, per-box
decisions and corrected exports (the section is inspect_core.ui.detection_triage; Model triage may call it too)."""
from __future__ import annotations

import streamlit as st

from inspect_core.ui import detection_triage, state

st.set_page_config(page_title="Detection triage - Dataset Inspector", layout="wide")
st.title("Detection triage")

scan = state.require_scan()
detection_triage.render(scan, state.store_for(scan))
