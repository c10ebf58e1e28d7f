"""/dailytip: admins only, validation, the JobQueue job (spread, late runs), rotation, restart,
removal, channels, and a chat that no longer lets the bot post (or refuses one tip).

The real Application (build_application) polls FakeBotAPI on 127.0.0.1; see group_harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from group_harness import (
    FakeBotAPI,
    assert_daily_tip,
    assert_runs_at,
    card_in,
    eventually,
    msg,
    plain,
    run,
    running_bot,
)
from group_harness import engine as shipped_engine
from telegram.error import NetworkError, RetryAfter, TelegramError, TimedOut

from bot.dailytip_times import (
    MISFIRE_GRACE_SECONDS,
    DailyTrigger,
    first_day_dealt_with,
    last_due,
    missed,
    next_due,
)
from bot.schedules import Schedule, ScheduleStore
from bot.store import open_database
from bot.telegram_errors import not_taken
from bot.telegram_groups import STORE_TRIES
from bot.zones import known_zone

BOT = "backbot_test_bot"
GROUP = -100_222_000_001
OTHER_GROUP = -100_222_000_002
BASIC_GROUP = -222_003
CHANNEL = -100_333_000_001
ADMIN, OWNER, MEMBER = 990_001, 990_002, 990_003
LONDON = ZoneInfo("Europe/London")

CONTENT = shipped_engine().content
TIPS = CONTENT.cards_tagged("tip")
# Half a day away, so no tip set in the database before a start falls due (or was just
# missed) while the test runs. Added in UTC: London's clock plus 12 h can name a time its
# next day skips (the eve of the clocks going forward).
FAR_FROM_NOW = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).astimezone(LONDON).strftime(
    "%H:%M")


def set_schedule(db_path: Path, chat_id: int, hhmm: str, zone: str) -> None:
    """Store a daily tip as an earlier run (or another connection) would have."""
    with contextlib.closing(open_database(db_path)) as db:
        ScheduleStore(db).put(chat_id, hhmm, zone)


# -- 5. who may set it, and how --

def test_dailytip_refused_for_non_admins(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, 990_004, "restricted")
            api.set_member_status(GROUP, 990_005, "left")
            for user in (MEMBER, 990_004, 990_005):  # MEMBER: the fake's default "member"
                for command in ("/dailytip 08:30 Europe/London", "/dailytip off",
                                f"/dailytip@{BOT} 09:00"):
                    reply = await bot.say(GROUP, command, user_id=user)
                    assert plain(reply["text"]) == msg("dailytip.not_admin")
            assert bot.rows() == []
            assert bot.jobs(GROUP) == ()
            # the admin check asked Telegram about the sender in that very chat
            asked = {(c.params["chat_id"], c.params["user_id"])
                     for c in api.calls_to("getChatMember")}
            assert asked == {(GROUP, MEMBER), (GROUP, 990_004), (GROUP, 990_005)}

            # a member posting as some other channel is not the group's anonymous admin
            api.push_update({"message": {
                "message_id": 900, "date": int(time.time()),
                "chat": {"id": GROUP, "type": "supergroup", "title": "Test group"},
                "from": {"id": 136817688, "is_bot": True, "first_name": "Channel"},
                "sender_chat": {"id": -100_444, "type": "channel", "title": "Someone's"},
                "text": "/dailytip 07:00",
                "entities": [{"type": "bot_command", "offset": 0, "length": 9}]}})
            reply = (await bot.wait_sent(GROUP, 10))[9]
            assert plain(reply["text"]) == msg("dailytip.not_admin")
            await bot.settle()
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            assert bot.errors == []

    run(scenario())


def test_dailytip_refused_for_non_admins_in_a_basic_group(api: FakeBotAPI,
                                                          tmp_path: Path) -> None:
    """A basic group (not a supergroup) is no channel: a plain member's /dailytip is
    refused after asking Telegram, and nothing is stored or scheduled."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            reply = await bot.say(BASIC_GROUP, "/dailytip 08:30", user_id=MEMBER,
                                  chat_type="group")
            assert plain(reply["text"]) == msg("dailytip.not_admin")
            await bot.settle()
            assert bot.rows() == []
            assert bot.jobs(BASIC_GROUP) == ()
            assert {(c.params["chat_id"], c.params["user_id"])
                    for c in api.calls_to("getChatMember")} == {(BASIC_GROUP, MEMBER)}
            assert bot.errors == []

    run(scenario())


