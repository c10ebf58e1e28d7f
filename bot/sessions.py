"""What is kept of a person's check-in, apart from any front end: a step is made durable
before anyone sees its reply, kept only with consent (erased once consent is gone), and
an update delivered again after a crash is told apart from a new one."""

from __future__ import annotations

from bot.engine import Engine, Snapshot
from bot.store import SessionStore, Stored


def delivered_before(stored: Stored, update_id: int | None) -> bool:
    """Whether this update was applied already (Telegram delivers it again when the bot
    stopped before confirming it): its replies may not have gone out."""
    return update_id is not None and update_id in stored.seen


def keep(engine: Engine, store: SessionStore, user_id: int, stored: Stored,
         new: Snapshot, update_id: int | None) -> bool:
    """Store the session `new`, stepped from `stored` by `update_id`, if it has consent,
    else erase what `stored` held; durable on return. Whether it has consent. (Use
    refreshes the row, so retention counts from the last use, to the hour.)"""
    if not engine.has_consent(new):
        if stored.snapshot is not None:
            store.delete(user_id)
        return False
    seen = stored.seen
    if update_id is not None and update_id not in seen:
        seen = [*seen, update_id]
    store.save(user_id, new, seen, stored)
    return True
