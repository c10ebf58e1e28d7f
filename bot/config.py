"""All settings, read once at start-up from the environment and an optional `.env` file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bot.errors import DataError
from bot.zones import shown_zone, zone_data_present, zone_named

TELEGRAM_API = "https://api.telegram.org/bot"
DEFAULT_RETENTION_DAYS = 30  # BACKBOT_RETENTION_DAYS when unset
TELEGRAM_WEBHOOK_PORTS = frozenset({443, 80, 88, 8443})  # the only ones Telegram calls
WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts
# PTB matches the webhook's path as a regular expression: keep to characters that match
# themselves; and it serves the path with its leading slashes cut to one, so no "//".
WEBHOOK_PATH = re.compile(r"^(?!.*//)[A-Za-z0-9/_.~-]*$")
# An unquoted .env value ends where a comment begins (" # ..."), as in python-dotenv.
INLINE_COMMENT = re.compile(r"\s+#.*$")
EXPORT = re.compile(r"^export\s+")  # a line a shell could `source` as well
# What @BotFather hands out: the bot's id, a colon, then the secret part. Anything else
# would only fail later, as a network error, so it is refused before any request.
TOKEN_SHAPE = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")  # matched whole (fullmatch)


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


class Secret:
    """A value that never shows itself in a repr, str or log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Settings:
    token: Secret | None
    api_base_url: str
    db_path: Path
    log_level: str
    retention_days: int
    timezone: str
    webhook_url: str | None
    webhook_listen: str
    webhook_port: int
    webhook_secret: Secret | None = field(default=None)

    def require_token(self) -> str:
        if not self.token:
            raise ConfigError("TELEGRAM_BOT_TOKEN is not set (get one from @BotFather; "
                              "or try `backbot chat` to use the bot in this terminal)")
        return self.token.reveal()


