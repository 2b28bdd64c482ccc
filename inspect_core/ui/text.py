"""User text (labels, paths, notes) is shown as text, never as HTML or Markdown."""
from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|:~$&=\"'^@%;/?])")


def md_escape(value) -> str:
    """Escape every Markdown / HTML special character so ``st.markdown`` / ``st.caption`` show the
    characters themselves: ``<img src=x onerror=alert(1)>`` is shown as those characters."""
    if value is None:
        return ""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def label_text(value) -> str:
    """A label for display (missing labels shown as ``(no label)``), not escaped."""
    try:
        import pandas as pd
        if value is None or pd.isna(value):
            return "(no label)"
    except (TypeError, ValueError):
        pass
    return str(value)
