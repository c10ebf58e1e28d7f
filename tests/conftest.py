"""Core fixtures: the shipped engine and throw-away copies of the shipped data."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot import paths
from bot.engine import Engine
from bot.loading import DIALOG_FILE, load_engine

try:  # works whether or not tests/ is a package
    from fake_bot_api import FakeBotAPI, no_proxy
except ImportError:  # pragma: no cover - depends on how pytest sets up sys.path
    from tests.fake_bot_api import FakeBotAPI, no_proxy


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine over the shipped dialog and content (shared: the engine is stateless)."""
    return load_engine()


@dataclass(frozen=True)
class DataCopy:
    """A private copy of the shipped dialog and content, free to mutate."""

    dialog: Path  # .../dialogs/screening.yaml
    content: Path  # .../content/

    def check_args(self) -> list[str]:
        return ["check", "--dialog", str(self.dialog), "--content", str(self.content)]


@pytest.fixture
def data_copy(tmp_path: Path) -> DataCopy:
    dialogs = tmp_path / "dialogs"
    dialogs.mkdir()
    dialog = dialogs / DIALOG_FILE
    shutil.copyfile(paths.dialogs_dir() / DIALOG_FILE, dialog)
    content = tmp_path / "content"
    shutil.copytree(paths.content_dir(), content)
    return DataCopy(dialog=dialog, content=content)


@pytest.fixture
def older_database(tmp_path: Path) -> Callable[[str], Path]:
    """A database file as an older version of the bot left it, from its SQL script."""
    def make(script: str) -> Path:
        path = tmp_path / "old.sqlite3"
        old = sqlite3.connect(path)
        old.executescript(script)
        old.commit()
        old.close()
        return path
    return make


# Answers (choice ids) that walk the screening dialog. Every red-flag question answered
# "no": bladder, saddle, legs, chest, accident, fever, cancer, other signs, shooting pain,
# one leg.
RED_FLAGS_NO = ("no",) * 10
TO_DOCTOR_PROMPT = ("agree", *RED_FLAGS_NO, "none", "yes", "next")
TO_SUGGESTIONS = (*TO_DOCTOR_PROMPT, "understood", "yes", "yes", "yes", "no")


# The tests' own list of words that name an activity, kept apart from the dialog's
# `activity_words` so a word dropped there is still caught here.
ACTIVITY_WORDS = ("walk", "treadmill", "swim", "pool", "water", "aqua", "bike", "cycl",
                  "spinning", "elliptical", "cross-train", "rowing", "stair", "run", "jog",
                  "jump", "skipping", "aerobic", "backstroke", "crawl", "recumbent", "danc",
                  "yoga", "pilates", "gym", "stationary bike", "strength", "flexib", "stretch",
                  "stroll", "hik", "tai chi", "hydro", "sprint", "climb", "cross train",
                  "wading", "squat", "weight train", "weightlift")
_ACTIVITY = re.compile(r"\b(" + "|".join(map(re.escape, ACTIVITY_WORDS)) + ")", re.IGNORECASE)


def _find_activity(text: str) -> str | None:
    match = _ACTIVITY.search(text)
    return match.group(0) if match else None


@pytest.fixture(scope="session")
def find_activity() -> Callable[[str], str | None]:
    """`find_activity(text)`: the first activity word in text, or None."""
    return _find_activity


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    """A Bot API server of the tests' own, started on 127.0.0.1 for one test (and no proxy
    from the environment between it and the test)."""
    with no_proxy(), FakeBotAPI() as server:
        yield server
