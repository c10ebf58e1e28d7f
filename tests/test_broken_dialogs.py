"""`backbot check` on broken copies of the shipped data: it must fail, and say in which file,
at which state or line, and what is wrong - never with a traceback."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import paths
from bot.cli import main
from bot.loading import DIALOG_FILE

FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Data = dict[str, Any]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def check(data_copy, capsys: pytest.CaptureFixture[str]) -> Callable[[], Result]:
    def run() -> Result:
        capsys.readouterr()
        rc = main(data_copy.check_args())
        captured = capsys.readouterr()
        result = Result(rc, captured.out, captured.err)
        assert "Traceback" not in result.text
        return result

    return run


def load(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=FAST_LOADER)


def dump(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096),
                    encoding="utf-8")


def edit(path: Path, change: Callable[[Any], None]) -> None:
    data = load(path)
    change(data)
    dump(path, data)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def state(data: Data, name: str) -> Data:
    return next(s for s in data["states"] if s["name"] == name)


def transition(data: Data, source: str, choice: str) -> Data:
    return next(t for t in data["transitions"]
                if t["source"] == source and t.get("conditions") == f"chose_{choice}")


def line(path: Path, number: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[number - 1]


def finding_lines(result: Result, name: str) -> list[str]:
    """The FAIL line of check (name) and its problem lines."""
    lines = result.out.splitlines()
    start = next((i for i, text in enumerate(lines) if text.startswith(f"FAIL ({name}) ")),
                 None)
    assert start is not None, f"({name}) did not fail:\n{result.text}"
    block = [lines[start]]
    for text in lines[start + 1:]:
        if not text.startswith("     "):
            break
        block.append(text.strip())
    assert len(block) > 1, f"({name}) failed without naming a problem:\n{result.text}"
    return block


def first_problem(result: Result, name: str, path: Path, state_name: str) -> str:
    """Check (name) failed, its first problem naming `state_name`: that problem."""
    assert result.rc == 1
    block = finding_lines(result, name)
    assert_names_state(block[1], path, state_name)
    return block[1]


def assert_names_state(problem: str, path: Path, name: str) -> None:
    """A finding names the file, the state and the line where that state starts."""
    match = re.match(rf"{re.escape(str(path))} \(state {name}, line (\d+)\): ", problem)
    assert match, f"{problem!r} does not name {path} and state {name}"
    assert f"name: {name}" in line(path, int(match[1]))


def data_error(result: Result, path: Path) -> tuple[int | None, str | None, str]:
    """(line, state, what) of the one `backbot: file:line (state s): what` error."""
    assert result.rc != 0
    assert result.out == "", "a data error stops before any check runs"
    match = re.fullmatch(rf"backbot: {re.escape(str(path))}(?::(\d+))?(?: \(state (\w+)\))?: "
                         r"(.+)\n", result.err)
    assert match, f"error does not name {path}: {result.err!r}"
    return (int(match[1]) if match[1] else None), match[2], match[3]


# -- the harness itself --


def test_unchanged_copy_passes(data_copy, check) -> None:
    edit(data_copy.dialog, lambda data: None)  # a load/dump round trip changes nothing real
    result = check()
    assert result.rc == 0, result.text
    assert result.out.count("\nok   (") == 4
    assert str(data_copy.dialog) in result.out


# -- safety proofs (i)-(iv) --


@pytest.mark.parametrize(("source", "choice", "path_end", "only_i"), [
    ("asking_clearance", "yes", "asking_clearance -> asking_pool", True),
    # only the acknowledging answer may lead on from the doctor prompt
    ("doctor_prompt", "not_now", "explaining_why -> doctor_prompt -> asking_pool", False),
], ids=["around_the_prompt", "declining_the_prompt"])
def test_activity_state_reachable_without_the_acknowledgement(
        data_copy, check, source: str, choice: str, path_end: str, only_i: bool) -> None:
    """An answer re-routed to an activity question, around the doctor prompt or from its
    "No, not now", fails (i), naming that question and the path that reaches it."""
    edit(data_copy.dialog, lambda d: transition(d, source, choice).update(dest="asking_pool"))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "i")
    problem = next(p for p in block[1:] if "(state asking_pool," in p)
    assert_names_state(problem, data_copy.dialog, "asking_pool")
    assert "reachable without the doctor prompt's acknowledgement" in problem
    assert problem.endswith(path_end)
    if only_i:
        assert "ok   (ii)" in result.out and "ok   (iii)" in result.out


def test_skipping_the_doctor_prompt_fails(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: transition(d, "explaining_why", "next").update(
        dest="asking_pool"))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "iii")
    assert any("(state doctor_prompt," in p and "not reachable from welcome" in p
               for p in block[1:])


def test_skipping_the_doctor_prompt_reports_i(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: transition(d, "explaining_why", "next").update(
        dest="asking_pool"))
    result = check()
    block = finding_lines(result, "i")
    assert any("(state asking_pool," in p for p in block[1:])


def test_activity_card_before_the_doctor_prompt(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: state(d, "explaining_why")["show"].append(
        {"card": "activity.walking"}))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "i")
    assert len(block) == 2, block
    assert_names_state(block[1], data_copy.dialog, "explaining_why")
    assert "names an activity" in block[1]


def test_activity_word_in_a_message_before_the_doctor_prompt(data_copy, check) -> None:
    # no tag and no activity card: only the wording gives it away
    replace_once(data_copy.content / "messages.yaml", "    Thanks. Here is why gentle",
                 "    Thanks. Swimming is lovely. Here is why gentle")
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "i")
    assert len(block) == 2, block
    assert_names_state(block[1], data_copy.dialog, "explaining_why")


def test_red_flag_leading_to_suggestions(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: transition(d, "asking_fever", "yes").update(
        dest="asking_diagnosis"))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "ii")
    around = [p for p in block[1:] if "reachable without asking" in p]
    for problem in block[1:]:
        if problem not in around:
            assert_names_state(problem, data_copy.dialog, "asking_fever")
    assert any("urgent answer 'yes' must end in an emergency or urgent disposition, but goes "
               "to asking_diagnosis" in p for p in block[1:])
    assert any("reaches activity state suggesting_activities" in p for p in block[1:])
    # and the questions that path skips
    assert [p.split(" (required by")[0].rsplit(" ", 1)[1] for p in around] == [
        "question.cancer", "question.other_signs", "question.shooting_pain",
        "question.one_leg"]


def test_emergency_flag_to_urgent_care_fails(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: transition(d, "asking_bladder", "yes").update(
        dest="urgent_care"))
    problem = first_problem(check(), "ii", data_copy.dialog, "asking_bladder")
    assert "emergency answer 'yes' must end in an emergency disposition" in problem


def test_unreachable_state(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: transition(d, "welcome", "stop").update(
        dest="declined_doctor"))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "iii")
    assert len(block) == 2, block
    assert_names_state(block[1], data_copy.dialog, "stopped")
    assert block[1].endswith("not reachable from welcome")


def test_answers_looping_back(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: transition(d, "explaining_why", "next").update(
        dest="asking_bladder"))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "iii")
    assert "answers loop back: " in block[1]
    assert "explaining_why -> asking_bladder" in block[1]


def test_a_question_with_only_an_info_choice_has_no_way_out(data_copy, check) -> None:
    """A question whose one button only shows a note and asks again would hold the person
    there for good: (iii) names it."""
    def change(d: Data) -> None:
        welcome = state(d, "welcome")
        welcome["choices"].append({"id": "later", "label": "choice.unsure"})
        d["states"].insert(1, {"name": "pausing", "ask": "welcome.question", "choices": [
            {"id": "privacy", "label": "choice.privacy", "shows": "privacy.note"}]})
        d["transitions"].insert(0, {"trigger": "answer", "source": "welcome",
                                    "dest": "pausing", "conditions": "chose_later"})

    edit(data_copy.dialog, change)
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "iii")
    at = next(n for n, text in enumerate(data_copy.dialog.read_text().splitlines(), 1)
              if text.endswith("name: pausing"))
    # the one problem, word for word: only this check sees a question nobody can leave
    assert block[1:] == [f"{data_copy.dialog} (state pausing, line {at}): not an end state, "
                         "but has no way out"], block


# every end state of the shipped dialog, whatever its disposition
END_STATES = tuple(s["name"] for s in load(paths.dialogs_dir() / DIALOG_FILE)["states"]
                   if s.get("final"))
assert {"emergency_care", "declined_doctor", "stopped"} <= set(END_STATES)


@pytest.mark.parametrize("name", END_STATES)
def test_end_state_without_doctor_reminder(data_copy, check, name: str) -> None:
    """Any end state, a "stopped" one included, without the doctor reminder fails (iv),
    naming that state and the reminder."""
    edit(data_copy.dialog, lambda d: state(d, name)["show"].remove(
        {"message": "reminder.doctor"}))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "iv")
    assert len(block) == 2, block
    assert_names_state(block[1], data_copy.dialog, name)
    assert "reminder.doctor" in block[1]


def test_conditional_doctor_reminder_does_not_count(data_copy, check) -> None:
    def change(d: Data) -> None:
        show = state(d, "suggesting_activities")["show"]
        show[show.index({"message": "reminder.doctor"})] = {
            "message": "reminder.doctor", "when": {"pool": ["yes"]}}

    edit(data_copy.dialog, change)
    result = check()
    assert result.rc == 1
    assert_names_state(finding_lines(result, "iv")[1], data_copy.dialog,
                       "suggesting_activities")


def test_restart_to_anywhere_but_the_start_fails(data_copy, check) -> None:
    """A restart that jumped to the suggestions would skip the whole screening."""
    def change(d: Data) -> None:
        restart = next(t for t in d["transitions"] if t["trigger"] == "restart")
        restart["dest"] = "suggesting_activities"

    edit(data_copy.dialog, change)
    lineno, _, what = data_error(check(), data_copy.dialog)
    assert what == "a restart must go back to 'welcome', not to 'suggesting_activities'"
    assert "trigger: restart" in line(data_copy.dialog, lineno)


def test_restart_from_the_doctor_prompt_past_it_fails(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: d["transitions"].insert(0, {
        "trigger": "restart", "source": "doctor_prompt", "dest": "asking_pool"}))
    _, name, what = data_error(check(), data_copy.dialog)
    assert (name, what) == ("doctor_prompt",
                            "a restart must go back to 'welcome', not to 'asking_pool'")


def test_red_flag_on_an_info_choice_fails(data_copy, check) -> None:
    """A red flag that only showed the emergency text and asked again would let the
    next answer carry on to the suggestions."""
    def change(d: Data) -> None:
        bladder = state(d, "asking_bladder")
        bladder["choices"] = [{"id": "yes", "label": "choice.yes",
                               "shows": "disposition.emergency"},
                              {"id": "no", "label": "choice.no"},
                              {"id": "unsure", "label": "choice.unsure"}]
        d["transitions"].remove(transition(d, "asking_bladder", "yes"))

    edit(data_copy.dialog, change)
    _, name, what = data_error(check(), data_copy.dialog)
    assert name == "asking_bladder"
    assert what == ("red flag 'yes' only shows a message and asks again; a red-flag answer "
                    "must lead to care")


def test_doctor_prompt_tag_on_a_state_without_the_prompt_fails(data_copy, check) -> None:
    """Moving the tag (and its acknowledgement) to the why-cards would let the real
    prompt's "No, not now" lead on; the tagged state must show the doctor prompt itself."""
    def change(d: Data) -> None:
        prompt, why = state(d, "doctor_prompt"), state(d, "explaining_why")
        del prompt["tags"], prompt["acknowledge"]
        why.update(tags=["doctor_prompt"], acknowledge="next")
        transition(d, "doctor_prompt", "not_now")["dest"] = "asking_pool"

    edit(data_copy.dialog, change)
    problem = first_problem(check(), "i", data_copy.dialog, "explaining_why")
    assert "is tagged doctor_prompt but does not always show doctor.prompt" in problem


