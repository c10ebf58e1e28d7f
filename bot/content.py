"""What the bot says: sources, cited advice cards and UI messages, loaded from YAML."""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from bot import schema
from bot.errors import DataError
from bot.yamlio import Mapping, load_yaml

# Placeholders a message may use: settings are filled in at load, the rest when sent.
SETTING_PLACEHOLDERS = frozenset({"retention_days"})
RUNTIME_PLACEHOLDERS = frozenset({"time", "zone", "offset", "answer"})
MESSAGE_PLACEHOLDERS = SETTING_PLACEHOLDERS | RUNTIME_PLACEHOLDERS
# Longest card body or message: a phone screen's worth, and far below Telegram's 4096.
MAX_TEXT_CHARS = 1000
# Titles, publishers and sections each show on one line (a card's title, its citations),
# which the renderer splits long messages between.
MAX_LINE_CHARS = 200
# Shown as a tapped button's notice, which Telegram cuts at 200 characters.
TOAST_MESSAGES = ("button.busy", "button.expired", "button.moved_on", "button.not_here",
                  "error.try_again", "forget.done", "forget.kept", "forget.expired")
MAX_TOAST_CHARS = 200
# Card tags the code acts on: a card that names an activity (never shown before the
# doctor prompt is acknowledged), and one that may be offered as a tip (used outside the
# dialog, so it counts as used without a state showing it).
ACTIVITY_TAG = "activity"
TIP_TAG = "tip"
# How serious a red flag is, in rising order: an answer must end at least this seriously.
RED_FLAG_LEVELS = ("urgent", "emergency")
# Message ids the code itself uses (a test keeps this list complete): checked at load, so
# a missing one stops start-up with a clear error instead of failing mid-conversation.
CODE_MESSAGES = frozenset({
    "answered.label", "button.busy", "button.expired", "button.moved_on",
    "button.not_here",
    "card.sources_label", "card.sources_label_many",
    "chat.bye", "chat.consent", "chat.forget", "chat.help", "chat.hint",
    "chat.privacy", "chat.resumed", "chat.unknown_command", "chat.use_numbers",
    "commands.back", "commands.forget", "commands.help", "commands.privacy",
    "commands.restart", "commands.sources", "commands.start", "commands.tip",
    "commands.check", "commands.dailytip",
    "dailytip.admin_unknown", "dailytip.bad_zone", "dailytip.current", "dailytip.none",
    "dailytip.not_admin", "dailytip.off", "dailytip.private", "dailytip.reversed_sign",
    "dailytip.set", "dailytip.superseded", "dailytip.usage", "dailytip.zone_gone",
    "end.follows", "end.question", "end.restart", "end.sources",
    "error.busy", "error.nothing_to_go_back", "error.try_again", "error.unknown_choice",
    "error.unknown_command", "error.unknown_event", "error.use_buttons", "forget.confirm",
    "forget.done", "forget.expired",
    "forget.kept", "forget.no", "forget.nothing", "forget.yes", "group.from_group",
    "group.intro", "group.start",
    "group.start_button",
    "help.text", "privacy.note", "session.finished",
    "session.answered_as", "session.answered_as_final", "session.late_follow_up",
    "session.late_follow_up_at_end",
    "session.late_red_flag",
    "session.finished_may_go_back", "session.finished_with_plan", "session.outdated",
    "session.restarted",
    "session.red_flag_recalled",
    "session.resumed", "session.stale", "session.went_back", "sources.header",
    "tip.after_red_flag", "tip.doctor_first", "tip.none", "welcome.question",
})


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    title: str
    publisher: str
    url: str
    sections: tuple[str, ...]
    # for editors: how it is cited ("as reported in ..."); never shown, as /sources is
    # shown at any point and a note may name what the source studied
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Citation:
    source: Source
    section: str


@dataclass(frozen=True, slots=True)
class Card:
    id: str
    title: str
    body: str
    citations: tuple[Citation, ...]
    tags: frozenset[str]

    def texts(self) -> list[str]:
        """Everything the card shows: its citations too (a source's title, a section)."""
        cited = [text for cite in self.citations for text in (cite.source.title, cite.section)]
        return [self.title, self.body, *cited]


