"""A dialog flow from YAML: transitions' Machine arguments plus what each state shows."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transitions import EventData, Machine

from bot import schema
from bot.content import RED_FLAG_LEVELS, Content
from bot.errors import DataError
from bot.yamlio import Mapping, load_yaml

TRIGGERS = frozenset({"answer", "restart"})
DISPOSITIONS = frozenset({"emergency", "urgent", "activity", "stopped"})
# Ends no one goes back from with /back: what they said calls for care, and one tap must
# not turn that answer round into exercise advice (Start again begins afresh). From the
# others /back changes the last answer (a preference, or "No, not now" to the doctor prompt).
NO_WAY_BACK = frozenset(RED_FLAG_LEVELS)
STATE_TAGS = frozenset({"doctor_prompt", "names_activity", "suggests_activity"})
# Choice ids that end states answer to; a question may not use them.
END_ACTIONS = ("restart", "sources")
CHOICE_ID = re.compile(r"^[a-z][a-z0-9_]{0,19}$")

_TOP_KEYS = {"name", "initial", "states", "transitions"}
_OUR_TOP_KEYS = {"consent", "choice_sets", "predicates"}
_STATE_KEYS = {"name"}
_MACHINE_STATE_KEYS = {"final"}
_OUR_STATE_KEYS = {"key", "show", "ask", "choices", "red_flags", "acknowledge", "tags",
                   "disposition", "follows"}
_TRANSITION_KEYS = {"trigger", "source", "dest"}


@dataclass(frozen=True, slots=True)
class ChoiceSpec:
    id: str
    label: str  # message id
    shows: str | None = None  # message id: an info choice that shows text and asks again


@dataclass(frozen=True, slots=True)
class Predicate:
    """Any of several clauses; a clause holds when every key's answer is in its set."""

    name: str
    clauses: tuple[tuple[tuple[str, frozenset[str]], ...], ...]

    def holds(self, facts: dict[str, str]) -> bool:
        return any(all(facts.get(k) in allowed for k, allowed in clause)
                   for clause in self.clauses)


@dataclass(frozen=True, slots=True)
class ShowItem:
    kind: str  # "message" or "card"
    ref: str
    when: Predicate | None = None


@dataclass(frozen=True, slots=True)
class StateSpec:
    name: str
    index: int
    line: int
    final: bool
    key: str | None
    show: tuple[ShowItem, ...]
    ask: str | None
    choices: tuple[ChoiceSpec, ...]
    red_flags: dict[str, str]
    acknowledge: str | None
    tags: frozenset[str]
    disposition: str | None
    follows: tuple[tuple[str, str], ...]

    def choice(self, choice_id: str) -> ChoiceSpec | None:
        for choice in self.choices:
            if choice.id == choice_id:
                return choice
        return None


@dataclass(frozen=True, slots=True)
class Edge:
    trigger: str
    source: str  # a state name or "*"
    dest: str
    choice: str | None
    line: int


@dataclass(frozen=True, slots=True)
class Dialog:
    name: str
    path: Path
    initial: str
    states: dict[str, StateSpec]
    edges: tuple[Edge, ...]
    consent: tuple[str, str] | None  # (state, choice): the answer that agrees to storage
    machine_config: dict[str, Any]

    def machine_kwargs(self) -> dict[str, Any]:
        """`machine_config` afresh: a Machine writes to the state entries it is given."""
        return copy.deepcopy(self.machine_config)

    def answer_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.trigger == "answer"]


class ChoiceIs:
    """The transition condition `chose_<id>`: the answer event carries that choice."""

    def __init__(self, choice: str) -> None:
        self.choice = choice
        self.__name__ = f"chose_{choice}"

    def __call__(self, event: EventData) -> bool:
        return event.kwargs.get("choice") == self.choice


def _check_plain(config: dict[str, Any]) -> None:
    """The engine remembers each (trigger, state, choice) outcome: true only of a Machine
    with no callbacks and one condition per transition, the choice. A loaded dialog has
    no others; this keeps a hand-built one from breaking that unseen."""
    if extra := set(config) - _TOP_KEYS:  # a dialog's machine_config has these alone
        raise ValueError(f"machine options {sorted(extra)} are not supported (no callbacks)")
    for state in config["states"]:
        if not isinstance(state, dict) or set(state) - {"name", "final"}:
            raise ValueError(f"state {state!r}: only a mapping of name and final is "
                             f"supported (no callbacks)")
    for t in config["transitions"]:
        conditions = t.get("conditions", [])
        if set(t) - _TRANSITION_KEYS - {"conditions"} or len(conditions) > 1 or not all(
                isinstance(c, str) and c.startswith("chose_") for c in conditions):
            raise ValueError(f"transition {t!r}: only trigger, source, dest and one "
                             f"chose_<choice> condition are supported")


