"""The screening dialog over Telegram: full path, every disposition, commands, restarts.

Each test runs the real Application (long polling) against the fake Bot API on 127.0.0.1.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest
import yaml
from telegram_harness import (
    MAX_CALLBACK_BYTES,
    RED_FLAGS_NO,
    TO_DOCTOR_PROMPT,
    TO_SUGGESTIONS,
    BotHarness,
    FakeBotAPI,
    assert_telegram_html,
    bot_session,
    callback_data,
    find_activity,
    no_proxy,
    run_bounded,
)

from bot import paths

CHAT = 1001


def button_labels(harness: BotHarness, chat_id: int) -> list[str]:
    """Labels of every button the bot sent into the chat."""
    return [button["text"]
            for call in harness.calls(chat_id, "sendMessage") if call.ok
            for row in (call.params.get("reply_markup") or {}).get("inline_keyboard", [])
            for button in row]


def assert_wire_format(harness: BotHarness, chat_id: int) -> None:
    """Every text is valid Telegram HTML sent with parse_mode HTML; callback data fits."""
    calls = harness.calls(chat_id, "sendMessage", "editMessageText")
    assert calls
    for call in calls:
        assert call.params.get("parse_mode") == "HTML", call
        assert_telegram_html(call.params["text"])
    for call in harness.calls(chat_id, "sendMessage"):
        markup = call.params.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            for button in row:
                assert len(button["callback_data"].encode()) <= MAX_CALLBACK_BYTES, button


# ------------------------------------------------------------------------------ 1. full path


def test_full_path_to_suggestions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            api = h.api
            await h.send(CHAT, "/start")
            welcome = h.current(CHAT)
            assert [d.rsplit("|", 1)[1] for d in callback_data(welcome)] == [
                "agree", "privacy", "stop"]
            assert h.message_text("welcome.intro") in h.sent_texts(CHAT)

            tapped: list[tuple[int, str]] = []  # (message id, chosen label)
            replies: dict[str, list[str]] = {}
            before_ack: list[str] = []
            for number, choice in enumerate(TO_SUGGESTIONS):
                question = h.current(CHAT)
                data = h.data_for(question, choice)
                label = next(b["text"] for row in question["reply_markup"]["inline_keyboard"]
                             for b in row if b["callback_data"] == data)
                if choice == "understood":
                    # Everything the user has seen so far: messages, edits, button labels.
                    before_ack = [*h.all_texts(CHAT), *button_labels(h, CHAT)]
                replies[f"{number}:{choice}"] = await h.step(CHAT, choice)
                tapped.append((question["message_id"], label))

            # Every callback query was answered, each exactly once.
            answered = [p["callback_query_id"] for p in h.query_answers()]
            assert len(answered) == h.taps == len(TO_SUGGESTIONS)
            assert len(set(answered)) == len(answered)

            # Each answered question now shows the answer, and its keyboard is gone.
            edits = {c.params["message_id"]: c for c in h.calls(CHAT, "editMessageText")}
            for message_id, label in tapped:
                stored = api.messages[(CHAT, message_id)]
                assert "Your answer:" in stored["text"], stored
                assert f"<b>{html.escape(label, quote=False)}</b>" in stored["text"], stored
                assert "reply_markup" not in stored, stored
                assert "reply_markup" not in edits[message_id].params

            # The why cards cite their sources with links.
            # the clearance answer, just before "next", leads to the why cards
            why = "\n".join(replies[f"{len(TO_DOCTOR_PROMPT) - 2}:yes"])
            assert h.message_text("why.intro") in why
            assert '<a href="https://www.livestrong.com/' in why
            assert '<a href="https://www.harbourviewtherapy.com/' in why
            doctor = "\n".join(replies[f"{len(TO_DOCTOR_PROMPT) - 1}:next"])
            assert h.message_text("doctor.prompt") in doctor

            # Nothing before the doctor prompt was acknowledged names an activity.
            assert before_ack
            for text in before_ack:
                assert find_activity(text) is None, text

            # The suggestions fit the answers: pool yes, bike yes + leaning, no elliptical.
            final = "\n".join(replies[f"{len(TO_SUGGESTIONS) - 1}:no"])
            assert "Recumbent" in final
            assert "<b>Pool workouts</b>" in final
            assert "<b>Upright exercise bike</b>" not in final
            assert "<b>Elliptical trainer</b>" not in final
            assert h.message_text("reminder.doctor") in final
            assert h.message_text("end.follows") in final
            end = h.current(CHAT)
            assert [d.rsplit("|", 1)[1] for d in callback_data(end)] == ["restart", "sources"]

            assert_wire_format(h, CHAT)
            assert h.state(CHAT) == "suggesting_activities"
            assert api.errors == []

    run_bounded(scenario())


# ---------------------------------------------------------------------------- 2. dispositions

DISPOSITIONS = {
    "emergency_bladder": (("agree", "yes"), "emergency_care", "emergency number"),
    "urgent_fever": (("agree", *RED_FLAGS_NO[:5], "yes"), "urgent_care",
                     "urgent appointment"),
    "shooting_pain": (("agree", *RED_FLAGS_NO[:8], "yes"), "nerve_pain_first",
                      "Electrical or shooting pain"),
    "fracture_not_cleared": (("agree", *RED_FLAGS_NO, "fracture", "no"), "fracture_first",
                             "spinal fracture needs a go-ahead"),
    "operation_not_cleared": (("agree", *RED_FLAGS_NO, "surgery", "unsure"), "surgery_first",
                              "Contact the hospital where you had the operation"),
    "declined_doctor": ((*TO_DOCTOR_PROMPT, "not_now"), "declined_doctor",
                        "I only suggest activities once"),
}


@pytest.mark.parametrize("name", list(DISPOSITIONS))
def test_disposition_names_no_activity(tmp_path: Path, name: str) -> None:
    choices, state, words = DISPOSITIONS[name]

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, *choices)
            conversation = [*h.all_texts(CHAT), *button_labels(h, CHAT)]
            assert any(words in text for text in h.sent_texts(CHAT)), h.sent_texts(CHAT)
            assert any(h.message_text("reminder.doctor") in t for t in h.sent_texts(CHAT))
            for text in conversation:
                assert find_activity(text) is None, text
            end = h.current(CHAT)
            assert [d.rsplit("|", 1)[1] for d in callback_data(end)] == ["restart", "sources"]
            assert h.state(CHAT) == state
            assert len(h.query_answers()) == h.taps == len(choices)
            assert_wire_format(h, CHAT)

    run_bounded(scenario())


# ---------------------------------------------------------------------- 7. restart mid-dialog


def test_restart_mid_dialog_resumes_and_old_buttons_work(tmp_path: Path) -> None:
    async def scenario() -> None:
        with FakeBotAPI() as api:
            async with bot_session(tmp_path, api=api) as first:
                await first.send(CHAT, "/start")
                await first.script(CHAT, "agree", "no", "no")  # now at the legs question
                old_question = first.current(CHAT)
                before = first.snapshot(CHAT)
            assert before is not None and before["state"] == "asking_legs"

            async with bot_session(tmp_path, api=api) as second:  # same file, new store
                assert second.snapshot(CHAT) == before
                replies = await second.say(CHAT, "/start")
                assert replies[0] == second.message_text("session.resumed")
                legs = second.message_text("question.legs")
                assert replies[-1] == legs
                assert callback_data(second.current(CHAT)) == callback_data(old_question)

                # A button on the message sent before the restart still answers it.
                data = second.data_for(old_question, "no")
                await second.tap(CHAT, old_question["message_id"], data)
                after = second.snapshot(CHAT)
                assert after is not None
                assert after["state"] == "asking_chest"
                assert after["answers"] == [*before["answers"], ["asking_legs", "no"]]
                assert second.sent_texts(CHAT)[-1] == second.message_text("question.chest")
                assert "Your answer:" in api.messages[(CHAT, old_question["message_id"])]["text"]
                assert second.query_answers()[-1].get("text") is None

    with no_proxy():
        run_bounded(scenario())


# -------------------------------------------------------------------------------- 9. commands


def test_commands_menu_help_privacy_sources(tmp_path: Path) -> None:
    sources = yaml.safe_load((paths.content_dir() / "sources.yaml").read_text())["sources"]

    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            # The command menu is set at start-up.
            calls = {c.params["scope"]["type"]: c.params["commands"]
                     for c in h.api.calls_to("setMyCommands")}
            assert set(calls) == {"all_private_chats", "all_group_chats"}
            menu = {c["command"]: c["description"] for c in calls["all_private_chats"]}
            assert {"start", "help", "back", "restart", "sources", "privacy", "forget"} <= set(
                menu)
            assert all(menu.values())
            # in groups, only what works there (no /back or /forget of a private check-in)
            group_menu = {c["command"] for c in calls["all_group_chats"]}
            assert group_menu == {"start", "check", "tip", "sources", "help", "dailytip"}
            # The hourly retention purge is scheduled.
            assert h.app.job_queue is not None
            assert h.app.job_queue.get_jobs_by_name("purge-sessions")

            await h.send(CHAT, "/start")
            await h.choose(CHAT, "agree")
            state = h.snapshot(CHAT)

            listed = "\n".join(await h.say(CHAT, "/sources"))
            assert h.message_text("sources.header") in listed
            for source in sources:
                link = (f'<a href="{html.escape(source["url"])}">'
                        f'{html.escape(source["title"], quote=False)}</a>')
                assert link in listed, source["id"]
            assert h.sent_texts(CHAT)[-1] == h.message_text("question.bladder")

            help_reply = await h.say(CHAT, "/help")
            assert help_reply[0] == h.message_text("help.text")
            assert help_reply[-1] == h.message_text("question.bladder")

            privacy = await h.say(CHAT, "/privacy")
            assert privacy[0] == h.message_text("privacy.note")
            assert "30 days" in privacy[0]
            assert h.snapshot(CHAT) == state  # showing things changes nothing
            assert_wire_format(h, CHAT)

    run_bounded(scenario())


def test_back_and_restart_commands(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            first = await h.say(CHAT, "/back")
            assert first[0] == h.message_text("error.nothing_to_go_back")

            await h.script(CHAT, "agree", "no")  # at the saddle question
            back = await h.say(CHAT, "/back")
            assert back[0].startswith(h.message_text("session.went_back"))
            assert back[-1] == h.message_text("question.bladder")
            snapshot = h.snapshot(CHAT)
            assert snapshot is not None
            assert snapshot["state"] == "asking_bladder"
            assert snapshot["answers"] == [["welcome", "agree"]]
            # The re-asked question can be answered differently.
            await h.choose(CHAT, "unsure")
            assert h.state(CHAT) == "unsure_of_emergency_sign"

            restart = await h.say(CHAT, "/restart")
            assert restart[0].startswith(h.message_text("session.restarted"))
            assert h.message_text("welcome.intro") in "\n".join(restart)
            assert restart[-1] == h.message_text("welcome.question")
            # Back at the consent question: nothing is kept until the person agrees again.
            assert h.snapshot(CHAT) is None
            # Agreeing again works: the unstored fresh start accepts its own buttons.
            await h.choose(CHAT, "agree")
            assert h.state(CHAT) == "asking_bladder"

    run_bounded(scenario())


def test_end_buttons_sources_and_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_session(tmp_path) as h:
            await h.send(CHAT, "/start")
            await h.script(CHAT, "agree", "yes")  # emergency
            end = h.current(CHAT)
            sources = await h.step(CHAT, "sources")
            assert h.message_text("sources.header") in sources[0]
            assert "https://www.nhs.uk/conditions/back-pain/" in sources[0]
            assert h.state(CHAT) == "emergency_care"
            # More text at the end says the check-in is finished, and shows the end
            # again: the emergency advice is never lost to a reply that failed.
            finished = await h.say(CHAT, "walk?")
            assert finished[0].startswith(h.message_text("session.finished"))
            assert h.message_text("disposition.emergency") in finished[0]
            assert finished[-1] == h.message_text("end.question")
            # "Start again" on the end message starts over at the welcome; until the
            # person agrees again, nothing about them is kept.
            answered_before = len(h.query_answers())
            await h.tap(CHAT, end["message_id"], h.data_for(end, "restart"))
            assert h.sent_texts(CHAT)[-1] == h.message_text("welcome.question")
            assert h.snapshot(CHAT) is None
            assert len(h.query_answers()) == answered_before + 1

    run_bounded(scenario())
