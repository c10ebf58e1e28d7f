"""The session store: retention purge, the update ids it keeps, and older databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.store import SEEN_UPDATES, TOUCH_EVERY_SECONDS, SessionStore, Stored, open_database

DAY = 86_400


def test_purge_removes_only_sessions_idle_past_retention(tmp_path: Path) -> None:
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    now = 1_800_000_000
    store.put(1, {"state": "a"}, now=now - 31 * DAY)  # idle 31 days
    store.put(2, {"state": "b"}, now=now - 29 * DAY)
    store.put(3, {"state": "c"}, now=now)
    assert store.purge(30, now=now) == 1
    assert store.get(1) is None
    assert store.get(2) == {"state": "b"} and store.get(3) == {"state": "c"}
    assert store.purge(30, now=now) == 0
    # using a session again restarts its clock
    store.put(2, {"state": "b"}, now=now)
    assert store.purge(30, now=now + 2 * DAY) == 0


def test_seen_update_ids_are_kept_and_bounded(tmp_path: Path) -> None:
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    ids = list(range(100, 100 + SEEN_UPDATES + 5))
    store.put(7, {"state": "a"}, seen=ids)
    stored = store.load(7)
    snapshot, seen = stored.snapshot, stored.seen
    assert snapshot == {"state": "a"}
    assert seen == ids[-SEEN_UPDATES:]
    assert store.load(8) == Stored()


def test_a_database_from_before_update_ids_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE sessions (user_id INTEGER PRIMARY KEY, snapshot TEXT NOT "
                      "NULL, updated_at INTEGER NOT NULL);"
                      "INSERT INTO sessions VALUES (5, '{\"state\": \"x\"}', 0);")
    old.commit()
    old.close()
    store = SessionStore(open_database(path))
    assert store.load(5) == Stored({"state": "x"}, [], 0)
    store.put(5, {"state": "y"}, seen=[42])
    assert (store.load(5).snapshot, store.load(5).seen) == ({"state": "y"}, [42])


def test_save_refreshes_the_last_use_at_most_hourly(tmp_path: Path) -> None:
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    t0 = 1_800_000_000
    store.save(1, {"n": 1}, [], store.load(1), now=t0)  # a new row: stamped
    assert store.load(1).updated_at == t0
    store.save(1, {"n": 2}, [5], store.load(1), now=t0 + 60)  # fresh: snapshot only
    assert store.load(1) == Stored({"n": 2}, [5], t0)
    later = t0 + TOUCH_EVERY_SECONDS
    store.save(1, {"n": 3}, [5], store.load(1), now=later)
    assert store.load(1) == Stored({"n": 3}, [5], later)