@dataclass(frozen=True, slots=True)
class RequiredFlag:
    """A red flag every path to an activity must screen for (after `after`, if given)."""

    question: str  # message id of the question that asks about it
    answers: dict[str, str]  # choice id -> the least serious level it may be treated as
    clear: tuple[str, ...]  # the other answers a question asking it may offer
    citations: tuple[Citation, ...]
    after: tuple[str, str] | None = None  # (question id, choice id)
    # the other answers the `after` question may offer (none past these and `after`'s)
    others: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SafetyRules:
    """What the safety proof holds the dialog to (content/safety.yaml)."""

    activity_words: tuple[str, ...]
    activity_whole_words: tuple[str, ...]  # matched only as whole words ("ran", not "range")
    red_flags: tuple[RequiredFlag, ...]
    doctor_prompt: str  # message id the doctor_prompt state must always show
    doctor_question: str  # message id of what it asks
    doctor_ack: str  # message id of its acknowledging answer's label (and no other's)
    doctor_reminder: str  # message id every end state must always show
    end_messages: dict[str, tuple[str, ...]]  # disposition -> messages, one always shown
    answer_labels: dict[str, str]  # red-flag answer id -> the label its button must show
    _words: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts = "|".join(map(re.escape, self.activity_words))
        wholes = "|".join(map(re.escape, self.activity_whole_words)) or "(?!)"
        object.__setattr__(self, "_words", re.compile(rf"\b({starts}|(?:{wholes})\b)",
                                                      re.IGNORECASE))

    def activity_word(self, text: str) -> str | None:
        """The first word in `text` that names an activity, if any, accents aside ("wálk"
        is "walk"; texts hold no other letters that could disguise one: see _plain)."""
        found = self._words.search(_spaced(unaccented(text)))
        return found.group(1) if found else None


def _spaced(text: str) -> str:
    """Any run of spaces (a no-break one, a line break) as one space, and Unicode's hyphens
    as "-": "tai\u00a0chi" and "cross\u2010training" read as the words they show."""
    return re.sub(r"\s+", " ", text).replace("\u2010", "-").replace("\u2011", "-")


def unaccented(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if unicodedata.category(c) != "Mn")


@dataclass(frozen=True, slots=True)
class Content:
    sources: dict[str, Source]
    cards: dict[str, Card]
    messages: dict[str, str]
    safety: SafetyRules
    directory: Path  # where these were loaded from, for naming a file in a finding

    def message(self, message_id: str) -> str:
        return self.messages[message_id]

    def sources_label(self, sources: int) -> str:
        """"Source:" under a card, or "Sources:" when it cites more than one."""
        return self.messages["card.sources_label" if sources == 1 else "card.sources_label_many"]

    def cards_tagged(self, tag: str) -> list[Card]:
        return [card for card in self.cards.values() if tag in card.tags]


def group_citations(citations: tuple[Citation, ...]) -> list[tuple[Source, list[str]]]:
    """Citations grouped by source, in first-cited order, for compact display."""
    groups: dict[str, tuple[Source, list[str]]] = {}
    for cite in citations:
        groups.setdefault(cite.source.id, (cite.source, []))[1].append(cite.section)
    return list(groups.values())


def load_content(directory: Path, params: dict[str, object] | None = None) -> Content:
    """Load and cross-check `sources.yaml`, `advice.yaml`, `messages.yaml` and
    `safety.yaml`."""
    sources = _load_sources(directory / "sources.yaml")
    cards = _load_cards(directory / "advice.yaml", sources)
    messages = _load_messages(directory / "messages.yaml", params or {})
    missing = sorted(CODE_MESSAGES - messages.keys())
    if missing:
        raise DataError(directory / "messages.yaml", f"missing message(s) the code uses: "
                        f"{', '.join(missing)}")
    for mid in TOAST_MESSAGES:
        if len(messages[mid]) > MAX_TOAST_CHARS:
            raise DataError(directory / "messages.yaml", f"message {mid} is over "
                            f"{MAX_TOAST_CHARS} characters, Telegram's limit for a button's "
                            "notice")
    _check_characters(directory, sources, cards, messages)
    safety = _load_safety(directory / "safety.yaml", sources, messages)
    for card in cards.values():  # /tip and the proof tell activity cards by this tag
        word = safety.activity_word("\n".join(card.texts()))
        if word is not None and ACTIVITY_TAG not in card.tags:
            raise DataError(directory / "advice.yaml", f"card {card.id} names an activity "
                            f"({word!r}) but is not tagged activity")
    return Content(sources=sources, cards=cards, messages=messages, safety=safety,
                   directory=directory)


