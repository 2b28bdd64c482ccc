"""Column names shared by the library and the app, so that no page spells a column by hand."""
from __future__ import annotations

import pandas as pd

FINDING_COLUMNS = ["image_id", "check", "family", "score", "detail", "group_id"]


def issue_column(check: str) -> str:
    """The boolean column of the images table that marks images with a finding of ``check``."""
    return f"is_{check}"


def finding_frame(rows) -> pd.DataFrame:
    """A findings table with the canonical columns and dtypes (rows: list of dicts or a DataFrame)."""
    df = pd.DataFrame(rows)
    for c in FINDING_COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    df = df[FINDING_COLUMNS]
    return df.astype({"image_id": "str", "check": "str", "family": "str", "score": "float64",
                      "detail": "str", "group_id": "Int64"})
