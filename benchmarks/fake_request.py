"""An in-process Bot API for benchmarks: answers PTB's calls without any network."""

from __future__ import annotations

import json
import time
from typing import Any, TypeAlias

from telegram.request import BaseRequest, RequestData

Json: TypeAlias = dict[str, Any]  # an update or a call's parameters, as JSON
Call: TypeAlias = tuple[str, Json]  # a Bot API method's name and its parameters

BOT_USER = {"id": 1, "is_bot": True, "first_name": "backbot", "username": "backbot_bench_bot",
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False}


class RecordingRequest(BaseRequest):
    """Records (method, parameters) and answers like Telegram would, message ids included."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._next_id: dict[int, int] = {}

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: object = None, write_timeout: object = None,
                         connect_timeout: object = None,
                         pool_timeout: object = None) -> tuple[int, bytes]:
        name = url.rsplit("/", 1)[-1]
        params = request_data.parameters if request_data is not None else {}
        self.calls.append((name, params))
        return 200, json.dumps({"ok": True, "result": self._result(name, params)}).encode()

    def _result(self, name: str, params: dict[str, Any]) -> Any:
        if name == "getMe":
            return BOT_USER
        if name in ("sendMessage", "editMessageText", "editMessageReplyMarkup"):
            chat_id = int(params["chat_id"])
            if name == "sendMessage":
                message_id = self._next_id.get(chat_id, 0) + 1
                self._next_id[chat_id] = message_id
            else:
                message_id = int(params["message_id"])
            message = {"message_id": message_id, "date": int(time.time()), "from": BOT_USER,
                       "chat": {"id": chat_id, "type": "private", "first_name": "U"},
                       "text": params.get("text", "")}
            if "reply_markup" in params:
                message["reply_markup"] = params["reply_markup"]
            return message
        return True

    def forget_chat(self, chat_id: int) -> None:
        """Drop the recorder's own per-chat state (so it does not count as the bot's memory)."""
        self._next_id.pop(chat_id, None)
