"""backbot benchmarks: each figure beside a baseline measured in the same run.

    python -m benchmarks [--users 300] [--rounds 9] [--interleaved-rounds 5]
                         [--sessions 10000 100000] [--stored 1000000]
                         [--json benchmarks/results/latest.json] [--quick]

- throughput and latency: full dialogs from raw update JSON through
  Application.process_update (in-process recording Bot API, real SQLite store) against a
  floor Application that makes exactly the same Bot API calls for each update (every tap:
  answer the callback query, edit the question, send the next message) with no dialog
  logic and no storage. The floor replays each recorded call with its recorded parameters
  (parse_mode, link_preview_options... included), and both runs' calls are checked equal
  to the recording, so the two really make the same calls. Both yield to the event loop
  after each update, as under polling, so due JobQueue jobs (the WAL checkpoint) run.
  Rounds of one run each, then rounds of both taking turns update by update in one loop;
- memory: resident growth per stored active session (/start, then "agree");
- start-up: process start to the first getUpdates with 0 and with many stored sessions;
- engine: one engine step alone (see benchmarks/engine.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from telegram import InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.ext import AIORateLimiter, ApplicationBuilder, TypeHandler

from benchmarks import instructions
from benchmarks.engine import random_walk
from benchmarks.fake_request import Call, Json, RecordingRequest
from bot.config import load_settings
from bot.loading import load_engine
from bot.store import SessionStore, open_database
from bot.telegram_app import CHECKPOINT_EVERY_SECONDS, build_application
from bot.telegram_types import App

FULL_PATH = ["agree", *["no"] * 10, "pinched_nerve", "yes", "next",  # ten screening questions
             "understood", "yes", "yes", "yes", "no"]
REPO = Path(__file__).resolve().parent.parent
TAP_CALLS = ("answerCallbackQuery", "editMessageText", "sendMessage")  # what every tap must make
# Object-valued Bot API parameters the floor turns back into PTB objects to replay them.
PTB_OBJECTS: dict[str, Any] = {"reply_markup": InlineKeyboardMarkup,
                               "link_preview_options": LinkPreviewOptions}
# The oldest a replayed update's messages get (see `our_app`).
REPLAYED_WITHIN_SECONDS = 86_400
JOB_EVENTS = {EVENT_JOB_EXECUTED: "run", EVENT_JOB_MISSED: "missed", EVENT_JOB_ERROR: "failed"}


def settings_for(db: Path) -> Any:
    return load_settings({"TELEGRAM_BOT_TOKEN": "1:bench", "BACKBOT_DB": str(db)},
                         env_file=None)


def no_throttle() -> AIORateLimiter:
    return AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=0)


def our_app(store: SessionStore, db: Path, checkpoint_every: float = CHECKPOINT_EVERY_SECONDS,
            ) -> App:
    """Our bot as `backbot run` builds it, over `store`, with an in-process recording Bot
    API (`app.bot.request`) and no throttling.

    The recorded updates are replayed minutes after they were recorded, their messages
    dated then: the allowance for the clocks differing covers that, as against Telegram
    a question is never dated before the answer that brought it."""
    app = build_application(settings_for(db), load_engine(), store,
                            rate_limiter=no_throttle(), request=RecordingRequest(),
                            checkpoint_every=checkpoint_every)
    app.bot_data["backbot"].clock_allowance = REPLAYED_WITHIN_SECONDS
    return app


def start_update(update_id: int, user: int) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": 1, "date": 0, "text": "/start",
        "chat": {"id": user, "type": "private", "first_name": "U"},
        "from": {"id": user, "is_bot": False, "first_name": "U"},
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}


def tap_update(update_id: int, user: int, message: dict[str, Any], data: str) -> dict[str, Any]:
    return {"update_id": update_id, "callback_query": {
        "id": str(update_id), "chat_instance": "c", "data": data,
        "from": {"id": user, "is_bot": False, "first_name": "U"}, "message": message}}


def question_message(user: int, made: list[Call], last_id: int) -> Json | None:
    """The last message with buttons among one update's calls (the recorder numbers each
    chat's messages from `last_id` + 1), as a callback query carries it. Its date is real:
    PTB takes a message dated 0 for an inaccessible one, which the bot does not edit."""
    question = None
    for name, params in made:
        if name == "sendMessage":
            last_id += 1
            if "reply_markup" in params:
                question = {"message_id": last_id, "date": int(time.time()),
                            "chat": {"id": user, "type": "private", "first_name": "U"},
                            "text": params["text"], "reply_markup": params["reply_markup"]}
    return question


def choice_data(message: dict[str, Any], choice: str) -> str:
    return str(next(b["callback_data"] for row in message["reply_markup"]["inline_keyboard"]
                    for b in row if b["callback_data"].endswith("|" + choice)))


async def record_dialogs(users: int, db: Path) -> tuple[list[Json], dict[int, list[Call]]]:
    """Run our bot once to get the raw updates and the calls it makes for each."""
    app = our_app(SessionStore(open_database(db)), db)
    request: RecordingRequest = app.bot.request
    updates: list[Json] = []
    calls: dict[int, list[Call]] = {}
    last_question: dict[int, Json] = {}
    async with app:
        for step in range(len(FULL_PATH) + 1):  # round-robin: every user takes one step
            for user in range(1, users + 1):
                uid = len(updates) + 1
                if step == 0:
                    raw = start_update(uid, user)
                else:
                    message = last_question[user]
                    raw = tap_update(uid, user, message, choice_data(message,
                                                                     FULL_PATH[step - 1]))
                before, last_id = len(request.calls), request._next_id.get(user, 0)
                await app.process_update(Update.de_json(raw, app.bot))
                calls[uid] = request.calls[before:]
                question = question_message(user, calls[uid], last_id)
                if question is not None:
                    last_question[user] = question
                updates.append(raw)
    check_taps(updates, calls)
    return updates, calls


def check_taps(updates: list[Json], calls: dict[int, list[Call]]) -> None:
    """Every tap answered the callback, edited the question and sent the next message."""
    for raw in updates:
        if "callback_query" in raw:
            made = {name for name, _ in calls[raw["update_id"]]}
            missing = [name for name in TAP_CALLS if name not in made]
            if missing:
                raise RuntimeError(f"tap update {raw['update_id']} made no {missing}: "
                                   f"{sorted(made)}")


def same_calls(got: list[Call], want: list[Call], who: str) -> None:
    """`who` made exactly the recorded Bot API calls, parameters included."""
    def norm(made: list[Call]) -> list[tuple[str, str]]:
        return [(name, json.dumps(params, sort_keys=True, default=str))
                for name, params in made]

    got_n, want_n = norm(got), norm(want)
    if got_n != want_n:
        first = next((i for i, (a, b) in enumerate(zip(got_n, want_n, strict=False))
                      if a != b), min(len(got_n), len(want_n)))
        raise RuntimeError(f"{who} made other calls than recorded ({len(got_n)} vs "
                           f"{len(want_n)}); first difference at call {first}: "
                           f"{got_n[first:first + 1]} vs {want_n[first:first + 1]}")


def snake(method: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()  # editMessageText -> edit_message_text


def replay_kwargs(name: str, params: dict[str, Any]) -> dict[str, Any]:
    kwargs = {}
    for key, value in params.items():
        if isinstance(value, dict | list):
            if key not in PTB_OBJECTS:
                raise RuntimeError(f"the floor cannot replay {name}({key}=...)")
            value = PTB_OBJECTS[key].de_json(value, None)
        kwargs[key] = value
    return kwargs


def floor_app(calls: dict[int, list[Call]]) -> tuple[App, RecordingRequest]:
    """Makes, for each update, the very calls our bot made: the least a bot can do.

    No Defaults: each call is replayed through the Bot method of its name with the
    parameters our bot sent (parse_mode and link_preview_options too, whether they came
    from our Defaults or per call), so the floor follows whatever the bot does."""
    request = RecordingRequest()
    app = (ApplicationBuilder().token("1:bench").request(request).rate_limiter(no_throttle())
           .concurrent_updates(True).build())
    plans = {uid: [(getattr(app.bot, snake(name)), replay_kwargs(name, params))
                   for name, params in made] for uid, made in calls.items()}

    async def replay(update: Update, context: Any) -> None:
        for method, kwargs in plans[update.update_id]:
            await method(**kwargs)

    app.add_handler(TypeHandler(Update, replay))
    return app, request


async def timed_run(app: App, updates: list[Json],
                    ) -> tuple[list[float], list[Call], Counter[str]]:
    """Both applications run as `backbot run` does (post_init, jobs started).

    The recording request never suspends, so without a yield the loop would run no
    JobQueue job until the end (APScheduler then skips the late ones as missed). Under
    polling the loop gets a turn between updates: so here, after each update, one
    `asyncio.sleep(0)`, inside the timed span, so a job's turn counts against the update
    it delays. A due job needs a few turns (timer, APScheduler's wakeup, its task, PTB's
    task), one per update: it runs within a few updates of being due. Returns the times,
    the Bot API calls the updates made and the job events (run, missed, failed)."""
    times = []
    clock = time.perf_counter
    jobs: Counter[str] = Counter()
    if app.job_queue is not None:
        app.job_queue.scheduler.add_listener(lambda event: jobs.update([JOB_EVENTS[event.code]]),
                                             sum(JOB_EVENTS))
    request: RecordingRequest = app.bot.request
    async with app:
        if app.post_init is not None:
            await app.post_init(app)
        await app.start()
        since = len(request.calls)
        for raw in updates:
            t0 = clock()
            await app.process_update(Update.de_json(raw, app.bot))
            await asyncio.sleep(0)
            times.append(clock() - t0)
        made = request.calls[since:]
        await app.stop()
    return times, made, jobs


async def interleaved_run(ours: App, floor: App, updates: list[Json],
                          ) -> tuple[list[float], list[float], list[Call], list[Call]]:
    """Both applications started in one event loop, taking turns update by update (which
    goes first alternating), each timed as in `timed_run`: the machine's drift then
    falls on both alike, within a millisecond, where runs back to back see it seconds
    apart. Each evicts the other's data from the CPU caches, so both are slower than
    alone; and a due job of ours may run in the floor's turn. Returns each one's times
    and the Bot API calls each made."""
    apps = (ours, floor)
    times: tuple[list[float], list[float]] = ([], [])
    clock = time.perf_counter
    async with ours, floor:
        since = []
        for app in apps:
            if app.post_init is not None:
                await app.post_init(app)
            await app.start()
            since.append(len(app.bot.request.calls))
        for n, raw in enumerate(updates):
            for side in (n % 2, 1 - n % 2):
                app = apps[side]
                t0 = clock()
                await app.process_update(Update.de_json(raw, app.bot))
                await asyncio.sleep(0)
                times[side].append(clock() - t0)
        made = [app.bot.request.calls[start:]
                for app, start in zip(apps, since, strict=True)]
        for app in apps:
            await app.stop()
    return times[0], times[1], made[0], made[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """Collect, then freeze what exists so far (imports, the recording, the other app's
    leftovers): the garbage collector's gen-2 passes in a run then scan only what that
    run's app built. Without it one 150 ms pass over the shared heap lands at random in
    one app's run and decides its p99.9."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_ours(updates: list[Json], db: Path, checkpoint_every: float = CHECKPOINT_EVERY_SECONDS,
             ) -> tuple[list[float], list[Call], Counter[str]]:
    """One timed run of our bot over the updates, on a fresh database."""
    with settled_heap():
        app = our_app(SessionStore(open_database(db)), db, checkpoint_every)
        return asyncio.run(timed_run(app, updates))


