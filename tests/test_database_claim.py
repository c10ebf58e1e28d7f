"""One bot per database: the lock beside it, whatever path names it, and `backbot run`
letting go of the database and the lock when it cannot start."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fake_bot_api import FakeBotAPI

import bot.telegram_app as telegram_app
from bot.config import ConfigError, Settings, load_settings
from bot.store import SCHEMA_VERSION, DatabaseInUse, claim_database, compact, open_database
from bot.telegram_groups import GroupFeatures


def settings_for(db_path: Path) -> Settings:
    return load_settings(environ={"TELEGRAM_BOT_TOKEN": "123:not-used",
                                  # nothing listens there: a call made by mistake stays here
                                  "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot",
                                  "BACKBOT_DB": str(db_path)}, env_file=None)


def assert_free(db_path: Path) -> None:
    claim = claim_database(db_path)
    assert claim is not None
    claim.close()


def test_a_link_to_the_database_takes_the_same_lock(tmp_path: Path) -> None:
    db_path = tmp_path / "data" / "bot.sqlite3"
    held = claim_database(db_path)
    link = tmp_path / "link.sqlite3"
    link.symlink_to(db_path)
    with pytest.raises(DatabaseInUse):
        claim_database(link)
    assert held is not None
    held.close()
    assert_free(link)


def test_run_lets_go_of_the_lock_when_the_database_cannot_be_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)
    db_path = tmp_path / "bot.sqlite3"
    db_path.mkdir()  # a folder where the file should be
    with pytest.raises(ConfigError, match=r"^cannot open the database BACKBOT_DB=.*: not a file$"):
        telegram_app.run(settings_for(db_path))
    assert not Path(f"{db_path}.lock").exists()  # nothing left beside it
    assert_free(db_path)


def test_a_socket_or_device_is_no_database(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a regular file (as /dev/null is not): refused, and nothing made beside it."""
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)
    path = tmp_path / "s"
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as listening:
        listening.bind(str(path))
        with pytest.raises(ConfigError, match=r"^cannot open the database BACKBOT_DB=.*: "
                                              r"not a file$"):
            telegram_app.run(settings_for(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_run_lets_go_of_database_and_lock_when_the_bot_cannot_be_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)
    opened = []
    real_open = telegram_app.open_database

    def open_database(path: Path) -> object:
        opened.append(real_open(path))
        return opened[-1]

    def build_application(*args: object) -> object:
        raise RuntimeError("cannot build")

    monkeypatch.setattr(telegram_app, "open_database", open_database)
    monkeypatch.setattr(telegram_app, "build_application", build_application)
    db_path = tmp_path / "bot.sqlite3"
    with pytest.raises(RuntimeError, match="cannot build"):
        telegram_app.run(settings_for(db_path))
    [db] = opened
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        db.execute("SELECT 1")
    assert_free(db_path)


def test_a_file_that_is_not_a_database_is_refused_and_let_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)
    db_path = tmp_path / "notes.sqlite3"
    db_path.write_bytes(b"my own notes, not a database\n" * 200)
    opened = []
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect",
                        lambda *args, **kwargs: opened.append(connect(*args, **kwargs))
                        or opened[-1])
    with pytest.raises(ConfigError, match=r"file is not a database$"):
        telegram_app.run(settings_for(db_path))
    [db] = opened
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        db.execute("SELECT 1")
    assert_free(db_path)
    assert db_path.read_bytes().startswith(b"my own notes")  # left as it was


def test_a_path_the_system_cannot_take_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)
    with pytest.raises(ConfigError, match=r"^cannot open the database BACKBOT_DB=.*: "
                                          r"File name too long"):
        telegram_app.run(settings_for(tmp_path / ("a" * 300)))


