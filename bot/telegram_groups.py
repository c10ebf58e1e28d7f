"""Groups and channels: a private hand-off, cited tips, the admins' daily tip.

Nothing here asks a health question or shows anyone's answers: the screening only
runs in a private chat.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telegram import ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.content import Card, Content
from bot.deeplinks import checkin_url
from bot.loading import TIP_TAG
from bot.outputs import SourceList
from bot.schedules import ScheduleStore
from bot.telegram_render import TelegramRenderer, escape

log = logging.getLogger(__name__)

GROUPS = filters.ChatType.GROUPS & filters.UpdateType.MESSAGE
TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
ADMIN_STATUSES = {ChatMember.ADMINISTRATOR, ChatMember.OWNER}
GONE_STATUSES = {ChatMember.LEFT, ChatMember.BANNED}


def parse_dailytip(args: list[str], default_zone: str) -> tuple[str, str] | str | None:
    """("HH:MM", zone) to set, "off" to stop, None when malformed; raises on a bad zone."""
    if args == ["off"]:
        return "off"
    if not 1 <= len(args) <= 2 or not (match := TIME.match(args[0])):
        return None
    zone = args[1] if len(args) == 2 else default_zone
    ZoneInfo(zone)  # ZoneInfoNotFoundError / ValueError for unknown or malformed names
    return f"{int(match[1]):02d}:{match[2]}", zone


class GroupFeatures:
    def __init__(self, content: Content, schedules: ScheduleStore, default_zone: str) -> None:
        self.content = content
        self.schedules = schedules
        self.default_zone = default_zone
        self.render = TelegramRenderer(content)
        self.tips: list[Card] = content.cards_tagged(TIP_TAG)

    def register(self, app: Application) -> None:  # type: ignore[type-arg]
        app.add_handler(CommandHandler(["start", "check"], self.on_group_start, filters=GROUPS))
        app.add_handler(CommandHandler("tip", self.on_tip, filters=GROUPS))
        app.add_handler(CommandHandler("sources", self.on_group_sources, filters=GROUPS))
        app.add_handler(CommandHandler("dailytip", self.on_dailytip, filters=GROUPS))
        app.add_handler(MessageHandler(
            filters.UpdateType.CHANNEL_POST & filters.Regex(r"(?i)^/dailytip(@\w+)?(\s|$)"),
            self.on_dailytip))
        app.add_handler(ChatMemberHandler(self.on_my_chat_member,
                                          ChatMemberHandler.MY_CHAT_MEMBER))

    def restore_jobs(self, app: Application) -> None:  # type: ignore[type-arg]
        """Rebuild every daily tip from the database, so a restart loses none."""
        for schedule in self.schedules.all():
            self._schedule_job(app, schedule.chat_id, schedule.hhmm, schedule.tz)

    # -- handlers --

    async def on_group_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        await message.reply_text(self.render.message("group.start"),
                                 reply_markup=self._checkin_button(context, message.chat_id))

    async def on_tip(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        if not self.tips:
            await message.reply_text(self.render.message("tip.none"))
            return
        await message.reply_text(self.render.tip(random.choice(self.tips)),
                                 reply_markup=self._checkin_button(context, message.chat_id))

    async def on_group_sources(self, update: Update,
                               context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is not None:
            block = self.render.block(SourceList(self.content.message("sources.header"),
                                                 tuple(self.content.sources.values())))
            await message.reply_text(block)

    async def on_dailytip(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None or not message.text:
            return
        _, _, addressee = message.text.split()[0].partition("@")
        if addressee and addressee.lower() != (context.bot.username or "").lower():
            return  # a command for another bot in the same channel
        # Channel posts come only from the channel's admins; in groups we ask Telegram.
        if chat.type != ChatType.CHANNEL and not await self._is_admin(update, context):
            await message.reply_text(self.render.message("dailytip.not_admin"))
            return
        try:
            parsed = parse_dailytip(message.text.split()[1:], self.default_zone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = message.text.split()[2]
            await self._reply(message, self.content.message("dailytip.bad_zone").format(
                zone=zone[:64]))
            return
        if parsed is None:
            await self._reply(message, self.content.message("dailytip.usage"))
            return
        app = context.application
        if parsed == "off":
            self.schedules.remove(chat.id)
            self._unschedule(app, chat.id)
            await self._reply(message, self.content.message("dailytip.off"))
            return
        hhmm, zone = parsed
        self.schedules.set(chat.id, hhmm, zone)
        self._schedule_job(app, chat.id, hhmm, zone)
        await self._reply(message, self.content.message("dailytip.set").format(time=hhmm,
                                                                                zone=zone))

    async def on_my_chat_member(self, update: Update,
                                context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat = change.chat
        old, new = change.old_chat_member.status, change.new_chat_member.status
        if new in GONE_STATUSES:
            self.schedules.remove(chat.id)
            self._unschedule(context.application, chat.id)
            log.info("left a chat; its daily tip was removed")
        elif old in GONE_STATUSES and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP):
            try:
                await context.bot.send_message(chat.id, self.render.message("group.intro"))
            except TelegramError as exc:
                log.info("could not introduce myself: %s", type(exc).__name__)

    # -- daily tip jobs --

    async def post_daily_tip(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        job = context.job
        if job is None or job.chat_id is None:
            return
        chat_id = job.chat_id
        tip_ids = [card.id for card in self.tips]
        tip_id = self.schedules.next_tip(chat_id, tip_ids)
        if tip_id is None:
            return
        try:
            await context.bot.send_message(chat_id, self.render.tip(self.content.cards[tip_id]),
                                           reply_markup=self._checkin_button(context, chat_id))
            self.schedules.mark_posted(chat_id, tip_id, tip_ids)
        except (Forbidden, BadRequest) as exc:
            # Not allowed to post there any more (removed, muted, chat gone): stop trying.
            self.schedules.remove(chat_id)
            job.schedule_removal()
            log.warning("daily tip dropped for a chat: %s", type(exc).__name__)

    def _schedule_job(self, app: Application, chat_id: int, hhmm: str,  # type: ignore[type-arg]
                      zone: str) -> None:
        self._unschedule(app, chat_id)
        if app.job_queue is None:
            return
        hour, minute = map(int, hhmm.split(":"))
        app.job_queue.run_daily(self.post_daily_tip,
                                time=dt.time(hour, minute, tzinfo=ZoneInfo(zone)),
                                chat_id=chat_id, name=f"dailytip:{chat_id}")

    @staticmethod
    def _unschedule(app: Application, chat_id: int) -> None:  # type: ignore[type-arg]
        if app.job_queue is None:
            return
        for job in app.job_queue.get_jobs_by_name(f"dailytip:{chat_id}"):
            job.schedule_removal()

    # -- helpers --

    def _checkin_button(self, context: ContextTypes.DEFAULT_TYPE,
                        chat_id: int) -> InlineKeyboardMarkup:
        url = checkin_url(context.bot.username, chat_id)
        return InlineKeyboardMarkup([[InlineKeyboardButton(
            self.content.message("group.start_button"), url=url)]])

    async def _is_admin(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is not None and message.sender_chat is not None and chat is not None:
            return message.sender_chat.id == chat.id  # an anonymous admin posts as the group
        if user is None or chat is None:
            return False
        try:
            member = await context.bot.get_chat_member(chat.id, user.id)
        except TelegramError as exc:
            log.info("admin check failed: %s", type(exc).__name__)
            return False
        return member.status in ADMIN_STATUSES

    @staticmethod
    async def _reply(message: object, text: str) -> None:
        await message.reply_text(escape(text))  # type: ignore[attr-defined]
