"""What the engine asks a front end to show: plain data, no Telegram or terminal types."""

from __future__ import annotations

from dataclasses import dataclass

from bot.content import ACTIVITY_TAG, Card, Content, Source


@dataclass(frozen=True, slots=True)
class Say:
    """A message from content/messages.yaml."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class ShowCard:
    """An advice card with its citations."""

    card: Card


@dataclass(frozen=True, slots=True)
class ShowTip:
    """A card offered as a tip: one that names an activity comes after the line that says
    to check with a doctor first (`doctor_first`, which every front end shows first)."""

    card: Card
    doctor_first: str | None

    @classmethod
    def of(cls, card: Card, content: Content) -> ShowTip:
        names_activity = ACTIVITY_TAG in card.tags
        return cls(card, content.message("tip.doctor_first") if names_activity else None)


@dataclass(frozen=True, slots=True)
class Choice:
    id: str
    label: str


@dataclass(frozen=True, slots=True)
class Ask:
    """A question with its buttons. `ref` marks which question at which point of a
    check-in it is, so a front end can tell an old button from a current one (an earlier
    check-in's, by when it was sent)."""

    key: str
    text: str
    choices: tuple[Choice, ...]
    ref: str
    final: bool = False


@dataclass(frozen=True, slots=True)
class Answered:
    """The question just answered and the label chosen (to update the old question)."""

    question: str
    label: str


@dataclass(frozen=True, slots=True)
class SourceList:
    header: str
    sources: tuple[Source, ...]

    @classmethod
    def of(cls, content: Content) -> SourceList:
        """Every source the content cites."""
        return cls(content.message("sources.header"), tuple(content.sources.values()))


Output = Say | ShowCard | ShowTip | Ask | Answered | SourceList
