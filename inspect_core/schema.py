"""Column names shared by the library and the app, so that no page spells a column by hand."""
from __future__ import annotations

import pandas as pd

FINDING_COLUMNS = ["image_id", "check", "family", "score", "detail", "group_id"]


# The one place the issue-column prefix is spelled. Signal columns never start with it (a boolean signal is named
# like ``gray_mode``), so a column is an issue column exactly when ``check_of_column`` names its check.
ISSUE_PREFIX = "is_"


def issue_column(check: str) -> str:
    """The boolean column (of the images table, or of the boxes table for box checks) that marks rows with a
    finding of ``check``."""
    return f"{ISSUE_PREFIX}{check}"


def check_of_column(column: str) -> str | None:
    """The check whose issue column ``column`` is, or None for any other column."""
    column = str(column)
    return column[len(ISSUE_PREFIX):] if column.startswith(ISSUE_PREFIX) and len(column) > len(ISSUE_PREFIX) else None


def finding_frame(rows) -> pd.DataFrame:
    """A findings table with the canonical columns and dtypes (rows: list of dicts or a DataFrame)."""
    df = pd.DataFrame(rows)
    for c in FINDING_COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    df = df[FINDING_COLUMNS]
    return df.astype({"image_id": "str", "check": "str", "family": "str", "score": "float64",
                      "detail": "str", "group_id": "Int64"})
