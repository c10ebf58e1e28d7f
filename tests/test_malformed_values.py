"""Values of the wrong shape anywhere in the YAML: `backbot check` and the terminal stop
with "file:line (state): what", exit 2, and never show a traceback."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import main
from bot.content import CODE_MESSAGES
from bot.dialog import END_ACTIONS
from bot.loading import load_bundle
from bot.telegram_bot import GROUP_MENU, MENU

Data = dict[str, Any]
BOT = Path(__file__).resolve().parent.parent / "bot"


def state(data: Data, name: str) -> Data:
    return next(s for s in data["states"] if s["name"] == name)


# (file, change, words the error must contain)
MUTATIONS: dict[str, tuple[str, Callable[[Data], object], str]] = {
    "initial is a list": ("d", lambda d: d.update(initial=["welcome"]), "initial"),
    "tags is a number": ("d", lambda d: state(d, "doctor_prompt").update(tags=5),
                         "(state doctor_prompt): tags"),
    "red_flags is a list": ("d", lambda d: state(d, "asking_bladder").update(red_flags=["yes"]),
                            "(state asking_bladder): red_flags"),
    "red flag level is a list": ("d", lambda d: state(d, "asking_bladder").update(
        red_flags={"yes": ["emergency"]}), "red flag level"),
    "ask is a list": ("d", lambda d: state(d, "asking_legs").update(ask=["x"]),
                      "(state asking_legs): ask must be text"),
    "key is a list": ("d", lambda d: state(d, "asking_legs").update(key=["x"]),
                      "(state asking_legs): key"),
    "show card is a list": ("d", lambda d: state(d, "explaining_why")["show"].append(
        {"card": ["x"]}), "(state explaining_why)"),
    "show is text": ("d", lambda d: state(d, "explaining_why").update(show="why.intro"),
                     "show lists cards and messages"),
    "when names no answer": ("d", lambda d: state(d, "suggesting_activities")["show"].append(
        {"card": "activity.pool", "when": {"poool": ["yes"]}}), "unknown answer key 'poool'"),
    "when names no choice": ("d", lambda d: state(d, "suggesting_activities")["show"].append(
        {"card": "activity.pool", "when": {"pool": ["ye"]}}), "ye is not a choice of pool"),
    "follows source is a list": ("d", lambda d: state(d, "stopped").update(
        follows=[{"source": ["a"], "section": "b"}]), "follows entries"),
    "dest is a list": ("d", lambda d: d["transitions"][0].update(dest=["x"]), "dest"),
    "source is a list": ("d", lambda d: d["transitions"][0].update(source=["x"]), "source"),
    "trigger is a list": ("d", lambda d: d["transitions"][0].update(trigger=["x"]), "trigger"),
    "acknowledge is a list": ("d", lambda d: state(d, "doctor_prompt").update(
        acknowledge=["understood"]), "acknowledge must be text"),
    "disposition is a list": ("d", lambda d: state(d, "stopped").update(disposition=["x"]),
                              "disposition must be text"),
    "choice label is a list": ("d", lambda d: state(d, "welcome")["choices"][0].update(
        label=["x"]), "label"),
    "consent state is a list": ("d", lambda d: d.update(consent={"state": ["x"], "choice": "a"}),
                                "consent state"),
    "restart transition removed": ("d", lambda d: d.update(transitions=[
        t for t in d["transitions"] if t["trigger"] != "restart"]), "no restart transition"),
    "citation source is a list": ("a", lambda a: a["cards"][0]["citations"][0].update(
        source=["x"]), "citation source"),
    "message with a lone brace": ("m", lambda m: m["welcome"].update(intro="hello {"),
                                  "welcome.intro"),
    "message the code uses removed": ("m", lambda m: m["error"].pop("use_buttons"),
                                      "missing message(s) the code uses: error.use_buttons"),
    "end button label removed": ("m", lambda m: m["end"].pop("restart"), "end.restart"),
    "a message too long for a phone": ("m", lambda m: m["help"].update(text="word " * 300),
                                       "message help.text is over 1000 characters"),
    "a card too long for a phone": ("a", lambda a: a["cards"][0].update(body="word " * 300),
                                    "body is over 1000 characters"),
}
FILES = {"d": "dialog", "a": "advice.yaml", "m": "messages.yaml"}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_wrong_shapes_are_named_not_tracebacks(name: str, data_copy,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    which, change, expected = MUTATIONS[name]
    path = {"d": data_copy.dialog, "a": data_copy.content / "advice.yaml",
            "m": data_copy.content / "messages.yaml"}[which]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for command in ("check", "chat"):
        capsys.readouterr()
        args = [command, "--dialog", str(data_copy.dialog), "--content", str(data_copy.content)]
        assert main(args) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"backbot: {path}"), err
        assert expected in err, err


def test_every_message_id_in_the_code_is_checked_at_load() -> None:
    """A literal message id anywhere in bot/ must be in CODE_MESSAGES (so a missing one is
    caught by `backbot check`), and CODE_MESSAGES lists nothing the code does not use."""
    literal = re.compile(r"^[a-z_]+\.[a-z_]+$")
    used: set[str] = set()
    for source in BOT.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and literal.match(node.value)):
                used.add(node.value)
    used |= {f"end.{a}" for a in END_ACTIONS} | {f"commands.{n}" for n in MENU + GROUP_MENU}
    _, content = load_bundle()
    used &= content.messages.keys()  # file names and the like are not message ids
    assert used - CODE_MESSAGES == set()
    assert CODE_MESSAGES - used == set()
