"""Run the real `python -m bot run` process against a FakeBotAPI, and drive users through it.

Shared by tests/test_load.py, tests/test_crash.py and benchmarks/load.py + crash.py:

- `BotProcess` starts, stops (SIGTERM) and kills (SIGKILL) the bot as a subprocess polling
  the fake over loopback. Its stderr (and stdout) go to a FILE, never a pipe: a pipe nobody
  reads fills up and blocks the bot.
- `MessageWatch` follows the messages the bot sent, per chat, cheaply enough for hundreds
  of concurrent users (one scan of the fake's insertion-ordered message dict per tick).
- `Dialog` reads dialogs/screening.yaml: state names by index (refs are
  "<run>.<answers>.<state index>"), choices, red flags and final states.
- `pick_choice` is the seeded chooser that sends some users into red flags and about
  half of them on to the suggestions.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

try:  # works whether or not tests/ is a package (pytest or `python -m benchmarks...`)
    import conftest
    from fake_bot_api import FakeBotAPI, loopback_env
except ImportError:  # pragma: no cover - depends on how sys.path is set up
    from tests import conftest
    from tests.fake_bot_api import FakeBotAPI, loopback_env

REPO = Path(__file__).resolve().parent.parent
DIALOG_FILE = REPO / "dialogs" / "screening.yaml"

# Words that name an activity: the tests' one list, tests/conftest.py ACTIVITY_WORDS
# (walk, swim, jog, aerobic, backstroke, crawl, strength, flexib, stretch...).
ACTIVITY = conftest._ACTIVITY
ERROR_LINE = re.compile(r"\bERROR\b|Traceback|CRITICAL")
ANSWERED_MARK = "Your answer:"  # content/messages.yaml answered.label, put on an answered question
END_SUFFIXES = ("|restart", "|sources")  # the end keyboard's callback data


# ------------------------------------------------------------------------ the fake API


class SlowConfirmAPI(FakeBotAPI):
    """A FakeBotAPI that takes `confirm_delay` seconds to act on a confirming getUpdates.

    PTB confirms a fetched batch (offset = last update_id + 1) with its very next
    getUpdates, a millisecond later, so a SIGKILL almost never lands between fetch and
    confirmation. Over a real network that window is a round trip: this widens it, so
    kills while the batch is being handled redeliver it to the next process.
    """

    def __init__(self, *args: Any, confirm_delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.confirm_delay = confirm_delay
        self.delivered: Counter[int] = Counter()  # update_id: times handed out
        self.last_pushed = 0

    def push_update(self, update: dict[str, Any]) -> int:
        update_id = super().push_update(update)
        with self._lock:
            self.last_pushed = max(self.last_pushed, update_id)
        return update_id

    def confirmed_below(self) -> int:
        """Every update with a smaller id is confirmed: it will not be handed out again."""
        with self._lock:
            pending = [u["update_id"] for u in self.pending_updates]
            return min(pending) if pending else self.last_pushed + 1

    def on_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = params.get("offset")
        if (self.confirm_delay > 0 and isinstance(offset, int) and offset > 0
                and any(u["update_id"] < offset for u in self.pending_updates)):
            time.sleep(self.confirm_delay)
        updates = super().on_getUpdates(params)
        with self._lock:
            self.delivered.update(u["update_id"] for u in updates)
        return updates

    @property
    def redelivered(self) -> int:
        """Updates handed out more than once (to a process killed before confirming them).

        A hand-out whose response never reached the bot (it was killed during the long
        poll) counts too.
        """
        with self._lock:
            return sum(1 for n in self.delivered.values() if n > 1)


# --------------------------------------------------------------------------- the process


class BotProcess:
    """The real bot (`python -m bot run`) as a subprocess, long polling `api`."""

    def __init__(self, api: FakeBotAPI, db_path: Path, log_path: Path, *,
                 workdir: Path | None = None, log_level: str = "WARNING",
                 extra_env: dict[str, str] | None = None) -> None:
        self.api = api
        self.db_path = Path(db_path)
        self.log_path = Path(log_path)
        # Not the checkout: the bot reads `.env` from its working directory.
        self.workdir = Path(workdir) if workdir else self.log_path.parent
        self.log_level = log_level
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.starts = 0
        self.kills = 0
        self.unexpected_exits: list[int] = []  # exit codes of lives that ended on their own
        # This life was started to SIGKILL itself inside a write (tests/crash_hooks): its
        # death is a kill, not an unexpected exit.
        self.self_kill_armed = False
        self.write_kills = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BACKBOT_", "TELEGRAM_"))}  # no webhook, no real token
        env.update(
            TELEGRAM_BOT_TOKEN=self.api.token,
            TELEGRAM_API_BASE_URL=self.api.base_url,
            BACKBOT_DB=str(self.db_path),
            BACKBOT_LOG_LEVEL=self.log_level,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return loopback_env(env)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, ready_timeout: float | None = 30.0) -> None:
        """Start the bot; with `ready_timeout`, wait for its first getUpdates."""
        if self.running:
            raise RuntimeError("the bot is already running")
        if self.proc is not None:  # a life that ended without kill() or stop()
            self._ended_by_itself(self.proc)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- harness: start {self.starts} ---\n".encode())
            log.flush()
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                cwd=self.workdir, env=self.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log,  # a file: a full pipe would block the bot
            )
        if ready_timeout is not None and not self.wait_ready(ready_timeout):
            code = self.proc.poll()
            self.kill()
            raise RuntimeError(f"the bot did not start polling in {ready_timeout} s "
                               f"(exit code {code}); log:\n{self.log_tail()}")

    def wait_ready(self, timeout: float) -> bool:
        """True once this process's first getUpdates reached the fake.

        Calls are timed by arrival, so a long poll of a killed predecessor (recorded only
        when it returns) is not taken for this one.
        """
        since = self.started_at
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(c.time >= since for c in self.api.calls_to("getUpdates")[-20:]):
                return True
            if not self.running:
                return False
            time.sleep(0.02)
        return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no offset confirmation, no flush."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.kills += 1
        else:
            self._ended_by_itself(proc)
        proc.wait(timeout=10)
        self.proc = None

    def _ended_by_itself(self, proc: subprocess.Popen[bytes]) -> None:
        if self.self_kill_armed and proc.returncode == -signal.SIGKILL:
            self.kills += 1
            self.write_kills += 1
        else:
            self.unexpected_exits.append(proc.returncode)

    def stop(self, timeout: float = 20.0) -> int | None:
        """A clean stop (SIGTERM, as a service manager does); SIGKILL if it hangs."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is not None:
            self.unexpected_exits.append(proc.returncode)
        else:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.proc = None
        return proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def error_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if ERROR_LINE.search(line)]

    def __enter__(self) -> BotProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()


