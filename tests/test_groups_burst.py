"""Many daily tips at once through the production rate limiter (build_application's default).

Telegram's limits: about 30 messages a second overall, and 20 a minute into one group.
The 50 schedules are written to the database before start-up, so this also checks that
post_init restores every one of them.
"""

from __future__ import annotations

import asyncio
import html
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.schedules import ScheduleStore
from bot.store import open_database

try:  # works whether or not tests/ is a package
    from group_harness import Call, fake_api, run, running_bot
    from group_harness import engine as shipped_engine
except ImportError:  # pragma: no cover - depends on how pytest sets up sys.path
    from tests.group_harness import Call, fake_api, run, running_bot
    from tests.group_harness import engine as shipped_engine

CHATS = [-100_600_000_000 - n for n in range(50)]
PER_SECOND = 30
PER_SECOND_TOLERANCE = 2
PER_GROUP_PER_MINUTE = 20
TIPS = shipped_engine().content.cards_tagged("tip")


def most_in_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + seconds) for t in times), default=0)


def schedule(db_path: Path, chats: list[int]) -> None:
    db = open_database(db_path)
    try:
        for chat in chats:
            ScheduleStore(db).set(chat, "08:00", "UTC")
    finally:
        db.close()


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """All 50 daily-tip jobs run at once; what the fake recorded."""
    db_path = tmp_path_factory.mktemp("burst") / "db.sqlite3"
    schedule(db_path, CHATS)

    async def scenario() -> dict[str, Any]:
        with fake_api() as api:
            async with running_bot(api, db_path, default_limits=True) as bot:
                jobs = [bot.job(chat) for chat in CHATS]  # restored from the database
                await asyncio.wait_for(asyncio.gather(*(job.run(bot.app) for job in jobs)),
                                       15)
                return {"calls": api.calls_to("sendMessage"),
                        "messages": {chat: api.sent_to(chat) for chat in CHATS},
                        "errors": list(bot.errors), "api_errors": list(api.errors),
                        "rows": bot.rows()}

    yield run(scenario(), timeout=25)


def test_burst_delivers_every_daily_tip(burst: dict[str, Any]) -> None:
    calls: list[Call] = burst["calls"]
    assert burst["errors"] == [] and burst["api_errors"] == []
    assert all(call.ok for call in calls)
    assert sorted(call.params["chat_id"] for call in calls) == sorted(CHATS)  # one each
    titles = [f"<b>{html.escape(card.title, quote=False)}</b>" for card in TIPS]
    for chat in CHATS:
        [message] = burst["messages"][chat]
        assert '<a href="http' in message["text"]
        assert sum(title in message["text"] for title in titles) == 1
    assert [row[0] for row in burst["rows"]] == sorted(CHATS)  # nothing dropped
    for chat in CHATS:
        times = [call.time for call in calls if call.params["chat_id"] == chat]
        assert most_in_window(times, 60) <= PER_GROUP_PER_MINUTE


def test_burst_stays_under_telegrams_overall_limit(burst: dict[str, Any]) -> None:
    times = [call.time for call in burst["calls"]]
    assert len(times) == len(CHATS)
    assert most_in_window(times, 1.0) <= PER_SECOND + PER_SECOND_TOLERANCE


def test_one_group_gets_tips_spaced_for_20_a_minute(tmp_path: Path) -> None:
    """Telegram allows 20 messages a minute per group; the limiter spaces them 3 s apart,
    so no 60-second window can hold more than 20 (checked on three, to stay quick)."""
    chat = CHATS[0]
    db_path = tmp_path / "db.sqlite3"
    schedule(db_path, [chat])
    count = 3

    async def scenario() -> list[float]:
        with fake_api() as api:
            async with running_bot(api, db_path, default_limits=True) as bot:
                job = bot.job(chat)
                await asyncio.wait_for(asyncio.gather(
                    *(job.run(bot.app) for _ in range(count))), 15)
                assert bot.errors == []
                return [call.time for call in api.calls_to("sendMessage")]

    times = sorted(run(scenario()))
    assert len(times) == count  # all delivered
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 60 / PER_GROUP_PER_MINUTE - 0.1