def test_dailytip_set_by_admins_stores_and_schedules(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            api.set_member_status(BASIC_GROUP, OWNER, "creator")
            for chat, user, kind in ((GROUP, ADMIN, "supergroup"),
                                     (BASIC_GROUP, OWNER, "group")):
                reply = await bot.say(chat, "/dailytip 08:30 Europe/London", user_id=user,
                                      chat_type=kind)
                assert plain(reply["text"]) == msg("dailytip.set").format(
                    time="08:30", zone="Europe/London")
                assert_runs_at(bot, chat, "08:30", LONDON)
            assert bot.rows() == sorted([(GROUP, "08:30", "Europe/London"),
                                         (BASIC_GROUP, "08:30", "Europe/London")])

            # an anonymous admin posts as the group itself
            api.push_update({"message": {
                "message_id": 901, "date": int(time.time()),
                "chat": {"id": OTHER_GROUP, "type": "supergroup", "title": "Other"},
                "from": {"id": 1087968824, "is_bot": True, "first_name": "Group",
                         "username": "GroupAnonymousBot"},
                "sender_chat": {"id": OTHER_GROUP, "type": "supergroup", "title": "Other"},
                "text": "/dailytip 21:15 Asia/Tokyo",
                "entities": [{"type": "bot_command", "offset": 0, "length": 9}]}})
            [reply] = await bot.wait_sent(OTHER_GROUP, 1)
            assert plain(reply["text"]) == msg("dailytip.set").format(time="21:15",
                                                                      zone="Asia/Tokyo")
            assert_runs_at(bot, OTHER_GROUP, "21:15", ZoneInfo("Asia/Tokyo"))

            # changing it replaces the job (never two), and H:MM is normalised to HH:MM
            reply = await bot.say(GROUP, f"/dailytip@{BOT} 7:05", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.set").format(time="07:05", zone="UTC")
            assert_runs_at(bot, GROUP, "07:05", ZoneInfo("UTC"))
            assert (GROUP, "07:05", "UTC") in bot.rows()
            assert len(bot.rows()) == 3
            assert bot.errors == []

    run(scenario())


def test_dailytip_when_telegram_cannot_tell_who_is_admin(api: FakeBotAPI,
                                                         tmp_path: Path) -> None:
    """The admin check failed (a server error): the admin hears that it could not be
    checked, not that they are no admin; nothing is stored; the next try works."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            api.fail_next("getChatMember", error_code=500, description="Internal Server Error")
            reply = await bot.say(GROUP, "/dailytip 08:30", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.admin_unknown")
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            reply = await bot.say(GROUP, "/dailytip 08:30", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.set").format(time="08:30", zone="UTC")
            assert bot.rows() == [(GROUP, "08:30", "UTC")]

    run(scenario())


def test_dailytip_from_someone_who_has_left_is_refused(api: FakeBotAPI,
                                                      tmp_path: Path) -> None:
    """Telegram no longer knows the sender as a member ("user not found": they left
    after sending it): no admin, not a check that failed."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.fail_next("getChatMember", description="Bad Request: user not found")
            reply = await bot.say(GROUP, "/dailytip 08:30", user_id=MEMBER)
            assert plain(reply["text"]) == msg("dailytip.not_admin")
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            assert bot.errors == []

    run(scenario())


def test_an_older_dailytip_does_not_undo_a_newer_one(api: FakeBotAPI, tmp_path: Path) -> None:
    """Two admins' commands: the first one's admin check is slow, so the second is applied
    first. The first then changes nothing and says so; the second's setting stands."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            for admin in (ADMIN, OWNER):
                api.set_member_status(GROUP, admin, "administrator")
            api.before_call["getchatmember"] = lambda params: (
                time.sleep(1.0) if int(params.get("user_id") or 0) == ADMIN else None)
            api.send_text(GROUP, "/dailytip 08:00", user_id=ADMIN, chat_type="supergroup")
            await asyncio.sleep(0.3)
            api.send_text(GROUP, "/dailytip 21:00", user_id=OWNER, chat_type="supergroup")
            newer, older = await bot.wait_sent(GROUP, 2)
            assert plain(newer["text"]) == msg("dailytip.set").format(time="21:00", zone="UTC")
            assert plain(older["text"]) == msg("dailytip.superseded")
            assert bot.rows() == [(GROUP, "21:00", "UTC")]
            assert_runs_at(bot, GROUP, "21:00", ZoneInfo("UTC"))
            # and a later command still applies
            api.before_call.clear()
            reply = await bot.say(GROUP, "/dailytip off", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.off")
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            assert bot.errors == []

    run(scenario())


BAD_FORMS = [
    ("/dailytip 25:00", "usage"),
    ("/dailytip 8.30", "usage"),
    ("/dailytip 08:60", "usage"),
    ("/dailytip 0830", "usage"),
    ("/dailytip 08:30 Mars/Base", "bad_zone"),
    ("/dailytip 08:30 ../../etc/passwd", "bad_zone"),
    ("/dailytip 08:30 Europe", "bad_zone"),  # a directory of zones, not a zone
    ("/dailytip 08:30 leapseconds", "bad_zone"),  # a file in the zone directory, not a zone
    ("/dailytip 08:30 posixrules", "bad_zone"),  # opens (as New York), but is no IANA name
    ("/dailytip 08:30 right/Europe/London", "bad_zone"),  # leap-second copy, misread
    ("/dailytip 08:30 posix/Europe/London", "bad_zone"),  # a copy, not an IANA name
    ("/dailytip 08:30 localtime", "bad_zone"),  # the machine's own setting
    ("/dailytip 08:30 Factory", "bad_zone"),  # a placeholder zone
    ("/dailytip 08:30 <b>Europe&amp;London</b>", "bad_zone"),  # shown as typed, not as HTML
    ("/dailytip 08:30 " + "ab/" * 1300 + "c", "bad_zone"),  # ZoneInfo: RecursionError
    ("/dailytip 08:30 " + "a" * 4001, "bad_zone"),  # ZoneInfo: RecursionError
    ("/dailytip 08:30 UTC extra", "usage"),
    ("/dailytip off now", "usage"),
    (f"/dailytip@{BOT}, 08:30", "usage"),  # Telegram marks "/dailytip@bot" as the command
    ("/dailytip, 08:30", "usage"),
]


def test_dailytip_bad_forms_explain_and_change_nothing(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            rows, job = bot.rows(), bot.job(GROUP)
            next_t = assert_runs_at(bot, GROUP, "08:30", LONDON)
            for command, kind in BAD_FORMS:
                reply = await bot.say(GROUP, command, user_id=ADMIN)
                text = plain(reply["text"])
                assert "\n" not in text, command  # one line
                if kind == "usage":
                    assert text == msg("dailytip.usage"), command
                else:
                    zone = command.split()[2]
                    if len(zone) > 40:  # a long name is shown cut short
                        zone = zone[:40] + "..."
                    assert text == msg("dailytip.bad_zone").format(zone=zone), command
                assert bot.rows() == rows, command
                assert bot.job(GROUP).id == job.id and bot.job(GROUP).next_t == next_t

            reply = await bot.say(GROUP, "/dailytip off", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.off")
            assert bot.rows() == []
            assert bot.jobs(GROUP) == ()
            # off again, with nothing set, is harmless
            reply = await bot.say(GROUP, "/dailytip off", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.off")
            await bot.settle()
            assert len(bot.sends(GROUP)) == len(BAD_FORMS) + 3  # one reply per command
            assert bot.errors == []

    run(scenario())


def test_commands_deleted_before_the_answer_still_get_one(api: FakeBotAPI,
                                                          tmp_path: Path) -> None:
    """A member, or a bot that tidies commands away, deleted the command: the answer goes
    without quoting it (Telegram refuses a quote of a deleted message otherwise)."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            reply = await bot.say(GROUP, "/dailytip 08:30", user_id=ADMIN, deleted=True)
            assert plain(reply["text"]) == msg("dailytip.set").format(time="08:30", zone="UTC")
            assert bot.rows() == [(GROUP, "08:30", "UTC")]
            for command in ("/tip", "/start", "/sources"):
                await bot.say(GROUP, command, deleted=True)
            await bot.settle()
            sends = bot.sends(GROUP)
            assert len(sends) == 4 and all(call.ok for call in sends)
            assert all(call.params["reply_parameters"]["allow_sending_without_reply"]
                       for call in sends)
            assert bot.errors == []

    run(scenario())


def test_dailytip_alone_shows_the_setting_and_changes_nothing(
        api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            reply = await bot.say(GROUP, "/dailytip", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.none")
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            rows, job = bot.rows(), bot.job(GROUP)
            reply = await bot.say(GROUP, f"/dailytip@{BOT}", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.current").format(
                time="08:30", zone="Europe/London")
            assert "\n" not in plain(reply["text"])
            assert bot.rows() == rows and bot.job(GROUP).id == job.id
            # anyone may see what is set (the tips go out to all), without asking Telegram
            asked = len(api.calls_to("getChatMember"))
            reply = await bot.say(GROUP, "/dailytip", user_id=MEMBER)
            assert plain(reply["text"]) == msg("dailytip.current").format(
                time="08:30", zone="Europe/London")
            assert len(api.calls_to("getChatMember")) == asked
            assert bot.rows() == rows and bot.job(GROUP).id == job.id
            assert bot.errors == []

    run(scenario())


def test_dailytip_in_private_says_where_it_works_and_changes_nothing(
        api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.send_text(ADMIN, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            note, question = await bot.wait_sent(ADMIN, 2)
            assert plain(note["text"]) == msg("dailytip.private")
            assert plain(question["text"]) == msg("welcome.question").format(
                retention_days=30)
            assert bot.rows() == [] and bot.jobs(ADMIN) == ()
            assert bot.db.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
            await bot.settle()
            assert len(api.sent_to(ADMIN)) == 2
            assert api.calls_to("getChatMember") == []
            assert bot.errors == []

    run(scenario())


def test_dailytip_time_is_ascii_hh_mm(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            # ARABIC-INDIC ZERO, FULLWIDTH DIGIT EIGHT, FULLWIDTH COLON: digits to \d, not to us
            for command in ("/dailytip 08:3\u0660", "/dailytip \uff18:30", "/dailytip 08\uff1a30"):
                reply = await bot.say(GROUP, command, user_id=ADMIN)
                assert plain(reply["text"]) == msg("dailytip.usage"), command
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            assert bot.errors == []

    run(scenario())


def test_dailytip_off_and_zone_names_in_any_case(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            reply = await bot.say(GROUP, "/dailytip 08:30 europe/LONDON", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.set").format(
                time="08:30", zone="Europe/London")  # stored and shown by its own name
            assert bot.rows() == [(GROUP, "08:30", "Europe/London")]
            assert_runs_at(bot, GROUP, "08:30", LONDON)
            reply = await bot.say(GROUP, "/dailytip OFF", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.off")
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            for name in ("LOCALTIME", "factory", "Right/Europe/London", "POSIXRULES"):
                reply = await bot.say(GROUP, f"/dailytip 08:30 {name}", user_id=ADMIN)
                assert plain(reply["text"]) == msg("dailytip.bad_zone").format(zone=name)
            assert bot.rows() == [] and bot.errors == []

    run(scenario())


def test_an_etc_gmt_zone_is_told_its_real_offset(api: FakeBotAPI, tmp_path: Path) -> None:
    """Etc/GMT+5 is five hours behind UTC: said so when set and when asked, as the name
    reads the other way round; other zones get no note."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            note = msg("dailytip.reversed_sign").format(zone="Etc/GMT+5", offset="-5")
            reply = await bot.say(GROUP, "/dailytip 08:00 etc/gmt+5", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.set").format(
                time="08:00", zone="Etc/GMT+5") + " " + note
            assert_runs_at(bot, GROUP, "13:00", ZoneInfo("UTC"))
            reply = await bot.say(GROUP, "/dailytip", user_id=MEMBER)
            assert plain(reply["text"]).endswith(" " + note)
            reply = await bot.say(GROUP, "/dailytip 08:00 Etc/GMT-14", user_id=ADMIN)
            assert plain(reply["text"]).endswith("Etc/GMT-14 is UTC+14, as these names "
                                                 "count the other way round.")
            for zone in ("Etc/GMT", "Etc/GMT+0", "Etc/UTC", "Europe/London"):
                reply = await bot.say(GROUP, f"/dailytip 08:00 {zone}", user_id=ADMIN)
                assert plain(reply["text"]) == msg("dailytip.set").format(
                    time="08:00", zone=zone), zone
            assert bot.errors == []

    run(scenario())


def test_every_iana_zone_is_known_and_nothing_else_is() -> None:
    zones = zoneinfo.available_timezones()
    assert "Europe/London" in zones and "America/Argentina/Buenos_Aires" in zones
    # all but those that name no place ("localtime": the machine's own; "Factory"), of
    # those this machine has (the tzdata package alone has no "localtime")
    assert sorted(zone for zone in zones if known_zone(zone) is None) == sorted(
        {"Factory", "localtime"} & zones)
    for name in ("ab/" * 1300 + "c", "a" * 4001, "a" * 65, "Europe/../Europe/London",
                 "/etc/passwd", "Europe", "zone.tab", "leapseconds", "", "Europe/London\n"):
        assert known_zone(name) is None, name[:40]  # and no RecursionError


# -- 6. firing: rotation --

def test_daily_tip_job_posts_each_tip_once_per_cycle(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            for chat in (GROUP, OTHER_GROUP):
                api.set_member_status(chat, ADMIN, "administrator")
                await bot.say(chat, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            base = len(api.sent_to(GROUP))
            posted = []
            for n in range(2 * len(TIPS) + 1):  # a day each
                await bot.run_daily(GROUP)
                sent = api.sent_to(GROUP)
                assert len(sent) == base + n + 1  # exactly one message per run
                posted.append(assert_daily_tip(sent[-1], GROUP))
            first, second = posted[:len(TIPS)], posted[len(TIPS):2 * len(TIPS)]
            assert sorted(first) == sorted(c.id for c in TIPS)  # no repeat within a cycle
            assert sorted(second) == sorted(c.id for c in TIPS)  # then it starts over
            assert posted[2 * len(TIPS)] in first

            await bot.job(GROUP).run(bot.app)  # that day's run again: nothing more
            assert len(api.sent_to(GROUP)) == base + 2 * len(TIPS) + 1

            # each chat has its own rotation
            await bot.run_daily(OTHER_GROUP)
            other = api.sent_to(OTHER_GROUP)
            assert len(other) == 2 and assert_daily_tip(other[-1], OTHER_GROUP) == first[0]
            assert bot.job(GROUP).next_t is not None  # running it by hand keeps the schedule
            assert bot.errors == []

    run(scenario())


def test_turned_off_and_on_again_the_rotation_goes_on_where_it_was(
        api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            posted = []
            for _ in range(2):
                await bot.run_daily(GROUP)
                posted.append(assert_daily_tip(api.sent_to(GROUP)[-1], GROUP))
            await bot.say(GROUP, "/dailytip off", user_id=ADMIN)
            assert bot.rows() == [] and bot.jobs(GROUP) == ()
            reply = await bot.say(GROUP, "/dailytip", user_id=ADMIN)
            assert plain(reply["text"]) == msg("dailytip.none")
            await bot.say(GROUP, "/dailytip 09:15 Europe/London", user_id=ADMIN)
            assert bot.rows() == [(GROUP, "09:15", "Europe/London")]
            for _ in range(len(TIPS) - 2):
                await bot.run_daily(GROUP)
                posted.append(assert_daily_tip(api.sent_to(GROUP)[-1], GROUP))
            assert sorted(posted) == sorted(c.id for c in TIPS)  # none repeated
            assert bot.errors == []

    run(scenario())


def test_daily_tips_spread_over_their_minute_and_run_late_rather_than_never(
        api: FakeBotAPI, tmp_path: Path) -> None:
    chats = [-100_555_000_000 - n for n in range(60)]
    db = open_database(tmp_path / "db.sqlite3")
    for chat in chats:  # 60 chats, all at the same minute
        ScheduleStore(db).put(chat, FAR_FROM_NOW, "Europe/London")
    db.close()

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            starts = [assert_runs_at(bot, chat, FAR_FROM_NOW, LONDON) for chat in chats]
            # each chat at its own second of that minute, not all 60 at :00
            assert len({start.second for start in starts}) == len(chats)
            for chat in chats:
                scheduled = bot.job(chat).job  # the APScheduler job under PTB's Job
                assert scheduled.misfire_grace_time >= 5 * 60 and scheduled.coalesce is True

            # The loop was busy when the tip was due (2 minutes ago): it still goes out.
            chat = chats[0]
            late = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
            bot.job(chat).job.modify(next_run_time=late)  # wakes the scheduler
            [tip] = await bot.wait_sent(chat, 1)
            assert_daily_tip(tip, chat)
            assert_runs_at(bot, chat, FAR_FROM_NOW, LONDON)  # and it is due again then
            assert [c for c in api.calls_to("sendMessage") if c.params["chat_id"] in chats
                    ] == bot.sends(chat)  # only that one chat's tip
            assert bot.errors == []

    run(scenario())


# -- 7. restart --

def test_daily_tip_survives_a_restart(api: FakeBotAPI, tmp_path: Path) -> None:
    db_path = tmp_path / "db.sqlite3"
    state: dict[str, Any] = {}

    async def before() -> None:
        async with running_bot(api, db_path) as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            await bot.post(CHANNEL, "/dailytip 06:45")
            state["next_t"] = assert_runs_at(bot, GROUP, "08:30", LONDON)
            state["posted"] = []
            for _ in range(3):
                await bot.run_daily(GROUP)
                state["posted"].append(card_in(api.sent_to(GROUP)[-1]["text"]))
            state["rows"] = bot.rows()

    async def after() -> None:
        async with running_bot(api, db_path) as bot:
            assert bot.rows() == state["rows"]
            assert assert_runs_at(bot, GROUP, "08:30", LONDON) == state["next_t"]
            assert_runs_at(bot, CHANNEL, "06:45", ZoneInfo("UTC"))
            # the rotation carries on where it left off
            for _ in range(len(TIPS) - 3):
                await bot.run_daily(GROUP)
                state["posted"].append(card_in(api.sent_to(GROUP)[-1]["text"]))
            assert sorted(state["posted"]) == sorted(c.id for c in TIPS)
            assert bot.errors == []

    run(before())
    run(after())


def test_a_stored_tip_without_a_valid_time_is_left_out_at_start(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only a hand-edited database holds one: the others are restored, the bot starts."""
    db_path = tmp_path / "db.sqlite3"
    db = open_database(db_path)
    store = ScheduleStore(db)
    store.put(GROUP, "08:30", "Europe/London")
    store.put(OTHER_GROUP, "9x:00", "UTC")
    db.close()

    async def scenario() -> None:
        async with running_bot(api, db_path) as bot:
            assert_runs_at(bot, GROUP, "08:30", LONDON)
            assert bot.jobs(OTHER_GROUP) == ()
            assert bot.errors == []

    with caplog.at_level(logging.WARNING, logger="bot.telegram_groups"):
        run(scenario())
    assert any("no valid time ('9x:00')" in r.getMessage() for r in caplog.records)


def minutes_ago(minutes: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).strftime("%H:%M")


def test_a_tip_due_while_the_bot_was_down_goes_out_when_it_starts(
        api: FakeBotAPI, tmp_path: Path) -> None:
    # Chat ids whose tips are due at second 0 of their minute.
    missed, posted, too_late = -100_222_000_020, -100_222_000_080, -100_222_000_140
    assert {chat % 60 for chat in (missed, posted, too_late)} == {0}
    db_path = tmp_path / "db.sqlite3"
    db = open_database(db_path)
    store = ScheduleStore(db)
    store.put(missed, minutes_ago(3), "UTC")  # fell due while the bot was down
    store.put(posted, minutes_ago(3), "UTC")  # fell due, and went out before the restart
    day = last_due(store.get(posted), dt.datetime.now(dt.UTC)).date().isoformat()
    store.mark_posted(posted, TIPS[0].id, [c.id for c in TIPS], day=day)
    store.put(too_late, minutes_ago(30), "UTC")  # beyond the grace: tomorrow, as ever
    pending = -100_222_000_030  # due at second 50: its late run waits that long
    store.put(pending, minutes_ago(3), "UTC")
    db.close()

    def late_jobs(bot: Any, chat: int) -> tuple[Any, ...]:
        return bot.app.job_queue.get_jobs_by_name(f"dailytip-late:{chat}")

    async def first_start() -> None:
        async with running_bot(api, db_path) as bot:
            [tip] = await bot.wait_sent(missed, 1)
            assert_daily_tip(tip, missed)
            assert late_jobs(bot, posted) == () and late_jobs(bot, too_late) == ()
            # APScheduler's own 1 s grace would drop it if the loop were busy at that second
            [late] = late_jobs(bot, pending)
            assert late.job.misfire_grace_time == MISFIRE_GRACE_SECONDS
            for chat in (missed, posted, too_late):
                assert bot.job(chat).next_t > dt.datetime.now(dt.UTC)  # and every day after
            assert bot.errors == []

    async def second_start() -> None:
        async with running_bot(api, db_path) as bot:
            assert late_jobs(bot, missed) == ()  # that day's tip went out: not again
            assert bot.errors == []

    run(first_start())
    assert ScheduleStore(open_database(db_path)).get(missed).last_day == day
    run(second_start())
    assert len(api.sent_to(missed)) == 1
    assert api.sent_to(posted) == [] and api.sent_to(too_late) == []


def test_a_tip_set_after_its_time_today_first_goes_out_tomorrow(api: FakeBotAPI,
                                                                tmp_path: Path) -> None:
    """Set at 08:05 for 08:00: a restart at 08:10 must not take today's for a missed one."""
    db_path = tmp_path / "db.sqlite3"

    async def set_it() -> None:
        async with running_bot(api, db_path) as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, f"/dailytip {minutes_ago(3)} UTC", user_id=ADMIN)

    async def restart() -> None:
        async with running_bot(api, db_path) as bot:
            await bot.settle()
            assert bot.app.job_queue.get_jobs_by_name(f"dailytip-late:{GROUP}") == ()
            assert bot.job(GROUP).next_t > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)

    run(set_it())
    answered = len(api.sent_to(GROUP))
    run(restart())
    assert len(api.sent_to(GROUP)) == answered


@pytest.mark.parametrize(("now", "due"), [
    # Saturday 08:05, the eve of the clocks going back: tomorrow's 08:00 is 25 hours on
    (dt.datetime(2026, 10, 24, 8, 5, tzinfo=LONDON), dt.datetime(2026, 10, 25, 8, 0)),
    # Saturday 07:30, the eve of the clocks going forward: today's 08:00, not tomorrow's
    (dt.datetime(2027, 3, 27, 7, 30, tzinfo=LONDON), dt.datetime(2027, 3, 27, 8, 0)),
    (dt.datetime(2027, 3, 27, 8, 5, tzinfo=LONDON), dt.datetime(2027, 3, 28, 7, 0)),
])
def test_the_next_tip_is_due_by_the_wall_clock_across_a_clock_change(
        now: dt.datetime, due: dt.datetime) -> None:
    schedule = Schedule(0, "08:00", "Europe/London")  # chat 0: due at second 0
    found = next_due(schedule, now.astimezone(dt.UTC))
    assert found is not None and found.astimezone(dt.UTC).replace(tzinfo=None) == due
    assert last_due(schedule, found.astimezone(dt.UTC)) == found


# (zone, time, a UTC moment a few days before a clock change, the day whose run is an
# hour later on the clock because the clocks skip that time)
CLOCK_CHANGES = [
    ("Europe/Berlin", "00:30", dt.datetime(2026, 3, 26, 12, tzinfo=dt.UTC), None),
    ("America/New_York", "00:30", dt.datetime(2026, 3, 5, 12, tzinfo=dt.UTC), None),
    ("Australia/Sydney", "00:30", dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC), None),
    ("Europe/Berlin", "02:30", dt.datetime(2026, 3, 26, 12, tzinfo=dt.UTC),
     dt.date(2026, 3, 29)),
    ("Asia/Beirut", "00:30", dt.datetime(2026, 3, 26, 12, tzinfo=dt.UTC),  # at midnight
     dt.date(2026, 3, 29)),
    ("Europe/Berlin", "02:30", dt.datetime(2026, 10, 22, 12, tzinfo=dt.UTC), None),  # twice
    ("Europe/London", "01:30", dt.datetime(2026, 10, 22, 12, tzinfo=dt.UTC), None),
]


def test_the_daily_job_runs_once_every_day_across_clock_changes(api: FakeBotAPI,
                                                                 tmp_path: Path) -> None:
    """The job's own trigger, stepped as APScheduler steps it (from each run, a moment
    after it): one run on each of seven days around a change, at the set time by that
    day's wall clock (a time the clocks skip, an hour later; one they repeat, the first
    time). APScheduler's cron trigger skipped the day after the clocks went forward."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            for zone, hhmm, start, shifted in CLOCK_CHANGES:
                await bot.say(GROUP, f"/dailytip {hhmm} {zone}", user_id=ADMIN)
                trigger, tz = bot.job(GROUP).job.trigger, ZoneInfo(zone)
                fire = trigger.get_next_fire_time(None, start)
                runs = []
                for _ in range(7):
                    runs.append(fire.astimezone(tz))
                    fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=0.5))
                first = start.astimezone(tz).date() + dt.timedelta(days=1)
                days = [first + dt.timedelta(days=n) for n in range(7)]
                assert [r.date() for r in runs] == days, (zone, hhmm)
                hour, minute = map(int, hhmm.split(":"))
                set_time = dt.time(hour, minute, GROUP % 60)
                assert [r.time() for r in runs] == [
                    set_time if day != shifted else set_time.replace(hour=hour + 1)
                    for day in days], (zone, hhmm)
                # the first of a repeated time: the earlier offset (summer time)
                assert all(r.fold == 0 for r in runs)
                for r in runs:
                    # asked at the very instant of a run, or days late to catch up: the
                    # next is after it (the same again would loop APScheduler forever)
                    assert trigger.get_next_fire_time(r, r) > r
                    late = trigger.get_next_fire_time(r, r + dt.timedelta(days=3))
                    assert (late - r) in (dt.timedelta(hours=23), dt.timedelta(hours=24),
                                          dt.timedelta(hours=25)), (zone, hhmm, r)
            assert bot.errors == []

    run(scenario())


def test_the_daily_trigger_steps_forward_from_a_run_given_in_any_zone() -> None:
    """A scheduler whose zone is not UTC hands back the run in its own zone: 01:30 UTC on
    27 October 2024 is London's second 01:30 (fold 1), which wall-clock arithmetic
    would read as the first, an hour earlier."""
    trigger = DailyTrigger(Schedule(0, "01:30", "UTC"), ZoneInfo("UTC"))
    run_at = dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.UTC).astimezone(LONDON)
    assert run_at.fold == 1
    following = trigger.get_next_fire_time(run_at, run_at)
    assert following == dt.datetime(2024, 10, 28, 1, 30, tzinfo=dt.UTC)
    # asked for the first run at the very instant one is due: that one
    assert trigger.get_next_fire_time(None, following) == following


async def set_and_post_one(bot: Any, api: FakeBotAPI, now: dt.datetime, args: str) -> None:
    """An admin sets `/dailytip args` at `now`, and its next tip goes out."""
    api.set_member_status(GROUP, ADMIN, "administrator")
    bot.groups.now = lambda: now
    await bot.say(GROUP, f"/dailytip {args}", user_id=ADMIN)
    base = len(api.sent_to(GROUP))
    await bot.run_daily(GROUP)
    assert len(api.sent_to(GROUP)) == base + 1


def test_a_time_moved_later_the_same_day_brings_no_second_tip(api: FakeBotAPI,
                                                              tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            await set_and_post_one(bot, api, dt.datetime(2026, 5, 4, 7, 0, tzinfo=dt.UTC),
                                   "08:00 UTC")  # posted 4 May, 08:00
            bot.groups.now = lambda: dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
            for command in ("/dailytip 20:00 UTC", "/dailytip off", "/dailytip 21:00 UTC"):
                await bot.say(GROUP, command, user_id=ADMIN)
            base = len(api.sent_to(GROUP))
            # at 21:00 that day: nothing (the job counts it as dealt with)
            bot.groups.now = lambda: dt.datetime(2026, 5, 4, 21, 0, 30, tzinfo=dt.UTC)
            await bot.job(GROUP).run(bot.app)
            assert len(api.sent_to(GROUP)) == base
            await bot.run_daily(GROUP)  # the next one: 5 May, 21:00
            assert len(api.sent_to(GROUP)) == base + 1
            assert bot.groups.now().date() == dt.date(2026, 5, 5)
            assert bot.errors == []

    run(scenario())


def test_a_time_moved_across_the_date_line_keeps_one_tip_a_day(api: FakeBotAPI,
                                                              tmp_path: Path) -> None:
    """Posted at 08:00 in Tokyo on 2 June (19:00 on 1 June in New York), then moved to
    18:00 New York: the next goes out at 18:00 on 2 June in New York, none lost."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            await set_and_post_one(bot, api, dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC),
                                   "08:00 Asia/Tokyo")  # posted 2 June, 08:00 Tokyo
            bot.groups.now = lambda: dt.datetime(2026, 6, 1, 23, 30, tzinfo=dt.UTC)
            await bot.say(GROUP, "/dailytip 18:00 America/New_York", user_id=ADMIN)
            base = len(api.sent_to(GROUP))
            await bot.run_daily(GROUP)
            assert len(api.sent_to(GROUP)) == base + 1
            new_york = bot.groups.now().astimezone(ZoneInfo("America/New_York"))
            assert new_york.date() == dt.date(2026, 6, 2) and new_york.hour == 18
            assert bot.errors == []

    run(scenario())


@pytest.mark.parametrize(("first", "second", "sent_at", "next_at"), [
    # Tokyo's 08:00 of 2 June goes out (1 June in New York); New York's 2 June still gets one
    ("08:00 Asia/Tokyo", "18:00 America/New_York", dt.datetime(2026, 6, 1, 23, 0, 30),
     dt.datetime(2026, 6, 2, 22, 0, 30)),
    # New York's 18:00 of 1 June goes out (2 June in Tokyo); Tokyo's 2 June gets no second
    ("18:00 America/New_York", "20:00 Asia/Tokyo", dt.datetime(2026, 6, 1, 22, 0, 30),
     None),
], ids=["west", "east"])
def test_a_zone_set_while_a_tip_is_on_its_way_keeps_one_tip_a_day(
        api: FakeBotAPI, tmp_path: Path, first: str, second: str, sent_at: dt.datetime,
        next_at: dt.datetime | None) -> None:
    """The tip is being sent when an admin sets another zone: the day it is counted for
    is the new zone's, so none is lost and none doubled."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            bot.groups.now = lambda: dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
            await bot.say(GROUP, f"/dailytip {first}", user_id=ADMIN)
            base = len(api.sent_to(GROUP))
            api.method_delays["sendmessage"] = 0.5
            bot.groups.now = lambda: sent_at.replace(tzinfo=dt.UTC)
            posting = asyncio.create_task(bot.job(GROUP).run(bot.app))
            await asyncio.sleep(0.2)
            bot.groups._configure(bot.app, GROUP, second.split(), sent=10**6)  # a later one
            await posting
            api.method_delays.clear()
            assert len(api.sent_to(GROUP)) == base + 1
            # 2 June, 20:00 Tokyo (11:00 UTC): no second tip that Tokyo day
            bot.groups.now = lambda: dt.datetime(2026, 6, 2, 11, 0, 30, tzinfo=dt.UTC)
            if next_at is not None:
                bot.groups.now = lambda: next_at.replace(tzinfo=dt.UTC)
            await bot.job(GROUP).run(bot.app)
            assert len(api.sent_to(GROUP)) == base + (1 if next_at is None else 2)
            assert bot.errors == []

    run(scenario())


def test_the_day_of_the_last_tip_is_read_on_the_new_zones_calendar() -> None:
    """Tokyo's 09:00 of 2 June is 00:00 UTC on 2 June but 20:00 on 1 June in New York:
    set to 18:00 New York an hour later, 1 June is what is dealt with there, not 2 June."""
    posted = dt.datetime(2026, 6, 2, 0, 0, tzinfo=dt.UTC)
    now = dt.datetime(2026, 6, 2, 1, 0, tzinfo=dt.UTC)
    new = Schedule(0, "18:00", "America/New_York")
    assert first_day_dealt_with(new, posted, now) == "2026-06-01"
    assert first_day_dealt_with(Schedule(0, "10:00", "Asia/Tokyo"), posted, now) == (
        "2026-06-02")
    assert first_day_dealt_with(new, None, now) == "2026-06-01"  # 18:00 NY passed today


def test_a_time_set_after_it_passed_then_moved_later_still_posts_that_day(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """No tip went out today (08:00 was set at noon, so it starts tomorrow): moved to
    20:00, today's goes out at 20:00."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            bot.groups.now = lambda: dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
            await bot.say(GROUP, "/dailytip 08:00 UTC", user_id=ADMIN)
            await bot.say(GROUP, "/dailytip 20:00 UTC", user_id=ADMIN)
            base = len(api.sent_to(GROUP))
            await bot.run_daily(GROUP)
            assert len(api.sent_to(GROUP)) == base + 1
            assert bot.groups.now().date() == dt.date(2026, 5, 4)
            assert bot.errors == []

    run(scenario())


def test_a_tip_due_while_the_bot_starts_goes_out(api: FakeBotAPI, tmp_path: Path) -> None:
    """Due after the jobs were restored but before the scheduler started (a slow polling
    or webhook set-up): late, not tomorrow."""
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).replace(microsecond=0)
    chat = -100_222_000_000 - (-100_222_000_000 - due.second) % 60  # due at that second
    assert chat % 60 == due.second
    set_schedule(tmp_path / "db.sqlite3", chat, due.strftime("%H:%M"), "UTC")

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3", start_delay=3.0) as bot:
            [tip] = await bot.wait_sent(chat, 1)
            assert_daily_tip(tip, chat)
            assert bot.job(chat).next_t > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
            assert bot.errors == []

    run(scenario())


def test_a_tip_whose_zone_is_no_longer_known_is_explained_and_removed(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """A zone stored while it was accepted (Factory, before it was refused; or one a later
    zone data release dropped) cannot run: the chat hears so once, and the row goes."""
    gone, kept = -100_222_000_200, -100_222_000_260  # both due at second 0 of the minute
    db_path = tmp_path / "db.sqlite3"
    db = open_database(db_path)
    ScheduleStore(db).put(gone, "07:15", "Factory")
    ScheduleStore(db).put(kept, FAR_FROM_NOW, "Europe/London")
    db.close()

    async def first_start() -> None:
        async with running_bot(api, db_path) as bot:
            [notice] = await bot.wait_sent(gone, 1)
            assert "07:15" in notice["text"] and "Factory" in notice["text"]
            assert "/dailytip" in notice["text"] and "switched off" in notice["text"]
            await eventually(lambda: bot.rows() == [(kept, FAR_FROM_NOW, "Europe/London")],
                             what="the unknown zone's schedule removed")
            assert bot.jobs(gone) == ()
            assert_runs_at(bot, kept, FAR_FROM_NOW, LONDON)
            assert bot.errors == []

    async def second_start() -> None:
        async with running_bot(api, db_path) as bot:
            assert bot.app.job_queue.get_jobs_by_name(f"dailytip-zone-gone:{gone}") == ()
            assert bot.errors == []

    run(first_start())
    run(second_start())
    assert len(api.sent_to(gone)) == 1  # told once, not at every start
    assert api.sent_to(kept) == []


@pytest.mark.parametrize(("code", "description"), [
    (403, "Forbidden: bot was kicked from the supergroup chat"),
    (500, "Internal Server Error"),
])
def test_a_zone_gone_notice_telegram_refuses(api: FakeBotAPI, tmp_path: Path, code: int,
                                             description: str) -> None:
    """A chat the bot may not post in loses the schedule with the notice; after a passing
    failure the schedule stays, and the next start tells them."""
    gone = -100_222_000_200
    db_path = tmp_path / "db.sqlite3"
    set_schedule(db_path, gone, "07:15", "Factory")
    api.fail_next("sendMessage", chat_id=gone, error_code=code, description=description)
    chat_gone = code == 403

    async def first_start() -> None:
        async with running_bot(api, db_path) as bot:
            await eventually(lambda: bot.sends(gone), what="the notice tried")
            if chat_gone:
                await eventually(lambda: bot.rows() == [], what="the schedule removed")
            else:  # a passing failure reaches the log
                await eventually(lambda: bot.errors, what="the error handler")
            await bot.settle()
            assert bot.rows() == ([] if chat_gone else [(gone, "07:15", "Factory")])
            assert all(isinstance(e, NetworkError) for e in bot.errors)
            assert bool(bot.errors) is not chat_gone

    async def second_start() -> None:
        async with running_bot(api, db_path) as bot:
            if not chat_gone:
                await bot.wait_sent(gone, 1)
                await eventually(lambda: bot.rows() == [], what="the schedule removed")
            await bot.settle()
            assert bot.errors == []

    run(first_start())
    run(second_start())
    assert len(api.sent_to(gone)) == (0 if chat_gone else 1)


def test_a_zone_gone_notice_keeps_a_schedule_an_admin_set_meanwhile(
        api: FakeBotAPI, tmp_path: Path) -> None:
    gone = -100_222_000_200
    db_path = tmp_path / "db.sqlite3"
    set_schedule(db_path, gone, "07:15", "Factory")

    def admin_sets_it_anew(params: dict[str, Any]) -> None:
        if params.get("chat_id") == gone:  # while the notice is on its way
            set_schedule(db_path, gone, FAR_FROM_NOW, "Europe/London")

    api.before_call["sendmessage"] = admin_sets_it_anew

    async def scenario() -> None:
        async with running_bot(api, db_path) as bot:
            await bot.wait_sent(gone, 1)
            await bot.settle()
            assert bot.rows() == [(gone, FAR_FROM_NOW, "Europe/London")]
            assert bot.errors == []

    run(scenario())


def test_a_schedule_table_from_before_catch_up_topics_and_off_gains_the_columns(
        older_database: Callable[[str], Path]) -> None:
    path = older_database("CREATE TABLE daily_tips (chat_id INTEGER PRIMARY KEY, hhmm TEXT "
                          "NOT NULL, tz TEXT NOT NULL, posted TEXT NOT NULL DEFAULT '[]');"
                          "INSERT INTO daily_tips (chat_id, hhmm, tz) "
                          "VALUES (-5, '08:30', 'UTC');")
    store = ScheduleStore(open_database(path))
    assert store.get(-5) == Schedule(-5, "08:30", "UTC", "")
    store.mark_posted(-5, TIPS[0].id, [c.id for c in TIPS], day="2026-12-01")
    assert store.get(-5) == Schedule(-5, "08:30", "UTC", "2026-12-01")
    store.put(-5, "09:00", "UTC", thread=7, last_day="2026-12-02")  # set anew after 09:00
    assert store.get(-5) == Schedule(-5, "09:00", "UTC", "2026-12-02", thread=7)
    assert store.turn_off(-5) and store.get(-5) is None and store.all() == []
    store.put(-5, "09:00", "UTC")
    assert store.next_tip(-5, [c.id for c in TIPS]) == TIPS[1].id  # its rotation kept



def test_a_tip_posted_before_its_time_was_kept_still_counts_for_its_day(
        older_database: Callable[[str], Path]) -> None:
    """A row from before the last tip's time was stored: its last day dealt with stands
    for it, so a time moved later that day posts no second tip."""
    path = older_database("CREATE TABLE daily_tips (chat_id INTEGER PRIMARY KEY, hhmm TEXT "
                          "NOT NULL, tz TEXT NOT NULL, posted TEXT NOT NULL DEFAULT '[]', "
                          "last_day TEXT NOT NULL DEFAULT '');"
                          "INSERT INTO daily_tips VALUES (-5, '08:00', 'Asia/Tokyo', "
                          f"'[\"{TIPS[0].id}\"]', '2026-12-01');"
                          "INSERT INTO daily_tips VALUES (-6, '08:00', 'UTC', '[]', "
                          "'2026-12-01');")
    store = ScheduleStore(open_database(path))
    posted = dt.datetime(2026, 12, 1, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert store.last_posted(-5) == posted
    assert store.last_posted(-6) is None  # none posted yet: nothing to go by
    noon_in_tokyo = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
    later = Schedule(-5, "21:00", "Asia/Tokyo")
    assert first_day_dealt_with(later, store.last_posted(-5), noon_in_tokyo) == "2026-12-01"
    assert first_day_dealt_with(later, None, noon_in_tokyo) == "2026-11-30"


# -- 8. the bot's own membership --

@pytest.mark.parametrize(("old", "new"), [("member", "left"), ("member", "kicked"),
                                          ("administrator", "left")])
def test_removed_from_a_group_drops_its_daily_tip(api: FakeBotAPI, tmp_path: Path,
                                                  old: str, new: str) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            for chat in (GROUP, OTHER_GROUP):
                api.set_member_status(chat, ADMIN, "administrator")
                await bot.say(chat, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            sent_before = len(api.calls_to("sendMessage"))
            api.my_chat_member(GROUP, "supergroup", old, new, by_user_id=ADMIN)
            await eventually(lambda: bot.jobs(GROUP) == () and all(
                row[0] != GROUP for row in bot.rows()), what="the schedule removed")
            assert bot.rows() == [(OTHER_GROUP, "08:30", "Europe/London")]
            assert bot.stored_chats() == [OTHER_GROUP]  # nothing kept about that group
            assert len(bot.jobs(OTHER_GROUP)) == 1  # other chats keep theirs
            await bot.settle()
            assert len(api.calls_to("sendMessage")) == sent_before + 1  # the sentinel only
            assert bot.errors == []

    run(scenario())


def test_removed_from_a_group_after_off_keeps_nothing_about_it(api: FakeBotAPI,
                                                               tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            await bot.say(GROUP, "/dailytip off", user_id=ADMIN)
            assert bot.stored_chats() == [GROUP]  # its rotation, for when it is back on
            api.my_chat_member(GROUP, "supergroup", "member", "left", by_user_id=ADMIN)
            await eventually(lambda: bot.stored_chats() == [], what="the chat forgotten")
            assert bot.errors == []

    run(scenario())


def test_removed_while_muted_keeps_nothing_and_back_again_introduces_itself(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Telegram tells of a muted (restricted) bot leaving or being removed by
    `is_member: false`, its status still "restricted"."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.app.bot_data["groups"].intro_after = 0.1
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            await bot.say(GROUP, "/dailytip off", user_id=ADMIN)
            await bot.say(GROUP, "/dailytip 09:30 Europe/London", user_id=ADMIN)
            api.my_chat_member(GROUP, "supergroup", "member", "restricted", by_user_id=ADMIN)
            await bot.settle()
            assert bot.stored_chats() == [GROUP]  # muted: kept, to go out again
            sent = len(bot.sends(GROUP))
            api.my_chat_member(GROUP, "supergroup", "restricted", "restricted",
                               by_user_id=ADMIN, new_is_member=False)
            await eventually(lambda: bot.stored_chats() == [] and bot.jobs(GROUP) == (),
                             what="the chat forgotten")
            api.my_chat_member(GROUP, "supergroup", "restricted", "member",
                               by_user_id=ADMIN, old_is_member=False)
            [intro] = (await bot.wait_sent(GROUP, sent + 1))[sent:]
            assert plain(intro["text"]) == msg("group.intro")
            assert bot.errors == []

    run(scenario())


def test_a_membership_update_twice_or_a_quick_remove_brings_one_introduction(
        api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.app.bot_data["groups"].intro_after = 0.5
            # the same update delivered twice (after a crash, or a webhook's retry)
            api.my_chat_member(GROUP, "supergroup", "left", "member", by_user_id=ADMIN)
            api.my_chat_member(GROUP, "supergroup", "left", "member", by_user_id=ADMIN)
            # added, removed before the introduction went out: none
            api.my_chat_member(OTHER_GROUP, "supergroup", "left", "member", by_user_id=ADMIN)
            api.my_chat_member(OTHER_GROUP, "supergroup", "member", "left", by_user_id=ADMIN)
            await bot.wait_sent(GROUP, 1)
            await bot.settle(pause=1.0)
            assert [plain(m["text"]) for m in api.sent_to(GROUP)] == [msg("group.intro")]
            assert bot.sends(OTHER_GROUP) == []
            assert bot.errors == []

    run(scenario())


def test_added_to_a_group_introduces_itself_once(api: FakeBotAPI, tmp_path: Path) -> None:
    questions = [t for k, t in CONTENT.messages.items()
                 if k.startswith("question.") or k.endswith(".question")]

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.app.bot_data["groups"].intro_after = 0.1
            api.my_chat_member(BASIC_GROUP, "group", "left", "member", by_user_id=ADMIN)
            api.my_chat_member(GROUP, "supergroup", "kicked", "administrator",
                               by_user_id=ADMIN)
            [intro] = await bot.wait_sent(BASIC_GROUP, 1)
            [intro2] = await bot.wait_sent(GROUP, 1)
            for message in (intro, intro2):
                text = plain(message["text"])
                assert text == msg("group.intro")
                assert "/start" in text and "/tip" in text
                assert "reply_markup" not in message
                assert not any(q in text for q in questions)
            # promoted while already there; added to a channel; removed: no introduction
            api.my_chat_member(BASIC_GROUP, "group", "member", "administrator",
                               by_user_id=ADMIN)
            api.my_chat_member(CHANNEL, "channel", "left", "administrator", by_user_id=ADMIN)
            api.my_chat_member(OTHER_GROUP, "supergroup", "member", "left", by_user_id=ADMIN)
            await bot.settle(pause=0.3)
            assert len(bot.sends(BASIC_GROUP)) == 1 and len(bot.sends(GROUP)) == 1
            assert bot.sends(CHANNEL) == [] and bot.sends(OTHER_GROUP) == []
            assert bot.rows() == []
            assert bot.errors == []

    run(scenario())


def test_an_introduction_waiting_its_turn_is_late_rather_than_dropped(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """APScheduler's default drops a job woken more than 1 s late (a busy loop)."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.app.bot_data["groups"].intro_after = 60
            api.my_chat_member(GROUP, "supergroup", "left", "member", by_user_id=ADMIN)
            queue = bot.app.job_queue

            def intro_jobs() -> tuple[Any, ...]:
                return queue.get_jobs_by_name(f"intro:{GROUP}")

            await eventually(lambda: len(intro_jobs()) == 1, what="the introduction queued")
            assert intro_jobs()[0].job.misfire_grace_time == MISFIRE_GRACE_SECONDS

    run(scenario())


# -- 9. channels --

def test_channel_dailytip_without_admin_check(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            reply = await bot.post(CHANNEL, "/dailytip 09:00")
            assert plain(reply["text"]) == msg("dailytip.set").format(time="09:00", zone="UTC")
            assert bot.rows() == [(CHANNEL, "09:00", "UTC")]  # BACKBOT_TZ's default
            assert_runs_at(bot, CHANNEL, "09:00", ZoneInfo("UTC"))
            assert api.calls_to("getChatMember") == []  # a channel post is an admin's

            reply = await bot.post(CHANNEL, f"/dailytip@{BOT} 10:15 Europe/London")
            assert bot.rows() == [(CHANNEL, "10:15", "Europe/London")]
            assert_runs_at(bot, CHANNEL, "10:15", LONDON)

            await bot.run_daily(CHANNEL)
            assert_daily_tip(api.sent_to(CHANNEL)[-1], CHANNEL)

            reply = await bot.post(CHANNEL, "/dailytip 8.30")
            assert plain(reply["text"]) == msg("dailytip.usage")
            reply = await bot.post(CHANNEL, "/dailytip 09:00 Mars/Base")
            assert plain(reply["text"]) == msg("dailytip.bad_zone").format(zone="Mars/Base")
            assert bot.rows() == [(CHANNEL, "10:15", "Europe/London")]

            # other channel posts are not commands for the bot
            api.channel_post(CHANNEL, "Today's post: /dailytip 11:00")
            api.channel_post(CHANNEL, "/tip")
            await bot.settle()
            assert len(api.sent_to(CHANNEL)) == 5

            reply = await bot.post(CHANNEL, "/dailytip off")
            assert plain(reply["text"]) == msg("dailytip.off")
            assert bot.rows() == [] and bot.jobs(CHANNEL) == ()
            assert bot.errors == []

    run(scenario())


def test_a_dailytip_the_database_refuses_says_so_and_sets_nothing(api: FakeBotAPI,
                                                                 tmp_path: Path) -> None:
    """Another process holds the database: the admin is told to try again, not left
    without an answer, and nothing is scheduled."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            store = bot.groups.schedules
            set_schedule = store.put

            def locked(*args: object, **kwargs: object) -> None:
                raise sqlite3.OperationalError("database is locked")

            store.put = locked  # type: ignore[method-assign]
            reply = await bot.post(CHANNEL, "/dailytip 09:00")
            assert plain(reply["text"]) == msg("error.try_again")
            assert bot.rows() == [] and bot.jobs(CHANNEL) == ()
            await eventually(lambda: bool(bot.errors), what="the failure logged")
            assert [type(e) for e in bot.errors] == [sqlite3.OperationalError]
            store.put = set_schedule  # type: ignore[method-assign]
            reply = await bot.post(CHANNEL, "/dailytip 09:00")
            assert plain(reply["text"]) == msg("dailytip.set").format(time="09:00", zone="UTC")
            assert bot.rows() == [(CHANNEL, "09:00", "UTC")]

    run(scenario())


def locked_once(store: ScheduleStore, method: str, times: int = 1) -> list[int]:
    """Make the store's `method` fail as a busy database does, `times` times; the list
    counts the calls."""
    calls: list[int] = []
    write = getattr(store, method)

    def maybe_locked(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise busy
        return write(*args, **kwargs)

    setattr(store, method, maybe_locked)
    return calls


def test_a_tip_posted_while_the_database_is_busy_is_recorded_later(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Telegram took the tip but the database would not note it: noted a little later, so
    the next day's tip is the next one, not the same again."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.groups.store_again_after = 0.2
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            calls = locked_once(bot.groups.schedules, "mark_posted")
            await bot.run_daily(GROUP)
            first = assert_daily_tip(api.sent_to(GROUP)[-1], GROUP)
            await eventually(lambda: len(calls) == 2, what="the record made again")
            await bot.run_daily(GROUP)
            assert assert_daily_tip(api.sent_to(GROUP)[-1], GROUP) != first
            assert bot.errors == []

    run(scenario())


def test_removed_while_the_database_is_busy_drops_the_daily_tip_later(
        api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.groups.store_again_after = 0.2
            for chat in (GROUP, OTHER_GROUP):
                api.set_member_status(chat, ADMIN, "administrator")
                await bot.say(chat, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            calls = locked_once(bot.groups.schedules, "remove")
            api.my_chat_member(GROUP, "supergroup", "member", "kicked", by_user_id=ADMIN)
            await eventually(lambda: bot.jobs(GROUP) == (), what="the job removed")
            await eventually(lambda: bot.stored_chats() == [OTHER_GROUP],
                             what="the schedule removed")
            assert len(calls) == 2
            assert bot.errors == []

    run(scenario())


def test_a_daily_tip_set_anew_before_a_busy_removal_went_through_stays(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Removed while the database was busy, then added back and set again before the
    removal could be made: the new setting is not removed."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.groups.store_again_after = 3600  # run below, when the test says
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            calls = locked_once(bot.groups.schedules, "remove")
            api.my_chat_member(GROUP, "supergroup", "member", "kicked", by_user_id=ADMIN)
            await eventually(lambda: store_jobs(bot) != (), what="the removal put off")
            api.my_chat_member(GROUP, "supergroup", "left", "member", by_user_id=ADMIN)
            await bot.say(GROUP, "/dailytip 09:15 Europe/London", user_id=ADMIN)
            [again] = store_jobs(bot)
            await again.run(bot.app)
            assert calls == [1]  # the second try found nothing to remove
            assert bot.rows() == [(GROUP, "09:15", "Europe/London")]
            assert len(bot.jobs(GROUP)) == 1
            assert bot.errors == []

    run(scenario())


def store_jobs(bot: Any) -> tuple[Any, ...]:
    assert bot.app.job_queue is not None
    return bot.app.job_queue.get_jobs_by_name("dailytip-store")  # type: ignore[no-any-return]


def test_a_database_that_stays_busy_is_given_up_on_after_some_tries(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.groups.store_again_after = 0.01  # then 0.02, 0.04, ...
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            calls = locked_once(bot.groups.schedules, "mark_posted", times=100)
            with caplog.at_level(logging.WARNING, logger="bot.telegram_groups"):
                await bot.run_daily(GROUP)
                await eventually(lambda: any(r.levelno == logging.ERROR
                                             for r in caplog.records), what="given up")
            assert len(calls) == 1 + STORE_TRIES
            assert store_jobs(bot) == ()
            assert bot.errors == []

    run(scenario())


def read_only() -> sqlite3.Error:
    error = sqlite3.OperationalError("attempt to write a readonly database")
    error.sqlite_errorcode = sqlite3.SQLITE_READONLY
    return error


@pytest.mark.parametrize("error", [
    read_only,
    # raised by Python's sqlite3 module itself: no SQLite code at all
    lambda: sqlite3.ProgrammingError("Cannot operate on a closed database."),
], ids=["read_only", "closed"])
def test_a_database_error_other_than_busy_is_not_tried_again(
        api: FakeBotAPI, tmp_path: Path, error: Callable[[], sqlite3.Error]) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            store = bot.groups.schedules

            def failing(*args: object, **kwargs: object) -> None:
                raise error()

            store.mark_posted = failing  # type: ignore[method-assign]
            await bot.run_daily(GROUP)
            await eventually(lambda: bool(bot.errors), what="the failure logged")
            assert [type(e) for e in bot.errors] == [type(error())]
            assert store_jobs(bot) == ()

    run(scenario())


def test_channel_dailytip_when_the_bot_may_not_post_there(api: FakeBotAPI,
                                                           tmp_path: Path) -> None:
    """An admin of the channel without the right to post: it cannot answer, so the
    setting is kept (as when muted), and the tips go out once it may post."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.fail_next("sendMessage", chat_id=CHANNEL,
                          description="Bad Request: need administrator rights in the "
                                      "channel chat")
            api.channel_post(CHANNEL, "/dailytip 09:00")
            await bot.settle()
            [refused] = bot.sends(CHANNEL)
            assert not refused.ok
            assert bot.rows() == [(CHANNEL, "09:00", "UTC")]
            assert len(bot.jobs(CHANNEL)) == 1
            await bot.run_daily(CHANNEL)
            assert_daily_tip(api.sent_to(CHANNEL)[-1], CHANNEL)
            assert bot.errors == []

    run(scenario())


def test_channel_dailytip_uses_backbot_tz(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3",
                               extra_env={"BACKBOT_TZ": "America/New_York"}) as bot:
            await bot.post(CHANNEL, "/dailytip 09:00")
            assert bot.rows() == [(CHANNEL, "09:00", "America/New_York")]
            assert_runs_at(bot, CHANNEL, "09:00", ZoneInfo("America/New_York"))

    run(scenario())


def test_channel_dailytip_for_another_bot_is_ignored(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.channel_post(CHANNEL, "/dailytip@other_bot 09:00")
            await bot.settle()
            assert bot.rows() == []
            assert api.sent_to(CHANNEL) == []

    run(scenario())


# -- 10. a chat that no longer lets the bot post --

# What Telegram answers when the bot may no longer post in a chat.
MAY_NOT_POST = [
    (403, "Forbidden: bot was blocked by the user"),
    (403, "Forbidden: bot was kicked from the supergroup chat"),
    (403, "Forbidden: bot is not a member of the channel chat"),
    (400, "Bad Request: chat not found"),
    (400, "Bad Request: group chat was deactivated"),
]
# What Telegram answers when an admin muted the bot (which they can undo unseen by it).
MUTED = [
    "Bad Request: not enough rights to send text messages to the chat",
    "Bad Request: have no rights to send a message",
    "Bad Request: CHAT_WRITE_FORBIDDEN",
    "Forbidden: CHAT_WRITE_FORBIDDEN",  # as some answer it: muted, not removed
    "Bad Request: need administrator rights in the channel chat",  # may not post there
    "Bad Request: TOPIC_CLOSED",  # in a forum, the topic it posts in was closed
    "Bad Request: have no write access to the chat",
    "Bad Request: CHAT_RESTRICTED",
]


@pytest.mark.parametrize(("code", "description"), MAY_NOT_POST)
def test_forbidden_daily_tip_is_dropped_and_the_bot_carries_on(
        api: FakeBotAPI, tmp_path: Path, code: int, description: str) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            for chat in (GROUP, OTHER_GROUP):
                api.set_member_status(chat, ADMIN, "administrator")
                await bot.say(chat, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            api.fail_next("sendMessage", chat_id=GROUP, error_code=code,
                          description=description)
            await bot.run_daily(GROUP)  # no exception escapes
            [attempt] = [c for c in bot.sends(GROUP) if not c.ok]
            assert attempt.error_code == code
            assert all(row[0] != GROUP for row in bot.rows())
            await eventually(lambda: bot.jobs(GROUP) == (), what="the job removed")
            assert bot.errors == []
            # the rest keeps working: another group's tip and a /start elsewhere
            assert len(bot.jobs(OTHER_GROUP)) == 1
            await bot.run_daily(OTHER_GROUP)
            assert_daily_tip(api.sent_to(OTHER_GROUP)[-1], OTHER_GROUP)
            reply = await bot.say(BASIC_GROUP, "/start", user_id=MEMBER, chat_type="group")
            assert plain(reply["text"]) == msg("group.start")
            assert bot.errors == []

    run(scenario())


async def a_daily_tip_refused(api: FakeBotAPI, bot: Any, caplog: pytest.LogCaptureFixture,
                              description: str) -> tuple[Any, list, str]:
    """An admin's daily tip set, then its run refused by Telegram (`description`, 403 for
    a "Forbidden", else 400), logs captured: the refused call, and the rows and job id
    from before it."""
    api.set_member_status(GROUP, ADMIN, "administrator")
    await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
    rows, job_id = bot.rows(), bot.job(GROUP).id
    code = 403 if description.startswith("Forbidden") else 400
    api.fail_next("sendMessage", chat_id=GROUP, error_code=code, description=description)
    with caplog.at_level(logging.INFO, logger="bot.telegram_groups"):
        await bot.run_daily(GROUP)
    [refused] = [c for c in bot.sends(GROUP) if not c.ok]
    assert refused.error_code == code
    return refused, rows, job_id


@pytest.mark.parametrize("description", MUTED)
def test_a_muted_bot_keeps_the_daily_tip_and_its_place_in_the_rotation(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        description: str) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            refused, rows, job_id = await a_daily_tip_refused(api, bot, caplog, description)
            assert bot.rows() == rows and bot.job(GROUP).id == job_id
            assert_runs_at(bot, GROUP, "08:30", LONDON)
            assert any(r.levelno == logging.WARNING and "muted" in r.getMessage()
                       for r in caplog.records)
            assert bot.errors == []
            # unmuted: the next tip is the one that could not go out
            await bot.run_daily(GROUP)
            assert assert_daily_tip(api.sent_to(GROUP)[-1], GROUP) == card_in(
                refused.params["text"])
            assert bot.errors == []

    run(scenario())


@pytest.mark.parametrize("description", [
    "Bad Request: message is too long",
    "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 3",
])
def test_a_refused_tip_text_keeps_the_schedule_and_skips_that_tip(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        description: str) -> None:
    """A Bad Request about the message itself is a content bug, not a chat that is gone."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            refused, rows, job_id = await a_daily_tip_refused(api, bot, caplog, description)
            refused_tip = card_in(refused.params["text"])
            # kept: the row, the job, its time
            assert bot.rows() == rows and bot.job(GROUP).id == job_id
            assert_runs_at(bot, GROUP, "08:30", LONDON)
            # logged with the card to fix, and not raised
            assert any(r.levelno == logging.ERROR and refused_tip in r.getMessage()
                       for r in caplog.records)
            assert bot.errors == []
            # the rotation moves on: the rest of the cycle, without the refused card
            posted = []
            for _ in range(len(TIPS) - 1):
                await bot.run_daily(GROUP)
                posted.append(assert_daily_tip(api.sent_to(GROUP)[-1], GROUP))
            assert sorted([refused_tip, *posted]) == sorted(c.id for c in TIPS)
            assert bot.errors == []

    run(scenario())


@pytest.mark.parametrize("late_by", [dt.timedelta(seconds=20),
                                     dt.timedelta(minutes=15, seconds=-0.1)])
def test_transient_failure_keeps_the_daily_tip(api: FakeBotAPI, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture,
                                               late_by: dt.timedelta) -> None:
    """Telegram fails the tip (a server error): it goes out a little later, once, if that
    is within the grace; if not, the schedule stays for the next day."""
    caplog.set_level(logging.WARNING, logger="bot.telegram_groups")
    due = dt.datetime(2026, 11, 2, 8, 30, GROUP % 60, tzinfo=LONDON)
    retried = late_by < dt.timedelta(minutes=14)

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            bot.groups.now = lambda: (due - dt.timedelta(hours=1)).astimezone(dt.UTC)
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            bot.groups.now = lambda: (due + late_by).astimezone(dt.UTC)
            bot.groups.tip_retry_seconds = 0.2
            base = len(api.sent_to(GROUP))
            api.fail_next("sendMessage", chat_id=GROUP, error_code=500,
                          description="Internal Server Error")
            await bot.job(GROUP).run(bot.app)  # at the time set above
            assert [c.error_code for c in bot.sends(GROUP)[base:base + 1]] == [500]
            retries = bot.app.job_queue.get_jobs_by_name(f"dailytip-late:{GROUP}")
            # APScheduler's own 1 s grace would drop the retry if the loop were busy then
            assert [job.job.misfire_grace_time for job in retries] == (
                [MISFIRE_GRACE_SECONDS] if retried else [])
            await bot.settle(pause=0.6)
            sent = api.sent_to(GROUP)[base:]
            assert len(sent) == (1 if retried else 0)  # one retry, and only one tip
            if retried:
                assert_daily_tip(sent[0], GROUP)
            assert bot.errors == []  # handled, not raised
            said = "trying again in 0 s" if retried else "the next goes out tomorrow"
            assert any(said in r.getMessage() for r in caplog.records)
            assert bot.rows() == [(GROUP, "08:30", "Europe/London")]
            assert_runs_at(bot, GROUP, "08:30", LONDON)
            await bot.run_daily(GROUP)  # the next day's, as usual
            assert len(api.sent_to(GROUP)[base:]) == len(sent) + 1
            assert_daily_tip(api.sent_to(GROUP)[-1], GROUP)

    run(scenario())


def test_a_tip_whose_answer_was_lost_is_not_sent_again(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Telegram posted the tip but the connection dropped before its answer: it counts as
    posted (not retried, not posted again after a restart), and the rotation moves on."""
    caplog.set_level(logging.WARNING, logger="bot.telegram_groups")
    due = dt.datetime(2026, 11, 2, 8, 30, GROUP % 60, tzinfo=LONDON)
    later = (due + dt.timedelta(seconds=20)).astimezone(dt.UTC)

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            bot.groups.now = lambda: (due - dt.timedelta(hours=1)).astimezone(dt.UTC)
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            bot.groups.now = lambda: later
            bot.groups.tip_retry_seconds = 0.2
            base = len(api.sent_to(GROUP))
            api.hang_up_next("sendMessage", chat_id=GROUP)
            await bot.job(GROUP).run(bot.app)  # at the time set above
            await bot.settle(pause=0.6)
            [first] = [assert_daily_tip(m, GROUP) for m in api.sent_to(GROUP)[base:]]
            assert bot.app.job_queue.get_jobs_by_name(f"dailytip-late:{GROUP}") == ()
            assert any("may not have arrived" in r.getMessage() for r in caplog.records)
            assert bot.errors == []
            schedule = ScheduleStore(bot.db).get(GROUP)
            assert schedule.last_day == "2026-11-02" and not missed(schedule, later)
            await bot.run_daily(GROUP)  # the next day's: the next tip
            assert assert_daily_tip(api.sent_to(GROUP)[-1], GROUP) != first

    run(scenario())


@pytest.mark.parametrize(("error", "cause", "taken"), [
    (RetryAfter(dt.timedelta(seconds=3)), None, False),  # flood control: not done
    (NetworkError("Internal Server Error"), None, False),  # Telegram's own error answer
    (NetworkError("httpx.ConnectError"), httpx.ConnectError("refused"), False),
    (TimedOut("pool"), httpx.PoolTimeout("pool full"), False),  # never left PTB
    (TimedOut(), httpx.ConnectTimeout("connect"), False),
    (TimedOut(), httpx.ReadTimeout("read"), True),  # sent; its answer late
    (NetworkError("httpx.ReadError"), httpx.ReadError("reset"), True),
    (NetworkError("httpx.RemoteProtocolError"), httpx.RemoteProtocolError("gone"), True),
    (NetworkError("Bad Gateway (502). Parsing failed"), TelegramError("Invalid"), True),
])
def test_only_a_post_telegram_certainly_did_not_take_is_tried_again(
        error: TelegramError, cause: Exception | None, taken: bool) -> None:
    error.__cause__ = cause  # as PTB raises them: `raise TimedOut(...) from err`
    assert not_taken(error) is not taken


SECOND = GROUP % 60  # each chat's tip is due at its own second of the minute


@pytest.mark.parametrize("runs", [
    ((dt.datetime(2026, 10, 25, 0, 55, SECOND), 1),  # 01:55 BST
     (dt.datetime(2026, 10, 25, 1, 55, SECOND), 0),  # 01:55 GMT
     (dt.datetime(2026, 10, 25, 2, 8, 0), 0),  # that run, late
     (dt.datetime(2026, 10, 26, 1, 55, SECOND), 1)),
    # the first run ten minutes late, in the repeated hour: still that day's
    ((dt.datetime(2026, 10, 25, 1, 5, SECOND), 1),  # 01:05 GMT
     (dt.datetime(2026, 10, 25, 1, 55, SECOND), 0),
     (dt.datetime(2026, 10, 26, 1, 55, SECOND), 1)),
], ids=["on_time", "first_run_late"])
def test_clocks_going_back_do_not_bring_a_second_tip(api: FakeBotAPI, tmp_path: Path,
                                                     runs: tuple[Any, ...]) -> None:
    """On 25 October 2026 London's 01:55 comes twice (BST, then GMT). Should the job run
    at both (a restart in the repeated hour starts it again), today's tip goes out at the
    first only (the second run also when it is late, after the repeated hour), and the
    next day's as usual."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            bot.groups.now = lambda: dt.datetime(2026, 10, 24, 12, 0, tzinfo=dt.UTC)
            await bot.say(GROUP, "/dailytip 01:55 Europe/London", user_id=ADMIN)
            base = len(api.sent_to(GROUP))
            for utc, posts in runs:
                bot.groups.now = lambda at=utc: at.replace(tzinfo=dt.UTC)
                await bot.job(GROUP).run(bot.app)
                assert len(api.sent_to(GROUP)) == base + posts, utc
                base += posts
            assert bot.errors == []

    run(scenario())


# -- 11. forum groups: the topic it was set in --

TOPIC = 7


def test_a_daily_tip_set_in_a_forum_topic_goes_to_that_topic(api: FakeBotAPI,
                                                              tmp_path: Path) -> None:
    db_path = tmp_path / "db.sqlite3"

    async def set_in_topic() -> None:
        async with running_bot(api, db_path) as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN, thread=TOPIC)
            assert bot.sends(GROUP)[-1].params.get("message_thread_id") == TOPIC  # the answer
            await bot.run_daily(GROUP)
            tip = bot.sends(GROUP)[-1]
            assert tip.ok and tip.params.get("message_thread_id") == TOPIC
            assert_daily_tip(api.sent_to(GROUP)[-1], GROUP)

    async def after_a_restart_then_set_in_general() -> None:
        async with running_bot(api, db_path) as bot:
            await bot.run_daily(GROUP)
            assert bot.sends(GROUP)[-1].params.get("message_thread_id") == TOPIC
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            await bot.run_daily(GROUP)
            assert "message_thread_id" not in bot.sends(GROUP)[-1].params
            assert bot.errors == []

    run(set_in_topic())
    run(after_a_restart_then_set_in_general())


@pytest.mark.parametrize("description", ["Bad Request: message thread not found",
                                         "Bad Request: TOPIC_DELETED",
                                         "Bad Request: TOPIC_ID_INVALID"])
def test_a_daily_tip_whose_topic_was_deleted_goes_to_the_chat(
        api: FakeBotAPI, tmp_path: Path, description: str) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN, thread=TOPIC)
            api.fail_next("sendMessage", chat_id=GROUP, description=description)
            await bot.run_daily(GROUP)
            refused, posted = bot.sends(GROUP)[-2:]
            assert not refused.ok and refused.params.get("message_thread_id") == TOPIC
            assert posted.ok and "message_thread_id" not in posted.params
            first = assert_daily_tip(api.sent_to(GROUP)[-1], GROUP)
            assert first == card_in(refused.params["text"])  # that day's tip, not skipped
            # and from then on, to the chat itself; the rotation goes on
            await bot.run_daily(GROUP)
            assert "message_thread_id" not in bot.sends(GROUP)[-1].params
            assert assert_daily_tip(api.sent_to(GROUP)[-1], GROUP) != first
            assert bot.rows() == [(GROUP, "08:30", "Europe/London")]
            assert bot.errors == []

    run(scenario())
