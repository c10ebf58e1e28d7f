"""Build and run the PTB Application: polling or webhook, rate limits, retention purge."""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import signal
import socket
import sqlite3
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from telegram import Update
from telegram.error import BadRequest, InvalidToken, TelegramError
from telegram.ext import ApplicationBuilder, BaseRateLimiter
from telegram.ext import ContextTypes as Ctx
from telegram.request import BaseRequest
from telegram.warnings import PTBDeprecationWarning
from tornado.netutil import bind_sockets

from bot.config import TELEGRAM_API, ConfigError, Settings
from bot.engine import Engine
from bot.loading import load_checked_engine
from bot.logs import setup_logging
from bot.schedules import ScheduleStore
from bot.store import (
    DatabaseInUse,
    SessionStore,
    checkpoint,
    claim_database,
    file_identity,
    moved_away,
    open_database,
    why_not,
    write_back,
)
from bot.telegram_bot import BackBot
from bot.telegram_groups import GroupFeatures
from bot.telegram_limits import telegram_limits
from bot.telegram_polling import SteadyBot
from bot.telegram_types import App

log = logging.getLogger(__name__)
PURGE_EVERY_SECONDS = 3600
CHECKPOINT_EVERY_SECONDS = 5
TOKEN_REJECTED = "token_rejected"
DATABASE_MOVED = "database_moved"
STOPPING = "stopping"  # set once the bot stops itself: a stop signal then changes nothing


def build_application(settings: Settings, engine: Engine, store: SessionStore, *,
                      rate_limiter: BaseRateLimiter[Any] | None = None,
                      request: BaseRequest | None = None,
                      checkpoint_every: float = CHECKPOINT_EVERY_SECONDS,
                      ) -> App:
    """The Application with every handler; the keyword arguments are for tests and
    benchmarks."""
    # PTB 22's RetryAfter reads its own deprecated attribute as it is made, so every flood
    # answer would warn; nothing here reads that attribute.
    warnings.filterwarnings("ignore", message=r".*attribute `retry_after` will be",
                            category=PTBDeprecationWarning)
    backbot = BackBot(engine, store)
    identity = file_identity(settings.db_path)
    groups = GroupFeatures(engine.content, ScheduleStore(store.db), settings.timezone)

    async def post_init(app: App) -> None:
        await backbot.set_commands(app)
        groups.restore_jobs(app)
        if app.job_queue is not None:
            app.job_queue.run_repeating(purge, interval=PURGE_EVERY_SECONDS, first=60,
                                        name="purge-sessions")
            app.job_queue.run_repeating(checkpoint_wal, interval=checkpoint_every,
                                        first=checkpoint_every, name="checkpoint")

    async def purge(context: Ctx.DEFAULT_TYPE) -> None:
        removed = store.purge(settings.retention_days)
        if removed:
            backbot.forget_purged()
            log.info("purged %d sessions idle for over %d days", removed,
                     settings.retention_days)

    async def checkpoint_wal(context: Ctx.DEFAULT_TYPE) -> None:
        app = context.application
        if app.bot_data.get(DATABASE_MOVED):
            return  # stopping already
        moved = moved_away(settings.db_path, identity)
        if moved is not None:
            # Deleted or replaced by hand: nothing written from now on would be read again
            # (`run` writes it back once the bot has stopped).
            log.critical("the database BACKBOT_DB=%s was %s while the bot ran; stopping",
                         settings.db_path, moved)
            app.bot_data[DATABASE_MOVED] = True
            stop_running(app)
            return
        empty_log, store.erased = store.erased, False  # an erase meanwhile sets it again
        done = False
        try:
            done = await asyncio.to_thread(checkpoint, settings.db_path, empty_log=empty_log)
        finally:  # not done (busy, or an error the job queue logs): the next one empties it
            if not done:
                store.erased = store.erased or empty_log

    bot = SteadyBot(settings.require_token(), base_url=settings.api_base_url,
                    request=request, rate_limiter=rate_limiter or telegram_limits())
    app = (
        ApplicationBuilder()
        .bot(bot)
        # Updates run concurrently; BackBot's per-user locks keep each user's in order.
        .concurrent_updates(True)
        .post_init(post_init)
        .post_stop(lambda app: backbot.on_stop())
        .build()
    )

    def token_rejected() -> None:  # while polling: revoked in @BotFather, say
        app.bot_data[TOKEN_REJECTED] = True
        stop_running(app)

    bot.on_rejected(token_rejected)
    backbot.attach(app)
    backbot.register(app)
    groups.register(app)
    backbot.register_fallback(app)  # last, so /tip and the like are not taken for free text
    app.bot_data["backbot"] = backbot
    app.bot_data["groups"] = groups
    return app


