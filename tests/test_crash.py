"""Crash: conversations survive SIGKILLs of the real `python -m bot run` at random points.

M users talk to the bot concurrently while the bot is killed with SIGKILL at seeded random
points (a random number of Bot API calls, or a random delay, after each start, start-up
included; or, for some lives, at a random session write: just before it, while SQLite is
writing, or just after it with no reply sent, see tests/crash_hooks) and restarted on the
same SQLite file. A client whose tap (or /start) was lost
to a kill sends /start and carries on from the question the bot shows ("Welcome back");
one whose update is still unconfirmed just waits for the next process to get it.

Redelivery: the fake, like Telegram, forgets an update only when a later getUpdates
confirms it with a higher offset. PTB confirms a batch with its next getUpdates, so a kill
before that redelivers the batch to the next process; a kill after it (but before the
handlers ran) loses it. A redelivered tap for a question already answered is told the
question was moved past (the ref no longer matches) and must not be applied twice.

Checked once every conversation has ended: each answer the bot acknowledged (it edited
that question to "Your answer: ...", which it does only after storing the answer) is in
the user's stored snapshot at its position; the stored answers replay through the engine
to the stored state (nothing applied twice, nothing skipped); every stored state is an end
state; PRAGMA integrity_check is "ok"; no errors in the bot's log or the fake; every kill
asked for happened. Safety, for every conversation: no message up to the doctor prompt
"understood" was tapped on names an activity, and none at all unless the stored answers
hold that "understood" and no red flag.

CI size: 10 conversations, 10 kills, in at most 150 s. BACKBOT_CRASH_CONVERSATIONS and
BACKBOT_CRASH_KILLS set other sizes (the time budget grows by 3 s per conversation and per
kill beyond the CI size): 100 and 50 is the full size, as is `python -m benchmarks.crash
--conversations 100`.
"""

from __future__ import annotations

import html
import json
import os
import random
import sqlite3
import threading
import time
from collections import Counter
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
    SlowConfirmAPI,
    Tap,
    is_end_keyboard,
    parse_ref,
    pick_choice,
    run_threads,
    tap,
    wait_quiet,
)

from bot.engine import Engine, Event
from bot.loading import load_engine

CI_CONVERSATIONS = 10
CI_KILLS = 10
CRASH_CONVERSATIONS = int(os.environ.get("BACKBOT_CRASH_CONVERSATIONS", CI_CONVERSATIONS))
CRASH_KILLS = int(os.environ.get("BACKBOT_CRASH_KILLS", CI_KILLS))
CI_TIMEOUT_SECONDS = 150.0  # the whole CI-size run
SECONDS_PER_EXTRA = 3.0  # for each conversation and each kill beyond the CI size
POLL_SECONDS = 1.0  # how often a waiting client checks whether its request was lost
CALLS_PER_CONVERSATION = 50  # Bot API calls (not getUpdates) a conversation makes, about
STARTUP_KILL_SHARE = 0.2
# Lives that SIGKILL themselves at their n-th session write (before, during or after it;
# tests/crash_hooks): the killer's own kills land between Bot API calls, these inside a
# write's way from update to reply.
WRITE_KILL_SHARE = 0.4
WRITE_KILL_POINTS = ("before", "during", "after")
HOOKS = Path(__file__).resolve().parent / "crash_hooks"
CONFIRM_DELAY = 0.2  # a round trip before a fetched batch is confirmed (see SlowConfirmAPI)
FIRST_CHAT_ID = 800_000_001
# on a stale tap's answer
MOVED_ON = load_engine().content.message("button.moved_on")


@dataclass
class Conversation:
    chat_id: int
    rng: random.Random
    taps: list[Tap] = field(default_factory=list)
    starts: int = 0
    finished: bool = False
    end_state: str | None = None