def build_machine(dialog: Dialog) -> Machine:
    """One Machine per dialog; sessions are plain snapshots, never machines of their own."""
    config = dialog.machine_kwargs()
    _check_plain(config)
    config["transitions"] = [
        {**t, "conditions": [ChoiceIs(t["conditions"][0][len("chose_"):])]}
        if t.get("conditions") else t
        for t in config["transitions"]
    ]
    return Machine(model=None, auto_transitions=False, send_event=True, **config)


def load_dialog(path: Path, content: Content) -> Dialog:
    raw = schema.mapping(load_yaml(path), path, "the dialog", line=1)
    schema.keys(raw, path, "the dialog", _TOP_KEYS, _OUR_TOP_KEYS)
    name = schema.ident(raw["name"], path, "dialog name", line=raw.line)
    choice_sets = _choice_sets(raw.get("choice_sets", Mapping()), path, content)
    predicates = _predicates(raw.get("predicates", Mapping()), path)
    if not isinstance(raw["states"], list) or not raw["states"]:
        raise DataError(path, "states must be a non-empty list", line=raw.line)
    states: dict[str, StateSpec] = {}
    for index, item in enumerate(raw["states"]):
        spec = _state(item, index, path, content, choice_sets, predicates, raw.line)
        if spec.name in states:
            raise DataError(path, f"duplicate state {spec.name!r}", line=spec.line)
        states[spec.name] = spec
    _check_predicates_used(predicates, states, path, raw.line)
    initial = schema.ident(raw["initial"], path, "initial", line=raw.line)
    if initial not in states:
        raise DataError(path, f"initial state {initial!r} is not defined", line=raw.line)
    _check_conditions(states, path)
    edges = _edges(raw["transitions"], path, states, raw.line)
    _check_choices_routed(states, edges, path)
    _check_restart(states, edges, path, initial)
    consent = _consent(raw.get("consent"), states, path, raw.line)
    machine_config = {
        "name": name,
        "initial": initial,
        "states": [{"name": s.name, "final": s.final} for s in states.values()],
        "transitions": [
            {"trigger": e.trigger, "source": e.source, "dest": e.dest,
             **({"conditions": [f"chose_{e.choice}"]} if e.choice else {})}
            for e in edges
        ],
    }
    return Dialog(name=name, path=path, initial=initial, states=states, edges=tuple(edges),
                  consent=consent,
                  machine_config=machine_config)


def _consent(raw: Any, states: dict[str, StateSpec], path: Path,
             line: int | None) -> tuple[str, str] | None:
    if raw is None:
        return None
    entry = schema.mapping(raw, path, "consent", line=line)
    schema.keys(entry, path, "consent", {"state", "choice"})
    state = schema.text(entry["state"], path, "consent state", line=entry.line)
    choice = schema.text(entry["choice"], path, "consent choice", line=entry.line)
    spec = states.get(state)
    if spec is None or spec.choice(choice) is None:
        raise DataError(path, f"consent names {state}/{choice}, which is not a choice of a "
                        "state", line=entry.line)
    return state, choice


def _choice_sets(raw: Any, path: Path, content: Content) -> dict[str, tuple[ChoiceSpec, ...]]:
    sets = schema.mapping(raw, path, "choice_sets")
    return {name: _choices(items, path, content, sets.line, None) for name, items in sets.items()}


