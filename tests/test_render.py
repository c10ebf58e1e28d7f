"""Rendering for Telegram: long replies are cut into phone-sized, well-formed messages."""

from __future__ import annotations

import html

from telegram_harness import assert_telegram_html
from test_engine import all_snapshots

from bot.content import Card, Citation, Source
from bot.engine import Engine, Event
from bot.outputs import Answered, Output, Say, ShowCard, ShowTip, SourceList
from bot.telegram_render import (
    MAX_MESSAGE_CHARS,
    TELEGRAM_MAX_CHARS,
    TelegramRenderer,
    parse_callback,
    split_lines,
    visible_length,
)


def test_split_lines_cuts_only_between_lines() -> None:
    lines = [f"line {n} " + "x" * 90 for n in range(40)]
    parts = split_lines("\n".join(lines), limit=500)
    assert len(parts) > 1
    assert all(len(part) <= 500 for part in parts)
    assert "\n".join(parts).split("\n") == lines  # nothing lost, nothing reordered
    assert split_lines("short") == ["short"]
    # counted as read: a link's address and the tags take no room on the screen
    linked = [f'• <a href="https://example.org/{"p" * 150}">Title {n}</a> &amp; more'
              for n in range(15)]
    assert split_lines("\n".join(linked), limit=500) == ["\n".join(linked)]
    assert visible_length(linked[0]) == len("• Title 0 & more")
    # ... but Telegram's own cap holds for the HTML
    parts = split_lines("\n".join(linked * 3), limit=5000)
    assert len(parts) > 1 and all(len(part) <= TELEGRAM_MAX_CHARS for part in parts)


# About a phone screen of text: the most one message of ours may hold.
PHONE_CHARS = 1500


def test_every_message_of_the_dialog_fits_a_phone_screen(engine: Engine) -> None:
    render = TelegramRenderer(engine.content)
    assert MAX_MESSAGE_CHARS <= PHONE_CHARS
    seen = 0
    for snapshot in all_snapshots(engine):
        shown = [engine.render(snapshot)]
        shown += [engine.step(snapshot, Event("show", topic=topic))[1]
                  for topic in ("help", "sources", "privacy")]
        for outputs in shown:
            edited, replies = render.replies(outputs)
            for text in [*([edited] if edited else []), *(reply.text for reply in replies)]:
                assert visible_length(text) <= PHONE_CHARS, text[:80]
                assert len(text) <= TELEGRAM_MAX_CHARS
                assert_telegram_html(text)
                seen += 1
    assert seen > 1000


def test_a_long_source_list_becomes_several_valid_messages(engine: Engine) -> None:
    render = TelegramRenderer(engine.content)
    sources = tuple(Source(f"s{n}", f"Title <{n}> & more " + "t" * 80, "Publisher",
                           f"https://example.org/{n}?a=1&b=2", ("Intro",)) for n in range(40))
    _, replies = render.replies([Say("x", "Intro text"), SourceList("Sources:", sources)])
    assert len(replies) > 1
    for reply in replies:
        assert visible_length(reply.text) <= MAX_MESSAGE_CHARS
        assert_telegram_html(reply.text)  # no tag cut in half
    joined = "\n".join(r.text for r in replies)
    assert all(f"https://example.org/{n}?a=1&amp;b=2" in joined for n in range(40))


def test_link_previews_are_turned_off_only_where_there_are_links(engine: Engine) -> None:
    from bot.outputs import ShowCard
    from bot.telegram_render import NO_PREVIEW, link_preview

    render = TelegramRenderer(engine.content)
    card = render.block(ShowCard(engine.content.cards["why.inactivity"]))
    assert link_preview(card) is NO_PREVIEW  # a citation is a link
    assert link_preview(render.message("question.bladder")) is None