def run_floor(updates: list[Json], calls: dict[int, list[Call]],
              ) -> tuple[list[float], list[Call], Counter[str]]:
    """One timed run of the floor over the same updates."""
    with settled_heap():
        return asyncio.run(timed_run(floor_app(calls)[0], updates))


def throughput(users: int, rounds: int, workdir: Path,
               interleaved_rounds: int = 0) -> dict[str, Any]:
    """Rounds of one run each, back to back, which goes first alternating: this machine's
    speed drifts by up to 2x within seconds (a fixed loop measured 7 to 16 ms in one
    second), so each ratio is taken within its pair and the median over pairs reported,
    with the lowest and highest beside it. One unrecorded run of each goes first. Then,
    as a check on the drift, rounds of both taking turns in one loop (`interleaved_run`)."""
    updates, calls = asyncio.run(record_dialogs(users, workdir / "record.sqlite3"))
    recorded = [call for raw in updates for call in calls[raw["update_id"]]]
    pairs: list[tuple[list[float], list[float]]] = []
    jobs: Counter[str] = Counter()
    # The first run of each in a process is the slowest (measured: the floor's 4.2 s
    # against 3.4 s after, ours 4.7 against 4.2).
    warm_up = sum(run_ours(updates, workdir / "warm-up.sqlite3")[0])
    run_floor(updates, calls)
    # In production the WAL checkpoint runs every 5 s, some 5,000 updates at this rate:
    # about one per run. A run may take less than 5 s, so the interval here is half a
    # run, and each run pays for at least one checkpoint.
    checkpoint_every = warm_up / 2

    def ours(n: int) -> list[float]:
        times, made, ran = run_ours(updates, workdir / f"ours{n}.sqlite3", checkpoint_every)
        same_calls(made, recorded, "our bot")
        jobs.update(ran)
        return times

    def floor() -> list[float]:
        times, made, _ = run_floor(updates, calls)
        same_calls(made, recorded, "the floor")
        return times

    for n in range(rounds):
        if n % 2:
            floor_times = floor()
            pairs.append((ours(n), floor_times))
        else:
            pairs.append((ours(n), floor()))  # left to right: ours first
    mixed: list[tuple[list[float], list[float]]] = []
    for n in range(interleaved_rounds):
        with settled_heap():
            db = workdir / f"mixed{n}.sqlite3"
            ours_times, floor_times, ours_made, floor_made = asyncio.run(interleaved_run(
                our_app(SessionStore(open_database(db)), db, checkpoint_every),
                floor_app(calls)[0], updates))
        same_calls(ours_made, recorded, "our bot (interleaved)")
        same_calls(floor_made, recorded, "the floor (interleaved)")
        mixed.append((ours_times, floor_times))
    result: dict[str, Any] = {
        "updates": len(updates), "taps": sum("callback_query" in raw for raw in updates),
        "api_calls": len(recorded), "rounds": rounds,
        **{f"calls_{name}": n for name, n in sorted(Counter(n for n, _ in recorded).items())},
        "checkpoint_every_s": round(checkpoint_every, 2),
        "ours_jobs_run": jobs["run"], "ours_jobs_missed": jobs["missed"],
        "ours_updates_per_s": round(statistics.median(len(o) / sum(o) for o, _ in pairs)),
        "floor_updates_per_s": round(statistics.median(len(f) / sum(f) for _, f in pairs))}
    result.update(ratio_spread("throughput_ratio", pairs))
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999)):
        ours_q = [percentile(o, q) for o, _ in pairs]
        floor_q = [percentile(f, q) for _, f in pairs]
        result[f"latency_{name}_ms"] = round(statistics.median(ours_q) * 1000, 3)
        result[f"floor_{name}_ms"] = round(statistics.median(floor_q) * 1000, 3)
        result[f"latency_{name}_ratio"] = round(
            statistics.median(a / b for a, b in zip(ours_q, floor_q, strict=True)), 3)
    if mixed:
        result["interleaved_rounds"] = len(mixed)
        result.update(ratio_spread("interleaved_throughput_ratio", mixed))
        result["interleaved_latency_p99_ratio"] = round(statistics.median(
            percentile(o, 0.99) / percentile(f, 0.99) for o, f in mixed), 3)
    return result


