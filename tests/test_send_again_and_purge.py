"""Replies tried again (one finding the bot blocked, one joining newer replies, the
replies to /forget and /tip), and the retention purge's own setting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from telegram_harness import BotHarness, bot_session, failures, run_bounded, until

from bot import telegram_bot
from bot.telegram_render import Reply

CHAT = 4004
DAY = 86400


async def agreed_with_quick_tries(h: BotHarness) -> telegram_bot.BackBot:
    """A check-in begun (consent given), with failed replies tried again after 0.2 s."""
    backbot: telegram_bot.BackBot = h.app.bot_data["backbot"]
    backbot.send_again_after = 0.2
    await h.send(CHAT, "/start")
    await h.choose(CHAT, "agree")
    return backbot


def test_a_block_found_by_the_second_try_erases_the_session(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reply failed (502) and waits for its second try; the person blocks the bot
    meanwhile. The second try's 403 erases the session, leaves no try to come, and logs
    nothing beyond the first failure (a warning, as its reply was to go again)."""
    caplog.set_level(logging.INFO, logger="bot.telegram_bot")

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            backbot = await agreed_with_quick_tries(h)
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            message = h.current(CHAT)
            update_id = await h.tap(CHAT, message["message_id"], h.data_for(message, "no"))
            assert h.state(CHAT) == "asking_saddle"
            assert list(backbot._sends_again) == [CHAT]  # the second try is waiting
            h.api.block_user(CHAT)

            assert await until(lambda: h.rows(CHAT) == 0)
            assert any(c.error_code == 403 for c in h.calls(CHAT, "sendMessage"))
            assert backbot._sends_again == {}
            assert h.app.job_queue is not None
            assert h.app.job_queue.get_jobs_by_name("send-again") == ()
            assert failures(caplog) == []
            assert (f"update {update_id} failed: NetworkError; {telegram_bot.SENDING_AGAIN}"
                    in caplog.messages)

    run_bounded(scenario())
    assert "a user blocked the bot; their session was dropped" in caplog.messages
    assert not any(r.levelno >= logging.WARNING for r in caplog.records
                   if r.name == "bot.telegram_bot" and "failed:" not in r.getMessage())


