"""The session store: retention purge, the update ids it keeps, and older databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.store import SEEN_UPDATES, SessionStore, open_database

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
    snapshot, seen = store.get_with_seen(7)
    assert snapshot == {"state": "a"}
    assert seen == ids[-SEEN_UPDATES:]
    assert store.get_with_seen(8) == (None, [])


def test_a_database_from_before_update_ids_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE sessions (user_id INTEGER PRIMARY KEY, snapshot TEXT NOT "
                      "NULL, updated_at INTEGER NOT NULL);"
                      "INSERT INTO sessions VALUES (5, '{\"state\": \"x\"}', 0);")
    old.commit()
    old.close()
    store = SessionStore(open_database(path))
    assert store.get_with_seen(5) == ({"state": "x"}, [])
    store.put(5, {"state": "y"}, seen=[42])
    assert store.get_with_seen(5) == ({"state": "y"}, [42])
