"""The bot token stays secret; settings come from .env and the environment; the DB is private."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from telegram_harness import (
    FakeBotAPI,
    bot_session,
    make_settings,
    no_proxy,
    run_bounded,
    shared_engine,
)

import bot.zones as zone_data
from bot.config import TELEGRAM_API, ConfigError, load_settings, read_env_file
from bot.errors import DataError
from bot.logs import DUMPING, QUIET, TELLING, setup_logging
from bot.store import SessionStore, open_database

CHAT = 3003


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging rewires the root logger; put everything back afterwards."""
    root = logging.getLogger()
    names = (*QUIET, *TELLING, *DUMPING)
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in names})
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


# ---------------------------------------------------------------------------- 10. the token


def test_token_never_reaches_the_logs(tmp_path: Path, restore_logging: None) -> None:
    buffer = io.StringIO()

    async def scenario(api: FakeBotAPI) -> None:
        async with bot_session(tmp_path, api=api) as h:
            await h.send(CHAT, "/start")
            await h.choose(CHAT, "agree")
            # An error whose text carries the token (as some Telegram errors do).
            api.fail_next("sendMessage", error_code=500,
                          description=f"Internal Server Error for bot{api.token}")
            await h.choose(CHAT, "no")  # the reply is lost; /start shows the question again
            await h.send(CHAT, "/start")
            api.fail_next("editMessageText", description=f"Bad Request: {api.token}")
            await h.choose(CHAT, "no")
            replies = await h.say(CHAT, "/start")
            assert replies[-1] == h.message_text("question.legs")

    with FakeBotAPI() as api:
        setup_logging("DEBUG", [api.token])
        root = logging.getLogger()
        assert len(root.handlers) == 1
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        run_bounded(scenario(api))
        logging.getLogger("bot.test").warning("the token is %s", api.token)

    output = buffer.getvalue()
    secret_part = api.token.split(":", 1)[1]
    assert "failed: NetworkError" in output  # the error handler's line was captured
    assert " DEBUG " in output and "Traceback" in output  # so were debug details
    assert "[redacted]" in output
    assert api.token not in output
    assert secret_part not in output
    # nor, even at DEBUG, who the person is beside what they answered: PTB's dumps of
    # each call and update stay off
    for personal in (str(CHAT), "Ana", "|agree", "|no"):
        assert personal not in output, personal


def test_every_copy_of_the_token_in_a_line_is_redacted(restore_logging: None) -> None:
    """A line holding the token twice (a request URL and an error text, say) keeps no copy
    of it, nor of its secret part."""
    token = "123456789:AAFake-Secret_Part_0123456789abcdef"
    buffer = io.StringIO()
    setup_logging("INFO", [token])
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    logging.getLogger("bot.test").warning("POST https://api.telegram.org/bot%s/sendMessage "
                                          "failed: Conflict for %s", token, token)
    output = buffer.getvalue()
    assert output.count("[redacted]") == 2, output
    assert token not in output
    assert token.split(":", 1)[1] not in output


def test_an_info_log_never_says_who_is_where(tmp_path: Path, restore_logging: None) -> None:
    """At the production level, no line names a state of the check-in, an answer or a
    user id, even when a reply fails and is sent again."""
    buffer = io.StringIO()

    async def scenario(api: FakeBotAPI) -> None:
        async with bot_session(tmp_path, api=api) as h:
            h.app.bot_data["backbot"].send_again_after = 0.2
            await h.send(CHAT, "/start")
            await h.choose(CHAT, "agree")
            api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
            await h.choose(CHAT, "yes")  # emergency; its reply goes out on the second try
            assert h.state(CHAT) == "emergency_care"
            emergency = h.message_text("disposition.emergency")
            for _ in range(50):  # the second try, 0.2 s later
                if any(emergency in text for text in h.sent_texts(CHAT)):
                    break
                await asyncio.sleep(0.05)
            assert any(emergency in text for text in h.sent_texts(CHAT))

    with FakeBotAPI() as api:
        setup_logging("INFO", [api.token])
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        run_bounded(scenario(api))

    output = buffer.getvalue()
    assert "failed: NetworkError" in output  # lines were captured
    assert "HTTP Request" not in output  # the HTTP client's request lines are silenced
    states = shared_engine().dialog.states
    for told in [*states, str(CHAT), "agree"]:
        assert told not in output, told