def _check_characters(directory: Path, sources: dict[str, Source], cards: dict[str, Card],
                      messages: dict[str, str]) -> None:
    """No text may hide its words from the activity check (or from a reader): texts are
    written in the letters a-z, accented or not, digits and common punctuation, so no
    invisible joiner, no look-alike letter ("w\u0430lk" with a Cyrillic a, "jo\u0261ging",
    "b\u0131ke"), no picture of an activity and no blank-looking letter gets past it."""
    texts = [("messages.yaml", f"message {mid}", text) for mid, text in messages.items()]
    texts += [("advice.yaml", f"card {card.id}", text)
              for card in cards.values() for text in (card.title, card.body)]
    texts += [("sources.yaml", f"source {source.id}", text) for source in sources.values()
              for text in (source.title, source.publisher, source.url, *source.sections)]
    for file, what, text in texts:
        if problem := _hidden_word_problem(text):
            raise DataError(directory / file, f"{what} {problem}")


def _hidden_word_problem(text: str) -> str | None:
    for char in text:
        if not _plain(char):
            return (f"holds U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')}): texts "
                    "use the letters a-z (accented or not), digits and common punctuation "
                    "only")
    return None


def _plain(char: str) -> bool:
    """A letter a-z, or one with accents on it ("\u00e9"; not a dotless i, an l with a
    stroke or a long s, which no activity word would match); or a digit, common
    punctuation, a symbol."""
    if char.isalpha():
        base = unicodedata.normalize("NFD", char)
        return base[0].isascii() and all(unicodedata.category(c) == "Mn" for c in base[1:])
    code = ord(char)
    return (char == "\n" or 0x20 <= code <= 0x7E  # ASCII
            or (0xA0 <= code <= 0xFF and code != 0xAD)  # Latin-1 symbols; no soft hyphen
            or 0x2010 <= code <= 0x2027 or 0x2030 <= code <= 0x205E  # dashes, quotes, bullets
            or 0x20A0 <= code <= 0x20BF)  # currency signs


def _top(path: Path, key: str) -> list[object]:
    data = schema.mapping(load_yaml(path), path, "the file", line=1)
    schema.keys(data, path, "the file", {key})
    items = data[key]
    if not isinstance(items, list) or not items:
        raise DataError(path, f"{key} must be a non-empty list", line=data.line)
    return items


def _load_sources(path: Path) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for raw in _top(path, "sources"):
        item = schema.mapping(raw, path, "a source")
        schema.keys(item, path, "a source", {"id", "title", "publisher", "url", "sections"},
                    {"note"})
        sid = schema.ident(item["id"], path, "source id", line=item.line)
        if sid in sources:
            raise DataError(path, f"duplicate source id {sid!r}", line=item.line)
        url = schema.text(item["url"], path, f"source {sid} url", line=item.line)
        if not url.startswith("https://"):
            raise DataError(path, f"source {sid} url must start with https://", line=item.line)
        sections = [_one_line(section, path, f"source {sid} section", item.line)
                    for section in schema.text_list(item["sections"], path,
                                                    f"source {sid} sections", line=item.line)]
        if len(set(sections)) != len(sections):
            raise DataError(path, f"source {sid} lists a section twice", line=item.line)
        note = item.get("note")
        sources[sid] = Source(
            id=sid,
            title=_one_line(item["title"], path, f"source {sid} title", item.line),
            publisher=_one_line(item["publisher"], path, f"source {sid} publisher", item.line),
            url=url,
            sections=tuple(sections),
            note=schema.text(note, path, f"source {sid} note", line=item.line) if note else None,
        )
    return sources


def _one_line(value: object, path: Path, what: str, line: int | None) -> str:
    text = schema.text(value, path, what, line=line).strip()
    if "\n" in text or len(text) > MAX_LINE_CHARS:
        raise DataError(path, f"{what} must be one line of at most {MAX_LINE_CHARS} "
                        "characters", line=line)
    return text


def _load_cards(path: Path, sources: dict[str, Source]) -> dict[str, Card]:
    cards: dict[str, Card] = {}
    for raw in _top(path, "cards"):
        item = schema.mapping(raw, path, "a card")
        schema.keys(item, path, "a card", {"id", "title", "body", "citations", "tags"})
        cid = schema.ident(item["id"], path, "card id", line=item.line)
        if cid in cards:
            raise DataError(path, f"duplicate card id {cid!r}", line=item.line)
        body = schema.text(item["body"], path, f"card {cid} body", line=item.line)
        if len(body) > MAX_TEXT_CHARS:
            raise DataError(path, f"card {cid} body is over {MAX_TEXT_CHARS} characters",
                            line=item.line)
        cards[cid] = Card(
            id=cid,
            title=_one_line(item["title"], path, f"card {cid} title", item.line),
            body=body,
            citations=_citations(item, path, f"card {cid}", sources),
            tags=frozenset(schema.text_list(item["tags"], path, f"card {cid} tags",
                                            line=item.line)),
        )
    return cards