def stop_running(app: App) -> None:
    """The bot stops itself, once, and only while it polls or serves the webhook: PTB's
    own shutdown ends with one more poll, and stopping the loop in the middle of that
    shutdown would cut it short (the replies sent on the way out too)."""
    if app.updater is not None and app.updater.running and not app.bot_data.get(STOPPING):
        app.bot_data[STOPPING] = True
        app.stop_running()


class _StopSignals:
    """SIGINT, SIGTERM and SIGABRT stop the bot as PTB's own handlers would (SystemExit inside the
    event loop), and are remembered: a Bot API call PTB was making at start-up, which it
    then abandons, can fail on the way out, and that is no failure of ours."""

    def __init__(self) -> None:
        self.received = False
        self.bot_data: dict[str, Any] = {}  # the app's, once built

    def install(self) -> None:
        loop = asyncio.new_event_loop()  # the loop PTB's run_* picks up and closes
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGABRT):
            loop.add_signal_handler(sig, self._stop)

    def _stop(self) -> None:
        if self.received or self.bot_data.get(STOPPING):
            # Already stopping: a second SystemExit would cut that short (PTB's shutdown,
            # the replies sent on the way out), which ends within seconds; SIGKILL loses
            # nothing stored either.
            return
        self.received = True
        for handler in logging.getLogger().handlers:
            handler.addFilter(_abandoned_calls_expected)
        raise SystemExit


def _abandoned_calls_expected(record: logging.LogRecord) -> bool:
    """After a stop signal, PTB's errors about the calls it abandons are no problem to
    report as one: they are kept, at INFO."""
    if record.name.startswith("telegram") and record.levelno >= logging.ERROR:
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


def _check_listen(settings: Settings) -> None:
    """Bind the webhook's address and let it go: PTB registers the webhook with Telegram
    before it binds, so a bot that cannot listen would otherwise take the webhook (and
    its secret) from one that is running."""
    for sock in bind_sockets(settings.webhook_port, settings.webhook_listen):
        sock.close()


def _cannot_open(settings: Settings, exc: OSError | sqlite3.Error | str) -> ConfigError:
    why = exc if isinstance(exc, str) else why_not(exc)
    return ConfigError(f"cannot open the database BACKBOT_DB={settings.db_path}: {why}")


def _token_rejected(settings: Settings) -> ConfigError:
    base = ("" if settings.api_base_url == TELEGRAM_API else
            f", and TELEGRAM_API_BASE_URL={settings.api_base_url} (the address the token "
            f"is added to, as in {TELEGRAM_API})")
    return ConfigError(f"Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather{base}")


