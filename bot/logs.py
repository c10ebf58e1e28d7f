"""Logging set-up that keeps the bot token out of every line, at every level."""

from __future__ import annotations

import logging
import sys
import time

# httpx's lines carry the token; the state machine's only trace the routes asked of it
# at start-up (a thousand lines; at run time the engine looks routes up in a table).
QUIET = ("httpx", "httpcore", "transitions")
TELLING = ("apscheduler",)
# At DEBUG these dump every Bot API call and every update in full: people's ids and names
# beside their answers and whatever they type. No level of ours turns that on (nor the
# webhook server's dump of each update: see WebhookRefusals).
DUMPING = ("telegram.Bot", "telegram.ext.ExtBot", "telegram.ext.Application")
# PTB logs, at CRITICAL, the raw data of an update it could not read: people's messages
# and taps. The line stays; the data is left out.
RECEIVED_DATA = "Received data was"
WITHHELD = "[withheld: it may hold people's messages]"
# PTB's webhook server logs, at DEBUG only, each update in full and each request it refuses
# (with the wrong secret it was sent). A refusal is worth a WARNING, without the value: a
# proxy that drops Telegram's secret header otherwise leaves a bot that never answers and
# an empty log. At most one line per reason this often:
WEBHOOK_LOGGER = "telegram.ext.Updater"
REFUSALS_EVERY_SECONDS = 60.0
WEBHOOK_DATA = "Webhook received data"
SECRET_REFUSALS = {
    "Request did not include the secret token": "it carried no secret token",
    "Request had the wrong secret token": "it carried the wrong secret token",
}
HANDLER_FAILED = "Exception in TelegramHandler"


class RedactingFormatter(logging.Formatter):
    """Replaces secrets in the fully formatted line, tracebacks included; tracebacks are
    shown only at DEBUG, so an operator sees one line per problem."""

    def __init__(self, secrets: list[str], fmt: str, *, tracebacks: bool) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith("telegram") and RECEIVED_DATA in str(record.msg):
            record = logging.makeLogRecord(record.__dict__)
            # one dict argument is kept as the args themselves (logging's rule for a mapping)
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(WITHHELD for _ in args)
        if not self._tracebacks and (record.exc_info or record.exc_text):
            record = logging.makeLogRecord(record.__dict__)
            error = record.exc_info[1] if record.exc_info else None
            record.msg = f"{record.getMessage()} ({type(error).__name__})" if error else record.msg
            record.args, record.exc_info, record.exc_text = None, None, None
        line = super().format(record)
        for secret in self._secrets:
            line = line.replace(secret, "[redacted]")
        return line


class WebhookRefusals(logging.Filter):
    """On PTB's webhook logger (set to DEBUG so its refusals reach this): drops the
    updates' data, turns each refusal into a WARNING (at most one line per reason a
    minute, counting the refusals since the line before), and lets its other lines
    through at the configured level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self._level = level
        self._last: dict[str, float] = {}
        self._unsaid: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(WEBHOOK_DATA):
            return False
        reason = self._refusal(record, message)
        if reason is None:
            return record.levelno >= self._level
        if self._level > logging.WARNING:  # (ERROR or CRITICAL: not wanted)
            return False
        self._unsaid[reason] = self._unsaid.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last.get(reason, -REFUSALS_EVERY_SECONDS) < REFUSALS_EVERY_SECONDS:
            return False
        count, self._last[reason] = self._unsaid.pop(reason), now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "refused %d webhook request(s): %s", (count, reason)
        record.exc_info = record.exc_text = None
        return True

    @staticmethod
    def _refusal(record: logging.LogRecord, message: str) -> str | None:
        for refusal, reason in SECRET_REFUSALS.items():
            if message.startswith(refusal):
                return reason
        args = record.args if isinstance(record.args, tuple) else ()
        if HANDLER_FAILED not in args or not record.exc_info:
            return None
        error = record.exc_info[1]
        if getattr(error, "status_code", None) == 403 and not getattr(error, "reason", None):
            return "it was not sent as JSON (Content-Type)"
        if isinstance(error, ValueError):  # json's and the decoder's errors
            return "its body is not JSON"
        return None  # refused already said why (the secret), or PTB logged it itself


def setup_logging(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(
        secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s",
        tracebacks=level == "DEBUG"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # The scheduler logs each job's name at INFO (a group's id): only DEBUG, for a developer.
    for name in TELLING:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
    for name in DUMPING:
        logging.getLogger(name).setLevel(logging.INFO)
    webhook = logging.getLogger(WEBHOOK_LOGGER)
    webhook.setLevel(logging.DEBUG)
    webhook.filters[:] = [WebhookRefusals(logging.getLevelName(level))]
    logging.captureWarnings(True)
