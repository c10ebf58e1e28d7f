"""The shipped dialog and content: they load, pass `backbot check`, and keep the rules that
`check` cannot see (citations, wording of why/caution/tip cards, size limits)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import paths, yamlio
from bot.cli import main
from bot.content import RUNTIME_PLACEHOLDERS, Content
from bot.dialog import Dialog
from bot.engine import Engine
from bot.loading import DIALOG_FILE, load_bundle
from bot.outputs import Ask, Say
from bot.safety import check_dialog

DIALOG_PATH = paths.dialogs_dir() / DIALOG_FILE
CONTENT_DIR = paths.content_dir()


# The project parses with libyaml when PyYAML has it (bot/yamlio.py), so do the same here.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SHIPPED_YAML = [DIALOG_PATH, *sorted(CONTENT_DIR.glob("*.yaml"))]


def raw(path: Path) -> Any:
    """Plain PyYAML, independent of the project's loader."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=FAST_LOADER)


@pytest.fixture(scope="module")
def bundle() -> tuple[Dialog, Content]:
    return load_bundle()


@pytest.fixture(scope="module")
def raw_dialog() -> dict[str, Any]:
    return raw(DIALOG_PATH)


@pytest.fixture(scope="module")
def raw_cards() -> list[dict[str, Any]]:
    return raw(CONTENT_DIR / "advice.yaml")["cards"]


@pytest.fixture(scope="module")
def raw_sources() -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in raw(CONTENT_DIR / "sources.yaml")["sources"]}


def pre_doctor_states(dialog: Dialog) -> set[str]:
    """States reachable from the start without any doctor-prompt acknowledgement."""
    acks = {(s.name, s.acknowledge) for s in dialog.states.values() if s.acknowledge}
    seen, todo = {dialog.initial}, [dialog.initial]
    while todo:
        state = todo.pop()
        for edge in dialog.answer_edges():
            if edge.source == state and (edge.source, edge.choice) not in acks \
                    and edge.dest not in seen:
                seen.add(edge.dest)
                todo.append(edge.dest)
    return seen


def message_ids(dialog: Dialog, states: set[str]) -> set[str]:
    ids: set[str] = set()
    for name in states:
        spec = dialog.states[name]
        ids |= {item.ref for item in spec.show if item.kind == "message"}
        if spec.ask:
            ids.add(spec.ask)
        for choice in spec.choices:
            ids.add(choice.label)
            if choice.shows:
                ids.add(choice.shows)
    return ids


# -- loading and `backbot check` --


def test_shipped_bundle_loads(bundle: tuple[Dialog, Content], engine: Engine) -> None:
    dialog, content = bundle
    assert dialog.name == "screening"
    assert dialog.initial == "welcome"
    assert (content.safety.doctor_prompt, content.safety.doctor_reminder) == (
        "doctor.prompt", "reminder.doctor")
    assert {"welcome", "doctor_prompt", "suggesting_activities", "emergency_care",
            "urgent_care"} <= dialog.states.keys()
    assert [s.name for s in dialog.states.values() if "doctor_prompt" in s.tags] == [
        "doctor_prompt"]
    assert {"nice_ng59", "nhs_back_pain", "nhs_cauda_equina"} <= content.sources.keys()
    assert content.cards and content.messages
    assert engine.dialog.states.keys() == dialog.states.keys()
    # {retention_days} is filled in from the settings
    assert "30 days" in content.message("privacy.note")
    # only placeholders filled in when a message is sent may remain
    leftover = set(re.findall(r"\{(\w*)\}", "".join(content.messages.values())))
    assert leftover <= RUNTIME_PLACEHOLDERS
    assert "{retention_days}" not in "".join(content.messages.values())


