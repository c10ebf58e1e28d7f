"""Many daily tips at once through the production rate limiter (build_application's default).

Telegram's limits: about 30 messages a second overall, and 20 a minute into one group.
The 50 schedules are written to the database before start-up, so this also checks that
post_init restores every one of them. Also: the admin check is not counted as a post.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.schedules import ScheduleStore
from bot.store import open_database
from bot.telegram_limits import ChatRateLimiter, telegram_limits

try:  # works whether or not tests/ is a package
    from group_harness import Call, eventually, fake_api, plain, run, running_bot
    from group_harness import engine as shipped_engine
except ImportError:  # pragma: no cover - depends on how pytest sets up sys.path
    from tests.group_harness import Call, eventually, fake_api, plain, run, running_bot
    from tests.group_harness import engine as shipped_engine

CHATS = [-100_600_000_000 - n for n in range(50)]
BUSY = CHATS[:10]  # these get several tips each, so each one's group limit really bites
TIPS_PER_BUSY_CHAT = 3
RETRIED = CHATS[-1]  # Telegram answers its first attempt with "retry after 1"
PER_SECOND = 30
PER_SECOND_TOLERANCE = 2
PER_GROUP_PER_MINUTE = 20
GROUP_SPACING = 60 / PER_GROUP_PER_MINUTE  # the production limiter's 3 s between posts
TIPS = shipped_engine().content.cards_tagged("tip")


def most_in_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + seconds) for t in times), default=0)


# Half a day away, so no tip falls due (or was just missed) while the test runs.
FAR_FROM_NOW = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).strftime("%H:%M")


def schedule(db_path: Path, chats: list[int]) -> None:
    db = open_database(db_path)
    try:
        for chat in chats:
            ScheduleStore(db).put(chat, FAR_FROM_NOW, "UTC")
    finally:
        db.close()


def expected_count(chat: int) -> int:
    return TIPS_PER_BUSY_CHAT if chat in BUSY else 1


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """All 50 daily-tip jobs at once through the production limiter; the busy chats post
    their tips one after another (as days would bring them) while the rest go out, and
    one chat's first attempt is answered with a 429. What the fake recorded."""
    db_path = tmp_path_factory.mktemp("burst") / "db.sqlite3"
    schedule(db_path, CHATS)

    async def scenario() -> dict[str, Any]:
        with fake_api() as api:
            api.fail_next("sendMessage", chat_id=RETRIED, retry_after=1)
            async with running_bot(api, db_path, default_limits=True) as bot:
                jobs = {chat: bot.job(chat) for chat in CHATS}  # restored from the database

                async def post(chat: int) -> None:
                    for _ in range(expected_count(chat)):
                        bot.db.execute("UPDATE daily_tips SET last_day = '' "  # a day passed
                                       "WHERE chat_id = ?", (chat,))
                        await jobs[chat].run(bot.app)

                await asyncio.wait_for(asyncio.gather(*(post(chat) for chat in CHATS)), 20)
                return {"calls": api.calls_to("sendMessage"),
                        "messages": {chat: api.sent_to(chat) for chat in CHATS},
                        "errors": list(bot.errors), "api_errors": list(api.errors),
                        "rows": bot.rows()}

    yield run(scenario(), timeout=30)


def test_burst_delivers_every_daily_tip(burst: dict[str, Any]) -> None:
    calls: list[Call] = burst["calls"]
    assert burst["errors"] == [] and burst["api_errors"] == []
    delivered = [call.params["chat_id"] for call in calls if call.ok]
    assert sorted(delivered) == sorted(chat for chat in CHATS
                                       for _ in range(expected_count(chat)))
    titles = [f"<b>{html.escape(card.title, quote=False)}</b>" for card in TIPS]
    for chat in CHATS:
        messages = burst["messages"][chat]
        assert len(messages) == expected_count(chat)
        for message in messages:
            assert '<a href="http' in message["text"]
            assert sum(title in message["text"] for title in titles) == 1
        # one after another, a chat's tips follow its rotation: no repeat
        shown = [next(t for t in titles if t in m["text"]) for m in messages]
        assert len(set(shown)) == len(shown)
    assert [row[0] for row in burst["rows"]] == sorted(CHATS)  # nothing dropped


def test_burst_retries_a_retry_after_answer(burst: dict[str, Any]) -> None:
    calls: list[Call] = burst["calls"]
    [refused] = [call for call in calls if not call.ok]
    assert (refused.params["chat_id"], refused.error_code) == (RETRIED, 429)
    [retried] = [call for call in calls if call.params["chat_id"] == RETRIED and call.ok]
    assert retried.time - refused.time >= 1.0  # it waited as long as Telegram asked
    assert len(burst["messages"][RETRIED]) == 1


def test_burst_spaces_the_posts_into_each_group(burst: dict[str, Any]) -> None:
    """Telegram allows 20 messages a minute per group; the limiter spaces them 3 s apart.
    A post takes its group's slot before it queues for the overall limit, where all 50
    chats' first tips wait their turn (up to 50/30 s), so one may arrive that much late
    and the next on time; without the group limit the gaps would be hundredths of a
    second."""
    queued = len(CHATS) / PER_SECOND
    for chat in BUSY:
        times = sorted(call.time for call in burst["calls"] if call.params["chat_id"] == chat)
        assert len(times) == TIPS_PER_BUSY_CHAT
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= GROUP_SPACING - queued - 0.5, (chat, gaps)
    for chat in CHATS:
        times = [call.time for call in burst["calls"] if call.params["chat_id"] == chat]
        assert most_in_window(times, 60) <= PER_GROUP_PER_MINUTE