def test_settings_never_show_the_token(tmp_path: Path) -> None:
    with FakeBotAPI() as api:
        settings = make_settings(api, tmp_path / "db.sqlite3",
                                 BACKBOT_WEBHOOK_SECRET="hook-secret-value")
    secret_part = api.token.split(":", 1)[1]
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.token)):
        assert api.token not in text
        assert secret_part not in text
        assert "hook-secret-value" not in text
    assert settings.require_token() == api.token
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.reveal() == "hook-secret-value"


# ------------------------------------------------------------------------------ 12. config


@pytest.mark.parametrize("token", ["notatoken", "123456", ":secret-part", "abc:secret-part",
                                   "123:", "bot123:secret-part", "123:secret/part",
                                   "123:secret:part", "\u0661\u0662\u0663:secret-part"])
def test_a_token_that_cannot_be_one_is_refused_without_the_network(tmp_path: Path,
                                                                   token: str) -> None:
    """Not <digits>:<letters, digits, _ ->: refused at start-up, not sent to Telegram to
    come back as a network error (exit 1) when offline; and never echoed."""
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"TELEGRAM_BOT_TOKEN": token}, env_file=None)
    message = str(raised.value)
    assert message.startswith("TELEGRAM_BOT_TOKEN is not shaped like a bot token")
    assert "copy it again from @BotFather" in message and "\n" not in message
    assert token not in message
    # `backbot run`: one line and exit status 2, nothing asked of the (absent) Bot API
    import subprocess
    import sys

    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "TELEGRAM_BOT_TOKEN": token, "BACKBOT_DB": str(tmp_path / "db.sqlite3"),
           "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"}
    result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"backbot: {message}\n"
    assert not (tmp_path / "db.sqlite3").exists()


@pytest.mark.parametrize("token", ["1:x", "123456:TEST-fake-token-abc", "999:WRONG",
                                   "123456789:AAFake-Secret_Part_0123456789abcdef"])
def test_a_token_of_botfathers_shape_is_taken(token: str) -> None:
    settings = load_settings(environ={"TELEGRAM_BOT_TOKEN": token}, env_file=None)
    assert settings.require_token() == token


def test_env_file_and_environment(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# deployment settings\n"
        "\n"
        'export TELEGRAM_BOT_TOKEN="111:from-file"\n'
        "export\tBACKBOT_RETENTION_DAYS=7\n"
        "BACKBOT_LOG_LEVEL='debug'\n"
        f"BACKBOT_DB={tmp_path / 'file.sqlite3'}\n"
        "BACKBOT_TZ=Europe/London\n",
        encoding="utf-8")

    from_file = load_settings(environ={"HOME": str(tmp_path)}, env_file=dotenv)
    assert from_file.require_token() == "111:from-file"
    assert from_file.retention_days == 7
    assert from_file.log_level == "DEBUG"
    assert from_file.db_path == tmp_path / "file.sqlite3"
    assert from_file.timezone == "Europe/London"
    assert from_file.api_base_url == TELEGRAM_API
    assert from_file.webhook_url is None

    overridden = load_settings(environ={"TELEGRAM_BOT_TOKEN": "222:from-env",
                                        "BACKBOT_RETENTION_DAYS": "90",
                                        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"},
                               env_file=dotenv)
    assert overridden.require_token() == "222:from-env"
    assert overridden.retention_days == 90
    assert overridden.api_base_url == "http://127.0.0.1:9/bot"
    assert overridden.log_level == "DEBUG"  # still from the file

    missing = load_settings(environ={"HOME": str(tmp_path)}, env_file=tmp_path / "none.env")
    assert missing.token is None
    default = tmp_path / ".local" / "share" / "backbot" / "backbot.sqlite3"
    assert missing.db_path == default
    # XDG_DATA_HOME is used when absolute; a relative one is ignored, as the XDG rules say
    for xdg, where in ((str(tmp_path / "xdg"), tmp_path / "xdg" / "backbot" / "backbot.sqlite3"),
                       ("relative/data", default)):
        settings = load_settings(environ={"HOME": str(tmp_path), "XDG_DATA_HOME": xdg},
                                 env_file=None)
        assert settings.db_path == where, xdg
    with pytest.raises(ConfigError, match="backbot chat"):
        missing.require_token()


@pytest.mark.parametrize(("raw", "message"), [
    ("abc", "BACKBOT_RETENTION_DAYS must be a whole number, not 'abc'"),
    ("0", "BACKBOT_RETENTION_DAYS must be between 1 and 3650"),
    ("3651", "BACKBOT_RETENTION_DAYS must be between 1 and 3650"),
    ("7.5", "BACKBOT_RETENTION_DAYS must be a whole number"),
    # int() reads these as 30; a setting that looks odd is refused rather than guessed
    ("3_0", "BACKBOT_RETENTION_DAYS must be a whole number"),
    ("+30", "BACKBOT_RETENTION_DAYS must be a whole number"),
    ("\u0663\u0660", "BACKBOT_RETENTION_DAYS must be a whole number"),  # Arabic-Indic 30
    ("9" * 5000, "BACKBOT_RETENTION_DAYS must be between 1 and 3650"),
])
def test_bad_retention_days(tmp_path: Path, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"BACKBOT_RETENTION_DAYS": raw}, env_file=None)
    assert str(raised.value).startswith(message)
    # From the .env file too.
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"BACKBOT_RETENTION_DAYS={raw}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="BACKBOT_RETENTION_DAYS"):
        load_settings(environ={"HOME": str(tmp_path)}, env_file=dotenv)