def _choices(raw: Any, path: Path, content: Content, line: int | None,
             state: str | None) -> tuple[ChoiceSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise DataError(path, "choices must be a non-empty list or a choice set name",
                        line=line, state=state)
    choices: list[ChoiceSpec] = []
    for item in raw:
        entry = schema.mapping(item, path, "a choice", line=line)
        schema.keys(entry, path, "a choice", {"id", "label"}, {"shows"})
        cid = schema.text(entry["id"], path, "choice id", line=entry.line)
        if not CHOICE_ID.match(cid) or cid in END_ACTIONS:
            raise DataError(path, f"choice id {cid!r} must be 1-20 of a-z 0-9 _ and not "
                            f"{' or '.join(END_ACTIONS)}", line=entry.line, state=state)
        if any(c.id == cid for c in choices):
            raise DataError(path, f"duplicate choice id {cid!r}", line=entry.line, state=state)
        label = schema.text(entry["label"], path, f"choice {cid} label", line=entry.line)
        shows = entry.get("shows")
        if shows is not None:
            shows = schema.text(shows, path, f"choice {cid} shows", line=entry.line)
        for ref in (label, shows):
            if ref is not None and ref not in content.messages:
                raise DataError(path, f"unknown message id {ref!r}", line=entry.line,
                                state=state)
        choices.append(ChoiceSpec(id=cid, label=label, shows=shows))
    return tuple(choices)


def _predicates(raw: Any, path: Path) -> dict[str, Predicate]:
    preds = schema.mapping(raw, path, "predicates")
    return {name: _predicate(value, name, path, preds.line) for name, value in preds.items()}


def _check_predicates_used(predicates: dict[str, Predicate], states: dict[str, StateSpec],
                           path: Path, line: int | None) -> None:
    # A named condition nothing uses is a sign a `when` was meant to name it.
    used = {item.when.name for spec in states.values() for item in spec.show if item.when}
    for name in predicates:
        if name not in used:
            raise DataError(path, f"condition {name!r} is never used by a `when`", line=line)


def _predicate(raw: Any, name: str, path: Path, line: int | None) -> Predicate:
    """`{key: [choices]}` (all must hold) or `{any: [{key: [choices]}, ...]}`."""
    entry = schema.mapping(raw, path, f"condition {name}", line=line)
    clauses_raw = entry["any"] if set(entry) == {"any"} else [entry]
    if not isinstance(clauses_raw, list) or not clauses_raw:
        raise DataError(path, f"condition {name}: any must be a non-empty list", line=entry.line)
    clauses = []
    for clause in clauses_raw:
        clause = schema.mapping(clause, path, f"condition {name}", line=entry.line)
        clauses.append(tuple(
            (key, frozenset(schema.text_list(values, path, f"condition {name} {key}",
                                             line=clause.line)))
            for key, values in clause.items()
        ))
    return Predicate(name=name, clauses=tuple(clauses))


def _state(raw: Any, index: int, path: Path, content: Content,
           choice_sets: dict[str, tuple[ChoiceSpec, ...]],
           predicates: dict[str, Predicate], line: int) -> StateSpec:
    item = schema.mapping(raw, path, "a state", line=line)
    schema.keys(item, path, "a state", _STATE_KEYS, _MACHINE_STATE_KEYS | _OUR_STATE_KEYS)
    name = schema.ident(item["name"], path, "state name", line=item.line)
    final = item.get("final", False) is True

    def fail(what: str) -> DataError:
        return DataError(path, what, line=item.line, state=name)

    def optional_text(key: str) -> str | None:
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise fail(f"{key} must be text")
        return value

    raw_choices = item.get("choices")
    if isinstance(raw_choices, str):
        if raw_choices not in choice_sets:
            raise fail(f"unknown choice set {raw_choices!r}")
        choices = choice_sets[raw_choices]
    elif raw_choices is None:
        choices = ()
    else:
        choices = _choices(raw_choices, path, content, item.line, name)
    ask = optional_text("ask")
    if final and (choices or ask):
        raise fail("an end state asks nothing; it offers restart and sources by itself")
    if not final and not (choices and ask):
        raise fail("a state that is not final needs `ask` and `choices`")
    if ask is not None and ask not in content.messages:
        raise fail(f"unknown message id {ask!r}")
    raw_show = item.get("show") or []
    if not isinstance(raw_show, list):
        raise fail("show lists cards and messages, e.g. [{card: why.inactivity}]")
    show = tuple(_show_item(entry, path, content, predicates, fail) for entry in raw_show)
    red_flags = item.get("red_flags") or {}
    if not isinstance(red_flags, dict):
        raise fail("red_flags maps choice ids to a level, e.g. {\"yes\": emergency}")
    for cid, level in red_flags.items():
        if isinstance(cid, bool):
            raise fail("red_flags keys are choice ids (quote yes/no/on/off in YAML)")
        flagged = next((c for c in choices if c.id == cid), None)
        if flagged is None:
            raise fail(f"red_flags names {cid!r}, which is not a choice here")
        if flagged.shows is not None:
            raise fail(f"red flag {cid!r} only shows a message and asks again; a red-flag "
                       "answer must lead to care")
        if not isinstance(level, str) or level not in RED_FLAG_LEVELS:
            raise fail(f"red flag level {level!r} is not one of {sorted(RED_FLAG_LEVELS)}")
    raw_tags = item.get("tags") or []
    if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
        raise fail("tags must be a list of names")
    tags = frozenset(raw_tags)
    if tags - STATE_TAGS:
        raise fail(f"unknown tag(s) {', '.join(sorted(tags - STATE_TAGS))}")
    acknowledge = optional_text("acknowledge")
    if ("doctor_prompt" in tags) != (acknowledge is not None):
        raise fail("a doctor_prompt state names its `acknowledge` choice, and only it does")
    if acknowledge is not None and all(c.id != acknowledge for c in choices):
        raise fail(f"acknowledge names {acknowledge!r}, which is not a choice here")
    disposition = optional_text("disposition")
    if final != (disposition is not None):
        raise fail("every end state, and only an end state, has a disposition")
    if disposition is not None and disposition not in DISPOSITIONS:
        raise fail(f"disposition {disposition!r} is not one of {sorted(DISPOSITIONS)}")
    follows = tuple(_follows(item.get("follows") or [], content, fail))
    if final and not follows:
        raise fail("an end state names the source(s) it follows")
    key = optional_text("key")
    if key is not None and not schema.ID_PATTERN.match(key):
        raise fail(f"key {key!r} must look like lower_case")
    return StateSpec(name=name, index=index, line=item.line, final=final, key=key,
                     show=show, ask=ask, choices=choices, red_flags=dict(red_flags),
                     acknowledge=acknowledge, tags=tags, disposition=disposition,
                     follows=follows)


def _show_item(raw: Any, path: Path, content: Content, predicates: dict[str, Predicate],
               fail: Callable[[str], DataError]) -> ShowItem:
    if not isinstance(raw, Mapping):
        raise fail("a show entry must be a mapping")
    entry = raw
    kinds = {"message", "card"} & entry.keys()
    if len(kinds) != 1 or entry.keys() - {"message", "card", "when"}:
        raise fail("a show entry is {message: id} or {card: id}, with an optional `when`")
    kind = kinds.pop()
    ref = entry[kind]
    if not isinstance(ref, str):
        raise fail(f"a show entry's {kind} must be an id")
    if kind == "card" and ref not in content.cards:
        raise fail(f"unknown card id {ref!r}")
    if kind == "message" and ref not in content.messages:
        raise fail(f"unknown message id {ref!r}")
    when = entry.get("when")
    if isinstance(when, str):
        if when not in predicates:
            raise fail(f"unknown condition {when!r}")
        predicate: Predicate | None = predicates[when]
    elif when is None:
        predicate = None
    else:
        predicate = _predicate(when, f"for {ref}", path, entry.line)
    return ShowItem(kind=kind, ref=ref, when=predicate)


def _follows(raw: Any, content: Content,
             fail: Callable[[str], DataError]) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise fail("follows lists {source, section} entries")
    out = []
    for entry in raw:
        if (not isinstance(entry, dict) or set(entry) != {"source", "section"}
                or not all(isinstance(v, str) for v in entry.values())):
            raise fail("follows entries are {source, section}")
        source = content.sources.get(entry["source"])
        if source is None:
            raise fail(f"follows unknown source {entry['source']!r}")
        if entry["section"] not in source.sections:
            raise fail(f"follows section {entry['section']!r} that {source.id} does not list")
        out.append((entry["source"], entry["section"]))
    return out


def _edges(raw: Any, path: Path, states: dict[str, StateSpec], line: int) -> list[Edge]:
    if not isinstance(raw, list) or not raw:
        raise DataError(path, "transitions must be a non-empty list", line=line)
    edges = []
    for item in raw:
        entry = schema.mapping(item, path, "a transition", line=line)
        schema.keys(entry, path, "a transition", _TRANSITION_KEYS, {"conditions"})
        trigger, source, dest = (schema.text(entry[k], path, f"a transition's {k}",
                                             line=entry.line) for k in ("trigger", "source",
                                                                        "dest"))
        if trigger not in TRIGGERS:
            raise DataError(path, f"unknown trigger {trigger!r} (known: "
                            f"{', '.join(sorted(TRIGGERS))})", line=entry.line)
        if dest not in states:
            raise DataError(path, f"transition to unknown state {dest!r}", line=entry.line,
                            state=source if source in states else None)
        if source != "*" and source not in states:
            raise DataError(path, f"transition from unknown state {source!r}", line=entry.line)
        conditions = entry.get("conditions")
        if isinstance(conditions, list) and len(conditions) == 1:
            conditions = conditions[0]
        choice = None
        if trigger == "answer":
            if source == "*":
                raise DataError(path, "an answer transition names its source state",
                                line=entry.line)
            if not isinstance(conditions, str) or not conditions.startswith("chose_"):
                raise DataError(path, "an answer transition has one condition chose_<choice>",
                                line=entry.line, state=source)
            choice = conditions[len("chose_"):]
            spec = states[source]
            if spec.choice(choice) is None:
                raise DataError(path, f"unknown condition {conditions!r}: {choice!r} is not a "
                                "choice here", line=entry.line, state=source)
        elif conditions is not None:
            raise DataError(path, f"a {trigger} transition takes no conditions", line=entry.line)
        edges.append(Edge(trigger=trigger, source=source, dest=dest, choice=choice,
                          line=entry.line))
    return edges


def _check_choices_routed(states: dict[str, StateSpec], edges: list[Edge], path: Path) -> None:
    """Each choice either shows info or has exactly one answer transition."""
    routed: dict[tuple[str, str], int] = {}
    for edge in edges:
        if edge.trigger == "answer":
            assert edge.choice is not None
            routed[(edge.source, edge.choice)] = routed.get((edge.source, edge.choice), 0) + 1
    for spec in states.values():
        if spec.final and any(e.source == spec.name and e.trigger == "answer" for e in edges):
            raise DataError(path, "an end state has an answer transition", line=spec.line,
                            state=spec.name)
        for choice in spec.choices:
            count = routed.get((spec.name, choice.id), 0)
            if choice.shows and count:
                raise DataError(path, f"choice {choice.id!r} shows info and also moves on",
                                line=spec.line, state=spec.name)
            if not choice.shows and count != 1:
                problem = "has no transition" if count == 0 else "has several transitions"
                raise DataError(path, f"choice {choice.id!r} {problem}", line=spec.line,
                                state=spec.name)


def _check_restart(states: dict[str, StateSpec], edges: list[Edge], path: Path,
                   initial: str) -> None:
    """The engine restarts from any state, so every state needs a restart transition, and
    each goes back to the start: one that went anywhere else would skip the screening
    (the safety proof follows answers from the initial state)."""
    for edge in edges:
        if edge.trigger == "restart" and edge.dest != initial:
            raise DataError(path, f"a restart must go back to {initial!r}, not to "
                            f"{edge.dest!r}", line=edge.line,
                            state=edge.source if edge.source in states else None)
    covered = {e.source for e in edges if e.trigger == "restart"}
    if "*" in covered:
        return
    for spec in states.values():
        if spec.name not in covered:
            raise DataError(path, "no restart transition (add one from \"*\")",
                            line=spec.line, state=spec.name)


def _check_conditions(states: dict[str, StateSpec], path: Path) -> None:
    """A `when` condition names answer keys and their choice ids; a typo would silently
    hide a card, so both must exist."""
    answers: dict[str, set[str]] = {}
    for spec in states.values():
        if spec.key is not None:
            answers.setdefault(spec.key, set()).update(c.id for c in spec.choices)
    for spec in states.values():
        for item in spec.show:
            for clause in item.when.clauses if item.when else ():
                for key, allowed in clause:
                    if key not in answers:
                        raise DataError(path, f"condition on {item.ref} uses unknown answer "
                                        f"key {key!r}", line=spec.line, state=spec.name)
                    unknown = sorted(allowed - answers[key])
                    if unknown:
                        raise DataError(path, f"condition on {item.ref}: {', '.join(unknown)} "
                                        f"is not a choice of {key}", line=spec.line,
                                        state=spec.name)
