"""Per-box review decisions for detection triage: a table beside the image decisions in the workspace's review
store (``review.sqlite``), one row per decision, history kept, nothing ever deleted.

A box is named by ``box_key``: ``"ann:<ann_id>"`` for an annotated box (the loader's ``ann_id``; the COCO
annotation id for a COCO dataset) or ``"pred:<pred_id>"`` for a predicted box. Actions:

- ``accept``: a predicted box becomes a new annotation (its box and class are stored with the decision, so the
  export does not need the predictions file again; ``new_category`` may change the class);
- ``delete``: an annotated box is dropped;
- ``relabel``: an annotated box gets ``new_category``;
- ``fine``: reviewed, nothing to change (any box).

The box as shown is stored with every decision (when given): a ``pred:`` key is a row number of one
predictions file, so a page can tell a decision made on another version of the file (``same_box``).

``undo(box_key)`` records an ``undo`` row that reverts the box's decision in force. Connections, locking, the
read-only workspace and a damaged file are handled by ``review.ReviewStore`` (one connection per call, WAL,
each decision its own committed transaction), which this class wraps.
"""
from __future__ import annotations

import math
import sqlite3

import pandas as pd

from ..review import ReviewError, ReviewStore, _text_or_none, utc_now_iso, write_transaction

BOX_ACTIONS = ("accept", "delete", "relabel", "fine")
BOX_COLUMNS = ["box_x_px", "box_y_px", "box_w_px", "box_h_px"]
CURRENT_COLUMNS = ["box_key", "image_id", "action", "category", "new_category"] + BOX_COLUMNS + \
    ["note", "decided_at", "decision_id"]
HISTORY_COLUMNS = ["decision_id", "box_key", "image_id", "action", "category", "new_category"] + BOX_COLUMNS + \
    ["note", "source", "decided_at", "reverts_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS box_decisions (
    decision_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    box_key      TEXT NOT NULL,
    image_id     TEXT NOT NULL,
    action       TEXT NOT NULL,
    category     TEXT,
    new_category TEXT,
    box_x_px     REAL,
    box_y_px     REAL,
    box_w_px     REAL,
    box_h_px     REAL,
    note         TEXT,
    source       TEXT,
    decided_at   TEXT NOT NULL,
    reverts_id   INTEGER
);
CREATE INDEX IF NOT EXISTS box_decisions_key ON box_decisions (box_key, decision_id);
CREATE INDEX IF NOT EXISTS box_decisions_reverts ON box_decisions (reverts_id);
"""

_EFFECTIVE = """
SELECT * FROM box_decisions d
WHERE d.action != 'undo'
  AND NOT EXISTS (SELECT 1 FROM box_decisions u WHERE u.reverts_id = d.decision_id)