@pytest.mark.parametrize("level", ["verbose", "Trace", "info!"])
def test_a_bad_log_level_is_shown_as_typed(level: str) -> None:
    """Shown in the user's own capitals, as other settings are ("not 'verbose'"), not
    upper-cased into a word they never typed."""
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"BACKBOT_LOG_LEVEL": f" {level} "}, env_file=None)
    assert str(raised.value) == ("BACKBOT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or "
                                 f"CRITICAL, not {level!r}")
    assert load_settings(environ={"BACKBOT_LOG_LEVEL": "warning"},
                         env_file=None).log_level == "WARNING"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "../etc/passwd", "a" * 3000,
                                  "posixrules", "right/Europe/London",
                                  "Europe/" + "x/" * 40 + "y"])
def test_bad_time_zone_is_one_line(zone: str) -> None:
    """Unknown names, a folder of zones, paths and very long names: one clear error."""
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"BACKBOT_TZ": zone}, env_file=None)
    assert str(raised.value).startswith("BACKBOT_TZ ")
    assert "is not a known time zone" in str(raised.value)
    assert len(str(raised.value)) < 120
    assert load_settings(environ={"BACKBOT_TZ": "Asia/Tokyo"}, env_file=None).timezone == (
        "Asia/Tokyo")


@pytest.mark.parametrize(("given", "zone"), [("europe/london", "Europe/London"),
                                             ("utc", "UTC"), ("AMERICA/NEW_YORK",
                                                              "America/New_York")])
def test_a_time_zone_is_taken_in_any_capitals(given: str, zone: str) -> None:
    """As /dailytip takes them: stored and shown by its IANA name."""
    assert load_settings(environ={"BACKBOT_TZ": given}, env_file=None).timezone == zone


def test_no_time_zone_data_at_all_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken install with no IANA zone data would find every stored daily tip's zone
    unknown (and UTC too): it is refused at start-up, saying what to install."""
    monkeypatch.setattr(zone_data, "available_timezones", set)
    zone_data._iana_names.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"^this system has no IANA time zone data: "
                                              r"install the tzdata package"):
            load_settings(environ={}, env_file=None)
    finally:
        monkeypatch.undo()
        zone_data._iana_names.cache_clear()
    assert load_settings(environ={}, env_file=None).timezone == "UTC"


def test_bad_env_file_line_names_the_line(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("OK=1\nthis is not a setting\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_settings(environ={"HOME": str(tmp_path)}, env_file=dotenv)
    assert "2" in str(raised.value)


@pytest.mark.parametrize("line", ['TELEGRAM_BOT_TOKEN="1:ab', "BACKBOT_TZ='Europe/Paris"])
def test_an_env_file_quote_left_open_names_the_setting_and_line(tmp_path: Path,
                                                                line: str) -> None:
    """Not taken with its quote as part of the value (a token Telegram would reject, for
    no reason anyone could see)."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"OK=1\r\n{line}\r\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_settings(environ={"HOME": str(tmp_path)}, env_file=dotenv)
    key = line.partition("=")[0]
    assert str(raised.value) == f"{dotenv}:2: {key}: the quote its value opens is not closed"


