"""The review store: history, undo, two writers at once, and a killed writer loses nothing committed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from inspect_core.review import ReviewError, ReviewStore

REPO = Path(__file__).resolve().parents[1]


def test_history_and_current(tmp_path):
    store = ReviewStore(tmp_path)
    store.decide("train/cat/a.jpg", "relabel", old_label="cat", new_label="dog", note="looks like a dog")
    store.decide("train/cat/a.jpg", "relabel", old_label="cat", new_label="fox")
    store.decide("val/dog/b.jpg", "remove", old_label="dog", note="blurry")

    hist = store.history("train/cat/a.jpg")
    assert list(hist["new_label"]) == ["dog", "fox"]
    assert list(hist["old_label"]) == ["cat", "cat"]
    for stamp in hist["decided_at"]:
        parsed = datetime.fromisoformat(stamp)
        assert parsed.utcoffset().total_seconds() == 0

    cur = store.current().set_index("image_id")
    assert cur.loc["train/cat/a.jpg", "new_label"] == "fox"
    assert pd.isna(cur.loc["train/cat/a.jpg", "note"])  # the latest decision had no note
    assert cur.loc["val/dog/b.jpg", "action"] == "remove"
    assert len(store.history()) == 3


def test_undo_records_revert_and_keeps_history(tmp_path):
    store = ReviewStore(tmp_path)
    store.decide("x.jpg", "keep")
    store.decide("x.jpg", "relabel", old_label="a", new_label="b")
    undo_id = store.undo("x.jpg")
    assert undo_id is not None
    assert store.decision_for("x.jpg")["action"] == "keep"
    store.undo("x.jpg")
    assert store.decision_for("x.jpg") is None
    assert store.undo("x.jpg") is None
    assert store.current().empty
    assert list(store.history("x.jpg")["action"]) == ["keep", "relabel", "undo", "undo"]


def test_bad_decisions_are_refused(tmp_path):
    store = ReviewStore(tmp_path)
    with pytest.raises(ReviewError):
        store.decide("x.jpg", "delete")
    with pytest.raises(ReviewError):
        store.decide("x.jpg", "relabel", new_label="   ")
    with pytest.raises(ReviewError):
        store.decide("", "keep")
    assert store.count() == 0


def test_html_label_stored_verbatim(tmp_path):
    store = ReviewStore(tmp_path)
    label = "<img src=x onerror=alert(1)>"
    store.decide("a.jpg", "relabel", new_label=label, note="'; DROP TABLE decisions; --")
    assert store.decision_for("a.jpg")["new_label"] == label
    assert store.count() == 1


def test_two_threads_write_at_once(tmp_path):
    store = ReviewStore(tmp_path)
    other = ReviewStore(tmp_path)  # a second browser tab / page opening the same file
    n = 150
    errors = []

    def writer(s, tag):
        try:
            for i in range(n):
                s.decide(f"{tag}/{i}.jpg", "relabel", old_label="a", new_label=tag)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(store, "t1")),
               threading.Thread(target=writer, args=(other, "t2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    cur = store.current()
    assert len(cur) == 2 * n
    assert (cur["new_label"].value_counts().to_dict()) == {"t1": n, "t2": n}


def test_stores_opened_at_once_on_a_new_workspace(tmp_path):
    # Regression (CI run of session 3): two processes opening a fresh workspace at the same moment
    # raced on switching the new file to WAL, and one died with "database is locked" although the
    # busy timeout was 30 s. Eight threads opening the same new workspace at once, many times over.
    errors = []
    for trial in range(60):
        workspace = tmp_path / f"w{trial}"
        barrier = threading.Barrier(8)

        def open_store():
            barrier.wait()
            try:
                ReviewStore(workspace).decide("a.jpg", "keep")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(f"{workspace.name}: {exc!r}")

        threads = [threading.Thread(target=open_store) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert len(ReviewStore(tmp_path / "w0").history()) == 8


_WRITER = textwrap.dedent("""
    import sys
    from inspect_core.review import ReviewStore
    store = ReviewStore(sys.argv[1])
    tag, n = sys.argv[2], int(sys.argv[3])
    for i in range(n):
        did = store.decide(f"{tag}/{i}.jpg", "remove", note=str(i))
        print(f"{tag}/{i}.jpg", flush=True)
