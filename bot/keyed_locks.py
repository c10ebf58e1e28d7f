"""One asyncio lock per key while in use: one person's updates apply one at a time."""

from __future__ import annotations

import asyncio
from typing import Any


class KeyedLocks:
    """One asyncio.Lock per user while in use, so one user's updates apply in order."""

    def __init__(self) -> None:
        self._locks: dict[int, list[Any]] = {}  # key -> [lock, holders and waiters]

    def hold(self, key: int) -> _Held:
        return _Held(self._locks, key)

    def __len__(self) -> int:
        return len(self._locks)

    def in_hand(self, key: int) -> int:
        """How many hold or wait for `key`'s lock."""
        entry = self._locks.get(key)
        return 0 if entry is None else int(entry[1])


class _Held:
    """`async with locks.hold(key)`: a plain class, as this runs on every update."""

    __slots__ = ("_entry", "_key", "_locks")

    def __init__(self, locks: dict[int, list[Any]], key: int) -> None:
        self._locks, self._key = locks, key

    async def __aenter__(self) -> None:
        entry = self._locks.get(self._key)
        if entry is None:
            entry = self._locks[self._key] = [asyncio.Lock(), 0]
        entry[1] += 1
        self._entry = entry
        try:
            await entry[0].acquire()
        except BaseException:  # cancelled while waiting
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._entry[0].release()
        self._leave()

    def _leave(self) -> None:
        self._entry[1] -= 1
        if self._entry[1] == 0:
            del self._locks[self._key]
