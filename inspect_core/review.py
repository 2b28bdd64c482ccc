"""Review decisions: a SQLite file in the workspace, one row per decision, history kept.

The store is a plain file (``<workspace>/review.sqlite``), so every page, browser tab and process that
opens the same workspace sees the same decisions. Each ``decide`` is its own committed transaction
(WAL journal, ``synchronous=FULL``): a process killed between two decisions loses nothing that was
already returned. Connections are opened per call, so one ``ReviewStore`` can be shared by threads.

Actions: ``relabel`` (to ``new_label``), ``remove`` (drop from the cleaned dataset), ``keep``
(reviewed, fine). ``undo(image_id)`` records an ``undo`` row that reverts the latest effective
decision of that image; nothing is ever deleted.

Bulk: ``decide_many(rows)`` records many decisions (one row per image) in one transaction under one
``batch_id``; ``undo_batch(batch_id)`` reverts every decision of that batch still in force, again in one
transaction, so one undo step undoes the whole bulk action. ``decide(..., expected_id=...)`` records a
decision only if the image's decision in force is still the one the caller showed (``ReviewConflict``
otherwise), so an edit made against a stale view is reported, never applied blindly nor dropped.
"""
from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Iterable, Iterator

import pandas as pd

ACTIONS = ("relabel", "remove", "keep")
DB_NAME = "review.sqlite"
BUSY_TIMEOUT_S = 30.0

CURRENT_COLUMNS = ["image_id", "action", "old_label", "new_label", "note", "decided_at"]
HISTORY_COLUMNS = ["decision_id", "image_id", "action", "old_label", "new_label", "note", "source",
                   "decided_at", "reverts_id", "batch_id"]
_ANY = object()  # decide(expected_id=...) not given: no version check

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    old_label   TEXT,
    new_label   TEXT,
    note        TEXT,
    source      TEXT,
    decided_at  TEXT NOT NULL,
    reverts_id  INTEGER,
    batch_id    TEXT
);
CREATE INDEX IF NOT EXISTS decisions_image ON decisions (image_id, decision_id);
CREATE INDEX IF NOT EXISTS decisions_reverts ON decisions (reverts_id);
"""
_BATCH_INDEX = "CREATE INDEX IF NOT EXISTS decisions_batch ON decisions (batch_id)"

# Decisions that are still in force: not an undo row and not reverted by one.
_EFFECTIVE = """
SELECT * FROM decisions d
WHERE d.action != 'undo'
  AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.reverts_id = d.decision_id)
