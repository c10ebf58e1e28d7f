"""Old and forged buttons, double taps, unexpected messages, Telegram errors and /forget."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_bot_api import BLOCKED, ApiError, FakeBotAPI, no_proxy
from telegram_harness import (
    RED_FLAGS_NO,
    TO_DOCTOR_PROMPT,
    BotHarness,
    assert_telegram_html,
    bot_session,
    callback_data,
    failures,
    run_bounded,
    until,
)

from bot import telegram_app, telegram_bot
from bot.logs import RECEIVED_DATA, RedactingFormatter
from bot.telegram_bot import FORGET_CONFIRM_SECONDS, IN_HAND_PER_USER

CHAT = 2002
LOGGER = "bot.telegram_bot"


async def double_tap(h: BotHarness, message: dict, data: str) -> list[str]:
    """Two taps on one button, both queued before the bot sees either: the texts sent."""
    sent = len(h.sent_texts(CHAT))
    first = h.api.tap(CHAT, message["message_id"], data)
    second = h.api.tap(CHAT, message["message_id"], data)
    await h.processed(first)
    await h.processed(second)
    return h.sent_texts(CHAT)[sent:]


async def forget_asked_with_its_edit_failing(h: BotHarness) -> dict:
    """At the bladder question, /forget sent: its confirmation, whose next edit fails (so
    the outcome goes out as a message of its own and the buttons stay)."""
    await at_bladder_question(h)
    await h.send(CHAT, "/forget")
    confirm = h.current(CHAT)
    h.api.fail_next("editMessageText", error_code=500, description="Internal Server Error")
    return confirm


async def at_bladder_question(h: BotHarness, chat_id: int = CHAT) -> None:
    await h.send(chat_id, "/start")
    await h.choose(chat_id, "agree")
    assert h.state(chat_id) == "asking_bladder"


# --------------------------------------------------------------------------- 3. stale/forged


def test_stale_button_is_answered_and_current_question_resent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            welcome = h.current(CHAT)
            old_data = h.data_for(welcome, "agree")
            await h.script(CHAT, "agree", "no")  # at the saddle question
            saddle = h.current(CHAT)
            before = h.snapshot(CHAT)

            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, welcome["message_id"], old_data)
            assert h.query_answers()[-1].get("text") == "We've already moved past that question."
            assert h.snapshot(CHAT) == before
            replies = h.sent_texts(CHAT)[sent:]
            assert replies == [h.message_text("session.stale"),
                               h.message_text("question.saddle")]
            current = h.current(CHAT)
            assert current["message_id"] != saddle["message_id"]
            assert callback_data(current) == callback_data(saddle)
            # The old message still shows the answer given at the time.
            assert "Your answer:" in h.api.messages[(CHAT, welcome["message_id"])]["text"]

            # A stale button that still had a keyboard loses it.
            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, saddle["message_id"], h.data_for(saddle, "yes"))
            # saddle (the older copy) has the same ref as the current question: it answers.
            assert h.state(CHAT) == "emergency_care"
            emergency = h.message_text("disposition.emergency")
            assert h.sent_texts(CHAT)[sent:][0].startswith(emergency)
            older = current  # the copy re-sent by the stale tap, now out of date
            await h.tap(CHAT, older["message_id"], h.data_for(older, "no"))
            assert h.query_answers()[-1].get("text") == "We've already moved past that question."
            assert "reply_markup" not in h.api.messages[(CHAT, older["message_id"])]
            assert h.state(CHAT) == "emergency_care"

        assert failures(caplog) == []

    run_bounded(scenario())


FORGED = [
    "garbage",
    "a|x",
    "a||",
    "a|0.1.1|yes|extra",
    "f|maybe",
    "|",
    "x" * 64,
    "a|" + "9" * 62,  # exactly 64 bytes
    "a|0.1.1|" + "z" * 57,  # 65 bytes: over Telegram's limit
    "\u202e<b>&amp;",
]


def test_forged_callback_data_changes_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            question = h.current(CHAT)
            before = h.snapshot(CHAT)
            expired = h.engine.content.message("button.expired")
            moved_on = h.engine.content.message("button.moved_on")
            bladder = h.message_text("question.bladder")

            for data in FORGED:
                sent = len(h.sent_texts(CHAT))
                answers = len(h.query_answers())
                await h.tap(CHAT, question["message_id"], data)
                assert len(h.query_answers()) == answers + 1, data
                # none of them parses: not even taken for a stale answer
                assert h.query_answers()[-1].get("text") == expired, data
                assert h.snapshot(CHAT) == before, data
                assert h.sent_texts(CHAT)[sent:][-1] == bladder, data
                assert callback_data(h.current(CHAT)) == callback_data(question), data

            # A well-formed answer to a question that never existed: "moved on".
            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, question["message_id"], "a|9.9.9|zzz")
            assert h.query_answers()[-1].get("text") == moved_on
            assert h.sent_texts(CHAT)[sent:] == [h.message_text("session.stale"), bladder]
            # The current question's ref, past Telegram's 64 bytes: forged, not answered
            ref = h.data_for(question, "yes").split("|")[1]
            over = f"a|{ref}|" + "z" * (65 - len(f"a|{ref}|"))
            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, question["message_id"], over)
            assert h.query_answers()[-1].get("text") == expired
            assert h.sent_texts(CHAT)[sent:][-1] == bladder and h.snapshot(CHAT) == before
            # The current question with a choice it does not have.
            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, question["message_id"], f"a|{ref}|zzz")
            assert h.sent_texts(CHAT)[sent:] == [h.message_text("error.unknown_choice"),
                                                 bladder]
            assert h.snapshot(CHAT) == before
            for call in h.calls(CHAT, "sendMessage"):
                assert_telegram_html(call.params["text"])

        assert failures(caplog) == []

    run_bounded(scenario())


def test_callback_on_unknown_message_and_from_a_group(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            data = h.data_for(h.current(CHAT), "no")

            # A button on a message the fake never saw (too old, deleted): still handled.
            answers = len(h.query_answers())
            await h.tap(CHAT, 99_999, data)
            assert len(h.query_answers()) == answers + 1
            assert h.state(CHAT) == "asking_saddle"
            assert h.sent_texts(CHAT)[-1] == h.message_text("question.saddle")
            failed_edits = [c for c in h.calls(CHAT, "editMessageText") if not c.ok]
            assert [c.params["message_id"] for c in failed_edits] == [99_999]

            # The same user tapping a button in a group: answered, the dialog untouched.
            before = h.snapshot(CHAT)
            saddle = h.data_for(h.current(CHAT), "yes")
            await h.tap(-100777, 5, saddle, user_id=CHAT, chat_type="group")
            assert h.query_answers()[-1].get("text") == h.engine.content.message(
                "button.not_here")
            assert h.snapshot(CHAT) == before
            assert h.calls(-100777, "sendMessage") == []

            # A button on an inline message (no message; this bot sends none): answered,
            # the dialog untouched, nothing sent.
            sent = len(h.api.calls_to("sendMessage"))
            for data in (saddle, "f|yes"):
                answers = len(h.query_answers())
                await h.processed(h.api.inline_tap(CHAT, data))
                assert len(h.query_answers()) == answers + 1
                assert h.query_answers()[-1].get("text") == h.engine.content.message(
                    "button.not_here")
            assert h.snapshot(CHAT) == before and h.rows(CHAT) == 1
            assert len(h.api.calls_to("sendMessage")) == sent

        assert failures(caplog) == []

    run_bounded(scenario())


# ------------------------------------------------------------------------------ 4. double tap


def test_double_tap_applies_one_answer(tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            question = h.current(CHAT)
            data = h.data_for(question, "no")
            before = h.snapshot(CHAT)
            assert before is not None
            sent = len(h.sent_texts(CHAT))
            answers = len(h.query_answers())

            # Both taps are queued before the bot sees either.
            first = h.api.tap(CHAT, question["message_id"], data)
            second = h.api.tap(CHAT, question["message_id"], data)
            await h.processed(first)
            await h.processed(second)

            after = h.snapshot(CHAT)
            assert after is not None
            assert len(after["answers"]) == len(before["answers"]) + 1
            assert after["state"] == "asking_saddle"
            toasts = [p.get("text") for p in h.query_answers()[answers:]]
            assert sorted(toasts, key=str) == [None, "We've already moved past that question."]
            answered_edits = [c for c in h.calls(CHAT, "editMessageText")
                              if c.params["message_id"] == question["message_id"]]
            assert len(answered_edits) == 1
            # The next question once as the next question, once more after "moved on".
            saddle = h.message_text("question.saddle")
            assert h.sent_texts(CHAT)[sent:] == [saddle, h.message_text("session.stale"),
                                                 saddle]
            copies = [c for c in h.calls(CHAT, "sendMessage") if c.params["text"] == saddle]
            assert len({str(c.params["reply_markup"]) for c in copies}) == 1

        assert failures(caplog) == []

    run_bounded(scenario())


def test_a_quick_second_tap_on_another_choice_says_which_answer_counts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """"Yes" then "No" on a question before the first reply arrives: one answer applies,
    and the second tap is told which one, not only "moved on"."""
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            await h.script(CHAT, "no", "no", "no", "no")  # to the accident question
            question = h.current(CHAT)
            sent = len(h.sent_texts(CHAT))
            first = h.api.tap(CHAT, question["message_id"], h.data_for(question, "yes"))
            second = h.api.tap(CHAT, question["message_id"], h.data_for(question, "no"))
            await h.processed(first)
            await h.processed(second)
            assert h.state(CHAT) == "asking_trauma_checked"
            counts = h.message_text("session.answered_as").format(
                answer=h.message_text("choice.yes"))
            checked = h.message_text("question.trauma_checked")
            stale = h.message_text("session.stale")
            assert h.sent_texts(CHAT)[sent:] == [checked, f"{stale}\n\n{counts}", checked]

        assert failures(caplog) == []

    run_bounded(scenario())


def test_a_red_flag_tapped_on_an_older_copy_of_its_question_counts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """"No" then "Yes" on the bladder question in quick succession, or "Yes" on the copy
    left above after the question came again (here after free text) once the screening has
    moved on to the doctor prompt: the red flag is taken, the tapped copy shows it, and the
    emergency advice follows; nothing about activities comes after."""
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            question = h.current(CHAT)
            first = h.api.tap(CHAT, question["message_id"], h.data_for(question, "no"))
            second = h.api.tap(CHAT, question["message_id"], h.data_for(question, "yes"))
            await h.processed(first)
            await h.processed(second)
            snapshot = h.snapshot(CHAT)
            assert snapshot is not None and snapshot["state"] == "emergency_care"
            assert snapshot["answers"][-1] == ["asking_bladder", "yes"]
            assert any(h.message_text("disposition.emergency") in t for t in h.sent_texts(CHAT))

            await h.send(CHAT, "/restart")
            await h.choose(CHAT, "agree")
            older = h.current(CHAT)
            await h.say(CHAT, "what does that mean?")  # the question comes again below
            assert h.current(CHAT)["message_id"] != older["message_id"]
            await h.script(CHAT, *TO_DOCTOR_PROMPT[1:])
            assert h.state(CHAT) == "doctor_prompt"
            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, older["message_id"], h.data_for(older, "yes"))
            assert h.state(CHAT) == "emergency_care"
            replies = h.sent_texts(CHAT)[sent:]
            assert replies[0].startswith(h.message_text("session.late_red_flag"))
            assert any(h.message_text("disposition.emergency") in t for t in replies)
            edits = h.calls(CHAT, "editMessageText")
            assert edits[-1].params["message_id"] == older["message_id"]
            assert h.message_text("choice.yes") in edits[-1].params["text"]
            await h.script(CHAT, "restart")  # the end's own button works: nothing kept
            assert h.rows(CHAT) == 0
            assert h.sent_texts(CHAT)[-1] == h.message_text("welcome.question")

        assert failures(caplog) == []

    run_bounded(scenario())


def test_one_persons_flood_is_let_go_and_holds_up_no_one_else(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """300 /help from one person while Telegram is slow: each waits its turn holding one
    of PTB's 256 handler slots, so unbounded they would keep another person's /start
    waiting for seconds. Past IN_HAND_PER_USER the rest are let go: a tap let go is still
    answered (its spinner stops), and nothing about the session changes."""
    caplog.set_level(logging.ERROR, logger=LOGGER)
    other = CHAT + 1

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            snapshot, sent = h.snapshot(CHAT), len(h.sent_texts(CHAT))
            question = h.current(CHAT)
            answers = len(h.query_answers())
            h.api.method_delays["sendmessage"] = 0.1  # /help sends two: 0.2 s each
            flood = [h.api.send_text(CHAT, "/help") for _ in range(300)]
            tap = h.api.tap(CHAT, question["message_id"], h.data_for(question, "no"))
            start = h.api.send_text(other, "/start")
            await h.processed(start, timeout=3.0)  # not behind the flood (unbounded: ~9 s)
            await h.processed(tap)
            for update in flood:
                await h.processed(update, timeout=10.0)
            helps = h.sent_texts(CHAT)[sent:].count(h.message_text("help.text"))
            assert 1 <= helps <= IN_HAND_PER_USER
            # the messages let go get one "send it again", not one each
            assert h.sent_texts(CHAT)[sent:].count(h.message_text("error.busy")) == 1
            assert [a.get("text") for a in h.query_answers()[answers:]] == [
                h.message_text("button.busy")]
            assert h.snapshot(CHAT) == snapshot  # the tap let go; nothing else changes it
            h.api.method_delays.clear()
            await h.choose(CHAT, "no")  # tapped again, it applies
            assert h.state(CHAT) == "asking_saddle"
        assert failures(caplog) == []

    run_bounded(scenario())


def test_a_busy_notice_that_finds_the_bot_blocked_erases_nothing_out_of_turn(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A tap's step is stored and its reply on its way when a message let go is answered
    "send it again", and that notice is refused as blocked (blocked then, unblocked by the
    time the reply went): the erase is left to the person's own turn, which finds them
    not blocked, so the answer they see taken stays stored."""
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            busy = h.message_text("error.busy")

            def refuse_the_notice(params: dict) -> None:
                if params["text"] == busy:
                    raise ApiError(403, BLOCKED)

            await at_bladder_question(h)
            question = h.current(CHAT)
            h.api.before_call["sendmessage"] = refuse_the_notice
            h.api.method_delays["answercallbackquery"] = 0.5  # the tap holds its turn
            tap = h.api.tap(CHAT, question["message_id"], h.data_for(question, "no"))
            assert await until(lambda: h.state(CHAT) == "asking_saddle")
            helps = [h.api.send_text(CHAT, "/help") for _ in range(IN_HAND_PER_USER)]
            for update in [tap, *helps]:
                await h.processed(update)
            h.api.method_delays.clear()
            assert [c.error_code for c in h.calls(CHAT, "sendMessage")
                    if c.params["text"] == busy] == [403]
            assert h.message_text("question.saddle") in h.sent_texts(CHAT)
            assert h.state(CHAT) == "asking_saddle"
            await h.choose(CHAT, "no")  # and the saddle question shown still works
            assert h.state(CHAT) == "asking_legs"
        assert failures(caplog) == []

    run_bounded(scenario())


