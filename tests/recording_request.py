"""An in-process Bot API for python-telegram-bot: a `BaseRequest` that answers and records.

No HTTP, no threads: PTB hands every Bot API call to `do_request`, which answers it from
a small in-memory model of the chats (the messages the bot sent, with their keyboards) and
records it. Fast enough for property tests that push thousands of updates.

    request = RecordingRequest()
    app = build_application(settings, engine, store, request=request)
    await app.initialize()                      # getMe
    await app.process_update(Update.de_json(raw, app.bot))
    request.sent_to(42)                         # the messages chat 42 received

Faults: `inject(Fault(...))` fails the next matching call(s) the way Telegram does
(403 Forbidden, 400 "message is not modified", 429 with retry_after, or TimedOut raised
from the transport). Edits also fail naturally, as Telegram's do: 400 "message is not
modified" when nothing changes, 400 "message to edit not found" for an unknown message.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from telegram.error import TimedOut
from telegram.request import BaseRequest, RequestData

__all__ = ["BOT_ID", "BOT_USERNAME", "Call", "Fault", "RecordingRequest"]

BOT_ID = 1
BOT_USERNAME = "backbot_test_bot"
BLOCKED = "Forbidden: bot was blocked by the user"
KICKED = "Forbidden: bot was kicked from the supergroup chat"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
NOT_FOUND = "Bad Request: message to edit not found"
QUERY_TOO_OLD = ("Bad Request: query is too old and response timeout expired or query id is "
                 "invalid")
SEND_METHODS = frozenset({"sendMessage", "sendChatAction"})
EDIT_METHODS = frozenset({"editMessageText", "editMessageReplyMarkup"})
ADMIN_RIGHTS = {right: True for right in (
    "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
    "can_change_info", "can_invite_users", "can_pin_messages")} | {right: False for right in (
    "can_be_edited", "is_anonymous", "can_promote_members", "can_post_stories",
    "can_edit_stories", "can_delete_stories")}
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "backbot", "username": BOT_USERNAME}


@dataclass(frozen=True)
class Fault:
    """Fail the next `times` calls whose method is in `methods` (None: any method).

    kind: "forbidden" (403), "not_modified" (400), "query_too_old" (400), "retry_after"
    (429 with parameters.retry_after) or "timed_out" (TimedOut raised by the transport).
    """

    kind: str
    methods: frozenset[str] | None = None
    times: int = 1
    retry_after: int = 1


@dataclass
class Call:
    """One Bot API call. `fault` names the error it got (injected or natural), if any."""

    method: str
    params: dict[str, Any]
    fault: str | None = None
    injected: bool = False
    retry_after: int | None = None  # for a "retry_after" fault
    result: Any = None  # what Telegram answered, on success

    @property
    def ok(self) -> bool:
        return self.fault is None

    @property
    def chat_id(self) -> int | None:
        chat = self.params.get("chat_id")
        return int(chat) if chat is not None else None


@dataclass
class _Pending:
    fault: Fault
    remaining: int


class RecordingRequest(BaseRequest):
    """Answers getMe, sendMessage, editMessageText/ReplyMarkup, answerCallbackQuery,
    sendChatAction, setMyCommands, getChatMember, deleteWebhook (and any other method with
    `true`); records every call in `calls`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        # chat id -> message id -> the message as Telegram would return it
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}
        self._last_id: dict[int, int] = {}
        self._pending: list[_Pending] = []
        self.admins: set[tuple[int, int]] = set()  # (chat id, user id) getChatMember admins

    # -- BaseRequest --

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: Any = None, write_timeout: Any = None,
                         connect_timeout: Any = None, pool_timeout: Any = None,
                         ) -> tuple[int, bytes]:
        # A network round trip yields to the event loop: updates processed together
        # (a double tap) then interleave here, as they would against Telegram.
        await asyncio.sleep(0)
        api_method = url.rsplit("/", 1)[-1]
        params = dict(request_data.parameters) if request_data is not None else {}
        call = Call(api_method, params)
        self.calls.append(call)
        fault = self._take_fault(api_method)
        if fault is not None:
            call.fault, call.injected = fault.kind, True
            if fault.kind == "retry_after":
                call.retry_after = fault.retry_after
            if fault.kind == "timed_out":
                raise TimedOut("injected: timed out")
            return self._fault_response(fault, call)
        try:
            result = self._answer(api_method, params)
        except _ApiError as exc:
            call.fault = exc.kind
            return exc.code, _dump({"ok": False, "error_code": exc.code,
                                    "description": exc.description})
        call.result = result
        return 200, _dump({"ok": True, "result": result})

    # -- faults --

    def inject(self, fault: Fault) -> None:
        self._pending.append(_Pending(fault, fault.times))

    def clear_faults(self) -> None:
        self._pending.clear()

    @property
    def has_faults(self) -> bool:
        return bool(self._pending)

    def _take_fault(self, method: str) -> Fault | None:
        for pending in self._pending:
            if pending.fault.methods is None or method in pending.fault.methods:
                pending.remaining -= 1
                if pending.remaining <= 0:
                    self._pending.remove(pending)
                return pending.fault
        return None

    def _fault_response(self, fault: Fault, call: Call) -> tuple[int, bytes]:
        if fault.kind == "forbidden":
            private = (call.chat_id or 0) > 0
            return 403, _dump({"ok": False, "error_code": 403,
                               "description": BLOCKED if private else KICKED})
        if fault.kind in ("not_modified", "query_too_old"):
            text = NOT_MODIFIED if fault.kind == "not_modified" else QUERY_TOO_OLD
            return 400, _dump({"ok": False, "error_code": 400, "description": text})
        if fault.kind == "retry_after":
            return 429, _dump({"ok": False, "error_code": 429,
                               "description": f"Too Many Requests: retry after "
                                              f"{fault.retry_after}",
                               "parameters": {"retry_after": fault.retry_after}})
        raise ValueError(f"unknown fault {fault.kind!r}")

    # -- chats --

    def next_message_id(self, chat_id: int) -> int:
        """Message ids are per chat and shared by the bot and the user, as in Telegram."""
        self._last_id[chat_id] = self._last_id.get(chat_id, 0) + 1
        return self._last_id[chat_id]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        return self.messages.get(chat_id, {}).get(message_id)

    def sent_to(self, chat_id: int, since: int = 0) -> list[Call]:
        """Successful sendMessage calls to a chat, from calls[since:] on."""
        return [c for c in self.calls[since:]
                if c.ok and c.method == "sendMessage" and c.chat_id == chat_id]

    # -- the methods --

    def _answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {**BOT_USER, "can_join_groups": True, "can_read_all_group_messages": False,
                    "supports_inline_queries": False}
        if method == "sendMessage":
            chat_id = int(params["chat_id"])
            message = {"message_id": self.next_message_id(chat_id), "date": int(time.time()),
                       "chat": _chat(chat_id), "from": BOT_USER, "text": params["text"]}
            if params.get("reply_markup"):
                message["reply_markup"] = _markup(params["reply_markup"])
            self.messages.setdefault(chat_id, {})[message["message_id"]] = message
            return message
        if method in EDIT_METHODS:
            return self._edit(method, params)
        if method == "getChatMember":
            user_id = int(params["user_id"])
            user = {"id": user_id, "is_bot": False, "first_name": "Member"}
            if (int(params["chat_id"]), user_id) in self.admins:
                return {"status": "administrator", "user": user, **ADMIN_RIGHTS}
            return {"status": "member", "user": user}
        return True  # answerCallbackQuery, sendChatAction, setMyCommands, deleteWebhook, ...

    def _edit(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        message = self.message(chat_id, message_id)
        if message is None:
            raise _ApiError(400, NOT_FOUND, "not_found")
        markup = _markup(params["reply_markup"]) if params.get("reply_markup") else None
        text = params["text"] if method == "editMessageText" else message["text"]
        if text == message["text"] and markup == message.get("reply_markup"):
            raise _ApiError(400, NOT_MODIFIED, "not_modified")
        new = {**message, "text": text, "edit_date": int(time.time())}
        new.pop("reply_markup", None)
        if markup is not None:
            new["reply_markup"] = markup
        self.messages[chat_id][message_id] = new
        return new


class _ApiError(Exception):
    def __init__(self, code: int, description: str, kind: str) -> None:
        super().__init__(description)
        self.code, self.description, self.kind = code, description, kind


def _chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}
    return {"id": chat_id, "type": "supergroup", "title": "Back pain club"}


def _markup(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else value


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()
