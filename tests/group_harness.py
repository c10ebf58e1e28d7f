"""A small harness for the group and channel tests: the real Application against FakeBotAPI.

`running_bot(api, db_path)` builds the Application exactly as `backbot run` does (through
`build_application`), starts it with long polling against the fake Bot API on 127.0.0.1 and
stops it cleanly afterwards. Every wait is bounded; `run()` bounds a whole test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from telegram.ext import Application, BaseRateLimiter, ContextTypes, Job
from telegram.request import HTTPXRequest, RequestData

from bot.config import load_settings
from bot.dailytip_times import DailyTrigger, due_on, next_due
from bot.engine import Engine
from bot.loading import load_engine
from bot.schedules import ScheduleStore
from bot.store import SessionStore, open_database
from bot.telegram_app import build_application
from bot.telegram_groups import GroupFeatures
from bot.telegram_limits import ChatRateLimiter

try:  # works whether or not tests/ is a package
    from fake_bot_api import Call, FakeBotAPI, no_proxy
except ImportError:  # pragma: no cover - depends on how pytest sets up sys.path
    from tests.fake_bot_api import Call, FakeBotAPI, no_proxy

__all__ = ["BOT", "UPGRADED", "WAIT", "Call", "FakeBotAPI", "MigratingRequest", "Running",
           "assert_daily_tip", "assert_runs_at", "card_in", "engine", "eventually", "fake_api",
           "msg", "plain", "run", "running_bot"]

T = TypeVar("T")

BOT = "backbot_test_bot"  # FakeBotAPI's bot username
WAIT = 5.0  # the longest any single wait may take
TEST_SECONDS = 20.0  # the longest a whole scenario may take
SENTINEL_CHAT = -100_999_000_001  # a group used only to know earlier updates were handled
UPGRADED = "Bad Request: group chat was upgraded to a supergroup chat"

_ENGINE: Engine | None = None


def engine() -> Engine:
    """The shipped engine, loaded once (it is stateless)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = load_engine()
    return _ENGINE


def run(coro: Coroutine[Any, Any, T], timeout: float = TEST_SECONDS) -> T:
    """asyncio.run with a hard bound on the whole scenario."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def eventually(predicate: Callable[[], object], timeout: float = WAIT,
                     what: str = "condition") -> None:
    """Poll `predicate` on the event loop until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def plain(text: str) -> str:
    """Message HTML as the reader sees it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def card_in(text: str) -> str:
    """The id of the one tip card in a message."""
    tips = engine().content.cards_tagged("tip")
    found = [c.id for c in tips if f"<b>{html.escape(c.title, quote=False)}</b>" in text]
    assert len(found) == 1, text
    return found[0]


def assert_daily_tip(message: dict[str, Any], chat_id: int) -> str:
    """A tip card with its citation, the doctor line first if it names an activity, and the
    check-in link of `chat_id`; returns the card's id."""
    content = engine().content
    text = message["text"]
    assert '<a href="http' in text  # a citation link
    card = content.cards[card_in(text)]
    if "activity" in card.tags:
        doctor = html.escape(content.message("tip.doctor_first"), quote=False)
        assert doctor in text
        assert text.index(doctor) < text.index(html.escape(card.title, quote=False))
    [[button]] = message["reply_markup"]["inline_keyboard"]
    assert button["url"] == f"https://t.me/{BOT}?start=g{chat_id}".replace("-", "_")
    return card.id