@pytest.mark.parametrize("end", ["emergency", "stopped"])
def test_double_tap_on_start_again_restarts_once(tmp_path: Path, end: str) -> None:
    """An end's "Start again" erases the session (it was stored: emergency care) or there
    was none (stopped before consent): either way a second tap, together or later, is
    stale, and the restart drops the end's old keyboard."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, *(["agree", "yes"] if end == "emergency" else ["stop"]))
            screen = h.current(CHAT)
            data = h.data_for(screen, "restart")
            replies = await double_tap(h, screen, data)
            restarted = h.message_text("session.restarted")
            assert sum(text.startswith(restarted) for text in replies) == 1, replies
            assert h.message_text("session.stale") in replies
            dropped = [c for c in h.calls(CHAT, "editMessageReplyMarkup")
                       if c.params["message_id"] == screen["message_id"]]
            assert dropped, "the end's keyboard stays after the restart"
            # later, once more: still stale, and the new welcome's buttons still work
            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, screen["message_id"], data)
            assert not any(t.startswith(restarted) for t in h.sent_texts(CHAT)[sent:])
            welcome = h.current(CHAT)
            await h.tap(CHAT, welcome["message_id"], h.data_for(welcome, "agree"))
            assert h.state(CHAT) == "asking_bladder"

    run_bounded(scenario())


def test_double_tap_on_a_button_that_only_shows_something_shows_it_once(
        tmp_path: Path) -> None:
    """An end's "Sources" changes nothing stored: the second of two taps answers its
    spinner and sends nothing more, while the end's other buttons still work. A stale
    button is no such button: each tap on it is told "moved on"."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, "agree", "yes")  # emergency
            end = h.current(CHAT)
            before = h.snapshot(CHAT)
            answers = len(h.query_answers())
            replies = await double_tap(h, end, h.data_for(end, "sources"))
            header = h.message_text("sources.header")
            assert sum(header in text for text in replies) == 1, replies
            assert replies[-1] == h.message_text("end.question")
            assert len(h.query_answers()) == answers + 2
            assert h.snapshot(CHAT) == before
            # the new end buttons still show the sources
            replies = await h.step(CHAT, "sources")
            assert header in replies[0]

            await h.tap(CHAT, end["message_id"], h.data_for(end, "restart"))  # stale now
            await h.choose(CHAT, "agree")
            old = {"message_id": end["message_id"]}
            replies = await double_tap(h, old, h.data_for(end, "restart"))
            assert replies == [h.message_text("session.stale"),
                               h.message_text("question.bladder")] * 2
            assert len(h.query_answers()) == answers + 7
            assert h.state(CHAT) == "asking_bladder"

    run_bounded(scenario())


