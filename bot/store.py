"""Durable sessions in SQLite: one row per user, read on demand, written before replying."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

AUTOCHECKPOINT_PAGES = 10_000  # about 40 MB of WAL
# Update ids applied last for a user: after a crash Telegram delivers the unconfirmed ones
# again, and these make sure none is applied twice. Ids are not ordered over time (after a
# quiet week Telegram picks them at random), so a few are kept rather than a high mark.
SEEN_UPDATES = 16
# Retention counts from the last use to within this: refreshing `updated_at` (and its
# index) on every tap would double the cost of each write for no one's benefit.
TOUCH_EVERY_SECONDS = 3600
# Rows kept in memory after a read or write, for the people active right now: a tap then
# costs one write and no read. Every write goes through the store, so they never differ
# from the table; the bound keeps memory flat however many sessions are stored.
CACHED_ROWS = 1024
# The layout of the bot's tables (PRAGMA user_version; 0 in files from before it was
# set). A file laid out by a newer backbot is refused rather than half understood.
SCHEMA_VERSION = 1
OUR_TABLES = frozenset({"sessions", "daily_tips"})
# The columns each of them has had from the first: a table of that name without them is
# another program's.
FIRST_COLUMNS = {"sessions": {"user_id", "snapshot", "updated_at"},
                 "daily_tips": {"chat_id", "hhmm", "tz"}}
# How long a write waits for another connection's lock. The bot's own checkpoint holds it
# for moments; a longer wait would stall every chat, as writes run on the event loop.
BUSY_TIMEOUT_MS = 1000
# An update id as `seen` holds it: ASCII digits only (str.isdigit also takes "²", which
# int() refuses), and few enough for int() (which refuses over 4300).
SEEN_ID = re.compile(r"-?[0-9]{1,20}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    user_id    INTEGER PRIMARY KEY,
    snapshot   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    seen       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_updated_at ON sessions (updated_at);
"""


class DatabaseInUse(Exception):
    """Another process holds the database (see `claim_database`)."""


class NotOurDatabase(sqlite3.DatabaseError):
    """The database belongs to another program, or to a newer backbot than this one."""


def why_not(exc: OSError | sqlite3.Error) -> str:
    """Why a database could not be opened, in one line: the system's words and the path."""
    if not isinstance(exc, OSError):
        return str(exc)
    said = exc.strerror or str(exc)
    return f"{said} ({exc.filename})" if exc.filename else said


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:  # (a file in the way says "File exists")
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                 str(directory)) from None


def _refuse_unwritable(path: Path) -> None:
    """A database file this process may not write (another user's, mode 644) is refused
    before anything is made beside it: SQLite would open it read-only, and while
    refusing the first write leave its -wal and -shm files (and we our .lock) in the
    folder."""
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "this user may not write it")


def claim_database(path: Path | str) -> IO[bytes] | None:
    """Hold the database for this process alone while the returned file stays open.

    Each bot keeps rows in memory after writing them, so two over one database would
    overwrite each other's answers. The lock is on a file of its own beside the database
    (SQLite's own locks are on the database itself), and the system lets go of it when
    the process ends, however it ends."""
    if str(path) == ":memory:":
        return None
    path = Path(path).resolve()  # a link to the same file takes the same lock
    _refuse_unwritable(path)
    _make_directory(path.parent)
    # open for as long as the process runs: no `with`
    held = open(os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600), "r+b")  # noqa: SIM115
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        raise DatabaseInUse(path) from None
    except BaseException:
        held.close()
        raise
    return held


