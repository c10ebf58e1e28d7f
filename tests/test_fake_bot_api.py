"""Tests for the fake Bot API, driven through a real ``telegram.Bot`` (PTB 22)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    AIORateLimiter,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)
from telegram.request import HTTPXRequest

try:  # works whether or not tests/ is a package
    from fake_bot_api import Call, FakeBotAPI, UploadedFile
except ImportError:  # pragma: no cover - depends on how pytest sets up sys.path
    from tests.fake_bot_api import Call, FakeBotAPI, UploadedFile

T = TypeVar("T")

# Generous for localhost, but small enough that a broken fake fails fast instead of hanging.
TEST_TIMEOUT = 5.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with a hard bound, so no pytest-asyncio configuration is needed."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def make_bot(api: FakeBotAPI, token: str | None = None) -> Bot:
    request = HTTPXRequest(connect_timeout=1.0, read_timeout=3.0, write_timeout=1.0,
                           httpx_kwargs={"trust_env": False})
    return Bot(token or api.token, base_url=api.base_url, request=request)


def keyboard(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=label)] for label in labels]
    )


def test_binds_to_loopback_ephemeral_port(api: FakeBotAPI) -> None:
    assert api.base_url == f"http://127.0.0.1:{api.port}/bot"
    assert api.port > 0


def test_get_me(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        async with make_bot(api) as bot:  # initialize() itself calls getMe
            me = await bot.get_me()
            assert me.id == api.bot_id
            assert me.username == "backbot_test_bot"
            assert me.first_name == "backbot"
            assert me.is_bot and me.can_join_groups
            assert me.can_read_all_group_messages is False

    run(scenario())
    assert api.calls_to("getMe")
    assert all(isinstance(c, Call) and c.ok for c in api.calls)


def test_send_message_stores_and_echoes_keyboard(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        async with make_bot(api) as bot:
            first = await bot.send_message(42, "Hello", reply_markup=keyboard("yes", "no"))
            second = await bot.send_message(42, "42")  # numeric text must stay a string
            assert first.message_id == 1 and second.message_id == 2
            assert first.from_user is not None and first.from_user.id == api.bot_id
            assert first.chat.id == 42 and first.chat.type == "private"
            assert first.reply_markup == keyboard("yes", "no")

    run(scenario())
    call = api.calls_to("sendMessage")[0]
    assert call.params["chat_id"] == 42
    # reply_markup arrives JSON-encoded and is decoded for assertions.
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"
    assert [m["text"] for m in api.sent_to(42)] == ["Hello", "42"]
    last = api.last_message(42)
    assert last is not None and last["text"] == "42"
    assert api.messages[(42, 1)]["reply_markup"]["inline_keyboard"][1][0]["text"] == "no"
    assert api.last_message(7) is None


def test_edit_message_text(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        async with make_bot(api) as bot:
            sent = await bot.send_message(5, "Pick one", reply_markup=keyboard("a"))
            edited = await bot.edit_message_text(
                "Picked a", chat_id=5, message_id=sent.message_id, reply_markup=keyboard("a")
            )
            assert isinstance(edited, type(sent)) and edited.text == "Picked a"
            with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
                await bot.edit_message_text(
                    "Picked a", chat_id=5, message_id=sent.message_id, reply_markup=keyboard("a")
                )
            # Same text but dropping the keyboard is a real change.
            await bot.edit_message_text("Picked a", chat_id=5, message_id=sent.message_id)
            with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
                await bot.edit_message_text("x", chat_id=5, message_id=999)
            with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
                await bot.edit_message_reply_markup(chat_id=5, message_id=sent.message_id)

    run(scenario())
    stored = api.messages[(5, 1)]
    assert stored["text"] == "Picked a" and "reply_markup" not in stored
    assert [c.ok for c in api.calls_to("editMessageText")] == [True, False, True, False]
    assert api.calls_to("editMessageText")[1].error_code == 400


def test_get_updates_long_poll_and_offset(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        async with make_bot(api) as bot:
            loop = asyncio.get_running_loop()
            # Pushed from another thread while the request is already blocked in the fake.
            loop.call_later(0.1, lambda: loop.run_in_executor(None, api.send_text, 7, "/start"))
            # woken by the push (0.1 s in): left to its 60 s timeout, the bound fails it
            updates = await asyncio.wait_for(bot.get_updates(timeout=60, read_timeout=70), 20)
            assert len(updates) == 1
            update = updates[0]
            assert isinstance(update, Update) and update.message is not None
            assert update.message.text == "/start"
            assert update.message.from_user is not None and update.message.from_user.id == 7
            assert update.message.entities[0].type == "bot_command"
            assert update.message.entities[0].length == len("/start")

            second = api.send_text(7, "/help@backbot_test_bot rest")
            again = await bot.get_updates(offset=update.update_id, timeout=0)
            assert [u.update_id for u in again] == [update.update_id, second]
            confirmed = await bot.get_updates(offset=second + 1, timeout=0)
            assert confirmed == ()
            assert api.pending_updates == []

            # Nothing pending: the long poll returns empty after its (short) timeout.
            started = time.monotonic()
            assert await bot.get_updates(offset=second + 1, timeout=0.3) == ()
            assert time.monotonic() - started > 0.25  # it did wait (and came back)

    run(scenario())
    assert api.calls_to("getUpdates")[0].params["timeout"] == 60


def test_update_builders_parse_in_ptb(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        async with make_bot(api) as bot:
            sent = await bot.send_message(9, "Menu", reply_markup=keyboard("go"))
            api.tap(9, sent.message_id, "go", callback_id="cb1")
            api.send_sticker(9)
            api.send_photo(9)
            api.edit_text(9, 1, "fixed")
            api.channel_post(-1005, "news")
            api.my_chat_member(-1006, "supergroup", "left", "administrator", by_user_id=77)
            api.send_text(-1006, "/start@backbot_test_bot", user_id=77, chat_type="supergroup")
            updates = await bot.get_updates(timeout=0)
            assert len(updates) == 7
            tap = updates[0].callback_query
            assert tap is not None and tap.data == "go" and tap.id == "cb1"
            assert tap.message is not None and tap.message.message_id == sent.message_id
            assert tap.message.reply_markup == keyboard("go")
            assert updates[1].message is not None and updates[1].message.sticker is not None
            assert updates[2].message is not None and updates[2].message.photo
            assert updates[3].edited_message is not None
            assert updates[4].channel_post is not None
            assert updates[4].channel_post.chat.title == "Rehab channel"
            member = updates[5].my_chat_member
            assert member is not None and member.new_chat_member.status == "administrator"
            group_msg = updates[6].message
            assert group_msg is not None and group_msg.chat.type == "supergroup"
            assert group_msg.entities[0].length == len("/start@backbot_test_bot")

    run(scenario())


def test_hang_up_next_carries_the_call_out_but_sends_no_answer(api: FakeBotAPI) -> None:
    api.hang_up_next("sendMessage", chat_id=11)

    async def scenario() -> None:
        async with make_bot(api) as bot:
            await bot.send_message(12, "other chat is unaffected")
            with pytest.raises(NetworkError) as info:
                await bot.send_message(11, "hi")
            assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
            await bot.send_message(11, "hi again")  # only the next call

    run(scenario())
    assert [m["text"] for m in api.sent_to(11)] == ["hi", "hi again"]  # it did go out
    assert [c.ok for c in api.calls_to("sendMessage")] == [True, True, True]


# RetryAfter.__init__ itself trips PTB 22's int-vs-timedelta deprecation warning.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_fail_next_retry_after(api: FakeBotAPI) -> None:
    api.fail_next("sendMessage", retry_after=3, chat_id=11)

    async def scenario() -> None:
        async with make_bot(api) as bot:
            await bot.send_message(12, "other chat is unaffected")
            with pytest.raises(RetryAfter) as info:
                await bot.send_message(11, "hi")
            assert "Retry in 3 seconds" in str(info.value)
            await bot.send_message(11, "hi again")  # only the next call failed

    run(scenario())
    assert [c.ok for c in api.calls_to("sendMessage")] == [True, False, True]
    assert api.calls_to("sendMessage")[1].error_code == 429
    assert [m["text"] for m in api.sent_to(11)] == ["hi again"]


def test_fail_next_bad_request(api: FakeBotAPI) -> None:
    api.fail_next("answerCallbackQuery", description="Bad Request: query is too old", count=2)

    async def scenario() -> None:
        async with make_bot(api) as bot:
            for _ in range(2):
                with pytest.raises(BadRequest, match=r"(?i)query is too old"):
                    await bot.answer_callback_query("123")
            assert await bot.answer_callback_query("123") is True

    run(scenario())
    assert api.calls_to("answerCallbackQuery")[0].params["callback_query_id"] == "123"


def test_block_user(api: FakeBotAPI) -> None:
    api.block_user(13)

    async def scenario() -> None:
        async with make_bot(api) as bot:
            with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
                await bot.send_message(13, "hi")
            with pytest.raises(Forbidden):
                await bot.send_chat_action(13, "typing")
            api.unblock_user(13)
            assert (await bot.send_message(13, "back")).text == "back"

    run(scenario())
    assert [m["text"] for m in api.sent_to(13)] == ["back"]


def test_get_chat_member_status(api: FakeBotAPI) -> None:
    api.set_member_status(-100200, 55, "administrator")
    api.set_member_status(-100200, 56, "restricted")
    api.set_member_status(-100200, 57, "kicked")

    async def scenario() -> None:
        async with make_bot(api) as bot:
            admin = await bot.get_chat_member(-100200, 55)
            assert admin.status == "administrator" and admin.user.id == 55
            assert (await bot.get_chat_member(-100200, 56)).status == "restricted"
            assert (await bot.get_chat_member(-100200, 57)).status == "kicked"
            assert (await bot.get_chat_member(-100200, 58)).status == "member"
            admins = await bot.get_chat_administrators(-100200)
            assert [a.user.id for a in admins] == [55]
            chat = await bot.get_chat(-100200)
            assert chat.type == "supergroup"

    run(scenario())


def test_commands_and_webhook_methods(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        async with make_bot(api) as bot:
            assert await bot.set_my_commands([("start", "Begin"), ("help", "Help")])
            commands = await bot.get_my_commands()
            assert [c.command for c in commands] == ["start", "help"]
            assert await bot.delete_my_commands()
            assert await bot.get_my_commands() == ()
            assert await bot.delete_webhook(drop_pending_updates=True)
            info = await bot.get_webhook_info()
            assert info.url == "" and info.pending_update_count == 0

    run(scenario())


def test_wrong_token_is_rejected(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        bot = make_bot(api, token="999:WRONG")
        with pytest.raises(InvalidToken):
            await bot.get_me()
        await bot.shutdown()

    run(scenario())
    assert api.calls == []  # unauthenticated requests never reach the recorder


def test_unknown_method_and_wait_for(api: FakeBotAPI) -> None:
    async def scenario() -> None:
        async with make_bot(api) as bot:
            with pytest.raises(EndPointNotFound):  # what PTB makes of Telegram's 404
                await bot.do_api_request("noSuchMethod")

    run(scenario())
    assert api.wait_for_calls("noSuchMethod", 1, timeout=0.5)
    assert not api.wait_for_calls("sendMessage", 1, timeout=0.05)
    assert api.wait_for(lambda calls: any(not c.ok for c in calls), timeout=0.5)
    api.clear_calls()
    assert api.calls == []


def test_parses_form_json_and_multipart_bodies(api: FakeBotAPI) -> None:
    url = f"{api.base_url}{api.token}"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        form = client.post(
            f"{url}/sendMessage",
            data={"chat_id": "3", "text": "true", "reply_markup": '{"inline_keyboard": []}'},
        )
        assert form.json()["ok"] is True
        as_json = client.post(f"{url}/sendMessage", json={"chat_id": 3, "text": "7"})
        assert as_json.json()["result"]["message_id"] == 2
        upload = client.post(
            f"{url}/sendPhoto",
            data={"chat_id": "3", "caption": "123"},
            files={"photo": ("x.jpg", b"\xff\xd8jpeg", "image/jpeg")},
        )
        assert upload.status_code == 404  # not implemented, but still parsed and recorded
        unauthorized = client.post(f"{api.base_url}999:WRONG/getMe")
        assert unauthorized.status_code == 401
        assert unauthorized.json() == {
            "ok": False,
            "error_code": 401,
            "description": "Unauthorized",
        }
    first, second = api.calls_to("sendMessage")
    assert first.params == {"chat_id": 3, "text": "true", "reply_markup": {"inline_keyboard": []}}
    assert second.params == {"chat_id": 3, "text": "7"}
    photo = api.calls_to("sendPhoto")[0]
    assert photo.ok is False and photo.error_code == 404
    assert photo.params["chat_id"] == 3 and photo.params["caption"] == "123"
    uploaded = photo.params["photo"]
    assert isinstance(uploaded, UploadedFile) and uploaded.data == b"\xff\xd8jpeg"


def test_stop_releases_a_blocked_long_poll() -> None:
    api = FakeBotAPI().start()
    url = f"{api.base_url}{api.token}/getUpdates"
    result: list[httpx.Response] = []
    poller = threading.Thread(
        target=lambda: result.append(httpx.post(url, data={"timeout": "60"}, timeout=70.0,
                                                trust_env=False))
    )
    poller.start()
    # Only stop once the request is really parked inside the fake.
    assert api.wait_for(lambda _: api._long_polls > 0, timeout=20.0)
    api.stop()
    poller.join(timeout=20.0)
    # released by the stop, not by the poll's own 60 s timeout
    assert not poller.is_alive()
    assert result and result[0].json() == {"ok": True, "result": []}


def test_application_polling_round_trip(api: FakeBotAPI) -> None:
    """The intended use: a full PTB Application polling the fake."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("Hi!", reply_markup=keyboard("go"))

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer()
        await update.callback_query.edit_message_text("Went")

    async def scenario() -> None:
        app = (
            ApplicationBuilder()
            .token(api.token)
            .base_url(api.base_url)
            .rate_limiter(AIORateLimiter())
            .build()
        )
        app.add_handler(CommandHandler("start", start))
        app.add_handler(CallbackQueryHandler(pressed))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            try:
                api.send_text(42, "/start")
                assert await asyncio.to_thread(api.wait_for_calls, "sendMessage", 1, 2.0)
                sent = api.last_message(42)
                assert sent is not None and sent["text"] == "Hi!"
                api.tap(42, sent["message_id"], "go")
                assert await asyncio.to_thread(api.wait_for_calls, "editMessageText", 1, 2.0)
            finally:
                await app.updater.stop()
                await app.stop()

    run(scenario())
    last = api.last_message(42)
    assert last is not None and last["text"] == "Went" and "reply_markup" not in last
    assert api.calls_to("deleteWebhook") and api.calls_to("answerCallbackQuery")
    assert api.errors == []