def test_activity_named_in_a_red_flag_end_follows_line(data_copy, check) -> None:
    """An end's "Sources for this check-in: ..." line is shown too: after a red flag it may
    not name an activity either."""
    edit(data_copy.dialog, lambda d: state(d, "urgent_care")["follows"].append(
        {"source": "aaos", "section": "Flexibility and strength work (as reported by "
         "LIVESTRONG.com)"}))
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "ii")
    assert any("reaches activity state urgent_care" in p for p in block[1:])


# -- references between files --


def test_dangling_transition_dest(data_copy, check) -> None:
    replace_once(data_copy.dialog, "source: asking_legs, dest: asking_chest,",
                 "source: asking_legs, dest: nowhere,")
    lineno, name, what = data_error(check(), data_copy.dialog)
    assert what == "transition to unknown state 'nowhere'"
    assert name == "asking_legs"
    assert "dest: nowhere" in line(data_copy.dialog, lineno)


def test_a_second_transition_for_one_answer_fails(data_copy, check) -> None:
    """Two ways on from one answer: which one the person takes would depend on the order
    of the transitions, so the loader refuses it before any check runs."""
    edit(data_copy.dialog, lambda d: d["transitions"].append({
        "trigger": "answer", "source": "asking_bladder", "dest": "asking_saddle",
        "conditions": "chose_yes"}))
    lineno, name, what = data_error(check(), data_copy.dialog)
    assert (name, what) == ("asking_bladder", "choice 'yes' has several transitions")
    assert lineno is not None and "name: asking_bladder" in line(data_copy.dialog, lineno)