def test_the_retention_purge_keeps_sessions_for_backbot_retention_days(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With BACKBOT_RETENTION_DAYS=7, the purge job erases a session idle for 8 days and
    keeps one idle for 6 (the default 30 would keep both)."""
    caplog.set_level(logging.INFO, logger="bot.telegram_app")

    async def scenario() -> None:
        async with bot_session(tmp_path, environ={"BACKBOT_RETENTION_DAYS": "7"}) as h:
            assert h.settings.retention_days == 7
            for chat in (CHAT, CHAT + 1):
                await h.send(chat, "/start")
                await h.choose(chat, "agree")
            now = int(time.time())
            with contextlib.closing(sqlite3.connect(h.db_path)) as db, db:
                for chat, days in ((CHAT, 8), (CHAT + 1, 6)):
                    db.execute("UPDATE sessions SET updated_at = ? WHERE user_id = ?",
                               (now - days * DAY, chat))
            assert h.app.job_queue is not None
            [purge] = h.app.job_queue.get_jobs_by_name("purge-sessions")
            await purge.run(h.app)
            assert h.rows(CHAT) == 0
            assert h.rows(CHAT + 1) == 1

    run_bounded(scenario())
    assert "purged 1 sessions idle for over 7 days" in caplog.messages


def test_newer_replies_joining_a_retry_lose_no_tries(tmp_path: Path) -> None:
    """Newer replies that fail while a retry waits (at the same point of the check-in)
    join it, behind it, and take the larger number of tries left and the shorter pause:
    they lose no tries to the retry's."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            backbot = h.app.bot_data["backbot"]
            backbot.send_again_after = 60.0  # nothing falls due during the test
            snapshot = {"state": "asking_saddle"}
            backbot.send_again_later(CHAT, CHAT, [Reply("older")], snapshot,
                                     tries_left=telegram_bot.SEND_AGAIN_TRIES - 1)
            backbot.send_again_later(CHAT, CHAT, [Reply("newer")], snapshot)
            job = backbot._sends_again[CHAT]
            waiting = job.data
            assert [r.text for r in waiting.replies] == ["older", "newer"]
            assert waiting.tries_left == telegram_bot.SEND_AGAIN_TRIES
            due_in = job.next_t.timestamp() - time.time()
            assert 50 < due_in <= 60, due_in  # the first pause, not the second (240 s)
            assert h.app.job_queue is not None
            assert len(h.app.job_queue.get_jobs_by_name("send-again")) == 1

    run_bounded(scenario())


@pytest.mark.parametrize("command", ["/forget", "/tip"])
def test_a_command_reply_telegram_did_not_take_goes_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, command: str) -> None:
    """The /forget question (or a tip) fails with a server error: it is sent again a
    little later, as a tap's replies are, rather than lost to silence."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            backbot = await agreed_with_quick_tries(h)
            h.api.fail_next("sendMessage", error_code=500, description="Internal Server Error")
            before = len(h.api.sent_to(CHAT))
            update_id = await h.send(CHAT, command)
            failed = h.calls(CHAT, "sendMessage")[-1]
            assert failed.error_code == 500
            assert await until(lambda: len(h.api.sent_to(CHAT)) == before + 1)
            assert h.api.sent_to(CHAT)[-1]["text"] == failed.params["text"]
            assert backbot._sends_again == {}
            assert failures(caplog) == []
            assert (f"update {update_id} failed: NetworkError; {telegram_bot.SENDING_AGAIN}"
                    in caplog.messages)
            if command == "/forget":  # and the question sent again works
                confirm = h.current(CHAT)
                await h.tap(CHAT, confirm["message_id"], "f|yes")
                assert h.rows(CHAT) == 0

    run_bounded(scenario())


def test_the_erase_notice_telegram_did_not_take_goes_again(tmp_path: Path) -> None:
    """The /forget question can no longer be edited (too old), and the notice that
    replaces it fails: the erase stands, and the notice is sent again."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await agreed_with_quick_tries(h)
            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            h.api.fail_next("editMessageText", description="Bad Request: message to edit not found")
            h.api.fail_next("sendMessage", error_code=500, description="Internal Server Error")
            before = len(h.api.sent_to(CHAT))
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 0
            assert await until(lambda: len(h.api.sent_to(CHAT)) == before + 1)
            assert h.api.sent_to(CHAT)[-1]["text"] == h.message_text("forget.done")

    run_bounded(scenario())


def test_a_retry_that_waited_for_a_newer_reply_is_dropped_by_it(tmp_path: Path) -> None:
    """"No thanks" gets no reply (502) and waits to go again; the person sends /start,
    and the retry falls due while the welcome is still on its way. Once its turn comes it
    is out of date (the welcome dropped it) and goes nowhere: the welcome stays the last
    message, with no "we won't start" under it."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            backbot: telegram_bot.BackBot = h.app.bot_data["backbot"]
            backbot.send_again_after = 0.3
            await h.send(CHAT, "/start")
            welcome = h.current(CHAT)
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            await h.tap(CHAT, welcome["message_id"], h.data_for(welcome, "stop"))
            assert list(backbot._sends_again) == [CHAT]
            h.api.method_delays["sendmessage"] = 1.0  # the retry falls due meanwhile
            replies = await h.say(CHAT, "/start")
            h.api.method_delays.clear()
            assert replies[-1] == h.message_text("welcome.question")
            await asyncio.sleep(0.5)
            assert h.sent_texts(CHAT)[-1] == replies[-1]
            stopped = h.message_text("disposition.stopped")
            assert not any(stopped in text for text in h.sent_texts(CHAT))
            assert backbot._sends_again == {}

    run_bounded(scenario())


