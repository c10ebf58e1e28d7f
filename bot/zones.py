"""IANA time zones by name, checked so that no name can raise."""

from __future__ import annotations

import re
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# IANA names are short ASCII paths ("America/Argentina/Buenos_Aires" is 30 characters).
# Checked before ZoneInfo, which recurses on long names until a RecursionError.
ZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,3}$")
MAX_ZONE_LENGTH = 64
# Names in the zone data that are no place's zone: the machine's own setting, and a
# placeholder for "not set yet".
NOT_ZONES = frozenset({"localtime", "Factory"})
SHOWN_LENGTH = 40  # of a rejected name, echoed back in an error


def known_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone called `name`, or None for anything else."""
    if len(name) > MAX_ZONE_LENGTH or not ZONE.match(name) or name not in _iana_names():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, or a folder or non-zone file
        return None


def zone_named(name: str) -> str | None:
    """The IANA name `name` stands for, its letters in any case ("europe/london" is
    "Europe/London"), or None if it is no zone here."""
    if known_zone(name) is not None:
        return name
    found = _names_by_lower_case().get(name.lower())
    return found if found is not None and known_zone(found) is not None else None


def zone_data_present() -> bool:
    """False when this system has no IANA zone data at all (a broken install)."""
    return bool(_iana_names())


def shown_zone(name: str) -> str:
    """A zone name as a reply may echo it (a rejected one too): short enough for one line."""
    return name if len(name) <= SHOWN_LENGTH else name[:SHOWN_LENGTH] + "..."


@cache
def _iana_names() -> frozenset[str]:
    """The zone data's IANA names: ZoneInfo also opens files that are not zones of their
    own (posixrules, and the leap-second right/ copies, which it misreads)."""
    return frozenset(available_timezones()) - NOT_ZONES


@cache
def _names_by_lower_case() -> dict[str, str]:
    return {name.lower(): name for name in _iana_names()}