def test_unknown_card_in_show(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: state(d, "explaining_why")["show"].append(
        {"card": "why.nope"}))
    lineno, name, what = data_error(check(), data_copy.dialog)
    assert what == "unknown card id 'why.nope'"
    assert name == "explaining_why"
    assert "name: explaining_why" in line(data_copy.dialog, lineno)


def test_unknown_message_in_ask(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: state(d, "asking_legs").update(ask="question.nope"))
    lineno, name, what = data_error(check(), data_copy.dialog)
    assert (name, what) == ("asking_legs", "unknown message id 'question.nope'")
    assert "name: asking_legs" in line(data_copy.dialog, lineno)


def test_uncited_card(data_copy, check) -> None:
    advice = data_copy.content / "advice.yaml"
    edit(advice, lambda d: next(c for c in d["cards"] if c["id"] == "why.healing").update(
        citations=[]))
    lineno, _, what = data_error(check(), advice)
    assert what == "card why.healing cites no source"
    assert "id: why.healing" in line(advice, lineno)


def test_card_citing_unknown_source(data_copy, check) -> None:
    advice = data_copy.content / "advice.yaml"
    edit(advice, lambda d: next(c for c in d["cards"] if c["id"] == "why.healing")[
        "citations"][0].update(source="wikipedia"))
    lineno, _, what = data_error(check(), advice)
    assert what == "card why.healing cites unknown source 'wikipedia'"
    assert "source: wikipedia" in line(advice, lineno)


def test_card_citing_unknown_section(data_copy, check) -> None:
    advice = data_copy.content / "advice.yaml"
    edit(advice, lambda d: next(c for c in d["cards"] if c["id"] == "why.healing")[
        "citations"][0].update(section="Chapter 99"))
    lineno, _, what = data_error(check(), advice)
    assert what == ("card why.healing cites section 'Chapter 99' that source "
                    "harbourview_low_impact does not list")
    assert "Chapter 99" in line(advice, lineno) or "source:" in line(advice, lineno)


def test_end_state_following_unknown_section(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: state(d, "urgent_care")["follows"][0].update(
        section="1.9 Made up"))
    _, name, what = data_error(check(), data_copy.dialog)
    assert name == "urgent_care"
    assert what == "follows section '1.9 Made up' that nice_ng59 does not list"


def test_end_state_following_no_source(data_copy, check) -> None:
    """An end state must say which source(s) its advice follows."""
    edit(data_copy.dialog, lambda d: state(d, "urgent_care").pop("follows"))
    lineno, name, what = data_error(check(), data_copy.dialog)
    assert name == "urgent_care"
    assert what == "an end state names the source(s) it follows"
    assert lineno is not None and "name: urgent_care" in line(data_copy.dialog, lineno)


def test_card_never_shown(data_copy, check) -> None:
    advice = data_copy.content / "advice.yaml"
    edit(advice, lambda d: d["cards"].append({
        "id": "why.orphan", "title": "Orphan", "body": "Never shown.", "tags": ["why"],
        "citations": [{"source": "livestrong_cardio", "section": "Opening paragraphs"}]}))
    _, _, what = data_error(check(), advice)
    assert "card why.orphan is never shown" in what


def test_condition_never_used(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: d["predicates"].update(
        {"leaning_hurts": {"leaning": ["yes", "unsure"]}}))
    _, _, what = data_error(check(), data_copy.dialog)
    assert what == "condition 'leaning_hurts' is never used by a `when`"


# -- YAML and schema problems --


def test_malformed_yaml(data_copy, check) -> None:
    replace_once(data_copy.dialog, "  - name: asking_saddle\n    key: saddle\n",
                 "  - name: asking_saddle\n  key: saddle\n")
    broken = data_copy.dialog.read_text().splitlines().index("  key: saddle") + 1
    lineno, _, what = data_error(check(), data_copy.dialog)
    assert what.startswith("invalid YAML: ")
    assert lineno == broken


def test_unclosed_flow_mapping(data_copy, check) -> None:
    replace_once(data_copy.content / "sources.yaml", '  - id: aaos\n', '  - {id: aaos\n')
    lineno, _, what = data_error(check(), data_copy.content / "sources.yaml")
    assert what.startswith("invalid YAML: ")
    assert lineno is not None


def test_missing_dialog_file(data_copy, check) -> None:
    data_copy.dialog.unlink()
    lineno, _, what = data_error(check(), data_copy.dialog)
    assert (lineno, what) == (None, "file not found")


def test_missing_content_file(data_copy, check) -> None:
    (data_copy.content / "messages.yaml").unlink()
    lineno, _, what = data_error(check(), data_copy.content / "messages.yaml")
    assert (lineno, what) == (None, "file not found")


def test_unknown_key_in_state(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: state(d, "asking_trauma").update(colour="red"))
    lineno, _, what = data_error(check(), data_copy.dialog)
    assert what == "a state has unknown key(s) colour"
    assert "name: asking_trauma" in line(data_copy.dialog, lineno)


def test_unknown_keys_of_mixed_types_in_state(data_copy, check) -> None:
    """An unquoted `yes:` is a boolean key in YAML: listed beside text keys, not a crash."""
    edit(data_copy.dialog, lambda d: state(d, "asking_trauma").update({True: 1, "colour": 2}))
    _, _, what = data_error(check(), data_copy.dialog)
    assert what == "a state has unknown key(s) True, colour"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("show", True, "show lists cards and messages, e.g. [{card: why.inactivity}]"),
    ("follows", 1.5, "follows lists {source, section} entries"),
])
def test_state_list_that_is_not_a_list(data_copy, check, key: str, value: object,
                                       message: str) -> None:
    name = "emergency_care" if key == "follows" else "explaining_why"
    edit(data_copy.dialog, lambda d: state(d, name).update({key: value}))
    _, where, what = data_error(check(), data_copy.dialog)
    assert (where, what) == (name, message)


