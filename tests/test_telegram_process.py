"""`backbot run` as a real process against the fake Bot API: a conversation, SIGKILL and
resume, SIGTERM, and what it prints without (or with a rejected) token."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram_harness import TO_SUGGESTIONS, FakeBotAPI, callback_data

import bot

REPO_ROOT = Path(bot.__file__).resolve().parents[1]
STEP = 5.0  # the bot must answer each update within this
START = 20.0  # importing PTB and starting up may take a while on a slow machine
CHAT = 4004
OTHER = 4005


def bot_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment: no proxies, no real token, nothing from the caller's shell."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost", **values}


class BotProcess:
    """`python -m bot run`, its stderr going to a file (a pipe could fill and block it)."""

    def __init__(self, api: FakeBotAPI, tmp_path: Path, name: str) -> None:
        self.api = api
        self.stderr_path = tmp_path / f"{name}.stderr"
        self.db_path = tmp_path / "bot.sqlite3"
        env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN=api.token,
                      TELEGRAM_API_BASE_URL=api.base_url, BACKBOT_DB=str(self.db_path),
                      BACKBOT_LOG_LEVEL="DEBUG")
        # deleteWebhook is the last call before the first long poll (whose call is only
        # recorded once it returns, up to 5 s later).
        started = len(api.calls_to("deleteWebhook"))
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env,
                                         cwd=tmp_path, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        if not api.wait_for(lambda calls: sum(c.method == "deleteWebhook" for c in calls)
                            > started or self.proc.poll() is not None, START):
            raise AssertionError("the bot never started polling")
        assert self.proc.poll() is None, self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def asks(self, chat_id: int) -> int:
        return sum(1 for c in self.api.calls_to("sendMessage")
                   if c.ok and c.params.get("chat_id") == chat_id and "reply_markup" in c.params)

    def _until_asked(self, chat_id: int, push: Any) -> None:
        before = self.asks(chat_id)
        push()
        if not self.api.wait_for(lambda _: self.asks(chat_id) > before, STEP):
            raise AssertionError(f"no reply in chat {chat_id}:\n{self.stderr()[-3000:]}")

    def send(self, chat_id: int, text: str) -> None:
        self._until_asked(chat_id, lambda: self.api.send_text(chat_id, text))

    def current(self, chat_id: int) -> dict[str, Any]:
        return next(m for m in reversed(self.api.sent_to(chat_id)) if callback_data(m))

    def tap(self, chat_id: int, message: dict[str, Any], choice: str) -> None:
        data = next(d for d in callback_data(message) if d.endswith(f"|{choice}"))
        self._until_asked(chat_id, lambda: self.api.tap(chat_id, message["message_id"], data))

    def choose(self, chat_id: int, *choices: str) -> None:
        for choice in choices:
            self.tap(chat_id, self.current(chat_id), choice)

    def settled(self) -> None:
        """Every update pushed so far has been fetched and confirmed to the API."""
        assert self.api.wait_for(lambda _: not self.api.pending_updates, STEP)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STEP)


def stored(db_path: Path, user_id: int) -> dict[str, Any] | None:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        row = db.execute("SELECT snapshot FROM sessions WHERE user_id = ?",
                         (user_id,)).fetchone()
    return None if row is None else json.loads(row[0])


@contextlib.contextmanager
def running(api: FakeBotAPI, tmp_path: Path, name: str) -> Iterator[BotProcess]:
    process = BotProcess(api, tmp_path, name)
    try:
        yield process
    finally:
        process.kill()  # no-op when the test already stopped it


def test_backbot_run_survives_sigkill_and_stops_on_sigterm(tmp_path: Path) -> None:
    with FakeBotAPI() as api:
        with running(api, tmp_path, "first") as first:
            first.send(CHAT, "/start")
            first.choose(CHAT, *TO_SUGGESTIONS)
            finished = stored(first.db_path, CHAT)
            assert finished is not None
            assert finished["state"] == "suggesting_activities"
            suggestions = "\n".join(c.params["text"] for c in api.calls_to("sendMessage")
                                    if c.params.get("chat_id") == CHAT)
            assert "Recumbent bike" in suggestions

            # An error whose text carries the token (as some of Telegram's do) is logged, at
            # DEBUG with its traceback, with the token hidden by the process's own set-up.
            api.fail_next("sendMessage", error_code=500,
                          description=f"Internal Server Error for bot{api.token}")
            api.send_text(CHAT, "/help")
            deadline = time.monotonic() + STEP
            while ("Internal Server Error for bot[redacted]" not in first.stderr()
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            assert "Internal Server Error for bot[redacted]" in first.stderr()

            # A second user stops half-way through, and the process is killed outright.
            first.send(OTHER, "/start")
            first.choose(OTHER, "agree", "no", "no")
            legs = first.current(OTHER)
            before = stored(first.db_path, OTHER)
            assert before is not None and before["state"] == "asking_legs"
            first.settled()
            first.proc.send_signal(signal.SIGKILL)
            assert first.proc.wait(timeout=STEP) == -signal.SIGKILL

        with running(api, tmp_path, "second") as second:
            second.send(OTHER, "/start")
            texts = [c.params["text"] for c in api.calls_to("sendMessage")
                     if c.params.get("chat_id") == OTHER]
            assert texts[-2] == "Welcome back. Here is where we left off."
            assert texts[-1] == legs["text"]
            assert callback_data(second.current(OTHER)) == callback_data(legs)
            assert stored(second.db_path, OTHER) == before
            # The question's message from before the kill still takes the answer.
            second.tap(OTHER, legs, "no")
            after = stored(second.db_path, OTHER)
            assert after is not None and after["state"] == "asking_chest"
            # The finished user is still finished.
            assert stored(second.db_path, CHAT) == finished

            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(timeout=10) == 0
            assert "backbot stopped" in second.stderr()

        secret_part = api.token.split(":", 1)[1]
        for process in (first, second):
            log = process.stderr()
            assert "backbot starting" in log
            assert " DEBUG " in log  # BACKBOT_LOG_LEVEL reached the process
            assert api.token not in log
            assert secret_part not in log
        assert "Traceback" not in second.stderr()
        assert api.texts_without_html() == []


def test_a_stop_signal_while_starting_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM while PTB makes its last start-up call (which it then abandons, failing on
    the way out): stopped as asked, exit status 0, no error."""
    with FakeBotAPI() as api:
        entered = threading.Event()

        def slow(params: dict[str, Any]) -> None:
            entered.set()
            time.sleep(3)

        api.before_call["deletewebhook"] = slow
        env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN=api.token,
                      TELEGRAM_API_BASE_URL=api.base_url,
                      BACKBOT_DB=str(tmp_path / "bot.sqlite3"))
        stderr_path = tmp_path / "stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env,
                                    cwd=tmp_path, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            assert entered.wait(START), "the bot never reached deleteWebhook"
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = stderr_path.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, log
    assert " ERROR " not in log and "Traceback" not in log, log
    assert "backbot stopped while starting" in log


