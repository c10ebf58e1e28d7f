"""Telegram's posting limits: PTB's AIORateLimiter, with two changes of how it applies
them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter

from bot.telegram_errors import flood_wait

log = logging.getLogger(__name__)
Answer = bool | dict[str, Any] | list[dict[str, Any]]
# PTB drops a `rate_limit_args` of 0 before it reaches the limiter.
NO_RETRIES = -1


class ChatRateLimiter(AIORateLimiter):
    """AIORateLimiter whose per-group budget is spent on posts only, and whose "retry
    after" answers hold back only the chat they were about.

    AIORateLimiter puts every request whose `chat_id` names a group under that group's
    limit, reads included: the admin check (getChatMember) before a /dailytip answer would
    take the answer's slot and hold the answer back a whole slot. Reads (get*) post
    nothing, so they skip the limits.

    On a "retry after" answer AIORateLimiter pauses every request to every chat, so one
    person sending fast enough to meet their chat's flood control (about a message a
    second) would stall the bot for everyone. Here that chat's requests wait out the
    pause, and a request naming no chat (a tap's answer, the command menu) waits alone.
    The steady overall limit keeps the bot under Telegram's bot-wide one, so a flood wait
    is a chat's own. `rate_limit_args` is how many times to retry (NO_RETRIES: none).
    """

    def __init__(self, **limits: Any) -> None:
        super().__init__(**limits)
        self._paused: dict[int | str | None, asyncio.Event] = {}  # set when it ends

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Answer]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Answer:
        if endpoint.startswith("get"):
            # `data` only tells the limiter which limits apply; `args` is what is sent.
            data = {key: value for key, value in data.items() if key != "chat_id"}
        chat = _chat_key(data.get("chat_id"))
        group = chat if isinstance(chat, str) or (chat is not None and chat < 0) else False
        retries = self._max_retries if rate_limit_args is None else max(rate_limit_args, 0)
        attempt = 0
        while True:
            while (pause := self._paused.get(chat)) is not None:
                await pause.wait()
            try:
                return await self._run_request(
                    chat=chat is not None, group=group,
                    allow_paid_broadcast=bool(data.get("allow_paid_broadcast", False)),
                    callback=callback, args=args, kwargs=kwargs)
            except RetryAfter as exc:
                if attempt >= retries:
                    raise
                attempt += 1
                wait = flood_wait(exc) + 0.1
                log.info("Telegram asked for a pause of %.1f s before %s; retrying then",
                         wait, endpoint)
                await self._sit_out(chat, wait)

    async def _sit_out(self, chat: int | str | None, wait: float) -> None:
        """Wait `wait` seconds, holding back the chat's other requests meanwhile."""
        if chat is None:
            await asyncio.sleep(wait)
            return
        pause = self._paused[chat] = asyncio.Event()  # a later pause replaces this one
        try:
            await asyncio.sleep(wait)
        finally:
            if self._paused.get(chat) is pause:
                del self._paused[chat]
            pause.set()


def _chat_key(chat_id: object) -> int | str | None:
    """The chat a request names, as AIORateLimiter reads it (an int, or an @username)."""
    if chat_id is None or isinstance(chat_id, int):
        return chat_id
    try:
        return int(str(chat_id))
    except ValueError:
        return str(chat_id)


def telegram_limits() -> ChatRateLimiter:
    """Telegram's limits as steady rates, not bursts: 30 messages a second overall and
    20 a minute per group (one every 3 s); "retry after" answers are retried."""
    return ChatRateLimiter(overall_max_rate=1, overall_time_period=1 / 30,
                           group_max_rate=1, group_time_period=3, max_retries=3)
