"""`backbot chat`: the same engine in a terminal, one line in, plain text out."""

from __future__ import annotations

import contextlib
import io
import sys
import textwrap
import unicodedata
from typing import TextIO

from bot.content import Card, Content, group_citations
from bot.engine import COMMANDS as ENGINE_COMMANDS
from bot.engine import STALE, Engine, Event, Snapshot
from bot.outputs import Answered, Ask, Output, Say, ShowCard, ShowTip, SourceList

WIDTH = 78
BULLET = "• "  # a list item in a message
COMMANDS = {f"/{name}": event for name, event in ENGINE_COMMANDS.items()}
QUIT = {"/quit", "/exit", "/q"}
# Typed to a question with one answer ("Continue"), these mean that answer.
GO_ON = frozenset({"yes", "y", "ok", "okay", "next", "go"})
# Words that turn a label round: a typed answer matches such a label only if it has them.
NEGATIONS = frozenset({"no", "not"})
# What people type for an answer's words. Only the unmistakable: "not really" or "kind
# of" stay unread (asked again) rather than be taken for a "No" to a red-flag question.
SAYINGS = {"y": "yes", "yeah": "yes", "yep": "yes", "yup": "yes", "n": "no", "nope": "no",
           "nah": "no", "unsure": "not sure", "maybe": "not sure", "idk": "not sure",
           "dont know": "not sure", "don t know": "not sure", "do not know": "not sure",
           "i dont know": "not sure", "i don t know": "not sure", "i do not know": "not sure",
           "disk": "disc"}
# The engine's answers to a choice it did not take (none is shown as taken)
NOT_TAKEN = frozenset({STALE, "error.unknown_choice"})
FORGET = "/forget"
TIP = "/tip"
# Engine messages about buttons or about what Telegram stores, in the words that are
# true in a terminal (which stores nothing).
TERMINAL_WORDING = {
    "error.use_buttons": "chat.use_numbers",
    "error.unknown_choice": "chat.use_numbers",
    "error.unknown_event": "chat.use_numbers",
    "welcome.question": "chat.consent",
    "privacy.note": "chat.privacy",
    "help.text": "chat.help",
    "session.resumed": "chat.resumed",
}


def render(outputs: list[Output], content: Content) -> str:
    blocks = [block for output in outputs if (block := render_one(output, content))]
    return "\n\n".join(blocks)


def render_one(output: Output, content: Content) -> str:
    if isinstance(output, Say):
        wording = TERMINAL_WORDING.get(output.key)
        return _wrap(content.message(wording) if wording else output.text)
    if isinstance(output, ShowCard):
        return _card(output.card, content)
    if isinstance(output, ShowTip):
        card = _card(output.card, content)
        return card if output.doctor_first is None else f"{_wrap(output.doctor_first)}\n\n{card}"
    if isinstance(output, Ask):
        wording = TERMINAL_WORDING.get(output.key)
        lines = [_wrap(content.message(wording) if wording else output.text)]
        lines += [f"  {n}) {choice.label}" for n, choice in enumerate(output.choices, 1)]
        return "\n".join(lines)
    if isinstance(output, SourceList):
        lines = [output.header]
        for source in output.sources:
            lines.append(_wrap(f"- {source.title} ({source.publisher}) {source.url}", "  ")[2:])
        return "\n".join(lines)
    if isinstance(output, Answered):  # the answer taken from what was typed ("ye": Yes)
        return f"{content.message('answered.label')} {output.label}"
    raise TypeError(f"unknown output {output!r}")


def to_event(line: str, ask: Ask | None) -> Event:
    """A typed line as an engine event: a command, a choice number or label, or free text."""
    word = line.strip()
    if (command := _command(word)) in COMMANDS:
        return COMMANDS[command]
    if ask is not None:
        number = word.rstrip(").")  # "2)" and "2." as the list shows them
        # ASCII digits only: "²" and "①" are digits to isdigit() but not to int()
        if number.isascii() and number.isdigit() and len(number) <= 3 and (
                1 <= int(number) <= len(ask.choices)):
            return Event.answer(ask.choices[int(number) - 1].id, ref=ask.ref)
        choice = match_label(word, ask)
        if choice is None and len(ask.choices) == 1 and word.casefold() in GO_ON:
            choice = ask.choices[0].id
        if choice is not None:
            return Event.answer(choice, ref=ask.ref)
    return Event("text")


def match_label(typed: str, ask: Ask) -> str | None:
    """The choice whose label is what was typed, or else the only one whose words start
    with the typed words ("slipped" for "Slipped (herniated) disc"). A label's "no" or
    "not" must be typed too (one of them, for "No, not now"): "sure" is not "Not sure",
    nor "thanks" "No thanks". Common ways of saying an answer's words count as them
    ("nope" as "no")."""
    typed_words = _said(_words(typed))
    if not typed_words:
        return None
    for choice in ask.choices:
        if _words(choice.label) == typed_words:
            return choice.id
    if all(len(word) < 2 for word in typed_words):
        return None  # letters alone start no answer ("i" for "Yes, I will"): only a saying
    found = [choice.id for choice in ask.choices
             if _starts_words(typed_words, _words(choice.label))]
    return found[0] if len(found) == 1 else None


def _starts_words(typed: list[str], label: list[str]) -> bool:
    negations = [n for n in label if n in NEGATIONS]
    return (all(any(w.startswith(t) for w in label) for t in typed)
            and (not negations or any(n.startswith(t) for n in negations for t in typed)))


