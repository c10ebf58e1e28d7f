"""Many chats' daily tips: rebuilt at start-up, changed or removed one chat at a time, with
work per chat that does not grow with the number of chats (no walk through every job).

The work is counted, not timed: the list where the scheduler keeps its jobs (pending
until it starts, then in its memory store) is swapped for one that counts the items read
by walking it. Looking a job up by its id reads none.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from group_harness import engine as shipped_engine
from telegram.ext import Application, ApplicationBuilder

from bot.schedules import ScheduleStore
from bot.store import open_database
from bot.telegram_groups import GroupFeatures

FIRST_CHAT = -100_555_000_000


class WalkedList(list[Any]):
    """A list that counts the items read by walking it (bisect and indexing read none)."""

    walked = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            self.walked += 1
            yield item


def chats(count: int) -> list[int]:
    return [FIRST_CHAT - n for n in range(count)]


def restored(store: ScheduleStore, count: int, hhmm: str,
             now: dt.datetime) -> tuple[Application, GroupFeatures]:  # type: ignore[type-arg]
    """`count` chats with a daily tip at `hhmm` UTC, rebuilt at a start at `now` into an
    Application whose scheduler has not started (as in post_init); the pending jobs are
    kept in a WalkedList."""
    for chat in chats(count):
        store.put(chat, hhmm, "UTC")
    app = ApplicationBuilder().token("123456:test-token").build()
    assert app.job_queue is not None
    scheduler = app.job_queue.scheduler
    assert not scheduler.running and scheduler._pending_jobs == []
    scheduler._pending_jobs = WalkedList()
    groups = GroupFeatures(shipped_engine().content, store, "UTC")
    groups.now = lambda: now
    groups.restore_jobs(app)
    return app, groups


def job_names(jobs: list[Any]) -> list[str]:
    return sorted(str(job.name) for job in jobs)


@pytest.mark.parametrize("count", [50, 200])
def test_restoring_tips_missed_while_down_walks_no_job_list_per_chat(
        tmp_path: Path, count: int) -> None:
    """Every chat's tip fell due 3 minutes before the start: each gets its daily job and a
    catch-up, and nothing already scheduled is looked through to place them (it was
    quadratic: each catch-up looked for an earlier one among all the jobs)."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    with contextlib.closing(open_database(tmp_path / "db.sqlite3")) as db:
        app, _ = restored(ScheduleStore(db), count,
                          (now - dt.timedelta(minutes=3)).strftime("%H:%M"), now)
    assert app.job_queue is not None
    pending = app.job_queue.scheduler._pending_jobs
    walked = pending.walked
    assert walked <= count, f"{walked} jobs read to restore {count} chats"
    assert len(pending) == 2 * count
    expected = [f"{kind}:{chat}" for chat in chats(count)
                for kind in ("dailytip", "dailytip-late")]
    assert job_names([job for job, _, _ in pending]) == sorted(expected)


def test_a_change_or_removal_walks_no_other_chats_jobs(tmp_path: Path) -> None:
    """With many chats' jobs running, one chat's /dailytip replaces its job and its removal
    (the bot left) drops it, each without reading the other chats' jobs; the other chats
    keep theirs, and the chat's last change is forgotten with it."""
    count = 200
    now = dt.datetime.now(dt.UTC)
    far = (now + dt.timedelta(hours=11)).strftime("%H:%M")  # nothing runs while this does
    farther = (now + dt.timedelta(hours=12)).strftime("%H:%M")
    chat, *others = chats(count)

    async def scenario(store: ScheduleStore) -> None:
        app, groups = restored(store, count, far, now)
        queue = app.job_queue
        assert queue is not None
        await queue.start()
        try:
            store = queue.scheduler._jobstores["default"]
            assert len(store._jobs) == count
            store._jobs = jobs = WalkedList(store._jobs)

            answer = groups._configure(app, chat, [farther, "UTC"], sent=7)
            assert farther in answer
            assert jobs.walked < count, f"{jobs.walked} jobs read to change one chat's"
            [daily] = queue.get_jobs_by_name(f"dailytip:{chat}")
            assert daily.next_t.astimezone(dt.UTC).strftime("%H:%M") == farther
            assert groups._last_change == {chat: 7}

            jobs.walked = 0
            groups._remove_schedule(app, chat, "left a supergroup")
            assert jobs.walked < count, f"{jobs.walked} jobs read to remove one chat's"
            assert queue.get_jobs_by_name(f"dailytip:{chat}") == ()
            assert job_names([job for job, _ in jobs]) == sorted(
                f"dailytip:{other}" for other in others)
            assert groups.schedules.get(chat) is None
            assert groups._last_change == {}  # nothing kept about a chat the bot left
        finally:
            await queue.stop(wait=False)

    with contextlib.closing(open_database(tmp_path / "db.sqlite3")) as db:
        asyncio.run(asyncio.wait_for(scenario(ScheduleStore(db)), 20))