@dataclass
class Running:
    api: FakeBotAPI
    app: Application  # type: ignore[type-arg]
    db: sqlite3.Connection
    db_path: Path
    errors: list[BaseException] = field(default_factory=list)

    @property
    def groups(self) -> GroupFeatures:
        return self.app.bot_data["groups"]  # type: ignore[no-any-return]

    # -- state --

    def jobs(self, chat_id: int) -> tuple[Job, ...]:  # type: ignore[type-arg]
        assert self.app.job_queue is not None
        return self.app.job_queue.get_jobs_by_name(f"dailytip:{chat_id}")

    def job(self, chat_id: int) -> Job:  # type: ignore[type-arg]
        jobs = self.jobs(chat_id)
        assert len(jobs) == 1, f"expected one daily-tip job for {chat_id}, found {len(jobs)}"
        return jobs[0]

    async def run_daily(self, chat_id: int, late_s: float = 1.0) -> None:
        """Run the chat's daily job as APScheduler would at its next due time after both
        the groups' clock and the last day dealt with: that clock is moved there (`late_s`
        after it) and stays."""
        schedule = ScheduleStore(self.db).get(chat_id)
        assert schedule is not None, f"no daily tip set for {chat_id}"
        now = self.groups.now()
        if schedule.last_day:
            dealt = due_on(schedule, dt.date.fromisoformat(schedule.last_day),
                           ZoneInfo(schedule.tz))
            now = max(now, dealt.astimezone(dt.UTC))
        due = next_due(schedule, now)
        assert due is not None
        at = due.astimezone(dt.UTC) + dt.timedelta(seconds=late_s)
        self.groups.now = lambda: at
        await self.job(chat_id).run(self.app)

    def rows(self) -> list[tuple[int, str, str]]:
        return [tuple(row) for row in self.db.execute(  # type: ignore[misc]
            "SELECT chat_id, hhmm, tz FROM daily_tips WHERE active = 1 ORDER BY chat_id")]

    def stored_chats(self) -> list[int]:
        """Every chat the database holds anything about (a tip turned off included)."""
        return [row[0] for row in self.db.execute(
            "SELECT chat_id FROM daily_tips ORDER BY chat_id")]

    def sends(self, chat_id: int | str) -> list[Call]:
        """Every sendMessage the bot attempted into `chat_id` (failed ones too)."""
        return [c for c in self.api.calls_to("sendMessage") if c.params.get("chat_id") == chat_id]

    # -- talking to the bot --

    async def wait_sent(self, chat_id: int | str, count: int,
                        timeout: float = WAIT) -> list[dict[str, Any]]:
        await eventually(lambda: len(self.api.sent_to(chat_id)) >= count, timeout,
                         f"{count} message(s) in chat {chat_id}")
        return self.api.sent_to(chat_id)

    async def say(self, chat_id: int, text: str, *, user_id: int | None = None,
                  chat_type: str = "supergroup", deleted: bool = False,
                  thread: int | None = None) -> dict[str, Any]:
        """Send `text` (in forum topic `thread`, if given) and return the one new message
        the bot sent into that chat."""
        before = len(self.api.sent_to(chat_id))
        self.api.send_text(chat_id, text, user_id=user_id, chat_type=chat_type,
                           deleted=deleted, thread=thread)
        sent = await self.wait_sent(chat_id, before + 1)
        return sent[before]

    async def post(self, chat_id: int, text: str) -> dict[str, Any]:
        """A channel post; returns the bot's reply in the channel."""
        before = len(self.api.sent_to(chat_id))
        self.api.channel_post(chat_id, text)
        sent = await self.wait_sent(chat_id, before + 1)
        return sent[before]

    async def settle(self, pause: float = 0.2) -> None:
        """Returns once every update pushed so far has been fetched and handled.

        Updates are fetched in order; a reply in the sentinel group means the earlier ones
        were dispatched too, and the short pause lets any (wrong) reply of theirs arrive.
        """
        await self.say(SENTINEL_CHAT, "/start", user_id=1)
        await asyncio.sleep(pause)


class MigratingRequest(HTTPXRequest):
    """The production HTTP transport, plus what FakeBotAPI.fail_next can't send: the
    `parameters.migrate_to_chat_id` Telegram adds when a group became a supergroup.

    `migrations[old] = new`, then `api.fail_next("sendMessage", chat_id=old,
    description=UPGRADED)`: the fake records the failed call, and this adds the new id to
    its answer, which PTB raises as ChatMigrated.
    """

    def __init__(self) -> None:
        # what ApplicationBuilder would build; never through a proxy from the environment
        super().__init__(connection_pool_size=256, httpx_kwargs={"trust_env": False})
        self.migrations: dict[int, int] = {}

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         **timeouts: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(url, method, request_data, **timeouts)
        chat_id = (request_data.json_parameters if request_data else {}).get("chat_id")
        answer = json.loads(payload) if code == 400 else {}
        if answer.get("description") == UPGRADED and chat_id is not None:
            answer["parameters"] = {"migrate_to_chat_id": self.migrations[int(chat_id)]}
            payload = json.dumps(answer).encode()
        return code, payload


