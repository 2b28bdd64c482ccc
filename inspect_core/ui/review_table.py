"""The Review page's editable table, without Streamlit: the rows shown, and edits applied against the
version of each row that was shown.

An edit names a row of the table as it was shown. It is recorded only if that image's decision in force is
still the one shown (``ReviewStore.decide(expected_id=...)``); otherwise it comes back as a conflict for the
person to resolve (apply it anyway, or keep the other decision). An edit is never dropped: a decision made
meanwhile for another image does not touch it.
"""
from __future__ import annotations

import pandas as pd

from inspect_core.review import ReviewConflict, ReviewError

EDITABLE = ("action", "new_label", "note")
SHOWN = ["image_id", "action", "old_label", "new_label", "note", "decided_at", "decision_id"]


def table_view(current: pd.DataFrame) -> pd.DataFrame:
    """The decisions in force as plain objects (None for missing), with the decision_id each row shows."""
    view = current[SHOWN].astype(object)
    return view.where(view.notna(), None).reset_index(drop=True)


def _blank(value):
    return None if value is None or (isinstance(value, str) and not value.strip()) or \
        (not isinstance(value, str) and pd.isna(value)) else value


def edited_decisions(shown: pd.DataFrame, edited_rows: dict) -> list[dict]:
    """The rows whose editable cells changed: ``{image_id, action, old_label, new_label, note, expected_id}``
    with the values after the edit and the decision_id the row showed."""
    out = []
    for pos, changes in (edited_rows or {}).items():
        pos = int(pos)
        if pos < 0 or pos >= len(shown):
            continue
        before = shown.iloc[pos]
        after = {c: changes.get(c, before[c]) for c in EDITABLE}
        if all(_blank(before[c]) == _blank(after[c]) for c in EDITABLE):
            continue
        out.append({"image_id": before["image_id"], "action": after["action"], "old_label": before["old_label"],
                    "new_label": after["new_label"] if after["action"] == "relabel" else None,
                    "note": _blank(after["note"]), "expected_id": before["decision_id"]})
    return out


def apply_edits(store, edits: list[dict], source: str = "review-page",
                check_version: bool = True) -> tuple[int, list[dict], list[str]]:
    """Record ``edits``; returns ``(n_saved, conflicts, errors)``. A conflict is the edit plus ``now`` (the
    decision in force that replaced the one shown)."""
    saved, conflicts, errors = 0, [], []
    for e in edits:
        extra = {"expected_id": e["expected_id"]} if check_version else {}
        try:
            store.decide(e["image_id"], e["action"], old_label=e["old_label"], new_label=e["new_label"],
                         note=e["note"], source=source, **extra)
            saved += 1
        except ReviewConflict as exc:
            conflicts.append({**e, "now": exc.current})
        except ReviewError as exc:
            errors.append(f"{e['image_id']}: {exc}")
    return saved, conflicts, errors


def describe(decision: dict | None) -> str:
    """``relabel -> cat (note: ...)``, ``remove``, ``no decision``."""
    if not decision:
        return "no decision"
    text = str(decision["action"])
    if decision["action"] == "relabel":
        text += f" -> {decision.get('new_label')}"
    if decision.get("note"):
        text += f" (note: {decision['note']})"
    return text
