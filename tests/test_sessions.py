"""What is kept of a check-in: only with consent, erased once consent is gone, and each
update's id remembered so one delivered again is told apart."""

from __future__ import annotations

from pathlib import Path

from bot.engine import Engine, Event
from bot.sessions import delivered_before, keep
from bot.store import SessionStore, Stored, open_database

USER = 7


def test_a_session_is_kept_only_with_consent(engine: Engine, tmp_path: Path) -> None:
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    welcome, _ = engine.step(None, Event("start"))
    assert not keep(engine, store, USER, store.load(USER), welcome, 1)
    assert store.get(USER) is None  # the welcome alone: nothing stored

    agreed, _ = engine.step(welcome, Event.answer("agree", engine.ref(welcome)))
    assert keep(engine, store, USER, store.load(USER), agreed, 2)
    stored = store.load(USER)
    assert stored.snapshot == agreed and stored.seen == [2]
    assert delivered_before(stored, 2) and not delivered_before(stored, 3)
    assert not delivered_before(stored, None)

    at_saddle, _ = engine.step(agreed, Event.answer("no", engine.ref(agreed)))
    assert keep(engine, store, USER, stored, at_saddle, 2)  # the same update again
    assert store.load(USER).seen == [2] and store.get(USER) == at_saddle

    # a restart takes consent back: the row goes, on disk too
    restarted, _ = engine.step(at_saddle, Event("restart"))
    assert not keep(engine, store, USER, store.load(USER), restarted, 3)
    assert store.get(USER) is None
    assert SessionStore(open_database(tmp_path / "s.sqlite3")).load(USER) == Stored()


def test_declining_consent_at_the_welcome_keeps_nothing(engine: Engine, tmp_path: Path) -> None:
    """"No thanks" is an answer too, but not consent: it ends the check-in and nothing of
    it is stored (an answer on record must never count as agreeing)."""
    store = SessionStore(open_database(tmp_path / "s.sqlite3"))
    welcome, _ = engine.step(None, Event("start"))
    declined, _ = engine.step(welcome, Event.answer("stop", engine.ref(welcome)))
    assert declined["state"] == "stopped" and engine.is_finished(declined)
    assert declined["answers"] == [["welcome", "stop"]]  # answered, yet no consent
    assert not engine.has_consent(declined)
    assert not keep(engine, store, USER, store.load(USER), declined, 1)
    assert store.get(USER) is None
    assert store.load(USER) == Stored()