def open_database(path: Path | str) -> sqlite3.Connection:
    """Open (creating if new) the WAL-mode database the bot's tables share, readable by
    its owner only. Another program's database, a newer backbot's, or one this process
    may not write is refused (sqlite3.Error; OSError if the file itself is not writable,
    found before SQLite opens it) before anything in it is changed."""
    if str(path) != ":memory:":
        path = Path(path)
        _refuse_unwritable(path)
        _make_directory(path.parent)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # autocommit: each statement is its own transaction, durable once it returns
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Before anything is changed: another program's database (BACKBOT_DB set wrong)
        # is left as it is, not switched to WAL and given the bot's tables.
        others = sorted({name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")}
            - OUR_TABLES)
        if others:
            raise NotOurDatabase(f"not backbot's: it holds other tables ({', '.join(others[:3])}"
                                 f"{', ...' if len(others) > 3 else ''})")
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise NotOurDatabase(f"laid out by a newer backbot (layout {found}; this one "
                                 f"knows {SCHEMA_VERSION})")
        for table, columns in FIRST_COLUMNS.items():
            held = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if held and not columns <= held:
                raise NotOurDatabase(f"not backbot's: its {table} table is laid out "
                                     f"otherwise")
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (not a power cut) and keeps a commit cheap
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Checkpoints (which fsync) normally run inside some unlucky write; `checkpoint` runs
        # them off the event loop instead, and this high mark is only a backstop.
        db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        # An erased session (/forget, a blocked bot, the purge) must not linger on disk:
        # deleted rows are zeroed in their pages (the default of some SQLite builds, not of
        # all). Older copies of their pages in the log go with the checkpoint after an erase
        # (`checkpoint(empty_log=True)`); between erases, the write after each checkpoint
        # cuts the log back to what it holds, so it stays small after a busy spell.
        db.execute("PRAGMA secure_delete=ON")
        db.execute("PRAGMA journal_size_limit=0")
        # also a write at once: a file this process may read but not write is refused
        # here, not at everyone's first tap
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        if str(path) != ":memory:":
            _owner_only(Path(path))
    except BaseException:  # not a database, or one it cannot set up: let go of the file
        db.close()
        raise
    return db


def _owner_only(path: Path) -> None:
    """Health answers are readable by their owner alone: a database file made before the
    bot first ran (or its log files) loses what others could read, if it is ours."""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            stat = file.stat()
            if stat.st_mode & 0o077 and stat.st_uid == os.getuid():
                file.chmod(stat.st_mode & 0o700)
        except FileNotFoundError:
            continue


def compact(path: Path | str) -> tuple[int, int]:
    """Rebuild the database from its live rows alone (SQLite's VACUUM), with no bot
    running on it (DatabaseInUse otherwise). An erased row's bytes are zeroed at once, but
    the inner pages of the table's B-tree may keep a copy of its key, the person's user id,
    until the tree is rebuilt. Returns the file's size before and after, in bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "not a file" if path.exists()
                                else "no database file there")
    claim = claim_database(path)
    try:
        before = path.stat().st_size
        db = open_database(path)  # refuses another program's database, changing nothing
        try:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
        return before, path.stat().st_size
    finally:
        if claim is not None:
            claim.close()


def file_identity(path: Path | str) -> tuple[int, int] | None:
    """The database file's device and inode (None in memory, or if there is none): what
    `moved_away` compares."""
    try:
        found = os.stat(path) if str(path) != ":memory:" else None
    except FileNotFoundError:
        found = None
    return None if found is None else (found.st_dev, found.st_ino)


def moved_away(path: Path | str, identity: tuple[int, int] | None) -> str | None:
    """None while the file at `path` is still the one opened (`identity`); else what
    became of it ("deleted", "replaced by another file"): the bot's writes would go to a
    file no one will open again."""
    if identity is None:
        return None
    try:
        now = file_identity(path)
    except OSError:
        return None  # out of reach for now (a folder's permissions): the checkpoint says so
    if now == identity:
        return None
    return "deleted" if now is None else "replaced by another file"


def write_back(db: sqlite3.Connection, path: Path | str) -> str:
    """Once nothing writes to `db` any more, whose file `moved_away` from `path`: its log
    is emptied into that file (a log left by the path's name would be read into whatever
    file is there next), and if there is none at `path`, every row is written there,
    owner-only. What was done, for the log."""
    path = Path(path)
    # written whole beside it first: a write that fails half-way leaves nothing at `path`
    # for the next start to take for the database
    whole = path.with_name(f".{path.name}.written-back")
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if os.path.lexists(path):
            return "the file now there was left as it is"
        with contextlib.suppress(FileNotFoundError):
            whole.unlink()
        os.close(os.open(whole, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        db.execute("VACUUM INTO ?", (str(whole),))
        os.link(whole, path)  # fails, changing nothing, if a file appeared there meanwhile
    except (OSError, sqlite3.Error) as exc:
        return f"its rows could not be written back ({why_not(exc)})"
    finally:
        with contextlib.suppress(OSError):
            whole.unlink()
    return "every row it held was written back to it"


def checkpoint(path: Path | str, *, empty_log: bool = False) -> bool:
    """Copy the WAL into the database file, on a connection of its own (call it from a
    worker thread: it may fsync). PASSIVE never blocks the bot's writes.

    With `empty_log` (after an erase) the log is then cut to nothing at once, taking
    the older copies of erased rows with it: the PASSIVE pass has copied nearly
    everything, so the bot's writes wait only a moment. Returns False if it could not
    (a write kept the log busy): then try again later."""
    if str(path) == ":memory:":
        return True
    # read-write, never creating: a file deleted meanwhile is `moved_away`'s to deal with
    db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=rw", uri=True,
                         isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        if not empty_log:
            return True
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy == 0)
    finally:
        db.close()


@dataclass(slots=True)
class Stored:
    """One user's row as read: the snapshot (None: no row), the update ids applied last,
    and when the row was last refreshed."""

    snapshot: dict[str, Any] | None = None
    seen: list[int] = field(default_factory=list)
    updated_at: int | None = None


def add_column(db: sqlite3.Connection, table: str, column: str, declaration: str) -> None:
    """Bring a table from an older version up to date (SQLite has no ADD COLUMN IF NOT
    EXISTS)."""
    if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


class SessionStore:
    """Sessions by user id. Callers treat what `load` returns as read-only (the engine
    never mutates a snapshot): the same objects are handed out until the next write."""

    def __init__(self, db: sqlite3.Connection, cached_rows: int = CACHED_ROWS) -> None:
        self.db = db
        self._rows: dict[int, Stored] = {}  # oldest first: insertion order is use order
        self._cached_rows = cached_rows
        # A row was erased since the log was last emptied (and at start: a killed process
        # may have left erased rows in the log): the next checkpoint empties it.
        self.erased = True
        db.executescript(SCHEMA)
        # a database from before update ids were kept
        add_column(db, "sessions", "seen", "TEXT NOT NULL DEFAULT ''")

    def get(self, user_id: int) -> dict[str, Any] | None:
        return self.load(user_id).snapshot

    def load(self, user_id: int) -> Stored:
        cached = self._rows.get(user_id)
        if cached is None:
            cached = self._read(user_id)
        self._remember(user_id, cached)
        return cached

    def _read(self, user_id: int) -> Stored:
        row = self.db.execute("SELECT snapshot, seen, updated_at FROM sessions "
                              "WHERE user_id = ?", (user_id,)).fetchone()
        if row is None:
            return Stored()
        # (anything else, written there by hand, is left out: not a reason to fail)
        seen = [int(part) for part in row[1].split(",") if SEEN_ID.fullmatch(part)]
        try:
            value = json.loads(row[0])
        except (ValueError, RecursionError):  # (nested too deep for the parser)
            value = {}  # unreadable: the engine restarts it with a clear message
        return Stored(value if isinstance(value, dict) else {}, seen, row[2])

    def save(self, user_id: int, snapshot: dict[str, Any], seen: Sequence[int],
             previous: Stored, now: float | None = None) -> None:
        """Write a snapshot over the row `previous` was read from (durable on return)."""
        now = int(now or time.time())
        # (a stamp ahead of now, from a clock since set back, is set right too)
        if previous.updated_at is None or not 0 <= now - previous.updated_at < (
                TOUCH_EVERY_SECONDS):
            self.put(user_id, snapshot, now, seen)
            return
        kept = list(seen[-SEEN_UPDATES:])
        self.db.execute("UPDATE sessions SET snapshot = ?, seen = ? WHERE user_id = ?",
                        (_dumps(snapshot), _seen(kept), user_id))
        self._remember(user_id, Stored(snapshot, kept, previous.updated_at))

    def put(self, user_id: int, snapshot: dict[str, Any], now: float | None = None,
            seen: Sequence[int] = ()) -> None:
        # the hour of last use: retention needs no more, so no more is kept
        stamp = int(now or time.time()) // TOUCH_EVERY_SECONDS * TOUCH_EVERY_SECONDS
        kept = list(seen[-SEEN_UPDATES:])
        self.db.execute(
            "INSERT INTO sessions (user_id, snapshot, updated_at, seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET snapshot = excluded.snapshot, "
            "updated_at = excluded.updated_at, seen = excluded.seen",
            (user_id, _dumps(snapshot), stamp, _seen(kept)),
        )
        self._remember(user_id, Stored(snapshot, kept, stamp))

    def delete(self, user_id: int) -> int:
        self._rows.pop(user_id, None)
        removed = self.db.execute("DELETE FROM sessions WHERE user_id = ?",
                                  (user_id,)).rowcount
        self.erased |= removed > 0
        return removed

    def purge(self, older_than_days: int, now: float | None = None) -> int:
        now = int(now or time.time())
        cutoff = now - older_than_days * 86400
        self._rows.clear()
        # Last used "in the future" (stamped while the clock ran ahead): counted from now,
        # or such a row would outlive the retention period by as far as the clock was out.
        self.db.execute("UPDATE sessions SET updated_at = ? WHERE updated_at > ?",
                        (now // TOUCH_EVERY_SECONDS * TOUCH_EVERY_SECONDS, now))
        removed = self.db.execute("DELETE FROM sessions WHERE updated_at < ?",
                                  (cutoff,)).rowcount
        self.erased |= removed > 0
        return removed

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM sessions").fetchone()[0])

    def _remember(self, user_id: int, stored: Stored) -> None:
        rows = self._rows
        rows.pop(user_id, None)
        if len(rows) >= self._cached_rows:
            del rows[next(iter(rows))]  # the least recently used
        rows[user_id] = stored


# Built once, as it runs on every tap; a snapshot is plain lists and dicts the engine
# builds, so it has no cycles to look for.
_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _seen(seen: Sequence[int]) -> str:
    return ",".join(map(str, seen))
