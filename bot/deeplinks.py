"""Deep-link payloads (t.me/<bot>?start=<payload>) for the hand-off from a group."""

from __future__ import annotations

import re

PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
GROUP_PREFIX = "g"


def group_payload(chat_id: int) -> str:
    """Names the group the hand-off came from, never the person tapping it."""
    return f"{GROUP_PREFIX}{chat_id}".replace("-", "_")


def is_group_payload(payload: str | None) -> bool:
    return bool(payload and PAYLOAD.match(payload) and payload.startswith(GROUP_PREFIX)
                and payload[1:].lstrip("_").isdigit())


def checkin_url(bot_username: str, chat_id: int) -> str:
    return f"https://t.me/{bot_username}?start={group_payload(chat_id)}"