def test_a_card_says_source_or_sources_as_it_cites_one_or_more(engine: Engine) -> None:
    render = TelegramRenderer(engine.content)
    one = engine.content.message("card.sources_label")
    many = engine.content.message("card.sources_label_many")
    counted = {1: 0, 2: 0}
    for card in engine.content.cards.values():
        sources = len({cite.source.id for cite in card.citations})
        text = render.card(card)
        assert f"<i>{one if sources == 1 else many} " in text, card.id
        counted[min(sources, 2)] += 1
    assert counted[1] and counted[2]  # both kinds are shipped


def test_the_shipped_source_list_is_one_message(engine: Engine) -> None:
    """Its links' addresses are not read: the whole list fits one phone screen."""
    render = TelegramRenderer(engine.content)
    _, replies = render.replies(engine.show("sources"))
    [reply] = replies
    assert reply.text.count("<a href=") == len(engine.content.sources)


def test_callback_data_is_read_only_in_its_two_shapes_within_64_bytes() -> None:
    assert parse_callback("a|1.2|yes") == ("a", "1.2", "yes")
    assert parse_callback("f|no") == ("f", "no")
    ok = "a|1.2|" + "x" * 58  # 64 bytes
    assert parse_callback(ok) == ("a", "1.2", "x" * 58)
    for forged in (ok + "x", "a||yes", "a|1.2|", "a|1.2|yes|x", "f|maybe", "", None):
        assert parse_callback(forged) is None, forged


def test_dynamic_text_is_escaped(engine: Engine) -> None:
    render = TelegramRenderer(engine.content)
    assert render.block(Say("x", "<b>hi</b> & <a href=x>")) == (
        "&lt;b&gt;hi&lt;/b&gt; &amp; &lt;a href=x&gt;")


def test_the_answered_question_is_escaped(engine: Engine) -> None:
    """The "Your answer:" edit escapes the question as well as the chosen label, and stays
    valid Telegram HTML."""
    render = TelegramRenderer(engine.content)
    text = render.answered(Answered("a < b & c", "<x>"))
    label = engine.content.message("answered.label")
    assert text == f"a &lt; b &amp; c\n\n{label} <b>&lt;x&gt;</b>"
    assert_telegram_html(text)


def test_every_card_cites_each_of_its_sources_with_link_title_and_section(
        engine: Engine) -> None:
    """Under a card, every citation is shown: a link to its source's address with the
    source's title, then the section cited, all escaped (never only the first source)."""
    render = TelegramRenderer(engine.content)
    several = 0
    for card in engine.content.cards.values():
        cites = render.card(card).rsplit("\n", 1)[-1]
        assert cites.startswith("<i>") and cites.endswith("</i>"), card.id
        for cite in card.citations:
            link = (f'<a href="{html.escape(cite.source.url)}">'
                    f"{html.escape(cite.source.title, quote=False)}</a>, ")
            assert link in cites, (card.id, cite.source.id)
            # the section stands with its own source's link, before the next source's
            after = cites[cites.index(link) + len(link):].split("<a href=", 1)[0]
            assert html.escape(cite.section, quote=False) in after, (card.id, cite.section)
        several += len({cite.source.id for cite in card.citations}) > 1
    assert several  # cards citing more than one source are shipped


def test_no_card_is_split_across_messages(engine: Engine) -> None:
    """At every point of every path, with each topic shown there too: each card (its
    citation line included) arrives whole in one message, and no message is over the
    limit. Blocks are packed whole; only a block too long on its own may be cut."""
    render = TelegramRenderer(engine.content)
    shown: set[tuple[Output, ...]] = set()
    for snapshot in all_snapshots(engine):
        shown.add(tuple(engine.render(snapshot)))
        shown.update(tuple(engine.step(snapshot, Event("show", topic=topic))[1])
                     for topic in ("help", "sources", "privacy"))
    packed = 0
    for outputs in shown:
        _, replies = render.replies(list(outputs))
        for reply in replies:
            assert visible_length(reply.text) <= MAX_MESSAGE_CHARS, reply.text[:80]
            assert len(reply.text) <= TELEGRAM_MAX_CHARS
        for output in outputs:
            if isinstance(output, ShowCard | ShowTip):
                block = render.block(output)
                assert any(block in reply.text for reply in replies), output.card.id
        # several blocks shared a message: packing was put to the test here
        packed += any(reply.text.count("<i>") > 1 for reply in replies)
    assert packed


