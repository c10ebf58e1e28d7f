"""Per-user locks: one user's updates in order, others unhindered, nothing left behind."""

from __future__ import annotations

import asyncio

from bot.keyed_locks import KeyedLocks


def test_one_users_updates_run_one_at_a_time_and_locks_are_dropped() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: int, name: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    async def scenario() -> None:
        await asyncio.gather(work(1, "a", 0.02), work(1, "b", 0), work(2, "c", 0))
        assert len(locks) == 0

    asyncio.run(scenario())
    assert order.index("a-") < order.index("b+")  # same user: strictly in turn
    assert order.index("c-") < order.index("a-")  # another user does not wait


def test_a_cancelled_waiter_leaves_no_lock_behind() -> None:
    locks = KeyedLocks()

    async def scenario() -> None:
        async with locks.hold(1):
            waiter = asyncio.create_task(locks.hold(1).__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            assert len(locks) == 1  # only the holder
        assert len(locks) == 0

    asyncio.run(scenario())