"""


def ann_key(ann_id) -> str:
    return f"ann:{int(ann_id)}"


def pred_key(pred_id) -> str:
    return f"pred:{int(pred_id)}"


def same_box(decision: dict, box_xywh_px, tol_px: float = 0.01) -> bool:
    """Whether a decision (a ``current()`` row) was made on this box: its stored box equals ``box_xywh_px``
    within ``tol_px``; a decision stored without a box matches any."""
    stored = [decision.get(c) for c in BOX_COLUMNS]
    if any(v is None or not math.isfinite(float(v)) for v in stored):
        return True
    return all(abs(float(a) - float(b)) <= tol_px for a, b in zip(stored, box_xywh_px))


def key_id(box_key: str) -> tuple[str, int]:
    """``"ann:12"`` -> ("ann", 12); raises ReviewError for anything else."""
    kind, _, num = str(box_key).partition(":")
    if kind not in ("ann", "pred") or not num.lstrip("-").isdigit():
        raise ReviewError(f"box key {box_key!r} is not 'ann:<ann_id>' or 'pred:<pred_id>'")
    return kind, int(num)


class BoxDecisionStore:
    """Per-box decisions of one dataset workspace (in its ``review.sqlite``)."""

    def __init__(self, workspace, review_store: ReviewStore | None = None):
        self.review = review_store if review_store is not None else ReviewStore(workspace)
        self.path = self.review.path
        self.read_only = self.review.read_only
        if not self.read_only:
            with self.review._connect() as con:
                con.executescript(_SCHEMA)

    def _connect(self):
        return self.review._connect()

    # -- writing -------------------------------------------------------------------------------
    @staticmethod
    def _row(image_id, box_key, action, category, new_category, box_xywh_px, note) -> tuple:
        image_id = _text_or_none(image_id)
        if not image_id:
            raise ReviewError("a box decision needs an image_id")
        kind, _ = key_id(box_key)
        if action not in BOX_ACTIONS:
            raise ReviewError(f"unknown box action {action!r}; use one of {', '.join(BOX_ACTIONS)}")
        category, new_category = _text_or_none(category), (_text_or_none(new_category) or "").strip() or None
        box = [None] * 4
        if action == "accept":
            if kind != "pred":
                raise ReviewError(f"accept applies to a predicted box, not {box_key}")
            new_category = new_category or category
            if not new_category:
                raise ReviewError(f"accepting {box_key} needs its class")
            if box_xywh_px is None or len(box_xywh_px) != 4:
                raise ReviewError(f"accepting {box_key} needs its box [x, y, w, h] in px")
            box = [float(v) for v in box_xywh_px]
            if not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
                raise ReviewError(f"accepting {box_key}: box {box} has no area")
        elif action in ("delete", "relabel"):
            if kind != "ann":
                raise ReviewError(f"{action} applies to an annotated box, not {box_key}")
            if action == "relabel" and not new_category:
                raise ReviewError(f"relabel of {box_key} needs a new class")
            if action == "delete":
                new_category = None
        else:
            new_category = None
        if action != "accept" and box_xywh_px is not None and len(box_xywh_px) == 4:
            box = [float(v) for v in box_xywh_px]        # the box as shown: evidence, and names the box
        note = _text_or_none(note)
        note = note if note and note.strip() else None
        return (str(box_key), image_id, action, category, new_category, *box, note)

    def decide(self, image_id: str, box_key: str, action: str, *, category=None, new_category=None,
               box_xywh_px=None, note=None, source: str = "app") -> int:
        """Record one box decision now (committed before returning); returns its decision_id.
        ``category``: the box's class as shown; ``box_xywh_px``: the box (needed for ``accept``)."""
        row = self._row(image_id, box_key, action, category, new_category, box_xywh_px, note)
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO box_decisions (box_key, image_id, action, category, new_category, box_x_px, box_y_px,"
                " box_w_px, box_h_px, note, source, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row + (source, utc_now_iso()))
            return int(cur.lastrowid)

    def undo(self, box_key: str, source: str = "app") -> int | None:
        """Revert the decision in force for ``box_key``; the undo row's id, None when there is nothing to undo."""
        with self._connect() as con, write_transaction(con):
            row = con.execute(f"SELECT decision_id, image_id FROM ({_EFFECTIVE}) WHERE box_key = ? "
                              "ORDER BY decision_id DESC LIMIT 1", (str(box_key),)).fetchone()
            if row is None:
                return None
            cur = con.execute("INSERT INTO box_decisions (box_key, image_id, action, source, decided_at,"
                              " reverts_id) VALUES (?, ?, 'undo', ?, ?, ?)",
                              (str(box_key), row[1], source, utc_now_iso(), row[0]))
        return int(cur.lastrowid)

    # -- reading -------------------------------------------------------------------------------
    def _frame(self, sql: str, params=()) -> pd.DataFrame:
        try:
            with self._connect() as con:
                cur = con.execute(sql, params)
                names = [d[0] for d in cur.description]
                rows = cur.fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):     # a read-only store written before box decisions existed
                raise
            names, rows = [c for c in HISTORY_COLUMNS], []
        df = pd.DataFrame(rows, columns=names)
        for col in df.columns:
            if col in ("decision_id", "reverts_id"):
                df[col] = df[col].astype("Int64")
            elif col in BOX_COLUMNS:
                df[col] = df[col].astype("float64")
            else:
                df[col] = df[col].astype("string")
        return df

    def current(self, image_id: str | None = None) -> pd.DataFrame:
        """The decision in force per box (latest, undo applied), ordered by decision_id."""
        where, params = ("WHERE e.image_id = ?", (image_id,)) if image_id is not None else ("", ())
        df = self._frame(
            f"SELECT e.* FROM ({_EFFECTIVE}) e JOIN ("
            f"  SELECT box_key, MAX(decision_id) AS last_id FROM ({_EFFECTIVE}) GROUP BY box_key"
            f") m ON e.decision_id = m.last_id {where} ORDER BY e.decision_id", params)
        if df.empty:
            df = self._frame("SELECT * FROM box_decisions WHERE 0")
        return df[CURRENT_COLUMNS].reset_index(drop=True)

    def history(self, box_key: str | None = None) -> pd.DataFrame:
        """Every recorded row (undo rows included), oldest first."""
        if box_key is None:
            df = self._frame("SELECT * FROM box_decisions ORDER BY decision_id")
        else:
            df = self._frame("SELECT * FROM box_decisions WHERE box_key = ? ORDER BY decision_id", (str(box_key),))
        return df[HISTORY_COLUMNS].reset_index(drop=True)

    def last_id(self) -> int:
        """The newest decision_id (undo rows included), 0 when none: versions anything derived from them."""
        try:
            with self._connect() as con:
                row = con.execute("SELECT MAX(decision_id) FROM box_decisions").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row and row[0] is not None else 0
