"""Load: many users complete the whole dialog at once through the real `python -m bot run`.

Every user is a private chat driven by its own thread: /start, then tap a (seeded, biased)
choice on the newest question until the end keyboard appears. The bot is the real process
polling a FakeBotAPI on loopback, with its default AIORateLimiter (30 messages/s overall),
so the run is paced by that limit, not by the bot.

Checked: no errors anywhere, every user finished, every tap got exactly one
answerCallbackQuery, one "Your answer:" edit and one new question (no question sent twice),
every chat got exactly the messages the engine's replies to its taps render to, in order
(none lost, none twice: cards and end advice included, not only the questions), and every
transcript keeps the safety rules (no activity word before "understood" at the
doctor prompt; none at all after a red flag).

CI size: 50 users in at most 120 s. BACKBOT_LOAD_USERS=500 runs the full size through
pytest (the time budget grows by 2 s per user beyond 50), as does `python -m
benchmarks.load --users 500` (about 9 minutes, 10.5 updates/s: the rate limiter allows
30 messages a second, and each update costs about three).
"""

from __future__ import annotations

import html
import json
import os
import random
import sqlite3
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from process_harness import (
    ACTIVITY,
    ANSWERED_MARK,
    BotProcess,
    Dialog,
    FakeBotAPI,
    MessageWatch,
    Tap,
    is_end_keyboard,
    pick_choice,
    run_threads,
    tap,
    wait_quiet,
)

from bot.engine import Event
from bot.loading import load_engine
from bot.telegram_render import TelegramRenderer

ENGINE = load_engine()
RENDER = TelegramRenderer(ENGINE.content)
CI_USERS = 50
LOAD_USERS = int(os.environ.get("BACKBOT_LOAD_USERS", CI_USERS))
CI_TIMEOUT_SECONDS = 120.0  # the whole CI-size run, start-up and shutdown included
# Each user beyond the CI size: about 17 updates at ~10 updates/s under the rate limiter.
SECONDS_PER_EXTRA_USER = 2.0
FIRST_CHAT_ID = 700_000_001
SUGGESTIONS = "suggesting_activities"


@dataclass
class User:
    chat_id: int
    rng: random.Random
    taps: list[Tap] = field(default_factory=list)
    updates: int = 0
    finished: bool = False
    end_state: str | None = None
    red_flag: bool = False
    understood_id: int | None = None  # the doctor-prompt message "understood" was tapped on
    latencies: list[float] = field(default_factory=list)


@dataclass
class LoadResult:
    users: list[User]
    seconds: float
    problems: list[str]
    log_tail: str = ""

    @property
    def updates(self) -> int:
        return sum(u.updates for u in self.users)

    def figures(self) -> dict[str, object]:
        ends = Counter(str(u.end_state) for u in self.users)
        lat = sorted(x for u in self.users for x in u.latencies) or [0.0]
        return {
            "users": len(self.users),
            "updates": self.updates,
            "seconds": round(self.seconds, 1),
            "updates_per_second": round(self.updates / max(self.seconds, 1e-9), 1),
            "reply_p50_s": round(statistics.median(lat), 2),
            "reply_p95_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 2),
            "reply_max_s": round(lat[-1], 2),
            "suggestions": ends.get(SUGGESTIONS, 0),
            "red_flags": sum(u.red_flag for u in self.users),
            "ends": dict(sorted(ends.items())),
            "problems": len(self.problems),
        }

    def summary(self) -> str:
        return "load: " + " ".join(f"{k}={v}" for k, v in self.figures().items())