def _said(words: list[str]) -> list[str]:
    """The typed words, with the SAYINGS in them as the words they stand for. A single
    letter only counts as the whole line ("n", not the "n" of "n/a"); a saying that
    stands for more than one word, too ("maybe", not the "maybe" of "maybe not")."""
    whole = SAYINGS.get(" ".join(words))
    if whole is not None:
        return whole.split()
    return [_said_word(word) for word in words]


def _said_word(word: str) -> str:
    meant = SAYINGS.get(word, word)
    return meant if len(word) > 1 and " " not in meant else word


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.casefold()).split()


def chat(engine: Engine, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Run one conversation until /quit or end of input."""
    echo = not stdin.isatty()  # piped input: show it, so the transcript reads naturally
    if not echo:
        _line_editing()
    if isinstance(stdin, io.TextIOWrapper):
        stdin.reconfigure(errors="replace")  # bytes that are not UTF-8 are just free text
    if isinstance(stdout, io.TextIOWrapper):
        stdout.reconfigure(errors="replace")  # a terminal without "•" shows "?" instead
    content = engine.content
    print(_wrap(content.message("chat.hint")), file=stdout)
    snapshot: Snapshot | None = None
    snapshot, outputs = engine.step(snapshot, Event("start"))
    while True:
        print("\n" + render(outputs, content), file=stdout)
        ask = next((o for o in reversed(outputs) if isinstance(o, Ask)), None)
        line = _read_line(stdin, stdout, echo)
        command = _command(line)
        if not line or command in QUIT:
            if echo and line:
                print(_shown(line), file=stdout)
            print("\n" + _wrap(content.message("chat.bye")), file=stdout)
            return 0
        if echo:
            print(_shown(line), file=stdout)
        if command == TIP:  # the same tips as in Telegram, and where we are below it
            outputs = [engine.tip(snapshot), *engine.current(snapshot)]
            continue
        if command == FORGET or (command and command not in COMMANDS):
            key = "chat.forget" if command == FORGET else "chat.unknown_command"
            # at an end, all of it again (what to do now is never out of sight)
            outputs = [Say(key, content.message(key)), *engine.current(snapshot)]
            continue
        event = to_event(line, ask)
        snapshot, outputs = engine.step(snapshot, event)
        if ask is not None and event.choice is not None:
            outputs = _with_answer_taken(outputs, ask, event.choice)


def _with_answer_taken(outputs: list[Output], ask: Ask, choice_id: str) -> list[Output]:
    """Every choice read from a typed line, shown by its label under it. The engine says
    which answer it took only for one that moves the check-in on (Telegram writes it on
    the question tapped), not for one that shows something (*What do you store?*,
    *Sources*) or starts again; but here each was read from typed words, which may have
    been misread, so it is shown as well."""
    if any(isinstance(o, Answered) or (isinstance(o, Say) and o.key in NOT_TAKEN)
           for o in outputs):
        return outputs
    label = next((c.label for c in ask.choices if c.id == choice_id), None)
    return outputs if label is None else [Answered(ask.text, label), *outputs]


def _card(card: Card, content: Content) -> str:
    grouped = group_citations(card.citations)
    cites = "; ".join(f"{source.title} ({source.publisher}), {', '.join(sections)}"
                      for source, sections in grouped)
    label = content.sources_label(len(grouped))
    return "\n".join([f"* {card.title}", _wrap(card.body, "  "), _wrap(f"{label} {cites}", "  ")])


def _line_editing() -> None:
    """Arrow keys at the prompt, where the platform has readline. Only commands go into
    its history: an earlier answer brought back by the up arrow could answer a red-flag
    question."""
    with contextlib.suppress(ImportError):
        import readline  # importing it is what turns it on

        readline.set_auto_history(False)


def _remember(line: str) -> None:
    readline = sys.modules.get("readline")
    if readline is not None and _command(line):
        readline.add_history(line.strip())


def _read_line(stdin: TextIO, stdout: TextIO, echo: bool) -> str:
    """The next line that is not blank ("" at the end of input): a bare Enter asks again
    for the same answer, rather than counting as a wrong one."""
    typing = not echo and stdin is sys.stdin and stdout is sys.stdout
    while True:
        if typing:  # input(): readline's line editing, where the platform has it
            try:
                line = input("> ") + "\n"
            except EOFError:
                line = ""
            _remember(line)
        else:
            print("> ", end="", file=stdout, flush=True)
            line = stdin.readline()
        if not line or line.strip():
            return line
        if echo:
            print(file=stdout)


def _shown(line: str) -> str:
    """A piped line as echoed: control characters (an escape sequence that would recolour
    or clear the terminal) as "?"."""
    return "".join("?" if unicodedata.category(c) == "Cc" else c for c in line.strip())


def _command(line: str) -> str:
    """The command a line starts with, lower-cased ("" if none): as in Telegram, words
    after a command do not change it."""
    word = line.strip()
    return word.split(maxsplit=1)[0].lower() if word.startswith("/") else ""


def _wrap(text: str, indent: str = "") -> str:
    # each line on its own: a list in a message keeps one item per line, and an item
    # that wraps goes on under its text, not under its bullet
    return "\n".join(textwrap.fill(line, WIDTH, initial_indent=indent,
                                    subsequent_indent=indent + _hanging(line),
                                    break_long_words=False, break_on_hyphens=False)
                      for line in text.split("\n"))


def _hanging(line: str) -> str:
    return "  " if line.startswith(BULLET) else ""