def test_a_button_that_showed_nothing_still_works(tmp_path: Path) -> None:
    """An end's "Sources" whose step could not be stored (the tap was answered "try
    again"), or whose reply did not go out: the same button tapped again shows them."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, "agree", "yes")  # emergency
            end = h.current(CHAT)
            data = h.data_for(end, "sources")
            header = h.message_text("sources.header")
            save = h.store.save

            def full(*args: object, **kwargs: object) -> None:
                raise sqlite3.OperationalError("database or disk is full")

            h.store.save = full  # type: ignore[method-assign]
            sent = len(h.sent_texts(CHAT))
            await h.tap(CHAT, end["message_id"], data)
            assert h.sent_texts(CHAT)[sent:] == []
            h.store.save = save  # type: ignore[method-assign]
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            await h.tap(CHAT, end["message_id"], data)
            assert h.sent_texts(CHAT)[sent:] == []
            await h.tap(CHAT, end["message_id"], data)
            assert header in h.sent_texts(CHAT)[sent]

    run_bounded(scenario())


def test_a_storage_failure_answers_the_tap_and_changes_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full disk or a database locked too long: the tap is still answered (an alert
    saying so), nothing moves on, and the next tap works once the store does."""
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            before = h.snapshot(CHAT)
            save = h.store.save

            def full(*args: object, **kwargs: object) -> None:
                raise sqlite3.OperationalError("database or disk is full")

            h.store.save = full  # type: ignore[method-assign]
            answers, sent = len(h.query_answers()), len(h.sent_texts(CHAT))
            question = h.current(CHAT)
            await h.tap(CHAT, question["message_id"], h.data_for(question, "no"))
            toasts = h.query_answers()[answers:]
            assert [(t.get("text"), t.get("show_alert")) for t in toasts] == [
                (h.message_text("error.try_again"), True)]
            assert h.sent_texts(CHAT)[sent:] == []
            assert h.snapshot(CHAT) == before
            sent = len(h.sent_texts(CHAT))
            await h.send(CHAT, "/help")  # a command: told in a message instead
            assert h.sent_texts(CHAT)[sent:] == [h.message_text("error.try_again")]
            h.store.save = save  # type: ignore[method-assign]
            await h.tap(CHAT, question["message_id"], h.data_for(question, "no"))
            assert h.state(CHAT) == "asking_saddle"

        assert failures(caplog) and all("OperationalError" in f for f in failures(caplog))

    run_bounded(scenario())


