"""When a chat's daily tip falls due, and what an admin's /dailytip arguments say."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from apscheduler.triggers.base import BaseTrigger

from bot.schedules import Schedule
from bot.zones import known_zone, zone_named

# "HH:MM" (or "H:MM") on a 24-hour clock
TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
# POSIX-style names: Etc/GMT+5 is five hours behind UTC, not ahead
ETC_GMT = re.compile(r"^Etc/GMT([+-])([0-9]{1,2})$")
# APScheduler's default grace is 1 s: a loop busy at HH:MM:SS (hundreds of tips due at
# once, a slow disk) would skip the day. Late by a few minutes is better than not at all.
MISFIRE_GRACE_SECONDS = 15 * 60
# Tips due in the same minute start at a per-chat second within it, so a popular time
# does not queue every chat's tip (and everyone's replies) behind the 30-a-second limit.
SPREAD_SECONDS = 60


class BadZone(ValueError):
    """A /dailytip time zone this machine does not know."""

    def __init__(self, zone: str) -> None:
        super().__init__(zone)
        self.zone = zone


def due_on(schedule: Schedule, day: dt.date, tzinfo: dt.tzinfo) -> dt.datetime:
    """When the chat's tip is due on `day` (each chat at its own second of the minute).

    By the wall clock of that day, not 24 hours after the day before: the two differ when
    the clocks change. A time the clocks go back over is due at its first occurrence
    (fold 0); one they skip reads with the offset before the change, an hour later on the
    clock."""
    hour, minute = map(int, schedule.hhmm.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute, spread_second(schedule.chat_id)),
                               tzinfo=tzinfo)


def last_due(schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
    """When the chat's tip last fell due at or before `now`, in the chat's zone (None if
    the zone is unknown here)."""
    tzinfo = known_zone(schedule.tz)
    if tzinfo is None:
        return None
    today = now.astimezone(tzinfo).date()
    due = due_on(schedule, today, tzinfo)
    # compared in UTC: two times of one zone compare by their wall clocks, fold ignored
    if due.astimezone(dt.UTC) <= now.astimezone(dt.UTC):
        return due
    return due_on(schedule, today - dt.timedelta(days=1), tzinfo)


def next_due(schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
    """When the chat's tip falls due next after `now` (None if the zone is unknown): on
    the day after the one it last fell due."""
    last = last_due(schedule, now)
    if last is None or last.tzinfo is None:
        return None
    return due_on(schedule, last.date() + dt.timedelta(days=1), last.tzinfo)


def first_day_dealt_with(new: Schedule, last_posted: dt.datetime | None,
                         now: dt.datetime) -> str:
    """The `last_day` a chat's tip set anew starts from (ISO, in the new zone; "" if
    none): a time already past today counts as dealt with, so the first tip is the next
    one; and so does the day (in the new zone) of the chat's last tip, so a time moved
    later, or to another zone, posts no second tip that day."""
    due = last_due(new, now)
    day = due.date().isoformat() if due is not None else ""
    zone = known_zone(new.tz)
    if last_posted is None or zone is None:
        return day
    return max(day, last_posted.astimezone(zone).date().isoformat())


def missed(schedule: Schedule, now: dt.datetime) -> bool:
    """Whether the chat's last tip fell due less than the grace ago and has not gone out
    (the bot was down then, or Telegram did not take it): APScheduler would not post it."""
    due = last_due(schedule, now)
    return (due is not None and 0 < (now - due).total_seconds() <= MISFIRE_GRACE_SECONDS
            and schedule.last_day != due.date().isoformat())


class DailyTrigger(BaseTrigger):  # type: ignore[misc]  # (APScheduler has no type hints)
    """APScheduler's trigger for a chat's daily tip: once a day, at `due_on` that day.

    APScheduler's own cron trigger steps from one run to the next in UTC and, in 3.x,
    skips the day after the clocks go forward for a time before the change (00:30 in
    Berlin has no run on the Monday), and never runs a time the clocks skip at midnight.
    """

    __slots__ = ("schedule", "tzinfo")

    def __init__(self, schedule: Schedule, tzinfo: dt.tzinfo) -> None:
        self.schedule = schedule
        self.tzinfo = tzinfo

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None,
                           now: dt.datetime) -> dt.datetime:
        """The first due time at or after `now`, or else strictly after the previous run
        (APScheduler asks from each run, to count those missed meanwhile; the same one
        again would loop it forever). In UTC: arithmetic on a zone's times is wall-clock
        arithmetic, and two of them compare by their wall clocks."""
        if previous_fire_time is None:
            start = now.astimezone(dt.UTC)
        else:
            start = previous_fire_time.astimezone(dt.UTC) + dt.timedelta(microseconds=1)
        day = start.astimezone(self.tzinfo).date() - dt.timedelta(days=1)
        while (due := due_on(self.schedule, day, self.tzinfo).astimezone(dt.UTC)) < start:
            day += dt.timedelta(days=1)
        return due

    def __str__(self) -> str:
        return f"daily at {self.schedule.hhmm} ({self.schedule.tz})"


def reversed_offset(zone: str) -> str | None:
    """The UTC offset an Etc/GMT±N name stands for ("-5" for Etc/GMT+5), else None."""
    match = ETC_GMT.match(zone)
    if match is None or match[2] == "0":
        return None
    return f"{'-' if match[1] == '+' else '+'}{match[2]}"


def spread_second(chat_id: int) -> int:
    return chat_id % SPREAD_SECONDS


def parse_dailytip(args: list[str],
                  default_zone: str) -> tuple[str, str] | Literal["off"] | None:
    """("HH:MM", zone) to set, "off" to stop, None when malformed; BadZone for a bad zone."""
    if len(args) == 1 and args[0].lower() == "off":
        return "off"
    if not 1 <= len(args) <= 2 or not (match := TIME.match(args[0])):
        return None
    given = args[1] if len(args) == 2 else default_zone
    zone = zone_named(given)
    if zone is None:
        raise BadZone(given)
    return f"{int(match[1]):02d}:{match[2]}", zone
