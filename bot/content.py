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
        cards[cid] = Card(
            id=cid,
            title=schema.text(item["title"], path, f"card {cid} title", line=item.line),
            body=schema.text(item["body"], path, f"card {cid} body", line=item.line),
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
        source = sources.get(cite["source"])
        if source is None:
            raise DataError(path, f"card {cid} cites unknown source {cite['source']!r}",
                            line=cite.line)
        if cite["section"] not in source.sections:
            raise DataError(path, f"card {cid} cites section {cite['section']!r} that source "
                            f"{source.id} does not list", line=cite.line)
        citations.append(Citation(source=source, section=cite["section"]))
    return tuple(citations)


def _load_messages(path: Path, params: dict[str, object]) -> dict[str, str]:
    data = schema.mapping(load_yaml(path), path, "the file", line=1)
    messages: dict[str, str] = {}
    _flatten(data, "", path, messages)
    for mid, template in messages.items():
        names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
        unknown = names - MESSAGE_PLACEHOLDERS
        if unknown:
            raise DataError(path, f"message {mid} uses unknown placeholder(s) "
                            f"{', '.join(sorted(unknown))}")
        if names & SETTING_PLACEHOLDERS:
            messages[mid] = template.format_map(
                {n: params.get(n, "?") if n in SETTING_PLACEHOLDERS else "{" + n + "}"
                 for n in names})
    return messages


def _flatten(node: Mapping, prefix: str, path: Path, out: dict[str, str]) -> None:
    for key, value in node.items():
        if not isinstance(key, str):
            raise DataError(path, f"message key {key!r} under {prefix or 'the top'} must be text "
                            "(quote yes/no/on/off in YAML)", line=node.line)
        mid = f"{prefix}{key}"
        schema.ident(mid, path, "message id", line=node.line)
        if isinstance(value, Mapping):
            _flatten(value, mid + ".", path, out)
        else:
            out[mid] = schema.text(value, path, f"message {mid}", line=node.line).strip()