def test_a_button_notice_over_telegrams_limit_fails(data_copy, check) -> None:
    path = data_copy.content / "messages.yaml"
    edit(path, lambda d: d["button"].update(moved_on="That question was answered. " * 8))
    _, _, what = data_error(check(), path)
    assert what == ("message button.moved_on is over 200 characters, Telegram's limit for a "
                    "button's notice")


@pytest.mark.parametrize(("old", "new", "what"), [
    ('title: "Why resting all day backfires"', 'title: "Why resting\\nall day backfires"',
     "card why.inactivity title"),
    ('- "Zero Activity Causes Pain to Worsen"', '- "' + "Zero Activity " * 16 + '"',
     "source harbourview_low_impact section"),
])
def test_titles_and_sections_are_one_short_line(data_copy, check, old: str, new: str,
                                               what: str) -> None:
    """The renderer splits long messages between lines: a title or citation is one."""
    path = data_copy.content / ("advice.yaml" if "card" in what else "sources.yaml")
    replace_once(path, old, new)
    _, _, found = data_error(check(), path)
    assert found == f"{what} must be one line of at most 200 characters"


def test_unknown_top_level_key(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: d.update(doctor_remider="reminder.doctor"))
    _, _, what = data_error(check(), data_copy.dialog)
    assert what == "the dialog has unknown key(s) doctor_remider"


def test_duplicate_state_name(data_copy, check) -> None:
    def change(d: Data) -> None:
        twin = copy.deepcopy(state(d, "asking_saddle"))
        d["states"].insert(d["states"].index(state(d, "asking_legs")), twin)

    edit(data_copy.dialog, change)
    lineno, _, what = data_error(check(), data_copy.dialog)
    assert what == "duplicate state 'asking_saddle'"
    lines = data_copy.dialog.read_text().splitlines()
    second = [i + 1 for i, t in enumerate(lines) if t.endswith("name: asking_saddle")][1]
    assert lineno == second


def test_duplicate_card_id(data_copy, check) -> None:
    advice = data_copy.content / "advice.yaml"

    def change(d: Data) -> None:
        d["cards"].append(copy.deepcopy(next(c for c in d["cards"] if c["id"] == "why.weight")))

    edit(advice, change)
    lineno, _, what = data_error(check(), advice)
    assert what == "duplicate card id 'why.weight'"
    lines = advice.read_text().splitlines()
    assert lineno == max(i + 1 for i, text in enumerate(lines) if text == "- id: why.weight")


def test_duplicate_yaml_mapping_key(data_copy, check) -> None:
    replace_once(data_copy.dialog, "  - name: asking_saddle\n    key: saddle\n",
                 "  - name: asking_saddle\n    key: saddle\n    key: legs\n")
    duplicate = data_copy.dialog.read_text().splitlines().index("    key: legs") + 1
    lineno, _, what = data_error(check(), data_copy.dialog)
    assert what == "invalid YAML: duplicate key 'key'"
    assert lineno == duplicate


def test_list_as_a_yaml_key(data_copy, check) -> None:
    messages = data_copy.content / "messages.yaml"
    messages.write_text(messages.read_text() + "? [a, b]\n: c\n")
    lineno, _, what = data_error(check(), messages)
    assert what == "invalid YAML: a key must be text or a number"
    assert lineno == len(messages.read_text().splitlines()) - 1


def test_yaml_aliases_are_refused(data_copy, check) -> None:
    """Nested aliases expand to millions of values from a few lines: refused, at once."""
    messages = data_copy.content / "messages.yaml"
    bomb = "zz0: &z0 {a: x, b: x}\n" + "".join(
        f"zz{n}: &z{n} {{a: *z{n - 1}, b: *z{n - 1}}}\n" for n in range(1, 40))
    messages.write_text(messages.read_text() + bomb)
    lineno, _, what = data_error(check(), messages)
    assert what == ("invalid YAML: aliases are not supported: the &anchor here is used "
                    "again by a *alias; write the value out")
    assert line(messages, lineno).startswith("zz0: &z0")


def test_duplicate_message_key(data_copy, check) -> None:
    messages = data_copy.content / "messages.yaml"
    replace_once(messages, "  unsure: Not sure\n", "  unsure: Not sure\n  unsure: Unsure\n")
    _, _, what = data_error(check(), messages)
    assert what == "invalid YAML: duplicate key 'unsure'"


def test_unquoted_yes_as_choice_id(data_copy, check) -> None:
    replace_once(data_copy.dialog, '  yes_no:\n    - {id: "yes", label: choice.yes}',
                 '  yes_no:\n    - {id: yes, label: choice.yes}')
    lineno, _, what = data_error(check(), data_copy.dialog)
    assert what == "choice id must be non-empty text (quote yes/no/on/off in YAML)"
    assert "{id: yes," in line(data_copy.dialog, lineno)



@pytest.mark.parametrize("choice_id", ["a" * 21, "Yes", "9lives", "sources"])
def test_a_choice_id_callback_data_cannot_carry_is_refused(data_copy, check,
                                                           choice_id: str) -> None:
    """The id travels in each button's callback_data (64 bytes at most, with the
    question's ref): at most 20 of a-z 0-9 _, and not an end's own action."""
    def change(d: Data) -> None:
        state(d, "asking_legs")["choices"] = [{"id": "yes", "label": "choice.yes"},
                                              {"id": choice_id, "label": "choice.no"}]

    edit(data_copy.dialog, change)
    _, _, what = data_error(check(), data_copy.dialog)
    assert what == (f"choice id {choice_id!r} must be 1-20 of a-z 0-9 _ and not restart or "
                    f"sources")


def test_unquoted_no_in_a_state_choice(data_copy, check) -> None:
    def change(d: Data) -> None:
        state(d, "asking_legs")["choices"] = [{"id": "yes", "label": "choice.yes"},
                                              {"id": False, "label": "choice.no"}]

    edit(data_copy.dialog, change)
    _, _, what = data_error(check(), data_copy.dialog)
    assert "quote yes/no/on/off" in what


