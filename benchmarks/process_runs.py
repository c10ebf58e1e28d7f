"""The load and crash runs live with their tests (tests/test_load.py, tests/test_crash.py);
this makes them importable here and reports a run the same way for both."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_crash import run_crash
from test_load import run_load

__all__ = ["report", "run_crash", "run_load"]


def report(result: Any, json_path: Path | None) -> int:
    """Print the summary and any problems; write the figures; 1 if anything went wrong."""
    print(result.summary())
    for problem in result.problems[:50]:
        print("  problem:", problem)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.figures(), indent=2) + "\n", encoding="utf-8")
    return 1 if result.problems else 0
