"""Safety properties proved over the whole dialog graph, not sampled from paths.

The answer graph (restart edges aside) must be acyclic, so every path ends in an end
state and paths can be counted exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from bot.content import Content
from bot.dialog import Dialog, Edge, StateSpec


@dataclass
class Finding:
    name: str
    title: str
    states: int = 0
    paths: int = 0
    unit: str = "states"  # what `states` counts
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dialog(dialog: Dialog, content: Content) -> list[Finding]:
    graph = _Graph(dialog)
    structure = _check_structure(dialog, graph)
    if graph.cycle():  # path counts need a finite graph; reachability proofs do not
        return [structure]
    activity = activity_states(dialog, content)
    return [
        _check_doctor_prompt(dialog, graph, activity),
        _check_red_flags(dialog, graph, activity),
        structure,
        _check_end_reminder(dialog, graph),
    ]


def activity_states(dialog: Dialog, content: Content) -> set[str]:
    """States that name an activity: by tag, by showing an activity card, or by wording."""
    words = re.compile(r"\b(" + "|".join(map(re.escape, dialog.activity_words)) + r")",
                       re.IGNORECASE) if dialog.activity_words else None
    found = set()
    for spec in dialog.states.values():
        tagged = bool(spec.tags & {"names_activity", "suggests_activity"})
        shows_card = any(item.kind == "card" and "activity" in content.cards[item.ref].tags
                         for item in spec.show)
        worded = words is not None and any(words.search(t) for t in state_texts(spec, content))
        if tagged or shows_card or worded:
            found.add(spec.name)
    return found


def state_texts(spec: StateSpec, content: Content) -> Iterable[str]:
    for item in spec.show:
        if item.kind == "card":
            card = content.cards[item.ref]
            yield card.title
            yield card.body
        else:
            yield content.messages[item.ref]
    if spec.ask:
        yield content.messages[spec.ask]
    for choice in spec.choices:
        yield content.messages[choice.label]
        if choice.shows:
            yield content.messages[choice.shows]
    for source, section in spec.follows:  # an end's "This advice follows: ..." line
        yield content.sources[source].title
        yield section


class _Graph:
    def __init__(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self.out: dict[str, list[Edge]] = {name: [] for name in dialog.states}
        for edge in dialog.answer_edges():
            self.out[edge.source].append(edge)

    def reachable(self, start: str, skip: set[tuple[str, str]] = frozenset()) -> dict[str, list[
            str]]:  # type: ignore[assignment]
        """State -> a witness path from `start`, following answer edges not in `skip`."""
        seen = {start: [start]}
        todo = [start]
        while todo:
            state = todo.pop()
            for edge in self.out[state]:
                if (edge.source, edge.choice or "") in skip or edge.dest in seen:
                    continue
                seen[edge.dest] = [*seen[state], edge.dest]
                todo.append(edge.dest)
        return seen

    def cycle(self) -> list[str] | None:
        colour: dict[str, int] = {}
        stack: list[str] = []

        def visit(state: str) -> list[str] | None:
            colour[state] = 1
            stack.append(state)
            for edge in self.out[state]:
                if colour.get(edge.dest) == 1:
                    return [*stack[stack.index(edge.dest):], edge.dest]
                if edge.dest not in colour and (found := visit(edge.dest)):
                    return found
            stack.pop()
            colour[state] = 2
            return None

        for name in self.out:
            if name not in colour and (found := visit(name)):
                return found
        return None

    def count_paths(self, start: str, targets: set[str]) -> int:
        """Paths from `start` that end in (or pass through, then stop at) a target."""

        @cache
        def count(state: str) -> int:
            if state in targets:
                return 1
            return sum(count(edge.dest) for edge in self.out[state])

        return count(start)


def _fail(dialog: Dialog, spec: StateSpec, what: str) -> str:
    return f"{dialog.path} (state {spec.name}, line {spec.line}): {what}"


def _check_structure(dialog: Dialog, graph: _Graph) -> Finding:
    finding = Finding("iii", "every state is reachable and every non-final state has an exit",
                      states=len(dialog.states))
    cycle = graph.cycle()
    if cycle:
        spec = dialog.states[cycle[0]]
        finding.problems.append(_fail(dialog, spec, "answers loop back: " + " -> ".join(cycle)))
        return finding
    reachable = graph.reachable(dialog.initial)
    for spec in dialog.states.values():
        if spec.name not in reachable:
            finding.problems.append(_fail(dialog, spec, "not reachable from " + dialog.initial))
        if not spec.final and not graph.out[spec.name]:
            finding.problems.append(_fail(dialog, spec, "not an end state, but has no way out"))
    finals = {s.name for s in dialog.states.values() if s.final}
    finding.paths = graph.count_paths(dialog.initial, finals)
    return finding


def _check_doctor_prompt(dialog: Dialog, graph: _Graph, activity: set[str]) -> Finding:
    finding = Finding("i", "every path to an activity passes the acknowledged doctor prompt")
    acks = {(s.name, s.acknowledge) for s in dialog.states.values() if s.acknowledge}
    if not acks:
        finding.problems.append(f"{dialog.path}: no state is tagged doctor_prompt")
    for spec in dialog.states.values():
        if spec.acknowledge and not any(item.kind == "message" and item.when is None
                                        and item.ref == dialog.doctor_prompt
                                        for item in spec.show):
            finding.problems.append(_fail(dialog, spec, (
                f"is tagged doctor_prompt but does not always show {dialog.doctor_prompt}")))
    # Without the acknowledging answers, no activity state may be reachable at all.
    around = graph.reachable(dialog.initial, skip=acks)  # type: ignore[arg-type]
    for name in sorted(activity & around.keys()):
        path = " -> ".join(around[name])
        finding.problems.append(_fail(dialog, dialog.states[name],
                                      f"names an activity but is reachable without the "
                                      f"doctor prompt's acknowledgement: {path}"))
    finding.states = len(activity)
    finding.paths = graph.count_paths(dialog.initial, activity)
    return finding


def _check_red_flags(dialog: Dialog, graph: _Graph, activity: set[str]) -> Finding:
    finding = Finding("ii", "no red-flag answer leads to an activity", unit="red-flag answers")
    flagged = 0
    for spec in dialog.states.values():
        for edge in graph.out[spec.name]:
            level = spec.red_flags.get(edge.choice or "")
            if level is None:
                continue
            flagged += 1
            dest = dialog.states[edge.dest]
            allowed = {"emergency"} if level == "emergency" else {"emergency", "urgent"}
            if not dest.final or dest.disposition not in allowed:
                finding.problems.append(_fail(dialog, spec, (
                    f"{level} answer {edge.choice!r} must end in an {' or '.join(sorted(allowed))}"
                    f" disposition, but goes to {edge.dest}")))
            reached = graph.reachable(edge.dest)
            for name in sorted(activity & reached.keys()):
                finding.problems.append(_fail(dialog, spec, (
                    f"{level} answer {edge.choice!r} reaches activity state {name}: "
                    + " -> ".join(reached[name]))))
            finding.paths += graph.count_paths(edge.dest, {
                s.name for s in dialog.states.values() if s.final})
    finding.states = flagged
    return finding


def _check_end_reminder(dialog: Dialog, graph: _Graph) -> Finding:
    finding = Finding("iv", "every end state shows the doctor reminder")
    finals = [s for s in dialog.states.values() if s.final]
    for spec in finals:
        if not any(item.kind == "message" and item.ref == dialog.doctor_reminder
                   and item.when is None for item in spec.show):
            finding.problems.append(_fail(dialog, spec, (
                f"end state does not always show the doctor reminder {dialog.doctor_reminder}")))
    finding.states = len(finals)
    finding.paths = graph.count_paths(dialog.initial, {s.name for s in finals})
    return finding