@pytest.mark.parametrize("line", ['TELEGRAM_BOT_TOKEN="123:abc" trailing',
                                  "BACKBOT_TZ='Europe/Paris'xyz", 'BACKBOT_DB="/a" "/b"'])
def test_an_env_file_value_with_words_after_its_closing_quote_names_the_line(
        tmp_path: Path, line: str) -> None:
    """Refused as an open quote is, naming the file, the line and the setting (not taken
    whole and refused later as, say, a token holding a space), and never showing the
    value."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"OK=1\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_settings(environ={"HOME": str(tmp_path)}, env_file=dotenv)
    key, _, value = line.partition("=")
    assert str(raised.value) == (f"{dotenv}:2: {key}: only a # comment may follow the quote "
                                 f"that closes its value")
    said = str(raised.value).removeprefix(f"{dotenv}:2: ")
    for part in value.replace('"', " ").replace("'", " ").split():
        assert part not in said, part


def test_a_line_break_other_than_newline_stays_in_its_value(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BACKBOT_TZ=Europe/Paris\u2028BACKBOT_LOG_LEVEL=DEBUG\n",
                      encoding="utf-8")
    env = read_env_file(dotenv)
    assert env == {"BACKBOT_TZ": "Europe/Paris\u2028BACKBOT_LOG_LEVEL=DEBUG"}


def test_explicit_empty_environment_is_respected(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "999:process-environment")
    dotenv = tmp_path / ".env"
    dotenv.write_text("TELEGRAM_BOT_TOKEN=111:from-file\n", encoding="utf-8")
    settings = load_settings(environ={}, env_file=dotenv)
    assert settings.require_token() == "111:from-file"


def test_database_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "nested" / "backbot.sqlite3"
    db = open_database(path)
    try:
        SessionStore(db).put(1, {"state": "welcome"})
    finally:
        db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_bot_database_is_owner_only_and_holds_no_text(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_session(tmp_path, db_name="data/bot.sqlite3") as h:
            await h.send(CHAT, "/start")
            await h.choose(CHAT, "agree")
            await h.send(CHAT, "my secret free text")
            await h.choose(CHAT, "no")
            path = h.db_path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            for suffix in ("-wal", "-shm"):
                side = Path(f"{path}{suffix}")
                if side.exists():
                    assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, side
            dump = b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal")
                            if os.path.exists(f"{path}{s}"))
            assert b"my secret free text" not in dump
            assert b"Ana" not in dump  # the user's first name is never stored

    with no_proxy():
        run_bounded(scenario())


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("BACKBOT_WEBHOOK_SECRET", "has spaces!", "BACKBOT_WEBHOOK_SECRET must be 1-256"),
    ("BACKBOT_WEBHOOK_SECRET", "x" * 257, "BACKBOT_WEBHOOK_SECRET must be 1-256"),
    ("BACKBOT_WEBHOOK_URL", "bot.example.org/hook", "BACKBOT_WEBHOOK_URL must be a full"),
    ("BACKBOT_WEBHOOK_URL", "ftp://bot.example.org/hook", "BACKBOT_WEBHOOK_URL must be a full"),
    ("BACKBOT_WEBHOOK_URL", "https://[::1/hook", "BACKBOT_WEBHOOK_URL must be a full"),
    # PTB routes by the path as a pattern: "+" or "(" would never match the real path
    ("BACKBOT_WEBHOOK_URL", "https://bot.example.org/hook+1", "BACKBOT_WEBHOOK_URL's path"),
    ("BACKBOT_WEBHOOK_URL", "https://bot.example.org/a(b)", "BACKBOT_WEBHOOK_URL's path"),
    # served with its leading slashes cut to one: "//hook" would never be matched
    ("BACKBOT_WEBHOOK_URL", "https://bot.example.org//hook", "BACKBOT_WEBHOOK_URL's path"),
    ("BACKBOT_WEBHOOK_URL", "https://bot.example.org/a//b", "BACKBOT_WEBHOOK_URL's path"),
    # Telegram's own Bot API calls webhooks only over https
    ("BACKBOT_WEBHOOK_URL", "http://bot.example.org/hook",
     "BACKBOT_WEBHOOK_URL must start with https://"),
    ("TELEGRAM_API_BASE_URL", "not-a-url", "TELEGRAM_API_BASE_URL must be a full"),
    ("TELEGRAM_API_BASE_URL", "ftp://127.0.0.1/bot", "TELEGRAM_API_BASE_URL must be a full"),
    ("TELEGRAM_API_BASE_URL", "http:///bot", "TELEGRAM_API_BASE_URL must be a full"),
    # the token would be added to the port, or to the host's name
    ("TELEGRAM_API_BASE_URL", "http://127.0.0.1:9", "TELEGRAM_API_BASE_URL must end in /bot"),
    ("TELEGRAM_API_BASE_URL", "https://api.telegram.org/v1", "TELEGRAM_API_BASE_URL must end in"),
    ("TELEGRAM_API_BASE_URL", "http://127.0.0.1/bot?x=1", "TELEGRAM_API_BASE_URL must end in"),
    ("TELEGRAM_API_BASE_URL", "http://h/bot{token}/{x}", "TELEGRAM_API_BASE_URL must end in"),
    ("TELEGRAM_API_BASE_URL", "http://h/bot{token}/{", "TELEGRAM_API_BASE_URL must end in"),
    ("BACKBOT_DB", "~no-such-user-here/b.sqlite3", "BACKBOT_DB starts with ~user for a"),
])
def test_bad_webhook_settings_are_refused_at_start(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={name: raw}, env_file=None)
    assert str(raised.value).startswith(message)
    assert raw not in str(raised.value)  # a secret is never echoed back


@pytest.mark.parametrize("url", ["http://127.0.0.1:8081/bot", "https://api.telegram.org/bot",
                                 "http://127.0.0.1:8081/bot{token}/test"])
def test_a_bot_api_address_takes_the_token_at_its_end_or_at_token(url: str) -> None:
    assert load_settings(environ={"TELEGRAM_API_BASE_URL": url},
                         env_file=None).api_base_url == url


def test_a_plain_http_webhook_is_for_a_self_hosted_bot_api_only() -> None:
    url = "http://127.0.0.1:8443/hook"
    settings = load_settings(environ={"BACKBOT_WEBHOOK_URL": url,
                                      "TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081/bot"},
                             env_file=None)
    assert settings.webhook_url == url
    with pytest.raises(ConfigError,
                       match=r"must start with https:// \(Telegram calls only https\)"):
        load_settings(environ={"BACKBOT_WEBHOOK_URL": url}, env_file=None)
    for official in ("https://api.telegram.org/bot{token}", "https://API.telegram.org/bot"):
        with pytest.raises(ConfigError, match=r"must start with https://"):
            load_settings(environ={"BACKBOT_WEBHOOK_URL": url,
                                   "TELEGRAM_API_BASE_URL": official}, env_file=None)


@pytest.mark.parametrize("url", ["https://bot.example.org:99999/x", "https://bot.example.org:0/x",
                                 "https://bot.example.org:65536/x", "https://bot.example.org:x/x",
                                 "https://bot.example.org:+443/x", "https://[::1]:70000/x"])
@pytest.mark.parametrize("api", ["", "http://127.0.0.1:8081/bot"])
def test_a_webhook_port_that_cannot_be_is_refused(url: str, api: str) -> None:
    """Whatever Bot API serves it, a port past 65535 (or 0, or not a number) is refused at
    start-up, not left to fail when the webhook is registered."""
    with pytest.raises(ConfigError, match=r"^BACKBOT_WEBHOOK_URL's port must be a number "
                                          r"from 1 to 65535$"):
        load_settings(environ={"BACKBOT_WEBHOOK_URL": url, "TELEGRAM_API_BASE_URL": api},
                      env_file=None)


def test_telegrams_own_bot_api_takes_a_webhook_on_its_four_ports_only() -> None:
    """Telegram calls webhooks only on 443, 80, 88 and 8443: any other port named is
    refused at start-up (Telegram's setWebhook would refuse it later, with exit status 1,
    which no restart mends); a self-hosted Bot API may call others, so there it is
    taken."""
    for port in (443, 80, 88, 8443):
        url = f"https://bot.example.org:{port}/hook"
        assert load_settings(environ={"BACKBOT_WEBHOOK_URL": url},
                             env_file=None).webhook_url == url
    for official in ("", "https://api.telegram.org/bot", "https://API.telegram.org/bot{token}"):
        for port in (8080, 1, 65535, 4443):
            url = f"https://bot.example.org:{port}/hook"
            with pytest.raises(ConfigError) as raised:
                load_settings(environ={"BACKBOT_WEBHOOK_URL": url,
                                       "TELEGRAM_API_BASE_URL": official}, env_file=None)
            assert str(raised.value) == ("BACKBOT_WEBHOOK_URL's port must be 443, 80, 88 or "
                                         "8443 (the only ports Telegram calls webhooks on), "
                                         "or none (443)")
    url = "https://bot.example.org:8080/hook"
    assert load_settings(environ={"BACKBOT_WEBHOOK_URL": url,
                                  "TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081/bot"},
                         env_file=None).webhook_url == url


def test_a_webhook_path_of_plain_characters_is_taken_as_is() -> None:
    url = "https://bot.example.org/tele_gram-1/x.y~z"
    assert load_settings(environ={"BACKBOT_WEBHOOK_URL": url}, env_file=None).webhook_url == url


def test_env_file_comments_after_values_and_a_byte_order_mark(tmp_path: Path) -> None:
    """As python-dotenv reads them: an unquoted value ends at " #", a quoted one keeps it,
    and a comment may follow the closing quote."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("\ufeffTELEGRAM_BOT_TOKEN=1:abcd  # from @BotFather\n"
                      "BACKBOT_RETENTION_DAYS=7 # a week\n"
                      "BACKBOT_DB='/data/b #2.sqlite3'\n"
                      'BACKBOT_LOG_LEVEL="DEBUG"  # while testing\n'
                      "BACKBOT_TZ='Europe/Paris'#no space\n", encoding="utf-8")
    settings = load_settings(environ={}, env_file=dotenv)
    assert settings.db_path == Path("/data/b #2.sqlite3")
    assert settings.retention_days == 7
    assert settings.require_token() == "1:abcd"
    assert settings.log_level == "DEBUG"
    assert settings.timezone == "Europe/Paris"