def test_check_passes_with_counts(capsys: pytest.CaptureFixture[str],
                                  bundle: tuple[Dialog, Content]) -> None:
    dialog, content = bundle
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert out.splitlines()[0].endswith(
        f"{len(dialog.states)} states, {len(dialog.answer_edges())} answer transitions, "
        f"{len(content.cards)} cards, {len(content.sources)} sources")
    findings = {f.name: f for f in check_dialog(dialog, content)}
    for name in ("i", "ii", "iii", "iv"):
        match = re.search(rf"^ok   \({name}\) .+: (\d+) [a-z -]+, (\d+) paths checked$", out,
                          re.MULTILINE)
        assert match, f"no ok line for ({name}) in:\n{out}"
        states, path_count = int(match[1]), int(match[2])
        assert (states, path_count) == (findings[name].states, findings[name].paths)
        assert states > 0 and path_count > 0
    assert "FAIL" not in out
    assert findings["iii"].states == len(dialog.states)
    assert findings["iv"].states == sum(s.final for s in dialog.states.values())


@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.name) for p in SHIPPED_YAML])
def test_shipped_yaml_parses_the_same_without_libyaml(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert yaml.load(text, Loader=yaml.SafeLoader) == yaml.load(text, Loader=FAST_LOADER)


def test_bundle_loads_with_the_pure_python_yaml_fallback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class PureLoader(yaml.SafeLoader):  # what bot/yamlio.py uses when libyaml is missing
        pass

    PureLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                               yamlio._construct_mapping)
    monkeypatch.setattr(yamlio, "_Loader", PureLoader)
    dialog, _ = load_bundle()
    assert dialog.states["suggesting_activities"].follows[-1] == ("us_911", "When to call 911")


# -- citations --


def test_every_card_cites_a_listed_section(raw_cards: list[dict[str, Any]],
                                           raw_sources: dict[str, dict[str, Any]]) -> None:
    assert raw_cards
    for card in raw_cards:
        assert card["citations"], f"card {card['id']} cites nothing"
        for cite in card["citations"]:
            source = raw_sources.get(cite["source"])
            assert source is not None, f"card {card['id']}: unknown source {cite['source']}"
            assert cite["section"] in source["sections"], (card["id"], cite)


def test_loaded_cards_keep_their_citations(bundle: tuple[Dialog, Content],
                                           raw_cards: list[dict[str, Any]]) -> None:
    _, content = bundle
    assert sorted(content.cards) == sorted(c["id"] for c in raw_cards)
    for card in raw_cards:
        loaded = content.cards[card["id"]]
        assert [(c.source.id, c.section) for c in loaded.citations] == [
            (c["source"], c["section"]) for c in card["citations"]]


def test_sources_are_https_and_unique(raw_sources: dict[str, dict[str, Any]]) -> None:
    for source in raw_sources.values():
        assert source["url"].startswith("https://"), source["id"]
        assert len(set(source["sections"])) == len(source["sections"]), source["id"]


def test_red_flag_facts_cite_nice_and_nhs(bundle: tuple[Dialog, Content],
                                          raw_sources: dict[str, dict[str, Any]]) -> None:
    dialog, _ = bundle
    assert raw_sources["nice_ng59"]["url"].startswith("https://www.nice.org.uk/guidance/ng59")
    nhs = {sid for sid, s in raw_sources.items() if s["url"].startswith("https://www.nhs.uk/")}
    assert {"nhs_back_pain", "nhs_cauda_equina"} <= nhs
    checked = 0
    for edge in dialog.answer_edges():
        level = dialog.states[edge.source].red_flags.get(edge.choice or "")
        dest = dialog.states[edge.dest]
        if level is None or not (dest.disposition == "emergency"
                                 or dest.name in ("urgent_care", "unsure_of_emergency_sign")):
            continue
        followed = {source for source, _ in dest.follows}
        assert "nice_ng59" in followed, (edge.source, edge.choice, dest.name)
        assert followed & nhs, (edge.source, edge.choice, dest.name)
        checked += 1
    # bladder, saddle, legs, chest, fever, one leg (yes and unsure each); an accident, a
    # past cancer and the other signs (unsure each), and no doctor having checked each
    # since (no and unsure)
    assert checked == 6 * 2 + 3 * (1 + 2)