def run(settings: Settings) -> int:
    """`backbot run`: long polling, or a webhook when BACKBOT_WEBHOOK_URL is set."""
    token = settings.require_token()
    secret = (settings.webhook_secret.reveal() if settings.webhook_secret
              else secrets.token_urlsafe(32))
    setup_logging(settings.log_level, [token, secret])
    engine = load_checked_engine(retention_days=settings.retention_days)
    where = Path(settings.db_path)
    try:
        if str(where) != ":memory:" and where.exists() and not where.is_file():
            # a folder or a device: refused before its lock file is made beside it
            raise _cannot_open(settings, "not a file")
        claim = claim_database(settings.db_path)
    except DatabaseInUse:
        raise ConfigError(f"another backbot is already running on BACKBOT_DB="
                          f"{settings.db_path}; stop it first (two would overwrite each "
                          f"other's sessions)") from None
    except OSError as exc:
        raise _cannot_open(settings, exc) from None
    try:
        db = open_database(settings.db_path)
    except (OSError, sqlite3.Error) as exc:
        if claim is not None:  # None: an in-memory database, nothing to hold
            claim.close()
        raise _cannot_open(settings, exc) from None
    stops = _StopSignals()
    bot_data: dict[str, Any] = {}  # the app's, once built
    try:  # from here on, whatever happens, the database and its lock are let go
        try:
            app = build_application(settings, engine, SessionStore(db))
            bot_data = stops.bot_data = app.bot_data
        except sqlite3.Error as exc:  # its tables: e.g. another program's of the same name
            raise _cannot_open(settings, exc) from None
        log.info("backbot starting (%s)", "webhook" if settings.webhook_url else "long polling")
        if settings.webhook_url:
            _check_listen(settings)
            stops.install()
            app.run_webhook(
                stop_signals=None,
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                url_path=urlparse(settings.webhook_url).path.lstrip("/"),
                webhook_url=settings.webhook_url,
                secret_token=secret,  # PTB rejects requests without this header
                allowed_updates=Update.ALL_TYPES,
            )
        else:
            stops.install()
            app.run_polling(allowed_updates=Update.ALL_TYPES, stop_signals=None)
            if app.bot_data.get(TOKEN_REJECTED):
                raise _token_rejected(settings)
    except InvalidToken:
        raise _token_rejected(settings) from None
    except sqlite3.Error as exc:  # reading the stored daily tips at start-up (damaged)
        raise _cannot_open(settings, exc) from None
    except TelegramError as exc:  # e.g. Telegram unreachable at start-up
        if stops.received:  # a start-up call abandoned on the way out: stopped as asked
            log.info("backbot stopped while starting")
            return 0
        if settings.api_base_url != TELEGRAM_API and (
                exc.message == "Invalid server response" or "Parsing the server response"
                in exc.message):  # (PTB's words for an answer that is not JSON)
            # a web server that is no Bot API server: no restart mends that
            raise ConfigError(f"TELEGRAM_API_BASE_URL={settings.api_base_url} does not "
                              f"answer as a Bot API server does (not in JSON); check the "
                              f"address") from None
        if (settings.webhook_url and isinstance(exc, BadRequest)
                and "webhook" in exc.message.lower()):  # "Bad webhook: ...": no restart mends it
            raise ConfigError(f"Telegram refused BACKBOT_WEBHOOK_URL={settings.webhook_url}: "
                              f"{exc.message}") from None
        # Telegram's own description says what to fix (the log filter keeps the token out)
        log.error("backbot stopped: %s: %s", type(exc).__name__, exc.message)
        return 1
    except OSError as exc:  # binding the webhook's address: in use, not here, not allowed
        if not settings.webhook_url or not (isinstance(exc, socket.gaierror) or exc.errno in (
                errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)):
            raise
        raise ConfigError(f"cannot listen on {settings.webhook_listen}:{settings.webhook_port} "
                          f"(BACKBOT_WEBHOOK_LISTEN, BACKBOT_WEBHOOK_PORT): "
                          f"{exc.strerror or exc}") from None
    finally:
        if bot_data.get(DATABASE_MOVED):
            log.critical("the database BACKBOT_DB=%s: %s", settings.db_path,
                         write_back(db, settings.db_path))
        db.close()
        if claim is not None:
            claim.close()
    log.info("backbot stopped")
    # (a database deleted or replaced: 1, as a restart may mend it)
    return 1 if bot_data.get(DATABASE_MOVED) else 0
