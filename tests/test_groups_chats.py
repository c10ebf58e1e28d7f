"""Chats that change under the bot: a group upgraded to a supergroup, a chat where the bot
may no longer post, a channel's posts copied into its discussion group, and the bot's own
membership in a private chat (which is not this module's business).

The real Application (build_application) polls FakeBotAPI on 127.0.0.1; see group_harness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from group_harness import (
    BOT,
    UPGRADED,
    FakeBotAPI,
    MigratingRequest,
    Running,
    assert_daily_tip,
    assert_runs_at,
    card_in,
    eventually,
    fake_api,
    msg,
    plain,
    run,
    running_bot,
)
from group_harness import engine as shipped_engine
from telegram import Update
from telegram.error import BadRequest

GROUP = -100_777_000_001
OTHER_GROUP = -100_777_000_002
BASIC_GROUP = -777_003  # a basic group, about to become...
SUPERGROUP = -100_777_000_003  # ...this supergroup
# Each chat's daily tip falls at its own second of the minute: this group's at second 2,
# the supergroup it becomes at second 50, later in the same minute.
EARLY_GROUP, LATE_SUPERGROUP = -777_058, -100_777_000_030
PROMPT_SUPERGROUP = -100_777_000_020  # a supergroup whose tips fall at second 0
CHANNEL = -100_888_000_001  # linked to GROUP as its discussion group
ADMIN, OWNER, MEMBER = 990_101, 990_102, 990_103
TELEGRAM = 777_000  # the sender of automatic forwards
LONDON, TOKYO = ZoneInfo("Europe/London"), ZoneInfo("Asia/Tokyo")

CONTENT = shipped_engine().content
TIPS = CONTENT.cards_tagged("tip")


def migrate_to(old: int, new: int) -> dict[str, Any]:
    """The service message Telegram leaves in the old group."""
    return {"message": {
        "message_id": 9001, "date": int(time.time()),
        "chat": {"id": old, "type": "group", "title": "Test group"},
        "from": {"id": OWNER, "is_bot": False, "first_name": "Ana"},
        "migrate_to_chat_id": new}}


def migrate_from(old: int, new: int) -> dict[str, Any]:
    """The service message that opens the new supergroup."""
    supergroup = {"id": new, "type": "supergroup", "title": "Test group"}
    return {"message": {
        "message_id": 1, "date": int(time.time()), "chat": supergroup,
        "from": {"id": 1087968824, "is_bot": True, "first_name": "Group",
                 "username": "GroupAnonymousBot"},
        "sender_chat": supergroup, "migrate_from_chat_id": old}}


# -- a group upgraded to a supergroup --

def test_a_daily_tip_follows_its_group_into_the_supergroup(tmp_path: Path) -> None:
    """Telegram answers a post to the old id with ChatMigrated: the schedule, its rotation
    and its job move to the new id, and today's tip goes there."""
    request = MigratingRequest()

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
                await owner_sets_daily_tip(bot, BASIC_GROUP)
                for _ in range(2):
                    await bot.run_daily(BASIC_GROUP)
                before = [card_in(m["text"]) for m in api.sent_to(BASIC_GROUP)[1:]]
                assert len(before) == 2

                request.migrations[BASIC_GROUP] = SUPERGROUP
                api.fail_next("sendMessage", chat_id=BASIC_GROUP, description=UPGRADED)
                await bot.run_daily(BASIC_GROUP)
                [refused] = [c for c in bot.sends(BASIC_GROUP) if not c.ok]
                assert refused.error_code == 400
                assert bot.rows() == [(SUPERGROUP, "08:30", "Europe/London")]
                await eventually(lambda: bot.jobs(BASIC_GROUP) == (), what="the old job gone")
                assert_runs_at(bot, SUPERGROUP, "08:30", LONDON)
                # today's tip, the next one in the rotation, with the supergroup's own link
                [today] = api.sent_to(SUPERGROUP)
                assert assert_daily_tip(today, SUPERGROUP) not in before
                # and the cycle carries on there without a repeat
                for _ in range(len(TIPS) - 3):
                    await bot.run_daily(SUPERGROUP)
                after = [card_in(m["text"]) for m in api.sent_to(SUPERGROUP)]
                assert sorted(before + after) == sorted(c.id for c in TIPS)
                assert bot.errors == [] and api.errors == []

    run(scenario())


