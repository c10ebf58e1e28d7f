"""Errors that name the file and place that is wrong, for people editing YAML."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """A dialog or content file is wrong; the message says where and what."""

    def __init__(self, file: Path | str, what: str, *, line: int | None = None,
                 state: str | None = None) -> None:
        self.file = str(file)
        self.what = what
        self.line = line
        self.state = state
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.state is not None:
            where += f" (state {self.state})"
        return f"{where}: {self.what}"