def test_a_source_with_markup_characters_renders_escaped(engine: Engine) -> None:
    """A source's title, publisher, section and address are data, not markup: each is
    escaped wherever it is shown (the source list, a card's citation), so the message
    stays valid Telegram HTML and reads as written."""
    render = TelegramRenderer(engine.content)
    source = Source("odd", 'Back <pain> & "rest"', 'Smith & <Sons> "Ltd"',
                    'https://example.org/a?x=1&y="2"<3>', ('Part <2> & "more"',))
    href = 'href="https://example.org/a?x=1&amp;y=&quot;2&quot;&lt;3&gt;"'
    title = 'Back &lt;pain&gt; &amp; "rest"'

    listed = render.block(SourceList("Sources & <notes>:", (source,)))
    assert_telegram_html(listed)
    assert listed == ("<b>Sources &amp; &lt;notes&gt;:</b>\n"
                      f'• <a {href}>{title}</a>, Smith &amp; &lt;Sons&gt; "Ltd"')

    card = Card("odd.card", "A <b> title", "Body & more", (Citation(source, source.sections[0]),),
                frozenset())
    cited = render.block(ShowCard(card))
    assert_telegram_html(cited)
    assert cited.endswith(f'<a {href}>{title}</a>, Part &lt;2&gt; &amp; "more"</i>')
    assert cited.startswith("<b>A &lt;b&gt; title</b>\nBody &amp; more\n")


def test_split_lines_keeps_two_lines_together_exactly_up_to_the_limit() -> None:
    """The newline between two lines counts as one character read: joined at exactly the
    limit they stay one message; one character more and they are two."""
    limit = 100
    first = "a" * 40
    fits = "b" * (limit - len(first) - 1)  # 40 + 1 + 59 = 100
    assert split_lines(f"{first}\n{fits}", limit=limit) == [f"{first}\n{fits}"]
    over = fits + "b"
    assert split_lines(f"{first}\n{over}", limit=limit) == [first, over]
    # tags and entities take no room: the same boundary, counted as read
    tagged = f"<b>{'&amp;' * 40}</b>"
    assert split_lines(f"{tagged}\n{fits}", limit=limit) == [f"{tagged}\n{fits}"]
    assert split_lines(f"{tagged}\n{over}", limit=limit) == [tagged, over]


def test_a_tip_naming_an_activity_comes_after_the_doctor_line(engine: Engine) -> None:
    """Every tip card tagged as naming an activity carries the "check with your doctor
    first" line, and Telegram shows it first, bold and escaped, above the card; any other
    tip is the card alone."""
    render = TelegramRenderer(engine.content)
    doctor = engine.content.message("tip.doctor_first")
    line = f"<b>{html.escape(doctor, quote=False)}</b>\n\n"
    tips = [card for card in engine.content.cards.values() if "tip" in card.tags]
    named = 0
    for card in tips:
        tip = ShowTip.of(card, engine.content)
        activity = "activity" in card.tags
        assert tip.doctor_first == (doctor if activity else None), card.id
        text = render.block(tip)
        assert_telegram_html(text)
        assert text == (line if activity else "") + render.card(card), card.id
        _, [first, *_] = render.replies([tip])
        assert first.text.startswith(line) == activity, card.id
        named += activity
    assert 0 < named < len(tips)  # both kinds of tip are shipped
    # the line is text, not markup, whatever it is reworded to
    odd = render.block(ShowTip(tips[0], 'Ask <your> doctor & "physio"'))
    assert odd.startswith('<b>Ask &lt;your&gt; doctor &amp; "physio"</b>\n\n<b>')
    assert_telegram_html(odd)
