"""Session lifecycle over Telegram: blocking the bot, updates delivered twice after a crash,
buttons of an earlier check-in, and cosmetic calls that fail."""

from __future__ import annotations

import asyncio
import copy
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_bot_api import FakeBotAPI
from telegram_harness import BotHarness, bot_session, failures, run_bounded, until

from bot import telegram_bot

CHAT = 3003
LOGGER = "bot.telegram_bot"


async def deliver_again(h: BotHarness, update: dict) -> None:
    """Telegram hands out an update a second time (its offset was never confirmed)."""
    h._done.pop(update["update_id"], None)
    h.api.push_update(copy.deepcopy(update))
    await h.processed(update["update_id"])


@pytest.mark.parametrize("status", ["kicked", "left"])
def test_blocking_the_bot_erases_the_session(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             status: str) -> None:
    """Telegram reports a block as my_chat_member "kicked" (and a private chat's end as
    "left"); the person never writes again, so that update alone must erase what is
    stored."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, "agree", "no")
            await h.send(CHAT + 1, "/start")
            await h.script(CHAT + 1, "agree")
            assert h.rows(CHAT) == 1
            update_id = h.api.my_chat_member(CHAT, "private", "member", status, CHAT)
            await h.processed(update_id)
            assert h.rows(CHAT) == 0
            assert h.rows(CHAT + 1) == 1  # nobody else's session is touched
            assert h.calls(CHAT, "sendMessage")[-1].params["text"] == h.message_text(
                "question.saddle")  # and nothing is sent to someone who blocked the bot

    run_bounded(scenario())
    assert "a user blocked the bot; their session was dropped" in caplog.messages
    assert failures(caplog) == []



async def blocked_while_the_database_is_held(h: BotHarness, chats: tuple[int, ...]
                                             ) -> Callable[[int], int]:
    """Each of `chats` answers a question, then blocks the bot while every erase fails
    as a database another process holds would make it; the store's own erase is
    returned, to put back."""
    for chat in chats:
        await h.send(chat, "/start")
        await h.script(chat, "agree", "no")
    delete = h.store.delete

    def locked(user_id: int) -> int:
        raise sqlite3.OperationalError("database is locked")

    h.store.delete = locked  # type: ignore[method-assign]
    for chat in chats:
        await h.processed(h.api.my_chat_member(chat, "private", "member", "kicked", chat))
    return delete


def test_a_block_the_database_would_not_erase_at_once_is_erased_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds the database as the block comes in: the row goes once the
    database lets it, and nothing from before the block is resumed (or read for a tip)
    meanwhile."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            chats = (CHAT, CHAT + 1, CHAT + 2)
            delete = await blocked_while_the_database_is_held(h, chats)
            assert [h.rows(chat) for chat in chats] == [1, 1, 1]
            assert h.app.job_queue is not None
            [job] = h.app.job_queue.get_jobs_by_name("erase-blocked")
            job.schedule_removal()  # run here instead, as the scheduler would: once
            await job.run(h.app)  # still locked: kept for the next try
            assert h.rows(CHAT) == 1
            h.store.delete = delete  # type: ignore[method-assign]
            # one of them unblocks and writes first: a fresh start, nothing resumed
            await h.send(CHAT + 1, "/start")
            assert h.rows(CHAT + 1) == 0
            assert h.sent_texts(CHAT + 1)[-1] == h.message_text("welcome.question")
            await h.send(CHAT + 2, "/tip")  # another asks for a tip first: erased first too
            assert h.rows(CHAT + 2) == 0
            [job] = h.app.job_queue.get_jobs_by_name("erase-blocked")
            job.schedule_removal()
            await job.run(h.app)
            assert h.rows(CHAT) == 0
            assert h.app.job_queue.get_jobs_by_name("erase-blocked") == ()

    run_bounded(scenario())
    assert failures(caplog) == []


def test_a_block_still_waiting_to_be_erased_is_erased_on_the_way_out(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The database lets go after the block but before the next try: stopping the bot
    (what runs after its updates stop) erases the row rather than leave it to the purge."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            delete = await blocked_while_the_database_is_held(h, (CHAT, CHAT + 1))
            assert h.app.post_stop is not None
            await h.app.post_stop(h.app)  # still locked: said, and left to the purge
            assert h.rows(CHAT) == h.rows(CHAT + 1) == 1
            assert ("stopping: 2 blocked people's sessions not erased (the retention purge "
                    "will)") in caplog.messages
            h.store.delete = delete  # type: ignore[method-assign]
            await h.app.post_stop(h.app)
            assert h.rows(CHAT) == h.rows(CHAT + 1) == 0

    run_bounded(scenario())
    assert failures(caplog) == []


def test_a_command_delivered_twice_applies_once(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, "agree", "no", "no")  # at the legs question
            assert h.state(CHAT) == "asking_legs"
            message = {**h.api._user_message(CHAT, None), "text": "/back",
                       "entities": [{"type": "bot_command", "offset": 0, "length": 5}]}
            update = {"update_id": 900_001, "message": message}
            h.api.push_update(copy.deepcopy(update))
            await h.processed(update["update_id"])
            assert h.state(CHAT) == "asking_saddle"
            sent = len(h.sent_texts(CHAT))
            await deliver_again(h, update)
            assert h.state(CHAT) == "asking_saddle"  # not back twice
            assert len(h.snapshot(CHAT)["answers"]) == 2
            # the person still sees where they are
            assert h.sent_texts(CHAT)[sent:] == [h.message_text("question.saddle")]

    run_bounded(scenario())
    assert failures(caplog) == []


def test_buttons_of_an_earlier_check_in_are_stale(tmp_path: Path) -> None:
    """After /restart and a new consent, an old message's buttons at the same point of the
    dialog must not answer the new check-in."""

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, "agree", "no")
            old = h.current(CHAT)  # the saddle question of the first check-in
            await asyncio.sleep(1.1)  # message dates are whole seconds
            await h.send(CHAT, "/restart")
            await h.script(CHAT, "agree", "no")
            new = h.current(CHAT)
            assert new["message_id"] != old["message_id"]
            assert h.data_for(new, "yes") == h.data_for(old, "yes")  # told apart by date
            before = h.snapshot(CHAT)
            await h.tap(CHAT, old["message_id"], h.data_for(old, "yes"))
            assert h.snapshot(CHAT) == before  # no emergency answer slipped in
            assert h.query_answers()[-1].get("text") == "We've already moved past that question."
            await h.choose(CHAT, "no")  # the current buttons still work
            assert h.state(CHAT) == "asking_legs"

    run_bounded(scenario())


@pytest.mark.parametrize("ahead", [0, 600, -600])
def test_agreeing_on_an_old_welcome_leaves_the_earlier_check_in_stale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: int) -> None:
    """A welcome shown twice keeps working; a check-in begun on the older one still
    counts from when it began, not from that old message, so the check-in before it
    cannot answer the new one. So too with the bot's clock ten minutes fast or slow
    against Telegram's, which dates every message: fast, each new question would look
    older than the check-in; slow, the earlier check-in's buttons would look newer."""
    real = time.time
    monkeypatch.setattr(telegram_bot, "time", SimpleNamespace(
        time=lambda: real() + ahead, monotonic=time.monotonic))

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            h.app.bot_data["backbot"].clock_allowance = 0  # as precise as whole seconds
            await h.send(CHAT, "/start")
            first_welcome = h.current(CHAT)
            await h.send(CHAT, "/start")  # the welcome again
            await h.script(CHAT, "agree", "no")  # on the second welcome
            old = h.current(CHAT)  # the saddle question of that check-in
            await asyncio.sleep(1.1)  # message dates are whole seconds
            await h.send(CHAT, "/restart")
            await h.tap(CHAT, first_welcome["message_id"], h.data_for(first_welcome, "agree"))
            await h.choose(CHAT, "no")
            assert h.state(CHAT) == "asking_saddle"  # as the old question's: same ref
            assert "We've already moved past that question." not in [
                a.get("text") for a in h.query_answers()]
            before = h.snapshot(CHAT)
            await h.tap(CHAT, old["message_id"], h.data_for(old, "yes"))
            assert h.snapshot(CHAT) == before  # no emergency answer slipped in
            assert h.query_answers()[-1].get("text") == "We've already moved past that question."

    run_bounded(scenario())


