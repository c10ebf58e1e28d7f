"""A small in-process fake of the Telegram Bot API for tests of a python-telegram-bot app.

The server is pure stdlib (``ThreadingHTTPServer`` in a daemon thread), listens only on
127.0.0.1 with an ephemeral port, records every call and lets tests push updates, inject
errors and inspect the messages the bot "sent".

Usage::

    with FakeBotAPI() as api:
        app = ApplicationBuilder().token(api.token).base_url(api.base_url).build()
        api.send_text(42, "/start")
        api.wait_for_calls("sendMessage", 1)
        assert api.last_message(42)["text"] == "Hi!"

PTB 22 sends parameters as ``application/x-www-form-urlencoded`` (or ``multipart/form-data``
when files are uploaded); string values are sent verbatim and every other value is
JSON-encoded. A JSON request body is accepted too.
"""

from __future__ import annotations

import contextlib
import copy
import email.parser
import email.policy
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Call", "FakeBotAPI", "UploadedFile"]

JSONDict = dict[str, Any]

# `_dispatch`'s status for "carried out, but hang up without an answer".
NO_ANSWER = 0

# Long polls never block longer than this, so a forgotten Application can't hang a test.
MAX_LONG_POLL_SECONDS = 5.0

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
BLOCKED = "Forbidden: bot was blocked by the user"
REPLIED_GONE = "Bad Request: message to be replied not found"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
              "all_proxy")
# What Telegram marks as a bot command at the start of a text ("/help," marks "/help").
COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{1,64})?")

# Methods that fail with 403 for a chat registered through ``block_user``.
BLOCKABLE_METHODS = frozenset(
    {"sendmessage", "editmessagetext", "editmessagereplymarkup", "sendchataction"}
)

# Parameters whose values are free text or opaque ids: they must stay strings even when they
# look like JSON (a user may well send the text "42" or "true").
_STRING_KEY_NAMES = """
text caption callback_query_id inline_query_id shipping_query_id pre_checkout_query_id url
title description short_description name question explanation custom_title secret_token
emoji sticker photo document audio video voice animation video_note thumbnail file_id
message_text language_code parse_mode action payload provider_token currency phone_number
first_name last_name vcard address result_id game_short_name start_parameter
business_connection_id message_effect_id quote certificate ip_address sticker_set_name
"""
_STRING_KEYS = frozenset(_STRING_KEY_NAMES.split())
_STRING_SUFFIXES = ("_text", "_query_id", "_title", "_name", "_description", "_parameter")

_DEFAULT_GROUP_USER_ID = 424242  # sender of group messages when a test doesn't care who
_ADMIN_STATUSES = frozenset({"creator", "administrator"})


@dataclass
class Call:
    """One request the bot made. ``ok`` is False when the fake answered with an error."""

    method: str
    params: dict[str, Any]
    time: float
    ok: bool = True
    error_code: int | None = None
    description: str | None = None


@dataclass
class UploadedFile:
    """A multipart file part (e.g. ``sendPhoto`` with bytes); kept so tests can assert on it."""

    filename: str | None
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class _FailRule:
    method: str  # lower-cased
    chat_id: int | str | None
    remaining: int
    error_code: int
    description: str
    retry_after: int | None


