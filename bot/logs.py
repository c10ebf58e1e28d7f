"""Logging set-up that keeps the bot token out of every line, at every level."""

from __future__ import annotations

import logging
import sys

# httpx's lines carry the token; the state machine's only trace the routes asked of it
# at start-up (a thousand lines; at run time the engine looks routes up in a table).
QUIET = ("httpx", "httpcore", "transitions")
TELLING = ("apscheduler",)
# At DEBUG these dump every Bot API call and every update in full: people's ids and names
# beside their answers and whatever they type. No level of ours turns that on.
DUMPING = ("telegram.Bot", "telegram.ext.ExtBot", "telegram.ext.Application")
# PTB logs, at CRITICAL, the raw data of an update it could not read: people's messages
# and taps. The line stays; the data is left out.
RECEIVED_DATA = "Received data was"
WITHHELD = "[withheld: it may hold people's messages]"


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
    logging.captureWarnings(True)