def test_forget_that_cannot_erase_does_not_say_done(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The database refuses the erase: the tap says something went wrong, the confirm
    message does not turn into "done", and a later try erases."""
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            delete = h.store.delete

            def locked(user_id: int) -> int:
                raise sqlite3.OperationalError("database is locked")

            h.store.delete = locked  # type: ignore[method-assign]
            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            answers = len(h.query_answers())
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert [(t.get("text"), t.get("show_alert")) for t in h.query_answers()[answers:]
                    ] == [(h.message_text("error.try_again"), True)]
            assert h.rows(CHAT) == 1
            shown = h.api.messages[(CHAT, confirm["message_id"])]["text"]
            assert shown != h.message_text("forget.done")
            h.store.delete = delete  # type: ignore[method-assign]
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 0

        # SQLite's own words say what to fix (they name no stored values)
        assert [f for f in failures(caplog)
                if f.endswith("failed: OperationalError (database is locked)")]

    run_bounded(scenario())


# -------------------------------------------------------------------- 5. unexpected messages

ODD_TEXTS = [
    "hello",
    "x" * 5000,
    "\u200f\u202e\u0645\u0631\u062d\u0628\u0627 \U0001f468\u200d\U0001f469\u200d\U0001f467"
    " z\u200dw\u200cj \ufeff\u2066",
    "<b>hi</b> &amp; <script>alert(1)</script>",
]


def test_double_tap_on_no_thanks_before_consent_applies_once(tmp_path: Path) -> None:
    """Before consent nothing is stored to tell the second tap from the first; it is
    still answered as stale, not as a second "No thanks"."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            welcome = h.current(CHAT)
            replies = await double_tap(h, welcome, h.data_for(welcome, "stop"))
            stopped = h.message_text("disposition.stopped")
            assert sum(stopped in text for text in replies) == 1, replies
            assert h.message_text("session.stale") in replies
            assert h.rows(CHAT) == 0
            # "What do you store?" only shows a note and the welcome again: the tapped
            # welcome loses its buttons (one live copy of a question at a time), and a
            # second tap on it (sent before they went) is harmless
            other = await h.say(CHAT, "/start")
            welcome = h.current(CHAT)
            await h.tap(CHAT, welcome["message_id"], h.data_for(welcome, "privacy"))
            assert callback_data(h.api.messages[(CHAT, welcome["message_id"])]) == []
            again = h.current(CHAT)
            assert again["message_id"] > welcome["message_id"]
            await h.tap(CHAT, welcome["message_id"], h.data_for(welcome, "privacy"))
            await h.tap(CHAT, again["message_id"], h.data_for(again, "agree"))
            assert h.state(CHAT) == "asking_bladder", other

    run_bounded(scenario())



def test_commands_it_does_not_run_say_so_and_forwarded_ones_run_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            question = h.current(CHAT)
            before = h.snapshot(CHAT)
            bladder = h.message_text("question.bladder")
            unknown = [h.message_text("error.unknown_command"), bladder]
            assert "/help" in unknown[0]
            for text in ("/notacommand", "/stop now", "/start@SomeOtherBot"):
                sent = len(h.sent_texts(CHAT))
                await h.processed(h.api.send_text(CHAT, text))
                assert h.sent_texts(CHAT)[sent:] == unknown, text
                assert h.snapshot(CHAT) == before
            # a command forwarded from someone else's chat is passed on, not given: it
            # restarts nothing, and is answered as any other text
            # (and so is one picked from another bot's inline results)
            for passed_on in ({"forward_origin": {"type": "user", "date": 1, "sender_user": {
                                   "id": 77, "is_bot": False, "first_name": "Bo"}}},
                              {"via_bot": {"id": 99, "is_bot": True, "first_name": "gif",
                                           "username": "gif"}}):
                forwarded = h.api._user_message(CHAT, None)
                forwarded.update(text="/restart", **passed_on,
                                 entities=[{"type": "bot_command", "offset": 0, "length": 8}])
                sent = len(h.sent_texts(CHAT))
                await h.processed(h.api.push_update({"message": forwarded}))
                assert h.sent_texts(CHAT)[sent:] == [h.message_text("error.use_buttons"),
                                                     bladder], passed_on
                assert h.snapshot(CHAT) == before
                assert callback_data(h.current(CHAT)) == callback_data(question)
            # /check, the group menu's way in, is /start here
            sent = len(h.sent_texts(CHAT))
            await h.processed(h.api.send_text(CHAT, "/check"))
            resumed = h.sent_texts(CHAT)[sent:]
            assert resumed[0].startswith(h.message_text("session.resumed"))
            assert resumed[-1] == bladder and h.snapshot(CHAT) == before

        assert failures(caplog) == []

    run_bounded(scenario())


def test_free_text_stickers_photos_get_the_buttons_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            question = h.current(CHAT)
            before = h.snapshot(CHAT)
            expected = [h.message_text("error.use_buttons"),
                        h.message_text("question.bladder")]
            assert expected[0].startswith("Please answer with one of the buttons")

            pushes = [lambda t=t: h.api.send_text(CHAT, t) for t in ODD_TEXTS]
            pushes += [lambda: h.api.send_sticker(CHAT), lambda: h.api.send_photo(CHAT)]
            for push in pushes:
                sent = len(h.sent_texts(CHAT))
                await h.processed(push())
                assert h.sent_texts(CHAT)[sent:] == expected
                assert callback_data(h.current(CHAT)) == callback_data(question)
                assert h.snapshot(CHAT) == before

            # Service messages (the person pinned a message, logged in to a website with
            # Telegram) are not written to the bot: no reply.
            quiet = len(h.sent_texts(CHAT))
            base = {"chat": {"id": CHAT, "type": "private", "first_name": "Ana"},
                    "from": {"id": CHAT, "is_bot": False, "first_name": "Ana"},
                    "date": int(time.time())}
            for n, service in enumerate([
                    {"pinned_message": {**question, "date": 0}},
                    {"connected_website": "example.org"}]):
                await h.processed(h.api.push_update(
                    {"message": {**base, "message_id": 9000 + n, **service}}))
            assert len(h.sent_texts(CHAT)) == quiet
            assert h.snapshot(CHAT) == before

            # An edited message gets no reply at all.
            await h.processed(h.api.send_text(CHAT, "first"))
            calls = len([c for c in h.api.calls if c.method != "getUpdates"])
            await h.processed(h.api.edit_text(CHAT, 1, "edited: <b>"))
            await h.processed(h.api.edit_text(CHAT, 1, "/start"))
            assert len([c for c in h.api.calls if c.method != "getUpdates"]) == calls
            assert h.snapshot(CHAT) == before

            for call in h.calls(CHAT, "sendMessage", "editMessageText"):
                assert "<script" not in call.params["text"]
                assert "<b>hi" not in call.params["text"]
                assert_telegram_html(call.params["text"])

        assert failures(caplog) == []

    run_bounded(scenario())


def test_a_command_followed_by_punctuation_is_that_command(tmp_path: Path) -> None:
    """Telegram marks "/help" in "/help," as the command: it is answered as /help."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            bladder = h.message_text("question.bladder")
            assert await h.say(CHAT, "/help,") == [h.message_text("help.text"), bladder]
            replies = await h.say(CHAT, "/start!")
            assert replies[0].startswith(h.message_text("session.resumed"))
            assert replies[-1] == bladder
            assert (await h.say(CHAT, "/sources?"))[-1] == bladder
            replies = await h.say(CHAT, "/back.")  # back to the welcome: nothing kept
            assert replies[0].startswith(h.message_text("session.went_back"))
            assert replies[-1] == h.message_text("welcome.question")

    run_bounded(scenario())


def test_a_burst_of_photos_gets_one_re_ask(tmp_path: Path) -> None:
    """An album of five photos, sent while Telegram is slow: one "use the buttons" and
    one question, not five of each (which would also run into Telegram's limits)."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            before, snapshot = len(h.sent_texts(CHAT)), h.snapshot(CHAT)
            h.api.method_delays["sendmessage"] = 0.2
            photos = [h.api.send_photo(CHAT) for _ in range(5)]
            for update in photos:
                await h.processed(update)
            await asyncio.sleep(0.3)
            assert h.sent_texts(CHAT)[before:] == [h.message_text("error.use_buttons"),
                                                   h.message_text("question.bladder")]
            assert h.snapshot(CHAT) == snapshot
            # afterwards, one more photo is answered again
            h.api.method_delays.clear()
            replies = await h.say(CHAT, "still here?")
            assert replies[-1] == h.message_text("question.bladder")

    run_bounded(scenario())


def test_an_albums_parts_arriving_apart_get_one_re_ask(tmp_path: Path) -> None:
    """Each part of an album comes as a message of its own, perhaps after the re-ask for
    the first went out: still one re-ask for the album; another album gets its own."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            before, snapshot = len(h.sent_texts(CHAT)), h.snapshot(CHAT)
            re_ask = [h.message_text("error.use_buttons"), h.message_text("question.bladder")]
            for _ in range(3):
                await h.processed(h.api.send_photo(CHAT, album="1300"))
            assert h.sent_texts(CHAT)[before:] == re_ask
            await h.processed(h.api.send_photo(CHAT, album="1301"))
            assert h.sent_texts(CHAT)[before:] == re_ask * 2
            assert h.snapshot(CHAT) == snapshot

    run_bounded(scenario())


def test_restart_leaves_nothing_of_the_old_check_in_in_memory(tmp_path: Path) -> None:
    """Start again erases the stored row (nothing is kept before consent); what memory
    held of it for a double tap on a button that only showed something goes too."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            await h.script(CHAT, "yes")  # an emergency end
            await h.choose(CHAT, "sources")
            backbot = h.app.bot_data["backbot"]
            assert [key for key in backbot._shown_on_tap if key[0] == CHAT]
            await h.send(CHAT, "/restart")
            assert h.snapshot(CHAT) is None
            assert [key for key in backbot._shown_on_tap if key[0] == CHAT] == []

    run_bounded(scenario())


# ----------------------------------------------------------------------- 6. Telegram errors


def test_blocked_user_is_forgotten(tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            assert h.rows(CHAT) == 1
            h.api.block_user(CHAT)
            await h.send(CHAT, "/start")
            assert h.rows(CHAT) == 0
            assert any(c.error_code == 403 for c in h.calls(CHAT, "sendMessage",
                                                            "sendChatAction"))
            # A brand-new user who blocks straight away leaves nothing behind either.
            h.api.block_user(CHAT + 1)
            await h.send(CHAT + 1, "/start")
            assert h.rows(CHAT + 1) == 0
            # The bot keeps serving others.
            await h.send(CHAT + 2, "/start")
            assert h.sent_texts(CHAT + 2)[-1] == h.message_text("welcome.question")

        assert failures(caplog) == []

    run_bounded(scenario())


def test_blocked_user_tapping_a_button_is_forgotten(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> tuple[int, list[str]]:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            h.api.block_user(CHAT)
            await h.choose(CHAT, "no")
            return h.rows(CHAT), failures(caplog)

    rows, failed = run_bounded(scenario())
    assert failed == []
    assert rows == 0


def test_an_update_ptb_cannot_read_is_skipped_and_the_rest_are_handled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            polls = len(h.api.calls_to("getUpdates"))
            # A message entity without its offset and length: PTB cannot read it.
            unreadable = {"message": {
                "message_id": 90, "date": int(time.time()), "text": "my-private-words",
                "chat": {"id": CHAT, "type": "private", "first_name": "Ana"},
                "from": {"id": CHAT, "is_bot": False, "first_name": "Ana"},
                "entities": [{"type": "bold"}]}}
            skipped = h.api.push_update(unreadable)
            replies = await h.step(CHAT, "no")  # in the same batch, or the next
            await h.processed(skipped)
            assert replies == [h.message_text("question.saddle")]
            assert h.state(CHAT) == "asking_saddle"
            # PTB alone asks for the same batch again and again, at once, for ever.
            assert len(h.api.calls_to("getUpdates")) - polls <= 4
            assert h.api.pending_updates == [] or all(
                u["update_id"] > skipped for u in h.api.pending_updates)

    run_bounded(scenario())
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.telegram_polling"]
    assert len(logged) == 1 and "could not be read (" in logged[0]
    # as `backbot run` logs them: PTB's line about the batch stays, without its data
    formatter = RedactingFormatter([], "%(message)s", tracebacks=False)
    lines = [formatter.format(r) for r in caplog.records]
    assert any(RECEIVED_DATA in line for line in lines)
    assert not any("my-private-words" in line for line in lines)


def test_not_modified_edit_does_not_stop_the_dialog(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            h.api.fail_next("editMessageText", description="Bad Request: message is not modified")
            replies = await h.step(CHAT, "no")
            assert replies == [h.message_text("question.saddle")]
            assert [c.ok for c in h.calls(CHAT, "editMessageText")][-1] is False
            assert h.state(CHAT) == "asking_saddle"

        assert failures(caplog) == []

    run_bounded(scenario())


# PTB's own rate limiter reads RetryAfter.retry_after, which PTB 22.2+ marks deprecated.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_flood_control_is_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            h.api.fail_next("sendMessage", retry_after=1)
            replies = await h.step(CHAT, "no")
            assert replies == [h.message_text("question.saddle")]
            saddle = [c for c in h.calls(CHAT, "sendMessage")
                      if c.params["text"] == replies[0]]
            assert [(c.ok, c.error_code) for c in saddle] == [(False, 429), (True, None)]
            assert saddle[1].time - saddle[0].time >= 1.0

        assert failures(caplog) == []

    run_bounded(scenario())


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_flood_control_outlasting_ptbs_retries_is_waited_out_before_sending_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Flood control refuses the reply through all of PTB's own tries: our try again waits
    as long as Telegram asked, however short our own pause, and the reply arrives. The
    update's failure is a warning: its reply is on its way."""
    caplog.set_level(logging.WARNING, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            h.app.bot_data["backbot"].send_again_after = 0.05
            await at_bladder_question(h)
            h.api.fail_next("sendMessage", retry_after=1, count=3)  # all of PTB's tries
            message = h.current(CHAT)
            update_id = await h.tap(CHAT, message["message_id"], h.data_for(message, "no"))
            assert failures(caplog) == []
            assert (f"update {update_id} failed: RetryAfter; {telegram_bot.SENDING_AGAIN}"
                    in caplog.messages)
            saddle = h.message_text("question.saddle")
            assert await until(lambda: saddle in h.sent_texts(CHAT), timeout=5)
            tries = [c for c in h.calls(CHAT, "sendMessage") if c.params["text"] == saddle]
            assert [c.ok for c in tries] == [False] * 3 + [True]
            assert tries[3].time - tries[2].time >= 1.0

    run_bounded(scenario())


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_one_chats_flood_wait_holds_up_no_other_chat(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Telegram's flood control for one person's chat (about a message a second) pauses
    that chat only: another person's tap meanwhile is answered at once, and the first
    person's reply goes out once their wait is over."""
    caplog.set_level(logging.ERROR, logger=LOGGER)
    other = CHAT + 1

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            await at_bladder_question(h, other)
            h.api.fail_next("sendMessage", retry_after=3, chat_id=CHAT)
            mine, theirs = h.current(CHAT), h.current(other)
            paused = h.api.tap(CHAT, mine["message_id"], h.data_for(mine, "no"))
            assert await until(lambda: any(not c.ok for c in h.calls(CHAT, "sendMessage")),
                               timeout=5)
            await h.processed(h.api.tap(other, theirs["message_id"],
                                        h.data_for(theirs, "no")))
            assert h.state(other) == "asking_saddle"
            saddle = h.message_text("question.saddle")
            assert saddle in h.sent_texts(other)
            assert saddle not in h.sent_texts(CHAT)  # still waiting out its pause
            await h.processed(paused)
            tries = [c for c in h.calls(CHAT, "sendMessage") if c.params["text"] == saddle]
            assert [c.ok for c in tries] == [False, True]
            assert tries[1].time - tries[0].time >= 3.0

        assert failures(caplog) == []

    run_bounded(scenario())


def test_flood_wait_on_the_command_menu_does_not_hold_up_start_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The command menu is a convenience Telegram keeps from an earlier start: a flood wait
    for it is not waited out (not retried) before the bot serves anyone."""
    caplog.set_level(logging.WARNING)
    api = FakeBotAPI()
    api.fail_next("setMyCommands", retry_after=600, count=2)  # both scopes

    async def scenario() -> None:
        async with bot_session(tmp_path, api) as h:
            await at_bladder_question(h)
            assert [c.ok for c in h.api.calls_to("setMyCommands")] == [False, False]

    with no_proxy(), api:
        run_bounded(scenario())
    assert [r.getMessage() for r in caplog.records if "command menu" in r.getMessage()] == [
        "could not set the command menu: RetryAfter"] * 2


@pytest.mark.parametrize(("code", "description", "error"), [
    (500, "Internal Server Error", "NetworkError"),
    (502, "Bad Gateway", "NetworkError"),
])
def test_server_errors_are_logged_and_the_bot_keeps_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, code: int, description: str,
        error: str) -> None:
    """A reply Telegram did not take goes again by itself; as it does, the update's failure
    is logged as a warning, not an error."""
    caplog.set_level(logging.WARNING, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            h.app.bot_data["backbot"].send_again_after = 0.2
            await at_bladder_question(h)
            h.api.fail_next("sendMessage", error_code=code, description=description)
            message = h.current(CHAT)
            before = len(h.sent_texts(CHAT))
            update_id = await h.tap(CHAT, message["message_id"], h.data_for(message, "no"))
            assert (f"update {update_id} failed: {error}; {telegram_bot.SENDING_AGAIN}"
                    in caplog.messages)
            assert h.state(CHAT) == "asking_saddle"  # stored before the reply went out
            assert h.sent_texts(CHAT)[before:] == []

            # No one is left without a question to answer: it goes out again by itself,
            # once, with its keyboard.
            saddle = h.message_text("question.saddle")
            assert await until(lambda: h.sent_texts(CHAT)[before:] == [saddle])
            await asyncio.sleep(0.4)
            assert h.sent_texts(CHAT)[before:] == [saddle]
            assert h.data_for(h.current(CHAT), "no")

            replies = await h.say(CHAT, "/start")
            assert replies == [h.message_text("session.resumed"), saddle]
            assert failures(caplog) == []

    run_bounded(scenario())


async def at_bladder_with_the_next_reply_failing(h: BotHarness) -> dict:
    """The bladder question, with the next message failing (502) and its second try due
    0.3 s later."""
    h.app.bot_data["backbot"].send_again_after = 0.3
    await at_bladder_question(h)
    h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
    return h.current(CHAT)


def test_a_failed_reply_goes_out_again_even_when_the_loop_gets_to_it_late(
        tmp_path: Path) -> None:
    """The second try falls due while the event loop is busy (as it may be when sends time
    out under load): it still goes out, however late."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            message = await at_bladder_with_the_next_reply_failing(h)
            before = len(h.sent_texts(CHAT))
            await h.tap(CHAT, message["message_id"], h.data_for(message, "no"))
            time.sleep(1.6)  # blocks the loop past the try's time and the scheduler's 1 s
            saddle = h.message_text("question.saddle")
            assert await until(lambda: h.sent_texts(CHAT)[before:] == [saddle])

    run_bounded(scenario())


def test_emergency_advice_is_tried_again_until_telegram_takes_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The emergency reply fails, and so does its first try again: it is tried once more,
    after a longer pause, and arrives; past the last try nothing more is sent, and the
    replies lost are logged as an error (the tries before only as warnings)."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            message = await at_bladder_with_the_next_reply_failing(h)
            backbot = h.app.bot_data["backbot"]
            backbot.send_again_after = 0.1  # tries 0.1 s and 0.4 s after
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")  # two
            before = len(h.sent_texts(CHAT))
            await h.tap(CHAT, message["message_id"], h.data_for(message, "yes"))
            assert h.state(CHAT) == "emergency_care"
            emergency = h.message_text("disposition.emergency")
            assert await until(lambda: any(emergency in t for t in h.sent_texts(CHAT)))
            assert sum(emergency in t for t in h.sent_texts(CHAT)[before:]) == 1
            assert len(h.calls(CHAT, "sendMessage")) - before == 2 + len(h.sent_texts(CHAT)
                                                                         [before:])

            assert failures(caplog) == []
            await h.send(CHAT, "/restart")
            await h.choose(CHAT, "agree")
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway",
                            count=telegram_bot.SEND_AGAIN_TRIES + 1)
            tried = len(h.calls(CHAT, "sendMessage"))
            await h.choose(CHAT, "yes")
            assert await until(lambda: len(h.calls(CHAT, "sendMessage")) - tried
                               == telegram_bot.SEND_AGAIN_TRIES + 1)
            assert await until(lambda: failures(caplog) == [
                "replies not sent again: NetworkError"])
            assert backbot._sends_again == {}  # and no try is left to come
            assert h.app.job_queue is not None
            assert h.app.job_queue.get_jobs_by_name("send-again") == ()

    run_bounded(scenario())


def test_a_failed_reply_is_not_sent_again_once_something_newer_went_out(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            message = await at_bladder_with_the_next_reply_failing(h)
            await h.tap(CHAT, message["message_id"], h.data_for(message, "no"))
            before = len(h.sent_texts(CHAT))
            replies = await h.say(CHAT, "/start")  # before the second try is due
            saddle = h.message_text("question.saddle")
            assert replies == [h.message_text("session.resumed"), saddle]
            await asyncio.sleep(0.6)
            assert h.sent_texts(CHAT)[before:] == replies  # no second copy

    run_bounded(scenario())



def test_an_erase_takes_replies_waiting_to_be_sent_again_with_it(tmp_path: Path) -> None:
    """A reply failed and waits for its second try, holding the session it belongs to:
    /forget erases that too (erased means erased), and nothing goes out later."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            message = await at_bladder_with_the_next_reply_failing(h)
            backbot = h.app.bot_data["backbot"]
            backbot.send_again_after = 0.5
            await h.tap(CHAT, message["message_id"], h.data_for(message, "no"))
            assert h.app.job_queue is not None
            assert list(backbot._sends_again) == [CHAT]
            assert len(h.app.job_queue.get_jobs_by_name("send-again")) == 1
            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 0
            assert backbot._sends_again == {}
            assert h.app.job_queue.get_jobs_by_name("send-again") == ()
            before = len(h.sent_texts(CHAT))
            await asyncio.sleep(0.8)
            assert h.sent_texts(CHAT)[before:] == []

    run_bounded(scenario())


def test_emergency_advice_whose_reply_failed_comes_with_the_next_reply(
        tmp_path: Path) -> None:
    """A bladder "yes" whose reply failed, then "hello?" before the second try: the answer
    to it carries the emergency advice (and the second try, now covered, is dropped)."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            message = await at_bladder_with_the_next_reply_failing(h)
            before = len(h.sent_texts(CHAT))
            await h.tap(CHAT, message["message_id"], h.data_for(message, "yes"))
            assert h.state(CHAT) == "emergency_care"
            assert h.sent_texts(CHAT)[before:] == []
            replies = await h.say(CHAT, "hello?")
            emergency = h.message_text("disposition.emergency")
            assert any(emergency in text for text in replies)
            await asyncio.sleep(0.6)
            assert h.sent_texts(CHAT)[before:] == replies  # no second copy

    run_bounded(scenario())


def test_cards_whose_reply_failed_still_go_out_after_a_re_ask(tmp_path: Path) -> None:
    """The "why movement helps" cards failed; free text then gets only "use the buttons"
    and the question, so the cards still go out again by themselves, once."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            h.app.bot_data["backbot"].send_again_after = 0.3
            await at_bladder_question(h)
            await h.script(CHAT, *RED_FLAGS_NO, "none")
            assert h.state(CHAT) == "asking_clearance"
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            message = h.current(CHAT)
            before = len(h.sent_texts(CHAT))
            await h.tap(CHAT, message["message_id"], h.data_for(message, "yes"))
            assert h.state(CHAT) == "explaining_why"
            replies = await h.say(CHAT, "hi")
            question = h.message_text("why.question")
            assert replies == [h.message_text("error.use_buttons"), question]
            intro = h.message_text("why.intro")

            def sent_again() -> list[str]:
                return h.sent_texts(CHAT)[before + len(replies):]

            assert await until(lambda: any(intro in text for text in sent_again()))
            await asyncio.sleep(0.5)
            again = sent_again()
            assert again[-1] == question and sum(intro in text for text in again) == 1
            assert h.state(CHAT) == "explaining_why"

    run_bounded(scenario())


def test_cards_stay_due_when_the_re_ask_fails_too(tmp_path: Path) -> None:
    """The cards' reply failed, then the reply to free text failed as well: the second
    try still carries the cards (ahead of the question), not only "use the buttons"."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            h.app.bot_data["backbot"].send_again_after = 0.3
            await at_bladder_question(h)
            await h.script(CHAT, *RED_FLAGS_NO, "none")
            message = h.current(CHAT)
            before = len(h.sent_texts(CHAT))
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            await h.tap(CHAT, message["message_id"], h.data_for(message, "yes"))
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            await h.processed(h.api.send_text(CHAT, "hi"))
            assert h.sent_texts(CHAT)[before:] == []
            intro, question = h.message_text("why.intro"), h.message_text("why.question")
            assert await until(lambda: question in h.sent_texts(CHAT)[before:])
            await asyncio.sleep(0.5)
            again = h.sent_texts(CHAT)[before:]
            assert sum(intro in text for text in again) == 1
            assert again[-1] == question and again.count(question) == 1
            assert h.state(CHAT) == "explaining_why"

    run_bounded(scenario())


@pytest.mark.parametrize("then", ["hello", "/help"])
def test_a_lost_doctor_prompt_comes_with_any_re_ask_before_its_button(tmp_path: Path,
                                                                       then: str) -> None:
    """The doctor prompt's reply failed; free text or /help before the second try asks its
    question again with the prompt and its cards, so the button tapped next was never
    offered without them."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, *TO_DOCTOR_PROMPT[:-1])
            assert h.state(CHAT) == "explaining_why"
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            before = len(h.sent_texts(CHAT))
            await h.choose(CHAT, "next")
            assert h.state(CHAT) == "doctor_prompt"
            assert h.sent_texts(CHAT)[before:] == []
            replies = await h.say(CHAT, then)
            prompt, question = (h.message_text("doctor.prompt"),
                                h.message_text("doctor.question"))
            assert replies[-1] == question
            assert any(prompt in text for text in replies[:-1]), replies
            stop = html.escape(h.engine.content.cards["safety.stop_on_pain"].title,
                               quote=False)
            assert any(stop in text for text in replies[:-1]), replies
            await h.choose(CHAT, "understood")  # the button of that re-ask
            assert h.state(CHAT) == "asking_pool"

    run_bounded(scenario())


def test_a_forget_outcome_that_did_not_arrive_is_told_on_the_next_tap(tmp_path: Path) -> None:
    """Neither the edit nor the message with the outcome went out: tapping again tells
    it (as the button's notice), and erases nothing twice."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            before = len(h.all_texts(CHAT))
            h.api.fail_next("editMessageText", error_code=502, description="Bad Gateway")
            h.api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 0 and h.all_texts(CHAT)[before:] == []
            await h.tap(CHAT, confirm["message_id"], "f|no")
            assert h.query_answers()[-1].get("text") == h.engine.content.message(
                "forget.done")
            assert h.rows(CHAT) == 0

    run_bounded(scenario())


def test_an_old_erase_confirmation_tapped_after_a_new_check_in_claims_nothing(
        tmp_path: Path) -> None:
    """Erased, then a new check-in stored: a tap on the old confirmation (its buttons left
    by a failed edit) erases nothing and does not say all was erased."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            confirm = await forget_asked_with_its_edit_failing(h)
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 0
            await at_bladder_question(h)
            assert h.rows(CHAT) == 1
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.query_answers()[-1].get("text") is None
            assert h.rows(CHAT) == 1

    run_bounded(scenario())


# ------------------------------------------------------------------------------ 5. ordering


def test_tip_and_forget_wait_for_the_updates_before_them(tmp_path: Path) -> None:
    """With Telegram slow to answer a button, a /tip or a /start sent right after it
    still goes after that tap's replies: the tip fits the emergency advice (no exercise
    tip), and "forget" erases before the /start after it is applied."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            message = h.current(CHAT)
            h.api.method_delays["answercallbackquery"] = 0.3
            before = len(h.sent_texts(CHAT))
            tap = h.api.tap(CHAT, message["message_id"], h.data_for(message, "yes"))
            await asyncio.sleep(0.05)
            tip = h.api.send_text(CHAT, "/tip")
            await h.processed(tap)
            await h.processed(tip)
            sent = h.sent_texts(CHAT)[before:]
            emergency = h.message_text("disposition.emergency")
            at = next(i for i, text in enumerate(sent) if emergency in text)
            assert sent[-1] == h.message_text("tip.after_red_flag") and at < len(sent) - 1

            h.api.method_delays.clear()
            await h.send(CHAT, "/restart")
            await h.choose(CHAT, "agree")
            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            h.api.method_delays["answercallbackquery"] = 0.3
            before = len(h.sent_texts(CHAT))
            forget = h.api.tap(CHAT, confirm["message_id"], "f|yes")
            await asyncio.sleep(0.05)
            start = h.api.send_text(CHAT, "/start")
            await h.processed(forget)
            await h.processed(start)
            replies = h.sent_texts(CHAT)[before:]
            # /start came after the erase: a fresh welcome, not "welcome back"
            assert replies[-1] == h.message_text("welcome.question")
            assert h.message_text("session.resumed") not in replies

    run_bounded(scenario())


# ------------------------------------------------------------------------------- 8. /forget


def test_forget_yes_erases_and_no_keeps(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            content = h.engine.content

            replies = await h.say(CHAT, "/forget")
            assert replies == [h.message_text("forget.confirm")]
            confirm = h.current(CHAT)
            assert callback_data(confirm) == ["f|yes", "f|no"]
            labels = [b["text"] for row in confirm["reply_markup"]["inline_keyboard"]
                      for b in row]
            assert set(labels) == {content.message("forget.yes"), content.message("forget.no")}

            answers = len(h.query_answers())
            await h.tap(CHAT, confirm["message_id"], "f|no")
            assert len(h.query_answers()) == answers + 1
            assert h.rows(CHAT) == 1
            kept = h.api.messages[(CHAT, confirm["message_id"])]
            assert kept["text"] == h.message_text("forget.kept")
            assert "reply_markup" not in kept

            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert len(h.query_answers()) == answers + 2
            assert h.rows(CHAT) == 0
            done = h.api.messages[(CHAT, confirm["message_id"])]
            assert done["text"] == h.message_text("forget.done")
            assert "reply_markup" not in done

            # Afterwards the bot starts from scratch, with no "welcome back".
            replies = await h.say(CHAT, "/start")
            assert h.message_text("session.resumed") not in replies
            assert replies[-1] == h.message_text("welcome.question")

        assert failures(caplog) == []

    run_bounded(scenario())


def test_forget_with_nothing_stored_says_so_and_asks_nothing(tmp_path: Path) -> None:
    """Before consent (or after an erase) there is nothing to erase: no "Erase it?"."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            replies = await h.say(CHAT, "/forget")
            assert replies == [h.message_text("forget.nothing")]
            assert not [c for c in h.calls(CHAT, "sendMessage") if "reply_markup" in c.params]
            await h.send(CHAT, "/start")  # the welcome: still nothing kept
            assert await h.say(CHAT, "/forget") == [h.message_text("forget.nothing")]
            await h.step(CHAT, "agree")  # consent: now there is
            assert h.rows(CHAT) == 1
            assert await h.say(CHAT, "/forget") == [h.message_text("forget.confirm")]
            assert h.rows(CHAT) == 1

    run_bounded(scenario())


@pytest.mark.parametrize(("first", "second"), [("yes", "no"), ("no", "yes"), ("yes", "yes")])
def test_two_quick_taps_on_a_forget_confirmation_apply_the_first(
        tmp_path: Path, first: str, second: str) -> None:
    """Both taps queued before the bot sees either: the first one decides, and what the
    message says afterwards is what happened."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            answers = len(h.query_answers())
            taps = [h.api.tap(CHAT, confirm["message_id"], f"f|{choice}")
                    for choice in (first, second)]
            for tap in taps:
                await h.processed(tap)
            assert len(h.query_answers()) == answers + 2  # both spinners stop
            assert h.rows(CHAT) == (0 if first == "yes" else 1)
            shown = h.api.messages[(CHAT, confirm["message_id"])]["text"]
            assert shown == h.message_text("forget.done" if first == "yes" else "forget.kept")
            edits = [c for c in h.calls(CHAT, "editMessageText")
                     if c.params["message_id"] == confirm["message_id"]]
            assert len(edits) == 1

    run_bounded(scenario())


@pytest.mark.parametrize(("first", "second"), [("yes", "no"), ("no", "yes")])
def test_a_forget_confirmation_that_could_not_be_edited_is_settled_by_its_first_tap(
        tmp_path: Path, first: str, second: str) -> None:
    """The edit failed, so the outcome came as a message of its own and the buttons
    stayed: a later tap on them changes nothing and says nothing that contradicts it."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            confirm = await forget_asked_with_its_edit_failing(h)
            before = len(h.all_texts(CHAT))
            await h.tap(CHAT, confirm["message_id"], f"f|{first}")
            outcome = h.message_text("forget.done" if first == "yes" else "forget.kept")
            assert h.all_texts(CHAT)[before:] == [outcome]  # sent, as the edit failed
            answers = len(h.query_answers())
            await h.tap(CHAT, confirm["message_id"], f"f|{second}")
            assert h.all_texts(CHAT)[before:] == [outcome]  # nothing sent or edited
            # the spinner stops with what the first tap did
            assert h.query_answers()[-1].get("text") == h.engine.content.message(
                "forget.done" if first == "yes" else "forget.kept")
            assert len(h.query_answers()) == answers + 1  # the spinner stops
            assert h.rows(CHAT) == (0 if first == "yes" else 1)

    run_bounded(scenario())


def test_an_old_forget_confirmation_erases_nothing(tmp_path: Path) -> None:
    """"Yes, erase" tapped long after /forget asked (scrolling back, say) erases nothing
    and says how to erase; a prompt answer still erases."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            h.api.messages[(CHAT, confirm["message_id"])]["date"] -= (
                FORGET_CONFIRM_SECONDS + 60)
            answers = len(h.query_answers())
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert len(h.query_answers()) == answers + 1
            assert h.rows(CHAT) == 1
            expired = h.api.messages[(CHAT, confirm["message_id"])]
            assert expired["text"] == h.message_text("forget.expired")
            assert "reply_markup" not in expired
            assert h.state(CHAT) == "asking_bladder"  # the check-in carries on

            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            h.api.messages[(CHAT, confirm["message_id"])]["date"] -= (
                FORGET_CONFIRM_SECONDS - 60)
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 0

    run_bounded(scenario())


@pytest.mark.parametrize("ahead", [1200, -1200])
def test_forget_times_its_confirmation_on_telegrams_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: int) -> None:
    """With the bot's clock 20 minutes off Telegram's, a prompt "Yes, erase" still erases
    (fast, it would look too old) and an old one still does not (slow, it would look new);
    and nothing of the person is kept in memory afterwards either."""
    real = time.time
    monkeypatch.setattr(telegram_bot, "time", SimpleNamespace(
        time=lambda: real() + ahead, monotonic=time.monotonic))

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.choose(CHAT, "agree")
            await h.choose(CHAT, "yes")  # an emergency answer, at its end
            await h.choose(CHAT, "sources")  # kept in memory with the session, as shown
            backbot = h.app.bot_data["backbot"]
            assert any(key[0] == CHAT for key in backbot._shown_on_tap)

            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            h.api.messages[(CHAT, confirm["message_id"])]["date"] -= (
                FORGET_CONFIRM_SECONDS + 60)
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 1

            await h.send(CHAT, "/forget")
            confirm = h.current(CHAT)
            await h.tap(CHAT, confirm["message_id"], "f|yes")
            assert h.rows(CHAT) == 0
            assert not any(key[0] == CHAT for key in backbot._shown_on_tap)

    run_bounded(scenario())


def test_the_retention_purge_leaves_nothing_of_a_session_in_memory(tmp_path: Path) -> None:
    """A session idle past retention is erased from memory too: the taps kept to answer a
    double tap hold the session, answers and all."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            for chat in (CHAT, CHAT + 1):
                await h.send(chat, "/start")
                await h.choose(chat, "agree")
                await h.choose(chat, "yes")  # an emergency answer, at its end
                await h.choose(chat, "sources")  # kept in memory with the session
            backbot = h.app.bot_data["backbot"]
            assert {key[0] for key in backbot._shown_on_tap} == {CHAT, CHAT + 1}

            with contextlib.closing(sqlite3.connect(h.db_path)) as db, db:
                db.execute("UPDATE sessions SET updated_at = 0 WHERE user_id = ?", (CHAT,))
            assert h.app.job_queue is not None
            [purge] = h.app.job_queue.get_jobs_by_name("purge-sessions")
            await purge.run(h.app)
            assert h.rows(CHAT) == 0 and h.rows(CHAT + 1) == 1
            assert {key[0] for key in backbot._shown_on_tap} == {CHAT + 1}

    run_bounded(scenario())


def test_a_tap_on_a_message_too_old_to_see_shows_the_current_question(tmp_path: Path) -> None:
    """Without the message's date (date 0), nothing tells an earlier check-in's button from
    the current one: it answers nothing, and the current question comes again."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            before = h.snapshot(CHAT)
            data = h.data_for(h.current(CHAT), "yes")
            update = h.api.push_update({"callback_query": {
                "id": "old-tap", "from": {"id": CHAT, "is_bot": False, "first_name": "Ana"},
                "chat_instance": "ci", "data": data,
                "message": {"message_id": 1, "date": 0,
                            "chat": {"id": CHAT, "type": "private"}}}})
            sent = len(h.sent_texts(CHAT))
            await h.processed(update)
            assert h.snapshot(CHAT) == before  # no emergency answer from an unknown past
            assert h.query_answers()[-1].get("text") == "We've already moved past that question."
            assert h.sent_texts(CHAT)[sent:][-1] == h.message_text("question.bladder")

    run_bounded(scenario())


def test_forget_on_a_message_too_old_to_see_says_so_in_a_new_one(tmp_path: Path) -> None:
    """Telegram sends a tap on a message too old for the bot without it (date 0): it was
    asked too long ago to erase anything, and cannot be edited, so the answer comes as a
    message of its own, never as silence."""
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await at_bladder_question(h)
            update = h.api.push_update({"callback_query": {
                "id": "old-confirm", "from": {"id": CHAT, "is_bot": False, "first_name": "Ana"},
                "chat_instance": "ci", "data": "f|yes",
                "message": {"message_id": 1, "date": 0,
                            "chat": {"id": CHAT, "type": "private"}}}})
            before = len(h.sent_texts(CHAT))
            await h.processed(update)
            assert h.rows(CHAT) == 1
            assert h.sent_texts(CHAT)[before:] == [h.message_text("forget.expired")]
            assert h.calls(CHAT, "editMessageText")[-1].params["text"] != (
                h.message_text("forget.expired"))

    run_bounded(scenario())


@pytest.mark.parametrize("failing_once", [False, True])
def test_forget_leaves_no_copy_in_the_files_even_if_nothing_is_written_after(
        tmp_path: Path, failing_once: bool) -> None:
    """Older copies of an erased row stay in the write-ahead log until it is cut back; the
    bot may go quiet after a /forget, so its next checkpoint cuts it back itself."""
    session_bytes = b'"dialog":"screening@'  # in every stored session, in no other table

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("db.sqlite3*"))

    async def scenario() -> None:
        # Checkpoints only when the test runs the job, so none falls in between.
        async with bot_session(tmp_path, checkpoint_every=3600) as h:
            assert h.app.job_queue is not None
            job, = h.app.job_queue.get_jobs_by_name("checkpoint")
            await at_bladder_question(h)
            await h.send(CHAT, "/forget")
            await h.tap(CHAT, h.current(CHAT)["message_id"], "f|yes")
            assert h.rows(CHAT) == 0
            assert session_bytes in on_disk()  # the log still holds the row's older pages
            if failing_once:  # that checkpoint fails: the next one still empties the log
                real = telegram_app.checkpoint

                def failing(*args: object, **kwargs: object) -> bool:
                    telegram_app.checkpoint = real  # type: ignore[assignment]
                    raise sqlite3.OperationalError("disk I/O error")

                telegram_app.checkpoint = failing  # type: ignore[assignment]
                try:
                    await job.run(h.app)
                finally:
                    telegram_app.checkpoint = real  # type: ignore[assignment]
                assert session_bytes in on_disk()
            await job.run(h.app)
            assert session_bytes not in on_disk()
            assert (tmp_path / "db.sqlite3-wal").stat().st_size == 0

    run_bounded(scenario())