def test_a_stop_signal_while_loading_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM or Ctrl-C before the event loop runs (PTB importing, the bot setting up):
    exit status 0, no traceback. Here `run` signals itself, so the signal surely lands
    in that stretch."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        code = ("import os, signal, time\n"
                "import bot.telegram_app as app\n"
                "def run(settings):\n"
                f"    os.kill(os.getpid(), {int(sig)})\n"
                "    time.sleep(10)\n"
                "    return 1\n"
                "app.run = run\n"
                "from bot.cli import main\n"
                "raise SystemExit(main(['run']))\n")
        result = subprocess.run([sys.executable, "-c", code],
                                env=bot_env(tmp_path, TELEGRAM_BOT_TOKEN="1:x"), cwd=tmp_path,
                                capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, (sig, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr


def test_backbot_run_without_token_explains_itself(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "run"], env=bot_env(tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TELEGRAM_BOT_TOKEN" in lines[0]
    assert "backbot chat" in lines[0]
    assert "Traceback" not in result.stderr


def test_backbot_run_with_rejected_token_keeps_it_secret(tmp_path: Path) -> None:
    rejected = "987654:rejected-secret-part"
    with FakeBotAPI() as api:  # its token differs, so getMe answers 401 Unauthorized
        base_url = api.base_url
        env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN=rejected,
                      TELEGRAM_API_BASE_URL=base_url,
                      BACKBOT_DB=str(tmp_path / "bot.sqlite3"))
        result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=30, check=False)
        assert api.calls == []  # the fake only records calls made with its own token
    assert result.returncode == 2
    assert "rejected-secret-part" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"backbot: Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather, and "
        f"TELEGRAM_API_BASE_URL={base_url} (the address the token is added to, as in "
        f"https://api.telegram.org/bot)")


def test_a_token_revoked_while_polling_stops_the_bot(tmp_path: Path) -> None:
    """PTB's polling gives up on a rejected token but would leave the process running,
    deaf; it stops as it does when Telegram rejects the token at start-up."""
    with FakeBotAPI() as api, running(api, tmp_path, "revoked") as bot:
        bot.send(CHAT, "/start")
        secret_part = api.token.split(":", 1)[1]
        api.token = "123456:revoked-in-botfather"  # every call now answers 401
        code = bot.proc.wait(timeout=30)
        log = bot.stderr()
        assert code == 2
    assert secret_part not in log
    assert "Traceback" not in log
    assert "Task was destroyed" not in log  # PTB's own shutdown ran to the end
    assert log.strip().splitlines()[-1].startswith(
        "backbot: Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather")


