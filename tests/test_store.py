"""The session store: retention purge, the update ids it keeps, and older databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.store import (
    SEEN_UPDATES,
    TOUCH_EVERY_SECONDS,
    DatabaseInUse,
    SessionStore,
    Stored,
    checkpoint,
    claim_database,
    compact,
    file_identity,
    moved_away,
    open_database,
    write_back,
)

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


def test_a_last_use_stamped_while_the_clock_ran_ahead_does_not_outlive_retention(
        tmp_path: Path) -> None:
    """The clock was a year fast when two sessions were stamped, then set right: the one
    used since is stamped afresh, and the idle one is counted from the first purge after,
    so neither outlives the retention period by the year."""
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    now = 1_800_000_000
    for user in (1, 2):
        store.put(user, {"state": "a"}, now=now + 365 * DAY)
    store.save(1, {"state": "b"}, [], store.load(1), now=now)
    assert store.load(1).updated_at == now // TOUCH_EVERY_SECONDS * TOUCH_EVERY_SECONDS
    assert store.purge(30, now=now) == 0  # neither idle yet
    assert store.purge(30, now=now + 31 * DAY) == 2
    assert store.get(1) is None and store.get(2) is None


def test_seen_update_ids_are_kept_and_bounded(tmp_path: Path) -> None:
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    ids = list(range(100, 100 + SEEN_UPDATES + 5))
    store.put(7, {"state": "a"}, seen=ids)
    stored = store.load(7)
    snapshot, seen = stored.snapshot, stored.seen
    assert snapshot == {"state": "a"}
    assert seen == ids[-SEEN_UPDATES:]
    assert store.load(8) == Stored()
    # and so by the write made within the hour (which keeps the stamp), as stored
    more = [*ids, *range(500, 510)]
    store.save(7, {"state": "b"}, more, store.load(7), now=stored.updated_at)
    assert store.load(7).seen == more[-SEEN_UPDATES:]
    fresh = SessionStore(open_database(tmp_path / "s.sqlite3"))  # no cache
    assert fresh.load(7).seen == more[-SEEN_UPDATES:]


def test_update_ids_not_written_as_integers_are_left_out(tmp_path: Path) -> None:
    """A `seen` column changed by hand to hold what is no integer ("--7", a superscript
    digit, a blank, more digits than int() reads) loses only those: the session still
    loads, and the next write keeps the rest."""
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    store.put(7, {"state": "a"}, seen=[1])
    odd = ["3", "--7", "\u00b2", " 4 ", "-5", "", "+6", "0x8", "1" * 5000, "9"]
    store.db.execute("UPDATE sessions SET seen = ? WHERE user_id = 7", (",".join(odd),))
    fresh = SessionStore(store.db)  # no cache
    stored = fresh.load(7)
    assert (stored.snapshot, stored.seen) == ({"state": "a"}, [3, -5, 9])
    fresh.save(7, {"state": "b"}, [*stored.seen, 10], stored)
    assert SessionStore(store.db).load(7).seen == [3, -5, 9, 10]


def test_a_database_from_before_update_ids_gains_the_column(
        older_database: Callable[[str], Path]) -> None:
    path = older_database("CREATE TABLE sessions (user_id INTEGER PRIMARY KEY, snapshot TEXT "
                          "NOT NULL, updated_at INTEGER NOT NULL);"
                          "INSERT INTO sessions VALUES (5, '{\"state\": \"x\"}', 0);")
    store = SessionStore(open_database(path))
    assert store.load(5) == Stored({"state": "x"}, [], 0)
    store.put(5, {"state": "y"}, seen=[42])
    assert (store.load(5).snapshot, store.load(5).seen) == ({"state": "y"}, [42])


def test_save_keeps_the_hour_of_last_use_refreshed_hourly(tmp_path: Path) -> None:
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    hour = 1_800_000_000  # on the hour
    assert hour % TOUCH_EVERY_SECONDS == 0
    store.save(1, {"n": 1}, [], store.load(1), now=hour + 1234)  # a new row: stamped
    assert store.load(1).updated_at == hour  # the hour, not the second
    store.save(1, {"n": 2}, [5], store.load(1), now=hour + 3599)  # fresh: snapshot only
    assert store.load(1) == Stored({"n": 2}, [5], hour)
    next_hour = hour + TOUCH_EVERY_SECONDS
    store.save(1, {"n": 3}, [5], store.load(1), now=next_hour + 7)
    assert store.load(1) == Stored({"n": 3}, [5], next_hour)
    row = store.db.execute("SELECT updated_at FROM sessions WHERE user_id = 1").fetchone()
    assert row == (next_hour,)  # as stored, not only as cached


def database_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, as anyone reading the disk would."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def test_erased_sessions_leave_no_bytes_in_the_files(tmp_path: Path) -> None:
    """/forget, a blocked bot and the retention purge erase the row's bytes, not only the
    row: SQLite would otherwise keep them in free space and in the write-ahead log."""
    path = tmp_path / "s.sqlite3"
    store = SessionStore(open_database(path))
    now = 1_800_000_000
    store.put(7, {"answers": "forget-me-seven"}, now=now)
    store.put(9, {"answers": "purge-me-nine"}, now=now - 40 * DAY)
    store.put(8, {"answers": "keep-me-eight"}, now=now)
    for user in range(100, 400):  # more pages, so the last write below is not on theirs
        store.put(user, {"answers": f"someone-else-{user:04}"}, now=now)
    checkpoint(path)  # in the database file, as after the bot's periodic checkpoint
    assert b"forget-me-seven" in database_bytes(path)  # the search can find them
    assert store.delete(7) == 1
    assert store.purge(30, now=now) == 1
    checkpoint(path)
    store.put(399, {"answers": "kept"}, now=now)  # the next write starts the log afresh
    data = database_bytes(path)
    assert b"forget-me-seven" not in data
    assert b"purge-me-nine" not in data
    assert b"keep-me-eight" in data and b"someone-else-0100" in data


def varint(n: int) -> bytes:
    """SQLite's encoding of an integer key in a B-tree page (up to 8 bytes' worth here)."""
    groups = []
    while True:
        groups.append(n & 0x7F)
        n >>= 7
        if not n:
            break
    groups.reverse()
    return bytes([0x80 | g for g in groups[:-1]] + [groups[-1]])


def test_compact_leaves_no_erased_user_id_in_the_file(tmp_path: Path) -> None:
    """The inner pages of the sessions table keep copies of some keys, user ids, after
    their rows are erased; `compact` rebuilds the tree from the live rows alone."""
    path = tmp_path / "s.sqlite3"
    store = SessionStore(open_database(path))
    users = [6_700_000_000 + 7_919 * n for n in range(400)]  # ids as long as real ones
    for user in users:
        store.put(user, {"answers": f"answers-of-{user}"})
    assert checkpoint(path, empty_log=True)
    data = database_bytes(path)  # the database file alone: the log is empty
    # a key found twice: in its row's leaf page and as a divider in an inner page
    dividers = [user for user in users if data.count(varint(user)) > 1]
    erased = dividers[:3]
    kept = [user for user in users if user not in erased]
    for user in erased:
        assert store.delete(user) == 1
    assert checkpoint(path, empty_log=True)
    data = database_bytes(path)
    assert all(f"answers-of-{user}".encode() not in data for user in erased)
    assert all(varint(user) in data for user in erased)  # their rows are gone; keys not
    store.db.close()

    before, after = compact(path)
    assert before >= after == path.stat().st_size
    data = database_bytes(path)
    assert [user for user in erased if varint(user) in data] == []
    store = SessionStore(open_database(path))
    assert all(store.get(user) == {"answers": f"answers-of-{user}"} for user in kept)
    assert all(store.get(user) is None for user in erased)


def test_compact_refuses_while_a_bot_holds_the_database(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    SessionStore(open_database(path)).put(7, {"answers": "kept"})
    held = claim_database(path)
    try:
        with pytest.raises(DatabaseInUse):
            compact(path)
    finally:
        assert held is not None
        held.close()
    with pytest.raises(FileNotFoundError):
        compact(tmp_path / "none.sqlite3")
    assert not (tmp_path / "none.sqlite3").exists()


def test_after_an_erase_the_checkpoint_empties_the_log_without_a_later_write(
        tmp_path: Path) -> None:
    """A quiet bot makes no "next write": the checkpoint after an erase cuts the log
    itself, and the store says when one is due."""
    path = tmp_path / "s.sqlite3"
    store = SessionStore(open_database(path))
    assert store.erased  # at start: a killed process may have left erased rows behind
    store.put(7, {"answers": "forget-me-seven"})
    store.put(8, {"answers": "keep-me-eight"})
    assert checkpoint(path, empty_log=True)
    store.erased = False
    store.put(7, {"answers": "forget-me-seven-again"})
    assert store.delete(8) == 1 and store.delete(7) == 1
    assert store.erased
    checkpoint(path)  # the plain periodic one: older page copies stay in the log
    assert b"forget-me-seven-again" in database_bytes(path)
    assert checkpoint(path, empty_log=True)
    data = database_bytes(path)
    assert b"forget-me-seven" not in data and b"keep-me-eight" not in data
    assert (tmp_path / "s.sqlite3-wal").stat().st_size == 0

    store.erased = False
    assert store.delete(8) == 0 and store.purge(30) == 0
    assert not store.erased  # nothing was erased: no emptying due


def test_a_database_deleted_while_open_is_written_back_whole(tmp_path: Path) -> None:
    """Deleted by hand while the bot runs (its log beside it too, or not): once the bot
    has stopped, its rows, the latest writes included, are written back from the open
    connection, owner-only."""
    for deleted in (("s.sqlite3",), ("s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm")):
        path = tmp_path / "s.sqlite3"
        db = open_database(path)
        store = SessionStore(db)
        identity = file_identity(path)
        store.put(1, {"state": "a"})
        assert moved_away(path, identity) is None
        for name in deleted:
            (tmp_path / name).unlink()
        store.put(2, {"state": "b"})  # acknowledged after the deletion
        assert moved_away(path, identity) == "deleted"
        assert "written back" in write_back(db, path)
        db.close()
        assert path.stat().st_mode & 0o777 == 0o600
        back_db = open_database(path)
        back = SessionStore(back_db)
        assert back.get(1) == {"state": "a"} and back.get(2) == {"state": "b"}
        assert back_db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        back_db.close()
        for name in ("s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm"):
            (tmp_path / name).unlink(missing_ok=True)


def test_a_database_replaced_while_open_is_left_as_it_is(tmp_path: Path) -> None:
    """Another file put in its place (a backup, say) is left as it is, and the log the
    bot leaves by the same name holds nothing to be read into it."""
    path = tmp_path / "s.sqlite3"
    db = open_database(path)
    store = SessionStore(db)
    identity = file_identity(path)
    store.put(1, {"state": "a"})
    other = tmp_path / "other.sqlite3"
    other_db = open_database(other)
    SessionStore(other_db).put(9, {"state": "z"})
    other_db.close()  # its log copied in
    other.replace(path)
    store.put(3, {"state": "c"})
    assert moved_away(path, identity) == "replaced by another file"
    assert "left as it is" in write_back(db, path)
    db.close()
    kept_db = open_database(path)
    kept = SessionStore(kept_db)
    assert kept.get(9) == {"state": "z"} and kept.get(1) is None and kept.get(3) is None
    assert kept_db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    kept_db.close()


def test_the_checkpoint_makes_no_file_where_there_is_none(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    SessionStore(open_database(path))
    path.unlink()
    with pytest.raises(sqlite3.OperationalError):
        checkpoint(path)
    assert not path.exists()


@pytest.mark.parametrize("text", ["{not json", "[" * 100_000 + "]" * 100_000, "[1, 2]"])
def test_a_row_that_is_not_a_snapshot_reads_as_an_empty_one(tmp_path: Path,
                                                            text: str) -> None:
    """Damaged by hand or by another program: read as empty (the engine then starts the
    person afresh, saying so), never an error on each of their updates."""
    db = open_database(tmp_path / "s.sqlite3")
    store = SessionStore(db)
    db.execute("INSERT INTO sessions (user_id, snapshot, updated_at) VALUES (1, ?, 0)",
               (text,))
    assert store.get(1) == {}


def test_a_write_back_that_fails_half_way_leaves_nothing_at_the_path(tmp_path: Path) -> None:
    """A half-written copy must not be there for the next start to open as the database."""
    path = tmp_path / "s.sqlite3"
    db = open_database(path)
    SessionStore(db).put(1, {"state": "a"})
    path.unlink()

    class FailingCopy:
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql.startswith("VACUUM INTO"):
                (tmp_path / ".s.sqlite3.written-back").write_bytes(b"half")
                raise sqlite3.OperationalError("database or disk is full")
            return db.execute(sql, *args)

    said = write_back(FailingCopy(), path)  # type: ignore[arg-type]
    assert said.startswith("its rows could not be written back")
    assert sorted(p.name for p in tmp_path.iterdir() if "s.sqlite3" in p.name
                  and not p.name.endswith(("-wal", "-shm"))) == []
    db.close()