def assert_runs_at(bot: Running, chat_id: int, hhmm: str, zone: ZoneInfo) -> dt.datetime:
    """`chat_id` has one live daily-tip job, next due at `hhmm` in `zone`, within a day."""
    job = bot.job(chat_id)
    assert job.chat_id == chat_id and not job.removed
    assert job.next_t is not None
    local = job.next_t.astimezone(zone)
    assert local.strftime("%H:%M") == hhmm
    now = dt.datetime.now(dt.UTC)
    assert now < job.next_t <= now + dt.timedelta(hours=25)
    return job.next_t


@contextmanager
def fake_api() -> Iterator[FakeBotAPI]:
    """A started FakeBotAPI on 127.0.0.1."""
    with FakeBotAPI() as api:
        yield api


def msg(key: str) -> str:
    """A sentence from content/messages.yaml, as written there."""
    return engine().content.message(key)


def make_settings(api: FakeBotAPI, db_path: Path, extra_env: Mapping[str, str] | None = None):
    environ = {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url,
               "BACKBOT_DB": str(db_path), **(extra_env or {})}
    return load_settings(environ=environ, env_file=None)


@asynccontextmanager
async def running_bot(api: FakeBotAPI, db_path: Path, *, default_limits: bool = False,
                      rate_limiter: BaseRateLimiter | None = None,  # type: ignore[type-arg]
                      request: HTTPXRequest | None = None,
                      extra_env: Mapping[str, str] | None = None,
                      start_delay: float = 0.0) -> AsyncIterator[Running]:
    """The real Application, polling the fake; stopped and its database closed on exit.

    Without `default_limits` or `rate_limiter` the rate limiter does not throttle (tests
    stay fast); with `default_limits`, `build_application` picks its production limiter.
    `request` replaces the HTTP transport of the bot's calls (not of getUpdates);
    `start_delay` stands for a slow polling or webhook set-up between post_init and start.
    """
    with no_proxy(), no_daily_tip_falls_due_unasked():
        async with _running_bot(api, db_path, default_limits=default_limits,
                                rate_limiter=rate_limiter, request=request,
                                extra_env=extra_env, start_delay=start_delay) as running:
            yield running


@contextmanager
def no_daily_tip_falls_due_unasked() -> Iterator[None]:
    """Tests set daily tips at fixed times ("/dailytip 08:30"): run a few seconds before
    one, the real scheduler would post a tip in the middle of the test. While a test runs,
    a time the scheduler asks for that falls within the test's span is put off a day.
    Tests that run a job do so themselves (`run_daily`, `job.run`, a next run time set by
    hand); the trigger's own answers for other moments (`now` before the test) stand."""
    natural = DailyTrigger.get_next_fire_time
    started = dt.datetime.now(dt.UTC)
    quiet_until = started + dt.timedelta(seconds=TEST_SECONDS + 10)

    def put_off(self: DailyTrigger, previous: dt.datetime | None,
                now: dt.datetime) -> dt.datetime | None:
        fire: dt.datetime | None = natural(self, previous, now)
        while fire is not None and now >= started and fire < quiet_until:
            fire = natural(self, fire, fire + dt.timedelta(seconds=1))
        return fire

    DailyTrigger.get_next_fire_time = put_off  # type: ignore[method-assign]
    try:
        yield
    finally:
        DailyTrigger.get_next_fire_time = natural  # type: ignore[method-assign]


@asynccontextmanager
async def _running_bot(api: FakeBotAPI, db_path: Path, *, default_limits: bool,
                       rate_limiter: BaseRateLimiter | None,  # type: ignore[type-arg]
                       request: HTTPXRequest | None, extra_env: Mapping[str, str] | None,
                       start_delay: float) -> AsyncIterator[Running]:
    settings = make_settings(api, db_path, extra_env)
    db = open_database(settings.db_path)
    store = SessionStore(db)
    if not default_limits and rate_limiter is None:
        rate_limiter = ChatRateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=2)
    app = build_application(settings, engine(), store, rate_limiter=rate_limiter,
                            request=request)
    running = Running(api, app, db, settings.db_path)

    async def record(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if context.error is not None:
            running.errors.append(context.error)

    app.add_error_handler(record)
    try:
        # The order of Application.run_polling: initialize, post_init (the command menu and
        # the daily tips restored from the database), polling, start.
        async with app:
            if app.post_init is not None:
                await app.post_init(app)
            await asyncio.sleep(start_delay)
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            await app.start()
            try:
                yield running
            finally:
                if app.updater.running:
                    await app.updater.stop()
                if app.running:
                    await app.stop()
            assert api.texts_without_html() == []
    finally:
        db.close()
