"""Shared helpers for the Telegram-layer tests: the real Application against FakeBotAPI.

Every test builds the bot exactly as production does (``build_application``) and runs it
for real (long polling against the fake on 127.0.0.1), then drives it by pushing updates
and reading what the fake recorded.

A test-only ``TypeHandler`` in a late handler group marks each update as fully processed
(it runs after the bot's own handler and after its error handler), so a script can await
"the bot has finished with update N" instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application, TypeHandler

from bot.config import Settings, load_settings
from bot.engine import Engine
from bot.loading import load_engine
from bot.store import SessionStore, open_database
from bot.telegram_app import CHECKPOINT_EVERY_SECONDS, build_application
from bot.telegram_limits import ChatRateLimiter

try:  # works whether or not tests/ is a package
    import conftest
    from fake_bot_api import Call, FakeBotAPI, no_proxy
except ImportError:  # pragma: no cover - depends on how pytest sets up sys.path
    from tests import conftest
    from tests.fake_bot_api import Call, FakeBotAPI, no_proxy

__all__ = [
    "ACTIVITY",
    "MAX_CALLBACK_BYTES",
    "RED_FLAGS_NO",
    "TO_DOCTOR_PROMPT",
    "TO_SUGGESTIONS",
    "WAIT",
    "BotHarness",
    "Call",
    "FakeBotAPI",
    "assert_telegram_html",
    "bot_session",
    "callback_data",
    "failures",
    "find_activity",
    "make_settings",
    "no_proxy",
    "run_bounded",
    "shared_engine",
    "until",
]

T = TypeVar("T")

WAIT = 5.0  # the longest any single step may take before a test fails
MAX_CALLBACK_BYTES = 64
DONE_GROUP = 1000  # after every handler group the bot registers

# Words that name an activity: the tests' one list (tests/conftest.py ACTIVITY_WORDS).
ACTIVITY = conftest._ACTIVITY

# Answers (choice ids) that walk the screening dialog (tests/conftest.py).
RED_FLAGS_NO = conftest.RED_FLAGS_NO
TO_DOCTOR_PROMPT = conftest.TO_DOCTOR_PROMPT
TO_SUGGESTIONS = conftest.TO_SUGGESTIONS


def failures(caplog: Any, logger: str = "bot.telegram_bot") -> list[str]:
    """Lines the bot's error handler logged ("update N failed: ...")."""
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno >= logging.ERROR]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether `condition` came true within `timeout` seconds (checked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def find_activity(text: str) -> str | None:
    match = ACTIVITY.search(text)
    return match.group(0) if match else None


def run_bounded(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """asyncio.run with a hard time bound: a hung bot fails the test instead of the run."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


_ENGINE: Engine | None = None


def shared_engine() -> Engine:
    """The shipped engine, loaded once (it is stateless)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = load_engine()
    return _ENGINE


def make_settings(api: FakeBotAPI, db_path: Path, **extra: str) -> Settings:
    return load_settings(environ={"TELEGRAM_BOT_TOKEN": api.token,
                                  "TELEGRAM_API_BASE_URL": api.base_url,
                                  "BACKBOT_DB": str(db_path), **extra},
                         env_file=None)


def callback_data(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [button["callback_data"] for row in markup.get("inline_keyboard", [])
            for button in row if "callback_data" in button]


# ------------------------------------------------------------------------ Telegram HTML

# Tags Telegram accepts with parse_mode=HTML.
_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
         "a", "code", "pre", "blockquote", "tg-emoji"}
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class _TelegramHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.visible: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS:
            self.problems.append(f"tag <{tag}> is not allowed")
        if tag == "a" and not any(name == "href" and value for name, value in attrs):
            self.problems.append("<a> without href")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unbalanced </{tag}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.visible.append(data)

    def handle_entityref(self, name: str) -> None:
        self.visible.append("&")

    def handle_charref(self, name: str) -> None:
        self.visible.append("&")


def assert_telegram_html(text: str) -> None:
    """Fail unless `text` parses under Telegram's HTML rules and fits in one message."""
    # Outside tags every '&' must start an entity Telegram knows, and '<' must open a tag.
    outside = re.sub(r"<[^<>]*>", "", text)
    for match in re.finditer("&", outside):
        assert _ENTITY.match(outside, match.start()), f"bare '&' in {text!r}"
    assert ">" not in outside, f"unescaped '>' in {text!r}"
    parser = _TelegramHTML()
    parser.feed(text)
    parser.close()
    assert not parser.problems, (parser.problems, text)
    assert not parser.stack, (f"unclosed {parser.stack}", text)
    visible = html.unescape("".join(parser.visible))
    assert visible.strip(), f"empty message {text!r}"
    assert len(visible.encode("utf-16-le")) // 2 <= 4096, f"over 4096 characters: {text[:80]!r}"


# ---------------------------------------------------------------------------- the bot


class BotHarness:
    """One running Application over one database file, driven through `api`."""

    def __init__(self, api: FakeBotAPI, db_path: Path, engine: Engine | None = None,
                 max_retries: int = 2,
                 checkpoint_every: float = CHECKPOINT_EVERY_SECONDS,
                 environ: dict[str, str] | None = None) -> None:
        self.api = api
        self.db_path = db_path
        self.settings = make_settings(api, db_path, **(environ or {}))
        self.engine = engine or shared_engine()
        self.db = open_database(db_path)
        self.store = SessionStore(self.db)
        self.app: Application = build_application(  # type: ignore[type-arg]
            self.settings, self.engine, self.store,
            rate_limiter=ChatRateLimiter(overall_max_rate=0, group_max_rate=0,
                                         max_retries=max_retries),
            checkpoint_every=checkpoint_every)
        self.app.add_handler(TypeHandler(Update, self._mark_done), group=DONE_GROUP)
        self._done: dict[int, asyncio.Event] = {}
        self.taps = 0

    async def _mark_done(self, update: Update, context: object) -> None:
        self._event(update.update_id).set()

    def _event(self, update_id: int) -> asyncio.Event:
        return self._done.setdefault(update_id, asyncio.Event())

    # -- lifecycle --

    async def start(self) -> None:
        """What Application.run_polling does, minus the signal handling and the loop."""
        await self.app.initialize()
        if self.app.post_init is not None:  # the command menu, jobs (run_polling calls it)
            await self.app.post_init(self.app)
        assert self.app.updater is not None
        app = self.app

        def fetch_failed(exc: TelegramError) -> None:  # to the error handlers, as run_polling
            app.create_task(app.process_error(error=exc, update=None))

        await app.updater.start_polling(poll_interval=0, timeout=1, error_callback=fetch_failed)
        await self.app.start()

    async def stop(self) -> None:
        try:
            if self.app.updater is not None and self.app.updater.running:
                await self.app.updater.stop()
            if self.app.running:
                await self.app.stop()
            await self.app.shutdown()
        finally:
            self.db.close()

    # -- driving --

    async def processed(self, update_id: int, timeout: float = WAIT) -> None:
        """Wait until the bot has finished with this update (handlers and error handler)."""
        await asyncio.wait_for(self._event(update_id).wait(), timeout)

    async def send(self, chat_id: int, text: str, **kwargs: Any) -> int:
        update_id = self.api.send_text(chat_id, text, **kwargs)
        await self.processed(update_id)
        return update_id

    async def tap(self, chat_id: int, message_id: int, data: str, **kwargs: Any) -> int:
        update_id = self.api.tap(chat_id, message_id, data, **kwargs)
        self.taps += 1
        await self.processed(update_id)
        return update_id

    def current(self, chat_id: int) -> dict[str, Any]:
        """The newest message in the chat that still has an inline keyboard."""
        for message in reversed(self.api.sent_to(chat_id)):
            if callback_data(message):
                return message
        raise AssertionError(f"no message with a keyboard in chat {chat_id}")

    def data_for(self, message: dict[str, Any], choice: str) -> str:
        matches = [d for d in callback_data(message) if d.endswith(f"|{choice}")]
        assert len(matches) == 1, (choice, callback_data(message))
        return matches[0]

    async def choose(self, chat_id: int, choice: str) -> tuple[dict[str, Any], str]:
        """Tap the button ending in `|choice` on the current question."""
        message = self.current(chat_id)
        data = self.data_for(message, choice)
        await self.tap(chat_id, message["message_id"], data)
        return message, data

    async def script(self, chat_id: int, *choices: str) -> None:
        for choice in choices:
            await self.choose(chat_id, choice)

    async def step(self, chat_id: int, choice: str) -> list[str]:
        """Choose, and return the texts the bot sent in reply (in order)."""
        before = len(self.sent_texts(chat_id))
        await self.choose(chat_id, choice)
        return self.sent_texts(chat_id)[before:]

    async def say(self, chat_id: int, text: str) -> list[str]:
        """Send text, and return the texts the bot sent in reply (in order)."""
        before = len(self.sent_texts(chat_id))
        await self.send(chat_id, text)
        return self.sent_texts(chat_id)[before:]

    # -- reading what happened --

    def query_answers(self) -> list[dict[str, Any]]:
        """Parameters of every answerCallbackQuery, in order."""
        return [c.params for c in self.api.calls_to("answerCallbackQuery")]

    def calls(self, chat_id: int, *methods: str) -> list[Call]:
        wanted = {m.lower() for m in methods}
        return [c for c in list(self.api.calls) if c.method.lower() in wanted
                and c.params.get("chat_id") == chat_id]

    def sent_texts(self, chat_id: int) -> list[str]:
        """Texts of every successful sendMessage into the chat, as sent, in order."""
        return [c.params["text"] for c in self.calls(chat_id, "sendMessage") if c.ok]

    def all_texts(self, chat_id: int) -> list[str]:
        """Sent and edited texts, in order."""
        return [c.params["text"] for c in self.calls(chat_id, "sendMessage", "editMessageText")
                if c.ok]

    def snapshot(self, user_id: int) -> dict[str, Any] | None:
        """The stored session, read through a separate connection (what is on disk)."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            row = db.execute("SELECT snapshot FROM sessions WHERE user_id = ?",
                             (user_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def rows(self, user_id: int) -> int:
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            return int(db.execute("SELECT count(*) FROM sessions WHERE user_id = ?",
                                  (user_id,)).fetchone()[0])

    def state(self, user_id: int) -> str | None:
        snapshot = self.snapshot(user_id)
        return None if snapshot is None else snapshot["state"]

    def message_text(self, key: str) -> str:
        """A sentence from content/messages.yaml, HTML-escaped as the bot sends it."""
        return html.escape(self.engine.content.message(key), quote=False)


@contextlib.asynccontextmanager
async def bot_session(tmp_path: Path, api: FakeBotAPI | None = None,
                      db_name: str = "db.sqlite3", **kwargs: Any) -> AsyncIterator[BotHarness]:
    """A running bot (and a fake API unless one is given); stopped cleanly on exit."""
    with no_proxy(), contextlib.ExitStack() as stack:
        if api is None:
            api = stack.enter_context(FakeBotAPI())
        harness = BotHarness(api, tmp_path / db_name, **kwargs)
        try:
            await harness.start()
            yield harness
        finally:
            await harness.stop()
        assert api.texts_without_html() == []