@pytest.mark.parametrize("ahead", [600, -600])
def test_a_first_tap_after_a_restart_with_the_clock_off_begins_a_usable_check_in(
        tmp_path: Path, api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch, ahead: int) -> None:
    """A new process has not yet seen how Telegram dates its messages: agreeing on a
    welcome sent before the restart must not date the check-in by the bot's own clock,
    ten minutes fast (every new question would look older than it) or slow."""
    real = time.time
    monkeypatch.setattr(telegram_bot, "time", SimpleNamespace(
        time=lambda: real() + ahead, monotonic=time.monotonic))

    async def before() -> dict:
        async with bot_session(tmp_path, api=api) as h:
            await h.send(CHAT, "/start")
            return h.current(CHAT)

    async def after(welcome: dict) -> None:
        async with bot_session(tmp_path, api=api) as h:
            h.app.bot_data["backbot"].clock_allowance = 0  # as precise as whole seconds
            await h.tap(CHAT, welcome["message_id"], h.data_for(welcome, "agree"))
            assert h.state(CHAT) == "asking_bladder"
            await h.choose(CHAT, "no")
            await h.choose(CHAT, "no")
            assert h.state(CHAT) == "asking_legs"
            assert "We've already moved past that question." not in [
                a.get("text") for a in h.query_answers()]

    welcome = run_bounded(before())
    run_bounded(after(welcome))


