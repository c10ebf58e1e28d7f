"""Engine outputs as Telegram messages: escaped HTML, inline keyboards, phone-sized parts."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode

from bot.content import Card, Content, group_citations
from bot.outputs import Answered, Ask, Output, Say, ShowCard, ShowTip, SourceList

# Telegram allows 4096 characters; shorter parts read better on a phone. Counted as the
# reader sees them (a link's address and the tags are not), and the HTML is kept within
# Telegram's cap too.
MAX_MESSAGE_CHARS = 1500
TELEGRAM_MAX_CHARS = 4096
TAG = re.compile(r"<[^>]*>")
MAX_CALLBACK_BYTES = 64
# Text needs only <, > and & escaped; attributes (href) also need quotes.
escape = partial(html.escape, quote=False)
# Rendered keyboards and texts kept for reuse. The dialog's outputs are a finite set, so
# these fill up once and stop growing; the bound only guards a dialog built otherwise.
RENDER_CACHE_SIZE = 4096
# Citations are links; their previews would bury the text. Sent only with messages that
# hold a link (a default would add it to every call).
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# Every text here is escaped HTML. Passed with each call rather than as PTB Defaults,
# which would scan every call's arguments for defaults to fill in; as the plain string,
# which PTB sends as it is.
HTML: str = ParseMode.HTML.value
ANSWER = "a"
FORGET = "f"
# A bot command as Telegram marks it: "/", up to 32 letters, digits or "_", "@botname".
COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?")


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    keyboard: InlineKeyboardMarkup | None = None


def link_preview(text: str) -> LinkPreviewOptions | None:
    return NO_PREVIEW if "<a " in text else None


def answer_data(ref: str, choice: str) -> str:
    data = f"{ANSWER}|{ref}|{choice}"
    assert len(data.encode()) <= MAX_CALLBACK_BYTES, data
    return data


def parse_command(text: str) -> tuple[str, str, list[str]] | None:
    """(name in lower case, the bot it is addressed to or "", the words after it) for a
    text that starts with a command, as Telegram marks one: "/help," is the command
    "help" followed by a comma."""
    match = COMMAND.match(text)
    if match is None:
        return None
    return match[1].lower(), match[2] or "", text[match.end():].split()


def parse_callback(data: str | None) -> tuple[str, ...] | None:
    """('a', ref, choice) or ('f', 'yes'|'no'); None for anything forged or unknown."""
    if not data or len(data.encode()) > MAX_CALLBACK_BYTES:
        return None
    parts = tuple(data.split("|"))
    if parts[0] == ANSWER and len(parts) == 3 and all(parts[1:]):
        return parts
    if parts[0] == FORGET and len(parts) == 2 and parts[1] in {"yes", "no"}:
        return parts
    return None


class TelegramRenderer:
    def __init__(self, content: Content) -> None:
        self.content = content
        self._cards: dict[str, str] = {}
        self._keyboards: dict[tuple[str, str], InlineKeyboardMarkup] = {}
        self._answered: dict[tuple[str, str], str] = {}
        self._parts: dict[tuple[str, ...], list[str]] = {}

    def replies(self, outputs: list[Output]) -> tuple[str | None, list[Reply]]:
        """The text to put on the answered question (if any) and the messages to send."""
        edited: str | None = None
        replies: list[Reply] = []
        pending: list[str] = []
        shown = 0  # what the reader sees of the pending blocks joined
        for output in outputs:
            if isinstance(output, Answered):
                edited = self.answered(output)
            elif isinstance(output, Ask):
                self._flush(pending, replies)
                replies.append(Reply(escape(output.text), self.keyboard(output)))
            else:
                block = self.block(output)
                seen = visible_length(block)
                if pending and shown + 2 + seen > MAX_MESSAGE_CHARS:  # 2: the blank line
                    self._flush(pending, replies)
                shown = shown + 2 + seen if pending else seen
                pending.append(block)
        self._flush(pending, replies)
        return edited, replies

    def message(self, message_id: str) -> str:
        return escape(self.content.message(message_id))

    def answered(self, output: Answered) -> str:
        key = (output.question, output.label)
        text = self._answered.get(key)
        if text is None:
            text = (f"{escape(output.question)}\n\n"
                    f"{escape(self.content.message('answered.label'))} "
                    f"<b>{escape(output.label)}</b>")
            _cache_put(self._answered, key, text)
        return text

    def block(self, output: Output) -> str:
        if isinstance(output, Say):
            return escape(output.text)
        if isinstance(output, ShowCard):
            return self.card(output.card)
        if isinstance(output, ShowTip):
            return self.tip(output)
        if isinstance(output, SourceList):
            lines = [f"<b>{escape(output.header)}</b>"]
            lines += [f'• <a href="{html.escape(s.url)}">{escape(s.title)}</a>, '
                      f"{escape(s.publisher)}" for s in output.sources]
            return "\n".join(lines)
        raise TypeError(f"cannot render {output!r}")

    def card(self, card: Card) -> str:
        cached = self._cards.get(card.id)
        if cached is None:
            grouped = group_citations(card.citations)
            cites = "; ".join(
                f'<a href="{html.escape(source.url)}">{escape(source.title)}</a>, '
                + escape(", ".join(sections))
                for source, sections in grouped)
            label = escape(self.content.sources_label(len(grouped)))
            cached = (f"<b>{escape(card.title)}</b>\n{escape(card.body)}\n"
                      f"<i>{label} {cites}</i>")
            self._cards[card.id] = cached
        return cached

    def tip(self, tip: ShowTip) -> str:
        text = self.card(tip.card)
        if tip.doctor_first is not None:
            text = f"<b>{escape(tip.doctor_first)}</b>\n\n{text}"
        return text

    def keyboard(self, ask: Ask) -> InlineKeyboardMarkup:
        # Most people are at one of a few hundred (question, ref) points: build each once.
        # A ref names the state, so with the question it fixes the choices.
        key = (ask.ref, ask.key)
        markup = self._keyboards.get(key)
        if markup is None:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(c.label, callback_data=answer_data(ask.ref, c.id))]
                 for c in ask.choices])
            _cache_put(self._keyboards, key, markup)
        return markup

    def forget_keyboard(self) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([
            [InlineKeyboardButton(self.content.message("forget.yes"),
                                  callback_data=f"{FORGET}|yes")],
            [InlineKeyboardButton(self.content.message("forget.no"),
                                  callback_data=f"{FORGET}|no")],
        ])

    def _flush(self, pending: list[str], replies: list[Reply]) -> None:
        if pending:
            key = tuple(pending)
            parts = self._parts.get(key)
            if parts is None:
                parts = split_lines("\n\n".join(pending))
                _cache_put(self._parts, key, parts)
            replies.extend(Reply(part) for part in parts)
            pending.clear()


def _cache_put(cache: dict[Any, Any], key: object, value: object) -> None:
    """A render cache of a finite set (the dialog's texts): emptied if something unforeseen
    ever fills it, rather than kept in order."""
    if len(cache) >= RENDER_CACHE_SIZE:
        cache.clear()
    cache[key] = value


@lru_cache(maxsize=RENDER_CACHE_SIZE)  # the dialog's blocks are a finite set
def visible_length(text: str) -> int:
    """The characters a reader sees of our HTML: no tags, an entity as one."""
    return len(html.unescape(TAG.sub("", text)))


def split_lines(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Parts a reader sees at most `limit` characters of (and within Telegram's cap), cut
    only between lines (tags never span lines here). The loader caps each text, so a
    single line always fits Telegram."""
    parts: list[str] = []
    current, shown = "", 0
    for line in text.split("\n"):
        seen = visible_length(line)
        if current and (shown + 1 + seen > limit
                        or len(current) + 1 + len(line) > TELEGRAM_MAX_CHARS):
            parts.append(current.strip("\n"))
            current, shown = line, seen
        else:
            current, shown = (f"{current}\n{line}", shown + 1 + seen) if current else (line, seen)
    if current.strip():
        parts.append(current.strip("\n"))
    return parts