@dataclass
class CrashResult:
    conversations: list[Conversation]
    kills: int
    starts: int
    seconds: float
    stale_answers: int
    acknowledged: int
    stored: int
    redelivered: int
    problems: list[str]
    log_tail: str = ""
    write_kills: int = 0  # of `kills`: in a session write (before, during or after it)

    def figures(self) -> dict[str, object]:
        taps = sum(len(c.taps) for c in self.conversations)
        return {
            "conversations": len(self.conversations),
            "kills": self.kills,
            "kills_in_writes": self.write_kills,
            "bot_starts": self.starts,
            "seconds": round(self.seconds, 1),
            "taps": taps,
            "acknowledged": self.acknowledged,
            "stored_answers": self.stored,  # acknowledged ones plus any stored unseen
            "redelivered_updates": self.redelivered,
            "moved_on": self.stale_answers,  # redelivered or outdated taps refused
            "start_resends": sum(c.starts - 1 for c in self.conversations),
            "ends": dict(sorted(Counter(str(c.end_state) for c in self.conversations).items())),
            "problems": len(self.problems),
        }

    def summary(self) -> str:
        return "crash: " + " ".join(f"{k}={v}" for k, v in self.figures().items())


def drive(api: FakeBotAPI, watch: MessageWatch, dialog: Dialog, conv: Conversation,
          lost_below: list[int], deadline: float) -> None:
    """Tap through the dialog; when a request was lost to a kill, /start and carry on.

    `lost_below` gets one entry per kill: every update with a smaller id had been
    confirmed by then, so it will never be handed out again. A request of ours below it,
    with no reply yet, is lost; one above it is redelivered to the next process, so we
    only wait (under the rate limiter a reply can take long: resending /start on a timer
    would snowball).
    """
    chat = conv.chat_id
    after, not_ref = 0, None

    def start() -> tuple[int, int]:
        kills_before = len(lost_below)
        conv.starts += 1
        return api.send_text(chat, "/start"), kills_before

    request, kills_before = start()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"conversation {chat} did not end in time")
        seen = watch.wait_keyboard(chat, after=after, not_ref=not_ref,
                                   timeout=min(POLL_SECONDS, left))
        if seen is None:
            if any(request < below for below in lost_below[kills_before:]):
                # Lost to a kill: ask where we are ("Welcome back" and the question).
                after, not_ref = watch.newest_id(chat), None
                request, kills_before = start()
            continue
        assert seen.ref is not None, seen
        state = dialog.state_for_ref(seen.ref)
        if is_end_keyboard(seen.buttons):
            conv.finished, conv.end_state = True, state.name
            return
        offered = [data.rsplit("|", 1)[1] for _, data in seen.buttons]
        choice = pick_choice(state, offered, conv.rng)
        kills_before = len(lost_below)
        conv.taps.append(tap(api, seen, state, choice, f"crash-{chat}-{len(conv.taps)}"))
        request = conv.taps[-1].update_id
        after, not_ref = seen.message_id, seen.ref


