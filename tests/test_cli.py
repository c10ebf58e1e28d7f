"""The `backbot` command line: terminal chat through a real subprocess, help, diagram."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import bot.telegram_app as telegram_app
from bot.config import load_settings
from bot.engine import Event
from bot.errors import DataError
from bot.loading import load_bundle
from bot.outputs import Answered, Ask, Choice, Say
from bot.store import SessionStore, claim_database, open_database
from bot.terminal import _with_answer_taken, to_event

REPO_ROOT = Path(__file__).resolve().parents[1]

# by number, by label in any case, and by label exactly
TO_SUGGESTIONS = ["1", "no", "No", "2", "2", "2", "2", "2", "2", "2", "2",
                  "Something else, or none",
                  "yes", "Continue", "Yes, I will", "Yes", "YES", "Yes", "no"]


def run_bot(args: list[str], stdin: str, cwd: Path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False,
                          env=None if env is None else {**os.environ, **env})


def chat(lines: list[str], cwd: Path) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Run `backbot chat` on these input lines; the output with whitespace flattened."""
    result = run_bot(["chat"], "".join(f"{line}\n" for line in lines), cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "Traceback" not in result.stdout
    return " ".join(result.stdout.split()), result


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def messages() -> dict[str, str]:
    _, content = load_bundle()
    return {key: flat(text) for key, text in content.messages.items()}


def test_chat_full_path_to_suggestions(tmp_path: Path, messages: dict[str, str],
                                       find_activity) -> None:
    out, _ = chat(TO_SUGGESTIONS, tmp_path)
    assert out.startswith(messages["chat.hint"])
    doctor_question = messages["doctor.question"]
    assert out.count(doctor_question) == 1
    before = out[:out.index(doctor_question)]
    assert find_activity(before) is None, find_activity(before)
    after = out[out.index(doctor_question):]
    for title in ("* Walking", "* Pool workouts", "* Recumbent bike", "* Round out your plan"):
        assert title in after
    assert "* Upright exercise bike" not in out and "* Elliptical trainer" not in out
    assert "Source: Cardio Exercises After Back Injury (LIVESTRONG.com), " in after
    assert messages["reminder.doctor"] in after
    assert after.index("* Round out your plan") < after.index(messages["reminder.doctor"])
    assert messages["end.question"] + " 1) Start again 2) Sources" in after
    assert out.endswith(messages["chat.bye"])  # end of input after the last answer


def test_chat_emergency(tmp_path: Path, messages: dict[str, str], find_activity) -> None:
    out, _ = chat(["1", "1"], tmp_path)
    assert messages["disposition.emergency"] in out
    assert "emergency" in out.lower()
    assert messages["reminder.doctor"] in out
    assert find_activity(out) is None, find_activity(out)
    assert "* " not in out  # no cards at all


def test_chat_says_which_answer_it_took(tmp_path: Path, messages: dict[str, str]) -> None:
    """A typed number, an abbreviation or a saying is answered by the label it was taken
    as, so a slip ("2" meant as "3") shows at once."""
    _, result = chat(["1", "2", "nope", "ye"], tmp_path)
    label = messages["answered.label"]
    taken = [line.removeprefix(f"{label} ") for line in result.stdout.splitlines()
             if line.startswith(label)]
    assert taken == [messages["choice.agree"], "No", "No", "Yes"], taken
    assert f"> nope\n\n{label} No\n" in result.stdout  # right under what was typed


def test_chat_says_which_answer_it_took_when_it_moves_nothing_on(
        tmp_path: Path, messages: dict[str, str]) -> None:
    """An answer that shows something (*What do you store?*, an end's *Sources*) or
    starts again is shown as taken too: typed, it may have been misread as well."""
    _, result = chat(["2", "1", "1", "sources", "start"], tmp_path)
    label = messages["answered.label"]
    taken = [line.removeprefix(f"{label} ") for line in result.stdout.splitlines()
             if line.startswith(label)]
    assert taken == [messages["choice.privacy"], messages["choice.agree"], "Yes",
                     messages["end.sources"], messages["end.restart"]], taken
    assert f"> 2\n\n{label} {messages['choice.privacy']}\n\n" in result.stdout
    assert f"> start\n\n{label} {messages['end.restart']}\n\n" in result.stdout
    # not where the engine said it took it already, or did not take it
    ask = Ask("q", "Q?", (Choice("yes", "Yes"),), "0.1.1")
    for said in ([Answered("Q?", "Yes"), ask], [Say("session.stale", "moved on"), ask]):
        assert _with_answer_taken(said, ask, "yes") == said
    assert _with_answer_taken([ask], ask, "yes") == [Answered("Q?", "Yes"), ask]


def test_chat_keeps_a_listed_question_one_item_per_line(tmp_path: Path) -> None:
    """The other warning signs are a list: each item starts a line of its own, and one
    that wraps goes on indented under its text."""
    _, result = chat(TO_SUGGESTIONS[:9], tmp_path)  # up to the other-signs question
    _, content = load_bundle()
    items = content.message("question.other_signs").split("\n")[1:]
    assert len(items) > 2 and all(item.startswith("• ") for item in items)
    shown = result.stdout.split("\n")
    for item in items:
        at = next(i for i, line in enumerate(shown) if line and item.startswith(line))
        text = shown[at]
        while len(text) < len(item) and shown[at + 1].startswith("  "):
            at += 1
            text += " " + shown[at].strip()
        assert text == item
    assert any(len(item) > 78 for item in items)  # one wraps


def test_chat_ends_cleanly_on_eof(tmp_path: Path, messages: dict[str, str]) -> None:
    out, result = chat([], tmp_path)
    assert messages["chat.consent"] in out
    assert out.endswith(messages["chat.bye"])
    assert result.stdout.count(">") == 1


def test_chat_interrupted_exits_130_on_a_fresh_line(tmp_path: Path) -> None:
    # Ctrl-C as from a terminal, even when the tests run where SIGINT is ignored (started
    # in the background by a script), which the child would inherit
    proc = subprocess.Popen([sys.executable, "-m", "bot", "chat"], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        while (char := proc.stdout.read(1)) != ">":  # the first prompt: waiting for a line
            assert char, "no prompt"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert stderr == "\n"  # no traceback; the shell's prompt starts on a line of its own


@pytest.mark.skipif(not hasattr(os, "openpty") or importlib.util.find_spec("readline") is None,
                    reason="needs a pseudo-terminal and readline")
def test_chat_at_a_terminal_lets_a_line_be_edited(tmp_path: Path,
                                                 messages: dict[str, str]) -> None:
    """Typed at a terminal, the arrow keys move in the line rather than become part of it:
    "x", left, delete, "1" is the answer 1. The up arrow brings back commands only: an
    earlier answer brought back could answer the next (red-flag) question."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: backbot chat on the pseudo-terminal
        os.chdir(tmp_path)
        os.execv(sys.executable, [sys.executable, "-m", "bot", "chat"])
    out = b""

    def read_until(marker: bytes) -> None:
        """Until `marker` comes after everything read so far."""
        nonlocal out
        start = len(out)
        while marker not in out[start:]:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"no {marker!r} in {out.decode(errors='replace')!r}"
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child is gone
                chunk = b""
            assert chunk, f"no {marker!r} in {out.decode(errors='replace')!r}"
            out += chunk

    try:
        read_until(b"> ")
        os.write(fd, b"x\x1b[D\x1b[3~1\r")
        read_until(b"> ")
        os.write(fd, b"no\r")  # to the bladder question
        read_until(b"> ")
        os.write(fd, b"\x1b[A\r")  # up, Enter: an empty line, so asked again quietly
        read_until(b"> ")
        os.write(fd, b"/help\r")
        read_until(b"> ")
        os.write(fd, b"\x1b[A\r")  # up, Enter: /help again
        read_until(b"> ")
        os.write(fd, b"\x04")  # end of input
        read_until(messages["chat.bye"].encode())
    finally:
        with contextlib.suppress(ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    text = flat(out.decode(errors="replace"))
    assert messages["question.bladder"] in text and messages["question.saddle"] in text
    assert messages["question.legs"] not in text  # the saddle question was not answered
    assert messages["chat.use_numbers"] not in text
    assert text.count(flat(messages["chat.help"])[:60]) == 2


def test_chat_quit(tmp_path: Path, messages: dict[str, str]) -> None:
    out, _ = chat(["1", "/quit", "1"], tmp_path)
    assert out.endswith("/quit " + messages["chat.bye"])
    assert messages["question.saddle"] not in out  # nothing read after /quit


def test_chat_back(tmp_path: Path, messages: dict[str, str]) -> None:
    out, _ = chat(["1", "/back", "/back", "3"], tmp_path)
    went_back = out.index(messages["session.went_back"])
    assert out.index(messages["question.bladder"]) < went_back
    assert out.count(messages["chat.consent"]) == 3  # start, back, nothing to go back
    assert messages["error.nothing_to_go_back"] in out
    assert out.index(messages["chat.consent"], went_back) > went_back
    assert messages["disposition.stopped"] in out  # "3" answered the welcome again


def test_chat_free_text_and_bad_numbers(tmp_path: Path, messages: dict[str, str]) -> None:
    out, _ = chat(["hello", "7", "0", "1"], tmp_path)
    # the terminal's own wording: there are no buttons here
    assert out.count(messages["chat.use_numbers"]) == 3
    assert messages["error.use_buttons"] not in out
    assert messages["question.bladder"] in out


def test_chat_blank_lines_ask_again_quietly(tmp_path: Path, messages: dict[str, str]) -> None:
    out, result = chat(["", "  ", "1"], tmp_path)
    assert messages["chat.use_numbers"] not in out  # a bare Enter is no wrong answer
    assert out.count(messages["chat.consent"]) == 1  # nor does it show the question again
    assert messages["question.bladder"] in out  # "1" still agreed
    assert result.stdout.count(">") == 4


def test_chat_odd_digits_and_bytes_are_free_text(tmp_path: Path,
                                                 messages: dict[str, str]) -> None:
    """Digits int() does not read ("²", "①"), a 5,000-digit number, bytes that are not
    UTF-8 (with the strict decoding of a UTF-8 locale): free text, never a traceback."""
    odd = ["\u00b2", "\u2460", "9" * 5000]
    stdin = "".join(f"{line}\n" for line in odd).encode() + b"\xff\xfe\n1\n"
    result = subprocess.run([sys.executable, "-m", "bot", "chat"], input=stdin, cwd=tmp_path,
                            capture_output=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    out = " ".join(result.stdout.decode("utf-8", "replace").split())
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr + result.stdout
    assert out.count(messages["chat.use_numbers"]) == 4
    assert messages["question.bladder"] in out  # and "1" still agreed


def test_chat_on_a_terminal_that_is_not_utf8(tmp_path: Path) -> None:
    """A terminal that cannot show "•" (an ASCII locale) gets "?" in its place."""
    stdin = "".join(f"{line}\n" for line in TO_SUGGESTIONS[:9]).encode()
    result = subprocess.run([sys.executable, "-m", "bot", "chat"], input=stdin, cwd=tmp_path,
                            capture_output=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr + result.stdout
    assert b"? it is worse at night" in result.stdout  # the list of other warning signs


def test_chat_forget_explains_nothing_is_stored(tmp_path: Path,
                                                messages: dict[str, str]) -> None:
    out, _ = chat(["1", "/forget", "2"], tmp_path)
    assert messages["chat.forget"] in out
    # the question is asked again and the next answer still applies
    assert out.index(messages["question.saddle"]) > out.index(messages["chat.forget"])


@pytest.mark.parametrize("command", ["/check", "/dailytip 08:30", "/Foo"])
def test_chat_names_the_commands_it_has_for_one_it_has_not(
        tmp_path: Path, messages: dict[str, str], command: str) -> None:
    out, _ = chat(["1", command, "2"], tmp_path)
    assert messages["chat.unknown_command"] in out
    assert messages["chat.use_numbers"] not in out
    # the question is asked again and the next answer still applies
    assert out.index(messages["question.saddle"]) > out.index(messages["chat.unknown_command"])


def test_chat_unknown_command_at_an_end_shows_the_end_again(
        tmp_path: Path, messages: dict[str, str]) -> None:
    out, _ = chat(["1", "1", "/dance"], tmp_path)  # bladder trouble: emergency care
    after = out[out.index(messages["chat.unknown_command"]):]
    assert messages["disposition.emergency"] in after


def test_chat_tip_fits_where_you_are(tmp_path: Path, messages: dict[str, str],
                                     find_activity: Callable[[str], str | None]) -> None:
    _, content = load_bundle()
    titles = [card.title for card in content.cards_tagged("tip")]
    out, _ = chat(["/tip"], tmp_path)  # before anything: a tip naming no activity
    assert any(title in out for title in titles)
    assert find_activity(out) is None
    assert out.rstrip().endswith(messages["chat.bye"])
    out, _ = chat(["1", "1", "/tip"], tmp_path)  # after an emergency answer: none
    after = out[out.index(messages["tip.after_red_flag"]):]
    assert not any(title in after for title in titles)
    assert messages["disposition.emergency"] in after  # and what to do now, again


def test_chat_continue_question_takes_yes(tmp_path: Path, messages: dict[str, str]) -> None:
    out, _ = chat([*TO_SUGGESTIONS[:13], "ok"], tmp_path)
    assert messages["doctor.question"] in out
    assert messages["chat.use_numbers"] not in out
    yes_no = Ask("q", "Q?", (Choice("yes", "Yes"), Choice("no", "No")), "0.1.1")
    assert to_event("ok", yes_no) == Event("text")  # only where "Continue" is all there is


def test_chat_says_what_is_true_in_a_terminal(tmp_path: Path,
                                              messages: dict[str, str]) -> None:
    """The terminal stores nothing, so it never promises Telegram's storage."""
    out, _ = chat(["2", "/help", "/privacy", "1", "/start"], tmp_path)
    assert out.count(messages["chat.hint"]) == 1  # where it says nothing is kept, once
    assert out.count(messages["chat.consent"]) == 4  # asked, and again after each of three
    assert out.count(messages["chat.privacy"]) == 2  # the "What do you store?" answer too
    assert messages["chat.help"] in out
    # /start part-way: no "welcome back" to someone who never left
    assert messages["chat.resumed"] in out
    for telegram_only in ("welcome.question", "privacy.note", "help.text", "session.resumed"):
        assert messages[telegram_only] not in out
    assert "days" not in out  # how long Telegram's sessions are kept
    assert out.count(messages["question.bladder"]) == 2  # "1" still agreed; /start: again


def test_to_event_by_number_label_and_command() -> None:
    ask = Ask("q", "Q?", (Choice("yes", "Yes"), Choice("unsure", "Not sure")), "0.3.4")
    assert to_event("2", ask) == Event.answer("unsure", ref="0.3.4")
    assert to_event("  not SURE ", ask) == Event.answer("unsure", ref="0.3.4")
    assert to_event("yes", ask) == Event.answer("yes", ref="0.3.4")
    assert to_event("3", ask) == Event("text")
    # a word of a label, but without its "not" it says the opposite: asked again
    assert to_event("sure", ask) == Event("text")
    assert to_event("not", ask) == Event.answer("unsure", ref="0.3.4")
    welcome = Ask("q", "Q?", (Choice("agree", "Yes, let's start"),
                              Choice("stop", "No thanks")), "0.0.0")
    assert to_event("thanks", welcome) == Event("text")
    assert to_event("no", welcome) == Event.answer("stop", ref="0.0.0")
    assert to_event("start", welcome) == Event.answer("agree", ref="0.0.0")


def test_to_event_by_a_unique_word_of_a_label() -> None:
    ask = Ask("q", "Q?", (Choice("pinched_nerve", "Pinched nerve"),
                          Choice("slipped_disk", "Slipped (herniated) disc"),
                          Choice("no_diagnosis", "No diagnosis"),
                          Choice("no", "No")), "1.8.8")
    assert to_event("slipped", ask) == Event.answer("slipped_disk", ref="1.8.8")
    assert to_event("herniated disc", ask) == Event.answer("slipped_disk", ref="1.8.8")
    assert to_event("no", ask) == Event.answer("no", ref="1.8.8")  # exact label first
    assert to_event("n", ask) == Event.answer("no", ref="1.8.8")  # "n" is "no"
    assert to_event("disc nerve", ask) == Event("text")  # no label has both
    assert to_event("/BACK", ask) == Event("back")
    assert to_event("/back please", ask) == Event("back")  # as Telegram reads a command
    assert to_event("/backwards", ask) == Event("text")
    assert to_event("/sources", None) == Event("show", topic="sources")


YES_NO_UNSURE = Ask("q", "Q?", (Choice("yes", "Yes"), Choice("no", "No"),
                                Choice("unsure", "Not sure")), "0.3.4")


@pytest.mark.parametrize(("typed", "choice"), [
    ("y", "yes"), ("Yeah", "yes"), ("yep!", "yes"), ("n", "no"), ("nope", "no"),
    ("Nah", "no"), ("maybe", "unsure"), ("unsure", "unsure"), ("idk", "unsure"),
    ("I don't know", "unsure"), ("don't know", "unsure"), ("dont know", "unsure"),
    ("1)", "yes"), ("2.", "no"), ("3) ", "unsure"),
    # not unmistakable: asked again rather than taken for a "No" to a red flag
    ("not really", None), ("kind of", None), ("nn", None), ("4)", None),
    ("maybe not", None), ("n/a", None),
])
def test_to_event_reads_common_ways_of_answering(typed: str, choice: str | None) -> None:
    expected = Event.answer(choice, ref="0.3.4") if choice else Event("text")
    assert to_event(typed, YES_NO_UNSURE) == expected


def test_to_event_takes_no_letter_alone_for_the_doctor_prompts_answer() -> None:
    """"i" or "w" start words of "Yes, I will" but say nothing; only "y" stands for yes."""
    ask = Ask("q", "Q?", (Choice("ack", "Yes, I will"), Choice("decline", "Not yet")), "1.2.3")
    for typed in ("i", "w", "I", "i w", "e"):
        assert to_event(typed, ask) == Event("text"), typed
    for typed in ("y", "yes", "I will", "will", "yes i will"):
        assert to_event(typed, ask) == Event.answer("ack", ref="1.2.3"), typed


def test_to_event_takes_one_negation_of_a_label_with_two() -> None:
    """"not now" is "No, not now"; "now" alone, without its no or not, is no answer."""
    ask = Ask("q", "Q?", (Choice("ack", "Yes, I will"), Choice("decline", "No, not now")),
              "1.2.3")
    for typed in ("not now", "not", "no", "no not now"):
        assert to_event(typed, ask) == Event.answer("decline", ref="1.2.3"), typed
    assert to_event("now", ask) == Event("text")


def test_to_event_takes_disk_for_disc() -> None:
    ask = Ask("q", "Q?", (Choice("pinched_nerve", "Pinched nerve"),
                          Choice("slipped_disk", "Slipped (herniated) disc")), "1.8.8")
    assert to_event("slipped disk", ask) == Event.answer("slipped_disk", ref="1.8.8")
    assert to_event("disk", ask) == Event.answer("slipped_disk", ref="1.8.8")


def test_help_lists_commands(tmp_path: Path) -> None:
    result = run_bot(["--help"], "", tmp_path)
    assert result.returncode == 0
    for command in ("chat", "check", "run", "compact", "diagram"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.MULTILINE), command
    bare = run_bot([], "", tmp_path)
    assert bare.returncode == 2
    assert "chat" in bare.stdout


def test_help_lists_the_commands_in_the_readmes_order(tmp_path: Path) -> None:
    """The README says `backbot --help` lists every command, in a table beside it: the
    same order in both, so neither reads as the other's stale copy."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `backbot (\w+)` \|", readme, re.MULTILINE)
    result = run_bot(["--help"], "", tmp_path)
    listed = re.findall(r"^ {4}(\w+)", result.stdout, re.MULTILINE)  # (not wrapped help)
    assert documented == ["chat", "check", "diagram", "run", "compact"]
    assert listed == documented, result.stdout


def test_compact_rebuilds_the_database_and_refuses_while_a_bot_runs(tmp_path: Path) -> None:
    path = tmp_path / "data" / "sessions.sqlite3"
    store = SessionStore(open_database(path))
    for user in range(1, 200):
        store.put(user, {"answers": f"answers-of-{user}"})
    store.delete(7)
    store.db.close()
    env = {"BACKBOT_DB": str(path)}
    held = claim_database(path)  # as `backbot run` holds it
    assert held is not None
    try:
        refused = run_bot(["compact"], "", tmp_path, env)
    finally:
        held.close()
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == f"backbot: a backbot is running on BACKBOT_DB={path}; stop it first\n"

    done = run_bot(["compact"], "", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"compacted {re.escape(str(path))}: [\d,]+ bytes before, [\d,]+ after\n",
                        done.stdout)
    store = SessionStore(open_database(path))
    assert store.get(8) == {"answers": "answers-of-8"} and store.get(7) is None

    missing = run_bot(["compact"], "", tmp_path, {"BACKBOT_DB": str(tmp_path / "none.db")})
    assert missing.returncode == 2
    assert missing.stderr == (f"backbot: cannot compact BACKBOT_DB={tmp_path / 'none.db'}: "
                              f"no database file there\n")


def test_check_command_runs_from_anywhere(tmp_path: Path) -> None:
    result = run_bot(["check"], "", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(re.findall(r"^ok   \((i|ii|iii|iv)\) ", result.stdout, re.MULTILINE)) == 4


def test_check_reports_data_errors_without_traceback(tmp_path: Path) -> None:
    result = run_bot(["check", "--dialog", str(tmp_path / "nope.yaml")], "", tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"backbot: {tmp_path / 'nope.yaml'}: file not found\n"


def diagram(cwd: Path) -> str:
    result = run_bot(["diagram"], "", cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_diagram_draws_every_state_and_answer(tmp_path: Path) -> None:
    dialog, _ = load_bundle()
    text = diagram(tmp_path)
    assert "stateDiagram-v2" in text
    for name in dialog.states:
        assert f'state "{name}" as {name}' in text
    arrows = re.findall(r"^\s+(\w+) --> (\w+): answer", text, re.MULTILINE)
    assert len(arrows) == len({(e.source, e.dest) for e in dialog.answer_edges()})
    assert "restart" not in text


def test_readme_has_the_current_diagram(tmp_path: Path) -> None:
    """Fails until README.md carries the output of `backbot diagram` in a mermaid block."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```mermaid\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)
    assert blocks, "README.md has no ```mermaid block; paste in `python -m bot diagram`"
    assert diagram(tmp_path) in blocks, "README.md's diagram is stale: `python -m bot diagram`"


UNSAFE_EDIT = ("source: explaining_why, dest: doctor_prompt",
               "source: explaining_why, dest: asking_pool")  # around the doctor prompt


def test_chat_and_run_refuse_a_dialog_that_fails_the_safety_check(tmp_path: Path,
                                                                  data_copy) -> None:
    text = data_copy.dialog.read_text(encoding="utf-8")
    assert text.count(UNSAFE_EDIT[0]) == 1
    data_copy.dialog.write_text(text.replace(*UNSAFE_EDIT), encoding="utf-8")
    result = run_bot(["chat", "--dialog", str(data_copy.dialog)], "1\n" * 12, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""  # nothing asked, nothing suggested
    [line] = result.stderr.splitlines()
    assert line.startswith(f"backbot: {data_copy.dialog}: fails the safety check (i) ")
    assert "backbot check" in line
    # the same edit in the shipped place stops `backbot run` before it talks to Telegram
    settings = load_settings(environ={"TELEGRAM_BOT_TOKEN": "123:not-used",
                                      "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot",
                                      "BACKBOT_DB": str(tmp_path / "db.sqlite3")},
                             env_file=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bot.paths.data_root", lambda: data_copy.dialog.parent.parent)
        with pytest.raises(DataError, match=r"fails the safety check \(i\)"):
            telegram_app.run(settings)
    assert not (tmp_path / "db.sqlite3").exists()


def test_check_fails_even_when_its_reader_stops_early(tmp_path: Path, data_copy) -> None:
    """`backbot check | head -1` on an unsafe dialog: the pipe closes before the findings
    are printed, and the check still fails (a hook may go by its status alone)."""
    text = data_copy.dialog.read_text(encoding="utf-8")
    data_copy.dialog.write_text(text.replace(*UNSAFE_EDIT), encoding="utf-8")
    for dialog, expected in ((data_copy.dialog, 1), (None, 0)):
        args = ["check", *(["--dialog", str(dialog)] if dialog else [])]
        with subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()  # the reader is gone before anything is printed
            assert proc.wait(timeout=60) == expected
            assert proc.stderr.read() == b""


def test_chat_without_an_input_says_so(tmp_path: Path) -> None:
    """Started with its input closed (`backbot chat <&-`): one line, no traceback."""
    result = subprocess.run([sys.executable, "-m", "bot", "chat"], stdin=subprocess.DEVNULL,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False, preexec_fn=lambda: os.close(0))
    assert result.returncode == 2
    assert result.stderr == ("backbot: chat needs an input and an output: a terminal or a "
                             "pipe\n")


def test_piped_lines_are_echoed_without_control_characters(tmp_path: Path) -> None:
    """An escape sequence in piped input would recolour or clear the terminal shown the
    transcript: echoed with "?" in place of each control character."""
    result = run_bot(["chat"], "1\n\x1b[2Jred\x07\n", tmp_path)
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "?[2Jred?" in result.stdout


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("command", [["chat"], ["diagram"]])
def test_output_that_cannot_be_written_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """A full disk (or a terminal gone) refuses the writes: one line, no traceback."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "bot", *command], input="1\n",
                                stdout=full, stderr=subprocess.PIPE, cwd=tmp_path,
                                text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr == "backbot: No space left on device\n"