@pytest.mark.parametrize("where", ["red_flags", "messages"])
def test_unquoted_yes_elsewhere_gets_a_hint(data_copy, check, where: str) -> None:
    if where == "red_flags":
        path = data_copy.dialog
        replace_once(path, '    red_flags: {"yes": emergency, unsure: urgent}\n  - name: '
                     'asking_saddle', '    red_flags: {yes: emergency, unsure: urgent}\n'
                     '  - name: asking_saddle')
    else:
        path = data_copy.content / "messages.yaml"
        replace_once(path, '  "yes": "Yes"\n', '  yes: "Yes"\n')
    _, _, what = data_error(check(), path)
    assert "quote" in what


# -- what content/safety.yaml holds the dialog to, whatever the dialog says --


def test_red_flag_label_dropped_fails(data_copy, check) -> None:
    """Unlabelled, a bladder "yes" could go on to the next question and on to activities:
    the required list still calls it an emergency."""
    def change(d: Data) -> None:
        del state(d, "asking_bladder")["red_flags"]
        transition(d, "asking_bladder", "yes")["dest"] = "asking_saddle"
        transition(d, "asking_bladder", "unsure")["dest"] = "asking_saddle"

    edit(data_copy.dialog, change)
    problem = first_problem(check(), "ii", data_copy.dialog, "asking_bladder")
    assert problem.endswith("answer 'yes' to question.bladder must be a red flag of level "
                            f"emergency or above (required by {data_copy.content}/safety.yaml),"
                            " but is not a red flag")


def test_red_flag_label_lowered_fails(data_copy, check) -> None:
    def change(d: Data) -> None:
        state(d, "asking_legs")["red_flags"]["yes"] = "urgent"
        transition(d, "asking_legs", "yes")["dest"] = "urgent_care"

    edit(data_copy.dialog, change)
    problem = first_problem(check(), "ii", data_copy.dialog, "asking_legs")
    assert "answer 'yes' to question.legs must be a red flag of level emergency or above" in (
        problem)
    assert problem.endswith("but is urgent")


@pytest.mark.parametrize(("source", "choice", "dest", "skipped"), [
    ("asking_bladder", "no", "asking_legs", "question.saddle"),
    ("asking_diagnosis", "fracture", "asking_clearance", "question.fracture_clearance"),
    # an accident's "yes" is allowed only because the doctor-checked question follows it
    ("asking_trauma", "yes", "asking_fever", "question.trauma_checked"),
    # so are a past cancer's and another sign's, with the doctor-examined questions
    ("asking_cancer", "yes", "asking_other_signs", "question.cancer_checked"),
    ("asking_other_signs", "yes", "asking_shooting_pain", "question.other_signs_checked"),
])
def test_path_around_a_required_question_fails(data_copy, check, source: str, choice: str,
                                               dest: str, skipped: str) -> None:
    """A branch that never asks a required question (after a fracture: its clearance) is
    caught though no red-flag answer is on it."""
    edit(data_copy.dialog, lambda d: transition(d, source, choice).update(dest=dest))
    result = check()
    block = finding_lines(result, "ii")
    around = [p for p in block[1:] if f"reachable without asking {skipped}" in p]
    assert len(around) == 1, block  # the nearest state stands for all: the doctor prompt
    assert_names_state(around[0], data_copy.dialog, "doctor_prompt")
    assert "is the doctor prompt but is reachable without asking" in around[0]
    witness = around[0].split(": ")[-1].split(" -> ")
    assert witness[-1] == "doctor_prompt" and dest in witness, witness


def test_message_shown_anywhere_naming_an_activity_fails(data_copy, check) -> None:
    """/help can be read before the doctor prompt and after a red flag."""
    path = data_copy.content / "messages.yaml"
    replace_once(path, "help:\n  # a literal block: one line per command\n  text: |-\n",
                 "help:\n  text: |-\n    A brisk walk helps.\n")
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "i")
    assert block[1] == (f"{path}: message help.text names an activity ('walk') but no state "
                        "owns it, so it can be shown at any point, before the doctor prompt too")


def test_untagged_card_naming_an_activity_fails(data_copy, check) -> None:
    """/tip offers untagged tips before the doctor prompt and in groups without the doctor
    line, so a card that names an activity must say so by its tag."""
    path = data_copy.content / "advice.yaml"
    replace_once(path, "help you manage your weight.",
                 "help you manage your weight, as can a gentle jog.")
    _, _, what = data_error(check(), path)
    assert what == "card tip.weight_matters names an activity ('jog') but is not tagged activity"


def test_untagged_card_citing_a_section_that_names_an_activity_fails(data_copy,
                                                                      check) -> None:
    """A card shows its citations too: a section title can name an activity."""
    path = data_copy.content / "advice.yaml"
    replace_once(path, """        section: "Zero Activity Causes Pain to Worsen"
    tags: [why]""", """        section: "Zero Activity Causes Pain to Worsen"
      - source: aaos
        section: "Flexibility and strength work (as reported by LIVESTRONG.com)"
    tags: [why]""")
    _, _, what = data_error(check(), path)
    assert re.fullmatch(r"card why.inactivity names an activity \('(?i:flexibility)'\) but "
                        "is not tagged activity", what), what


def test_source_title_naming_an_activity_fails(data_copy, check) -> None:
    """/sources can be read before the doctor prompt and after a red flag."""
    path = data_copy.content / "sources.yaml"
    replace_once(path, 'title: "Shnayderman I, Katz-Leurer M. Clinical Rehabilitation',
                 'title: "A walking programme. Clinical Rehabilitation')
    result = check()
    assert result.rc == 1
    block = finding_lines(result, "i")
    assert block[1:] == [f"{path}: source clinical_rehab_2013 names an activity ('walk') in "
                         "its title, publisher or address, which /sources shows at any point, "
                         "before the doctor prompt too"]


def test_source_address_naming_an_activity_fails(data_copy, check) -> None:
    """The terminal's /sources prints each address."""
    path = data_copy.content / "sources.yaml"
    replace_once(path, 'url: "https://orthoinfo.aaos.org/"',
                 'url: "https://orthoinfo.aaos.org/swimming-for-back-pain"')
    block = finding_lines(check(), "i")
    assert block[1:] == [f"{path}: source aaos names an activity ('swim') in its title, "
                         "publisher or address, which /sources shows at any point, before the "
                         "doctor prompt too"]