def default_db_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # unset, or relative: the XDG rules say to ignore it
        base = str(Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "backbot" / "backbot.sqlite3"


def db_setting(env: Mapping[str, str]) -> Path:
    raw = env.get("BACKBOT_DB", "").strip()
    try:
        path = Path(raw or default_db_path(env)).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise ConfigError("BACKBOT_DB starts with ~user for a user this system does not "
                          "have") from None
    if "\0" in str(path):
        raise ConfigError("BACKBOT_DB must not hold a NUL character")
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments skipped (a comment after a value too);
    optional quotes stripped."""
    values: dict[str, str] = {}
    try:  # utf-8-sig: an editor may have put a byte-order mark first
        # lines end at "\n", "\r\n" or "\r" (read_text's newlines) only, not at the other
        # breaks splitlines knows
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except FileNotFoundError:
        return values
    except UnicodeDecodeError:
        raise DataError(path, "cannot read: not UTF-8 text") from None
    except OSError as exc:  # a folder, no permission
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = EXPORT.sub("", line).partition("=")
        if not sep or not key.strip().isidentifier():
            raise DataError(path, "expected KEY=VALUE", line=number)
        value = value.strip()
        end = value.find(value[0], 1) if value[:1] in ("'", '"') else -1
        if value[:1] in ("'", '"') and end < 0:
            raise DataError(path, f"{key.strip()}: the quote its value opens is not closed",
                            line=number)
        rest = value[end + 1:].strip() if end > 0 else None
        if rest and not rest.startswith("#"):
            # (python-dotenv skips such a line) taken whole, its quotes and the words after
            # them would be the value, and fail later for no reason anyone could see
            raise DataError(path, f"{key.strip()}: only a # comment may follow the quote "
                            "that closes its value", line=number)
        # quoted (perhaps with a comment after it), or unquoted up to a comment
        value = value[1:end] if rest is not None else INLINE_COMMENT.sub("", value)
        values[key.strip()] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None,
                  env_file: Path | None = Path(".env")) -> Settings:
    """The environment wins over `.env`, so a deployment can override a checked-out file."""
    env = {**(read_env_file(env_file) if env_file else {}),
           **(os.environ if environ is None else environ)}

    def number(name: str, default: int, low: int, high: int) -> int:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        # ASCII digits alone: int() also reads "3_0", "+30" and other scripts' digits
        if not (raw.isascii() and raw.isdigit()):
            raise ConfigError(f"{name} must be a whole number, not {raw!r}")
        value = int(raw) if len(raw) <= 9 else high + 1  # int() refuses 4,300 digits
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}")
        return value

    given_level = env.get("BACKBOT_LOG_LEVEL", "").strip()
    level = given_level.upper() or "INFO"
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        # as typed, as the other settings are shown ("verbose", not "VERBOSE")
        raise ConfigError("BACKBOT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or "
                          f"CRITICAL, not {given_level!r}")
    given_zone = env.get("BACKBOT_TZ", "").strip() or "UTC"
    if not zone_data_present():  # else every stored daily tip would look unknown
        raise ConfigError("this system has no IANA time zone data: install the tzdata "
                          "package (pip install tzdata)")
    timezone = zone_named(given_zone)  # in any mix of capitals, as /dailytip takes them
    if timezone is None:
        raise ConfigError(f"BACKBOT_TZ {shown_zone(given_zone)!r} is not a known time zone "
                          "(try UTC or Europe/London)")
    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if any(c.isspace() or not c.isprintable() for c in token):
        # it goes into every request's address, where it would fail as a network error
        raise ConfigError("TELEGRAM_BOT_TOKEN holds a space or a control character; copy "
                          "it again from @BotFather")
    if token and not TOKEN_SHAPE.fullmatch(token):
        raise ConfigError("TELEGRAM_BOT_TOKEN is not shaped like a bot token (digits, a "
                          "colon, then letters, digits, _ and -); copy it again from "
                          "@BotFather")
    secret = env.get("BACKBOT_WEBHOOK_SECRET", "").strip()
    if secret and not WEBHOOK_SECRET.match(secret):
        raise ConfigError("BACKBOT_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -")
    api_base_url = env.get("TELEGRAM_API_BASE_URL", "").strip() or TELEGRAM_API
    if _scheme(api_base_url) not in ("https", "http"):
        raise ConfigError("TELEGRAM_API_BASE_URL must be a full address such as "
                          f"{TELEGRAM_API}")
    if not _takes_token(api_base_url):
        raise ConfigError("TELEGRAM_API_BASE_URL must end in /bot, as "
                          f"{TELEGRAM_API} does (the token is added after it), or hold "
                          "{token} where the token goes (and no other braces)")
    webhook_url = env.get("BACKBOT_WEBHOOK_URL", "").strip() or None
    if webhook_url:
        # Telegram's own Bot API calls only https; a self-hosted one may call plain http
        official = urlparse(api_base_url).hostname == urlparse(TELEGRAM_API).hostname
        scheme = _scheme(webhook_url)
        if scheme == "http" and official:
            raise ConfigError("BACKBOT_WEBHOOK_URL must start with https:// (Telegram calls "
                              "only https), such as https://bot.example.org/telegram")
        if scheme not in ("https", "http"):
            raise ConfigError("BACKBOT_WEBHOOK_URL must be a full address such as "
                              "https://bot.example.org/telegram")
        parts = urlparse(webhook_url)
        if not WEBHOOK_PATH.match(parts.path):
            raise ConfigError("BACKBOT_WEBHOOK_URL's path may hold only letters, digits "
                              "and / _ . ~ - (no empty part: not //)")
        port = _port(webhook_url)
        if port is not None and not 1 <= port <= 65535:  # urlparse takes ":0"
            raise ConfigError("BACKBOT_WEBHOOK_URL's port must be a number from 1 to 65535")
        # Telegram's own Bot API calls no other port; a self-hosted one may
        if official and port is not None and port not in TELEGRAM_WEBHOOK_PORTS:
            raise ConfigError("BACKBOT_WEBHOOK_URL's port must be 443, 80, 88 or 8443 (the "
                              "only ports Telegram calls webhooks on), or none (443)")
    return Settings(
        token=Secret(token) if token else None,
        api_base_url=api_base_url,
        db_path=db_setting(env),
        log_level=level,
        retention_days=number("BACKBOT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, 1, 3650),
        timezone=timezone,
        webhook_url=webhook_url,
        webhook_listen=env.get("BACKBOT_WEBHOOK_LISTEN", "").strip() or "0.0.0.0",
        webhook_port=number("BACKBOT_WEBHOOK_PORT", 8443, 1, 65535),
        webhook_secret=Secret(secret) if secret else None,
    )


def _takes_token(url: str) -> bool:
    """Whether PTB, which adds the token at the end of the address or puts it where
    {token} stands, makes a Bot API address of it."""
    if "{token}" in url:
        try:
            url.format(token="")
        except (KeyError, ValueError, IndexError):  # another {name}, or a lone brace
            return False
        return True
    parts = urlparse(url)
    return parts.path.endswith("/bot") and not parts.query and not parts.fragment


def _port(url: str) -> int | None:
    """The port a full address names (None if none), or -1 if it cannot be one (not a
    number, or past 65535: urlparse refuses those only when asked)."""
    try:
        return urlparse(url).port
    except ValueError:
        return -1


def _scheme(url: str) -> str:
    """The scheme of a full address (one with a host), else ""."""
    try:
        parts = urlparse(url)
    except ValueError:  # e.g. an unclosed [IPv6] host
        return ""
    return parts.scheme if parts.netloc else ""