async def owner_sets_daily_tip(bot: Running, group: int) -> None:
    """The group's owner sets its daily tip for 08:30, London time."""
    bot.api.set_member_status(group, OWNER, "creator")
    await bot.say(group, "/dailytip 08:30 Europe/London", user_id=OWNER, chat_type="group")


def last_day(bot: Running) -> str:
    [(day,)] = bot.db.execute("SELECT last_day FROM daily_tips").fetchall()
    return str(day)


async def supergroup_job_later_that_minute(bot: Running) -> None:
    """Today's tip went out (at 08:30:03); the supergroup's own job comes round at its own
    second, 08:30:50, and runs."""
    fired = bot.groups.now()
    assert last_day(bot) == fired.astimezone(LONDON).date().isoformat()
    bot.groups.now = lambda: fired + dt.timedelta(seconds=48)  # 08:30:51
    await bot.job(LATE_SUPERGROUP).run(bot.app)


async def tip_answered_upgraded(bot: Running, request: MigratingRequest,
                                supergroup: int) -> None:
    """The owner sets a daily tip in the group; when it falls due, Telegram answers it
    "upgraded to `supergroup`"."""
    await owner_sets_daily_tip(bot, EARLY_GROUP)
    request.migrations[EARLY_GROUP] = supergroup
    bot.api.fail_next("sendMessage", chat_id=EARLY_GROUP, description=UPGRADED)
    await bot.run_daily(EARLY_GROUP)


def test_todays_tip_carried_into_the_supergroup_is_not_posted_there_again(
        tmp_path: Path) -> None:
    """The tip that went to the supergroup counts as today's there, though the new id's
    own time falls later in the minute: its job, coming round then, posts nothing."""
    request = MigratingRequest()

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
                await tip_answered_upgraded(bot, request, LATE_SUPERGROUP)
                [today] = api.sent_to(LATE_SUPERGROUP)
                await supergroup_job_later_that_minute(bot)
                assert api.sent_to(LATE_SUPERGROUP) == [today]
                assert bot.errors == [] and api.errors == []

    run(scenario())


