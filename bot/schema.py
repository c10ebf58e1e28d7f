"""Small shape checks for YAML data, each failing with file, line and what is wrong."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bot.errors import DataError
from bot.yamlio import Mapping, line_of

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


def mapping(value: Any, file: Path, what: str, *, line: int | None = None) -> Mapping:
    if not isinstance(value, Mapping):
        raise DataError(file, f"{what} must be a mapping", line=line_of(value) or line)
    return value


def keys(value: Mapping, file: Path, what: str, required: set[str],
         optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    missing = sorted(required - value.keys())
    if missing:
        raise DataError(file, f"{what} is missing {', '.join(missing)}", line=value.line)
    unknown = sorted(value.keys() - required - optional, key=str)  # YAML keys: any type
    if unknown:
        raise DataError(file, f"{what} has unknown key(s) {', '.join(map(str, unknown))}",
                        line=value.line)


def text(value: Any, file: Path, what: str, *, line: int | None) -> str:
    if not isinstance(value, str) or not value.strip():
        hint = " (quote yes/no/on/off in YAML)" if isinstance(value, bool) else ""
        raise DataError(file, f"{what} must be non-empty text{hint}", line=line)
    return value


def ident(value: Any, file: Path, what: str, *, line: int | None) -> str:
    checked = text(value, file, what, line=line)
    if not ID_PATTERN.match(checked):
        raise DataError(file, f"{what} {checked!r} must look like lower_case.ids", line=line)
    return checked


def text_list(value: Any, file: Path, what: str, *, line: int | None) -> list[str]:
    if not isinstance(value, list) or not value:
        raise DataError(file, f"{what} must be a non-empty list", line=line)
    return [text(v, file, f"{what} entry", line=line) for v in value]