# A button names its question by the state's place in the dialog's list, and one sent
# before an upgrade may be tapped after it (a warning sign is taken even from an earlier
# check-in's message): states shipped before keep their places, and new ones go last.
SHIPPED_STATE_ORDER = [
    "welcome", "asking_bladder", "asking_saddle", "asking_legs", "asking_chest",
    "asking_trauma", "asking_trauma_checked", "asking_fever", "asking_cancer",
    "asking_cancer_checked", "asking_other_signs", "asking_other_signs_checked",
    "asking_shooting_pain", "asking_one_leg", "asking_diagnosis",
    "asking_fracture_clearance", "asking_clearance", "explaining_why", "doctor_prompt",
    "asking_pool", "asking_bike", "asking_leaning", "asking_elliptical",
    "suggesting_activities", "emergency_care", "urgent_care", "unsure_of_emergency_sign",
    "nerve_pain_first", "fracture_first", "declined_doctor", "stopped",
    "asking_surgery_clearance", "surgery_first",
]


def test_shipped_states_keep_their_places(bundle: tuple[Dialog, Content]) -> None:
    dialog, _ = bundle
    names = list(dialog.states)
    assert names[:len(SHIPPED_STATE_ORDER)] == SHIPPED_STATE_ORDER, (
        "a state moved, or one was added before the end: old buttons would name another "
        "question; add new states last (and append them here)")
    assert [dialog.states[n].index for n in SHIPPED_STATE_ORDER] == list(
        range(len(SHIPPED_STATE_ORDER)))


# -- end states --


def test_every_end_state_follows_sources_and_reminds(bundle: tuple[Dialog, Content],
                                                     engine: Engine) -> None:
    dialog, content = bundle
    finals = [s for s in dialog.states.values() if s.final]
    assert len(finals) == 9
    for spec in finals:
        assert spec.follows, spec.name
        for source, section in spec.follows:
            assert section in content.sources[source].sections
        assert any(i.kind == "message" and i.ref == "reminder.doctor" and i.when is None
                   for i in spec.show), spec.name
        snapshot = {**engine.new_snapshot(), "state": spec.name}
        outputs = engine.render(snapshot)
        keys = [o.key for o in outputs if isinstance(o, Say)]
        assert "reminder.doctor" in keys and keys[-1] == "end.follows", (spec.name, keys)
        assert isinstance(outputs[-1], Ask) and outputs[-1].final


# -- wording: no activity named where none may be --


def test_non_activity_cards_name_no_activity(bundle: tuple[Dialog, Content],
                                             find_activity) -> None:
    _, content = bundle
    checked = 0
    for card in content.cards.values():
        quiet = bool(card.tags & {"why", "caution"}) or (
            "tip" in card.tags and "activity" not in card.tags)
        if not quiet:
            continue
        checked += 1
        for text in (card.title, card.body):
            assert find_activity(text) is None, (card.id, find_activity(text), text)
    assert checked >= 12
    # the regex is not vacuous: activity cards are caught
    assert find_activity(content.cards["activity.pool"].body)
    assert find_activity(content.cards["activity.bike_stationary"].title)


def test_messages_before_the_doctor_prompt_name_no_activity(bundle: tuple[Dialog, Content],
                                                            find_activity) -> None:
    dialog, content = bundle
    pre = pre_doctor_states(dialog)
    assert "doctor_prompt" in pre and "asking_pool" not in pre
    post = set(dialog.states) - pre
    used_before = message_ids(dialog, pre)
    used_only_after = message_ids(dialog, post) - used_before
    # messages no state names (session.*, error.*, help, end.*, chat.*) can come any time
    checked = set(content.messages) - used_only_after
    assert {"welcome.intro", "doctor.prompt", "doctor.question", "help.text", "privacy.note",
            "error.use_buttons", "chat.hint", "end.follows"} <= checked
    assert "question.pool" in used_only_after and "suggestions.intro" in used_only_after
    for mid in sorted(checked):
        assert find_activity(content.message(mid)) is None, (mid, content.message(mid))
    assert find_activity(content.message("question.pool"))