def test_burst_stays_under_telegrams_overall_limit(burst: dict[str, Any]) -> None:
    times = [call.time for call in burst["calls"]]
    assert len(times) == sum(expected_count(chat) for chat in CHATS) + 1  # + the 429
    assert most_in_window(times, 1.0) <= PER_SECOND + PER_SECOND_TOLERANCE


# -- the admin check is not a post --

GROUP = -100_600_100_001
ADMIN = 990_601


def test_admin_check_does_not_spend_the_groups_message_budget(tmp_path: Path) -> None:
    """One post an hour into a group: if the getChatMember before the answer took that
    slot, the answer to an admin's /dailytip would wait an hour."""
    hourly = ChatRateLimiter(overall_max_rate=0, group_max_rate=1, group_time_period=3600,
                              max_retries=0)

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3", rate_limiter=hourly) as bot:
                api.set_member_status(GROUP, ADMIN, "administrator")
                reply = await bot.say(GROUP, "/dailytip 08:30 Europe/London", user_id=ADMIN)
                assert plain(reply["text"]) == shipped_engine().content.message(
                    "dailytip.set").format(time="08:30", zone="Europe/London")
                [check] = api.calls_to("getChatMember")
                assert (check.params["chat_id"], check.params["user_id"]) == (GROUP, ADMIN)
                assert bot.rows() == [(GROUP, "08:30", "Europe/London")]
                assert bot.errors == []

    run(scenario())


def test_production_limits_exempt_reads_from_the_group_budget() -> None:
    assert isinstance(telegram_limits(), ChatRateLimiter), (
        "bot/telegram_app.py telegram_limits() should build a ChatRateLimiter")


@pytest.mark.parametrize("command", ["/tip", "/dailytip 08:30"])
def test_a_flood_of_commands_in_one_group_holds_up_no_one_else(tmp_path: Path,
                                                               command: str) -> None:
    """A group's replies wait for its 20-a-minute limit inside their handlers: past three
    waiting in one chat its further commands are let go (one member typing /tip, or a
    refused /dailytip, fast cannot take every handler slot), and a private /start is
    answered meanwhile."""
    flood = CHATS[0]

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3") as bot:
                api.set_member_status(flood, 5, "member")
                api.method_delays["sendmessage"] = 0.5  # every reply is under way a while
                for _ in range(8):
                    api.send_text(flood, command, user_id=5, chat_type="supergroup")
                welcome = await bot.say(4242, "/start", user_id=4242, chat_type="private")
                assert welcome["chat"]["id"] == 4242  # the private check-in went on
                await bot.settle(pause=1.5)
                assert len(api.sent_to(flood)) == 3  # three replies; five let go
                api.method_delays.clear()
                await bot.say(flood, command, user_id=5)  # the chat is answered again
                assert len(api.sent_to(flood)) == 4
                assert bot.rows() == []  # a member's /dailytip stores nothing
                assert bot.errors == []

    run(scenario())


def test_a_burst_of_one_members_dailytip_asks_telegram_once(tmp_path: Path) -> None:
    """The admin check skips the rate limiter, so a burst of one member's /dailytip shares
    one getChatMember (each their own: two members, two questions); the next command
    after the burst asks afresh, so a member just made admin is one."""
    chat = CHATS[2]

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3") as bot:
                api.method_delays["getchatmember"] = 0.5  # the burst arrives meanwhile
                for user in (5, 5, 5, 5, 5, 6, 6):
                    api.send_text(chat, "/dailytip 08:30", user_id=user,
                                  chat_type="supergroup")
                await bot.settle(pause=1.5)
                asked = sorted(c.params["user_id"] for c in api.calls_to("getChatMember"))
                assert asked == [5, 6]
                assert bot.rows() == []
                api.method_delays.clear()
                api.set_member_status(chat, 5, "administrator")
                reply = await bot.say(chat, "/dailytip 08:30 Europe/London", user_id=5)
                assert plain(reply["text"]) == shipped_engine().content.message(
                    "dailytip.set").format(time="08:30", zone="Europe/London")
                assert len(api.calls_to("getChatMember")) == 3
                assert bot.rows() == [(chat, "08:30", "Europe/London")]
                assert bot.errors == []

    run(scenario())


def test_an_admins_dailytip_applies_even_when_its_answer_is_let_go(tmp_path: Path) -> None:
    """Past three answers waiting in the group, an admin's /dailytip is still applied:
    only the confirmation is let go, never the setting."""
    flood = CHATS[1]

    async def scenario() -> None:
        with fake_api() as api:
            async with running_bot(api, tmp_path / "db.sqlite3") as bot:
                api.set_member_status(flood, ADMIN, "administrator")
                api.method_delays["sendmessage"] = 2.0  # under way past the admin's turn
                for _ in range(7):  # three tips take the slots, before the admin's turn
                    api.send_text(flood, "/tip", user_id=5, chat_type="supergroup")
                api.send_text(flood, "/dailytip 09:15 Europe/London", user_id=ADMIN,
                              chat_type="supergroup")
                await eventually(lambda: bot.rows() == [(flood, "09:15", "Europe/London")],
                                 what="the admin's daily tip stored")
                assert api.calls_to("sendMessage") == []  # the tips still under way
                await bot.settle(pause=2.5)
                confirmation = shipped_engine().content.message("dailytip.set").format(
                    time="09:15", zone="Europe/London")
                sent = [plain(m["text"]) for m in api.sent_to(flood)]
                assert len(sent) == 3 and confirmation not in sent  # the tips only
                assert bot.errors == []

    run(scenario())