class UpgradedWhileSending(MigratingRequest):
    """Runs `during` once, after Telegram took the next sendMessage and before its answer
    reaches the bot: the group is upgraded while its tip is on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], Awaitable[None]] | None = None

    async def do_request(self, url: str, method: str, request_data: Any = None,
                         **timeouts: Any) -> tuple[int, bytes]:
        answer = await super().do_request(url, method, request_data, **timeouts)
        if self.during is not None and url.endswith("/sendMessage"):
            during, self.during = self.during, None
            await during()
        return answer


def upgrade_on_the_way(bot: Running, request: UpgradedWhileSending, supergroup: int,
                       pause: float = 0.0) -> None:
    """While the group's next post is on its way: its upgrade to `supergroup` arrives and
    moves the schedule, then `pause` seconds pass (a catch-up's time may come)."""
    async def upgrade() -> None:
        bot.api.push_update(migrate_to(EARLY_GROUP, supergroup))
        await eventually(lambda: bot.rows() == [(supergroup, "08:30", "Europe/London")],
                         what="the schedule moved")
        await asyncio.sleep(pause)

    request.during = upgrade


def test_a_tip_that_went_out_as_its_group_was_upgraded_counts_in_the_supergroup(
        tmp_path: Path) -> None:
    request = UpgradedWhileSending()

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
                await owner_sets_daily_tip(bot, EARLY_GROUP)
                upgrade_on_the_way(bot, request, LATE_SUPERGROUP)
                await bot.run_daily(EARLY_GROUP)
                assert request.during is None
                [today] = api.sent_to(EARLY_GROUP)[1:]  # after the "set" reply
                await supergroup_job_later_that_minute(bot)
                assert api.sent_to(LATE_SUPERGROUP) == []
                # and tomorrow's is the next tip in the rotation
                await bot.run_daily(LATE_SUPERGROUP)
                [tomorrow] = api.sent_to(LATE_SUPERGROUP)
                assert card_in(tomorrow["text"]) not in (None, card_in(today["text"]))
                assert bot.errors == [] and api.errors == []

    run(scenario())


def test_the_upgrades_catch_up_does_not_repeat_the_tip_sent_on_to_the_supergroup(
        tmp_path: Path) -> None:
    """Telegram answers today's tip with "upgraded": the bot sends it on to the supergroup
    at once, and the catch-up the upgrade queued there (due at once, at second 0) finds it
    under way and posts nothing."""
    request = MigratingRequest()

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
                api.before_call["sendmessage"] = lambda params: time.sleep(0.3)
                await tip_answered_upgraded(bot, request, PROMPT_SUPERGROUP)
                await asyncio.sleep(1.0)  # the catch-up has run by now
                [today] = api.sent_to(PROMPT_SUPERGROUP)
                assert card_in(today["text"]) is not None
                assert bot.errors == [] and api.errors == []

    run(scenario())


def test_the_upgrades_catch_up_does_not_repeat_a_tip_still_on_its_way_to_the_group(
        tmp_path: Path) -> None:
    """The group is upgraded while its tip is on the way: the supergroup's members have
    it (they are the group's), so the catch-up posts nothing there."""
    request = UpgradedWhileSending()

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
                await owner_sets_daily_tip(bot, EARLY_GROUP)
                # meanwhile the catch-up's time, at second 0, comes
                upgrade_on_the_way(bot, request, PROMPT_SUPERGROUP, pause=0.5)
                await bot.run_daily(EARLY_GROUP)
                await asyncio.sleep(0.5)
                [today] = api.sent_to(EARLY_GROUP)[1:]  # after the "set" reply
                assert card_in(today["text"]) is not None
                assert api.sent_to(PROMPT_SUPERGROUP) == []
                assert bot.errors == [] and api.errors == []

    run(scenario())


def test_a_tip_answered_upgraded_after_the_upgrade_was_handled_goes_to_the_supergroup(
        tmp_path: Path) -> None:
    """The upgrade's service message moves the schedule while the group's tip is on its
    way, and the supergroup's catch-up leaves the tip to that post; the post is then
    answered "upgraded": it goes on to the supergroup, so the day's tip is not lost."""
    request = UpgradedWhileSending()
    request.migrations[EARLY_GROUP] = PROMPT_SUPERGROUP

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
                await owner_sets_daily_tip(bot, EARLY_GROUP)
                # meanwhile the catch-up's time, at second 0, comes
                upgrade_on_the_way(bot, request, PROMPT_SUPERGROUP, pause=0.5)
                api.fail_next("sendMessage", chat_id=EARLY_GROUP, description=UPGRADED)
                await bot.run_daily(EARLY_GROUP)
                await asyncio.sleep(1.0)
                [today] = api.sent_to(PROMPT_SUPERGROUP)
                assert card_in(today["text"]) is not None
                assert bot.errors == []

    run(scenario())


@pytest.mark.parametrize("arrivals", [("to", "from"), ("from", "to"), ("from",), ("to",)])
def test_migration_messages_move_the_daily_tip_silently(
        api: FakeBotAPI, tmp_path: Path, arrivals: tuple[str, ...]) -> None:
    """Either service message is enough, in either order, and the second changes nothing."""
    updates = {"to": migrate_to(BASIC_GROUP, SUPERGROUP),
               "from": migrate_from(BASIC_GROUP, SUPERGROUP)}

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(BASIC_GROUP, OWNER, "creator")
            await bot.say(BASIC_GROUP, "/dailytip 07:15 Asia/Tokyo", user_id=OWNER,
                          chat_type="group")
            await bot.run_daily(BASIC_GROUP)  # some rotation state to carry over
            first = card_in(api.sent_to(BASIC_GROUP)[-1]["text"])
            sent_before = len(api.calls_to("sendMessage"))

            api.push_update(updates[arrivals[0]])
            await eventually(lambda: bot.rows() == [(SUPERGROUP, "07:15", "Asia/Tokyo")],
                             what="the schedule moved")
            for arrival in arrivals[1:]:
                api.push_update(updates[arrival])
            await bot.settle()
            assert bot.rows() == [(SUPERGROUP, "07:15", "Asia/Tokyo")]
            assert bot.jobs(BASIC_GROUP) == ()
            assert_runs_at(bot, SUPERGROUP, "07:15", TOKYO)
            assert len(api.calls_to("sendMessage")) == sent_before + 1  # the sentinel only

            await bot.run_daily(SUPERGROUP)
            assert assert_daily_tip(api.sent_to(SUPERGROUP)[-1], SUPERGROUP) != first
            assert bot.errors == []

    run(scenario())


def test_a_tip_still_to_be_tried_again_goes_to_the_supergroup(api: FakeBotAPI,
                                                              tmp_path: Path) -> None:
    """Telegram failed today's tip, and the group is upgraded before the retry: the retry
    goes to the supergroup (not dropped with the old chat's jobs), once."""
    due = dt.datetime(2026, 11, 2, 7, 15, tzinfo=TOKYO)

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(BASIC_GROUP, OWNER, "creator")
            bot.groups.now = lambda: (due - dt.timedelta(hours=1)).astimezone(dt.UTC)
            await bot.say(BASIC_GROUP, "/dailytip 07:15 Asia/Tokyo", user_id=OWNER,
                          chat_type="group")
            bot.groups.now = lambda: (due + dt.timedelta(minutes=1)).astimezone(dt.UTC)
            api.fail_next("sendMessage", chat_id=BASIC_GROUP, error_code=500,
                          description="Internal Server Error")
            await bot.job(BASIC_GROUP).run(bot.app)
            assert bot.app.job_queue is not None
            retries = bot.app.job_queue.get_jobs_by_name
            assert len(retries(f"dailytip-late:{BASIC_GROUP}")) == 1
            api.push_update(migrate_to(BASIC_GROUP, SUPERGROUP))
            await eventually(lambda: bot.rows() == [(SUPERGROUP, "07:15", "Asia/Tokyo")],
                             what="the schedule moved")
            assert bot.jobs(BASIC_GROUP) == retries(f"dailytip-late:{BASIC_GROUP}") == ()
            [late] = retries(f"dailytip-late:{SUPERGROUP}")
            late.schedule_removal()  # run here instead, as the scheduler would: once
            await late.run(bot.app)
            assert_daily_tip(api.sent_to(SUPERGROUP)[-1], SUPERGROUP)
            await bot.job(SUPERGROUP).run(bot.app)  # the daily job later that minute: none
            assert len(api.sent_to(SUPERGROUP)) == 1
            assert bot.errors == []

    run(scenario())


@pytest.mark.parametrize("arrivals", [("join", "to", "from"), ("to", "from", "join"),
                                      ("from", "join"), ("join", "to")])
def test_an_upgrade_to_a_supergroup_brings_no_second_introduction(
        api: FakeBotAPI, tmp_path: Path, arrivals: tuple[str, ...]) -> None:
    """Telegram adds the bot to the new supergroup around the upgrade's service messages,
    in any order: the members met the bot in the group, so it does not introduce itself
    again; a group it really joins still gets the introduction."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.app.bot_data["groups"].intro_after = 0.3
            for arrival in arrivals:
                if arrival == "join":
                    api.my_chat_member(SUPERGROUP, "supergroup", "left", "member",
                                       by_user_id=OWNER)
                else:
                    api.push_update((migrate_to if arrival == "to" else migrate_from)(
                        BASIC_GROUP, SUPERGROUP))
            api.my_chat_member(OTHER_GROUP, "supergroup", "left", "member", by_user_id=OWNER)
            [intro] = await bot.wait_sent(OTHER_GROUP, 1)
            assert plain(intro["text"]) == msg("group.intro")
            await bot.settle(pause=0.5)
            assert api.sent_to(SUPERGROUP) == []
            assert bot.errors == []

    run(scenario())


def test_removed_from_an_upgraded_group_and_added_back_it_introduces_itself(
        api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            bot.app.bot_data["groups"].intro_after = 0.2
            api.push_update(migrate_to(BASIC_GROUP, SUPERGROUP))
            api.my_chat_member(SUPERGROUP, "supergroup", "left", "member", by_user_id=OWNER)
            api.push_update(migrate_from(BASIC_GROUP, SUPERGROUP))
            await bot.settle(pause=0.4)
            assert api.sent_to(SUPERGROUP) == []  # the upgrade: no introduction
            api.my_chat_member(SUPERGROUP, "supergroup", "member", "left", by_user_id=OWNER)
            api.my_chat_member(SUPERGROUP, "supergroup", "left", "member", by_user_id=OWNER)
            [intro] = await bot.wait_sent(SUPERGROUP, 1)
            assert plain(intro["text"]) == msg("group.intro")
            assert bot.errors == []

    run(scenario())


def test_a_group_upgraded_before_its_introduction_gets_it_in_the_supergroup(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """The upgrade comes while the introduction waits: the group's members hear it once,
    in the supergroup."""
    request = MigratingRequest()
    request.migrations[BASIC_GROUP] = SUPERGROUP

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
            bot.app.bot_data["groups"].intro_after = 0.5
            api.my_chat_member(BASIC_GROUP, "group", "left", "member", by_user_id=OWNER)
            api.fail_next("sendMessage", chat_id=BASIC_GROUP, description=UPGRADED)
            api.push_update(migrate_to(BASIC_GROUP, SUPERGROUP))
            api.my_chat_member(SUPERGROUP, "supergroup", "left", "administrator",
                               by_user_id=OWNER)
            api.push_update(migrate_from(BASIC_GROUP, SUPERGROUP))
            [intro] = await bot.wait_sent(SUPERGROUP, 1)
            assert plain(intro["text"]) == msg("group.intro")
            await bot.settle(pause=0.8)
            assert len(api.sent_to(SUPERGROUP)) == 1 and api.sent_to(BASIC_GROUP) == []
            assert bot.errors == []

    run(scenario())


def test_commands_answered_as_the_group_is_upgraded_get_their_answer_there(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Commands sent in the old group just before the upgrade: each answer Telegram refuses
    there goes to the supergroup instead, once, unquoted; a daily tip set that way moves
    there too."""
    request = MigratingRequest()
    request.migrations[BASIC_GROUP] = SUPERGROUP

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
            # (the bot knows of the upgrade by the /dailytip, so asks in the supergroup)
            api.set_member_status(SUPERGROUP, OWNER, "creator")
            for n, command in enumerate(["/tip", "/start", "/sources",
                                         "/dailytip 07:15 Asia/Tokyo"], start=1):
                api.fail_next("sendMessage", chat_id=BASIC_GROUP, description=UPGRADED)
                api.send_text(BASIC_GROUP, command, user_id=OWNER, chat_type="group")
                await bot.wait_sent(SUPERGROUP, n)
            tip, start, sources, dailytip = api.sent_to(SUPERGROUP)
            assert_daily_tip(tip, SUPERGROUP)
            assert plain(start["text"]) == msg("group.start")
            [[button]] = start["reply_markup"]["inline_keyboard"]
            assert button["url"] == f"https://t.me/{BOT}?start=g{SUPERGROUP}".replace("-", "_")
            assert plain(sources["text"]).startswith(msg("sources.header"))
            assert plain(dailytip["text"]) == msg("dailytip.set").format(
                time="07:15", zone="Asia/Tokyo")
            assert bot.rows() == [(SUPERGROUP, "07:15", "Asia/Tokyo")]
            assert_runs_at(bot, SUPERGROUP, "07:15", ZoneInfo("Asia/Tokyo"))
            await bot.settle()
            assert len(api.sent_to(SUPERGROUP)) == 4
            # quoting the command, refused; then unquoted (the command stayed behind)
            assert [(c.ok, "reply_parameters" in c.params) for c in bot.sends(BASIC_GROUP)
                    ] == [(False, True)] * 4
            assert ["reply_parameters" in c.params for c in bot.sends(SUPERGROUP)] == [False] * 4
            assert bot.errors == []

    run(scenario())


def test_a_dailytip_whose_admin_check_ends_after_the_upgrade_is_set_in_the_supergroup(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """The group is upgraded while Telegram is still asked whether the sender is an admin:
    the setting goes to the supergroup, not to the group that is gone."""
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(BASIC_GROUP, OWNER, "creator")
            api.before_call["getchatmember"] = lambda params: time.sleep(1.0)
            api.send_text(BASIC_GROUP, "/dailytip 07:15 Asia/Tokyo", user_id=OWNER,
                          chat_type="group")
            await asyncio.sleep(0.3)
            api.push_update(migrate_to(BASIC_GROUP, SUPERGROUP))
            [reply] = await bot.wait_sent(BASIC_GROUP, 1)
            assert plain(reply["text"]) == msg("dailytip.set").format(
                time="07:15", zone="Asia/Tokyo")
            assert bot.rows() == [(SUPERGROUP, "07:15", "Asia/Tokyo")]
            assert_runs_at(bot, SUPERGROUP, "07:15", ZoneInfo("Asia/Tokyo"))
            assert bot.jobs(BASIC_GROUP) == ()
            assert bot.errors == []

    run(scenario())


def test_a_dailytip_whose_admin_check_is_answered_upgraded_asks_the_supergroup(
        tmp_path: Path) -> None:
    """Telegram answers the admin check on the old group's id with "upgraded": the bot
    asks again in the supergroup and sets the tip there."""
    request = MigratingRequest()
    request.migrations[BASIC_GROUP] = SUPERGROUP

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", request=request) as bot:
                api.set_member_status(SUPERGROUP, OWNER, "creator")
                api.fail_next("getChatMember", chat_id=BASIC_GROUP, description=UPGRADED)
                api.fail_next("sendMessage", chat_id=BASIC_GROUP, description=UPGRADED)
                api.send_text(BASIC_GROUP, "/dailytip 07:15 Asia/Tokyo", user_id=OWNER,
                              chat_type="group")
                [reply] = await bot.wait_sent(SUPERGROUP, 1)
                assert plain(reply["text"]) == msg("dailytip.set").format(
                    time="07:15", zone="Asia/Tokyo")
                assert bot.rows() == [(SUPERGROUP, "07:15", "Asia/Tokyo")]
                assert bot.errors == []

    run(scenario())


def test_a_schedule_already_set_in_the_supergroup_wins(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(BASIC_GROUP, OWNER, "creator")
            api.set_member_status(SUPERGROUP, OWNER, "creator")
            await bot.say(BASIC_GROUP, "/dailytip 07:15 Asia/Tokyo", user_id=OWNER,
                          chat_type="group")
            await bot.say(SUPERGROUP, "/dailytip 09:45 Europe/London", user_id=OWNER)
            job_id = bot.job(SUPERGROUP).id
            api.push_update(migrate_to(BASIC_GROUP, SUPERGROUP))
            await eventually(lambda: bot.jobs(BASIC_GROUP) == (), what="the old job gone")
            assert bot.rows() == [(SUPERGROUP, "09:45", "Europe/London")]
            assert bot.job(SUPERGROUP).id == job_id
            assert bot.errors == []

    run(scenario())


# -- a chat where the bot may no longer post --

@pytest.mark.parametrize("command", ["/tip", f"/tip@{BOT}", "/start", "/sources"])
def test_forbidden_reply_in_a_group_drops_its_daily_tip(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        command: str) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            for chat in (GROUP, OTHER_GROUP):
                api.set_member_status(chat, ADMIN, "administrator")
                await bot.say(chat, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            api.fail_next("sendMessage", chat_id=GROUP, error_code=403,
                          description="Forbidden: bot was kicked from the supergroup chat")
            with caplog.at_level(logging.INFO, logger="bot.telegram_groups"):
                api.send_text(GROUP, command, user_id=MEMBER, chat_type="supergroup")
                await eventually(lambda: bot.jobs(GROUP) == () and all(
                    row[0] != GROUP for row in bot.rows()), what="the schedule dropped")
                await bot.settle()
            [refused] = [c for c in bot.sends(GROUP) if not c.ok]
            assert refused.error_code == 403
            assert any(r.levelno == logging.WARNING and "Forbidden" in r.getMessage()
                       for r in caplog.records)
            assert bot.errors == []  # handled: nothing reached the error handler
            # the other group is untouched and the bot still answers there
            assert bot.rows() == [(OTHER_GROUP, "08:30", "Europe/London")]
            assert len(bot.jobs(OTHER_GROUP)) == 1
            reply = await bot.say(OTHER_GROUP, "/tip", user_id=MEMBER)
            assert_daily_tip(reply, OTHER_GROUP)

    run(scenario())


def test_a_muted_bot_keeps_the_daily_tip_and_answers_again_once_unmuted(
        api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            rows = bot.rows()
            api.fail_next("sendMessage", chat_id=GROUP, description=(
                "Bad Request: not enough rights to send text messages to the chat"))
            api.send_text(GROUP, "/tip", user_id=MEMBER, chat_type="supergroup")
            await eventually(lambda: [c for c in bot.sends(GROUP) if not c.ok],
                             what="the refused reply")
            await bot.settle()
            assert bot.errors == []
            assert bot.rows() == rows
            assert_runs_at(bot, GROUP, "08:30", ZoneInfo("Europe/London"))
            reply = await bot.say(GROUP, "/tip", user_id=MEMBER)
            assert_daily_tip(reply, GROUP)

    run(scenario())


def test_other_errors_on_a_group_reply_keep_the_daily_tip(api: FakeBotAPI,
                                                         tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            rows = bot.rows()
            api.fail_next("sendMessage", chat_id=GROUP,
                          description="Bad Request: message is too long")
            api.send_text(GROUP, "/tip", user_id=MEMBER, chat_type="supergroup")
            await eventually(lambda: bot.errors, what="the error handler to see it")
            assert [type(e) for e in bot.errors] == [BadRequest]
            assert bot.rows() == rows
            assert_runs_at(bot, GROUP, "08:30", ZoneInfo("Europe/London"))

    run(scenario())


# -- a channel's posts copied into its linked discussion group --

def automatic_forward(text: str, message_id: int) -> dict[str, Any]:
    channel = {"id": CHANNEL, "type": "channel", "title": "Rehab channel"}
    return {"message": {
        "message_id": message_id, "date": int(time.time()),
        "chat": {"id": GROUP, "type": "supergroup", "title": "Rehab channel chat"},
        "from": {"id": TELEGRAM, "is_bot": False, "first_name": "Telegram"},
        "sender_chat": channel, "is_automatic_forward": True,
        "forward_origin": {"type": "channel", "chat": channel, "message_id": message_id,
                           "date": int(time.time())},
        "text": text,
        "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]}}


def test_channel_posts_forwarded_into_the_discussion_group_are_ignored(
        api: FakeBotAPI, tmp_path: Path) -> None:
    forwarded = ["/dailytip 09:00", f"/dailytip@{BOT} 10:00 UTC", "/dailytip off",
                 "/dailytip 25:99", "/tip", "/start", "/check", "/sources"]

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            rows, job_id, checks = bot.rows(), bot.job(GROUP).id, api.calls_to("getChatMember")
            for n, text in enumerate(forwarded):
                api.push_update(automatic_forward(text, 500 + n))
            await bot.settle(pause=0.3)
            assert len(bot.sends(GROUP)) == 1  # only the admin's own /dailytip was answered
            assert api.calls_to("getChatMember") == checks  # nobody's rights were asked
            assert bot.rows() == rows and bot.job(GROUP).id == job_id
            # the same commands typed by a member in that group are answered as usual
            reply = await bot.say(GROUP, "/tip", user_id=MEMBER)
            assert_daily_tip(reply, GROUP)
            assert bot.errors == []

    run(scenario())


def passed_on(chat: dict[str, Any], user_id: int, text: str, how: dict[str, Any],
              message_id: int) -> dict[str, Any]:
    """A command someone forwarded, or picked from another bot's inline results."""
    return {"message": {
        "message_id": message_id, "date": int(time.time()), "chat": chat,
        "from": {"id": user_id, "is_bot": False, "first_name": "Ad"}, "text": text,
        "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        **how}}


def test_commands_an_admin_passes_on_are_not_obeyed(api: FakeBotAPI, tmp_path: Path) -> None:
    """An admin forwarding someone's "/dailytip off" turns nothing off, in a group or in
    a channel; nor does a command picked from another bot's inline results."""
    hows = [{"forward_origin": {"type": "hidden_user", "date": 1,
                                "sender_user_name": "Someone"}},
            {"via_bot": {"id": 99, "is_bot": True, "first_name": "gif", "username": "gif"}}]
    group = {"id": GROUP, "type": "supergroup", "title": "Rehab group"}
    channel = {"id": CHANNEL, "type": "channel", "title": "Rehab channel"}

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            rows, job_id, checks = bot.rows(), bot.job(GROUP).id, api.calls_to("getChatMember")
            n = 600
            for how in hows:
                for text in ("/dailytip off", "/dailytip 10:00", "/tip", "/start"):
                    n += 1
                    api.push_update(passed_on(group, ADMIN, text, how, n))
                n += 1
                post = passed_on(channel, ADMIN, "/dailytip 10:00", how, n)["message"]
                del post["from"]
                api.push_update({"channel_post": {**post, "sender_chat": channel}})
            await bot.settle(pause=0.3)
            assert len(bot.sends(GROUP)) == 1 and bot.sends(CHANNEL) == []
            assert api.calls_to("getChatMember") == checks  # nobody's rights were asked
            assert bot.rows() == rows and bot.job(GROUP).id == job_id
            assert bot.errors == []

    run(scenario())


# -- the bot's own membership in a private chat --

def my_chat_member(chat: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    bot_user = {"id": 123456, "is_bot": True, "first_name": "backbot", "username": BOT}
    return {"update_id": 1, "my_chat_member": {
        "chat": chat, "from": {"id": MEMBER, "is_bot": False, "first_name": "Ana"},
        "date": int(time.time()),
        "old_chat_member": {"user": bot_user, "status": old},
        "new_chat_member": {"user": bot_user, "status": new, "until_date": 0}}}


def test_private_membership_changes_are_left_to_other_handlers(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A user blocking the bot is BackBot's to handle: the groups' handler must not match it
    (it would take it for the bot leaving a group), nor log a daily tip."""
    user = 880_777

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            [handler] = [h for group in bot.app.handlers.values() for h in group
                         if getattr(h, "callback", None) == bot.groups.on_my_chat_member]
            private = {"id": user, "type": "private", "first_name": "Ana"}
            for chat, kicked in ((private, "kicked"),
                                 ({"id": GROUP, "type": "supergroup", "title": "G"}, "left"),
                                 ({"id": CHANNEL, "type": "channel", "title": "C"}, "left")):
                update = Update.de_json(my_chat_member(chat, "member", kicked), bot.app.bot)
                assert handler.check_update(update) is (chat["type"] != "private"), chat

            api.set_member_status(GROUP, ADMIN, "administrator")
            await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
            with caplog.at_level(logging.INFO, logger="bot.telegram_groups"):
                api.my_chat_member(user, "private", "member", "kicked", by_user_id=user)
                await bot.settle()
                private_logs = [r.getMessage() for r in caplog.records]
                api.my_chat_member(GROUP, "supergroup", "member", "left", by_user_id=ADMIN)
                await eventually(lambda: bot.rows() == [] and bot.jobs(GROUP) == (),
                                 what="the group's schedule removed")
            assert not any("daily tip" in line for line in private_logs), private_logs
            assert any("daily tip" in r.getMessage() for r in caplog.records)
            assert plain(api.sent_to(GROUP)[0]["text"]) == msg("dailytip.set").format(
                time="08:30", zone="Europe/London")
            assert bot.errors == []

    run(scenario())