def test_a_token_revoked_as_the_bot_is_stopped_still_stops_it_cleanly(tmp_path: Path) -> None:
    """The rejection may first come in the last poll of PTB's own shutdown."""
    with FakeBotAPI() as api, running(api, tmp_path, "revoked-stopping") as bot:
        bot.send(CHAT, "/start")
        api.token = "123456:revoked-in-botfather"
        bot.proc.send_signal(signal.SIGTERM)
        code = bot.proc.wait(timeout=30)
        log = bot.stderr()
    assert code == 2
    assert "Traceback" not in log
    assert "Task was destroyed" not in log
    assert log.strip().splitlines()[-1].startswith("backbot: Telegram rejected")


def test_backbot_run_with_telegram_unreachable_stops_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN="123:unreachable-secret",
                  TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{port}/bot",
                  BACKBOT_DB=str(tmp_path / "bot.sqlite3"))
    result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert "unreachable-secret" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "backbot stopped: NetworkError: " in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("status", [200, 403])
def test_a_bot_api_address_that_is_some_other_web_server_is_a_setting_to_fix(
        tmp_path: Path, status: int) -> None:
    """TELEGRAM_API_BASE_URL pointing at an ordinary web page (an answer that is not JSON):
    status 2, as no restart mends it (a service manager would otherwise restart it for
    ever), in one line naming the setting."""
    class WebPage(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), WebPage) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}/bot"
        env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN="123:web-page-secret",
                      TELEGRAM_API_BASE_URL=base, BACKBOT_DB=str(tmp_path / "bot.sqlite3"))
        result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=30, check=False)
        server.shutdown()
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"backbot: TELEGRAM_API_BASE_URL={base} does not answer as a Bot API server does "
        f"(not in JSON); check the address")
    assert "web-page-secret" not in result.stderr and "Traceback" not in result.stderr


def test_a_token_with_a_space_or_control_character_is_a_setting_to_fix(
        tmp_path: Path) -> None:
    env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN="123:abc\tdef-secret",
                  TELEGRAM_API_BASE_URL="http://127.0.0.1:9/bot",
                  BACKBOT_DB=str(tmp_path / "bot.sqlite3"))
    result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ("backbot: TELEGRAM_BOT_TOKEN holds a space or a control "
                                     "character; copy it again from @BotFather")


def test_a_second_backbot_run_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    """Two bots over one database would each keep rows in memory and overwrite the
    other's answers: the second stops at once, says why, and the first goes on."""
    with FakeBotAPI() as api, running(api, tmp_path, "first") as first:
        first.send(CHAT, "/start")
        first.choose(CHAT, "agree")
        env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN=api.token,
                      TELEGRAM_API_BASE_URL=api.base_url, BACKBOT_DB=str(first.db_path))
        starts = len(api.calls_to("getMe"))  # each start asks who the bot is
        result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=30,
                                check=False)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "already" in lines[0] and str(first.db_path) in lines[0]
        assert len(api.calls_to("getMe")) == starts  # it never reached Telegram
        first.choose(CHAT, "no")  # the first bot still answers, with its answers kept
        after = stored(first.db_path, CHAT)
        assert after is not None and after["answers"][-1] == ["asking_bladder", "no"]


def test_a_database_deleted_while_running_is_written_back_and_the_bot_stops(
        tmp_path: Path) -> None:
    """Deleted by hand while the bot runs: its next checkpoint notices, the bot stops
    (status 1: a restart mends it) and writes every row back, so a restart resumes."""
    with FakeBotAPI() as api:
        with running(api, tmp_path, "first") as first:
            first.send(CHAT, "/start")
            first.choose(CHAT, "agree", "no")
            saddle = first.current(CHAT)
            first.db_path.unlink()
            first.choose(CHAT, "no")  # acknowledged after the deletion
            code = first.proc.wait(timeout=15)
            log = first.stderr()
        assert code == 1, log
        assert "was deleted while the bot ran; stopping" in log
        assert "every row it held was written back to it" in log
        assert first.db_path.stat().st_mode & 0o777 == 0o600
        after = stored(first.db_path, CHAT)
        assert after is not None and after["state"] == "asking_legs"
        with running(api, tmp_path, "second") as second:
            second.tap(CHAT, saddle, "yes")  # an older copy: a red flag, still taken
            assert stored(second.db_path, CHAT)["state"] == "emergency_care"