@pytest.mark.parametrize("words", ["aqua fitness", "the rowing machine", "a cross-trainer",
                                   "stair climbing", "dancing", "a spinning class", "yoga",
                                   "aquajogging", "an exercise bicycle", "breaststroke",
                                   "tai chi"])
def test_less_common_activities_are_named_too(data_copy, check, words: str) -> None:
    path = data_copy.content / "advice.yaml"
    replace_once(path, "help you manage your weight.",
                 f"help you manage your weight, as can {words}.")
    _, _, what = data_error(check(), path)
    assert what.startswith("card tip.weight_matters names an activity ("), what
    assert what.endswith(") but is not tagged activity")


def test_swapped_red_flag_labels_fail(data_copy, check) -> None:
    """A "Yes" button that sent on the answer "no" would carry a red flag past the
    screening: the label each judged answer shows is fixed by the rules."""
    def change(d: Data) -> None:
        state(d, "asking_bladder")["choices"] = [
            {"id": "yes", "label": "choice.no"}, {"id": "no", "label": "choice.yes"},
            {"id": "unsure", "label": "choice.unsure"}]

    edit(data_copy.dialog, change)
    result = check()
    block = finding_lines(result, "ii")
    rules = f"{data_copy.content}/safety.yaml"
    assert [p.split("): ", 1)[1] for p in block[1:]] == [
        f"answer 'yes' to question.bladder must be labelled choice.yes (required by {rules}), "
        "but shows choice.no",
        f"answer 'no' to question.bladder must be labelled choice.no (required by {rules}), "
        "but shows choice.yes"]
    assert_names_state(block[1], data_copy.dialog, "asking_bladder")


def test_another_answer_showing_the_fracture_label_fails(data_copy, check) -> None:
    """After "Spinal fracture" the clearance question must follow: a button reading so
    that sends another answer would skip it."""
    edit(data_copy.dialog, lambda d: next(
        c for c in state(d, "asking_diagnosis")["choices"] if c["id"] == "none").update(
            label="choice.fracture"))
    problem = first_problem(check(), "ii", data_copy.dialog, "asking_diagnosis")
    assert problem.endswith("answer 'none' to question.diagnosis must be labelled "
                            f"choice.no_diagnosis (required by {data_copy.content}/"
                            "safety.yaml), but shows choice.fracture")


def test_a_new_answer_to_the_diagnosis_question_must_be_listed(data_copy, check) -> None:
    """A new kind of fracture offered beside "Spinal fracture" would skip the clearance
    question: the rules list every answer that question may offer."""
    edit(data_copy.content / "messages.yaml", lambda d: d["choice"].update(
        osteoporotic="Vertebral compression fracture (osteoporosis)"))

    def change(d: Data) -> None:
        state(d, "asking_diagnosis")["choices"].append(
            {"id": "osteoporotic", "label": "choice.osteoporotic"})
        d["transitions"].append({"trigger": "answer", "source": "asking_diagnosis",
                                 "dest": "asking_clearance",
                                 "conditions": "chose_osteoporotic"})

    edit(data_copy.dialog, change)
    problem = first_problem(check(), "ii", data_copy.dialog, "asking_diagnosis")
    assert problem.endswith(f"asks question.diagnosis with answer(s) 'osteoporotic' that "
                            f"{data_copy.content}/safety.yaml does not list (an `after` "
                            "answer or its `others`)")


def others_problems(data_copy, check, question: str, others: list[str]) -> list[str]:
    """Check (ii)'s problems, the `after` of the rule for `question` given these `others`
    (each with the label a listed answer must have)."""
    def change(d: Data) -> None:
        rule = next(r for r in d["red_flags"] if r["question"] == question)
        rule["after"]["others"] = others
        for other in others:
            d["answer_labels"].setdefault(other, "choice.fracture")

    edit(data_copy.content / "safety.yaml", change)
    return finding_lines(check(), "ii")[1:]


def test_others_the_question_does_not_offer_fail(data_copy, check) -> None:
    """A stale `others` entry would let a later answer of that id through unthought-of."""
    assert others_problems(data_copy, check, "question.fracture_clearance", [
        "pinched_nerve", "slipped_disk", "none", "unsure", "osteoporotic"]) == [
        f"{data_copy.content}/safety.yaml: red flag question.fracture_clearance lists "
        "`others` 'osteoporotic' that no state asking question.diagnosis offers"]


def test_others_for_a_red_flag_question_fail(data_copy, check) -> None:
    """A red-flag question's answers are its own rule's to list; `others` there would
    be read by no one."""
    assert others_problems(data_copy, check, "question.trauma_checked", ["no"]) == [
        f"{data_copy.content}/safety.yaml: red flag question.trauma_checked lists `others` "
        "for question.trauma, whose own rule already lists its answers"]


def test_the_doctor_acknowledgement_reworded_fails(data_copy, check) -> None:
    edit(data_copy.content / "messages.yaml",
         lambda d: d["choice"].update(doctor_ack="Yes, some day"))
    _, _, what = data_error(check(), data_copy.content / "safety.yaml")
    assert what == ("label_texts pins choice.doctor_ack as 'Yes, I will', but messages.yaml "
                    "has 'Yes, some day'")


def test_a_red_flag_answer_reworded_fails(data_copy, check) -> None:
    """The rules judge the answer id; the person reads its words: "No / not sure" on the
    clear answer would send the unsure on as if they had said no."""
    edit(data_copy.content / "messages.yaml",
         lambda d: d["choice"].update({"no": "No / not sure"}))
    _, _, what = data_error(check(), data_copy.content / "safety.yaml")
    assert what == "label_texts pins choice.no as 'No', but messages.yaml has 'No / not sure'"


@pytest.mark.parametrize(("name", "disposition", "shown"), [
    ("emergency_care", "emergency", "disposition.emergency"),
    ("urgent_care", "urgent", "disposition.urgent or disposition.unsure_of_emergency_sign or "
     "disposition.nerve_pain or disposition.fracture or disposition.surgery"),
])
def test_red_flag_end_must_say_where_to_get_care(data_copy, check, name: str,
                                                 disposition: str, shown: str) -> None:
    """An emergency end that read "That's fine, come back any time" would pass every
    path check: what it says is fixed by the rules too."""
    def change(d: Data) -> None:
        state(d, name)["show"] = [{"message": "disposition.declined_doctor"},
                                  {"message": "reminder.doctor"}]

    edit(data_copy.dialog, change)
    problem = first_problem(check(), "ii", data_copy.dialog, name)
    assert problem.endswith(f"{disposition} end does not always show {shown} (required by "
                            f"{data_copy.content}/safety.yaml)")