def killer(api: SlowConfirmAPI, bot: BotProcess, rng: random.Random, kills: int,
           done: threading.Event, deadline: float, gap: int, lost_below: list[int]) -> None:
    """Kill the bot `kills` times at random points, restarting it on the same DB each time.

    Most kills land right after the bot's n-th Bot API call (n random up to `gap`, getUpdates
    not counted) once it polls, so they spread over the whole run; the rest land at a
    random moment of start-up. After each kill, `lost_below` gets the first update id
    not yet confirmed (see drive).
    """

    def pause(seconds: float) -> bool:
        return done.wait(max(0.0, min(seconds, deadline - time.monotonic())))

    for left in range(kills - 1, -1, -1):
        if bot.self_kill_armed:  # wait for it to die in a write (or kill it if stalled)
            stalled = time.monotonic() + 10.0
            while (bot.running and not done.is_set()
                   and time.monotonic() < min(stalled, deadline)):
                time.sleep(0.005)
        elif rng.random() < STARTUP_KILL_SHARE:
            if pause(rng.uniform(0.0, 1.5)):
                return
        else:
            bot.wait_ready(30.0)  # if it died by itself instead, kill() records that
            wanted, seen = rng.randint(1, gap), len(api.calls)
            stalled = time.monotonic() + 10.0  # clients all waiting: kill anyway
            while not done.is_set() and time.monotonic() < min(stalled, deadline):
                new = api.calls[seen:]
                seen += len(new)
                wanted -= sum(c.method != "getUpdates" for c in new)
                if wanted <= 0:
                    break
                time.sleep(0.001)
        if done.is_set() or time.monotonic() >= deadline:
            return
        bot.kill()
        time.sleep(api.confirm_delay + 0.1)  # a confirmation already in flight lands first
        lost_below.append(api.confirmed_below())
        # The next life may kill itself in a write; never the last one (it must finish).
        bot.self_kill_armed = left > 0 and rng.random() < WRITE_KILL_SHARE
        bot.extra_env.pop("BACKBOT_CRASH_IN_WRITE", None)
        if bot.self_kill_armed:
            point = rng.choice(WRITE_KILL_POINTS)
            bot.extra_env.update(BACKBOT_CRASH_IN_WRITE=f"{rng.randint(1, gap // 3 + 1)}:{point}",
                                 PYTHONPATH=os.pathsep.join([str(HOOKS), str(HOOKS.parents[1])]))
        bot.start(ready_timeout=None)


def acknowledged(api: FakeBotAPI, t: Tap) -> bool:
    """The bot showed this answer as taken: it edited the question to "Your answer: ..."."""
    text = str(api.messages[(t.chat_id, t.message_id)].get("text", ""))
    return ANSWERED_MARK in text and text.endswith(
        f"<b>{html.escape(t.label, quote=False)}</b>")


def last_check_in(engine: Engine, acked: list[Tap]) -> list[Tap]:
    """The acknowledged taps of the check-in the stored row can hold. One that ended
    before consent (a "stop") stored nothing, and the next /start asks the same first
    question under the same ref: its taps are no answers to look for in the row."""
    check_in: list[Tap] = []
    snapshot: dict | None = engine.new_snapshot()
    for t in acked:
        check_in.append(t)
        if snapshot is None or snapshot["state"] != t.state:
            snapshot = None  # not a path: left for the checks to report
            continue
        snapshot, _ = engine.step(snapshot, Event.answer(t.choice, ref=engine.ref(snapshot)))
        if engine.is_finished(snapshot) and not engine.has_consent(snapshot):
            check_in, snapshot = [], engine.new_snapshot()
    return check_in


