"""Daily-tip schedules per chat in SQLite, with a no-repeat rotation through the tips."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass

from bot.store import add_column
from bot.zones import known_zone

SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_tips (
    chat_id INTEGER PRIMARY KEY,
    hhmm    TEXT    NOT NULL,
    tz      TEXT    NOT NULL,
    posted  TEXT    NOT NULL DEFAULT '[]',
    last_day TEXT   NOT NULL DEFAULT '',
    thread  INTEGER,
    active  INTEGER NOT NULL DEFAULT 1,
    posted_due INTEGER NOT NULL DEFAULT 0
);
"""

COLUMNS = "chat_id, hhmm, tz, last_day, thread"  # a Schedule's fields, in order


@dataclass(frozen=True, slots=True)
class Schedule:
    chat_id: int
    hhmm: str
    tz: str
    last_day: str = ""  # the last day (in tz, ISO) whose tip went out or was dealt with
    thread: int | None = None  # the forum topic it was set in (None: the chat itself)


class ScheduleStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)
        # a database from before missed tips were caught up
        add_column(db, "daily_tips", "last_day", "TEXT NOT NULL DEFAULT ''")
        add_column(db, "daily_tips", "thread", "INTEGER")  # ... and before forum topics
        add_column(db, "daily_tips", "active", "INTEGER NOT NULL DEFAULT 1")  # ... and "off"
        # ... and before the time of the last tip posted was kept
        add_column(db, "daily_tips", "posted_due", "INTEGER NOT NULL DEFAULT 0")

    def put(self, chat_id: int, hhmm: str, tz: str, thread: int | None = None,
            last_day: str = "") -> None:
        """Set (or set anew) the chat's tip; `last_day` is the last day already dealt with."""
        self.db.execute(
            "INSERT INTO daily_tips (chat_id, hhmm, tz, thread, last_day) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (chat_id) DO UPDATE SET hhmm = excluded.hhmm, tz = excluded.tz, "
            "thread = excluded.thread, last_day = excluded.last_day, active = 1",
            (chat_id, hhmm, tz, thread, last_day))

    def turn_off(self, chat_id: int) -> bool:
        """An admin's "off": no more tips, but the rotation is kept, so turned on again
        it goes on where it was rather than repeat the tips already posted."""
        return self.db.execute("UPDATE daily_tips SET active = 0 WHERE chat_id = ? "
                               "AND active = 1", (chat_id,)).rowcount > 0

    def leave_thread(self, chat_id: int, thread: int) -> None:
        """The chat's topic is gone: its tips go to the chat itself (unless set anew)."""
        self.db.execute("UPDATE daily_tips SET thread = NULL WHERE chat_id = ? AND thread = ?",
                        (chat_id, thread))

    def remove(self, chat_id: int) -> bool:
        """Everything about the chat (the bot left it, or may not post there)."""
        return self.db.execute("DELETE FROM daily_tips WHERE chat_id = ?",
                               (chat_id,)).rowcount > 0

    def remove_if(self, chat_id: int, hhmm: str, tz: str) -> bool:
        """Remove the chat's schedule only if it is still this one (not set anew since)."""
        return self.db.execute("DELETE FROM daily_tips WHERE chat_id = ? AND hhmm = ? "
                               "AND tz = ?", (chat_id, hhmm, tz)).rowcount > 0

    def move(self, old_chat_id: int, new_chat_id: int) -> Schedule | None:
        """A group upgraded to a supergroup gets a new id: its schedule and rotation follow.

        Returns the moved schedule, or None when there was nothing to move. A schedule
        already set under the new id is newer (an admin set it there) and wins.
        """
        moved = self.db.execute("UPDATE OR IGNORE daily_tips SET chat_id = ? WHERE chat_id = ?",
                                (new_chat_id, old_chat_id)).rowcount > 0
        self.remove(old_chat_id)  # left behind only when the new id already had one
        return self.get(new_chat_id) if moved else None

    def get(self, chat_id: int) -> Schedule | None:
        row = self.db.execute(f"SELECT {COLUMNS} FROM daily_tips WHERE chat_id = ? "
                              "AND active = 1", (chat_id,)).fetchone()
        return Schedule(*row) if row else None

    def last_posted(self, chat_id: int) -> dt.datetime | None:
        """When the tip last posted in the chat was due (on or off since), if known."""
        row = self.db.execute("SELECT posted_due, posted, last_day, hhmm, tz FROM daily_tips "
                              "WHERE chat_id = ?", (chat_id,)).fetchone()
        if row is None:
            return None
        due, posted, last_day, hhmm, tz = row
        if due:
            return dt.datetime.fromtimestamp(due, dt.UTC)
        # A row from before this was kept: a tip has gone out, so take its last day dealt
        # with as the day of the last one (at worst a day's tip is skipped, not doubled).
        zone = known_zone(tz)
        if posted == "[]" or not last_day or zone is None:
            return None
        try:
            hour, minute = map(int, hhmm.split(":"))
            return dt.datetime.combine(dt.date.fromisoformat(last_day),
                                       dt.time(hour, minute), tzinfo=zone)
        except ValueError:  # a hand-edited row: nothing to go by
            return None

    def all(self) -> list[Schedule]:
        return [Schedule(*row) for row in
                self.db.execute(f"SELECT {COLUMNS} FROM daily_tips WHERE active = 1 "
                                "ORDER BY chat_id")]

    def next_tip(self, chat_id: int, tip_ids: list[str]) -> str | None:
        """The first tip this chat has not had yet; after the last one, start over."""
        posted = self._posted(chat_id, tip_ids)
        if posted is None or not tip_ids:
            return None
        return next(t for t in tip_ids if t not in posted)

    def mark_posted(self, chat_id: int, tip_id: str, tip_ids: list[str], day: str = "",
                    due: dt.datetime | None = None) -> None:
        """Called once a tip went out, or will never go (refused, or perhaps delivered
        with its answer lost), so a post not yet made is tried again next time. `day` is
        the day whose tip this was, so a restart does not post it twice; `due` when it was
        due, so a time set anew the same day does not post a second."""
        posted = self._posted(chat_id, tip_ids)
        if posted is None:
            return
        # a day already dealt with stays so (a time set anew while this tip was on its way)
        self.db.execute("UPDATE daily_tips SET posted = ?, last_day = max(last_day, ?), "
                        "posted_due = ? WHERE chat_id = ?",
                        (json.dumps(sorted(posted | {tip_id})), day,
                         int(due.timestamp()) if due else 0, chat_id))

    def mark_day(self, chat_id: int, day: str) -> None:
        """`day`'s tip was dealt with though none went out: not tried again that day."""
        self.db.execute("UPDATE daily_tips SET last_day = max(last_day, ?) WHERE chat_id = ?",
                        (day, chat_id))

    def _posted(self, chat_id: int, tip_ids: list[str]) -> set[str] | None:
        row = self.db.execute("SELECT posted FROM daily_tips WHERE chat_id = ?",
                              (chat_id,)).fetchone()
        if row is None:
            return None
        posted = set(json.loads(row[0])) & set(tip_ids)
        return set() if posted >= set(tip_ids) else posted
