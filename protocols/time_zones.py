"""Meter clocks keep local time; a zone name from a config must be checked where it is read.

``ZoneInfo`` fails in three different ways for a bad name (``ZoneInfoNotFoundError``
for an unknown key, ``ValueError`` for a malformed one, ``IsADirectoryError`` for
``"Europe"``), and a lane thread that met one at its first read would die far from
the config line that caused it. :func:`load_zone` turns all three into one
sentence at load time.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class UnknownTimeZone(ValueError):
    """The name is not an IANA time zone this machine knows."""


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZone(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Amsterdam"
        ) from None
