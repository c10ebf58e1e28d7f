"""`backbot run` in webhook mode: registers the webhook with a secret, serves on the
configured address and port, and refuses calls without Telegram's secret header."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from telegram_harness import FakeBotAPI
from test_telegram_process import bot_env

SECRET = "webhook-secret-123"
WRONG = "wrong-secret-456"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, update: dict | bytes, secret: str | None,
         content_type: str = "application/json") -> int:
    headers = {"Content-Type": content_type}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    request = urllib.request.Request(url, body, headers)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with direct.open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def start_update(update_id: int, chat_id: int) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": 1, "date": int(time.time()), "text": "/start",
        "chat": {"id": chat_id, "type": "private", "first_name": "Ana"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "Ana"},
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_webhook_mode(tmp_path: Path, level: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram-hook"
    with FakeBotAPI() as api:
        env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url,
                      BACKBOT_DB=str(tmp_path / "bot.sqlite3"), BACKBOT_WEBHOOK_URL=url,
                      BACKBOT_WEBHOOK_LISTEN="127.0.0.1", BACKBOT_WEBHOOK_PORT=str(port),
                      BACKBOT_WEBHOOK_SECRET=SECRET, BACKBOT_LOG_LEVEL=level)
        with open(tmp_path / "stderr.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                                    stdout=subprocess.DEVNULL, stderr=log)
        try:
            assert api.wait_for_calls("setWebhook", 1, timeout=30)
            registered = api.calls_to("setWebhook")[0].params
            assert registered["url"] == url
            assert registered["secret_token"] == SECRET
            assert not api.calls_to("getUpdates")  # no long polling in webhook mode
            # The server may come up just after setWebhook: retry the first post briefly.
            deadline = time.monotonic() + 10
            while True:
                try:
                    refused = post(url, start_update(1, 77), secret=None)
                    break
                except (ConnectionError, urllib.error.URLError):
                    assert time.monotonic() < deadline, "webhook server never came up"
                    time.sleep(0.1)
            assert refused == 403
            assert post(url, start_update(2, 78), secret=WRONG) == 403
            assert post(url, start_update(5, 81), secret=WRONG) == 403  # said once a minute
            assert post(url, start_update(6, 82), SECRET, content_type="text/plain") == 403
            assert post(url, b"not json", secret=SECRET) == 500
            update = start_update(3, 79)
            update["message"]["from"]["first_name"] = "Ana-Private-Name"
            assert post(url, update, secret=SECRET) == 200
            assert api.wait_for(lambda calls: any(
                c.method == "sendMessage" and c.params.get("chat_id") == 79 for c in calls), 10)
            assert not any(c.params.get("chat_id") in (77, 78) for c in api.calls_to("sendMessage"))
            # An update PTB cannot read: refused, and its data (someone's message) is not
            # in the log, though PTB's line about it is.
            unreadable = start_update(4, 80)
            unreadable["message"]["text"] = "my-private-words"
            unreadable["message"]["entities"] = [{"type": "bold"}]
            assert post(url, unreadable, secret=SECRET) == 400
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    stderr = (tmp_path / "stderr.log").read_text()
    assert api.token not in stderr
    assert SECRET not in stderr
    assert ("Traceback" in stderr) == (level == "DEBUG")  # tracebacks for developers only
    assert "Received data was" in stderr and "my-private-words" not in stderr
    # at any level: no update's data, no refused request's secret; each refusal one WARNING
    assert "Ana-Private-Name" not in stderr and WRONG not in stderr
    warnings = [line.split("WARNING telegram.ext.Updater: ")[1]
                for line in stderr.splitlines() if "WARNING telegram.ext.Updater" in line]
    assert warnings == ["refused 1 webhook request(s): it carried no secret token",
                        "refused 1 webhook request(s): it carried the wrong secret token",
                        "refused 1 webhook request(s): it was not sent as JSON (Content-Type)",
                        "refused 1 webhook request(s): its body is not JSON"]


def run_until_it_stops(tmp_path: Path, api: FakeBotAPI, port: int,
                       ) -> subprocess.CompletedProcess[str]:
    """`backbot run` in webhook mode on 127.0.0.1:port, for a run that stops by itself."""
    env = bot_env(tmp_path, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url,
                  BACKBOT_DB=str(tmp_path / "bot.sqlite3"),
                  BACKBOT_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook",
                  BACKBOT_WEBHOOK_LISTEN="127.0.0.1", BACKBOT_WEBHOOK_PORT=str(port))
    return subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_webhook_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    """Another program holds the port: one line naming the address and the settings, no
    traceback, and the token nowhere."""
    with FakeBotAPI() as api, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        result = run_until_it_stops(tmp_path, api, port)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"backbot: cannot listen on 127.0.0.1:{port} (BACKBOT_WEBHOOK_LISTEN,"
                           " BACKBOT_WEBHOOK_PORT): "), result.stderr
    assert "Traceback" not in result.stderr
    assert api.token not in result.stderr + result.stdout
    # nor did it take the webhook (and its secret) from a bot that may hold the port
    assert api.calls_to("setWebhook") == []


def test_webhook_refused_by_telegram_says_why(tmp_path: Path) -> None:
    """Telegram's own reason for refusing the webhook reaches the operator, as a setting
    to fix (exit status 2: no restart mends it)."""
    port = free_port()
    with FakeBotAPI() as api:
        api.fail_next("setWebhook", description="Bad Request: bad webhook: Webhook can be set "
                      "up only on ports 80, 88, 443 or 8443")
        result = run_until_it_stops(tmp_path, api, port)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"backbot: Telegram refused BACKBOT_WEBHOOK_URL=http://127.0.0.1:{port}/hook: Bad "
        "webhook: webhook can be set up only on ports 80, 88, 443 or 8443"), result.stderr
    assert "Traceback" not in result.stderr
    assert api.token not in result.stderr + result.stdout


def test_webhook_refusals_follow_the_log_level_and_count_what_was_not_said() -> None:
    """Refusals are warnings: not shown at ERROR; at WARNING the first at once, then one
    line a minute per reason, counting those since the line before."""
    import logging

    from bot.logs import REFUSALS_EVERY_SECONDS, WebhookRefusals

    def refusal() -> logging.LogRecord:
        return logging.LogRecord("telegram.ext.Updater", logging.DEBUG, __file__, 1,
                                 "Request had the wrong secret token: %s", ("guess",), None)

    assert not WebhookRefusals(logging.ERROR).filter(refusal())
    shown = WebhookRefusals(logging.WARNING)
    first = refusal()
    assert shown.filter(first) and first.levelno == logging.WARNING
    assert first.getMessage() == "refused 1 webhook request(s): it carried the wrong secret token"
    assert not any(shown.filter(refusal()) for _ in range(4))  # within the minute
    shown._last = {reason: when - REFUSALS_EVERY_SECONDS for reason, when in shown._last.items()}
    later = refusal()
    assert shown.filter(later)
    assert later.getMessage() == "refused 5 webhook request(s): it carried the wrong secret token"
    data = logging.LogRecord("telegram.ext.Updater", logging.DEBUG, __file__, 1,
                             "Webhook received data: %s", ('{"text": "private"}',), None)
    assert not WebhookRefusals(logging.DEBUG).filter(data)
