"""Crash: conversations survive SIGKILLs of the real `python -m bot run` at random points.

    python -m benchmarks.crash [--conversations 100] [--kills K] [--seed 7] [--timeout S]
                               [--json PATH]

The same code as tests/test_crash.py (10 conversations and 10 kills in CI), at full size:
M concurrent conversations while the bot is killed with SIGKILL at seeded random points
and restarted on the same database. Checks that every acknowledged answer is stored in
order, nothing is applied twice under redelivery, every conversation ends, and
PRAGMA integrity_check is ok.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.process_runs import report, run_crash


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--kills", type=int, default=None,
                        help="SIGKILLs during the run (default: half the conversations, "
                             "at least 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds for the whole run (default: 150 + 3 per conversation "
                             "+ 3 per kill)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the database and the bot's log in this folder")
    args = parser.parse_args(argv)
    kills = args.kills if args.kills is not None else max(10, args.conversations // 2)
    timeout = args.timeout or 150.0 + 3.0 * args.conversations + 3.0 * kills
    with tempfile.TemporaryDirectory(prefix="backbot-crash-") as tmp:
        workdir = args.keep or Path(tmp)
        result = run_crash(args.conversations, kills, workdir, seed=args.seed,
                           timeout=timeout)
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
