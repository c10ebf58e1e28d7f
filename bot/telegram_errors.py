"""What Telegram's error answers mean for a chat the bot posts in."""

from __future__ import annotations

import httpx
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

# Bad Request answers that mean the chat is gone for the bot. Any other one (too long,
# can't parse entities, ...) is about one message, not about the chat.
CHAT_GONE = ("chat not found", "bot was kicked", "group chat was deactivated",
             "bot is not a member", "peer_id_invalid")
# ... and those that mean an admin muted the bot there, or closed the forum topic: that
# can be undone without telling the bot, so the chat's daily tip stays, to go out again
# once it may post.
MUTED = ("not enough rights to send", "have no rights", "need administrator rights",
         "have no write access", "chat_write_forbidden", "chat_restricted", "topic_closed")
# A forum topic the daily tip was set in was deleted (Telegram words it these ways).
THREAD_GONE = ("message thread not found", "topic_deleted", "topic_id_invalid")


def chat_gone(exc: TelegramError) -> bool:
    """Telegram says the bot can no longer post in that chat (removed, chat gone)."""
    return ((isinstance(exc, Forbidden) and not muted(exc))
            or (isinstance(exc, BadRequest) and _saying(exc, CHAT_GONE)))


def muted(exc: TelegramError) -> bool:
    """Telegram says the bot may not post in that chat for now (an admin's restriction),
    whether as a Bad Request or, as some answer it, a Forbidden."""
    return isinstance(exc, BadRequest | Forbidden) and _saying(exc, MUTED)


def thread_gone(exc: TelegramError) -> bool:
    """Telegram says the forum topic a message was sent to is gone."""
    return isinstance(exc, BadRequest) and _saying(exc, THREAD_GONE)


def _saying(exc: TelegramError, phrases: tuple[str, ...]) -> bool:
    return any(p in exc.message.lower() for p in phrases)


def not_taken(exc: TelegramError) -> bool:
    """Telegram certainly did not post it: it said so (flood control, its own error
    answer), or the request never left (no connection; PTB's pool full). A connection lost
    or a read timing out after the request went may come after Telegram posted it."""
    if isinstance(exc, RetryAfter):
        return True
    cause = exc.__cause__
    if isinstance(exc, TimedOut):
        return isinstance(cause, httpx.ConnectTimeout | httpx.PoolTimeout)
    # No cause: PTB read Telegram's JSON error answer (a transport error or an unreadable
    # answer, such as a proxy's page, carries one).
    return isinstance(exc, NetworkError) and (cause is None
                                              or isinstance(cause, httpx.ConnectError))


def flood_wait(exc: TelegramError) -> float:
    """How many seconds Telegram asked us to wait before sending again (0: it did not)."""
    if not isinstance(exc, RetryAfter):
        return 0.0
    wait = exc.retry_after
    return wait if isinstance(wait, int) else wait.total_seconds()