class ApiError(Exception):
    """Raised by method handlers; turned into an ``{"ok": false, ...}`` response."""

    def __init__(
        self, error_code: int, description: str, parameters: JSONDict | None = None
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters


def loopback_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process that talks to this fake: no proxy from the environment may
    carry its traffic off the machine."""
    kept = {name: value for name, value in env.items() if name not in PROXY_VARS}
    return {**kept, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


# --------------------------------------------------------------------------- parameter parsing


def _decode_value(key: str, value: Any) -> Any:
    """Undo PTB's "JSON-encode every non-string value" convention."""
    if not isinstance(value, str):
        return value
    if key in _STRING_KEYS or key.endswith(_STRING_SUFFIXES):
        return value
    stripped = value.strip()
    if not stripped:
        return value
    looks_json = stripped[0] in "{[" or stripped in ("true", "false", "null")
    if not looks_json and (stripped[0] == "-" or stripped[0].isdigit()):
        looks_json = True  # numbers: chat_id, message_id, offset, timeout, ...
    if not looks_json:
        return value
    try:
        return json.loads(stripped)
    except ValueError:
        return value  # e.g. "@channel_name" or "12abc": genuinely a string


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    # email.parser copes with multipart/form-data and avoids the deprecated cgi module.
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    result: dict[str, Any] = {}
    if not msg.is_multipart():
        return result
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            result[name] = UploadedFile(filename, part.get_content_type(), data)
        else:
            charset = part.get_content_charset() or "utf-8"
            result[name] = data.decode(charset, "replace")
    return result


def _parse_params(content_type: str, body: bytes, query: str) -> dict[str, Any]:
    raw: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    mime = content_type.split(";", 1)[0].strip().lower()
    if body:
        if mime == "application/json":
            loaded = json.loads(body.decode("utf-8"))
            if isinstance(loaded, dict):
                raw.update(loaded)
        elif mime == "multipart/form-data":
            raw.update(_parse_multipart(content_type, body))
        else:  # PTB's default: application/x-www-form-urlencoded
            raw.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    return {key: _decode_value(key, value) for key, value in raw.items()}


def _chat_key(value: Any) -> int | str:
    """Normalise a chat_id parameter: ints stay ints, "@channel" stays a string."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return str(value)


def _utf16_len(text: str) -> int:
    # Telegram entity offsets/lengths count UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


# ------------------------------------------------------------------------------ HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections when a bot sends a burst.
    request_queue_size = 256
    fake: FakeBotAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping a long poll at shutdown is normal; anything else is recorded
        # (never printed, so the token in the request line can't leak into logs).
        exc_type = sys.exc_info()[0]
        if exc_type is not None and not issubclass(exc_type, ConnectionError):
            self.fake._record_error(f"HTTP handler error: {exc_type.__name__}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: simple and shutdown-friendly

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request line contains the bot token."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        status, payload = self.server.fake._dispatch(
            self.path, self.headers.get("Content-Type", ""), body
        )
        if status == NO_ANSWER:
            self.close_connection = True  # the client reads "disconnected without a response"
            return
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. cancelled long poll); nothing to do


# ------------------------------------------------------------------------------- the fake API


class FakeBotAPI:
    """Fake Bot API server. All public methods are thread-safe."""

    def __init__(
        self,
        token: str = "123456:TEST-fake-token-abc",
        bot_id: int = 123456,
        username: str = "backbot_test_bot",
        *,
        delay: float = 0.0,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.username = username
        self.first_name = "backbot"
        self.delay = delay  # seconds added before every response (simulated latency)
        self.method_delays: dict[str, float] = {}  # lower-case method -> extra seconds
        # lower-case method -> called with the parameters before the method runs (on the
        # server's thread): lets a test change things while a call is on its way
        self.before_call: dict[str, Callable[[dict[str, Any]], None]] = {}

        self.calls: list[Call] = []
        self.messages: dict[tuple[int | str, int], JSONDict] = {}
        self.chats: dict[int | str, JSONDict] = {}
        self.errors: list[str] = []  # internal handler errors, for debugging failing tests
        self.webhook_url = ""
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._pending: list[JSONDict] = []
        self._next_update_id = 1
        self._next_message_id: dict[int | str, int] = {}
        self._sent_order: list[tuple[int | str, int]] = []
        self._member_status: dict[tuple[int | str, int], str] = {}
        self._fail_rules: list[_FailRule] = []
        self._unanswered: list[tuple[str, int | str | None]] = []  # (method, chat) to hang up on
        self._blocked: set[int | str] = set()
        self._deleted: set[tuple[int | str, int]] = set()  # users' messages deleted since
        self._callback_ids = itertools.count(1)
        self._stopping = False
        self._long_polls = 0  # getUpdates requests currently blocked (lets tests sync on it)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._method_table = self._handlers()

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> FakeBotAPI:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._stopping = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="FakeBotAPI",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._cond:
            self._stopping = True  # wakes blocked getUpdates so handler threads finish
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=2)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeBotAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeBotAPI is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What to pass to ``Bot(base_url=...)``; PTB appends the token itself."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def bot_user(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    # ------------------------------------------------------------------- call recording

    def calls_to(self, method: str) -> list[Call]:
        wanted = method.lower()
        with self._lock:
            return [call for call in self.calls if call.method.lower() == wanted]

    def texts_without_html(self) -> list[Call]:
        """Text-carrying calls sent without parse_mode HTML. backbot escapes every text as
        HTML, so for it each of these would show tags and entities to the reader."""
        with self._lock:
            return [call for call in self.calls
                    if call.method in ("sendMessage", "editMessageText")
                    and call.params.get("parse_mode") != "HTML"]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def wait_for(self, predicate: Callable[[list[Call]], bool], timeout: float = 5.0) -> bool:
        """Poll until ``predicate(calls_snapshot)`` holds; returns whether it did in time."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                snapshot = list(self.calls)
            if predicate(snapshot):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                # Woken early by every recorded call; the short cap keeps it a poll.
                self._cond.wait(min(remaining, 0.02))

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> bool:
        wanted = method.lower()
        return self.wait_for(
            lambda calls: sum(c.method.lower() == wanted for c in calls) >= count, timeout
        )

    # ------------------------------------------------------------------ error injection

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 400,
        description: str | None = None,
        retry_after: int | None = None,
        count: int = 1,
        chat_id: int | str | None = None,
    ) -> None:
        """Make the next ``count`` calls to ``method`` fail.

        With ``retry_after`` the error becomes a flood-control 429 (unless another
        ``error_code`` is given) carrying ``parameters.retry_after``, which PTB raises as
        ``RetryAfter``. ``description`` defaults to a fitting message.
        """
        if retry_after is not None:
            if error_code == 400:
                error_code = 429
            if description is None:
                description = f"Too Many Requests: retry after {retry_after}"
        if description is None:
            description = "Bad Request: injected failure"
        rule = _FailRule(
            method=method.lower(),
            chat_id=None if chat_id is None else _chat_key(chat_id),
            remaining=count,
            error_code=error_code,
            description=description,
            retry_after=retry_after,
        )
        with self._lock:
            self._fail_rules.append(rule)

    def hang_up_next(self, method: str, *, chat_id: int | str | None = None) -> None:
        """Carry out the next call to ``method`` (in ``chat_id``) but close the connection
        instead of answering: the answer lost on its way back. PTB raises NetworkError."""
        with self._lock:
            self._unanswered.append(
                (method.lower(), None if chat_id is None else _chat_key(chat_id)))

    def _hangs_up(self, method: str, params: dict[str, Any]) -> bool:
        chat = _chat_key(params["chat_id"]) if "chat_id" in params else None
        with self._lock:
            for rule in self._unanswered:
                if rule[0] == method and rule[1] in (None, chat):
                    self._unanswered.remove(rule)
                    return True
        return False

    def block_user(self, chat_id: int | str) -> None:
        with self._lock:
            self._blocked.add(_chat_key(chat_id))

    def unblock_user(self, chat_id: int | str) -> None:
        with self._lock:
            self._blocked.discard(_chat_key(chat_id))

    def set_member_status(self, chat_id: int | str, user_id: int, status: str) -> None:
        """Status returned by getChatMember: creator/administrator/member/restricted/left/kicked."""
        with self._lock:
            self._member_status[(_chat_key(chat_id), user_id)] = status

    # ----------------------------------------------------------------- stored messages

    def sent_to(self, chat_id: int | str) -> list[JSONDict]:
        """Messages the bot sent into ``chat_id`` that still exist, oldest first."""
        key = _chat_key(chat_id)
        with self._lock:
            return [
                copy.deepcopy(self.messages[k])
                for k in self._sent_order
                if k[0] == key and k in self.messages
            ]

    def last_message(self, chat_id: int | str) -> JSONDict | None:
        sent = self.sent_to(chat_id)
        return sent[-1] if sent else None

    # ---------------------------------------------------------------------- updates in

    def push_update(self, update: JSONDict) -> int:
        """Queue an update for getUpdates; assigns ``update_id`` if missing and returns it."""
        update = copy.deepcopy(update)
        with self._cond:
            if "update_id" in update:
                update_id = int(update["update_id"])
                self._next_update_id = max(self._next_update_id, update_id + 1)
            else:
                update_id = self._next_update_id
                self._next_update_id += 1
                update["update_id"] = update_id
            self._pending.append(update)
            self._cond.notify_all()  # wake long polls immediately
        return update_id

    @property
    def pending_updates(self) -> list[JSONDict]:
        with self._lock:
            return copy.deepcopy(self._pending)

    def send_text(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ana",
        chat_title: str | None = None,
        entities: list[JSONDict] | None = None,
        *,
        deleted: bool = False,
        thread: int | None = None,
    ) -> int:
        """With `deleted`, the message is gone before the bot answers (a member or a
        cleaning bot deleted it): replies quoting it fail unless they allow sending
        without the reply, as in Telegram. With `thread`, it is posted in that topic of a
        forum group."""
        message = self._user_message(chat_id, user_id, chat_type, first_name, chat_title)
        message["text"] = text
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        if deleted:
            with self._lock:
                self._deleted.add((_chat_key(chat_id), message["message_id"]))
        command = COMMAND.match(text)  # includes a "/cmd@botname" suffix if present
        if entities is None and command is not None:
            entities = [{"type": "bot_command", "offset": 0,
                         "length": _utf16_len(command[0])}]
        if entities:
            message["entities"] = entities
        return self.push_update({"message": message})

    def send_sticker(self, chat_id: int, user_id: int | None = None) -> int:
        message = self._user_message(chat_id, user_id)
        message["sticker"] = {
            "file_id": "CAACAgIAAxkBAAFakeSticker",
            "file_unique_id": "AgADFakeSticker",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "type": "regular",
            "emoji": "👍",
        }
        return self.push_update({"message": message})

    def send_photo(self, chat_id: int, user_id: int | None = None,
                   album: str | None = None) -> int:
        """A photo; with `album`, one part of an album (Telegram sends each part as a
        message of its own, sharing a media_group_id)."""
        message = self._user_message(chat_id, user_id)
        if album is not None:
            message["media_group_id"] = album
        message["photo"] = [
            {
                "file_id": f"AgACFakePhoto{size}",
                "file_unique_id": f"AQADFake{size}",
                "width": size,
                "height": size,
                "file_size": size * 10,
            }
            for size in (90, 320, 800)
        ]
        return self.push_update({"message": message})

    def edit_text(
        self, chat_id: int, message_id: int, text: str, user_id: int | None = None
    ) -> int:
        """An ``edited_message`` update: the user edited their earlier message."""
        message = self._user_message(chat_id, user_id, new_message_id=False)
        message["message_id"] = message_id
        message["edit_date"] = int(time.time())
        message["text"] = text
        return self.push_update({"edited_message": message})

    def channel_post(self, chat_id: int, text: str, title: str = "Rehab channel") -> int:
        chat = {"id": chat_id, "type": "channel", "title": title}
        with self._lock:
            self.chats[chat_id] = chat
            message_id = self._take_message_id(chat_id)
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "sender_chat": chat,
            "text": text,
        }
        return self.push_update({"channel_post": message})

    def tap(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        user_id: int | None = None,
        chat_type: str = "private",
        callback_id: str | None = None,
    ) -> int:
        """A user pressing an inline button on the bot's message ``message_id``."""
        user = self._user(self._default_user_id(chat_id, user_id, chat_type))
        with self._lock:
            stored = self.messages.get((_chat_key(chat_id), message_id))
            if stored is not None:
                message = copy.deepcopy(stored)
            else:  # unknown (e.g. sent before the fake started): the minimum PTB accepts
                message = {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": self._remember_chat(chat_id, chat_type),
                    "from": self.bot_user,
                    "text": "",
                }
        query = {
            "id": callback_id or f"cbq-{next(self._callback_ids)}",
            "from": user,
            "chat_instance": f"ci{abs(chat_id)}",
            "message": message,
            "data": data,
        }
        return self.push_update({"callback_query": query})

    def inline_tap(self, user_id: int, data: str) -> int:
        """A button on an inline message (sent through inline mode): no `message`."""
        query = {"id": f"cbq-{next(self._callback_ids)}", "from": self._user(user_id),
                 "chat_instance": f"ci{user_id}", "inline_message_id": "AAAA-inline",
                 "data": data}
        return self.push_update({"callback_query": query})

    def my_chat_member(
        self, chat_id: int, chat_type: str, old_status: str, new_status: str, by_user_id: int,
        *, old_is_member: bool = True, new_is_member: bool = True,
    ) -> int:
        """The bot's own membership changed (added to a group, blocked in private, ...).
        `*_is_member` false: a "restricted" bot that is not in the chat (left or removed
        while muted)."""
        with self._lock:
            chat = self._remember_chat(chat_id, chat_type)
            self._member_status[(_chat_key(chat_id), self.bot_id)] = new_status
        update = {
            "chat": chat,
            "from": self._user(by_user_id),
            "date": int(time.time()),
            "old_chat_member": self._member_dict(self.bot_user, old_status, old_is_member),
            "new_chat_member": self._member_dict(self.bot_user, new_status, new_is_member),
        }
        return self.push_update({"my_chat_member": update})

    # --------------------------------------------------------------------- builders (private)

    def _default_user_id(self, chat_id: int, user_id: int | None, chat_type: str) -> int:
        if user_id is not None:
            return user_id
        return chat_id if chat_type == "private" else _DEFAULT_GROUP_USER_ID

    def _user(self, user_id: int, first_name: str = "Ana") -> JSONDict:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}

    def _remember_chat(
        self,
        chat_id: int | str,
        chat_type: str,
        first_name: str = "Ana",
        title: str | None = None,
    ) -> JSONDict:
        key = _chat_key(chat_id)
        if chat_type == "private":
            chat: JSONDict = {"id": key, "type": "private", "first_name": first_name}
        else:
            known = self.chats.get(key, {})
            chat = {
                "id": key,
                "type": chat_type,
                "title": title
                or known.get("title")
                or ("Rehab channel" if chat_type == "channel" else "Test group"),
            }
        self.chats[key] = chat
        return dict(chat)

    def _take_message_id(self, chat_id: int | str) -> int:
        # One counter per chat shared by user and bot messages, as in real private chats.
        key = _chat_key(chat_id)
        message_id = self._next_message_id.get(key, 1)
        self._next_message_id[key] = message_id + 1
        return message_id

    def _user_message(
        self,
        chat_id: int,
        user_id: int | None,
        chat_type: str = "private",
        first_name: str = "Ana",
        chat_title: str | None = None,
        *,
        new_message_id: bool = True,
    ) -> JSONDict:
        uid = self._default_user_id(chat_id, user_id, chat_type)
        with self._lock:
            chat = self._remember_chat(chat_id, chat_type, first_name, chat_title)
            message_id = self._take_message_id(chat_id) if new_message_id else 0
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(uid, first_name),
        }

    def _chat_for(self, chat_id: int | str) -> JSONDict:
        key = _chat_key(chat_id)
        known = self.chats.get(key)
        if known is not None:
            return dict(known)
        if isinstance(key, str):
            return {"id": -1001000000000, "type": "channel", "title": key, "username": key[1:]}
        if key > 0:
            return {"id": key, "type": "private", "first_name": "Ana"}
        chat_type = "supergroup" if str(key).startswith("-100") else "group"
        return {"id": key, "type": chat_type, "title": "Test group"}

    @staticmethod
    def _member_dict(user: JSONDict, status: str, is_member: bool = True) -> JSONDict:
        """A ChatMember with exactly the fields PTB 22's subclasses require."""
        member: JSONDict = {"user": user, "status": status}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=False,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=False,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
            )
        elif status == "restricted":
            member.update(
                is_member=is_member,
                can_change_info=False,
                can_invite_users=False,
                can_pin_messages=False,
                can_send_messages=False,
                can_send_polls=False,
                can_send_other_messages=False,
                can_add_web_page_previews=False,
                can_manage_topics=False,
                until_date=0,
                can_send_audios=False,
                can_send_documents=False,
                can_send_photos=False,
                can_send_videos=False,
                can_send_video_notes=False,
                can_send_voice_notes=False,
                can_edit_tag=False,
                can_react_to_messages=False,
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _record_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    # ------------------------------------------------------------------------- dispatch

    def _dispatch(self, path: str, content_type: str, body: bytes) -> tuple[int, JSONDict]:
        """Handle one HTTP request; returns (status, JSON payload). Runs in a handler thread."""
        if self.delay > 0:
            time.sleep(self.delay)
        split = urlsplit(path)
        prefix, _, rest = split.path.lstrip("/").partition("/")
        if not prefix.startswith("bot") or not rest:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if prefix[3:] != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}

        method_name = rest.strip("/")
        if extra := self.method_delays.get(method_name.lower()):
            time.sleep(extra)  # one slow method: lets a later request overtake it
        handler = self._method_table.get(method_name.lower())
        canonical = handler.__name__[3:] if handler is not None else method_name
        arrived = time.time()
        try:
            params = _parse_params(content_type, body, split.query)
        except (ValueError, UnicodeDecodeError):
            params = {}
            error: ApiError | None = ApiError(400, "Bad Request: can't parse request body")
        else:
            error = self._injected_error(method_name.lower(), params)

        result: Any = None
        if error is None:
            if handler is None:
                error = ApiError(404, "Not Found: method not found")
            else:
                try:
                    if hook := self.before_call.get(method_name.lower()):
                        hook(params)
                    result = handler(params)
                except ApiError as exc:
                    error = exc
                except Exception as exc:  # a bug in the fake: report it, don't hang the bot
                    self._record_error(f"{canonical}: {type(exc).__name__}: {exc}")
                    error = ApiError(500, f"Internal Server Error: {type(exc).__name__}")

        # Recorded after the state change, so a test that sees the call also sees its effect.
        call = Call(canonical, params, arrived, ok=error is None)
        if error is not None:
            call.error_code, call.description = error.error_code, error.description
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

        if error is None and self._hangs_up(method_name.lower(), params):
            return NO_ANSWER, {}
        if error is not None:
            payload: JSONDict = {
                "ok": False,
                "error_code": error.error_code,
                "description": error.description,
            }
            if error.parameters:
                payload["parameters"] = error.parameters
            return error.error_code, payload
        return 200, {"ok": True, "result": result}

    def _injected_error(self, method: str, params: dict[str, Any]) -> ApiError | None:
        chat = _chat_key(params["chat_id"]) if "chat_id" in params else None
        with self._lock:
            for rule in self._fail_rules:
                if rule.method != method or rule.remaining <= 0:
                    continue
                if rule.chat_id is not None and rule.chat_id != chat:
                    continue
                rule.remaining -= 1
                self._fail_rules = [r for r in self._fail_rules if r.remaining > 0]
                parameters = None
                if rule.retry_after is not None:
                    parameters = {"retry_after": rule.retry_after}
                return ApiError(rule.error_code, rule.description, parameters)
            if method in BLOCKABLE_METHODS and chat is not None and chat in self._blocked:
                return ApiError(403, BLOCKED)
        return None

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            name[3:].lower(): getattr(self, name)
            for name in dir(type(self))
            if name.startswith("on_")
        }

    # ------------------------------------------------------------------ method handlers
    # Named ``on_<Method>`` so the recorded Call carries Telegram's canonical spelling.

    def on_getMe(self, params: dict[str, Any]) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def on_getUpdates(self, params: dict[str, Any]) -> list[JSONDict]:
        offset = params.get("offset")
        limit = max(1, min(int(params.get("limit") or 100), 100))
        timeout = min(max(float(params.get("timeout") or 0), 0.0), MAX_LONG_POLL_SECONDS)
        deadline = time.monotonic() + timeout
        with self._cond:
            if isinstance(offset, int) and offset > 0:
                # Telegram forgets every update older than the offset once it is confirmed.
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
            self._long_polls += 1
            try:
                while not self._pending and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._long_polls -= 1
            if isinstance(offset, int) and offset < 0:
                return copy.deepcopy(self._pending[offset:][:limit])
            return copy.deepcopy(self._pending[:limit])

    def on_deleteWebhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.webhook_url = ""
            if params.get("drop_pending_updates"):
                self._pending.clear()
        return True

    def on_setWebhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.webhook_url = str(params.get("url") or "")
        return True

    def on_getWebhookInfo(self, params: dict[str, Any]) -> JSONDict:
        with self._lock:
            return {
                "url": self.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._pending),
            }

    def on_logOut(self, params: dict[str, Any]) -> bool:
        return True

    def on_close(self, params: dict[str, Any]) -> bool:
        return True

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def on_setMyCommands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: commands must be an array")
        with self._lock:
            self.commands[self._commands_key(params)] = copy.deepcopy(commands)
        return True

    def on_getMyCommands(self, params: dict[str, Any]) -> list[JSONDict]:
        with self._lock:
            return copy.deepcopy(self.commands.get(self._commands_key(params), []))

    def on_deleteMyCommands(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.commands.pop(self._commands_key(params), None)
        return True

    @staticmethod
    def _inline_markup(params: dict[str, Any]) -> JSONDict | None:
        # Only inline keyboards are echoed in Message.reply_markup; reply keyboards aren't.
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            return markup
        return None

    def on_sendMessage(self, params: dict[str, Any]) -> JSONDict:
        if "chat_id" not in params:
            raise ApiError(400, "Bad Request: chat_id is empty")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        chat_id = _chat_key(params["chat_id"])
        replying = params.get("reply_parameters")
        if (isinstance(replying, dict) and not replying.get("allow_sending_without_reply")
                and (chat_id, replying.get("message_id")) in self._deleted):
            raise ApiError(400, REPLIED_GONE)
        with self._lock:
            message: JSONDict = {
                "message_id": self._take_message_id(chat_id),
                "date": int(time.time()),
                "chat": self._chat_for(chat_id),
                "from": self.bot_user,
                "text": text,
            }
            if isinstance(params.get("entities"), list):
                message["entities"] = params["entities"]
            markup = self._inline_markup(params)
            if markup is not None:
                message["reply_markup"] = markup
            key = (chat_id, message["message_id"])
            self.messages[key] = message
            self._sent_order.append(key)
            return copy.deepcopy(message)

    def _message_to_edit(self, params: dict[str, Any]) -> tuple[int | str, int] | None:
        """Key of the stored message, or None for inline messages (not tracked)."""
        if params.get("inline_message_id"):
            return None
        if "chat_id" not in params or "message_id" not in params:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        key = (_chat_key(params["chat_id"]), int(params["message_id"]))
        if key not in self.messages:
            raise ApiError(400, "Bad Request: message to edit not found")
        return key

    def on_editMessageText(self, params: dict[str, Any]) -> JSONDict | bool:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        with self._lock:
            key = self._message_to_edit(params)
            if key is None:
                return True
            stored = self.messages[key]
            markup = self._inline_markup(params)  # omitting it removes the keyboard
            if stored.get("text") == text and stored.get("reply_markup") == markup:
                raise ApiError(400, NOT_MODIFIED)
            stored["text"] = text
            stored["edit_date"] = int(time.time())
            stored.pop("entities", None)
            if isinstance(params.get("entities"), list):
                stored["entities"] = params["entities"]
            if markup is None:
                stored.pop("reply_markup", None)
            else:
                stored["reply_markup"] = markup
            return copy.deepcopy(stored)

    def on_editMessageReplyMarkup(self, params: dict[str, Any]) -> JSONDict | bool:
        with self._lock:
            key = self._message_to_edit(params)
            if key is None:
                return True
            stored = self.messages[key]
            markup = self._inline_markup(params)
            if stored.get("reply_markup") == markup:
                raise ApiError(400, NOT_MODIFIED)
            if markup is None:
                stored.pop("reply_markup", None)
            else:
                stored["reply_markup"] = markup
            stored["edit_date"] = int(time.time())
            return copy.deepcopy(stored)

    def on_deleteMessage(self, params: dict[str, Any]) -> bool:
        if "chat_id" not in params or "message_id" not in params:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        key = (_chat_key(params["chat_id"]), int(params["message_id"]))
        with self._lock:
            if self.messages.pop(key, None) is None:
                raise ApiError(400, "Bad Request: message to delete not found")
        return True

    def on_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        return True

    def on_sendChatAction(self, params: dict[str, Any]) -> bool:
        return True

    def on_getChat(self, params: dict[str, Any]) -> JSONDict:
        with self._lock:
            chat = self._chat_for(params.get("chat_id", 0))
        # ChatFullInfo needs these on top of the plain Chat fields.
        chat.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        return chat

    def on_getChatMember(self, params: dict[str, Any]) -> JSONDict:
        chat_id = _chat_key(params.get("chat_id", 0))
        user_id = int(params.get("user_id") or 0)
        with self._lock:
            status = self._member_status.get((chat_id, user_id), "member")
        user = self.bot_user if user_id == self.bot_id else self._user(user_id)
        return self._member_dict(user, status)

    def on_getChatAdministrators(self, params: dict[str, Any]) -> list[JSONDict]:
        chat_id = _chat_key(params.get("chat_id", 0))
        with self._lock:
            admins = [
                (uid, status)
                for (cid, uid), status in self._member_status.items()
                if cid == chat_id and status in _ADMIN_STATUSES
            ]
        return [
            self._member_dict(self.bot_user if uid == self.bot_id else self._user(uid), status)
            for uid, status in admins
        ]

    def on_leaveChat(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._member_status[(_chat_key(params.get("chat_id", 0)), self.bot_id)] = "left"
        return True


@contextlib.contextmanager
def no_proxy() -> Iterator[None]:
    """Keep httpx from routing 127.0.0.1 through a proxy from the environment."""
    saved = {name: os.environ.pop(name) for name in PROXY_VARS if name in os.environ}
    old_no_proxy = os.environ.get("NO_PROXY")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    try:
        yield
    finally:
        os.environ.update(saved)
        if old_no_proxy is None:
            os.environ.pop("NO_PROXY", None)
        else:
            os.environ["NO_PROXY"] = old_no_proxy