def test_an_unusable_database_path_is_one_line(tmp_path: Path) -> None:
    """A folder where the file should be, a file that is not SQLite, another program's
    database with a table of the same name: one clear line, and nothing changed."""
    import sqlite3
    import subprocess
    import sys

    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database\n", encoding="utf-8")
    other = tmp_path / "other.sqlite3"
    with contextlib.closing(sqlite3.connect(other)) as db, db:
        db.execute("CREATE TABLE sessions (id INTEGER)")
    for db_path, reason in ((not_sqlite / "x.sqlite3", f"Not a directory ({not_sqlite})"),
                            (not_sqlite, "file is not a database"),
                            (other, "not backbot's: its sessions table is laid out otherwise")):
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
               "TELEGRAM_BOT_TOKEN": "111:not-a-real-token", "BACKBOT_DB": str(db_path),
               "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"}
        result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2
        assert result.stderr.strip() == (f"backbot: cannot open the database "
                                         f"BACKBOT_DB={db_path}: {reason}")
    with contextlib.closing(sqlite3.connect(other)) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("sessions",)]
        # not switched to WAL, nor marked as the bot's
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert db.execute("PRAGMA user_version").fetchone() == (0,)


@pytest.mark.parametrize("kind", ["not_utf8", "folder"])
def test_unreadable_env_file_is_one_line(tmp_path: Path, kind: str) -> None:
    dotenv = tmp_path / ".env"
    if kind == "folder":
        dotenv.mkdir()
    else:
        dotenv.write_bytes(b"TELEGRAM_BOT_TOKEN=\xff\xfe123\n")
    with pytest.raises(DataError) as raised:
        load_settings(environ={"HOME": str(tmp_path)}, env_file=dotenv)
    message = str(raised.value)
    assert message.startswith(f"{dotenv}: cannot read: ") and "\n" not in message
    assert "123" not in message  # nothing of what the file holds
