"""Long polling that neither one update PTB cannot read nor a revoked token leaves stuck.

PTB reads a getUpdates batch whole; if one update in it fails to read (a field Telegram
sends in a shape this PTB does not know), it logs, keeps the offset and asks for the same
batch again, at once and for ever: no update after it is ever handled. Here such a batch
is read update by update, and each unreadable one stands in as an empty update of its id,
which no handler takes, so the offset moves past it and the rest are handled.

A token Telegram stops taking while the bot polls ends PTB's polling for good but leaves
the process running, deaf; here it is reported, so the bot can be stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from telegram import Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import BaseRateLimiter, ExtBot
from telegram.request import BaseRequest, HTTPXRequest

log = logging.getLogger(__name__)
# PTB's own default pool size for the requests that are not getUpdates.
REQUEST_POOL_SIZE = 256


class KeepsLastBatch(BaseRequest):
    """The getUpdates request (any request inside), keeping the last answer's body as
    Telegram sent it."""

    def __init__(self, inner: BaseRequest) -> None:
        self._inner = inner
        self.last: bytes | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._inner.read_timeout

    async def initialize(self) -> None:
        await self._inner.initialize()

    async def shutdown(self) -> None:
        await self._inner.shutdown()

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        self.last = None  # never a previous batch in place of this one
        code, body = await self._inner.do_request(*args, **kwargs)
        self.last = body
        return code, body

    def last_batch(self) -> Any:
        """The `result` of the last answer, as JSON (None if there is none)."""
        if self.last is None:
            return None
        return self.parse_json_payload(self.last).get("result")


class SteadyBot(ExtBot[Any]):
    """PTB's bot, but a batch with an unreadable update still yields the others; and a
    token Telegram stops taking (revoked while the bot runs) calls what `on_rejected`
    was given."""

    def __init__(self, token: str, *, base_url: str, request: BaseRequest | None,
                 rate_limiter: BaseRateLimiter[Any]) -> None:
        # PTB's own requests, as its ApplicationBuilder makes them
        self._batches = KeepsLastBatch(HTTPXRequest(connection_pool_size=1))
        self._when_rejected: list[Callable[[], None]] = []  # PTB freezes attributes, not lists
        super().__init__(token, base_url=base_url, rate_limiter=rate_limiter,
                         request=request or HTTPXRequest(connection_pool_size=REQUEST_POOL_SIZE),
                         get_updates_request=self._batches)

    def on_rejected(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever getUpdates finds the token rejected (401, or 404 as
        PTB reads it), which then yields no updates instead of ending the polling."""
        self._when_rejected.append(callback)

    async def get_updates(self, *args: Any, **kwargs: Any) -> tuple[Update, ...]:
        try:
            return await super().get_updates(*args, **kwargs)
        except InvalidToken:
            if not self._when_rejected:
                raise
            for callback in self._when_rejected:
                callback()
            return ()
        except TelegramError:
            raise  # PTB's polling loop retries these
        except Exception:
            batch = self._batches.last_batch()
            if not isinstance(batch, list):
                raise
            return readable(batch, self)


def readable(batch: Sequence[Any], bot: ExtBot[Any] | None = None) -> tuple[Update, ...]:
    """Each update of a raw batch, an empty one of its id where it cannot be read."""
    updates = []
    for raw in batch:
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        if not isinstance(update_id, int):
            log.error("an update without an id was skipped")
            continue
        try:
            updates.append(Update.de_json(raw, bot))
        except Exception as exc:  # whatever PTB raises: its data is never logged
            log.error("update %d could not be read (%s); skipped", update_id,
                      type(exc).__name__)
            updates.append(Update(update_id))
    return tuple(updates)
