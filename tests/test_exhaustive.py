"""Every combination of answers, played through the engine, checked transcript by transcript.

`backbot check` proves the safety rules on the dialog graph; this plays every path for real
and checks what a person would actually see, with the tests' own list of activity words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from bot.content import Card
from bot.engine import Engine, Event, Snapshot
from bot.loading import load_bundle
from bot.outputs import Answered, Ask, Output, Say, ShowCard, ShowTip, SourceList
from bot.safety import check_dialog

# Counted by hand: 1 stop; 2 red-flag ends of each of the four questions before the
# accident one; the accident: 1 end for "not sure", and after "yes" 2 ends unless a doctor
# has checked the back, so 2 ways on. Each way on: 2 ends of the fever question; then the
# cancer and the other-signs questions each end 3 ways ("not sure"; after "yes", no doctor
# has examined it, or "not sure") and go on 2 ways; then 2 ends each of the shooting-pain
# and one-leg questions, then 6 diagnoses (a fracture and an operation: 2 "not cleared" ends
# and 1 on each; others: 3 clearance answers each, so 14 paths reach the doctor prompt),
# each with 1 decline + 16 preference combinations: pool (2) x bike, then leaning forward
# only with a bike (3 + 1) x elliptical (2).
ACCIDENT_WAYS = 2
SIGN_WAYS = ACCIDENT_WAYS * 2 * 2  # ways on past the cancer and the other-signs questions
TO_DOCTOR = SIGN_WAYS * 14
PREFERENCES = 2 * (3 + 1) * 2
# the red-flag ends after the accident questions, and the shooting-pain and one-leg ones
URGENT_ENDS = ACCIDENT_WAYS * (2 + 3) + ACCIDENT_WAYS * 2 * 3 + SIGN_WAYS * 2
LATER_ENDS = URGENT_ENDS + SIGN_WAYS * 2
EXPECTED_PATHS = (1 + 2 * 4 + 1 + 2 + LATER_ENDS
                  + SIGN_WAYS * (2 * 2 + 14 * (1 + PREFERENCES)))

# the tests' own list of questions about signs that call for emergency care
EMERGENCY_SIGN_STATES = {"asking_bladder", "asking_saddle", "asking_legs", "asking_chest",
                         "asking_trauma", "asking_trauma_checked"}

# the tests' own map from question state to the fact it records
FACT_OF = {"asking_pool": "pool", "asking_bike": "bike", "asking_elliptical": "elliptical",
           "asking_leaning": "leaning", "asking_diagnosis": "diagnosis",
           "asking_clearance": "clearance", "asking_fracture_clearance": "clearance",
           "asking_surgery_clearance": "clearance"}


@dataclass(frozen=True)
class Step:
    answer: tuple[str, str] | None  # (state, choice) answered; None for the opening start
    outputs: tuple[Output, ...]


@dataclass(frozen=True)
class Transcript:
    steps: tuple[Step, ...]
    final: Snapshot

    @property
    def answers(self) -> list[tuple[str, str]]:
        return [s.answer for s in self.steps if s.answer is not None]

    def facts(self) -> dict[str, str]:
        return {FACT_OF[state]: choice for state, choice in self.answers if state in FACT_OF}

    def __str__(self) -> str:
        return " ".join(choice for _, choice in self.answers)


def enumerate_transcripts(engine: Engine) -> list[Transcript]:
    """DFS from Event('start'): at every open question, every choice except info choices."""
    snapshot, outputs = engine.step(None, Event("start"))
    todo = [(snapshot, (Step(None, tuple(outputs)),))]
    done = []
    while todo:
        snapshot, steps = todo.pop()
        ask = steps[-1].outputs[-1]
        assert isinstance(ask, Ask) and ask.ref == engine.ref(snapshot)
        if engine.is_finished(snapshot):
            assert ask.final
            done.append(Transcript(steps, snapshot))
            continue
        assert not ask.final
        spec = engine.state_spec(snapshot)
        for choice in ask.choices:
            if spec.choice(choice.id).shows is not None:  # e.g. privacy: shows, asks again
                continue
            new, outputs = engine.step(snapshot, Event.answer(choice.id, ask.ref))
            assert isinstance(outputs[0], Answered) and outputs[0].label == choice.label
            assert new["answers"][-1] == [spec.name, choice.id]
            todo.append((new, (*steps, Step((spec.name, choice.id), tuple(outputs)))))
    return done


def texts(output: Output) -> list[str]:
    if isinstance(output, Say):
        return [output.text]
    if isinstance(output, ShowCard):
        card = output.card
        return [card.title, card.body, *(c.source.title for c in card.citations),
                *(c.section for c in card.citations)]
    if isinstance(output, Ask):
        return [output.text, *(c.label for c in output.choices)]
    if isinstance(output, Answered):
        return [output.question, output.label]
    if isinstance(output, SourceList):
        return [output.header, *(s.title for s in output.sources)]
    raise TypeError(output)


def activity_words_in(steps: tuple[Step, ...] | list[Step],
                      find_activity: Callable[[str], str | None]) -> list[tuple[str, str]]:
    found = []
    for step in steps:
        for output in step.outputs:
            for text in texts(output):
                if word := find_activity(text):
                    found.append((word, text))
    return found


@pytest.fixture(scope="module")
def transcripts(engine: Engine) -> list[Transcript]:
    return enumerate_transcripts(engine)


@pytest.fixture(scope="module")
def acks(engine: Engine) -> set[tuple[str, str]]:
    found = {(s.name, s.acknowledge) for s in engine.dialog.states.values() if s.acknowledge}
    assert found == {("doctor_prompt", "understood")}
    return found


@pytest.fixture(scope="module")
def red_flags(engine: Engine) -> dict[tuple[str, str], str]:
    flags = {(s.name, choice): level for s in engine.dialog.states.values()
             for choice, level in s.red_flags.items()}
    assert len(flags) == 27
    return flags


def test_path_count(transcripts: list[Transcript], capsys: pytest.CaptureFixture[str]) -> None:
    dialog, content = load_bundle()
    structure = next(f for f in check_dialog(dialog, content) if f.name == "iii")
    with capsys.disabled():  # reported in every run's output
        print(f"\nexhaustive: {len(transcripts)} complete paths "
              f"(backbot check (iii): {structure.paths})")
    assert len(transcripts) == EXPECTED_PATHS == 2002
    assert len(transcripts) == structure.paths
    assert len({str(t) for t in transcripts}) == len(transcripts)
    ends = Counter(t.final["state"] for t in transcripts)
    assert ends == {"suggesting_activities": TO_DOCTOR * PREFERENCES, "declined_doctor": TO_DOCTOR,
                    "emergency_care": 4 + 1, "unsure_of_emergency_sign": 4 + 2,
                    "urgent_care": URGENT_ENDS, "nerve_pain_first": SIGN_WAYS * 2,
                    "fracture_first": SIGN_WAYS * 2, "surgery_first": SIGN_WAYS * 2,
                    "stopped": 1}


def test_no_activity_before_the_doctor_prompt_is_acknowledged(
        transcripts: list[Transcript], acks: set[tuple[str, str]], find_activity) -> None:
    acknowledged = 0
    for transcript in transcripts:
        ack_at = next((i for i, s in enumerate(transcript.steps) if s.answer in acks),
                      len(transcript.steps))
        before = transcript.steps[:ack_at]
        assert activity_words_in(before, find_activity) == [], str(transcript)
        if ack_at < len(transcript.steps):
            acknowledged += 1
            # the regex is not vacuous: afterwards, activities are named
            assert activity_words_in(transcript.steps[ack_at:], find_activity)
            ask = before[-1].outputs[-1]
            assert isinstance(ask, Ask) and ask.key == "doctor.question"
    assert acknowledged == TO_DOCTOR * PREFERENCES


def test_red_flags_end_in_care_and_never_name_an_activity(
        transcripts: list[Transcript], red_flags: dict[tuple[str, str], str],
        engine: Engine, find_activity) -> None:
    flagged = 0
    for transcript in transcripts:
        levels = [red_flags[a] for a in transcript.answers if a in red_flags]
        disposition = engine.state_spec(transcript.final).disposition
        answers = transcript.answers
        if ("asking_trauma", "yes") in answers:  # an accident: was the back checked since?
            after = answers[answers.index(("asking_trauma", "yes")) + 1]
            assert after[0] == "asking_trauma_checked", str(transcript)
        if not levels:
            assert disposition in {"activity", "stopped"}, str(transcript)
            continue
        flagged += 1
        assert len(levels) == 1, "a red flag ends the screening"
        allowed = {"emergency"} if levels[0] == "emergency" else {"emergency", "urgent"}
        assert disposition in allowed, (str(transcript), disposition)
        assert activity_words_in(transcript.steps, find_activity) == [], str(transcript)
        shown = [o.card for s in transcript.steps for o in s.outputs if isinstance(o, ShowCard)]
        assert not [c.id for c in shown if c.tags & {"activity", "why"}], str(transcript)
        final = transcript.steps[-1]
        key = "disposition." + {"emergency_care": "emergency", "urgent_care": "urgent",
                                "unsure_of_emergency_sign": "unsure_of_emergency_sign",
                                "nerve_pain_first": "nerve_pain",
                                "fracture_first": "fracture",
                                "surgery_first": "surgery"}[transcript.final["state"]]
        assert key in [o.key for o in final.outputs if isinstance(o, Say)]
        said = " ".join(o.text for o in final.outputs if isinstance(o, Say))
        if transcript.final["state"] in {"emergency_care", "urgent_care",
                                         "unsure_of_emergency_sign"}:
            # each says when to call the emergency number
            assert "999" in said and "112" in said and "911" in said, str(transcript)
        last_state, last_choice = transcript.answers[-1]
        if last_choice == "unsure" and last_state in EMERGENCY_SIGN_STATES:
            # not sure about an emergency sign: checked now, not at an appointment
            assert transcript.final["state"] == "unsure_of_emergency_sign", str(transcript)
            advice = next(o.text for o in final.outputs if isinstance(o, Say) and o.key == key)
            assert "111 now" in advice and "appointment" not in advice, str(transcript)
    # yes/unsure to the four questions before the accident one, unsure to it, no/unsure to
    # whether a doctor checked it; then every urgent end, the shooting-pain ones and
    # no/unsure to fracture and to surgery clearance
    assert flagged == 4 * 2 + 1 + 2 + LATER_ENDS + SIGN_WAYS * 2 * 2


def test_no_late_answer_leads_out_of_a_red_flag_end(
        transcripts: list[Transcript], engine: Engine, find_activity) -> None:
    """From every end that sent someone to medical care, every answer tapped on an older
    copy of any question of that check-in (a second thought, a button found later): the
    person is still sent to care, at least as seriously, and shown no activity."""
    rank = {"urgent": 1, "emergency": 2}
    tried = 0
    for transcript in transcripts:
        end = engine.state_spec(transcript.final)
        if end.disposition not in rank:
            continue
        asked = [(step.answer[0], transcript.steps[i].outputs[-1])
                 for i, step in enumerate(transcript.steps[1:]) if step.answer is not None]
        for state, ask in asked:
            assert isinstance(ask, Ask)
            for choice in ask.choices:
                new, outputs = engine.step(transcript.final, Event.answer(choice.id, ask.ref))
                after = engine.state_spec(new)
                assert after.final and rank.get(after.disposition or "", 0) >= rank[
                    end.disposition], (str(transcript), state, choice.id, new["state"])
                found = activity_words_in([Step(None, tuple(outputs))], find_activity)
                assert found == [], (str(transcript), state, choice.id)
                tried += 1
    assert tried > 2_000


def test_every_end_reminds_of_the_doctor(transcripts: list[Transcript], engine: Engine) -> None:
    reminder = Say("reminder.doctor", engine.content.message("reminder.doctor"))
    for transcript in transcripts:
        outputs = list(transcript.steps[-1].outputs)
        final_ask = outputs[-1]
        assert isinstance(final_ask, Ask) and final_ask.final
        assert [c.id for c in final_ask.choices] == ["restart", "sources"]
        assert reminder in outputs, str(transcript)
        keys = [o.key for o in outputs if isinstance(o, Say)]
        assert keys[-2:] == ["reminder.doctor", "end.follows"], (str(transcript), keys)
        assert outputs.index(reminder) < len(outputs) - 1


def expected_cards(facts: dict[str, str]) -> list[str]:
    ease_in = (facts.get("diagnosis") in {"pinched_nerve", "slipped_disk", "fracture",
                                          "surgery"}
               or facts.get("clearance") in {"no", "unsure"})
    bike = facts["bike"] == "yes"
    assert ("leaning" in facts) == bike  # asked only of those with a bike
    leaning = facts.get("leaning")
    wanted = [
        ("caution.ease_in", ease_in),
        ("activity.walking", True),
        ("activity.pool", facts["pool"] == "yes"),
        ("activity.bike_recumbent", bike and leaning in {"yes", "unsure"}),
        ("activity.bike_stationary", bike and leaning == "no"),
        ("activity.elliptical", facts["elliptical"] == "yes"),
        ("activity.avoid", True),
        ("activity.strength_flexibility", True),
    ]
    return [card for card, shown in wanted if shown]


def test_suggestions_are_tailored(transcripts: list[Transcript]) -> None:
    seen: Counter[str] = Counter()
    for transcript in transcripts:
        if transcript.final["state"] != "suggesting_activities":
            continue
        facts = transcript.facts()
        shown = [o.card.id for o in transcript.steps[-1].outputs if isinstance(o, ShowCard)]
        assert shown == expected_cards(facts), (str(transcript), shown)
        # after the cards: check them with your doctor, stop on shooting pain, and the
        # signs that would mean emergency care if they turned up later
        says = [o.key for o in transcript.steps[-1].outputs if isinstance(o, Say)]
        assert says[-4:] == ["suggestions.closing", "disposition.safety_net",
                             "reminder.doctor", "end.follows"]
        seen.update(shown)
        # the doctor prompt shows the ease-in caution on the same condition
        doctor_step = next(s for s in transcript.steps
                           if s.outputs[-1].key == "doctor.question")  # type: ignore[union-attr]
        doctor_cards = [o.card.id for o in doctor_step.outputs if isinstance(o, ShowCard)]
        assert doctor_cards == [c for c in ("caution.ease_in", "safety.stop_on_pain")
                                if c != "caution.ease_in" or "caution.ease_in" in shown]
    total = TO_DOCTOR * PREFERENCES
    assert seen["activity.walking"] == seen["activity.avoid"] == total
    assert seen["activity.pool"] == total // 2
    assert seen["activity.elliptical"] == total // 2
    # a bike on 3 of the 4 bike-and-leaning answers: recumbent if leaning hurts or may
    assert seen["activity.bike_recumbent"] == total * 2 // 4
    assert seen["activity.bike_stationary"] == total // 4
    # ease in: pinched/slipped (2 x 3 clearance answers) + fracture and operation cleared
    # (1 each) + none/unsure with clearance no/unsure (2 x 2): 12 of the 14 ways to the
    # doctor prompt, on each way on
    assert seen["caution.ease_in"] == SIGN_WAYS * 12 * PREFERENCES


def tips_offered(engine: Engine, snapshot: Snapshot | None,
                 each: bool = True) -> list[Card] | None:
    """Every tip /tip may give at this point (None: none, and it says why); with `each`,
    every one of them given in turn, as the random pick may."""
    offered: list[Card] = []

    def choose(cards: Sequence[Card]) -> Card:
        offered.extend(cards)
        return cards[0]

    tip = engine.tip(snapshot, choose)
    if isinstance(tip, Say):
        return None
    assert isinstance(tip, ShowTip) and tip.card == offered[0]
    # one naming an activity carries the doctor line, for every front end to show first:
    # checked for each card the random pick may give here, not only the first
    doctor_first = engine.content.message("tip.doctor_first")
    for card in offered if each else offered[:1]:
        given = engine.tip(snapshot, picking(card))
        assert isinstance(given, ShowTip) and given.card == card
        assert given.doctor_first == (doctor_first if "activity" in card.tags else None), card.id
    return offered


def picking(card: Card) -> Callable[[Sequence[Card]], Card]:
    """A `choose` for `Engine.tip` that picks this card (one of those offered)."""
    def choose(cards: Sequence[Card]) -> Card:
        assert card in cards
        return card
    return choose


def test_tips_fit_every_point_of_every_path(transcripts: list[Transcript], engine: Engine,
                                           acks: set[tuple[str, str]],
                                           red_flags: dict[tuple[str, str], str],
                                           find_activity: Callable[[str], str | None]) -> None:
    """What /tip may offer at each point of each path: nothing after a red flag (emergency
    or urgent), tips naming an activity only once the doctor prompt was acknowledged (not
    after "No, not now"), else general ones."""
    seen: Counter[str] = Counter()
    general = {card.id for card in engine.content.cards.values()
               if "tip" in card.tags and not find_activity(f"{card.title} {card.body}")}
    every = {card.id for card in engine.content.cards.values() if "tip" in card.tags}
    assert general and every > general
    offers = {"none": None, "general": general, "any": every}
    given_at: set[tuple[tuple[str, str], ...]] = set()
    for transcript in transcripts:
        snapshot, _ = engine.step(None, Event("start"))
        assert engine.tip_allowance(snapshot) == "general"
        flagged = acknowledged = False
        for at, answer in enumerate(transcript.answers, 1):
            snapshot, _ = engine.step(snapshot, Event.answer(answer[1], engine.ref(snapshot)))
            flagged |= answer in red_flags
            acknowledged |= answer in acks
            want = "none" if flagged else "any" if acknowledged else "general"
            assert engine.tip_allowance(snapshot) == want, str(transcript)
            # each tip is given in turn once per point (paths share their beginnings)
            point = tuple(transcript.answers[:at])
            offered = tips_offered(engine, snapshot, each=point not in given_at)
            given_at.add(point)
            assert (offered if offered is None else {c.id for c in offered}) == offers[want]
            seen[want] += 1
        assert snapshot == transcript.final
    levels = Counter(red_flags[a] for t in transcripts for a in t.answers if a in red_flags)
    assert levels["emergency"] and levels["urgent"]  # both kinds of end were met
    assert seen["general"] and seen["any"]


def test_declining_the_doctor_names_no_activity(transcripts: list[Transcript],
                                                find_activity) -> None:
    declined = [t for t in transcripts if t.final["state"] == "declined_doctor"]
    assert len(declined) == TO_DOCTOR
    for transcript in declined:
        assert transcript.answers[-1] == ("doctor_prompt", "not_now")
        assert activity_words_in(transcript.steps, find_activity) == []
