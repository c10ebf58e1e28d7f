"""Loaded by the crash test's bot processes only (their PYTHONPATH starts here).

With BACKBOT_CRASH_IN_WRITE="<n>:<when>", the process SIGKILLs itself at its n-th session
write: "before" it (the update was taken, nothing stored), "after" it (stored, no reply
sent yet) or "during" it (a timer thread fires while SQLite is writing, as the write
releases the GIL). Kills by the test's own killer land between Bot API calls; these land
where a write is on its way.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("BACKBOT_CRASH_IN_WRITE", "")

if _SPEC:
    from bot.store import SessionStore

    _count, _when = int(_SPEC.split(":")[0]), _SPEC.split(":")[1]
    _writes = 0

    def _die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def _wrap(name: str) -> None:
        original = getattr(SessionStore, name)

        def write(self: SessionStore, *args: object, **kwargs: object) -> object:
            global _writes
            _writes += 1
            if _writes != _count:
                return original(self, *args, **kwargs)
            if _when == "before":
                _die()
            if _when == "during":
                threading.Timer(0.00002, _die).start()
            result = original(self, *args, **kwargs)
            _die()  # "after", or a "during" timer that lost the race to the commit
            return result

        setattr(SessionStore, name, write)

    for _name in ("save", "put", "delete"):
        _wrap(_name)
