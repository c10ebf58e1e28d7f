"""backbot benchmarks: each figure beside a baseline measured in the same run.

    python -m benchmarks [--users 300] [--sessions 10000 100000] [--stored 1000000]
                         [--json benchmarks/results/latest.json] [--quick]

- throughput and latency: full dialogs from raw update JSON through
  Application.process_update (in-process recording Bot API, real SQLite store) against a
  floor Application that makes exactly the same Bot API calls for each update with no
  dialog logic and no storage;
- memory: resident growth per active session;
- start-up: process start to the first getUpdates with 0 and with many stored sessions;
- engine: one engine step alone (see benchmarks/engine.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, Defaults, TypeHandler

from benchmarks.engine import random_walk
from benchmarks.fake_request import RecordingRequest
from bot.config import load_settings
from bot.loading import load_engine
from bot.store import SessionStore, open_database
from bot.telegram_app import build_application

FULL_PATH = ["agree", "no", "no", "no", "no", "no", "no", "no", "pinched_nerve", "yes", "next",
             "understood", "yes", "yes", "no", "yes"]
REPO = Path(__file__).resolve().parent.parent


def settings_for(db: Path) -> Any:
    return load_settings({"TELEGRAM_BOT_TOKEN": "1:bench", "BACKBOT_DB": str(db)},
                         env_file=None)


def no_throttle() -> AIORateLimiter:
    return AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=0)


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


async def record_dialogs(users: int, db: Path) -> tuple[list[dict], dict[int, list]]:
    """Run our bot once to get the raw updates and the calls it makes for each."""
    request = RecordingRequest()
    app = build_application(settings_for(db), load_engine(), SessionStore(open_database(db)),
                            rate_limiter=no_throttle(), request=request)
    updates: list[dict] = []
    calls: dict[int, list] = {}
    last_question: dict[int, dict] = {}
    async with app:
        for step in range(len(FULL_PATH) + 1):  # round-robin: every user takes one step
            for user in range(1, users + 1):
                uid = len(updates) + 1
                if step == 0:
                    raw = start_update(uid, user)
                else:
                    message = last_question[user]
                    data = next(b["callback_data"] for row in message["reply_markup"]
                                ["inline_keyboard"] for b in row
                                if b["callback_data"].endswith("|" + FULL_PATH[step - 1]))
                    raw = tap_update(uid, user, message, data)
                before = len(request.calls)
                await app.process_update(Update.de_json(raw, app.bot))
                calls[uid] = request.calls[before:]
                for name, params in calls[uid]:
                    if name == "sendMessage" and "reply_markup" in params:
                        last_question[user] = {
                            "message_id": request._next_id[user], "date": 0,
                            "chat": {"id": user, "type": "private", "first_name": "U"},
                            "text": params["text"], "reply_markup": params["reply_markup"]}
                updates.append(raw)
    return updates, calls


def floor_app(calls: dict[int, list]) -> tuple[Application, RecordingRequest]:  # type: ignore[type-arg]
    """Makes, for each update, the very calls our bot made: the least a bot can do."""
    request = RecordingRequest()
    app = (ApplicationBuilder().token("1:bench").request(request).rate_limiter(no_throttle())
           .defaults(Defaults(parse_mode=ParseMode.HTML)).concurrent_updates(True).build())
    plans = {uid: [(name, {**params, "reply_markup": InlineKeyboardMarkup.de_json(
        params["reply_markup"], None)} if "reply_markup" in params else params)
        for name, params in made] for uid, made in calls.items()}

    async def replay(update: Update, context: Any) -> None:
        bot = context.bot
        for name, p in plans[update.update_id]:
            if name == "answerCallbackQuery":
                await bot.answer_callback_query(p["callback_query_id"], text=p.get("text"))
            elif name == "editMessageText":
                await bot.edit_message_text(p["text"], chat_id=p["chat_id"],
                                            message_id=p["message_id"])
            elif name == "editMessageReplyMarkup":
                await bot.edit_message_reply_markup(p["chat_id"], p["message_id"])
            elif name == "sendChatAction":
                await bot.send_chat_action(p["chat_id"], p["action"])
            elif name == "sendMessage":
                await bot.send_message(p["chat_id"], p["text"],
                                       reply_markup=p.get("reply_markup"))

    app.add_handler(TypeHandler(Update, replay))
    return app, request


async def timed_run(app: Application, updates: list[dict]) -> list[float]:  # type: ignore[type-arg]
    """Both applications run as `backbot run` does (post_init, jobs started)."""
    times = []
    clock = time.perf_counter
    async with app:
        if app.post_init is not None:
            await app.post_init(app)
        await app.start()
        for raw in updates:
            t0 = clock()
            await app.process_update(Update.de_json(raw, app.bot))
            times.append(clock() - t0)
        await app.stop()
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def throughput(users: int, rounds: int, workdir: Path) -> dict[str, Any]:
    updates, calls = asyncio.run(record_dialogs(users, workdir / "record.sqlite3"))
    ours_runs, floor_runs = [], []
    for n in range(rounds):  # alternate, so drift on the machine hits both alike
        db = workdir / f"ours{n}.sqlite3"
        app = build_application(settings_for(db), load_engine(), SessionStore(open_database(db)),
                                rate_limiter=no_throttle(), request=RecordingRequest())
        ours_runs.append(asyncio.run(timed_run(app, updates)))
        floor_runs.append(asyncio.run(timed_run(floor_app(calls)[0], updates)))
    ours = min(ours_runs, key=sum)
    floor = min(floor_runs, key=sum)
    result = {"updates": len(updates), "api_calls": sum(map(len, calls.values())),
              "ours_updates_per_s": round(len(ours) / sum(ours)),
              "floor_updates_per_s": round(len(floor) / sum(floor))}
    result["throughput_ratio"] = round(sum(floor) / sum(ours), 3)
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999)):
        result[f"latency_{name}_ms"] = round(percentile(ours, q) * 1000, 3)
        result[f"floor_{name}_ms"] = round(percentile(floor, q) * 1000, 3)
        result[f"latency_{name}_ratio"] = round(percentile(ours, q) / percentile(floor, q), 3)
    return result


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def memory_growth(sessions: int, db: Path) -> float:
    app = build_application(settings_for(db), load_engine(), SessionStore(open_database(db)),
                            rate_limiter=no_throttle(), request=RecordingRequest())
    request: RecordingRequest = app.bot.request  # type: ignore[assignment]
    async with app:
        # Warm up on other users, so one-off allocations are not counted per session.
        for user in range(1, 1001):
            await app.process_update(Update.de_json(start_update(user, -user), app.bot))
        request.calls.clear()
        gc.collect()
        before = rss_bytes()
        for user in range(1, sessions + 1):
            await app.process_update(Update.de_json(start_update(user, user), app.bot))
            if user % 1000 == 0:
                request.calls.clear()  # the recorder itself must not count
        gc.collect()
        grown = rss_bytes() - before
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
    snapshot = json.dumps({"v": 1, "dialog": "screening", "state": "asking_saddle",
                           "answers": [["welcome", "agree"], ["asking_bladder", "no"]],
                           "run": 0}, separators=(",", ":"))
    now = int(time.time())
    store.db.execute("BEGIN")
    store.db.executemany("INSERT INTO sessions (user_id, snapshot, updated_at) VALUES (?, ?, ?)",
                         ((uid, snapshot, now) for uid in range(1, count + 1)))
    store.db.execute("COMMIT")
    store.db.close()


def startup_seconds(db_path: Path, repeats: int) -> float:
    sys.path.insert(0, str(REPO / "tests"))
    from fake_bot_api import FakeBotAPI  # the tests' local Bot API server, on 127.0.0.1

    times = []
    for _ in range(repeats):
        with FakeBotAPI() as api:
            api.send_text(7, "/help")  # so the first getUpdates returns at once
            env = {**os.environ, "TELEGRAM_BOT_TOKEN": api.token,
                   "TELEGRAM_API_BASE_URL": api.base_url, "BACKBOT_DB": str(db_path),
                   "BACKBOT_LOG_LEVEL": "WARNING"}
            t0 = time.time()
            proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env, cwd=REPO,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                if not api.wait_for(lambda calls: any(c.method == "getUpdates" for c in calls),
                                    timeout=60):
                    raise RuntimeError("the bot did not poll within 60 s")
                first = next(c.time for c in api.calls if c.method == "getUpdates")
                times.append(first - t0)
            finally:
                proc.terminate()
                proc.wait(20)
    return statistics.median(times)


def startup(stored: int, repeats: int, workdir: Path) -> dict[str, Any]:
    empty, full = workdir / "empty.sqlite3", workdir / "full.sqlite3"
    fill_sessions(empty, 0)
    fill_sessions(full, stored)
    t_empty = startup_seconds(empty, repeats)
    t_full = startup_seconds(full, repeats)
    return {"startup_empty_s": round(t_empty, 3), f"startup_{stored}_s": round(t_full, 3),
            "startup_ratio": round(t_full / t_empty, 3)}


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/latest.json")
    args = parser.parse_args()
    if args.quick:
        args.users, args.rounds, args.sessions, args.stored, args.repeats = 50, 1, [2000], 20_000, 1
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for part in (lambda: throughput(args.users, args.rounds, workdir),
                     lambda: memory(args.sessions, workdir),
                     lambda: startup(args.stored, args.repeats, workdir),
                     engine_step):
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