# ------------------------------------------------------------------------- the dialog


@dataclass(frozen=True)
class StateInfo:
    name: str
    index: int
    final: bool
    choices: tuple[str, ...]
    red_flags: frozenset[str]
    acknowledge: str | None
    shows_only: frozenset[str]  # choices that only show a note and re-ask (privacy)


class Dialog:
    """What the clients and checks need from dialogs/screening.yaml."""

    def __init__(self, path: Path = DIALOG_FILE) -> None:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        sets = data.get("choice_sets", {})
        self.states: list[StateInfo] = []
        for index, raw in enumerate(data["states"]):
            choices = raw.get("choices") or []
            if isinstance(choices, str):
                choices = sets[choices]
            self.states.append(StateInfo(
                name=raw["name"], index=index, final=bool(raw.get("final")),
                choices=tuple(str(c["id"]) for c in choices),
                red_flags=frozenset(str(k) for k in (raw.get("red_flags") or {})),
                acknowledge=raw.get("acknowledge"),
                shows_only=frozenset(str(c["id"]) for c in choices if c.get("shows")),
            ))
        self.by_name = {s.name: s for s in self.states}
        self.final = frozenset(s.name for s in self.states if s.final)
        doctor = [s for s in self.states if s.acknowledge]
        assert len(doctor) == 1, "expected exactly one doctor prompt with `acknowledge`"
        self.doctor_prompt = doctor[0]
        # Answers are stored only once this (state, choice) was chosen; None: always.
        consent = data.get("consent")
        self.consent: tuple[str, str] | None = (
            (str(consent["state"]), str(consent["choice"])) if consent else None)

    def consented(self, answers: list[tuple[str, str]]) -> bool:
        return self.consent is None or self.consent in answers

    def state_for_ref(self, ref: str) -> StateInfo:
        return self.states[parse_ref(ref)[1]]


def parse_ref(ref: str) -> tuple[int, int]:
    """(number of answers so far, state index) from an Ask ref."""
    count, index = (int(part) for part in ref.split("."))
    return count, index


def pick_choice(state: StateInfo, offered: list[str], rng: random.Random,
                red_flag_rate: float = 0.08, stop_rate: float = 0.03,
                decline_rate: float = 0.05) -> str:
    """A seeded choice among `offered` biased to the safe answers.

    A red flag about 8% of the time at each question that offers one beside safe answers
    (else an even pick among the safe ones: a follow-up's "Yes" half the time), plus a
    few stops and declines, leaves about a third of the users at the suggestions.
    """
    usable = [c for c in offered if c not in state.shows_only] or offered
    red = [c for c in usable if c in state.red_flags]
    safe = [c for c in usable if c not in state.red_flags]
    if red and safe:
        return rng.choice(red) if rng.random() < red_flag_rate else rng.choice(safe)
    if state.acknowledge and state.acknowledge in usable:
        others = [c for c in usable if c != state.acknowledge]
        if others and rng.random() < decline_rate:
            return rng.choice(others)
        return state.acknowledge
    if state.index == 0 and "agree" in usable:  # the consent question
        others = [c for c in usable if c != "agree"]
        return rng.choice(others) if others and rng.random() < stop_rate else "agree"
    return rng.choice(usable)


# ------------------------------------------------------------------- watching messages