@pytest.mark.parametrize(("script", "reason"), [
    ("CREATE TABLE notes (id INTEGER); PRAGMA user_version=7;",
     "not backbot's: it holds other tables (notes)"),
    (f"CREATE TABLE sessions (user_id INTEGER); PRAGMA user_version={SCHEMA_VERSION + 1};",
     f"laid out by a newer backbot (layout {SCHEMA_VERSION + 1}; this one knows "
     f"{SCHEMA_VERSION})"),
    ("CREATE TABLE sessions (id INTEGER, data BLOB);",
     "not backbot's: its sessions table is laid out otherwise"),
], ids=["another_program", "newer_backbot", "another_programs_sessions"])
def test_a_database_not_ours_is_refused_and_left_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, reason: str) -> None:
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)
    db_path = tmp_path / "app.sqlite3"
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.executescript(script)
    version = db_path.read_bytes()[60:64]  # the header's user_version
    with pytest.raises(ConfigError, match=rf"^cannot open the database BACKBOT_DB=.*: "
                                          rf"{reason.replace('(', '.').replace(')', '.')}$"):
        telegram_app.run(settings_for(db_path))
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not made WAL
        assert [n for (n,) in db.execute("SELECT name FROM sqlite_master")] == [
            script.split()[2]]  # no table of ours added
    assert db_path.read_bytes()[60:64] == version
    assert_free(db_path)


def wal_database(db_path: Path) -> bytes:
    """A bot's database as it is between runs (WAL mode, no log files beside it): the
    mode in which SQLite makes -wal and -shm files even for a read-only opening."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE sessions (user_id INTEGER PRIMARY KEY, snapshot TEXT "
                   "NOT NULL, updated_at INTEGER NOT NULL)")
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]
    return db_path.read_bytes()


def assert_refused_changing_nothing(db_path: Path, before: bytes,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`backbot run` and `backbot compact` on db_path: one line each, and nothing made or
    changed in its folder."""
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)
    with pytest.raises(ConfigError) as raised:
        telegram_app.run(settings_for(db_path))
    assert str(raised.value) == (f"cannot open the database BACKBOT_DB={db_path}: "
                                 f"this user may not write it")
    with pytest.raises(PermissionError, match="this user may not write it"):
        compact(db_path)
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]
    assert db_path.read_bytes() == before


def test_a_database_this_user_may_not_write_is_refused_before_sqlite_opens_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's file (mode 644) in a folder the bot may write: SQLite would open it
    read-only and leave -wal and -shm files beside it. os.access is made to answer as it
    does for another user's file, so this runs as root too (who may write any file)."""
    db_path = tmp_path / "data" / "bot.sqlite3"
    db_path.parent.mkdir()
    before = wal_database(db_path)
    access = os.access

    def as_another_user(path: Any, mode: int, **kwargs: Any) -> bool:
        if mode & os.W_OK and os.path.realpath(str(path)) == os.path.realpath(db_path):
            return False
        return access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", as_another_user)
    assert_refused_changing_nothing(db_path, before, monkeypatch)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_a_read_only_database_file_is_refused_changing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same with a real read-only file, where the tests do not run as root."""
    db_path = tmp_path / "data" / "bot.sqlite3"
    db_path.parent.mkdir()
    before = wal_database(db_path)
    db_path.chmod(0o444)
    assert_refused_changing_nothing(db_path, before, monkeypatch)


def test_a_database_others_could_read_is_made_owner_only(tmp_path: Path) -> None:
    """Made before the bot first ran (`touch`, a copy): the file and its log files lose
    what others could read; the layout is marked, which also proves it is writable."""
    db_path = tmp_path / "bot.sqlite3"
    db_path.touch(mode=0o644)
    db_path.chmod(0o644)
    with contextlib.closing(open_database(db_path)) as db:
        db.execute("CREATE TABLE IF NOT EXISTS sessions (user_id INTEGER)")
        files = sorted(tmp_path.iterdir())
        assert [f.name for f in files] == ["bot.sqlite3", "bot.sqlite3-shm", "bot.sqlite3-wal"]
        assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_database_damaged_where_start_up_reads_it_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: FakeBotAPI) -> None:
    """The stored daily tips are read once Telegram answered (PTB's post_init): a damaged
    page there stops the bot with one line, not a traceback."""
    monkeypatch.setattr(telegram_app, "setup_logging", lambda *args: None)

    def restore_jobs(self: GroupFeatures, app: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(GroupFeatures, "restore_jobs", restore_jobs)
    db_path = tmp_path / "bot.sqlite3"
    settings = load_settings(environ={"TELEGRAM_BOT_TOKEN": api.token,
                                      "TELEGRAM_API_BASE_URL": api.base_url,
                                      "BACKBOT_DB": str(db_path)}, env_file=None)
    with pytest.raises(ConfigError, match=r"^cannot open the database BACKBOT_DB=.*: "
                                          r"database disk image is malformed$"):
        telegram_app.run(settings)
    assert api.calls_to("getMe")  # it got as far as Telegram
    assert_free(db_path)