def _citations(item: Mapping, path: Path, what: str, sources: dict[str, Source]) -> tuple[
        Citation, ...]:
    raw = item["citations"]
    if not isinstance(raw, list) or not raw:
        raise DataError(path, f"{what} cites no source", line=item.line)
    citations = []
    for entry in raw:
        cite = schema.mapping(entry, path, f"{what} citation", line=item.line)
        schema.keys(cite, path, f"{what} citation", {"source", "section"})
        sid = schema.text(cite["source"], path, f"{what} citation source", line=cite.line)
        section = schema.text(cite["section"], path, f"{what} citation section",
                              line=cite.line)
        source = sources.get(sid)
        if source is None:
            raise DataError(path, f"{what} cites unknown source {sid!r}", line=cite.line)
        if section not in source.sections:
            raise DataError(path, f"{what} cites section {section!r} that source "
                            f"{source.id} does not list", line=cite.line)
        citations.append(Citation(source=source, section=section))
    return tuple(citations)


def _load_safety(path: Path, sources: dict[str, Source],
                 messages: dict[str, str]) -> SafetyRules:
    data = schema.mapping(load_yaml(path), path, "the file", line=1)
    schema.keys(data, path, "the file", {"activity_words", "red_flags", "doctor_prompt",
                                         "doctor_reminder", "end_messages", "answer_labels",
                                         "label_texts"}, {"activity_whole_words"})
    prompt = schema.mapping(data["doctor_prompt"], path, "doctor_prompt", line=data.line)
    schema.keys(prompt, path, "doctor_prompt", {"message", "question", "acknowledge"})
    prompt_ids = {key: _message_ref(prompt[key], path, f"doctor_prompt {key}", messages,
                                    prompt.line) for key in ("message", "question", "acknowledge")}
    words = schema.text_list(data["activity_words"], path, "activity_words", line=data.line)
    if not words or any(not word.strip() for word in words):
        raise DataError(path, "activity_words must list words", line=data.line)
    wholes = (schema.text_list(data["activity_whole_words"], path, "activity_whole_words",
                               line=data.line) if "activity_whole_words" in data else [])
    if any(not word.strip() for word in wholes):
        raise DataError(path, "activity_whole_words must list words", line=data.line)
    raw_flags = data["red_flags"]
    if not isinstance(raw_flags, list) or not raw_flags:
        raise DataError(path, "red_flags must be a non-empty list", line=data.line)
    flags = []
    for raw in raw_flags:
        item = schema.mapping(raw, path, "a red flag")
        schema.keys(item, path, "a red flag", {"question", "answers", "clear", "citations"},
                    {"after"})
        question = _message_ref(item["question"], path, "red flag question", messages,
                                item.line)
        what = f"red flag {question}"
        answers = schema.mapping(item["answers"], path, f"{what} answers", line=item.line)
        if not answers:
            raise DataError(path, f"{what} lists no answers", line=item.line)
        for choice, level in answers.items():
            if not isinstance(choice, str):
                raise DataError(path, f"{what} answers are choice ids (quote yes/no/on/off "
                                "in YAML)", line=answers.line)
            if level not in RED_FLAG_LEVELS:
                raise DataError(path, f"{what}: level {level!r} is not one of "
                                f"{', '.join(RED_FLAG_LEVELS)}", line=answers.line)
        clear = tuple(schema.text_list(item["clear"], path, f"{what} clear", line=item.line))
        if set(clear) & answers.keys():
            raise DataError(path, f"{what}: an answer is both a red flag and clear",
                            line=item.line)
        after = None
        others: tuple[str, ...] = ()
        if "after" in item:
            raw_after = schema.mapping(item["after"], path, f"{what} after", line=item.line)
            schema.keys(raw_after, path, f"{what} after", {"question", "answer"}, {"others"})
            after = (_message_ref(raw_after["question"], path, f"{what} after question",
                                  messages, raw_after.line),
                     schema.text(raw_after["answer"], path, f"{what} after answer",
                                 line=raw_after.line))
            if "others" in raw_after:
                others = tuple(schema.text_list(raw_after["others"], path,
                                                f"{what} after others", line=raw_after.line))
        flags.append(RequiredFlag(question=question, answers=dict(answers), clear=clear,
                                  citations=_citations(item, path, what, sources), after=after,
                                  others=others))
    labels = schema.mapping(data["answer_labels"], path, "answer_labels", line=data.line)
    for choice, label in labels.items():
        if not isinstance(choice, str):
            raise DataError(path, "answer_labels are keyed by choice id (quote yes/no/on/off "
                            "in YAML)", line=labels.line)
        _message_ref(label, path, f"answer_labels {choice!r}", messages, labels.line)
    # every answer a red-flag question may offer: its flags, its clear ones, a followed-up one
    named = {(flag.question, choice) for flag in flags for choice in (*flag.answers, *flag.clear)}
    named |= {flag.after for flag in flags if flag.after is not None}
    named |= {(flag.after[0], other) for flag in flags if flag.after is not None
              for other in flag.others}
    if missing := sorted(f"{answer!r} (to {question})" for question, answer in named
                         if answer not in labels):
        raise DataError(path, f"answer_labels names no label for {', '.join(missing)}",
                        line=labels.line)
    # and their words, and the doctor prompt's acknowledgement's: a label reworded ("No /
    # not sure", "Yes, later") would change what is answered
    texts = schema.mapping(data["label_texts"], path, "label_texts", line=data.line)
    for label in sorted({*map(str, labels.values()), prompt_ids["acknowledge"]}):
        if label not in texts:
            raise DataError(path, f"label_texts pins no words for {label}", line=texts.line)
        if messages[label] != texts[label]:
            raise DataError(path, f"label_texts pins {label} as {texts[label]!r}, but "
                            f"messages.yaml has {messages[label]!r}", line=texts.line)
    ends = schema.mapping(data["end_messages"], path, "end_messages", line=data.line)
    end_messages = {}
    for disposition, raw_ids in ends.items():
        if disposition not in RED_FLAG_LEVELS:
            raise DataError(path, f"end_messages: {disposition!r} is not one of "
                            f"{', '.join(RED_FLAG_LEVELS)}", line=ends.line)
        ids = schema.text_list(raw_ids, path, f"end_messages {disposition}", line=ends.line)
        end_messages[disposition] = tuple(
            _message_ref(mid, path, f"end_messages {disposition}", messages, ends.line)
            for mid in ids)
    if missing_levels := sorted(set(RED_FLAG_LEVELS) - end_messages.keys()):
        raise DataError(path, f"end_messages names no message for {', '.join(missing_levels)}",
                        line=ends.line)
    return SafetyRules(
        activity_words=tuple(words), activity_whole_words=tuple(wholes),
        red_flags=tuple(flags),
        doctor_prompt=prompt_ids["message"], doctor_question=prompt_ids["question"],
        doctor_ack=prompt_ids["acknowledge"],
        doctor_reminder=_message_ref(data["doctor_reminder"], path, "doctor_reminder",
                                     messages, data.line),
        end_messages=end_messages,
        answer_labels={str(choice): str(label) for choice, label in labels.items()})