def check(api: FakeBotAPI, watch: MessageWatch, dialog: Dialog, bot: BotProcess,
          conversations: list[Conversation], errors: list[BaseException | None],
          ) -> tuple[list[str], int, int]:
    engine = load_engine()
    problems: list[str] = []
    problems += [f"bot log: {line}" for line in bot.error_lines()]
    problems += [f"fake: {error}" for error in api.errors]
    problems += [f"conversation {c.chat_id}: {e!r}"
                 for c, e in zip(conversations, errors, strict=True) if e]
    problems += [f"conversation {c.chat_id} did not end" for c in conversations
                 if not c.finished]

    db = sqlite3.connect(f"file:{bot.db_path}?mode=ro", uri=True)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        rows = dict(db.execute("SELECT user_id, snapshot FROM sessions").fetchall())
    finally:
        db.close()
    if integrity != [("ok",)]:
        problems.append(f"integrity_check: {integrity}")

    acked_total = stored_total = 0
    for conv in conversations:
        chat = conv.chat_id
        raw = rows.get(chat)
        acked = [t for t in conv.taps if acknowledged(api, t)]
        acked_total += len(acked)
        check_in = last_check_in(engine, acked)
        acked_answers = [(t.state, t.choice) for t in check_in]
        if raw is None:  # nothing is stored before consent (and "stop" stores nothing)
            if dialog.consented(acked_answers):
                problems.append(f"conversation {chat}: no stored session, acknowledged "
                                f"{acked_answers}")
            continue
        snapshot = json.loads(raw)
        answers = [tuple(pair) for pair in snapshot.get("answers", [])]
        stored_total += len(answers)
        if not dialog.consented(answers):
            problems.append(f"conversation {chat}: stored without consent: {answers}")
        if snapshot.get("state") not in dialog.final:
            problems.append(f"conversation {chat}: stored state {snapshot.get('state')!r} "
                            "is not an end state")
        if snapshot.get("state") != conv.end_state:
            problems.append(f"conversation {chat}: stored state {snapshot.get('state')!r}, "
                            f"last shown {conv.end_state!r}")
        # Replay: every stored answer applies in turn and leads to the stored state.
        replay = engine.new_snapshot(run=snapshot.get("run", 0))  # when the check-in began
        for state, choice in answers:
            if replay["state"] != state:
                problems.append(f"conversation {chat}: stored answer {state}/{choice} does "
                                f"not follow from the answers before it ({replay['state']})")
                break
            replay, _ = engine.step(replay, Event.answer(choice, ref=engine.ref(replay)))
        else:
            if replay != snapshot:
                problems.append(f"conversation {chat}: replayed answers give {replay}, "
                                f"stored {snapshot}")
        # Every acknowledged answer is stored, at the position its question had; and no
        # question is acknowledged twice (once stored, its ref is gone: a second
        # acknowledgement means the first answer was lost, or applied twice).
        acked_refs: Counter[str] = Counter()
        for t in check_in:
            acked_refs[t.ref] += 1
            if acked_refs[t.ref] == 2:
                problems.append(f"conversation {chat}: question {t.ref} ({t.state}) "
                                "acknowledged twice")
            position, _ = parse_ref(t.ref)
            stored = answers[position] if position < len(answers) else None
            if stored != (t.state, t.choice):
                problems.append(f"conversation {chat}: acknowledged {t.state}/{t.choice} "
                                f"(ref {t.ref}) but stored #{position} is {stored}")
    for conv in conversations:
        raw = rows.get(conv.chat_id)
        answers = [tuple(pair) for pair in json.loads(raw).get("answers", [])] if raw else []
        problems += check_safety(watch, dialog, conv, answers)
    return problems, acked_total, stored_total


def check_safety(watch: MessageWatch, dialog: Dialog, conv: Conversation,
                 answers: list[tuple[str, ...]]) -> list[str]:
    """Over every message of the conversation, kills or not: no activity named up to the
    doctor prompt "understood" was tapped on (the last one tapped: a tap lost to a kill is
    tapped again on the prompt shown anew), and none at all unless the stored answers hold
    that "understood" and no red flag."""
    chat, doctor = conv.chat_id, dialog.doctor_prompt
    red = any(choice in dialog.by_name[state].red_flags for state, choice in answers)
    understood = (doctor.name, doctor.acknowledge) in answers
    acked_on = [t.message_id for t in conv.taps
                if (t.state, t.choice) == (doctor.name, doctor.acknowledge)]
    problems = []
    if understood and not acked_on:
        problems.append(f"conversation {chat}: {doctor.acknowledge!r} stored, never tapped")
    boundary = max(acked_on, default=0)
    for seen in watch.messages(chat):
        before_ack = seen.message_id <= boundary
        for text in (seen.text, str(seen.live.get("text", ""))):  # as sent, and as edited
            match = ACTIVITY.search(text)
            if match and (red or not understood or before_ack):
                why = ("before 'understood' was tapped" if before_ack and understood
                       and not red else f"with red flag={red}, understood={understood}")
                problems.append(f"conversation {chat}: activity word {match.group(0)!r} "
                                f"{why} in message {seen.message_id}: {text[:80]!r}")
    return problems


def time_budget(n_conversations: int, kills: int) -> float:
    """Seconds for a whole run: the CI budget, plus some per extra conversation and kill."""
    return CI_TIMEOUT_SECONDS + SECONDS_PER_EXTRA * (max(0, n_conversations - CI_CONVERSATIONS)
                                                     + max(0, kills - CI_KILLS))