def test_end_follows_texts_name_no_activity(engine: Engine, find_activity) -> None:
    for spec in engine.dialog.states.values():
        if spec.final:
            say = engine._follows[spec.name]
            assert say.key == "end.follows"
            assert find_activity(say.text) is None, (spec.name, say.text)


# -- sizes that Telegram callbacks depend on --


def test_choice_ids_fit_callback_data(raw_dialog: dict[str, Any],
                                      bundle: tuple[Dialog, Content]) -> None:
    dialog, _ = bundle
    raw_choices = [c for items in raw_dialog["choice_sets"].values() for c in items]
    raw_choices += [c for s in raw_dialog["states"] if isinstance(s.get("choices"), list)
                    for c in s["choices"]]
    assert raw_choices
    for choice in raw_choices:
        assert isinstance(choice["id"], str), f"choice id {choice['id']!r} is not text"
        assert 1 <= len(choice["id"].encode("utf-8")) <= 20, choice["id"]
    loaded = {c.id for s in dialog.states.values() for c in s.choices}
    assert loaded == {c["id"] for c in raw_choices}
    assert all(len(cid) <= 20 for cid in (*loaded, "restart", "sources"))


def test_every_state_name_and_card_is_used(bundle: tuple[Dialog, Content]) -> None:
    dialog, content = bundle
    shown = {i.ref for s in dialog.states.values() for i in s.show if i.kind == "card"}
    for card in content.cards.values():
        assert card.id in shown or "tip" in card.tags, card.id


def test_safety_rules_require_every_red_flag_of_the_screening(
        bundle: tuple[Dialog, Content]) -> None:
    """content/safety.yaml, which the proof holds the dialog to, asks for at least the red
    flags the screening is specified with, each citing a guideline or an article."""
    _, content = bundle
    required = {flag.question: flag for flag in content.safety.red_flags}
    for question in ("bladder", "saddle", "legs", "chest"):
        assert required[f"question.{question}"].answers == {"yes": "emergency",
                                                            "unsure": "urgent"}, question
    # a serious accident: an emergency unless a doctor has checked the back since
    assert required["question.trauma"].answers == {"unsure": "urgent"}
    checked = required["question.trauma_checked"]
    assert checked.answers == {"no": "emergency", "unsure": "urgent"}
    assert checked.after == ("question.trauma", "yes")
    for question in ("fever", "shooting_pain", "one_leg"):
        assert required[f"question.{question}"].answers == {"yes": "urgent",
                                                            "unsure": "urgent"}, question
    # lasting ones: urgent unless a doctor has examined this back pain knowing about them
    for question in ("cancer", "other_signs"):
        assert required[f"question.{question}"].answers == {"unsure": "urgent"}, question
        checked = required[f"question.{question}_checked"]
        assert checked.answers == {"no": "urgent", "unsure": "urgent"}, question
        assert checked.after == (f"question.{question}", "yes")
    # a fracture, or an operation on the back: a go-ahead first
    for answer in ("fracture", "surgery"):
        clearance = required[f"question.{answer}_clearance"]
        assert clearance.answers == {"no": "urgent", "unsure": "urgent"}, answer
        assert clearance.after == ("question.diagnosis", answer)
    articles = {"livestrong_cardio", "harbourview_low_impact"}
    for flag in required.values():
        cited = {cite.source.id for cite in flag.citations}
        if flag.question not in ("question.shooting_pain", "question.fracture_clearance"):
            assert cited & {"nice_ng59", "nice_cks_back_pain", "nhs_back_pain",
                            "nhs_cauda_equina", "nhs_lumbar_decompression"}, flag.question
        if flag.question in ("question.shooting_pain", "question.fracture_clearance",
                             "question.surgery_clearance"):
            assert cited & articles, flag.question
