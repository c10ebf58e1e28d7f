"""PTB's generic classes as this bot uses them: default context types throughout."""

from __future__ import annotations

from typing import Any, TypeAlias

from telegram.ext import Application

App: TypeAlias = Application[Any, Any, Any, Any, Any, Any]