def _message_ref(value: object, path: Path, what: str, messages: dict[str, str],
                 line: int) -> str:
    ref = schema.text(value, path, what, line=line)
    if ref not in messages:
        raise DataError(path, f"{what} {ref!r} is not a message", line=line)
    return ref


def _load_messages(path: Path, params: dict[str, object]) -> dict[str, str]:
    data = schema.mapping(load_yaml(path), path, "the file", line=1)
    messages: dict[str, str] = {}
    lines: dict[str, int] = {}
    _flatten(data, "", path, messages, lines)
    for mid, template in messages.items():
        try:
            names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
        except ValueError as exc:  # a lone { or }: write {{ or }} for a literal brace
            raise DataError(path, f"message {mid}: {exc} (write {{{{ or }}}} for a brace)",
                            line=lines[mid]) from None
        unknown = names - MESSAGE_PLACEHOLDERS
        if unknown:
            raise DataError(path, f"message {mid} uses unknown placeholder(s) "
                            f"{', '.join(sorted(unknown))}", line=lines[mid])
        if names & SETTING_PLACEHOLDERS:
            messages[mid] = template.format_map(
                {n: params.get(n, "?") if n in SETTING_PLACEHOLDERS else "{" + n + "}"
                 for n in names})
        elif not names:
            messages[mid] = template.format()  # {{ and }} become literal braces
    return messages


def _flatten(node: Mapping, prefix: str, path: Path, out: dict[str, str],
             lines: dict[str, int]) -> None:
    for key, value in node.items():
        if not isinstance(key, str):
            raise DataError(path, f"message key {key!r} under {prefix or 'the top'} must be text "
                            "(quote yes/no/on/off in YAML)", line=node.line)
        mid = f"{prefix}{key}"
        schema.ident(mid, path, "message id", line=node.line)
        if isinstance(value, Mapping):
            _flatten(value, mid + ".", path, out, lines)
        else:
            out[mid] = schema.text(value, path, f"message {mid}", line=node.line).strip()
            if len(out[mid]) > MAX_TEXT_CHARS:
                raise DataError(path, f"message {mid} is over {MAX_TEXT_CHARS} characters",
                                line=node.line)
            lines[mid] = node.line