def test_a_wall_clock_stepped_after_the_last_reply_does_not_stall_the_check_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's wall clock jumps ten minutes forward (NTP, a resumed machine) between its
    welcome and the tap that agrees: the check-in must not be dated ten minutes ahead, so
    that every question after it looked older than it and was answered as moved on."""
    real = time.time
    step = {"ahead": 0.0}
    monkeypatch.setattr(telegram_bot, "time", SimpleNamespace(
        time=lambda: real() + step["ahead"], monotonic=time.monotonic))

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            step["ahead"] = 600.0
            await h.choose(CHAT, "agree")
            await h.choose(CHAT, "no")
            await h.choose(CHAT, "no")
            assert h.state(CHAT) == "asking_legs"
            assert "We've already moved past that question." not in [
                a.get("text") for a in h.query_answers()]

    run_bounded(scenario())


def test_a_failed_fetch_of_updates_is_logged_as_such_and_polling_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Telegram's server failing a getUpdates is no failed update: one warning that says
    what failed, no error line, and the next update is handled."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            h.api.fail_next("getUpdates", error_code=502, description="Bad Gateway")
            assert await until(lambda: any(not c.ok for c in h.api.calls_to("getUpdates")))
            await h.send(CHAT, "/start")
            assert h.sent_texts(CHAT)[-1] == h.message_text("welcome.question")

    run_bounded(scenario())
    assert failures(caplog) == []
    assert "fetching updates failed: NetworkError; trying again" in caplog.messages
    assert not [m for m in caplog.messages if "update None" in m]


def test_a_failed_typing_action_still_sends_the_replies(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            h.api.fail_next("sendChatAction", error_code=400,
                            description="Bad Request: injected failure")
            replies = await h.step(CHAT, "agree")
            assert h.calls(CHAT, "sendChatAction")[-1].error_code == 400
            assert replies[-1] == h.message_text("question.bladder")
            assert h.state(CHAT) == "asking_bladder"

    run_bounded(scenario())
    assert failures(caplog) == []