def drive_user(api: FakeBotAPI, watch: MessageWatch, dialog: Dialog, user: User,
               deadline: float) -> None:
    """/start, then tap the newest question's choice until the end keyboard shows."""
    chat = user.chat_id
    api.send_text(chat, "/start")
    user.updates += 1
    after, not_ref, asked_at = 0, None, time.time()
    while True:
        seen = watch.wait_keyboard(chat, after=after, not_ref=not_ref,
                                   timeout=deadline - time.monotonic())
        if seen is None:
            raise TimeoutError(f"user {chat}: no new question after message {after}")
        user.latencies.append(seen.seen_at - asked_at)
        assert seen.ref is not None, seen
        state = dialog.state_for_ref(seen.ref)
        if is_end_keyboard(seen.buttons):
            user.finished, user.end_state = True, state.name
            return
        offered = [data.rsplit("|", 1)[1] for _, data in seen.buttons]
        choice = pick_choice(state, offered, user.rng)
        user.taps.append(tap(api, seen, state, choice, f"load-{chat}-{len(user.taps)}"))
        user.updates += 1
        asked_at = time.time()
        if choice in state.red_flags:
            user.red_flag = True
        if choice == state.acknowledge:
            user.understood_id = seen.message_id
        after, not_ref = seen.message_id, seen.ref


def expected_texts(taps: list[Tap]) -> list[str]:
    """Every message a chat should get for /start and these taps, in order, as the bot's
    own engine and renderer make them."""
    snapshot, texts = None, []
    for event in [Event("start"), *(Event.answer(t.choice, ref=t.ref) for t in taps)]:
        snapshot, outputs = ENGINE.step(snapshot, event)
        texts += [reply.text for reply in RENDER.replies(outputs)[1]]
    return texts


def check(api: FakeBotAPI, watch: MessageWatch, dialog: Dialog, users: list[User],
          bot: BotProcess, errors: list[BaseException | None]) -> list[str]:
    problems: list[str] = []
    problems += [f"bot log: {line}" for line in bot.error_lines()]
    problems += [f"fake: {error}" for error in api.errors]
    problems += [f"{c.method} failed: {c.description}" for c in api.calls if not c.ok]
    problems += [f"user {u.chat_id}: {e!r}" for u, e in zip(users, errors, strict=True) if e]
    problems += [f"user {u.chat_id} did not finish" for u in users if not u.finished]

    answers = Counter(str(c.params.get("callback_query_id"))
                      for c in api.calls_to("answerCallbackQuery"))
    questions: dict[int, list[str]] = defaultdict(list)
    sent: dict[int, list[str]] = defaultdict(list)
    for c in api.calls_to("sendMessage"):
        sent[int(c.params["chat_id"])].append(str(c.params.get("text")))
        markup = c.params.get("reply_markup")
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            data = markup["inline_keyboard"][0][0]["callback_data"]
            questions[int(c.params["chat_id"])].append(data.split("|")[1])
    edits = Counter((int(c.params["chat_id"]), int(c.params["message_id"]))
                    for c in api.calls_to("editMessageText"))
    tap_ids = {t.callback_id for u in users for t in u.taps}
    problems += [f"answerCallbackQuery for unknown query {q}" for q in answers if q not in tap_ids]

    for user in users:
        chat = user.chat_id
        for t in user.taps:
            if answers[t.callback_id] != 1:
                problems.append(f"user {chat}: tap {t.ref}/{t.choice} answered "
                                f"{answers[t.callback_id]} times")
            if edits[(chat, t.message_id)] != 1:
                problems.append(f"user {chat}: question {t.ref} edited "
                                f"{edits[(chat, t.message_id)]} times")
        refs = questions[chat]
        if len(refs) != len(user.taps) + 1:
            problems.append(f"user {chat}: {len(refs)} questions sent for "
                            f"{len(user.taps)} taps (want one per tap plus /start)")
        duplicated = sorted(ref for ref, n in Counter(refs).items() if n > 1)
        if duplicated:
            problems.append(f"user {chat}: questions sent twice: {duplicated}")
        want, got = expected_texts(user.taps), sent[chat]
        if got != want:
            pairs = zip(want, got, strict=False)  # the shorter list ends the search
            at = next((i for i, (w, g) in enumerate(pairs) if w != g),
                      min(len(want), len(got)))
            problems.append(f"user {chat}: {len(got)} messages sent, {len(want)} expected; "
                            f"first difference at {at}: "
                            f"{(got[at:at + 1] or ['nothing'])[0][:60]!r}")

        for seen in watch.messages(chat):
            shown = {seen.text, str(seen.live.get("text", ""))}  # as sent, and as edited
            before_ack = user.understood_id is None or seen.message_id <= user.understood_id
            for text in shown:
                match = ACTIVITY.search(text)
                if match and (before_ack or user.red_flag):
                    why = "after a red flag" if user.red_flag else "before 'understood'"
                    problems.append(f"user {chat}: activity word {match.group(0)!r} {why} "
                                    f"in message {seen.message_id}: {text[:80]!r}")
        for t in user.taps:
            text = str(api.messages[(chat, t.message_id)].get("text", ""))
            if not (ANSWERED_MARK in text
                    and text.endswith(f"<b>{html.escape(t.label, quote=False)}</b>")):
                problems.append(f"user {chat}: question {t.ref} not marked answered "
                                f"{t.label!r}: {text[-60:]!r}")

    db = sqlite3.connect(f"file:{bot.db_path}?mode=ro", uri=True)
    try:
        stored = dict(db.execute("SELECT user_id, snapshot FROM sessions").fetchall())
    finally:
        db.close()
    for user in users:
        raw = stored.get(user.chat_id)
        if not dialog.consented([(t.state, t.choice) for t in user.taps]):
            if raw is not None:  # "nothing stored before consent"
                problems.append(f"user {user.chat_id}: stored without consent: {raw}")
            continue
        snapshot = json.loads(raw) if raw else {}
        if snapshot.get("state") != user.end_state:
            problems.append(f"user {user.chat_id}: stored state {snapshot.get('state')!r}, "
                            f"shown {user.end_state!r}")
        elif [tuple(a) for a in snapshot.get("answers", [])] != [
                (t.state, t.choice) for t in user.taps]:
            problems.append(f"user {user.chat_id}: stored answers differ from the taps")
    return problems