def ratio_spread(name: str, runs: list[tuple[list[float], list[float]]]) -> dict[str, float]:
    """The floor's total time over ours in each round: the median, lowest and highest."""
    ratios = [sum(f) / sum(o) for o, f in runs]
    return {name: round(statistics.median(ratios), 3),
            f"{name}_lowest": round(min(ratios), 3), f"{name}_highest": round(max(ratios), 3)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


WARM_UP_USERS = 1000


async def memory_growth(sessions: int, db: Path) -> float:
    """Resident growth per stored session: each user sends /start and taps "agree" (the
    consent: nothing is stored before it), so each leaves a session row behind."""
    store = SessionStore(open_database(db))
    app = our_app(store, db)
    request: RecordingRequest = app.bot.request
    update_ids = iter(range(1, 10 * (sessions + WARM_UP_USERS)))

    async def agree(user: int) -> None:
        await app.process_update(Update.de_json(start_update(next(update_ids), user), app.bot))
        question = question_message(user, request.calls, 0)
        if question is None:
            raise RuntimeError(f"/start from user {user} asked no question")
        uid = next(update_ids)
        await app.process_update(Update.de_json(
            tap_update(uid, user, question, choice_data(question, "agree")), app.bot))
        request.calls.clear()  # the recorder itself must not count
        request.forget_chat(user)

    async with app:
        # Warm up on other users, so one-off allocations are not counted per session.
        for user in range(1, WARM_UP_USERS + 1):
            await agree(10_000_000 + user)
        gc.collect()
        before = rss_bytes()
        for user in range(1, sessions + 1):
            await agree(user)
        gc.collect()
        grown = rss_bytes() - before
    if store.count() != WARM_UP_USERS + sessions:
        raise RuntimeError(f"{store.count()} sessions stored, expected "
                           f"{WARM_UP_USERS + sessions}")
    return grown / sessions


def memory(sizes: list[int], workdir: Path) -> dict[str, Any]:
    out = {}
    for n in sizes:
        # a fresh process per size, so earlier runs' heap does not hide growth
        code = ("import asyncio, pathlib, sys; from benchmarks.__main__ import memory_growth; "
                f"print(asyncio.run(memory_growth({n}, pathlib.Path(sys.argv[1]))))")
        result = subprocess.run([sys.executable, "-c", code, str(workdir / f"mem{n}.sqlite3")],
                                capture_output=True, text=True, cwd=REPO, check=True)
        out[f"bytes_per_session_{n}"] = round(float(result.stdout.strip().splitlines()[-1]), 1)
    return out


def fill_sessions(db_path: Path, count: int) -> None:
    store = SessionStore(open_database(db_path))
    snapshot = json.dumps({"v": 1, "dialog": load_engine().revision, "state": "asking_saddle",
                           "answers": [["welcome", "agree"], ["asking_bladder", "no"]],
                           "run": 0}, separators=(",", ":"))
    now = int(time.time())
    store.db.execute("BEGIN")
    store.db.executemany("INSERT INTO sessions (user_id, snapshot, updated_at) VALUES (?, ?, ?)",
                         ((uid, snapshot, now) for uid in range(1, count + 1)))
    store.db.execute("COMMIT")
    store.db.close()


def startup_seconds(db_path: Path) -> float:
    """Process start to the bot's first getUpdates, against the tests' local Bot API."""
    sys.path.insert(0, str(REPO / "tests"))
    from fake_bot_api import FakeBotAPI, loopback_env  # the tests' Bot API, on 127.0.0.1

    with FakeBotAPI() as api:
        api.send_text(7, "/help")  # so the first getUpdates returns at once
        env = loopback_env({**os.environ, "TELEGRAM_BOT_TOKEN": api.token,
                            "TELEGRAM_API_BASE_URL": api.base_url, "BACKBOT_DB": str(db_path),
                            "BACKBOT_LOG_LEVEL": "WARNING"})
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not api.wait_for(lambda calls: any(c.method == "getUpdates" for c in calls),
                                timeout=60):
                raise RuntimeError("the bot did not poll within 60 s")
            return float(next(c.time for c in api.calls if c.method == "getUpdates") - t0)
        finally:
            proc.terminate()
            proc.wait(20)


def startup(stored: int, repeats: int, workdir: Path) -> dict[str, Any]:
    """Starts with the empty and the full database in turns (which goes first
    alternating), each ratio within its pair, as for throughput: a start takes about
    half a second, and this machine's speed drifts over seconds."""
    empty, full = workdir / "empty.sqlite3", workdir / "full.sqlite3"
    fill_sessions(empty, 0)
    fill_sessions(full, stored)
    pairs = []
    for n in range(repeats):
        if n % 2:
            t_full = startup_seconds(full)
            pairs.append((startup_seconds(empty), t_full))
        else:
            pairs.append((startup_seconds(empty), startup_seconds(full)))
    ratios = [f / e for e, f in pairs]
    return {"startup_empty_s": round(statistics.median(e for e, _ in pairs), 3),
            f"startup_{stored}_s": round(statistics.median(f for _, f in pairs), 3),
            "startup_ratio": round(statistics.median(ratios), 3),
            "startup_ratio_lowest": round(min(ratios), 3),
            "startup_ratio_highest": round(max(ratios), 3)}


def instruction_counts(users: int, workdir: Path) -> dict[str, Any]:
    if users <= 0:
        return {}
    if not instructions.available():
        print("instruction counts skipped: valgrind is not installed", file=sys.stderr)
        return {}
    updates, calls = asyncio.run(record_dialogs(users, workdir / "record-counted.sqlite3"))
    return instructions.instructions(updates, calls, workdir)


def engine_step() -> dict[str, Any]:
    engine = load_engine()
    rng = random.Random(1)
    pairs = [pair for _ in range(2000) for pair in random_walk(engine, rng)]
    times = []
    for snapshot, event in pairs:
        t0 = time.perf_counter_ns()
        engine.step(snapshot, event)
        times.append(time.perf_counter_ns() - t0)
    return {"engine_step_median_us": round(statistics.median(times) / 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description="backbot benchmarks")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--interleaved-rounds", type=int, default=5,
                        help="rounds of both apps taking turns in one loop (0: skip)")
    parser.add_argument("--instruction-users", type=int, default=100,
                        help="users replayed under callgrind (0: skip that part)")
    parser.add_argument("--sessions", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7,
                        help="start-up pairs (empty and full database)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/latest.json")
    args = parser.parse_args()
    if args.quick:
        args.users, args.rounds, args.sessions, args.stored, args.repeats = 50, 2, [2000], 20_000, 1
        args.interleaved_rounds = 1
        args.instruction_users = 10
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        parts: list[Callable[[], dict[str, Any]]] = [
            lambda: throughput(args.users, args.rounds, workdir, args.interleaved_rounds),
            lambda: instruction_counts(args.instruction_users, workdir),
            lambda: memory(args.sessions, workdir),
            lambda: startup(args.stored, args.repeats, workdir),
            engine_step]
        for part in parts:
            results.update(part())
            print(json.dumps(results), file=sys.stderr)
    width = max(map(len, results))
    print(f"{'measure':<{width}}  value")
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
