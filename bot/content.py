"""What the bot says: sources, cited advice cards and UI messages, loaded from YAML."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from bot import schema
from bot.errors import DataError
from bot.yamlio import Mapping, load_yaml

# Placeholders a message may use: settings are filled in at load, the rest when sent.
SETTING_PLACEHOLDERS = frozenset({"retention_days"})
RUNTIME_PLACEHOLDERS = frozenset({"time", "zone"})
MESSAGE_PLACEHOLDERS = SETTING_PLACEHOLDERS | RUNTIME_PLACEHOLDERS
# Longest card body or message: a phone screen's worth, and far below Telegram's 4096.
MAX_TEXT_CHARS = 1000
# Message ids the code itself uses (a test keeps this list complete): checked at load, so
# a missing one stops start-up with a clear error instead of failing mid-conversation.
CODE_MESSAGES = frozenset({
    "answered.label", "button.expired", "button.moved_on", "button.not_here",
    "card.sources_label", "chat.bye", "chat.forget", "chat.hint", "chat.use_numbers",
    "commands.back", "commands.forget", "commands.help", "commands.privacy",
    "commands.restart", "commands.sources", "commands.start", "commands.tip",
    "commands.check", "commands.dailytip",
    "dailytip.admin_unknown", "dailytip.bad_zone", "dailytip.not_admin", "dailytip.off",
    "dailytip.set", "dailytip.usage", "end.follows", "end.question", "end.restart",
    "end.sources",
    "error.nothing_to_go_back", "error.unknown_choice", "error.unknown_event",
    "error.use_buttons", "forget.confirm", "forget.done", "forget.kept", "forget.no",
    "forget.yes", "group.from_group", "group.intro", "group.start", "group.start_button",
    "help.text", "privacy.note", "session.finished", "session.outdated", "session.restarted",
    "session.resumed", "session.stale", "session.went_back", "sources.header",
    "tip.after_red_flag", "tip.doctor_first", "tip.none",
})


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    title: str
    publisher: str
    url: str
    sections: tuple[str, ...]
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


@dataclass(frozen=True, slots=True)
class Content:
    sources: dict[str, Source]
    cards: dict[str, Card]
    messages: dict[str, str]

    def message(self, message_id: str) -> str:
        return self.messages[message_id]

    def cards_tagged(self, tag: str) -> list[Card]:
        return [card for card in self.cards.values() if tag in card.tags]


def group_citations(citations: tuple[Citation, ...]) -> list[tuple[Source, list[str]]]:
    """Citations grouped by source, in first-cited order, for compact display."""
    groups: dict[str, tuple[Source, list[str]]] = {}
    for cite in citations:
        groups.setdefault(cite.source.id, (cite.source, []))[1].append(cite.section)
    return list(groups.values())


def load_content(directory: Path, params: dict[str, object] | None = None) -> Content:
    """Load and cross-check `sources.yaml`, `advice.yaml` and `messages.yaml`."""
    sources = _load_sources(directory / "sources.yaml")
    cards = _load_cards(directory / "advice.yaml", sources)
    messages = _load_messages(directory / "messages.yaml", params or {})
    missing = sorted(CODE_MESSAGES - messages.keys())
    if missing:
        raise DataError(directory / "messages.yaml", f"missing message(s) the code uses: "
                        f"{', '.join(missing)}")
    return Content(sources=sources, cards=cards, messages=messages)


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
        sections = schema.text_list(item["sections"], path, f"source {sid} sections",
                                    line=item.line)
        if len(set(sections)) != len(sections):
            raise DataError(path, f"source {sid} lists a section twice", line=item.line)
        note = item.get("note")
        sources[sid] = Source(
            id=sid,
            title=schema.text(item["title"], path, f"source {sid} title", line=item.line),
            publisher=schema.text(item["publisher"], path, f"source {sid} publisher",
                                  line=item.line),
            url=url,
            sections=tuple(sections),
            note=schema.text(note, path, f"source {sid} note", line=item.line) if note else None,
        )
    return sources


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
            title=schema.text(item["title"], path, f"card {cid} title", line=item.line),
            body=body,
            citations=_citations(item, path, cid, sources),
            tags=frozenset(schema.text_list(item["tags"], path, f"card {cid} tags",
                                            line=item.line)),
        )
    return cards


def _citations(item: Mapping, path: Path, cid: str, sources: dict[str, Source]) -> tuple[
        Citation, ...]:
    raw = item["citations"]
    if not isinstance(raw, list) or not raw:
        raise DataError(path, f"card {cid} cites no source", line=item.line)
    citations = []
    for entry in raw:
        cite = schema.mapping(entry, path, f"card {cid} citation", line=item.line)
        schema.keys(cite, path, f"card {cid} citation", {"source", "section"})
        sid = schema.text(cite["source"], path, f"card {cid} citation source", line=cite.line)
        section = schema.text(cite["section"], path, f"card {cid} citation section",
                              line=cite.line)
        source = sources.get(sid)
        if source is None:
            raise DataError(path, f"card {cid} cites unknown source {sid!r}", line=cite.line)
        if section not in source.sections:
            raise DataError(path, f"card {cid} cites section {section!r} that source "
                            f"{source.id} does not list", line=cite.line)
        citations.append(Citation(source=source, section=section))
    return tuple(citations)


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