def run_crash(n_conversations: int, kills: int, workdir: Path, *, seed: int = 7,
              timeout: float | None = None) -> CrashResult:
    """Run the conversations under `kills` SIGKILLs and check everything (within `timeout`
    seconds; default: `time_budget(n_conversations, kills)`)."""
    timeout = time_budget(n_conversations, kills) if timeout is None else timeout
    started = time.monotonic()
    deadline = started + timeout
    dialog = Dialog()
    conversations = [Conversation(FIRST_CHAT_ID + i, random.Random(seed * 1_000_003 + i))
                     for i in range(n_conversations)]
    workdir.mkdir(parents=True, exist_ok=True)
    done = threading.Event()
    with SlowConfirmAPI(confirm_delay=CONFIRM_DELAY) as api, MessageWatch(api) as watch, BotProcess(
            api, workdir / "crash.sqlite3", workdir / "bot-stderr.log") as bot:
        bot.start(ready_timeout=30.0)
        t0 = time.monotonic()
        user_deadline = deadline - min(20.0, timeout / 6)
        # Random gaps averaging the calls of the whole run over the kills.
        gap = max(2, 2 * CALLS_PER_CONVERSATION * n_conversations // max(1, kills))
        lost_below: list[int] = []
        chaos = threading.Thread(
            target=killer,
            args=(api, bot, random.Random(seed), kills, done, user_deadline, gap, lost_below),
            name="killer", daemon=True)
        chaos.start()
        try:
            errors = run_threads(
                [lambda c=c: drive(api, watch, dialog, c, lost_below, user_deadline)
                 for c in conversations], user_deadline)
        finally:
            done.set()
            chaos.join(timeout=40)
        seconds = time.monotonic() - t0
        if not bot.running:
            bot.start(ready_timeout=30.0)
        wait_quiet(api, quiet=0.5, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        code = bot.stop(timeout=10.0)
        watch.refresh()
        problems, acked, stored = check(api, watch, dialog, bot, conversations, errors)
        if code != 0:
            problems.append(f"the bot exited with {code} on SIGTERM")
        problems += [f"the bot exited by itself with {c}" for c in bot.unexpected_exits]
        if bot.kills != kills:
            problems.append(f"{bot.kills} of the {kills} kills asked for happened")
        stale = sum(MOVED_ON in str(c.params.get("text", ""))
                    for c in api.calls_to("answerCallbackQuery"))
        return CrashResult(conversations, bot.kills, bot.starts, seconds, stale, acked,
                           stored, api.redelivered, problems, bot.log_tail(),
                           write_kills=bot.write_kills)


def test_crash_acknowledged_answers_survive_sigkill(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = run_crash(CRASH_CONVERSATIONS, CRASH_KILLS, tmp_path)
    with capsys.disabled():
        print("\n" + result.summary())
    assert result.problems == [], "\n".join(result.problems[:40]) + "\n" + result.log_tail
    assert result.kills == CRASH_KILLS, result.summary()


def test_the_check_looks_for_the_answers_of_the_last_check_in_only() -> None:
    """A "stop" acknowledged before a kill stores nothing; the next /start asks the first
    question again under the same ref, and only that check-in's answers are in the row."""
    engine = load_engine()
    welcome = engine.ref(engine.new_snapshot())

    def acked(message_id: int, choice: str, ref: str = welcome,
              state: str = "welcome") -> Tap:
        return Tap(1, message_id, ref, state, choice, choice, "", message_id, 0.0)

    stopped, agreed = acked(1, "stop"), acked(2, "agree")
    after = engine.step(engine.new_snapshot(), Event.answer("agree", ref=welcome))[0]
    first_no = acked(3, "no", ref=engine.ref(after), state=after["state"])
    assert last_check_in(engine, [stopped, agreed, first_no]) == [agreed, first_no]
    assert last_check_in(engine, [stopped]) == []
    # an agreed check-in is never cut, whatever follows
    assert last_check_in(engine, [agreed, first_no]) == [agreed, first_no]