def test_swapped_doctor_prompt_buttons_fail(data_copy, check) -> None:
    """A "No, not now" button that led on to the activities would pass every path check: the
    acknowledging answer must read as the acknowledgement, and no other answer may."""
    def change(d: Data) -> None:
        state(d, "doctor_prompt")["choices"] = [
            {"id": "understood", "label": "choice.doctor_decline"},
            {"id": "not_now", "label": "choice.doctor_ack"}]

    edit(data_copy.dialog, change)
    block = finding_lines(check(), "i")
    rules = f"{data_copy.content}/safety.yaml"
    assert [p.split("): ", 1)[1] for p in block[1:]] == [
        f"answer 'understood' to doctor.question must be labelled choice.doctor_ack (required "
        f"by {rules}), but shows choice.doctor_decline",
        f"answer 'not_now' to doctor.question shows choice.doctor_ack, the label of another "
        f"answer (required by {rules})"]
    assert_names_state(block[1], data_copy.dialog, "doctor_prompt")


def test_doctor_prompt_asking_something_else_fails(data_copy, check) -> None:
    edit(data_copy.dialog, lambda d: state(d, "doctor_prompt").update(ask="why.question"))
    problem = first_problem(check(), "i", data_copy.dialog, "doctor_prompt")
    assert problem.endswith("is tagged doctor_prompt but asks why.question, not "
                            f"doctor.question (required by {data_copy.content}/safety.yaml)")


def test_activity_shown_with_a_red_flag_question_fails(data_copy, check) -> None:
    """Cards shown above a red-flag question are read before its answer: after the
    doctor prompt or not, a red flag there would already have seen activities."""
    def change(d: Data) -> None:
        # the doctor prompt first, the screening after it: every other check holds
        transition(d, "welcome", "agree")["dest"] = "explaining_why"
        transition(d, "doctor_prompt", "understood")["dest"] = "asking_bladder"
        for source in ("asking_clearance", "asking_fracture_clearance",
                       "asking_surgery_clearance"):
            for t in d["transitions"]:
                if t["source"] == source and t["dest"] == "explaining_why":
                    t["dest"] = "asking_pool"
        state(d, "asking_shooting_pain")["show"] = [{"card": "activity.walking"}]

    edit(data_copy.dialog, change)
    result = check()
    problems = finding_lines(result, "ii")[1:]
    assert any(p.endswith("asks question.shooting_pain (required by "
                          f"{data_copy.content}/safety.yaml) but names an activity")
               for p in problems), problems
    # and the doctor prompt now comes before the screening: tips after it would not wait
    assert any("(state doctor_prompt," in p and "is the doctor prompt but is reachable "
               "without asking question.bladder" in p for p in problems), problems


@pytest.mark.parametrize(("hidden", "char"), [
    ("w\u0430lking", "U+0430 (CYRILLIC SMALL LETTER A)"),  # a look-alike in a Latin word
    ("\u0440\u043e\u043e\u04cf", "U+0440 (CYRILLIC SMALL LETTER ER)"),  # a whole word
    ("swi\u200bmming", "U+200B (ZERO WIDTH SPACE)"),
    ("swi\u034fmming", "U+034F (COMBINING GRAPHEME JOINER)"),
    ("wa\ufe0flking", "U+FE0F (VARIATION SELECTOR-16)"),
    ("jo\u0261ging", "U+0261 (LATIN SMALL LETTER SCRIPT G)"),
    ("\u1d21alking", "U+1D21 (LATIN LETTER SMALL CAPITAL W)"),
    ("\uff37\uff41\uff4c\uff4b", "U+FF37 (FULLWIDTH LATIN CAPITAL LETTER W)"),
    ("a few lengths \U0001f3ca", "U+1F3CA (SWIMMER)"),
    ("so\u00adft", "U+00AD (SOFT HYPHEN)"),
    ("b\u0131ke", "U+0131 (LATIN SMALL LETTER DOTLESS I)"),  # no a-z under it
    ("\u017fwimming", "U+017F (LATIN SMALL LETTER LONG S)"),
    ("wa\u0301lking", "U+0301 (COMBINING ACUTE ACCENT)"),  # accents come on the letter
])
def test_words_hidden_from_the_activity_check_fail(data_copy, check, hidden: str,
                                                   char: str) -> None:
    path = data_copy.content / "messages.yaml"
    replace_once(path, "    Thanks. Here is why gentle", f"    Thanks. {hidden} is why gentle")
    _, _, what = data_error(check(), path)
    assert what == (f"message why.intro holds {char}: texts use the letters a-z (accented "
                    "or not), digits and common punctuation only"), what


@pytest.mark.parametrize("blank", ["\u3164", "\u2800"])
def test_a_blank_looking_doctor_prompt_fails(data_copy, check, blank: str) -> None:
    path = data_copy.content / "messages.yaml"
    edit(path, lambda d: d["doctor"].update(prompt=blank))
    _, _, what = data_error(check(), path)
    assert what.startswith(f"message doctor.prompt holds U+{ord(blank):04X} ("), what


@pytest.mark.parametrize("words", ["if you ran or swam before", "a short ebike ride",
                                   "w\u00e1lking", "B\u00cfKING", "tai\u00a0chi",
                                   "cross\u2010training", "a step\n    machine",
                                   "hydrotherapy", "a rower", "a spin class", "powerwalking"])
def test_other_forms_of_activity_words_are_caught(data_copy, check, words: str) -> None:
    path = data_copy.content / "messages.yaml"
    replace_once(path, "    Thanks. Here is why gentle", f"    Thanks, {words}. Here is why gentle")
    block = finding_lines(check(), "i")
    assert_names_state(block[1], data_copy.dialog, "explaining_why")


def test_whole_word_entries_are_optional(data_copy, check) -> None:
    edit(data_copy.content / "safety.yaml", lambda d: d.pop("activity_whole_words"))
    assert check().rc == 0


def test_a_range_is_not_a_run(data_copy, check) -> None:
    """Whole-word entries ("ran", "row") match only whole words."""
    path = data_copy.content / "messages.yaml"
    replace_once(path, "    Thanks. Here is why gentle",
                 "    Thanks. A range of rowdy skills; here is why gentle")
    assert check().rc == 0


