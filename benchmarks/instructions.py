"""CPU instructions per update, ours against the floor, counted by valgrind's callgrind.

    python -m benchmarks.instructions [--users 100]

Timings on this machine drift with its neighbours; instruction counts do not (the same
run counts the same twice). Each application runs in a process of its own under
callgrind, once over all the recorded updates and once over none (start-up, imports and
the recording only); the difference over the number of updates is the count per update.
The kernel's share (the SQLite write's system calls) is not counted, so this is the
CPU-side part of the timed ratio, not a replacement for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.fake_request import Call, Json

REPO = Path(__file__).resolve().parent.parent
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def available() -> bool:
    return shutil.which("valgrind") is not None


def count(app: str, updates: int, recording: Path) -> int:
    """Instructions of one replay process under callgrind."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-m", "benchmarks.instructions", "--replay", app, str(updates), str(recording)],
        capture_output=True, text=True, cwd=REPO, check=True)
    found = COLLECTED.findall(result.stderr)
    if not found:
        raise RuntimeError(f"callgrind reported no count for {app}: {result.stderr[-500:]}")
    return int(found[-1])


def instructions(updates: list[Json], calls: dict[int, list[Call]], workdir: Path,
                 ) -> dict[str, Any]:
    """Per-update counts of both applications over the updates recorded from our bot."""
    recording = workdir / "recording.pickle"
    recording.write_bytes(pickle.dumps((updates, calls)))
    runs = [(app, n) for app in ("ours", "floor") for n in (len(updates), 0)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(runs, pool.map(lambda run: count(run[0], run[1], recording), runs),
                          strict=True))
    per_update = {app: (counts[(app, len(updates))] - counts[(app, 0)]) / len(updates)
                  for app in ("ours", "floor")}
    return {"instructions_updates": len(updates),
            "ours_instructions_per_update": round(per_update["ours"]),
            "floor_instructions_per_update": round(per_update["floor"]),
            "instructions_ratio": round(per_update["floor"] / per_update["ours"], 3)}


def replay(app_name: str, n: int, recording: Path) -> None:
    """Inside callgrind: build one application and run the first n recorded updates."""
    # Imported here, as benchmarks.__main__ imports this module.
    from benchmarks.__main__ import floor_app, our_app, timed_run
    from bot.store import SessionStore, open_database

    updates, calls = pickle.loads(recording.read_bytes())
    if app_name == "ours":
        db = recording.with_name(f"ours-{n}.sqlite3")  # the two ours runs go side by side
        app = our_app(SessionStore(open_database(db)), db)
    else:
        app = floor_app(calls)[0]
    asyncio.run(timed_run(app, updates[:n]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--replay", nargs=3, metavar=("APP", "UPDATES", "RECORDING"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        replay(args.replay[0], int(args.replay[1]), Path(args.replay[2]))
        return
    if not available():
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    from benchmarks.__main__ import record_dialogs

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        updates, calls = asyncio.run(record_dialogs(args.users, workdir / "record.sqlite3"))
        print(json.dumps(instructions(updates, calls, workdir), indent=2))


if __name__ == "__main__":
    main()
