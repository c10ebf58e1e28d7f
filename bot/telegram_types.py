"""PTB's generic classes and filters as this bot uses them (default context types
throughout), shared by the private-chat and group handlers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias

from telegram import ChatMember, Update
from telegram.ext import Application, ContextTypes, filters

App: TypeAlias = Application[Any, Any, Any, Any, Any, Any]
Handler: TypeAlias = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]

# A command someone forwarded (or picked from another bot's inline results) is passed on,
# not given: it is answered as text in private, and turns nothing on or off in a group.
PASSED_ON = filters.FORWARDED | filters.VIA_BOT
# The bot's place in a chat when it is no longer there (in private: blocked).
GONE_STATUSES = frozenset({ChatMember.LEFT, ChatMember.BANNED})