"""


class ReviewError(ValueError):
    """A decision that cannot be recorded (unknown action, relabel without a label...)."""



@contextmanager
def write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The store's one write transaction: ``BEGIN IMMEDIATE`` (the write lock taken at once), ``COMMIT`` at the end
    of the block, ``ROLLBACK`` on any exception. A block that returns early without writing commits nothing."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class ReviewStoreError(ReviewError):
    """The store cannot be used as asked: its file is damaged, or the workspace is read-only and a decision was
    to be written. The message names the file and what to do."""


def _damaged(path: Path, exc: Exception) -> ReviewStoreError:
    return ReviewStoreError(
        f"the review store {path} is damaged ({exc}): keep a copy of it (it may still be recovered with the "
        "sqlite3 '.recover' command), then move it out of the workspace; a new, empty store is started the next "
        "time the workspace is opened")


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return not isinstance(exc, sqlite3.OperationalError) or "malformed" in text or "not a database" in text


def _is_read_only(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, PermissionError) or "readonly" in text or "read-only" in text or \
        "unable to open" in text or "disk i/o" in text


class ReviewConflict(ReviewError):
    """The image's decision in force changed (another tab or process) since the caller read it.

    ``current`` is the decision in force now (a dict as ``decision_for`` gives, or None)."""

    def __init__(self, image_id: str, current: dict | None):
        self.image_id = image_id
        self.current = current
        now = "no decision" if current is None else (
            current["action"] + (f" -> {current['new_label']}" if current["action"] == "relabel" else ""))
        super().__init__(f"{image_id} was decided elsewhere since it was shown (now: {now})")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _text_or_none(value) -> str | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = str(value)
    return text


class ReviewStore:
    """Decisions for one dataset workspace."""

    def __init__(self, workspace: Path | str, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.workspace = Path(workspace)
        self.path = self.workspace / DB_NAME
        self.busy_timeout_s = float(busy_timeout_s)
        # read_only: the workspace cannot be written (decisions are read, ``decide`` raises ReviewStoreError);
        # _uri: how a read-only store is opened (None: the file itself, read-write)
        self.read_only = False
        self._uri: str | None = None
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
            self._create()
        except (OSError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and _is_damage(exc):
                raise _damaged(self.path, exc) from None
            if not _is_read_only(exc):
                raise
            self._open_read_only()

    def _open_read_only(self) -> None:
        """Open the store of a workspace that cannot be written: read-only, or (a WAL file whose -shm cannot be
        made) as an immutable file; a workspace without a store reads as one without decisions."""
        from urllib.parse import quote

        self.read_only = True
        if not self.path.exists():
            self._uri = "file:review-empty?mode=memory"
            return
        last = None
        for flags in ("mode=ro", "immutable=1"):
            self._uri = f"file:{quote(str(self.path.resolve()))}?{flags}"
            try:
                with self._connect() as con:
                    con.execute("SELECT COUNT(*) FROM decisions").fetchone()
                return
            except ReviewStoreError:
                raise
            except sqlite3.DatabaseError as exc:
                last = exc
        raise ReviewStoreError(f"the review store {self.path} cannot be opened, even to read ({last}): check the "
                               "permissions of the workspace folder and of the file")

    def _create(self) -> None:
        """Switch the file to WAL and create the table, waiting out other processes doing the same.

        Switching a new file to WAL needs the file to itself, and SQLite answers "database is
        locked" at once, without the busy timeout, when two connections race for that (each holds
        a read lock the other must wait for). So the switch is retried until the busy timeout.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                with self._connect() as con:
                    con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                    columns = {r[1] for r in con.execute("PRAGMA table_info(decisions)")}
                    if "batch_id" not in columns:  # a store written before bulk decisions existed
                        con.execute("ALTER TABLE decisions ADD COLUMN batch_id TEXT")
                    con.execute(_BATCH_INDEX)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        f"{self.path} stayed locked for {self.busy_timeout_s:.0f} s: another program "
                        "holds it; close other Dataset Inspector windows on this workspace and retry") from exc
                time.sleep(0.01)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self._uri is None:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        else:
            con = sqlite3.connect(self._uri, uri=True, timeout=self.busy_timeout_s, isolation_level=None)
            if "mode=memory" in self._uri:
                con.executescript(_SCHEMA)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            if self._uri is None:
                con.execute("PRAGMA synchronous=FULL")
            yield con
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise _damaged(self.path, exc) from None
            if self.read_only and _is_read_only(exc):
                raise ReviewStoreError(f"the workspace {self.workspace} is read-only: decisions can be read but "
                                       "not recorded; open the dataset with a workspace you can write "
                                       "(--workspace, or XDG_CACHE_HOME)") from None
            raise
        finally:
            con.close()

    # -- writing -------------------------------------------------------------------------------
    @staticmethod
    def _row(image_id, action: str, old_label=None, new_label=None, note=None) -> tuple:
        """A validated ``(image_id, action, old_label, new_label, note)``; raises ReviewError."""
        image_id = _text_or_none(image_id)
        if not image_id:
            raise ReviewError("a decision needs an image_id")
        if action not in ACTIONS:
            raise ReviewError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        new_label = _text_or_none(new_label)
        if action == "relabel":
            new_label = (new_label or "").strip()
            if not new_label:
                raise ReviewError(f"relabel of {image_id} needs a new label")
        else:
            new_label = None
        note = _text_or_none(note)
        if note is not None and not note.strip():
            note = None
        return image_id, action, _text_or_none(old_label), new_label, note

    def _in_force_id(self, con: sqlite3.Connection, image_id: str) -> int | None:
        row = con.execute(f"SELECT decision_id FROM ({_EFFECTIVE}) WHERE image_id = ? "
                          "ORDER BY decision_id DESC LIMIT 1", (image_id,)).fetchone()
        return None if row is None else int(row[0])

    def decide(self, image_id: str, action: str, *, old_label=None, new_label=None, note=None,
               source: str = "app", expected_id=_ANY) -> int:
        """Record one decision now (committed before returning); returns its decision_id.

        ``expected_id``: the decision_id in force that the caller showed (None: no decision). When given
        and the image's decision in force is another one now, nothing is written and ``ReviewConflict``
        is raised."""
        row = self._row(image_id, action, old_label, new_label, note)
        with self._connect() as con, write_transaction(con):
            if expected_id is not _ANY:
                now = self._in_force_id(con, row[0])
                expected = None if expected_id is None or pd.isna(expected_id) else int(expected_id)
                if now != expected:
                    raise ReviewConflict(row[0], self.decision_for(row[0]))
            cur = con.execute(
                "INSERT INTO decisions (image_id, action, old_label, new_label, note, source, decided_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", row + (source, utc_now_iso()))
        return int(cur.lastrowid)

    def decide_many(self, rows: Iterable[dict], *, note=None, source: str = "bulk") -> str | None:
        """Record many decisions as one batch, in one transaction (all or none); returns the batch_id
        (None when ``rows`` is empty).

        Each row: ``image_id``, ``action``, optional ``old_label`` and ``new_label``; ``note`` applies to
        every row. An image listed twice keeps only its last row, so the batch has one decision per image."""
        by_image: dict[str, tuple] = {}
        for r in rows:
            checked = self._row(r.get("image_id"), r.get("action"), r.get("old_label"), r.get("new_label"), note)
            by_image.pop(checked[0], None)
            by_image[checked[0]] = checked
        if not by_image:
            return None
        batch_id = f"b{uuid.uuid4().hex[:12]}"
        stamp = utc_now_iso()
        with self._connect() as con, write_transaction(con):
            con.executemany(
                "INSERT INTO decisions (image_id, action, old_label, new_label, note, source, decided_at,"
                " batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [r + (source, stamp, batch_id) for r in by_image.values()])
        return batch_id

    def undo_batch(self, batch_id: str, source: str = "app") -> int:
        """Revert every decision of ``batch_id`` that is still in force, in one transaction (the undo rows
        share the batch id ``undo-<batch_id>``); returns how many were reverted. A decision of that batch
        already replaced by a later one is reverted too, so the later one stays in force."""
        with self._connect() as con, write_transaction(con):
            ids = con.execute(f"SELECT image_id, decision_id FROM ({_EFFECTIVE}) WHERE batch_id = ?",
                              (batch_id,)).fetchall()
            stamp = utc_now_iso()
            con.executemany(
                "INSERT INTO decisions (image_id, action, source, decided_at, reverts_id, batch_id)"
                " VALUES (?, 'undo', ?, ?, ?, ?)",
                [(iid, source, stamp, did, f"undo-{batch_id}") for iid, did in ids])
        return len(ids)

    def last_batch(self) -> dict | None:
        """The newest bulk action with decisions still in force: ``{"batch_id", "n_images", "actions"
        ({action: count}), "note", "decided_at"}``, or None."""
        with self._connect() as con:
            row = con.execute(
                f"SELECT batch_id FROM ({_EFFECTIVE}) WHERE batch_id IS NOT NULL "
                "ORDER BY decision_id DESC LIMIT 1").fetchone()
            if row is None:
                return None
            counts = con.execute(
                f"SELECT action, COUNT(*), MAX(note), MAX(decided_at) FROM ({_EFFECTIVE}) WHERE batch_id = ? "
                "GROUP BY action ORDER BY action", (row[0],)).fetchall()
        return {"batch_id": row[0], "n_images": sum(c[1] for c in counts),
                "actions": {c[0]: int(c[1]) for c in counts}, "note": next((c[2] for c in counts if c[2]), None),
                "decided_at": max(c[3] for c in counts)}

    def undo(self, image_id: str, source: str = "app") -> int | None:
        """Revert the latest decision in force for ``image_id``; returns the undo row's id (None if nothing to undo)."""
        with self._connect() as con, write_transaction(con):
            in_force = self._in_force_id(con, image_id)
            if in_force is None:
                return None
            cur = con.execute(
                "INSERT INTO decisions (image_id, action, source, decided_at, reverts_id)"
                " VALUES (?, 'undo', ?, ?, ?)", (image_id, source, utc_now_iso(), in_force))
        return int(cur.lastrowid)

    # -- reading -------------------------------------------------------------------------------
    def _frame(self, sql: str, params=()) -> pd.DataFrame:
        with self._connect() as con:
            cur = con.execute(sql, params)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        df = pd.DataFrame(rows, columns=names)
        for col in df.columns:
            if col in ("decision_id", "reverts_id"):
                df[col] = df[col].astype("Int64")
            else:
                df[col] = df[col].astype("string")
        return df

    def current(self) -> pd.DataFrame:
        """The decision in force per image (latest, undo applied), ordered by image_id."""
        df = self._frame(
            f"SELECT e.* FROM ({_EFFECTIVE}) e JOIN ("
            f"  SELECT image_id, MAX(decision_id) AS last_id FROM ({_EFFECTIVE}) GROUP BY image_id"
            ") m ON e.decision_id = m.last_id ORDER BY e.image_id")
        return df[CURRENT_COLUMNS + ["decision_id", "source"]].reset_index(drop=True)

    def history(self, image_id: str | None = None) -> pd.DataFrame:
        """Every recorded row (undo rows included), oldest first."""
        if image_id is None:
            df = self._frame("SELECT * FROM decisions ORDER BY decision_id")
        else:
            df = self._frame("SELECT * FROM decisions WHERE image_id = ? ORDER BY decision_id", (image_id,))
        return df[HISTORY_COLUMNS].reset_index(drop=True)

    def decision_for(self, image_id: str) -> dict | None:
        """The decision in force for one image as a dict, or None."""
        df = self._frame(
            f"SELECT * FROM ({_EFFECTIVE}) WHERE image_id = ? ORDER BY decision_id DESC LIMIT 1", (image_id,))
        if df.empty:
            return None
        row = df.iloc[0]
        return {c: (None if pd.isna(row[c]) else row[c]) for c in CURRENT_COLUMNS}

    def count(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def last_id(self) -> int:
        """The newest decision_id recorded (undo rows included), 0 when there is none: changes with every
        write, so it versions anything derived from the decisions."""
        with self._connect() as con:
            row = con.execute("SELECT MAX(decision_id) FROM decisions").fetchone()
        return int(row[0]) if row and row[0] is not None else 0
