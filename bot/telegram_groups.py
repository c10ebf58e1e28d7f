"""Groups and channels: a private hand-off, cited tips, the admins' daily tip.

Nothing here asks a health question or shows anyone's answers: the screening only
runs in a private chat.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from telegram import (
    Bot,
    ChatMember,
    ChatMemberRestricted,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    Job,
    MessageHandler,
    filters,
)

from bot.content import TIP_TAG, Card, Content
from bot.dailytip_times import (
    MISFIRE_GRACE_SECONDS,
    TIME,
    BadZone,
    DailyTrigger,
    first_day_dealt_with,
    last_due,
    missed,
    next_due,
    parse_dailytip,
    reversed_offset,
    spread_second,
)
from bot.deeplinks import checkin_url
from bot.outputs import ShowTip, SourceList
from bot.schedules import Schedule, ScheduleStore
from bot.telegram_errors import chat_gone, muted, not_taken, thread_gone
from bot.telegram_render import HTML, NO_PREVIEW, TelegramRenderer, escape, parse_command
from bot.telegram_types import GONE_STATUSES, PASSED_ON, App, Handler
from bot.zones import known_zone, shown_zone

log = logging.getLogger(__name__)

# A command passed on (PASSED_ON) changes nothing: an admin forwarding "/dailytip off" turns
# nothing off; nor does a channel's post Telegram copies into its linked discussion group
# (meant for the channel).
GROUPS = filters.ChatType.GROUPS & filters.UpdateType.MESSAGE & ~PASSED_ON
ADMIN_STATUSES = {ChatMember.ADMINISTRATOR, ChatMember.OWNER}
# One-off jobs (a late tip, a notice, an introduction): APScheduler's own default drops a
# job woken over 1 s late (a busy loop, start-up); a late tip itself still goes out only
# within the grace (`missed`).
LATE_JOB_KWARGS = {"misfire_grace_time": MISFIRE_GRACE_SECONDS}
# Telegram's answer (getChatMember) about someone it does not find in the chat.
_NOT_A_MEMBER = "user not found"
# job names, followed by ":<chat id>" (a chat has at most one job of each: see `_chat_job`)
DAILY_JOB, LATE_JOB, ZONE_GONE_JOB = "dailytip", "dailytip-late", "dailytip-zone-gone"
SCHEDULE_JOBS = (DAILY_JOB, LATE_JOB, ZONE_GONE_JOB)  # a chat's daily tip, all its jobs
INTRO_JOB = "intro"
# When a group becomes a supergroup, Telegram adds the bot to the new chat ("left" to
# "member") around the upgrade's service messages, in no fixed order. The introduction
# waits this long, and does not go into a chat an upgrade made this recently: its
# members saw it in the group.
INTRO_AFTER_SECONDS = 3.0
UPGRADE_MEMORY_SECONDS = 600.0
# A group's replies wait for its rate limit (20 a minute) inside their handlers, and the
# Application runs at most 256 handlers at once: while this many of one chat's /start,
# /check, /tip and /sources are under way, further ones there are let go, so one busy
# group cannot hold up everyone's private check-ins. A repeat of those loses nothing
# (an admin's /dailytip is applied all the same; only its answer is let go).
WAITING_REPLIES_PER_CHAT = 3
# A daily tip Telegram did not take (a server or network error) is tried again this much
# later, while still within the grace.
TIP_RETRY_SECONDS = 60.0
# A daily job runs once APScheduler's clock reads its time; ours, read a moment later, could
# still be behind by a clock adjustment.
JOB_CLOCK_SLACK_SECONDS = 5
# What Telegram has already acted on (a tip went out, the bot is gone) but the database
# would not take, busy (another program's write, a slow checkpoint), is stored this much
# later, then at twice the wait each time, up to this many more tries (some 30 minutes).
STORE_AGAIN_SECONDS = 30.0
STORE_TRIES = 6
BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


async def reply_to(message: Message, text: str, **kwargs: Any) -> None:
    """Answer a command in its chat (HTML), quoting it; if the command was deleted
    meanwhile (by its sender, or a bot that tidies commands away), the answer still goes,
    unquoted."""
    await message.reply_text(text, parse_mode=HTML, allow_sending_without_reply=True,
                             **kwargs)


class NotPrivateChatMemberHandler(ChatMemberHandler[Any, Any]):
    """The bot's own membership in groups, supergroups and channels only (ChatMemberHandler
    takes no filters). A private chat's (a user blocking the bot) is BackBot's, whose
    handler runs in a handler group of its own."""

    def check_update(self, update: object) -> bool:
        chat = update.effective_chat if isinstance(update, Update) else None
        return (chat is not None and chat.type != ChatType.PRIVATE
                and bool(super().check_update(update)))


class GroupFeatures:
    def __init__(self, content: Content, schedules: ScheduleStore, default_zone: str) -> None:
        self.content = content
        self.schedules = schedules
        self.default_zone = default_zone
        self.render = TelegramRenderer(content)
        self.tips: list[Card] = content.cards_tagged(TIP_TAG)
        self.intro_after = INTRO_AFTER_SECONDS
        self.tip_retry_seconds = TIP_RETRY_SECONDS
        self.store_again_after = STORE_AGAIN_SECONDS
        self._upgraded: dict[int, float] = {}  # supergroup id -> when an upgrade made it
        self._leaving: set[int] = set()  # chats left whose schedule is still to be removed
        # old group id -> (new id, when, whether its daily tip was carried there)
        self._moved_to: dict[int, tuple[int, float, bool]] = {}
        self._waiting: dict[int, int] = {}  # chat id -> its replies under way
        self._checking: dict[tuple[int, int], asyncio.Task[bool | None]] = {}
        self._tips_under_way: set[int] = set()  # chats (ids as posted to) with a tip going out
        # chat id -> the message id of the last /dailytip change applied there: admins'
        # checks can end out of order, and an older command must not undo a newer one
        self._last_change: dict[int, int] = {}
        self.now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def register(self, app: App) -> None:
        bounded = self._bounded
        app.add_handler(CommandHandler(["start", "check"], bounded(self.on_group_start),
                                       filters=GROUPS))
        app.add_handler(CommandHandler("tip", bounded(self.on_tip), filters=GROUPS))
        app.add_handler(CommandHandler("sources", bounded(self.on_group_sources),
                                       filters=GROUPS))
        app.add_handler(CommandHandler("help", bounded(self.on_group_help), filters=GROUPS))
        app.add_handler(CommandHandler("dailytip", self.on_dailytip, filters=GROUPS))
        app.add_handler(MessageHandler(
            filters.UpdateType.CHANNEL_POST & ~PASSED_ON
            & filters.Regex(r"(?i)^/dailytip(@\w+)?(?!\w)"),
            self.on_dailytip))
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.on_migrate))
        app.add_handler(NotPrivateChatMemberHandler(self.on_my_chat_member,
                                                   ChatMemberHandler.MY_CHAT_MEMBER))

    def _bounded(self, handler: Handler) -> Handler:
        """`handler`, let go while WAITING_REPLIES_PER_CHAT of its chat's are under way."""
        async def bounded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            chat = update.effective_chat
            if chat is None:
                return
            with self._reply_slot(chat.id, chat.type) as free:
                if free:
                    await handler(update, context)

        return bounded

    @contextmanager
    def _reply_slot(self, chat_id: int, chat_type: str) -> Iterator[bool]:
        """Whether a reply may wait for the chat's post budget: a reply waits inside its
        handler, so a chat with many waiting could take every handler slot."""
        waiting = self._waiting.get(chat_id, 0)
        if waiting >= WAITING_REPLIES_PER_CHAT:
            log.info("a %s's commands come faster than it may be answered; one was let go",
                     chat_type)
            yield False
            return
        self._waiting[chat_id] = waiting + 1
        try:
            yield True
        finally:
            self._waiting[chat_id] -= 1
            if not self._waiting[chat_id]:
                del self._waiting[chat_id]

    def restore_jobs(self, app: App) -> None:
        """Rebuild every daily tip from the database, so a restart loses none: one that
        fell due while the bot was down, less than the grace ago, goes out now."""
        now = self.now()
        for schedule in self.schedules.all():
            if not TIME.match(schedule.hhmm):  # only a hand-edited database holds one
                log.warning("a stored daily tip has no valid time (%r); it is left out",
                            schedule.hhmm)
                continue
            # Nothing is scheduled yet: looking for a chat's old job would scan them all.
            # The first run is fixed now: the scheduler starts a little later, after the
            # polling or webhook set-up, and left to itself would take a tip falling due
            # in between for tomorrow's; this way it goes out late, within the grace.
            self._schedule_job(app, schedule.chat_id, schedule.hhmm, schedule.tz,
                               replacing=False, first=next_due(schedule, now))
            if missed(schedule, now):
                self._post_late(app, schedule.chat_id, spread_second(schedule.chat_id))

    # -- handlers --

    async def on_group_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        await self._reply(context, message, self.render.message("group.start"), button=True)

    async def on_group_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """What the bot does here: its introduction, with the check-in button."""
        message = update.effective_message
        if message is None:
            return
        await self._reply(context, message, self.render.message("group.intro"), button=True)

    async def on_tip(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        if not self.tips:
            await self._reply(context, message, self.render.message("tip.none"))
            return
        tip = ShowTip.of(random.choice(self.tips), self.content)
        await self._reply(context, message, self.render.tip(tip),
                          button=True, link_preview_options=NO_PREVIEW)

    async def on_group_sources(self, update: Update,
                               context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        block = self.render.block(SourceList.of(self.content))
        await self._reply(context, message, block, link_preview_options=NO_PREVIEW)

    async def on_dailytip(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        parsed = parse_command(message.text or "") if message is not None else None
        if message is None or chat is None or parsed is None:
            return
        _, addressee, args = parsed
        if addressee and addressee.lower() != (context.bot.username or "").lower():
            return  # a command for another bot in the same channel
        # Channel posts come only from the channel's admins; in groups we ask Telegram.
        # What is set, anyone may see (the tips themselves are posted for all).
        admin = (not args or chat.type == ChatType.CHANNEL
                 or await self._is_admin(update, context))
        failed: sqlite3.Error | None = None
        if admin:
            # set in a forum topic, the tips go to that topic
            thread = message.message_thread_id if message.is_topic_message else None
            # a group upgraded while the admin check was under way: to the supergroup,
            # whose messages are numbered afresh
            target = self._id_now(chat.id)
            sent = message.message_id if target == chat.id else None
            try:
                reply = escape(self._configure(context.application, target, args, thread,
                                               sent=sent))
            except sqlite3.Error as exc:  # nothing stored, nothing scheduled: say so
                reply, failed = self.render.message("error.try_again"), exc
        else:
            reply = self.render.message(
                "dailytip.not_admin" if admin is False else "dailytip.admin_unknown")
        # An admin's setting is applied whatever; only its answer waits its turn to post.
        with self._reply_slot(chat.id, chat.type) as free:
            if free:
                await self._reply(context, message, reply)
        if failed is not None:
            raise failed  # logged by the error handler

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A group upgraded to a supergroup: Telegram sends one service message in each."""
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id:
            self.migrate(context.application, message.chat_id, message.migrate_to_chat_id)
        elif message.migrate_from_chat_id:
            self.migrate(context.application, message.migrate_from_chat_id, message.chat_id)

    async def on_my_chat_member(self, update: Update,
                                context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat = change.chat
        if _gone(change.new_chat_member):
            self._upgraded.pop(chat.id, None)  # added back, it introduces itself again
            # with an introduction still to go out, if removed that soon
            self._unschedule(context.application, chat.id, (INTRO_JOB,))
            self._remove_schedule(context.application, chat.id, f"left a {chat.type}")
        elif _gone(change.old_chat_member) and chat.type in (ChatType.GROUP,
                                                             ChatType.SUPERGROUP):
            queue, intro = context.job_queue, _chat_job_id(INTRO_JOB, chat.id)
            if queue is None:
                await self._introduce(context.bot, chat.id)
            elif queue.scheduler.get_job(intro) is None:  # not once more for the same update
                queue.run_once(self._introduce_later, when=self.intro_after, chat_id=chat.id,
                               **_chat_job(INTRO_JOB, chat.id, **LATE_JOB_KWARGS))

    async def _introduce_later(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        job = context.job
        if job is not None and job.chat_id is not None:
            await self._introduce(context.bot, job.chat_id)

    async def _introduce(self, bot: Bot, chat_id: int) -> None:
        made = self._upgraded.get(chat_id)
        if made is not None and time.monotonic() - made < UPGRADE_MEMORY_SECONDS:
            return  # the group's members met the bot before the upgrade
        intro = self.render.message("group.intro")
        try:
            try:
                await bot.send_message(chat_id, intro, parse_mode=HTML)
            except ChatMigrated as exc:
                # Upgraded before the introduction went out: the supergroup's own is held
                # back (its members met the bot in the group), so this one goes there.
                await bot.send_message(exc.new_chat_id, intro, parse_mode=HTML)
        except TelegramError as exc:
            log.info("could not introduce myself: %s", type(exc).__name__)

    # -- daily tip jobs --

    async def post_daily_tip(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        job = context.job
        if job is not None and job.chat_id is not None and not self._posted_today(job.chat_id):
            await self._post_tip_alone(context, job.chat_id)

    async def post_zone_gone(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A daily tip whose time zone this system no longer knows cannot run: the chat is
        told so (its admins can set it again) and the schedule removed. If Telegram does
        not take the message, the schedule stays, and the next start tells them."""
        job = context.job
        if job is None or job.chat_id is None:
            return
        assert isinstance(job.data, Schedule)
        hhmm, zone = job.data.hhmm, job.data.tz
        schedule = self.schedules.get(job.chat_id)
        if schedule is None or (schedule.hhmm, schedule.tz) != (hhmm, zone):
            return  # changed since: an admin set it again, or turned it off
        text = self.render.message("dailytip.zone_gone").format(
            time=hhmm, zone=escape(shown_zone(zone)))
        async with self._posting(context, job.chat_id):
            await context.bot.send_message(job.chat_id, text, parse_mode=HTML)
            # an admin may have set it anew while the notice was on its way
            self.schedules.remove_if(job.chat_id, hhmm, zone)
            log.warning("a daily tip's time zone is unknown here: the chat was told, and "
                        "the tip removed")

    def _posted_today(self, chat_id: int) -> bool:
        """Today's tip was dealt with already: a restart just after it went out started
        the job at a time already past, or its time was moved later after it went out."""
        schedule = self.schedules.get(chat_id)
        if schedule is None:
            return False
        due = self._due_now(schedule)
        return due is not None and schedule.last_day == due.date().isoformat()

    def _due_now(self, schedule: Schedule) -> dt.datetime | None:
        """The due time a daily job running now stands for: the last one, with a little
        slack, so a clock read a moment early does not take it for yesterday's."""
        return last_due(schedule, self.now() + dt.timedelta(seconds=JOB_CLOCK_SLACK_SECONDS))

    async def _post_tip(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, *,
                        migrated: bool = False, due: dt.datetime | None = None) -> None:
        """Today's tip. `due` is the time it stands for, when a retry in another chat or
        topic carries it over (each chat's tip falls at its own second of the minute)."""
        tip_ids = [card.id for card in self.tips]
        schedule = self.schedules.get(chat_id)
        tip_id = self.schedules.next_tip(chat_id, tip_ids)
        if tip_id is None or schedule is None:
            return
        if due is None:
            due = self._due_now(schedule)
        app = context.application
        try:
            tip = ShowTip.of(self.content.cards[tip_id], self.content)
            await context.bot.send_message(chat_id, self.render.tip(tip),
                                           parse_mode=HTML, message_thread_id=schedule.thread,
                                           reply_markup=self._checkin_button(context, chat_id),
                                           link_preview_options=NO_PREVIEW)
        except ChatMigrated as exc:
            # Today's tip goes to the supergroup, once (a second migration would be a loop),
            # if the group's schedule went there: now, or by the upgrade's service message
            # while this was on its way (whose catch-up left it to this post). A schedule
            # an admin had set there already has its own.
            self.migrate(app, chat_id, exc.new_chat_id)
            if not migrated and self._moved_to[chat_id][2]:
                await self._post_tip(context, exc.new_chat_id, migrated=True, due=due)
            return
        except (Forbidden, BadRequest) as exc:
            if schedule.thread is not None and thread_gone(exc):
                # its topic was deleted: the chat itself has the tips from now on
                self.schedules.leave_thread(chat_id, schedule.thread)
                log.warning("a daily tip's forum topic is gone; it goes to the chat instead")
                await self._post_tip(context, chat_id, migrated=migrated, due=due)
                return
            if chat_gone(exc):
                self._stop_posting(app, chat_id, exc)
                return
            if muted(exc):  # today's is skipped; the rotation keeps its place
                log.warning("muted in a chat, or its topic closed (%s); its daily tip stays, "
                            "to go out once the bot may post there again", type(exc).__name__)
                day = self._day_of(chat_id, due)

                def mark_day() -> None:
                    self.schedules.mark_day(self._id_now(chat_id), day)

                self._store_soon(app, mark_day, "a daily tip skipped")
                return
            # Telegram refused this text (too long, bad markup): a content bug to fix. The
            # schedule stays, and the rotation moves on so one bad card can't block it.
            log.error("daily tip %s refused: %s", tip_id, exc.message)
        except (NetworkError, RetryAfter) as exc:
            if not_taken(exc):  # again soon, within the grace (where the chat is now)
                self._try_again(app, self._id_now(chat_id), due, exc)
                return
            # It may have gone out, its answer lost on the way back: counted as posted, so
            # neither a retry nor a restart posts it twice.
            log.warning("a daily tip may not have arrived (%s); it is not sent again",
                        type(exc).__name__)
        day = self._day_of(chat_id, due)

        def mark_posted() -> None:
            self.schedules.mark_posted(self._id_now(chat_id), tip_id, tip_ids, day=day,
                                       due=due)

        self._store_soon(app, mark_posted, "a daily tip posted")

    def _store_soon(self, app: App, write: Callable[[], object], what: str, *,
                    tries_left: int = STORE_TRIES, wait: float | None = None) -> None:
        """A schedule write for what Telegram has already acted on (`what`, for the log):
        if the database is busy, it is made again later rather than lost (the same tip
        posted again the next day, a schedule kept for a chat the bot has left)."""
        try:
            write()
        except sqlite3.Error as exc:
            # (an error of Python's own sqlite3 module, a closed connection say, has no code)
            code = getattr(exc, "sqlite_errorcode", None)
            busy = isinstance(code, int) and (code & 0xFF) in BUSY_CODES
            if not busy or app.job_queue is None:
                raise
            if tries_left == 0:
                log.error("%s: not stored, the database stayed busy (%s)", what, exc)
                return
            wait = self.store_again_after if wait is None else wait
            log.warning("%s: not stored yet (%s); trying again in %.0f s", what, exc, wait)

            async def again(context: ContextTypes.DEFAULT_TYPE) -> None:
                self._store_soon(app, write, what, tries_left=tries_left - 1, wait=2 * wait)

            app.job_queue.run_once(again, when=wait, name="dailytip-store",
                                   job_kwargs=LATE_JOB_KWARGS)

    def _remove_schedule(self, app: App, chat_id: int, why: str) -> None:
        """The bot may not post in the chat any more (`why`, for the log): its daily tip
        goes (unless an admin sets one anew there before a busy database lets the
        removal through)."""
        self._unschedule(app, chat_id)
        self._leaving.add(chat_id)
        # Forgotten with the schedule, so a chat the bot left keeps nothing here. An older
        # /dailytip whose admin check ends after this is refused anyway (Telegram confirms
        # no admin to a bot out of the chat); one confirmed just before stores a tip whose
        # first post finds the bot gone, and removes it.
        self._last_change.pop(chat_id, None)

        def remove() -> None:
            if chat_id in self._leaving:
                removed = self.schedules.remove(chat_id)
                self._leaving.discard(chat_id)
                if removed:
                    log.info("%s; its daily tip was removed", why)

        self._store_soon(app, remove, f"{why}, its daily tip's removal")

    def _day_of(self, chat_id: int, due: dt.datetime | None) -> str:
        """The day (ISO) a tip due then falls on by the chat's zone as stored now: an
        admin may have set another zone while it was on its way."""
        if due is None:
            return ""
        schedule = self.schedules.get(self._id_now(chat_id))
        zone = known_zone(schedule.tz) if schedule is not None else None
        return (due.astimezone(zone) if zone is not None else due).date().isoformat()

    def _id_now(self, chat_id: int) -> int:
        """The chat's id now: a group upgraded while its tip was on the way has a new one,
        and what went out is counted there. (An old id never comes back, so a mapping
        older than `migrate` keeps them cannot mislead.)"""
        moved = self._moved_to.get(chat_id)
        return moved[0] if moved is not None else chat_id

    def _try_again(self, app: App, chat_id: int,
                   due: dt.datetime | None, exc: TelegramError) -> None:
        later = self.now() + dt.timedelta(seconds=self.tip_retry_seconds)
        if app.job_queue is None or due is None or (
                (later - due).total_seconds() > MISFIRE_GRACE_SECONDS):
            log.warning("a daily tip was not taken (%s); the next goes out tomorrow",
                        type(exc).__name__)
            return
        self._post_late(app, chat_id, self.tip_retry_seconds)
        log.warning("a daily tip was not taken (%s); trying again in %.0f s",
                    type(exc).__name__, self.tip_retry_seconds)

    async def post_missed_tip(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Today's tip, if it is still due and has not gone out (nor been changed)."""
        job = context.job
        if job is None or job.chat_id is None:
            return
        schedule = self.schedules.get(job.chat_id)
        if schedule is not None and missed(schedule, self.now()):
            await self._post_tip_alone(context, job.chat_id)

    async def _post_tip_alone(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> None:
        """Today's tip, unless one is under way there already. A group upgraded meanwhile is
        one chat under both ids: the upgrade's catch-up for the supergroup must not repeat
        the group's tip still on its way (nor the one its `ChatMigrated` answer sends on
        to the supergroup)."""
        here = self._id_now(chat_id)
        if any(self._id_now(other) == here for other in self._tips_under_way):
            log.info("a daily tip is already on its way to this chat; not posted twice")
            return
        self._tips_under_way.add(chat_id)
        try:
            await self._post_tip(context, chat_id)
        finally:
            self._tips_under_way.discard(chat_id)

    def migrate(self, app: App, old_chat_id: int,
                new_chat_id: int) -> Schedule | None:
        """Move a chat's daily tip (schedule, rotation, job) to the chat's new id."""
        now = time.monotonic()
        self._upgraded = {chat: made for chat, made in self._upgraded.items()
                          if now - made < UPGRADE_MEMORY_SECONDS}
        self._upgraded[new_chat_id] = now
        self._moved_to = {chat: moved for chat, moved in self._moved_to.items()
                          if now - moved[1] < UPGRADE_MEMORY_SECONDS}
        before = self._moved_to.get(old_chat_id)
        self._moved_to[old_chat_id] = (new_chat_id, now, False)
        moved = self.schedules.move(old_chat_id, new_chat_id)
        # (told twice, by the upgrade's service message and a post answered "upgraded")
        carried = moved is not None or (before is not None and before[0] == new_chat_id
                                        and before[2])
        self._moved_to[old_chat_id] = (new_chat_id, now, carried)
        self._unschedule(app, old_chat_id)  # its catch-up or retry too: done again below
        if moved is not None:
            self._schedule_job(app, moved.chat_id, moved.hhmm, moved.tz)
            log.info("a group became a supergroup; its daily tip moved with it")
            if missed(moved, self.now()):
                # today's was due and has not gone out (the bot was down, or Telegram did
                # not take it): it goes to the supergroup, late rather than not at all
                self._post_late(app, new_chat_id, spread_second(new_chat_id))
        return moved

    def _post_late(self, app: App, chat_id: int, after: float) -> None:
        """Today's tip, `after` seconds from now, if it is still due and not out by then
        (in place of any such job of the chat's already waiting)."""
        if app.job_queue is not None:
            app.job_queue.run_once(self.post_missed_tip, when=after, chat_id=chat_id,
                                   **_chat_job(LATE_JOB, chat_id, **LATE_JOB_KWARGS))

    def _schedule_job(self, app: App, chat_id: int, hhmm: str,
                      zone: str, *, replacing: bool = True,
                      first: dt.datetime | None = None) -> None:
        if replacing:
            self._unschedule(app, chat_id)
        tzinfo = known_zone(zone)
        if app.job_queue is None:
            return
        if tzinfo is None:  # stored once valid; this system's zone data no longer has it
            app.job_queue.run_once(self.post_zone_gone, when=spread_second(chat_id),
                                   chat_id=chat_id, data=Schedule(chat_id, hhmm, zone),
                                   **_chat_job(ZONE_GONE_JOB, chat_id, **LATE_JOB_KWARGS))
            return
        trigger = DailyTrigger(Schedule(chat_id, hhmm, zone), tzinfo)
        app.job_queue.run_custom(
            self.post_daily_tip, chat_id=chat_id,
            **_chat_job(DAILY_JOB, chat_id, trigger=trigger,
                        misfire_grace_time=MISFIRE_GRACE_SECONDS, coalesce=True,
                        **({"next_run_time": first} if first is not None else {})))

    @staticmethod
    def _unschedule(app: App, chat_id: int,
                    names: tuple[str, ...] = SCHEDULE_JOBS) -> None:
        """Drop the chat's jobs of these kinds, each found by its id (see `_chat_job`).
        Before the scheduler starts, a lookup walks every job scheduled so far: the
        start-up restore schedules without this."""
        if app.job_queue is None:
            return
        for name in names:
            found = app.job_queue.scheduler.get_job(_chat_job_id(name, chat_id))
            if found is not None:
                Job.from_aps_job(found).schedule_removal()

    # -- helpers --

    def _configure(self, app: App, chat_id: int, args: list[str], thread: int | None = None,
                   *, sent: int | None) -> str:
        """Apply an admin's /dailytip arguments (of the message with id `sent`; None: sent
        in the group a supergroup replaced, so applied only if none was since); the answer
        to give them. With none, the chat's current setting (an answer let go in a flood
        can be asked for again)."""
        if not args:
            schedule = self.schedules.get(chat_id)
            if schedule is None:
                return self.content.message("dailytip.none")
            return self._with_offset(self.content.message("dailytip.current").format(
                time=schedule.hhmm, zone=shown_zone(schedule.tz)), schedule.tz)
        try:
            parsed = parse_dailytip(args, self.default_zone)
        except BadZone as exc:
            return self.content.message("dailytip.bad_zone").format(zone=shown_zone(exc.zone))
        if parsed is None:
            return self.content.message("dailytip.usage")
        last = self._last_change.get(chat_id)
        if last is not None and (sent is None or sent < last):
            return self.content.message("dailytip.superseded")
        if parsed == "off":
            self.schedules.turn_off(chat_id)
            self._remember_change(chat_id, sent)
            self._leaving.discard(chat_id)  # set anew since: not to be removed
            self._unschedule(app, chat_id)
            return self.content.message("dailytip.off")
        hhmm, zone = parsed
        last_day = first_day_dealt_with(Schedule(chat_id, hhmm, zone),
                                        self.schedules.last_posted(chat_id), self.now())
        self.schedules.put(chat_id, hhmm, zone, thread, last_day=last_day)
        self._remember_change(chat_id, sent)
        self._leaving.discard(chat_id)
        self._schedule_job(app, chat_id, hhmm, zone)
        return self._with_offset(self.content.message("dailytip.set").format(
            time=hhmm, zone=zone), zone)

    def _remember_change(self, chat_id: int, sent: int | None) -> None:
        if sent is not None:
            self._last_change[chat_id] = sent

    def _with_offset(self, text: str, zone: str) -> str:
        offset = reversed_offset(zone)
        if offset is None:
            return text
        return f"{text} " + self.content.message("dailytip.reversed_sign").format(
            zone=zone, offset=offset)

    async def _reply(self, context: ContextTypes.DEFAULT_TYPE, message: Message, text: str,
                     *, button: bool = False, **kwargs: Any) -> None:
        """Answer a command in its chat (as `_posting` does), with the check-in button if
        asked. A group that has just become a supergroup gets the answer there, unquoted
        (its command is gone with the old group), once."""
        def markup(chat_id: int) -> InlineKeyboardMarkup | None:
            return self._checkin_button(context, chat_id) if button else None

        async with self._posting(context, message.chat_id) as moved:
            await reply_to(message, text, reply_markup=markup(message.chat_id), **kwargs)
        if moved:
            async with self._posting(context, moved[0]):
                await context.bot.send_message(moved[0], text, parse_mode=HTML,
                                               reply_markup=markup(moved[0]), **kwargs)

    @asynccontextmanager
    async def _posting(self, context: ContextTypes.DEFAULT_TYPE,
                       chat_id: int) -> AsyncIterator[list[int]]:
        """A post in a group or channel. If Telegram says the bot may not post there any
        more, the chat's daily tip goes too (logged, not raised); if the group has become
        a supergroup, its tip moves there and the new id is put in the list yielded; other
        errors propagate."""
        moved: list[int] = []
        try:
            yield moved
        except ChatMigrated as exc:
            self.migrate(context.application, chat_id, exc.new_chat_id)
            moved.append(exc.new_chat_id)
        except (Forbidden, BadRequest) as exc:
            if muted(exc):
                log.info("muted in a chat, or its topic closed (%s); nothing was posted",
                         type(exc).__name__)
                return
            if not chat_gone(exc):
                raise
            self._stop_posting(context.application, chat_id, exc)

    def _stop_posting(self, app: App, chat_id: int,
                      exc: TelegramError) -> None:
        log.warning("may not post in a chat (%s)", type(exc).__name__)
        self._remove_schedule(app, chat_id, "may not post in a chat")

    def _checkin_button(self, context: ContextTypes.DEFAULT_TYPE,
                        chat_id: int) -> InlineKeyboardMarkup:
        url = checkin_url(context.bot.username, chat_id)
        return InlineKeyboardMarkup([[InlineKeyboardButton(
            self.content.message("group.start_button"), url=url)]])

    async def _is_admin(self, update: Update,
                        context: ContextTypes.DEFAULT_TYPE) -> bool | None:
        """Whether the sender administers the chat; None if Telegram could not tell."""
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is not None and message.sender_chat is not None and chat is not None:
            return message.sender_chat.id == chat.id  # an anonymous admin posts as the group
        if user is None or chat is None:
            return False
        # One question to Telegram for a burst of one member's commands: reads skip the
        # rate limiter, and a flood of them could draw a "retry after" for the whole bot.
        key = (chat.id, user.id)
        check = self._checking.get(key)
        if check is None:
            check = asyncio.create_task(self._ask_if_admin(context, chat.id, user.id))
            self._checking[key] = check
            check.add_done_callback(lambda _: self._checking.pop(key, None))
        return await asyncio.shield(check)

    async def _ask_if_admin(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int,
                            user_id: int) -> bool | None:
        """Asked of the chat as it is now: a group upgraded to a supergroup is asked about
        there (its members and admins moved with it)."""
        try:
            try:
                member = await context.bot.get_chat_member(self._id_now(chat_id), user_id)
            except ChatMigrated as exc:
                self.migrate(context.application, chat_id, exc.new_chat_id)
                member = await context.bot.get_chat_member(exc.new_chat_id, user_id)
        except TelegramError as exc:
            if isinstance(exc, BadRequest) and _NOT_A_MEMBER in exc.message.lower():
                return False  # no one Telegram finds there: no admin
            log.info("admin check failed: %s", type(exc).__name__)
            return None
        return member.status in ADMIN_STATUSES


def _chat_job_id(name: str, chat_id: int) -> str:
    return f"{name}:{chat_id}"


def _chat_job(name: str, chat_id: int, **job_kwargs: Any) -> dict[str, Any]:
    """The `name` and `job_kwargs` of the chat's one job of this kind. Its name is also its
    APScheduler id, so it is found, and a new one takes its place, by a lookup: PTB's
    `get_jobs_by_name` rebuilds every job of every chat to find it. (APScheduler runs one
    instance per id: a replacement due while the job it replaced still runs is skipped,
    as it would find that chat's tip on its way.)"""
    job_id = _chat_job_id(name, chat_id)
    return {"name": job_id,
            "job_kwargs": {"id": job_id, "replace_existing": True, **job_kwargs}}


def _gone(member: ChatMember) -> bool:
    """Not in the chat: left, banned, or restricted with `is_member` false (how Telegram
    tells of a muted member who left or was removed)."""
    return member.status in GONE_STATUSES or (
        isinstance(member, ChatMemberRestricted) and not member.is_member)