@pytest.mark.parametrize("key", ["doctor_prompt", "doctor_reminder"])
def test_dialog_cannot_choose_the_doctor_messages(data_copy, check, key: str) -> None:
    """Which message is the doctor prompt, and which the reminder, the rules say: a
    dialog naming its own could make any text count as either."""
    edit(data_copy.dialog, lambda d: d.update({key: "why.intro"}))
    _, _, what = data_error(check(), data_copy.dialog)
    assert what == f"the dialog has unknown key(s) {key}"


def test_dialog_cannot_carry_its_own_activity_words(data_copy, check) -> None:
    """The words live with the rules: a dialog that lists fewer cannot hide an activity."""
    edit(data_copy.dialog, lambda d: d.update(activity_words=["xyzzy"]))
    _, _, what = data_error(check(), data_copy.dialog)
    assert what == "the dialog has unknown key(s) activity_words"


def test_activity_word_found_without_any_tag(data_copy, check) -> None:
    """The pool question untagged and moved before the doctor prompt: its wording alone
    (content/safety.yaml's words) marks it as naming an activity."""
    def change(d: Data) -> None:
        del state(d, "asking_pool")["tags"]
        transition(d, "explaining_why", "next")["dest"] = "asking_pool"

    edit(data_copy.dialog, change)
    result = check()
    block = finding_lines(result, "i")
    pool = [p for p in block[1:] if "(state asking_pool," in p]
    assert len(pool) == 1, block
    assert_names_state(pool[0], data_copy.dialog, "asking_pool")
    assert "names an activity but is reachable without the doctor prompt's acknowledgement" in (
        pool[0])


@pytest.mark.parametrize(("old", "new", "what"), [
    ('  - question: question.bladder\n    answers: {"yes": emergency,',
     '  - question: question.bladder\n    answers: {"yes": mild,',
     "red flag question.bladder: level 'mild' is not one of urgent, emergency"),
    ("  - question: question.legs\n", "  - question: question.knees\n",
     "red flag question 'question.knees' is not a message"),
    ("      - {source: livestrong_cardio, section: Consult Your Doctor}\n  # After",
     "      - {source: livestrong_cardio, section: Bed Rest}\n  # After",
     "red flag question.fracture_clearance cites section 'Bed Rest' that source "
     "livestrong_cardio does not list"),
])
def test_broken_safety_rules_stop_the_load(data_copy, check, old: str, new: str,
                                           what: str) -> None:
    path = data_copy.content / "safety.yaml"
    replace_once(path, old, new)
    assert data_error(check(), path)[2] == what


def test_extra_answer_to_a_required_question_fails(data_copy, check) -> None:
    """A "maybe" on the bladder question that goes on towards activities: an answer the
    rules call neither a red flag nor clear."""
    def change(d: Data) -> None:
        state(d, "asking_bladder")["choices"] = [
            {"id": "yes", "label": "choice.yes"}, {"id": "no", "label": "choice.no"},
            {"id": "unsure", "label": "choice.unsure"}, {"id": "maybe", "label": "choice.unsure"}]
        d["transitions"].append({"trigger": "answer", "source": "asking_bladder",
                                 "dest": "asking_saddle", "conditions": "chose_maybe"})

    edit(data_copy.dialog, change)
    problem = first_problem(check(), "ii", data_copy.dialog, "asking_bladder")
    assert problem.endswith("asks question.bladder with answer(s) 'maybe' that are neither red "
                            f"flags, clear answers nor followed up (required by {data_copy.content}"
                            "/safety.yaml)")


@pytest.mark.parametrize("after", ["", '    after: {question: question.saddle, answer: "yes"}\n'],
                         ids=["after_removed", "after_on_another_question"])
def test_answer_no_rule_follows_up_is_extra(data_copy, check, after: str) -> None:
    """An accident's "yes" is allowed only as long as a rule follows it up: with that
    rule's `after` gone, or naming another question, the answer is unscreened."""
    path = data_copy.content / "safety.yaml"
    replace_once(path, '    after: {question: question.trauma, answer: "yes"}\n', after)
    problem = first_problem(check(), "ii", data_copy.dialog, "asking_trauma")
    assert "asks question.trauma with answer(s) 'yes' that are neither red flags" in problem


@pytest.mark.parametrize(("question", "dest"), [
    ("trauma", "stopped"), ("trauma", "urgent_care"), ("trauma", "asking_fever"),
    ("cancer", "asking_shooting_pain"), ("other_signs", "declined_doctor")])
def test_followed_up_answer_must_lead_straight_to_its_question(data_copy, check,
                                                               question: str, dest: str) -> None:
    """An accident's "yes" that ends, or goes on, anywhere but the doctor-checked question
    would skip the emergency advice, though it reaches no activity that way (and so for a
    past cancer's, or another sign's, and the doctor-examined questions)."""
    edit(data_copy.dialog, lambda d: transition(d, f"asking_{question}", "yes").update(
        dest=dest))
    result = check()
    assert result.rc == 1
    problems = [p for p in finding_lines(result, "ii")[1:] if "followed up" in p]
    assert len(problems) == 1, finding_lines(result, "ii")
    assert_names_state(problems[0], data_copy.dialog, f"asking_{question}")
    assert problems[0].endswith(
        f"answer 'yes' to question.{question} is followed up by question.{question}_checked "
        f"(required by {data_copy.content}/safety.yaml), so it must lead straight to it, but "
        f"goes to {dest}")


def test_renamed_after_answer_fails(data_copy, check) -> None:
    """The fracture answer renamed: the clearance rule, asked after it, would check nothing."""
    def change(d: Data) -> None:
        choice = next(c for c in state(d, "asking_diagnosis")["choices"]
                      if c["id"] == "fracture")
        choice["id"] = "broken"
        transition(d, "asking_diagnosis", "fracture")["conditions"] = "chose_broken"
        d["predicates"]["ease_in"]["any"][0]["diagnosis"] = ["pinched_nerve", "slipped_disk",
                                                             "broken"]

    edit(data_copy.dialog, change)
    result = check()
    block = finding_lines(result, "ii")
    assert f"{data_copy.content}/safety.yaml: red flag question.fracture_clearance is asked " \
        "after the answer 'fracture' to question.diagnosis, but no state asking " \
        "question.diagnosis offers that answer" in block[1:]
