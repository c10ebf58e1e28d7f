"""Readable conversations as data: tests/dialog_scripts/*.yaml.

Each script has `answers` (choice ids, in order, starting at the welcome question) and
`expect`: the end `state`, its `disposition`, and the `cards` and `messages` (ids, in order)
the last answer shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.engine import Engine, Event
from bot.outputs import Answered, Ask, Say, ShowCard

SCRIPTS = Path(__file__).resolve().parent / "dialog_scripts"
SCRIPT_FILES = sorted(SCRIPTS.glob("*.yaml"))
REQUIRED = {"suggestions_pool_recumbent", "emergency_bladder", "urgent_fever", "shooting_pain",
            "fracture_not_cleared", "declined_doctor", "consent_stop", "emergency_chest_pain",
            "emergency_accident_unchecked", "suggestions_after_checked_accident",
            "surgery_not_cleared"}


def load_script(path: Path) -> dict[str, Any]:
    script = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(script) == {"answers", "expect"}, f"{path.name}: unknown keys"
    assert set(script["expect"]) <= {"state", "disposition", "cards", "messages"}
    assert "state" in script["expect"]
    for answer in script["answers"]:
        assert isinstance(answer, str), f"{path.name}: quote {answer!r} (YAML reads it as "\
                                        f"{type(answer).__name__})"
    return script


def test_required_scripts_exist() -> None:
    assert {p.stem for p in SCRIPT_FILES} >= REQUIRED


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=[p.stem for p in SCRIPT_FILES])
def test_script(engine: Engine, path: Path) -> None:
    script = load_script(path)
    expect = script["expect"]
    snapshot, outputs = engine.step(None, Event("start"))
    for number, choice in enumerate(script["answers"], 1):
        ask = outputs[-1]
        assert isinstance(ask, Ask)
        assert not ask.final, f"answer {number} ({choice}) comes after the end"
        offered = [c.id for c in ask.choices]
        assert choice in offered, f"answer {number}: {choice!r} not in {offered} ({ask.key})"
        snapshot, outputs = engine.step(snapshot, Event.answer(choice, ask.ref))
        assert isinstance(outputs[0], Answered), f"answer {number} ({choice}) not taken"
    assert snapshot["state"] == expect["state"]
    assert len(snapshot["answers"]) == len(script["answers"])
    spec = engine.state_spec(snapshot)
    assert spec.final, "a script plays a whole conversation"
    if "disposition" in expect:
        assert spec.disposition == expect["disposition"]
    if "cards" in expect:
        assert [o.card.id for o in outputs if isinstance(o, ShowCard)] == expect["cards"]
    if "messages" in expect:
        assert [o.key for o in outputs if isinstance(o, Say)] == expect["messages"]
    assert isinstance(outputs[-1], Ask) and outputs[-1].final