def time_budget(n_users: int) -> float:
    """Seconds for a whole run of `n_users`: the CI budget, plus some for each extra user."""
    return CI_TIMEOUT_SECONDS + SECONDS_PER_EXTRA_USER * max(0, n_users - CI_USERS)


def run_load(n_users: int, workdir: Path, *, seed: int = 20240601,
             timeout: float | None = None) -> LoadResult:
    """Start the bot, run `n_users` users concurrently, stop it, and check everything
    (within `timeout` seconds; default: `time_budget(n_users)`)."""
    timeout = time_budget(n_users) if timeout is None else timeout
    started = time.monotonic()
    deadline = started + timeout
    dialog = Dialog()
    users = [User(FIRST_CHAT_ID + i, random.Random(seed * 1_000_003 + i))
             for i in range(n_users)]
    workdir.mkdir(parents=True, exist_ok=True)
    with FakeBotAPI() as api, MessageWatch(api) as watch, BotProcess(
            api, workdir / "load.sqlite3", workdir / "bot-stderr.log") as bot:
        bot.start(ready_timeout=max(5.0, min(30.0, timeout / 3)))
        t0 = time.monotonic()
        # A little slack so the shutdown and the checks still fit in `timeout`.
        user_deadline = deadline - min(15.0, timeout / 6)
        errors = run_threads(
            [lambda u=u: drive_user(api, watch, dialog, u, user_deadline) for u in users],
            user_deadline)
        seconds = time.monotonic() - t0
        wait_quiet(api, quiet=0.5, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        code = bot.stop(timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        watch.refresh()
        problems = check(api, watch, dialog, users, bot, errors)
        problems += [f"sent without parse_mode HTML: {call.method} {call.params.get('text')!r}"
                     for call in api.texts_without_html()]
        if code != 0:
            problems.append(f"the bot exited with {code} on SIGTERM")
        problems += [f"the bot exited by itself with {c}" for c in bot.unexpected_exits]
        return LoadResult(users, seconds, problems, bot.log_tail())


def test_load_users_complete_the_dialog_concurrently(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    result = run_load(LOAD_USERS, tmp_path)
    with capsys.disabled():
        print("\n" + result.summary())
    assert result.problems == [], "\n".join(result.problems[:40]) + "\n" + result.log_tail
    assert all(u.finished for u in result.users)
    if len(result.users) >= 20:  # the seeded choices reach both kinds of ending
        reached = sum(u.end_state == SUGGESTIONS for u in result.users) / len(result.users)
        assert 0.25 <= reached <= 0.75, result.summary()
        assert any(u.red_flag for u in result.users), result.summary()
