"""The pure dialog engine: step(snapshot, event) -> (snapshot, outputs).

A snapshot is a small JSON-able dict: {"v", "dialog", "state", "answers", "run"}, where
`answers` lists [state, choice] pairs in order and `run` numbers the check-in (a restart
counts it up; over Telegram the first answer sets it to when it was given, or when its
question was sent if that is later). The engine keeps no per-user objects: one
transitions Machine per dialog serves every snapshot.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transitions import Machine, MachineError

from bot.content import (
    ACTIVITY_TAG,
    RED_FLAG_LEVELS,
    TIP_TAG,
    Card,
    Citation,
    Content,
    group_citations,
)
from bot.dialog import END_ACTIONS, NO_WAY_BACK, Dialog, StateSpec, build_machine
from bot.outputs import Answered, Ask, Choice, Output, Say, ShowCard, ShowTip, SourceList

SNAPSHOT_VERSION = 1
SNAPSHOT_KEYS = frozenset({"v", "dialog", "state", "answers", "run"})
Snapshot = dict[str, Any]

SHOW_TOPICS = frozenset({"help", "sources", "privacy"})
# Messages a front end tells apart: a tap on a question moved past, a new check-in, and
# the prefixes of notes about the session or an error (a reply that only showed
# something, such as the sources, starts with neither).
STALE, RESTARTED = "session.stale", "session.restarted"
NOTE_PREFIXES = ("session.", "error.")
# How serious an end is, by its disposition (any other state: 0); a late red-flag answer
# never moves a person to a less serious end.
_SEVERITY = {level: rank for rank, level in enumerate(RED_FLAG_LEVELS, 1)}


@dataclass(frozen=True, slots=True)
class Event:
    """start, answer (choice, ref), back, restart, text (free text or media), command (one
    the front end does not know), show (topic from SHOW_TOPICS), ask (show the current
    question again), again (show everything the current point shows: the replies to it
    may not have arrived); anything else is unknown."""

    kind: str
    choice: str | None = None
    ref: str | None = None  # the Ask.ref the answer was given to, when the front end knows it
    topic: str | None = None
    # When the message holding the tapped button was sent (Unix seconds), if known. The
    # consent answer stores it as the run, so a button sent before this check-in began
    # (an earlier check-in's) is told apart from the current one's.
    sent_at: int | None = None
    # When the tap came in (Unix seconds, less an allowance for the clocks differing), if
    # known: a check-in begun by it sends nothing older, even if the button tapped was on
    # an old welcome (the consent's own message may be days older than the check-in).
    tapped_at: int | None = None

    @classmethod
    def answer(cls, choice: str, ref: str | None = None, sent_at: int | None = None,
               tapped_at: int | None = None) -> Event:
        return cls("answer", choice=choice, ref=ref, sent_at=sent_at, tapped_at=tapped_at)


# The commands every front end offers (by name, without the slash), as the event each is.
COMMANDS = {
    "start": Event("start"),
    "back": Event("back"),
    "restart": Event("restart"),
    "help": Event("show", topic="help"),
    "sources": Event("show", topic="sources"),
    "privacy": Event("show", topic="privacy"),
}


class _Cursor:
    """The single model registered with the Machine; it holds a state only while the
    routes are asked of the Machine at start-up."""

    state: str


class Engine:
    def __init__(self, dialog: Dialog, content: Content) -> None:
        self.dialog = dialog
        self.content = content
        self._states = dialog.states
        self._machine: Machine = build_machine(dialog)
        self._cursor = _Cursor()
        self._machine.add_model(self._cursor)
        # (trigger, state, choice) -> where the Machine goes: every route, asked once here.
        # Steps and the replay of stored answers both go by this one table.
        self._routes = self._ask_machine()
        self._end_choices = tuple(
            Choice(action, content.message(f"end.{action}")) for action in END_ACTIONS
        )
        self._follows = {name: self._follows_text(spec) for name, spec in self._states.items()}
        self._next = {(state, choice): dest for (trigger, state, choice), dest
                      in self._routes.items() if trigger == "answer"}
        self._unstored_end_refs = self._ends_before_consent()
        self._by_index = {spec.index: name for name, spec in self._states.items()}
        self._choices = {name: tuple(Choice(c.id, content.message(c.label)) for c in spec.choices)
                         for name, spec in self._states.items()}
        self._tips = content.cards_tagged(TIP_TAG)
        self._followed_up = self._answers_followed_up()
        # question -> the (question, choice) answers that lead to it
        self._asked_after: dict[str, list[tuple[str, str]]] = {}
        for (trigger, source, choice), dest in self._routes.items():
            if trigger == "answer" and choice is not None:
                self._asked_after.setdefault(dest, []).append((source, choice))
        # what a stored session's "dialog" names: see _revision
        self.revision = self._revision()

    # -- public API --

    def new_snapshot(self, run: int = 0) -> Snapshot:
        return {"v": SNAPSHOT_VERSION, "dialog": self.revision, "state": self.dialog.initial,
                "answers": [], "run": run}

    def step(self, snapshot: Snapshot | None, event: Event) -> tuple[Snapshot, list[Output]]:
        """Apply one event. Invalid input returns the same snapshot and a kind reply."""
        if snapshot is None:  # nobody stored yet: greet, or apply the event to a fresh start
            fresh = self.new_snapshot()
            if event.kind in ("start", "text"):
                return fresh, self.render(fresh)
            if (event.kind == "answer" and event.choice in END_ACTIONS
                    and (event.ref is None or event.ref in self._unstored_end_refs)):
                # an end screen reached before consent (nothing was stored): still works;
                # any other end's buttons are stale once its session is gone
                if event.choice == "restart":
                    return self._restart(fresh)
                return fresh, [*self.show("sources"), self.ask(fresh)]
            return self.step(fresh, event)
        problem = self._snapshot_problem(snapshot)
        if problem is not None:
            run = snapshot.get("run") if isinstance(snapshot, dict) else 0
            fresh = self.new_snapshot(run=_int(run) + 1)
            return fresh, [self._say(problem), *self._recall_red_flag(snapshot),
                           *self.render(fresh)]
        spec = self._states[snapshot["state"]]
        kind = event.kind
        if kind == "start":
            if not snapshot["answers"] and not spec.final:
                return snapshot, self.render(snapshot)
            return snapshot, [self._say("session.resumed"), *self.render(snapshot)]
        if kind == "restart":
            return self._restart(snapshot)
        if kind == "again":
            return snapshot, self.render(snapshot)
        if kind == "ask":
            return snapshot, self.current(snapshot)
        if kind == "show" and event.topic in SHOW_TOPICS:
            return snapshot, [*self.show(event.topic), *self._question(snapshot)]
        if kind == "answer" and event.choice is not None:
            return self._answer(snapshot, spec, event)
        if kind == "back":
            return self._back(snapshot, spec)
        if kind == "text":
            if spec.final:
                return snapshot, self._text_at_end(snapshot, spec)
            return snapshot, [self._say("error.use_buttons"), *self.current(snapshot)]
        if kind == "command":
            return snapshot, [self._say("error.unknown_command"), *self.current(snapshot)]
        return snapshot, [self._say("error.unknown_event"), *self.current(snapshot)]

    def render(self, snapshot: Snapshot) -> list[Output]:
        """Everything a state shows on entry, ending with its question."""
        spec = self._states[snapshot["state"]]
        facts: dict[str, str] | None = None  # built only for a state with conditions
        out: list[Output] = []
        for item in spec.show:
            if item.when is not None:
                if facts is None:
                    facts = self.facts(snapshot)
                if not item.when.holds(facts):
                    continue
            if item.kind == "card":
                out.append(ShowCard(self.content.cards[item.ref]))
            else:
                out.append(self._say(item.ref))
        if spec.final:
            out.append(self._follows[spec.name])
        out.append(self.ask(snapshot))
        return out

    def current(self, snapshot: Snapshot) -> list[Output]:
        """Where the person is, shown again: the question, or everything the state shows
        at an end (what to do now, emergency care included, must never be lost to a reply
        that did not arrive or scrolled away) and at the doctor prompt (its button is
        never offered without the prompt and its cards: the first showing may not have
        arrived)."""
        spec = self._states[snapshot["state"]]
        if spec.final or spec.acknowledge is not None:
            return self.render(snapshot)
        return [self.ask(snapshot)]

    def _question(self, snapshot: Snapshot) -> list[Output]:
        """The current question below something else shown (help, a note, the sources): at
        the doctor prompt with the prompt and its cards, as its button never comes without
        them; at an end that sends the person to medical care with that advice, so it
        stays the last thing on screen."""
        spec = self._states[snapshot["state"]]
        if spec.acknowledge is not None or (spec.final and spec.disposition in NO_WAY_BACK):
            return self.render(snapshot)
        return [self.ask(snapshot)]

    def ask(self, snapshot: Snapshot) -> Ask:
        spec = self._states[snapshot["state"]]
        ref = self.ref(snapshot)
        if spec.final:
            return Ask("end.question", self.content.message("end.question"), self._end_choices,
                       ref, final=True)
        assert spec.ask is not None
        return Ask(spec.ask, self.content.message(spec.ask), self._choices[spec.name], ref)

    def show(self, topic: str) -> list[Output]:
        if topic == "sources":
            return [SourceList.of(self.content)]
        return [self._say("help.text" if topic == "help" else "privacy.note")]

    def ref(self, snapshot: Snapshot) -> str:
        """Answer count and state index: equal only for the same question at the same point
        of a check-in (so a second tap on an answered question is stale). The same for
        everyone there, so a front end can build each keyboard once; an earlier check-in's
        buttons are told apart by when they were sent (`Event.sent_at`)."""
        return self._ref_at(len(snapshot["answers"]), snapshot["state"])

    def _ref_at(self, answered: int, state: str) -> str:
        return f"{answered}.{self._states[state].index}"

    def _stale(self, snapshot: Snapshot, event: Event) -> bool:
        if event.ref is not None and event.ref != self.ref(snapshot):
            return True
        return bool(snapshot["answers"]) and _earlier_check_in(snapshot, event)

    def facts(self, snapshot: Snapshot) -> dict[str, str]:
        """Answers by their state's `key` (later answers win), for card conditions."""
        facts: dict[str, str] = {}
        for state, choice in snapshot["answers"]:
            key = self._states[state].key
            if key is not None:
                facts[key] = choice
        return facts

    def has_consent(self, snapshot: Snapshot) -> bool:
        """Whether the person agreed to their answers being kept (always, without a consent
        step in the dialog)."""
        consent = self.dialog.consent
        return consent is None or list(consent) in snapshot["answers"]

    def tip_allowance(self, snapshot: Snapshot | None) -> str:
        """Which tips suit this person now: "none" after a red-flag disposition,
        "any" once the doctor prompt was acknowledged, else "general" (no activity)."""
        if snapshot is None:
            return "general"
        if self._recall_red_flag(snapshot):  # even a row that can no longer be resumed
            return "none"
        if self._snapshot_problem(snapshot) is not None:
            return "general"
        acknowledged = any(self._states[state].acknowledge == choice
                           for state, choice in snapshot["answers"])
        return "any" if acknowledged else "general"

    def tip(self, snapshot: Snapshot | None,
            choose: Callable[[Sequence[Card]], Card] | None = None) -> Output:
        """One tip for where the person is (`choose` picks among those that fit; by
        default at random): none after a red-flag end, and none naming an activity
        before they acknowledged the doctor prompt."""
        allowance = self.tip_allowance(snapshot)
        if allowance == "none":
            return self._say("tip.after_red_flag")
        tips = [card for card in self._tips if allowance == "any" or ACTIVITY_TAG not in card.tags]
        if not tips:
            return self._say("tip.none")
        return ShowTip.of((choose or random.choice)(tips), self.content)

    def is_finished(self, snapshot: Snapshot) -> bool:
        return self._states[snapshot["state"]].final

    def state_spec(self, snapshot: Snapshot) -> StateSpec:
        return self._states[snapshot["state"]]

    # -- events --

    def _answer(self, snapshot: Snapshot, spec: StateSpec,
                event: Event) -> tuple[Snapshot, list[Output]]:
        choice_id = event.choice
        assert choice_id is not None
        if self._stale(snapshot, event):
            late = self._late_red_flag(snapshot, spec, event)
            if late is not None:
                return late
            return snapshot, [self._say(STALE), *self._answered_as(snapshot, event),
                              *self.current(snapshot)]
        if spec.final:
            if choice_id == "restart":
                return self._restart(snapshot)
            if choice_id == "sources":
                return snapshot, [*self.show("sources"), *self._question(snapshot)]
            return snapshot, [self._say(self._finished(spec)), *self.current(snapshot)]
        choice = spec.choice(choice_id)
        if choice is None:
            return snapshot, [self._say("error.unknown_choice"), *self.current(snapshot)]
        if choice.shows is not None:
            return snapshot, [self._say(choice.shows), *self._question(snapshot)]
        dest = self._route("answer", spec.name, choice_id)
        if dest is None:
            # The loader proves every choice is routed; this guards a hand-built Dialog.
            return snapshot, [self._say("error.unknown_choice"), *self.current(snapshot)]
        run = snapshot["run"]
        if not snapshot["answers"] and (event.sent_at or event.tapped_at):
            # the check-in begins: no message of it is older than this
            run = max(event.sent_at or 0, event.tapped_at or 0)
        new = {**snapshot, "state": dest, "run": run,
               "answers": [*snapshot["answers"], [spec.name, choice_id]]}
        answered = Answered(self.content.message(spec.ask or ""),
                            self.content.message(choice.label))
        return new, [answered, *self.render(new)]

    def _answered_as(self, snapshot: Snapshot, event: Event) -> list[Output]:
        """Another choice tapped on the question answered last (two taps in quick
        succession, the second perhaps a correction): which answer counts, and how to
        change it, so a changed mind is not lost to "moved past that question"."""
        answers = snapshot["answers"]
        if not answers or _earlier_check_in(snapshot, event):
            return []
        state, chosen = answers[-1]
        spec = self._states[state]
        tapped = spec.choice(event.choice or "")
        if (tapped is None or tapped.shows is not None or tapped.id == chosen
                or event.ref != self._ref_at(len(answers) - 1, state)):
            return []
        label = spec.choice(chosen).label  # type: ignore[union-attr]  # replayed: a choice
        now = self._states[snapshot["state"]]
        key = ("session.answered_as_final" if now.final and now.disposition in NO_WAY_BACK
               else "session.answered_as")
        return [Say(key, self.content.message(key).format(answer=self.content.message(label)))]

    def _late_red_flag(self, snapshot: Snapshot, spec: StateSpec,
                       event: Event) -> tuple[Snapshot, list[Output]] | None:
        """A red-flag answer tapped on an older copy of a question (a second thought, or
        "No" then "Yes" in quick succession), not set aside as moved past. On a question
        answered otherwise in this check-in it is taken, as if the person went back to it,
        unless where they are now is more serious (ends rank by disposition, emergency
        first; of two of the same rank, the earlier question's is where the check-in would
        have ended). A question that follows an answer given otherwise here (left on screen
        by /back) is taken with the answer that leads to it. At an end that question was
        not on the way to at all, its advice is shown if more serious than where they are."""
        index = _ref_state_index(event.ref)
        asked = self._by_index.get(index) if index is not None else None
        choice_id = event.choice
        if asked is None or choice_id is None:
            return None
        question = self._states[asked]
        dest = self._route("answer", asked, choice_id)
        # An answer another question follows up (an accident's "yes", a fracture) counts
        # as that question's most serious outcome: taken late, it is asked next.
        followed = self._followed_up.get((asked, choice_id))
        if (choice_id not in question.red_flags and followed is None) or dest is None or (
                dest == spec.name):
            return None
        ranked = _SEVERITY.get(self._states[dest].disposition or followed or "", 0)
        here = _SEVERITY.get(spec.disposition or "", 0)
        # A follow-up, which may yet clear, takes no one from care as serious; but an end
        # of that rank with its own advice (an operation's, at a fracture's end) is shown
        # below.
        if ranked < here or (followed and ranked == here
                             and self._end_after(dest, followed) in (None, spec.name)):
            return None
        answers = snapshot["answers"]
        at = next((i for i, (state, _) in enumerate(answers) if state == asked), None)
        choice = question.choice(choice_id)
        assert choice is not None  # routed, so a choice of its question
        answered = Answered(self.content.message(question.ask or ""),
                            self.content.message(choice.label))
        if at is not None and answers[at][1] == choice_id:
            return None  # answered so already
        if followed and spec.final and spec.disposition in NO_WAY_BACK:
            # Already sent to care: going back to ask the follow-up would drop the red flag
            # answered since. It stays, with the follow-up's most serious advice.
            worst = self._end_after(dest, followed)
            if worst is None:
                return None
            advice = self.render({**snapshot, "state": worst})[:-1]  # all but its question
            return snapshot, [answered, self._say("session.late_follow_up_at_end"), *advice,
                              self.ask(snapshot)]
        said: list[Output] = [answered, self._say("session.late_follow_up" if followed
                                                  else "session.late_red_flag")]
        if at is not None and answers[at][1] != choice_id:
            new = {**snapshot, "state": dest, "answers": [*answers[:at], [asked, choice_id]]}
            return new, [*said, *self.render(new)]
        if at is None and (branch := self._branch_to(asked, answers)) is not None:
            # A follow-up left on screen by /back, its question since answered otherwise
            # (no accident after all, say): taken with the answer it follows up, as if the
            # person went back to that question.
            at, earlier = branch
            new = {**snapshot, "state": dest,
                   "answers": [*answers[:at], list(earlier), [asked, choice_id]]}
            return new, [*said, *self.render(new)]
        if at is None and spec.final and ranked > here and not followed:  # stays where it is
            advice = self.render({**snapshot, "state": dest})[:-1]  # all but its question
            return snapshot, [*said, *advice, self.ask(snapshot)]
        # Not yet answered in a check-in that goes on (and every path to an activity asks
        # each required red flag's question).
        return None

    def _branch_to(self, question: str,
                   answers: list[list[str]]) -> tuple[int, tuple[str, str]] | None:
        """Where in `answers` the one answer leading to `question` was given otherwise,
        and that answer (None if more than one answer leads there: which, is unknown)."""
        leading = self._asked_after.get(question, [])
        if len(leading) != 1:
            return None
        [(source, choice)] = leading
        for at, (state, chosen) in enumerate(answers):
            if state == source and chosen != choice:
                return at, (source, choice)
        return None

    def _revision(self) -> str:
        """The dialog's name and a fingerprint of what its answers mean: its routes, the
        numbers its buttons carry for its states, each question's wording, choices and red
        flags, the safety rules' red flags, and what the doctor prompt shows (its cards
        too). A session stored under another is started again, saying so: an answer given
        to other words must not stand for new ones (a sign added to a question, say), nor
        a button on screen answer another question. The welcome's words (they name the
        retention setting), other cards and the end messages change nothing."""
        message = self.content.message
        meaning: list[object] = [
            sorted((trigger, state, choice or "", dest)
                   for (trigger, state, choice), dest in self._routes.items()),
            sorted((name, spec.index) for name, spec in self._states.items()),
            [(flag.question, sorted(flag.answers.items()), flag.clear, flag.after, flag.others)
             for flag in self.content.safety.red_flags]]
        for name, spec in sorted(self._states.items()):
            if spec.ask is None or name == self.dialog.initial:
                continue
            shown = [self.content.cards[item.ref].body if item.kind == "card"
                     else message(item.ref) for item in spec.show] if spec.acknowledge else []
            meaning.append([name, message(spec.ask), [(c.id, message(c.label))
                                                      for c in spec.choices],
                            sorted(spec.red_flags.items()), spec.acknowledge or "", shown])
        text = json.dumps(meaning, ensure_ascii=False, separators=(",", ":"))
        return f"{self.dialog.name}@{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def _end_after(self, question: str, level: str) -> str | None:
        """The end of that disposition one answer to this question leads to."""
        for choice in self._states[question].choices:
            dest = self._route("answer", question, choice.id)
            end = self._states.get(dest) if dest is not None else None
            if end is not None and end.final and end.disposition == level:
                return end.name
        return None

    def _answers_followed_up(self) -> dict[tuple[str, str], str]:
        """(state, choice) -> the most serious level of the red-flag rule that follows that
        answer up (content/safety.yaml's `after`), for every state asking its question."""
        levels: dict[tuple[str, str], str] = {}
        for flag in self.content.safety.red_flags:
            if flag.after is None or not flag.answers:
                continue
            question, answer = flag.after
            level = max(flag.answers.values(), key=lambda lv: _SEVERITY.get(lv, 0))
            for name, spec in self._states.items():
                if spec.ask == question and spec.choice(answer) is not None:
                    levels[(name, answer)] = level
        return levels

    def _text_at_end(self, snapshot: Snapshot, spec: StateSpec) -> list[Output]:
        """Free text or media at an end: the end again, but at one with a plan of cards
        (the suggestions) only what follows its last card (the closing words, the signs
        that would mean emergency care, the reminder): a "thanks" should not bring the
        whole plan back, and /start still does."""
        shown = self.current(snapshot)
        cards = [i for i, output in enumerate(shown) if isinstance(output, ShowCard)]
        if not cards or "suggests_activity" not in spec.tags:
            return [self._say(self._finished(spec)), *shown]
        return [self._say("session.finished_with_plan"), *shown[cards[-1] + 1:]]

    @staticmethod
    def _finished(spec: StateSpec) -> str:
        """What to say at an end to anything but its buttons: whether /back still works."""
        return ("session.finished" if spec.disposition in NO_WAY_BACK
                else "session.finished_may_go_back")

    def _back(self, snapshot: Snapshot, spec: StateSpec) -> tuple[Snapshot, list[Output]]:
        if spec.final and spec.disposition in NO_WAY_BACK:
            return snapshot, [self._say("session.finished"), *self.current(snapshot)]
        if not snapshot["answers"]:
            return snapshot, [self._say("error.nothing_to_go_back"), self.ask(snapshot)]
        previous_state = snapshot["answers"][-1][0]
        new = {**snapshot, "state": previous_state, "answers": snapshot["answers"][:-1]}
        return new, [self._say("session.went_back"), *self.render(new)]

    def _restart(self, snapshot: Snapshot) -> tuple[Snapshot, list[Output]]:
        dest = self._route("restart", snapshot["state"]) or self.dialog.initial
        new = {**self.new_snapshot(run=snapshot["run"] + 1), "state": dest}
        return new, [self._say(RESTARTED), *self._recall_red_flag(snapshot),
                     *self.render(new)]

    def _recall_red_flag(self, left: object) -> list[Output]:
        """Leaving an end that sent the person to medical care for a new check-in, which
        keeps nothing of the old: that advice once more (it may not have arrived, or they
        may hope for another answer)."""
        state = left.get("state") if isinstance(left, dict) else None
        spec = self._states.get(state) if isinstance(state, str) else None
        if spec is not None and spec.final and spec.disposition in NO_WAY_BACK:
            return [self._say("session.red_flag_recalled")]
        return []

    def _route(self, trigger: str, state: str, choice: str | None = None) -> str | None:
        """Where the Machine takes `trigger` (with `choice`) from `state`; None if nowhere."""
        return self._routes.get((trigger, state, choice))

    def _ask_machine(self) -> dict[tuple[str, str, str | None], str]:
        """The Machine's answer for every answer a state offers, and for a restart from
        each state. The dialog's transitions have no callbacks and their conditions test
        only the choice, so these answers hold for good (and a trigger costs some 25 µs,
        too much to pay on every tap)."""
        routes: dict[tuple[str, str, str | None], str] = {}
        cursor, events = self._cursor, self._machine.events
        for name, spec in self._states.items():
            asked = [("answer", c.id) for c in spec.choices if c.shows is None]
            for trigger, choice in [*asked, ("restart", None)]:
                if trigger not in events:
                    continue  # a hand-built dialog without restarts
                cursor.state = name
                try:
                    moved = events[trigger].trigger(cursor, choice=choice)
                except MachineError:  # no such transition from here
                    continue
                if moved:
                    routes[(trigger, name, choice)] = cursor.state
        return routes

    # -- helpers --

    def _ends_before_consent(self) -> frozenset[str]:
        """Refs of the end screens reachable without the consent answer: the only ends
        reached with nothing stored, so the only ones whose buttons work without a row.
        (`backbot check` rejects loops; a path longer than the state count would be one,
        so the walk stops there whatever dialog it is given.)"""
        dialog = self.dialog
        if dialog.consent is None:
            return frozenset()  # everything is stored from the first answer
        out: dict[str, list[str]] = {}
        for (source, choice), dest in self._next.items():
            if (source, choice) != dialog.consent:
                out.setdefault(source, []).append(dest)
        refs: set[str] = set()
        todo = [(dialog.initial, 0)]
        while todo:
            state, depth = todo.pop()
            if depth > len(self._states):
                continue
            if self._states[state].final:
                refs.add(self._ref_at(depth, state))
            todo += [(dest, depth + 1) for dest in out.get(state, ())]
        return frozenset(refs)

    def _say(self, message_id: str) -> Say:
        return Say(message_id, self.content.message(message_id))

    def _follows_text(self, spec: StateSpec) -> Say:
        cites = tuple(Citation(self.content.sources[s], section) for s, section in spec.follows)
        names = "; ".join(f"{source.title} ({', '.join(sections)})"
                          for source, sections in group_citations(cites))
        return Say("end.follows", f"{self.content.message('end.follows')} {names}")

    def _snapshot_problem(self, snapshot: object) -> str | None:
        """A message id when a stored snapshot cannot be resumed as it is.

        The answers are replayed over the graph: a snapshot resumes only at the state its
        own answers lead to, so no stored or edited row can skip a question.
        """
        if (not isinstance(snapshot, dict) or snapshot.keys() != SNAPSHOT_KEYS
                or type(snapshot["v"]) is not int or snapshot["v"] != SNAPSHOT_VERSION):
            return "session.outdated"  # no older versions exist yet to migrate from
        answers, run = snapshot.get("answers"), snapshot.get("run")
        if (snapshot.get("dialog") != self.revision or not isinstance(answers, list)
                or not isinstance(run, int) or isinstance(run, bool)):
            return "session.outdated"
        state: str | None = self.dialog.initial
        follow = self._next
        try:  # runs on every step: one type test, unpacking and one lookup per answer
            for pair in answers:
                if type(pair) is not list:  # a dict would unpack into its two keys
                    return "session.outdated"
                source, choice = pair
                if source != state:
                    return "session.outdated"
                state = follow.get((source, choice))  # None for anything not a choice
        except (TypeError, ValueError):  # not a [state, choice] pair, or unhashable
            return "session.outdated"
        if state is None or snapshot.get("state") != state:
            return "session.outdated"
        return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ref_state_index(ref: str | None) -> int | None:
    """The state index in an `Engine.ref` ("answered.index"); None if it is not one."""
    answered, dot, index = (ref or "").partition(".")
    well_formed = all(part.isascii() and part.isdigit() and len(part) < 6
                      for part in (answered, index))
    return int(index) if dot and well_formed else None


def _earlier_check_in(snapshot: Snapshot, event: Event) -> bool:
    """The tapped message was sent before this check-in's first answer: an earlier one's."""
    return event.sent_at is not None and event.sent_at < snapshot["run"]