def keyboard_data(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, callback_data) of each inline button, or [] when the keyboard is gone."""
    markup = message.get("reply_markup")
    if not isinstance(markup, dict):
        return []
    return [(str(b.get("text", "")), str(b.get("callback_data", "")))
            for row in markup.get("inline_keyboard", []) for b in row
            if b.get("callback_data")]


def ref_of(buttons: list[tuple[str, str]]) -> str | None:
    for _, data in buttons:
        parts = data.split("|")
        if len(parts) == 3 and parts[0] == "a":
            return parts[1]
    return None


def is_end_keyboard(buttons: list[tuple[str, str]]) -> bool:
    return any(data.endswith(END_SUFFIXES) for _, data in buttons)


@dataclass
class Seen:
    """A bot message as first seen: its id, text and keyboard when sent (edits aside)."""

    chat_id: int
    message_id: int
    text: str
    buttons: list[tuple[str, str]]
    live: dict[str, Any] = field(repr=False)  # the fake's stored dict: edits show here
    seen_at: float = field(default_factory=time.time)

    @property
    def ref(self) -> str | None:
        return ref_of(self.buttons)


class MessageWatch:
    """Follows FakeBotAPI.messages, which only grows and keeps insertion (= send) order.

    One background thread copies the dict's items every `interval` seconds (a single
    C-level copy under the GIL, so consistent) and wakes only the chats with new messages.
    """

    def __init__(self, api: FakeBotAPI, interval: float = 0.01) -> None:
        self.api = api
        self.interval = interval
        self._seen = 0
        self._chats: dict[int, list[Seen]] = defaultdict(list)
        self._conds: dict[int, threading.Condition] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="MessageWatch", daemon=True)

    def __enter__(self) -> MessageWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _cond(self, chat_id: int) -> threading.Condition:
        with self._lock:
            cond = self._conds.get(chat_id)
            if cond is None:
                cond = self._conds[chat_id] = threading.Condition()
            return cond

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self) -> None:
        with self._lock:
            for _ in range(5):
                try:
                    items = list(self.api.messages.items())
                    break
                except RuntimeError:  # changed size while copied (not under CPython's GIL)
                    time.sleep(0.001)
            else:  # pragma: no cover
                return
            new = items[self._seen:]
            self._seen = len(items)
            touched: set[int] = set()
            for (chat, message_id), message in new:
                if not isinstance(chat, int):
                    continue
                self._chats[chat].append(Seen(chat, message_id, str(message.get("text", "")),
                                              keyboard_data(message), message))
                touched.add(chat)
        for chat in touched:
            cond = self._cond(chat)
            with cond:
                cond.notify_all()

    def messages(self, chat_id: int) -> list[Seen]:
        with self._lock:
            return list(self._chats.get(chat_id, ()))

    def newest_id(self, chat_id: int) -> int:
        self.refresh()
        with self._lock:
            chat = self._chats.get(chat_id)
            return chat[-1].message_id if chat else 0

    def wait_keyboard(self, chat_id: int, *, after: int, not_ref: str | None,
                      timeout: float) -> Seen | None:
        """The newest keyboard message with id > `after` and a ref other than `not_ref`."""
        deadline = time.monotonic() + timeout
        cond = self._cond(chat_id)
        while True:
            for seen in reversed(self.messages(chat_id)):
                if seen.message_id <= after:
                    break
                if seen.buttons and seen.ref != not_ref:
                    return seen
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with cond:
                cond.wait(min(remaining, 0.25))


# --------------------------------------------------------------------------- helpers


@dataclass
class Tap:
    chat_id: int
    message_id: int
    ref: str
    state: str
    choice: str
    label: str
    callback_id: str
    update_id: int
    pushed_at: float


def tap(api: FakeBotAPI, seen: Seen, state: StateInfo, choice: str, callback_id: str) -> Tap:
    label, data = next((lab, d) for lab, d in seen.buttons if d.endswith(f"|{choice}"))
    ref = seen.ref
    assert ref is not None
    update_id = api.tap(seen.chat_id, seen.message_id, data, callback_id=callback_id)
    return Tap(seen.chat_id, seen.message_id, ref, state.name, choice, label, callback_id,
               update_id, time.time())


def wait_quiet(api: FakeBotAPI, quiet: float = 0.5, timeout: float = 30.0) -> bool:
    """Wait until the bot made no call but getUpdates for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = api.calls
        last = next((c.time for c in reversed(calls) if c.method != "getUpdates"), 0.0)
        if time.time() - last >= quiet:
            return True
        time.sleep(0.05)
    return False


def run_threads(targets: list[Any], deadline: float) -> list[BaseException | None]:
    """Run callables in daemon threads; join by `deadline` (monotonic). Returns errors."""
    errors: list[BaseException | None] = [None] * len(targets)

    def wrap(i: int, target: Any) -> None:
        try:
            target()
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=wrap, args=(i, t), daemon=True)
               for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for i, thread in enumerate(threads):
        if thread.is_alive() and errors[i] is None:
            errors[i] = TimeoutError("user thread still running at the deadline")
    return errors

