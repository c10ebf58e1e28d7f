"""Groups: the private hand-off (/start, /check), silence on chatter, the deep link, /tip.

The real Application (build_application) polls FakeBotAPI on 127.0.0.1; see group_harness.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.content import Card
from bot.deeplinks import PAYLOAD, is_group_payload

try:  # works whether or not tests/ is a package
    from group_harness import FakeBotAPI, eventually, msg, plain, run, running_bot
    from group_harness import engine as shipped_engine
except ImportError:  # pragma: no cover - depends on how pytest sets up sys.path
    from tests.group_harness import FakeBotAPI, eventually, msg, plain, run, running_bot
    from tests.group_harness import engine as shipped_engine

BOT = "backbot_test_bot"
USER = 770_001  # the member who types in the groups
SUPERGROUP = -100_111_000_001
BASIC_GROUP = -111_002
GROUPS = [(SUPERGROUP, "supergroup"), (BASIC_GROUP, "group")]
HANDOFF_COMMANDS = ["/start", f"/start@{BOT}", "/check", f"/check@{BOT}", "/start hello"]

CONTENT = shipped_engine().content


# Everything the dialog ever asks: none of it may be shown in a group.
QUESTIONS = sorted(text for key, text in CONTENT.messages.items()
                   if key.startswith("question.") or key.endswith(".question"))


# -- assertions --

def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


def assert_checkin_button(message: dict[str, Any], user_id: int = USER) -> str:
    """One URL button to t.me/<bot>?start=<payload>; returns the payload."""
    [button] = buttons(message)
    assert button["text"] == msg("group.start_button")
    assert "callback_data" not in button
    url = urlsplit(button["url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "t.me", f"/{BOT}")
    [payload] = parse_qs(url.query, strict_parsing=True)["start"]
    assert PAYLOAD.match(payload), payload
    assert is_group_payload(payload), payload
    assert str(user_id) not in payload  # names the group, never the person
    return payload


def assert_nothing_asked(messages: list[dict[str, Any]]) -> None:
    """No screening in a group: no answer buttons, no question text."""
    assert QUESTIONS
    for message in messages:
        assert all("callback_data" not in button for button in buttons(message)), message
        shown = plain(message["text"])
        for question in QUESTIONS:
            assert question not in shown, (question, shown)


# -- 1. the hand-off --

def test_group_start_and_check_hand_off_to_a_private_deep_link(api: FakeBotAPI,
                                                              tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            payloads: dict[int, set[str]] = {}
            for chat, kind in GROUPS:
                for command in HANDOFF_COMMANDS:
                    reply = await bot.say(chat, command, user_id=USER, chat_type=kind)
                    assert plain(reply["text"]) == msg("group.start")
                    payloads.setdefault(chat, set()).add(assert_checkin_button(reply))
            await bot.settle()
            for chat, _ in GROUPS:
                # exactly one reply per command, each one a reply in that group
                assert len(bot.sends(chat)) == len(HANDOFF_COMMANDS)
                assert_nothing_asked(api.sent_to(chat))
            # one stable payload per group, and the two groups' payloads differ
            assert all(len(found) == 1 for found in payloads.values())
            assert payloads[SUPERGROUP] != payloads[BASIC_GROUP]
            # nothing went to the member privately, and no session was started for them
            assert api.sent_to(USER) == []
            assert bot.db.execute("SELECT count(*) FROM sessions WHERE user_id = ?",
                                  (USER,)).fetchone()[0] == 0
            assert bot.errors == [] and api.errors == []

    run(scenario())


# -- 2. silence in a group --

def test_group_chatter_gets_no_reply_and_forged_buttons_do_nothing(api: FakeBotAPI,
                                                                  tmp_path: Path) -> None:
    chatter = ["hello everyone", "my back hurts", "yes", "1", "Yes, let's start",
               "/start@some_other_bot", "/help@some_other_bot", "/privacy", "/restart",
               "/forget", "/back"]

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            for chat, kind in GROUPS:
                for text in chatter:  # the fake delivers them all (privacy mode off)
                    api.send_text(chat, text, user_id=USER, chat_type=kind)
            await bot.settle(pause=0.3)
            for chat, _ in GROUPS:
                assert bot.sends(chat) == [], [c.params["text"] for c in bot.sends(chat)]

            # forged answers tapped on the bot's own message in a group
            handoff = await bot.say(SUPERGROUP, "/start", user_id=USER)
            forged = ["a|0.0.0|agree", "f|yes", "garbage", "a|x|y|z"]
            for data in forged:
                api.tap(SUPERGROUP, handoff["message_id"], data, user_id=USER,
                        chat_type="supergroup")
            await eventually(lambda: len(api.calls_to("answerCallbackQuery")) == len(forged),
                             what="every forged tap answered")
            await bot.settle(pause=0.3)
            answers = api.calls_to("answerCallbackQuery")
            assert len(answers) == len(forged)
            assert all(a.params.get("text") == msg("button.not_here") for a in answers)
            assert len(bot.sends(SUPERGROUP)) == 1  # only the /start hand-off
            assert api.sent_to(USER) == []
            assert api.calls_to("editMessageText") == []
            assert api.calls_to("editMessageReplyMarkup") == []
            assert bot.db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
            assert_nothing_asked(api.sent_to(SUPERGROUP))
            assert bot.errors == [] and api.errors == []

    run(scenario())


# -- 3. the deep link in private --

def private_start(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["text"], m.get("reply_markup")) for m in messages]


def test_deep_link_notes_the_group_then_asks_for_consent(api: FakeBotAPI,
                                                        tmp_path: Path) -> None:
    user = 880_001

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            handoff = await bot.say(SUPERGROUP, "/start", user_id=user)
            payload = assert_checkin_button(handoff, user)
            api.send_text(user, f"/start {payload}", user_id=user)
            first, question = await bot.wait_sent(user, 2)
            await bot.settle()
            assert len(api.sent_to(user)) == 2

            note, intro = msg("group.from_group"), msg("welcome.intro")
            shown = plain(first["text"])
            assert shown.startswith(note)
            assert intro in shown and shown.index(note) < shown.index(intro)
            assert buttons(first) == []

            assert plain(question["text"]) == msg("welcome.question").format(retention_days=30)
            labels = [b["text"] for b in buttons(question)]
            assert labels == [msg("choice.agree"), msg("choice.privacy"), msg("choice.stop")]
            assert all("callback_data" in b for b in buttons(question))
            # the group hears nothing about who followed the link
            assert len(bot.sends(SUPERGROUP)) == 1
            assert bot.errors == []

    run(scenario())


MALFORMED_PAYLOADS = [
    "bad payload!!",
    "g" + "1" * 64,  # 65 characters: too long to be a payload, digits or not
    "a" * 80,
    "g12ab",
    "g",
    "g_",
    "g_12_3",
    "hello",
]


def test_malformed_deep_link_behaves_like_plain_start(api: FakeBotAPI, tmp_path: Path) -> None:
    plain_user = 880_010

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            api.send_text(plain_user, "/start", user_id=plain_user)
            await bot.wait_sent(plain_user, 2)
            users = {payload: 880_100 + n for n, payload in enumerate(MALFORMED_PAYLOADS)}
            for payload, user in users.items():
                api.send_text(user, f"/start {payload}", user_id=user)
            for user in users.values():
                await bot.wait_sent(user, 2)
            await bot.settle()
            expected = private_start(api.sent_to(plain_user))
            assert plain(expected[0][0]).startswith(msg("welcome.intro"))
            for payload, user in users.items():
                got = private_start(api.sent_to(user))
                assert got == expected, payload
                assert all(msg("group.from_group") not in plain(text) for text, _ in got)
            assert bot.errors == []

    run(scenario())


# -- 4. /tip --

def tip_card_of(text: str, tips: list[Card]) -> Card:
    [card] = [c for c in tips if f"<b>{html.escape(c.title, quote=False)}</b>" in text]
    return card


def assert_tip_message(text: str, card: Card) -> None:
    assert '<a href="http' in text  # the card's citation link
    assert plain(text).count(card.title) >= 1
    doctor = msg("tip.doctor_first")
    if "activity" in card.tags:
        assert doctor in plain(text)
        assert text.index(html.escape(doctor, quote=False)) < text.index(
            f"<b>{html.escape(card.title, quote=False)}</b>")


def test_tip_in_group_and_private_for_every_tip_card(api: FakeBotAPI, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    private_user = 880_020

    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            tips = list(bot.groups.tips)
            assert tips and tips == CONTENT.cards_tagged("tip")
            assert any("activity" in card.tags for card in tips)
            for card in tips:
                monkeypatch.setattr(bot.groups, "tips", [card])
                in_group = await bot.say(SUPERGROUP, "/tip", user_id=USER)
                assert tip_card_of(in_group["text"], tips) == card
                assert_tip_message(in_group["text"], card)
                assert_checkin_button(in_group)

            monkeypatch.setattr(bot.groups, "tips", tips)
            for command in ("/tip", f"/tip@{BOT}"):  # the random pick is a real tip card
                reply = await bot.say(BASIC_GROUP, command, user_id=USER, chat_type="group")
                assert_tip_message(reply["text"], tip_card_of(reply["text"], tips))
                assert_checkin_button(reply)

            monkeypatch.setattr(bot.groups, "tips", [])
            empty = await bot.say(SUPERGROUP, "/tip", user_id=USER)
            assert plain(empty["text"]) == msg("tip.none")

            # In private, before the doctor prompt was acknowledged, /tip offers only tips
            # that name no activity (and carries no check-in button).
            offered: list[list] = []

            def first(candidates: list) -> object:
                offered.append(list(candidates))
                return candidates[0]

            monkeypatch.setattr("bot.engine.random.choice", first)
            in_private = await bot.say(private_user, "/tip", user_id=private_user,
                                       chat_type="private")
            assert offered and offered[0]
            assert all("activity" not in card.tags for card in offered[0])
            assert tip_card_of(in_private["text"], tips) == offered[0][0]
            assert buttons(in_private) == []

            await bot.settle()
            assert len(bot.sends(SUPERGROUP)) == len(tips) + 1
            assert len(bot.sends(private_user)) == 1
            assert len(bot.sends(BASIC_GROUP)) == 2
            assert_nothing_asked(api.sent_to(SUPERGROUP) + api.sent_to(BASIC_GROUP))
            assert bot.db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
            assert bot.errors == []

    run(scenario())


def test_every_tip_that_names_an_activity_is_tagged_activity(
        find_activity: Callable[[str], str | None]) -> None:
    """Content guard: the doctor-first line hangs on the `activity` tag, so a tip card that
    names an activity without that tag would go out with no "ask your doctor" line."""
    for card in CONTENT.cards_tagged("tip"):
        named = find_activity(f"{card.title} {card.body}")
        assert named is None or "activity" in card.tags, (card.id, named)


def test_group_sources_lists_every_source_with_a_link(api: FakeBotAPI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            reply = await bot.say(SUPERGROUP, "/sources", user_id=USER)
            await bot.settle()
            assert len(bot.sends(SUPERGROUP)) == 1
            assert plain(reply["text"]).startswith(msg("sources.header"))
            for source in CONTENT.sources.values():
                assert f'<a href="{html.escape(source.url)}">' in reply["text"]
            assert buttons(reply) == []
            assert bot.errors == []

    run(scenario())


def test_group_help_introduces_the_bot_with_the_check_in_button(api: FakeBotAPI,
                                                                tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(api, tmp_path / "db.sqlite3") as bot:
            reply = await bot.say(SUPERGROUP, "/help", user_id=USER)
            await bot.settle()
            assert len(bot.sends(SUPERGROUP)) == 1
            assert plain(reply["text"]) == msg("group.intro")
            [[button]] = reply["reply_markup"]["inline_keyboard"]
            assert button["url"].startswith(f"https://t.me/{BOT}?start=g_100")
            assert bot.rows() == [] and bot.errors == []

    run(scenario())
