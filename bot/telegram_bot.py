"""Telegram handlers: turn updates into engine events and outputs into Bot API calls.

Handlers translate and nothing else: the dialog lives in the engine, the words in
content/, the sessions in the store.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    CallbackQuery,
    Update,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Forbidden, NetworkError, TelegramError
from telegram.ext import (
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    Job,
    JobQueue,
    MessageHandler,
    filters,
)

from bot.deeplinks import is_group_payload
from bot.engine import COMMANDS, NOTE_PREFIXES, RESTARTED, STALE, Engine, Event, Snapshot
from bot.keyed_locks import KeyedLocks
from bot.outputs import Answered, Output, Say
from bot.sessions import delivered_before, keep
from bot.store import SessionStore
from bot.telegram_errors import flood_wait
from bot.telegram_limits import NO_RETRIES
from bot.telegram_render import (
    FORGET,
    HTML,
    Reply,
    TelegramRenderer,
    link_preview,
    parse_callback,
    parse_command,
)
from bot.telegram_types import GONE_STATUSES, PASSED_ON, App, Handler

log = logging.getLogger(__name__)

try:  # a clock no setting of the time moves, that counts a suspended machine's sleep too
    from time import CLOCK_BOOTTIME, clock_gettime

    def _steady() -> float:
        return clock_gettime(CLOCK_BOOTTIME)
except ImportError:  # (not Linux: the monotonic clock)
    from time import monotonic as _steady

# Commands and the engine event each becomes; /forget (it erases data) and /tip (it
# changes nothing stored) have handlers of their own.
COMMAND_EVENTS = {
    **COMMANDS,
    "check": Event("start"),  # the group menu's way in: here, the same as /start
    "dailytip": Event("ask"),  # a group admin's command: where it works, then carry on
}
MENU = ("start", "help", "back", "restart", "tip", "sources", "privacy", "forget")
# What works in groups (and what group members see in their menu there).
GROUP_MENU = ("start", "check", "tip", "sources", "help", "dailytip")
PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE  # edits are ignored
PRIVATE_COMMAND = PRIVATE & ~PASSED_ON  # a forwarded command is answered as text
# The private-chat membership handler runs in a handler group of its own, so it and the
# group features' membership handler both see every my_chat_member update.
MEMBERSHIP_GROUP = 1
# Replies Telegram did not take (timed out, failed) are sent again this much later, so no
# one is left after an answer with no next question, no buttons, or no emergency advice;
# if that fails too, again after a pause SEND_AGAIN_BACKOFF times as long, up to
# SEND_AGAIN_TRIES tries in all (5, 20 and 80 s after the failure: a brief outage).
SEND_AGAIN_SECONDS = 5.0
SEND_AGAIN_BACKOFF = 4
SEND_AGAIN_TRIES = 3
# Noted on the error of an update whose replies go again later: on_error logs it as a
# warning, as they may yet arrive (replies that never do are logged as an error).
SENDING_AGAIN = "its replies go again later"
# A bot stopping (SIGTERM, say) gives replies still waiting to go again this long to go
# now, once: the stopped job queue would drop them, and their person wait for nothing.
SEND_ON_STOP_SECONDS = 5.0
# Telegram dates messages by its clock, a tap's arrival goes by our reckoning of it (from
# its date of our last message, in whole seconds): a check-in counts from this long before
# its first answer arrived, so a small error in that cannot make its own first question
# look older than it.
CLOCK_ALLOWANCE_SECONDS = 30
# A "Yes, erase" button works this long after /forget asked: one tapped by chance while
# scrolling back days later must not erase the check-in the person is in now.
FORGET_CONFIRM_SECONDS = 15 * 60
# Updates of one person in hand at once (applying or waiting their turn): each holds one
# of PTB's handler slots, so past this one person's burst is let go rather than let it
# hold up everyone else. A person tapping and typing waits on a few at most.
IN_HAND_PER_USER = 8
# A message let go is answered "send it again", once in this long per person: the notice
# is one more post, and a burst should not bring one per message.
BUSY_NOTICE_SECONDS = 30.0
# A blocked person's row the database would not let go (locked by another process): tried
# again this often until it goes.
ERASE_AGAIN_SECONDS = 30.0
# A button tapped: (user id, message id, its callback data).
Button = tuple[int, int, str | None]
# A ref no question has: the engine answers a tap carrying it as stale.
ANSWERED_ALREADY = "answered"
# How many entries each of BackBot's memories of recent taps keeps (a double tap comes
# within a second).
TAPS_KEPT = 1024


@dataclass(frozen=True, slots=True)
class _Waiting:
    """Replies to send again, and the stored session they were meant for."""
    user_id: int
    chat_id: int
    replies: list[Reply]
    snapshot: dict[str, Any] | None
    tries_left: int


def _waiting(job: Job[Any]) -> _Waiting:
    assert isinstance(job.data, _Waiting)
    return job.data


class BackBot:
    def __init__(self, engine: Engine, store: SessionStore) -> None:
        self.engine = engine
        self.store = store
        self.content = engine.content
        self.render = TelegramRenderer(engine.content)
        self.locks = KeyedLocks()
        self.send_again_after = SEND_AGAIN_SECONDS
        self.clock_allowance = CLOCK_ALLOWANCE_SECONDS
        # Telegram's date of the last message we sent, and our steady clock then:
        # Telegram's time now is reckoned from these, not from our wall clock, which may
        # be minutes off Telegram's (every new question would look old) or be stepped
        # (NTP). None until this process has sent one.
        self._telegram_dated: tuple[float, float] | None = None
        # The pending send-again job of each user (at most one).
        self._sends_again: dict[int, Job[Any]] = {}
        self._re_asking: set[int] = set()  # users with a re-ask queued or on its way
        self._albums_re_asked: dict[tuple[int, str], None] = {}  # (user, album): one re-ask
        # Before consent nothing is stored, so a question's ref cannot tell a second tap
        # on the welcome from a first: the messages answered so, kept (a bounded few) to
        # answer a double tap as stale.
        self._answered_unstored: dict[tuple[int, int], None] = {}
        # Taps that only showed something (the sources at an end, a note) and changed
        # nothing stored, with the session they left: the same button tapped again while
        # that is unchanged is a double tap, answered by what the first one showed.
        self._shown_on_tap: dict[Button, Snapshot | None] = {}
        # /forget confirmations answered (user, message id) -> the outcome's content key: a
        # second tap on one ("Yes" then "No" in quick succession) must not undo what the
        # first said, and is told it again (its reply may not have arrived).
        self._forget_answered: dict[tuple[int, int], str] = {}
        self._told_busy: dict[int, float] = {}  # user -> when last told a message was let go
        # People who blocked the bot whose row is still to be erased (the erase failed):
        # erased before anything else they send is applied, and by a job meanwhile.
        self._erase_pending: set[int] = set()
        self._erasing: Job[Any] | None = None

    def register(self, app: App) -> None:
        # Button taps are most updates: their handler is checked first.
        bounded = self._bounded
        app.add_handler(CallbackQueryHandler(bounded(self.on_callback)))
        app.add_handler(CommandHandler(list(COMMAND_EVENTS), bounded(self.on_command),
                                       filters=PRIVATE_COMMAND))
        app.add_handler(CommandHandler("forget", bounded(self.on_forget),
                                       filters=PRIVATE_COMMAND))
        app.add_handler(CommandHandler("tip", bounded(self.on_tip), filters=PRIVATE_COMMAND))
        app.add_handler(ChatMemberHandler(self.on_my_chat_member), group=MEMBERSHIP_GROUP)
        app.add_error_handler(self.on_error)

    def register_fallback(self, app: App) -> None:
        """Everything else in private chats; added after all other handlers."""
        # Service messages (a pin, an auto-delete timer) are not the person writing to us.
        app.add_handler(MessageHandler(PRIVATE & ~filters.StatusUpdate.ALL,
                                       self.on_other_message))

    async def set_commands(self, app: App) -> None:
        menus = ((MENU, BotCommandScopeAllPrivateChats()),
                 (GROUP_MENU, BotCommandScopeAllGroupChats()))
        for names, scope in menus:
            commands = [BotCommand(n, self.content.message(f"commands.{n}")) for n in names]
            try:
                # Telegram keeps the menu set by an earlier start; no flood wait before
                # the bot serves anyone is worth it.
                await app.bot.set_my_commands(commands, scope=scope,
                                              rate_limit_args=NO_RETRIES)
            except TelegramError as exc:  # the menu is a convenience; the bot works without
                log.warning("could not set the command menu: %s", type(exc).__name__)

    def _bounded(self, handler: Handler) -> Handler:
        """`handler`, let go while IN_HAND_PER_USER of the person's updates are in hand (a
        tap let go is answered, so its spinner stops; they can tap it again; a message let
        go, such as a /forget, is answered "send it again")."""
        async def bounded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            user = update.effective_user
            if user is not None and self.locks.in_hand(user.id) >= IN_HAND_PER_USER:
                log.info("one person's updates come faster than they apply; one was let go")
                if update.callback_query is not None:
                    await self.answer_query(update.callback_query,
                                            self.content.message("button.busy"))
                elif self._may_tell_busy(user.id):
                    await self._tell_busy(user.id)
                return
            await handler(update, context)

        return bounded

    def _may_tell_busy(self, user_id: int) -> bool:
        now = time.monotonic()
        if now - self._told_busy.get(user_id, -BUSY_NOTICE_SECONDS) < BUSY_NOTICE_SECONDS:
            return False
        if len(self._told_busy) >= 1024:  # kept small: only those told in the last while
            self._told_busy = {user: told for user, told in self._told_busy.items()
                               if now - told < BUSY_NOTICE_SECONDS}
        self._told_busy[user_id] = now
        return True

    async def _tell_busy(self, user_id: int) -> None:
        # Outside the person's turn, so a Forbidden here erases nothing: an update of theirs
        # in hand may have stored its step and not yet replied. Erasing is left to their
        # turn (Telegram tells the bot of a block, and refuses that turn's replies too).
        try:
            await self.send(user_id, [Reply(self.render.message("error.busy"))])
        except TelegramError as exc:  # they can still see nothing happened, and send again
            log.info("busy notice not sent: %s", type(exc).__name__)

    # -- handlers --

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        parsed = parse_command(message.text or "") if message is not None else None
        if message is None or user is None or parsed is None or parsed[0] not in COMMAND_EVENTS:
            return
        name, _, args = parsed
        notes: list[Output] = []
        if name == "start" and args and is_group_payload(args[0]):
            notes.append(Say("group.from_group", self.content.message("group.from_group")))
        if name == "dailytip":
            notes.append(Say("dailytip.private", self.content.message("dailytip.private")))
        await self.apply(user.id, message.chat_id, COMMAND_EVENTS[name], notes=notes,
                         update_id=update.update_id)

    async def on_other_message(self, update: Update,
                               context: ContextTypes.DEFAULT_TYPE) -> None:
        """Free text, stickers, photos, voice, files, commands the bot does not know: re-ask
        with the keyboard. A burst (an album, a pasted batch) gets one re-ask, not one
        each: while one is on its way, those after it change nothing and would only repeat
        it; and an album gets one however far apart its parts arrive."""
        user, chat = update.effective_user, update.effective_chat
        message = update.effective_message
        if user is None or chat is None:
            return
        if message is not None and message.media_group_id is not None:
            # an album's parts arrive as separate messages, perhaps seconds apart
            album = (user.id, message.media_group_id)
            if album in self._albums_re_asked:
                return
            _bounded_put(self._albums_re_asked, album, None)
        if user.id in self._re_asking:
            return
        self._re_asking.add(user.id)
        command = (message is not None and bool(PRIVATE_COMMAND.check_update(update))
                   and parse_command(message.text or "") is not None)
        try:
            await self.apply(user.id, chat.id, Event("command" if command else "text"),
                             update_id=update.update_id)
        finally:
            self._re_asking.discard(user.id)

    async def on_forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None:
            return
        async with self.locks.hold(user.id):
            try:
                nothing = self.store.get(user.id) is None
            except sqlite3.Error:  # asked anyway: the erase says if it cannot be done
                nothing = False
            reply = (Reply(self.render.message("forget.nothing")) if nothing else
                     Reply(self.render.message("forget.confirm"),
                           self.render.forget_keyboard()))
            await self.send_or_later(user.id, chat.id, [reply])

    async def on_tip(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A tip that fits where this person is: none after a red flag, and none naming an
        activity before they acknowledged the doctor prompt."""
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None:
            return
        # In turn with the person's other updates: the tip fits where they are once those
        # are applied, and goes out after their replies.
        async with self.locks.hold(user.id):
            async with self.sorry_on_failure(chat.id):
                self._erase_if_pending(user.id)
                tip = self.engine.tip(self.store.get(user.id))
            await self.send_or_later(user.id, chat.id, [Reply(self.render.block(tip))])

    async def on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        user = query.from_user
        # No message: a button on an inline message, which this bot never sends.
        chat_id = query.message.chat.id if query.message is not None else None
        parsed = parse_callback(query.data)
        if chat_id != user.id:  # a button in a group: the dialog only runs in private
            await self.answer_query(query, self.content.message("button.not_here"))
            return
        if parsed is None:
            await self.apply(user.id, chat_id, Event("ask"), query=query,
                             toast=self.content.message("button.expired"))
            return
        if parsed[0] == FORGET:
            await self.forget(user.id, query, confirmed=parsed[1] == "yes")
            return
        _, ref, choice = parsed
        message = query.message
        sent_at = None
        if message is not None and message.is_accessible:
            sent_at = int(message.date.timestamp())
        elif message is not None:
            # Too old for Telegram to say when it was sent, so nothing tells an earlier
            # check-in's button from the current one: it is answered as moved on.
            ref = ANSWERED_ALREADY
        # Telegram's clock as of now, once known: before, ours could be minutes off it
        now = self.telegram_now()
        tapped_at = None if now is None else int(now) - self.clock_allowance
        await self.apply(user.id, chat_id,
                         Event.answer(choice, ref=ref, sent_at=sent_at, tapped_at=tapped_at),
                         query=query, update_id=update.update_id)

    async def on_my_chat_member(self, update: Update,
                                context: ContextTypes.DEFAULT_TYPE) -> None:
        """The person blocked the bot (Telegram tells us so): keep nothing about them."""
        change = update.my_chat_member
        if change is None or change.chat.type != ChatType.PRIVATE:
            return
        if change.new_chat_member.status in GONE_STATUSES:
            async with self.locks.hold(change.chat.id):
                self.drop_blocked(change.chat.id)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # Only the update id and error type: never the token, never anyone's answers.
        # SQLite's own messages name no values ("database is locked", "attempt to write a
        # readonly database") and say what to fix, so they go too.
        error = context.error
        said = f" ({error})" if isinstance(error, sqlite3.Error) else ""
        if isinstance(update, Update) and SENDING_AGAIN in getattr(error, "__notes__", ()):
            log.warning("update %s failed: %s; %s", update.update_id, type(error).__name__,
                        SENDING_AGAIN)
        elif isinstance(update, Update):
            log.error("update %s failed: %s%s", update.update_id, type(error).__name__, said)
        elif context.job is not None:  # by its kind: no chat's id at this level
            log.error("job %s failed: %s%s", (context.job.name or "").split(":")[0],
                      type(error).__name__, said)
        elif isinstance(error, NetworkError) and not isinstance(error, BadRequest):
            # No update, no job: fetching updates failed (Telegram or the network is down)
            log.warning("fetching updates failed: %s; trying again", type(error).__name__)
        else:  # a Conflict (another process polls with this token), say
            log.error("fetching updates failed: %s", type(error).__name__)
        log.debug("details", exc_info=context.error)

    # -- the one path from event to replies --

    async def apply(self, user_id: int, chat_id: int, event: Event,
                    query: CallbackQuery | None = None, notes: Sequence[Output] = (),
                    update_id: int | None = None, toast: str | None = None) -> None:
        """Step the user's session, store it, then reply (`toast`: what the tapped
        button's answer says, if not the engine's)."""
        async with self.locks.hold(user_id):
            async with self.sorry_on_failure(chat_id, query):
                notes, outputs, shown = self._step_and_store(user_id, event, notes, query,
                                                             update_id)
            if query is not None and not outputs:  # a double tap: the first one answered
                await self.answer_query(query)
                return
            edited, replies = self.render.replies([*notes, *outputs])
            unsent: list[Reply] = []
            try:  # as dropping_if_blocked does, written out on the path every tap takes
                if query is not None:
                    first = outputs[0].key if outputs and isinstance(outputs[0], Say) else None
                    stale = first == STALE
                    await self.answer_query(
                        query, self.content.message("button.moved_on") if stale else toast)
                    # The tapped message shows the answer chosen; or, when the tap was no
                    # answer (stale, a restart, a note such as the privacy note), it loses
                    # its keyboard, as the question comes again below it.
                    await self.edit(query, edited)
                await self.send(chat_id, replies, unsent)
                if shown is not None:  # out: the same button tapped again is a double tap
                    _bounded_put(self._shown_on_tap, shown, self.store.get(user_id))
                if self._sends_again:
                    self._drop_send_again_if_covered(user_id, replies)
            except Forbidden:
                self.drop_blocked(user_id)
            except TelegramError as exc:
                self._unsent_go_again(user_id, chat_id, unsent, exc)
                raise  # logged by on_error

    def _step_and_store(self, user_id: int, event: Event, notes: Sequence[Output],
                        query: CallbackQuery | None, update_id: int | None,
                        ) -> tuple[Sequence[Output], list[Output], Button | None]:
        """The notes to put first and the engine's outputs, with the step made durable;
        and the button tapped, if that tap only showed something (none for a double tap
        of such a button: it shows nothing more)."""
        self._erase_if_pending(user_id)
        stored = self.store.load(user_id)
        snapshot = stored.snapshot
        if delivered_before(stored, update_id):  # show all of where we are
            event, notes = Event("again"), ()
        tapped = _tapped_message(query)
        button = (user_id, tapped, query.data) if query is not None and tapped else None
        # Only with a stored session: before consent nothing tells a double tap from the
        # same button tapped again after other taps that stored nothing either.
        if button is not None and snapshot is not None and self._shown_on_tap and (
                self._shown_on_tap.get(button) == snapshot):
            return (), [], None
        if tapped is not None and snapshot is None and (
                (user_id, tapped) in self._answered_unstored):
            event = replace(event, ref=ANSWERED_ALREADY)  # the engine: stale
        new, outputs = self.engine.step(snapshot, event)
        shown = (button if new is snapshot and event.kind == "answer" and _only_shows(outputs)
                 else None)
        consented = keep(self.engine, self.store, user_id, stored, new, update_id)
        if snapshot is not None and not consented:  # its row erased (a new start): so is
            self._forget_shown(user_id)              # what memory kept of it
        if (tapped is not None and snapshot is None and not consented
                and any(isinstance(o, Answered) or (isinstance(o, Say) and o.key == RESTARTED)
                        for o in outputs)):
            _bounded_put(self._answered_unstored, (user_id, tapped), None)
        return notes, outputs, shown

    def sorry_on_failure(self, chat_id: int,
                         query: CallbackQuery | None = None) -> _SorryOnFailure:
        """`async with`: the store or the engine failed (nothing was changed) before any
        reply: say so, answering the tap if there is one, then let on_error log it."""
        return _SorryOnFailure(self, chat_id, query)

    async def apologise(self, chat_id: int, query: CallbackQuery | None) -> None:
        try:
            if query is not None:
                await query.answer(self.content.message("error.try_again"), show_alert=True)
            else:
                await self.send(chat_id, [Reply(self.render.message("error.try_again"))])
        except TelegramError as exc:
            log.info("apology not sent: %s", type(exc).__name__)

    def send_again_later(self, user_id: int, chat_id: int, replies: list[Reply],
                         snapshot: dict[str, Any] | None, tries_left: int = SEND_AGAIN_TRIES,
                         *, at_least: float = 0.0) -> bool:
        """After a pause, unless the person has moved on by then. (A timed-out message may
        have arrived after all: a second copy is harmless, as both copies of a question's
        keyboard work.) `at_least`: the seconds Telegram's flood control asked for. Whether
        they will go."""
        if self.job_queue is None:
            return False
        job = self._sends_again.get(user_id)
        if job is not None:
            waiting = _waiting(job)
            if snapshot is not None and waiting.snapshot == snapshot:
                # Still at the same point: what waits goes too, in the order the replies
                # were made, unless these repeat it (the question, say); none loses tries.
                # (A try again finds none waiting: it left them, and holds the person's
                # turn.)
                replies = [*uncovered(waiting.replies, replies), *replies]
                tries_left = max(tries_left, waiting.tries_left)
        self._cancel_send_again(user_id)
        # The job's name goes into APScheduler's log lines: no user id in it.
        # However late the loop gets to it (APScheduler's default drops a job woken over
        # 1 s late, as it may be when sends time out under load): it checks first whether
        # the person moved on meanwhile.
        pause = max(at_least,
                    self.send_again_after * SEND_AGAIN_BACKOFF ** (SEND_AGAIN_TRIES - tries_left))
        self._sends_again[user_id] = self.job_queue.run_once(
            self._send_again, when=pause,
            data=_Waiting(user_id, chat_id, replies, snapshot, tries_left), name="send-again",
            job_kwargs={"misfire_grace_time": None})
        return True

    def _drop_send_again_if_covered(self, user_id: int, sent: list[Reply]) -> None:
        """Replies waiting to be sent again are dropped once they are out of date (the
        person moved on, or nothing is stored: before consent every reply is a fresh
        screen) or were all just sent; otherwise they still go, so a disposition or a
        card is never lost to a later "use the buttons"."""
        job = self._sends_again.get(user_id)
        if job is None:
            return
        waiting = _waiting(job)
        stored = self.store.get(user_id)
        if stored is None or stored != waiting.snapshot or not uncovered(waiting.replies, sent):
            self._cancel_send_again(user_id)

    def _cancel_send_again(self, user_id: int) -> None:
        job = self._sends_again.pop(user_id, None)
        if job is not None:
            with suppress(JobLookupError):  # it has just started running
                job.schedule_removal()

    async def _send_again(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert context.job is not None
        await self._send_waiting(_waiting(context.job), context.job)

    async def send_waiting_now(self, within: float = SEND_ON_STOP_SECONDS) -> None:
        """Once the bot has stopped taking updates: replies still waiting to go again go
        now, once, for at most `within` seconds in all."""
        waiting = [_waiting(job) for job in self._sends_again.values()]
        for user_id in list(self._sends_again):
            self._cancel_send_again(user_id)
        if not waiting:
            return
        # (no update or job runs now to drop or replace them meanwhile)
        sends = [asyncio.create_task(self._send_waiting(w, None, last=True)) for w in waiting]
        _, late = await asyncio.wait(sends, timeout=within)
        for send in late:
            send.cancel()
        if late:
            log.error("stopping: replies for %d chats not sent again in time", len(late))

    async def _send_waiting(self, waiting: _Waiting, job: Job[Any] | None, *,
                            last: bool = False) -> None:
        """Send what waits (`job`: the job it waited in, still this user's pending one
        until now)."""
        user_id = waiting.user_id
        async with self.locks.hold(user_id):
            if job is not None:
                # Pending until its turn came, so a reply made while it waited for that
                # could drop it (out of date, or covered) or take it along: then it is done.
                if self._sends_again.get(user_id) is not job:
                    return
                del self._sends_again[user_id]
            if self.store.get(user_id) != waiting.snapshot:
                return  # they answered or restarted meanwhile: those replies are old
            unsent: list[Reply] = []
            try:
                await self.send(waiting.chat_id, waiting.replies, unsent)
            except Forbidden:
                self.drop_blocked(user_id)
            except TelegramError as exc:
                if waiting.tries_left > 1 and not last:
                    log.info("replies not sent again (%s); trying later", type(exc).__name__)
                    self.send_again_later(user_id, waiting.chat_id, unsent, waiting.snapshot,
                                          waiting.tries_left - 1, at_least=flood_wait(exc))
                else:  # lost: the one error line about them
                    log.error("replies not sent again: %s", type(exc).__name__)

    async def forget(self, user_id: int, query: CallbackQuery, *, confirmed: bool) -> None:
        async with self.locks.hold(user_id):
            tapped = _tapped_message(query)
            settled = self._forget_answered.get((user_id, tapped)) if tapped else None
            if settled is not None:  # a second tap: what the first one did, as its notice
                if settled == "forget.done" and self.store.get(user_id) is not None:
                    settled = None  # erased then, but stored again since: no notice
                await self.answer_query(
                    query, self.content.message(settled) if settled else None)
                return
            outcome = "forget.done" if confirmed else "forget.kept"
            now = self.telegram_now()  # on Telegram's clock once known
            if now is None:
                now = time.time()
            if confirmed and not _asked_within(query, FORGET_CONFIRM_SECONDS, now):
                outcome = "forget.expired"
            elif confirmed:
                async with self.sorry_on_failure(user_id, query):  # not "done" if not done
                    self.store.delete(user_id)
                self._forget_taps(user_id)
            await self.answer_query(query)
            # Its question is settled: a later tap on the same buttons (made before they
            # went, or left on a message that could not be edited) changes nothing.
            if tapped is not None:
                _bounded_put(self._forget_answered, (user_id, tapped), outcome)
            text = self.render.message(outcome)
            async with self.dropping_if_blocked(user_id):
                if not await self.edit(query, text):  # (only a tapped message is edited)
                    await self.send_or_later(user_id, user_id, [Reply(text)])  # too old, gone

    # -- Bot API calls, with Telegram's expected failures handled --

    async def send_or_later(self, user_id: int, chat_id: int, replies: list[Reply]) -> None:
        """Send replies that no step of the dialog made (a tip, the /forget question and
        its outcome): any Telegram did not take go again later, as a tap's replies do."""
        unsent: list[Reply] = []
        try:
            await self.send(chat_id, replies, unsent)
            if self._sends_again:  # what waits to go again may be out of date now
                self._drop_send_again_if_covered(user_id, replies)
        except Forbidden:
            self.drop_blocked(user_id)
        except TelegramError as exc:
            self._unsent_go_again(user_id, chat_id, unsent, exc)
            raise  # logged by on_error

    def _unsent_go_again(self, user_id: int, chat_id: int, unsent: list[Reply],
                         exc: TelegramError) -> None:
        """Replies Telegram did not take go again later, tied to the session as stored now
        (to tell if the person moved on); the error says so, for on_error's log line."""
        if unsent and self.send_again_later(user_id, chat_id, unsent, self.store.get(user_id),
                                            at_least=flood_wait(exc)):
            exc.add_note(SENDING_AGAIN)

    @asynccontextmanager
    async def dropping_if_blocked(self, user_id: int) -> AsyncIterator[None]:
        """Telegram says the user blocked the bot: keep nothing about them."""
        try:
            yield
        except Forbidden:
            self.drop_blocked(user_id)

    def drop_blocked(self, user_id: int) -> None:
        self._forget_taps(user_id)
        try:
            self.store.delete(user_id)
        except sqlite3.Error as exc:
            log.warning("a user blocked the bot; their session is erased as soon as the "
                        "database allows (%s)", exc)
            self._erase_pending.add(user_id)
            self._erase_later()
            return
        self._erase_pending.discard(user_id)
        log.info("a user blocked the bot; their session was dropped")

    def _erase_if_pending(self, user_id: int) -> None:
        """Blocked, then back: nothing from before counts (call holding their lock)."""
        if user_id in self._erase_pending:
            self.store.delete(user_id)
            self._erase_pending.discard(user_id)

    def _erase_later(self) -> None:
        if self._erasing is None and self.job_queue is not None:
            self._erasing = self.job_queue.run_once(
                self._erase_pending_rows, when=ERASE_AGAIN_SECONDS, name="erase-blocked",
                job_kwargs={"misfire_grace_time": None})

    async def _erase_pending_rows(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._erasing = None
        for user_id in list(self._erase_pending):
            async with self.locks.hold(user_id):
                if user_id in self._erase_pending:  # (else they wrote and were erased first)
                    self._try_erase(user_id)
        if self._erase_pending:
            self._erase_later()

    def erase_pending_now(self) -> None:
        """Once the bot has stopped taking updates: a last try at the rows of people who
        blocked it that the database would not let go (the job that tries again stops
        with the bot). Any still left wait for the retention purge."""
        for user_id in list(self._erase_pending):
            self._try_erase(user_id)
        if self._erase_pending:
            log.warning("stopping: %d blocked people's sessions not erased (the retention "
                        "purge will)", len(self._erase_pending))

    def _try_erase(self, user_id: int) -> None:
        """A blocked person's row, erased if the database lets go of it now."""
        try:
            self.store.delete(user_id)
        except sqlite3.Error:
            return
        self._erase_pending.discard(user_id)

    async def on_stop(self) -> None:
        """What goes out, and what is erased, on the way out."""
        await self.send_waiting_now()
        self.erase_pending_now()

    def _forget_taps(self, user_id: int) -> None:
        """Erased means erased: the taps kept in memory hold sessions too, and so do
        replies waiting to be sent again. (The messages answered before consent are only
        ids, and keep a later tap on one stale.)"""
        self._forget_shown(user_id)
        self._cancel_send_again(user_id)

    def _forget_shown(self, user_id: int) -> None:
        for key in [key for key in self._shown_on_tap if key[0] == user_id]:
            del self._shown_on_tap[key]

    def forget_purged(self) -> None:
        """The retention purge erased idle sessions: what memory holds of them goes too.
        (A reply waiting to be sent again waits seconds, far less than a purge needs.)"""
        users = {key[0] for key, kept in self._shown_on_tap.items() if kept is not None}
        for user_id in users:
            if self.store.get(user_id) is None:
                self._forget_taps(user_id)

    async def send(self, chat_id: int, replies: list[Reply],
                   unsent: list[Reply] | None = None) -> None:
        """Send in order; if one fails, `unsent` (when given) receives it and those after."""
        bot = self.app_bot
        if len(replies) > 1:
            try:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            except Forbidden:
                raise  # blocked: handled by dropping_if_blocked
            except TelegramError as exc:  # "typing..." is cosmetic; the replies still go out
                log.info("typing action not sent: %s", type(exc).__name__)
        for n, reply in enumerate(replies):
            try:
                sent = await bot.send_message(chat_id, reply.text, parse_mode=HTML,
                                              reply_markup=reply.keyboard,
                                              link_preview_options=link_preview(reply.text))
            except TelegramError:
                if unsent is not None:
                    unsent[:] = replies[n:]
                raise
            self._telegram_dated = (sent.date.timestamp(), _steady())

    def telegram_now(self) -> float | None:
        """Telegram's clock now, as reckoned from its date of our last message (to within
        its whole seconds); None until this process has sent one."""
        if self._telegram_dated is None:
            return None
        dated, at = self._telegram_dated
        return dated + (_steady() - at)

    async def answer_query(self, query: CallbackQuery, text: str | None = None) -> None:
        """Stops the button's spinner; if that fails, the reply still goes out."""
        try:
            await query.answer(text)
        except TelegramError as exc:  # too old, timed out, rate-limited: cosmetic
            log.info("callback not answered: %s", type(exc).__name__)

    async def edit(self, query: CallbackQuery, text: str | None) -> bool:
        """Show the chosen answer on the question (or drop a stale keyboard). False if the
        message could not be edited."""
        message = query.message
        if message is None or not message.is_accessible:
            return False  # the message is gone or too old to edit
        try:
            if text is None:
                await query.edit_message_reply_markup(None)
            else:
                await query.edit_message_text(text, parse_mode=HTML)
        except Forbidden:
            raise  # blocked: handled by dropping_if_blocked
        except TelegramError as exc:  # not modified, gone, timed out: the reply still goes out
            if isinstance(exc, BadRequest) and "not modified" in exc.message.lower():
                return True  # it already says so (a second tap)
            log.info("message not edited: %s", type(exc).__name__)
            return False
        return True

    app_bot: Bot  # set by attach(): the Bot of the Application this serves
    job_queue: JobQueue[Any] | None

    def attach(self, app: App) -> None:
        self.app_bot = app.bot
        self.job_queue = app.job_queue


class _SorryOnFailure:
    """See BackBot.sorry_on_failure: a plain class, as this runs on every update."""

    __slots__ = ("_backbot", "_chat_id", "_query")

    def __init__(self, backbot: BackBot, chat_id: int, query: CallbackQuery | None) -> None:
        self._backbot, self._chat_id, self._query = backbot, chat_id, query

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> bool:
        if kind is not None and issubclass(kind, Exception):
            await self._backbot.apologise(self._chat_id, self._query)
        return False  # the error goes on to on_error


def uncovered(waiting: Sequence[Reply], sent: Sequence[Reply]) -> list[Reply]:
    """The waiting replies that `sent` does not repeat. Texts are compared as sent: a
    message may go out joined with a note before it."""
    sent_text = "\n\n".join(reply.text for reply in sent)
    return [reply for reply in waiting if reply.text not in sent_text]


def _tapped_message(query: CallbackQuery | None) -> int | None:
    message = query.message if query is not None else None
    return message.message_id if message is not None else None


def _only_shows(outputs: Sequence[Output]) -> bool:
    """The outputs of a tap that showed something (the sources, a note), not of one that
    was stale or wrong: a stale button tapped again is told "moved on" again."""
    first = outputs[0] if outputs else None
    return first is not None and not (
        isinstance(first, Say) and first.key.startswith(NOTE_PREFIXES))


def _asked_within(query: CallbackQuery, seconds: float, now: float) -> bool:
    """Whether the tapped message was sent at most `seconds` before `now` (Telegram
    leaves out messages too old for the bot to see: those were not)."""
    message = query.message
    if message is None or not message.is_accessible:
        return False
    return now - message.date.timestamp() <= seconds


def _bounded_put(kept: dict[Any, Any], key: tuple[Any, ...], value: Any) -> None:
    kept[key] = value
    if len(kept) > TAPS_KEPT:
        del kept[next(iter(kept))]  # the first put (one put again keeps its place)