""")


def test_two_processes_write_at_once(tmp_path):
    n = 120
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), tag, str(n)],
                              stdout=subprocess.PIPE, env=env) for tag in ("p1", "p2")]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        assert len(out.splitlines()) == n
    cur = ReviewStore(tmp_path).current()
    assert len(cur) == 2 * n
    assert set(cur["image_id"]) == {f"{t}/{i}.jpg" for t in ("p1", "p2") for i in range(n)}


def test_killed_writer_loses_no_committed_decision(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), "k", "1000000"],
                            stdout=subprocess.PIPE, env=env)
    committed = []
    deadline = time.monotonic() + 60
    try:
        while len(committed) < 200 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            committed.append(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(committed) >= 200, "writer did not get going"
    assert proc.returncode == -signal.SIGKILL
    ids = set(ReviewStore(tmp_path).current()["image_id"])
    # Every decision the writer reported (decide() had returned) is in the file.
    missing = [c for c in committed if c not in ids]
    assert not missing
    assert len(ids) >= len(committed)


def test_last_id_is_the_newest_decision_id(tmp_path):
    store = ReviewStore(tmp_path)
    assert store.last_id() == 0
    first = store.decide("a.jpg", "keep")
    assert store.last_id() == first
    second = store.decide("b.jpg", "remove")
    undo = store.undo("b.jpg")
    assert store.last_id() == undo > second > first
    assert store.last_id() == int(store.history()["decision_id"].max())


# -- bulk decisions, one undo step per bulk action, edits against a stale view --------------------------
def test_decide_many_is_one_batch_one_row_per_image(tmp_path):
    store = ReviewStore(tmp_path)
    store.decide("a.jpg", "keep")
    rows = [{"image_id": "a.jpg", "action": "remove", "old_label": "cat"},
            {"image_id": "b.jpg", "action": "remove", "old_label": "dog"},
            {"image_id": "c.jpg", "action": "relabel", "old_label": "dog", "new_label": "cat"},
            {"image_id": "b.jpg", "action": "keep", "old_label": "dog"}]   # listed twice: the last row counts
    batch = store.decide_many(rows, note="bulk: integrity", source="test")
    hist = store.history()
    mine = hist[hist["batch_id"] == batch]
    assert sorted(mine["image_id"]) == ["a.jpg", "b.jpg", "c.jpg"]
    assert set(mine["note"]) == {"bulk: integrity"} and set(mine["source"]) == {"test"}
    cur = store.current().set_index("image_id")
    assert cur["action"].to_dict() == {"a.jpg": "remove", "b.jpg": "keep", "c.jpg": "relabel"}
    assert cur.loc["c.jpg", "new_label"] == "cat"
    assert store.last_batch() == {"batch_id": batch, "n_images": 3, "actions": {"keep": 1, "relabel": 1, "remove": 1},
                                  "note": "bulk: integrity", "decided_at": mine["decided_at"].iloc[0]}


def test_undo_batch_undoes_the_whole_bulk_action_in_one_step(tmp_path):
    store = ReviewStore(tmp_path)
    store.decide("a.jpg", "keep", note="before")
    batch = store.decide_many([{"image_id": f"{c}.jpg", "action": "remove"} for c in "abc"])
    assert store.undo_batch(batch) == 3
    cur = store.current().set_index("image_id")
    assert cur["action"].to_dict() == {"a.jpg": "keep"}          # a's earlier decision is in force again
    assert cur.loc["a.jpg", "note"] == "before"
    assert store.last_batch() is None
    assert store.undo_batch(batch) == 0                           # nothing left to undo
    undo_rows = store.history().query("action == 'undo'")
    assert len(undo_rows) == 3 and set(undo_rows["batch_id"]) == {f"undo-{batch}"}
    assert len(store.history()) == 1 + 3 + 3                     # nothing deleted


def test_undo_batch_leaves_later_decisions_in_force(tmp_path):
    store = ReviewStore(tmp_path)
    first = store.decide_many([{"image_id": "a.jpg", "action": "remove"}, {"image_id": "b.jpg", "action": "remove"}])
    store.decide("b.jpg", "relabel", new_label="dog")             # decided again after the bulk action
    second = store.decide_many([{"image_id": "c.jpg", "action": "keep"}])
    assert store.last_batch()["batch_id"] == second
    store.undo_batch(second)
    assert store.last_batch()["batch_id"] == first
    store.undo_batch(first)
    cur = store.current().set_index("image_id")
    assert cur["action"].to_dict() == {"b.jpg": "relabel"}


def test_bad_row_refuses_the_whole_batch(tmp_path):
    store = ReviewStore(tmp_path)
    with pytest.raises(ReviewError):
        store.decide_many([{"image_id": "a.jpg", "action": "remove"},
                           {"image_id": "b.jpg", "action": "relabel", "new_label": " "}])
    assert store.count() == 0
    assert store.decide_many([]) is None


def test_bulk_of_many_images_is_fast(tmp_path):
    store = ReviewStore(tmp_path)
    n = 20_000
    t0 = time.perf_counter()
    batch = store.decide_many([{"image_id": f"{i:06d}.jpg", "action": "remove"} for i in range(n)])
    assert len(store.current()) == n
    assert store.undo_batch(batch) == n
    assert store.current().empty
    assert time.perf_counter() - t0 < 20


def test_edit_against_a_stale_version_is_a_conflict_not_a_silent_write(tmp_path):
    from inspect_core.review import ReviewConflict
    store = ReviewStore(tmp_path)
    shown = store.decide("a.jpg", "keep")
    store.decide("a.jpg", "remove", note="from another tab")       # after the page showed `shown`
    with pytest.raises(ReviewConflict) as info:
        store.decide("a.jpg", "relabel", new_label="dog", expected_id=shown)
    assert info.value.current["action"] == "remove" and info.value.current["note"] == "from another tab"
    assert store.decision_for("a.jpg")["action"] == "remove"
    latest = int(store.current()["decision_id"].iloc[0])
    store.decide("a.jpg", "relabel", new_label="dog", expected_id=latest)   # against the current one: applied
    assert store.decision_for("a.jpg")["new_label"] == "dog"
    with pytest.raises(ReviewConflict):
        store.decide("b.jpg", "keep", expected_id=latest)                 # b had no decision, not `latest`
    store.decide("b.jpg", "keep", expected_id=None)
    assert store.decision_for("b.jpg")["action"] == "keep"


def test_store_written_before_batches_gets_the_column(tmp_path):
    import sqlite3
    con = sqlite3.connect(tmp_path / "review.sqlite")
    con.executescript("""CREATE TABLE decisions (decision_id INTEGER PRIMARY KEY AUTOINCREMENT, image_id TEXT NOT NULL,
        action TEXT NOT NULL, old_label TEXT, new_label TEXT, note TEXT, source TEXT, decided_at TEXT NOT NULL,
        reverts_id INTEGER);
        INSERT INTO decisions (image_id, action, decided_at)
        VALUES ('old.jpg', 'keep', '2024-01-01T00:00:00+00:00');""")
    con.commit()
    con.close()
    store = ReviewStore(tmp_path)
    assert store.decision_for("old.jpg")["action"] == "keep"
    batch = store.decide_many([{"image_id": "old.jpg", "action": "remove"}])
    store.undo_batch(batch)
    assert store.decision_for("old.jpg")["action"] == "keep"
