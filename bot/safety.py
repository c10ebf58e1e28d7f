"""Safety properties proved over the whole dialog graph, not sampled from paths.

The answer graph (restart edges aside) must be acyclic, so every path ends in an end
state and paths can be counted exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from bot.content import ACTIVITY_TAG, CODE_MESSAGES, RED_FLAG_LEVELS, Content, RequiredFlag
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
        _check_doctor_prompt(dialog, content, graph, activity),
        _check_red_flags(dialog, content, graph, activity),
        structure,
        _check_end_reminder(dialog, content, graph),
    ]


def activity_states(dialog: Dialog, content: Content) -> set[str]:
    """States that name an activity: by tag, by showing an activity card, or by wording."""
    found = set()
    for spec in dialog.states.values():
        tagged = bool(spec.tags & {"names_activity", "suggests_activity"})
        shows_card = any(item.kind == "card" and ACTIVITY_TAG in content.cards[item.ref].tags
                         for item in spec.show)
        worded = any(content.safety.activity_word(t) for t in state_texts(spec, content))
        if tagged or shows_card or worded:
            found.add(spec.name)
    return found


def messages_shown_anywhere(dialog: Dialog, content: Content) -> list[str]:
    """Messages that can be shown at any point of the dialog (before the doctor prompt,
    after a red flag): those no state shows, and those the code shows wherever the person
    is (help, errors, notes), whether or not a state shows them too."""
    owned = {mid for spec in dialog.states.values() for mid in state_messages(spec)}
    return [mid for mid in content.messages if mid not in owned or mid in CODE_MESSAGES]


def state_messages(spec: StateSpec) -> Iterable[str]:
    """The ids of the messages a state shows: its own, its question and its choices."""
    yield from (item.ref for item in spec.show if item.kind == "message")
    if spec.ask:
        yield spec.ask
    for choice in spec.choices:
        yield choice.label
        if choice.shows:
            yield choice.shows


def state_texts(spec: StateSpec, content: Content) -> Iterable[str]:
    for item in spec.show:
        if item.kind == "card":
            yield from content.cards[item.ref].texts()
    yield from (content.messages[mid] for mid in state_messages(spec))
    for source, section in spec.follows:  # an end's "Sources for this check-in:" line
        yield content.sources[source].title
        yield section


class _Graph:
    def __init__(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self.out: dict[str, list[Edge]] = {name: [] for name in dialog.states}
        for edge in dialog.answer_edges():
            self.out[edge.source].append(edge)

    def reachable(self, start: str, skip: Collection[tuple[str, str]] = (),
                  avoid: Collection[str] = ()) -> dict[str, list[str]]:
        """State -> a witness path from `start`, following answer edges not in `skip` and
        entering no state in `avoid`."""
        seen = {start: [start]}
        todo = [start]
        while todo:
            state = todo.pop()
            for edge in self.out[state]:
                if ((edge.source, edge.choice or "") in skip or edge.dest in seen
                        or edge.dest in avoid):
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


def _check_doctor_prompt(dialog: Dialog, content: Content, graph: _Graph,
                         activity: set[str]) -> Finding:
    finding = Finding("i", "every path to an activity passes the acknowledged doctor prompt")
    acks = {(s.name, s.acknowledge) for s in dialog.states.values() if s.acknowledge}
    if not acks:
        finding.problems.append(f"{dialog.path}: no state is tagged doctor_prompt")
    rules = content.safety
    where = content.directory / "safety.yaml"
    for spec in dialog.states.values():
        if not spec.acknowledge:
            continue
        if not _always_shows(spec, {rules.doctor_prompt}):
            finding.problems.append(_fail(dialog, spec, (
                f"is tagged doctor_prompt but does not always show {rules.doctor_prompt} "
                f"(required by {where})")))
        if spec.ask != rules.doctor_question:
            finding.problems.append(_fail(dialog, spec, (
                f"is tagged doctor_prompt but asks {spec.ask}, not {rules.doctor_question} "
                f"(required by {where})")))
        # the person must read "I will check with my doctor" on the answer that leads on
        finding.problems += _label_problems(dialog, spec, {spec.acknowledge: rules.doctor_ack},
                                            where)
    # Without the acknowledging answers, no activity state may be reachable at all.
    around = graph.reachable(dialog.initial, skip=acks)
    for name in sorted(activity & around.keys()):
        path = " -> ".join(around[name])
        finding.problems.append(_fail(dialog, dialog.states[name],
                                      f"names an activity but is reachable without the "
                                      f"doctor prompt's acknowledgement: {path}"))
    for mid in messages_shown_anywhere(dialog, content):
        word = content.safety.activity_word(content.messages[mid])
        if word is not None:
            finding.problems.append(
                f"{content.directory / 'messages.yaml'}: message {mid} names an activity "
                f"({word!r}) but no state owns it, so it can be shown at any point, before "
                "the doctor prompt too")
    for source in content.sources.values():  # /sources lists them at any point
        word = content.safety.activity_word(f"{source.title}\n{source.publisher}\n{source.url}")
        if word is not None:
            finding.problems.append(
                f"{content.directory / 'sources.yaml'}: source {source.id} names an activity "
                f"({word!r}) in its title, publisher or address, which /sources shows at any "
                "point, before the doctor prompt too")
    finding.states = len(activity)
    finding.paths = graph.count_paths(dialog.initial, activity)
    return finding


def _check_red_flags(dialog: Dialog, content: Content, graph: _Graph,
                     activity: set[str]) -> Finding:
    finding = Finding("ii", "every path to an activity screens for each required red flag, "
                      "no red-flag answer leads to one, and a red-flag end says where to get "
                      "care", unit="red-flag answers")
    flagged = 0
    for spec in dialog.states.values():
        for edge in graph.out[spec.name]:
            level = spec.red_flags.get(edge.choice or "")
            if level is None:
                continue
            flagged += 1
            dest = dialog.states[edge.dest]
            allowed = set(RED_FLAG_LEVELS[RED_FLAG_LEVELS.index(level):])  # or more serious
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
    # (question, answer) -> the questions that must follow that answer up (their `after`)
    follow_ups: dict[tuple[str, str], set[str]] = {}
    for flag in content.safety.red_flags:
        if flag.after is not None:
            follow_ups.setdefault(flag.after, set()).add(flag.question)
    rules = content.directory / "safety.yaml"
    for flag in content.safety.red_flags:
        finding.problems += _required_flag_problems(dialog, graph, activity, flag, follow_ups,
                                                    content.safety.answer_labels, rules)
    finding.problems += _unlisted_answer_problems(dialog, content.safety.red_flags, rules)
    for spec in dialog.states.values():  # the end says where to get care
        told = content.safety.end_messages.get(spec.disposition or "")
        if told and not _always_shows(spec, told):
            finding.problems.append(_fail(dialog, spec, (
                f"{spec.disposition} end does not always show {' or '.join(told)} "
                f"(required by {rules})")))
    finding.states = flagged
    return finding


def _required_flag_problems(dialog: Dialog, graph: _Graph, activity: set[str],
                            flag: RequiredFlag,
                            follow_ups: dict[tuple[str, str], set[str]],
                            labels: dict[str, str], rules: Path) -> list[str]:
    """Every state asking the flag's question treats its answers at least as seriously as
    content/safety.yaml says, and no path to an activity (after `after`) goes around it."""
    problems = []
    # An answer that another rule's question must follow (its `after`) is screened there,
    # so it must lead straight to that question: anywhere else it would be unscreened.
    followed_up = {answer: then for (question, answer), then in follow_ups.items()
                   if question == flag.question}
    allowed = {*flag.answers, *flag.clear, *followed_up}
    asking = [spec for spec in dialog.states.values() if spec.ask == flag.question]
    for spec in asking:
        extra = [c.id for c in spec.choices if c.id not in allowed]
        if extra:  # an answer the rules do not know could lead anywhere, unscreened
            problems.append(_fail(dialog, spec, (
                f"asks {flag.question} with answer(s) {', '.join(map(repr, extra))} that are "
                f"neither red flags, clear answers nor followed up (required by {rules})")))
        problems += _label_problems(dialog, spec, {c: labels[c] for c in allowed}, rules)
        for edge in graph.out[spec.name]:
            then = followed_up.get(edge.choice or "")
            if (then and edge.choice not in flag.answers and edge.choice not in flag.clear
                    and dialog.states[edge.dest].ask not in then):
                problems.append(_fail(dialog, spec, (
                    f"answer {edge.choice!r} to {flag.question} is followed up by "
                    f"{' or '.join(sorted(then))} (required by {rules}), so it must lead "
                    f"straight to it, but goes to {edge.dest}")))
        for choice, least in flag.answers.items():
            level = spec.red_flags.get(choice)
            if spec.choice(choice) is None:
                problems.append(_fail(dialog, spec, f"asks {flag.question} but does not "
                                      f"offer the answer {choice!r} (required by {rules})"))
            elif level is None or RED_FLAG_LEVELS.index(level) < RED_FLAG_LEVELS.index(least):
                problems.append(_fail(dialog, spec, (
                    f"answer {choice!r} to {flag.question} must be a red flag of level "
                    f"{least} or above (required by {rules}), but is {level or 'not a red flag'}")))
    if flag.after is None:
        starts = [dialog.initial]
    else:
        question, answer = flag.after
        for spec in dialog.states.values():
            if spec.ask == question:
                problems += _label_problems(
                    dialog, spec, {a: labels[a] for a in (answer, *flag.others)}, rules)
        starts = [edge.dest for edge in dialog.answer_edges() if edge.choice == answer
                  and dialog.states[edge.source].ask == question]
        if not starts:  # renamed or gone: the rule would check nothing
            problems.append(f"{rules}: red flag {flag.question} is asked after the answer "
                            f"{answer!r} to {question}, but no state asking {question} "
                            "offers that answer")
    names = {spec.name for spec in asking}
    for name in sorted(names & activity):  # shown with the question, before its answer
        problems.append(_fail(dialog, dialog.states[name], (
            f"asks {flag.question} (required by {rules}) but names an activity")))
    # Screening ends before the doctor prompt: once it is acknowledged, activities (and
    # /tip's activity tips) may follow at any point.
    prompts = {spec.name for spec in dialog.states.values() if spec.acknowledge}
    for start in starts:
        if start in names:
            continue
        around = graph.reachable(start, avoid=names)
        missed = sorted((activity | prompts) & around.keys(),
                        key=lambda name: (len(around[name]), name))
        if missed:  # the nearest one stands for all
            what = "is the doctor prompt" if missed[0] in prompts else "names an activity"
            problems.append(_fail(dialog, dialog.states[missed[0]], (
                f"{what} but is reachable without asking {flag.question} "
                f"(required by {rules}): " + " -> ".join(around[missed[0]]))))
    return problems


def _unlisted_answer_problems(dialog: Dialog, flags: tuple[RequiredFlag, ...],
                              rules: Path) -> list[str]:
    """A question whose answer a rule follows up (its `after`) offers only the answers the
    rules list: a new one ("compression fracture") would go round the follow-up."""
    own = {flag.question for flag in flags}  # a red-flag question's answers are its rule's
    listed: dict[str, set[str]] = {}
    problems = []
    for flag in flags:
        if flag.after is None:
            continue
        question = flag.after[0]
        if question in own and flag.others:
            problems.append(f"{rules}: red flag {flag.question} lists `others` for "
                            f"{question}, whose own rule already lists its answers")
        offered = {c.id for spec in dialog.states.values() if spec.ask == question
                   for c in spec.choices}
        if unoffered := [other for other in flag.others if other not in offered]:
            problems.append(f"{rules}: red flag {flag.question} lists `others` "
                            f"{', '.join(map(repr, unoffered))} that no state asking "
                            f"{question} offers")
        if question not in own:
            listed.setdefault(question, set()).update((flag.after[1], *flag.others))
    for spec in dialog.states.values():
        extra = [c.id for c in spec.choices if c.id not in listed.get(spec.ask or "", set())]
        if spec.ask in listed and extra:
            problems.append(_fail(dialog, spec, (
                f"asks {spec.ask} with answer(s) {', '.join(map(repr, extra))} that "
                f"{rules} does not list (an `after` answer or its `others`)")))
    return problems


def _check_end_reminder(dialog: Dialog, content: Content, graph: _Graph) -> Finding:
    finding = Finding("iv", "every end state shows the doctor reminder")
    finals = [s for s in dialog.states.values() if s.final]
    reminder = content.safety.doctor_reminder
    for spec in finals:
        if not _always_shows(spec, {reminder}):
            finding.problems.append(_fail(dialog, spec, (
                f"end state does not always show the doctor reminder {reminder} (required "
                f"by {content.directory / 'safety.yaml'})")))
    finding.states = len(finals)
    finding.paths = graph.count_paths(dialog.initial, {s.name for s in finals})
    return finding


def _always_shows(spec: StateSpec, messages: Collection[str]) -> bool:
    """Whether the state shows one of `messages` whatever the answers (no `when`)."""
    return any(item.kind == "message" and item.when is None and item.ref in messages
               for item in spec.show)


def _label_problems(dialog: Dialog, spec: StateSpec, pinned: dict[str, str],
                    rules: Path) -> list[str]:
    """The person must read the answer the rules judge: each pinned answer shows its own
    label, and no other answer shows one of those labels."""
    problems = []
    for choice in spec.choices:
        want = pinned.get(choice.id)
        if want is not None and choice.label != want:
            problems.append(_fail(dialog, spec, (
                f"answer {choice.id!r} to {spec.ask} must be labelled {want} (required by "
                f"{rules}), but shows {choice.label}")))
        elif want is None and choice.label in pinned.values():
            problems.append(_fail(dialog, spec, (
                f"answer {choice.id!r} to {spec.ask} shows {choice.label}, the label of "
                f"another answer (required by {rules})")))
    return problems
