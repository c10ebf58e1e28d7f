"""Load: N users complete the whole dialog at once through the real `python -m bot run`.

    python -m benchmarks.load [--users 500] [--seed 20240601] [--timeout S] [--json PATH]

The same code as tests/test_load.py (which runs 50 users in CI), at full size. The bot
keeps its rate limiter (PTB's AIORateLimiter, changed: 30 messages a second overall), so
500 users take about ten minutes: the figure measures the bot under that limit, and any
problem is listed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.process_runs import report, run_load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds for the whole run (default: 120 + 2 per user)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the database and the bot's log in this folder")
    args = parser.parse_args(argv)
    timeout = args.timeout or 120.0 + 2.0 * args.users
    with tempfile.TemporaryDirectory(prefix="backbot-load-") as tmp:
        workdir = args.keep or Path(tmp)
        result = run_load(args.users, workdir, seed=args.seed, timeout=timeout)
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