def test_replies_waiting_to_go_again_go_before_the_bot_stops(tmp_path: Path) -> None:
    """A reply Telegram did not take waits 5 s to go again; the bot stopped meanwhile
    sends it on the way out, so no one is left after an answer with no next question."""
    with FakeBotAPI() as api, running(api, tmp_path, "stopping") as bot:
        bot.send(CHAT, "/start")
        bot.choose(CHAT, "agree")
        bladder = bot.current(CHAT)
        api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
        data = next(d for d in callback_data(bladder) if d.endswith("|no"))
        api.tap(CHAT, bladder["message_id"], data)
        assert api.wait_for(lambda calls: any(
            c.method == "sendMessage" and not c.ok for c in calls), STEP)
        asked = bot.asks(CHAT)
        bot.proc.send_signal(signal.SIGTERM)
        assert bot.proc.wait(timeout=15) == 0
        assert bot.asks(CHAT) == asked + 1
        stored_now = stored(bot.db_path, CHAT)
        assert stored_now is not None and stored_now["state"] == "asking_saddle"
        assert "saddle" in bot.current(CHAT)["text"]


def test_a_second_stop_signal_lets_the_first_stop_finish(tmp_path: Path) -> None:
    with FakeBotAPI() as api, running(api, tmp_path, "twice") as bot:
        bot.send(CHAT, "/start")
        bot.proc.send_signal(signal.SIGINT)
        bot.proc.send_signal(signal.SIGTERM)
        assert bot.proc.wait(timeout=15) == 0
        log = bot.stderr()
    assert log.rstrip().endswith("backbot stopped"), log[-2000:]
    assert "never awaited" not in log and "Traceback" not in log


def slow_last_poll(params: dict[str, Any], seconds: float) -> None:
    """PTB's shutdown ends with one poll that waits for nothing (timeout 0): Telegram
    slow to answer it."""
    if float(params.get("timeout") or 0) == 0 and params.get("offset") is not None:
        time.sleep(seconds)


def test_a_stop_signal_while_the_bot_stops_itself_lets_that_stop_finish(
        tmp_path: Path) -> None:
    """The database deleted: the bot stops itself; systemd's SIGTERM comes while PTB's own
    shutdown is under way (a slow last poll). The stop finishes as it began: status 1,
    the rows written back, the stop logged."""
    with FakeBotAPI() as api, running(api, tmp_path, "first") as first:
        first.send(CHAT, "/start")
        first.choose(CHAT, "agree")
        api.before_call["getupdates"] = lambda params: slow_last_poll(params, 3.0)
        first.db_path.unlink()
        deadline = time.monotonic() + 15
        while "while the bot ran; stopping" not in first.stderr():
            assert time.monotonic() < deadline, first.stderr()[-2000:]
            time.sleep(0.05)
        time.sleep(0.5)
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(timeout=20) == 1
        log = first.stderr()
    assert log.rstrip().endswith("backbot stopped")
    assert log.count("while the bot ran; stopping") == 1
    assert "every row it held was written back to it" in log
    assert stored(first.db_path, CHAT)["state"] == "asking_bladder"


def test_a_self_stop_outlasting_a_checkpoint_interval_still_finishes(tmp_path: Path) -> None:
    """Checkpoints come round while PTB's shutdown is under way: they stop nothing twice,
    so the shutdown runs to its end (the replies waiting to go again sent on the way)."""
    from telegram import Update

    from bot.config import load_settings
    from bot.loading import load_engine
    from bot.store import SessionStore, open_database
    from bot.telegram_app import DATABASE_MOVED, build_application

    db_path = tmp_path / "bot.sqlite3"
    with FakeBotAPI() as api:
        api.before_call["getupdates"] = lambda params: slow_last_poll(params, 1.0)
        settings = load_settings(environ={"TELEGRAM_BOT_TOKEN": api.token,
                                          "TELEGRAM_API_BASE_URL": api.base_url,
                                          "BACKBOT_DB": str(db_path)}, env_file=None)
        db = open_database(db_path)
        app = build_application(settings, load_engine(), SessionStore(db),
                                checkpoint_every=0.3)
        stopped: list[bool] = []
        post_stop = app.post_stop
        assert post_stop is not None

        async def noting_post_stop(application: Any) -> None:
            stopped.append(True)
            await post_stop(application)

        app.post_stop = noting_post_stop
        threading.Timer(1.0, db_path.unlink).start()
        try:
            app.run_polling(allowed_updates=Update.ALL_TYPES, stop_signals=None)
        finally:
            db.close()
        assert app.bot_data.get(DATABASE_MOVED) and stopped == [True]
