"""Firmware versions as meters print them, put in order so a profile can name a range.

Real versions are not semantic versions: ``1.0``, ``V2.01``, ``B32`` (the
``.B32`` suffix of a Landis+Gyr identification), ``2.3.1``, ``0001``. The rule,
chosen so that plain dotted numbers compare numerically and nothing ever raises:

1. Only ASCII letters and digits count; everything else (``.``, ``-``, ``_``,
   spaces, other characters) separates parts. ``2.3.1`` → ``2, 3, 1``;
   ``B32`` → ``B, 32``.
2. A leading ``v``/``V`` directly followed by a digit is a prefix, not a part:
   ``V2.01`` equals ``2.01``.
3. Digit runs compare as numbers, without converting them (so a 5,000-digit
   run cannot fail): ``2.01`` equals ``2.1``, ``2.10`` is after ``2.9``.
4. Letter runs compare case-insensitively; at the same position a number sorts
   before letters (``1.0.5`` < ``1.0.a``).
5. Trailing numeric zeros do not count: ``1`` = ``1.0`` = ``1.0.0`` — a meter
   that prints ``2`` runs the same firmware as one that prints ``2.0``.
6. Otherwise parts compare left to right, and a version that runs out first is
   the smaller one (``1.2`` < ``1.2.1``; ``B32`` < ``B32a``).

Example::

    >>> version_key("V2.01") == version_key("2.1.0")
    True
    >>> FirmwareRange("1.0", "2.0").contains("1.10")
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART_RE = re.compile(r"[0-9]+|[A-Za-z]+")
_NUMBER, _WORD = 0, 1

VersionKey = tuple[tuple[int, int, str], ...]
"""A sortable form of a version: one ``(kind, length, text)`` triple per part."""


def version_key(version: str) -> VersionKey:
    """The sort key of ``version`` under the rule in this module's docstring; never raises.

    Each part becomes ``(0, digits, number_text)`` for a number (its length
    first, so longer numbers sort later without ``int()``) or ``(1, 0,
    lowercase_text)`` for letters, so any two keys are comparable.
    """
    parts = _PART_RE.findall(version) if isinstance(version, str) else []
    if len(parts) > 1 and parts[0] in ("v", "V") and parts[1].isdigit():
        parts = parts[1:]
    key: list[tuple[int, int, str]] = []
    for part in parts:
        if part.isdigit():
            digits = part.lstrip("0") or "0"
            key.append((_NUMBER, len(digits), digits))
        else:
            key.append((_WORD, 0, part.lower()))
    while key and key[-1] == (_NUMBER, 1, "0"):
        key.pop()
    return tuple(key)


def same_version(left: str, right: str) -> bool:
    """Whether two printed versions are the same firmware under this module's rule."""
    return version_key(left) == version_key(right)


@dataclass(frozen=True)
class FirmwareRange:
    """The firmware versions a profile applies to: ``min ≤ version ≤ max``, ``None`` = open.

    >>> str(FirmwareRange("1.0", None))
    '≥ 1.0'
    """

    min: str | None = None
    max: str | None = None

    def contains(self, version: str) -> bool:
        """Whether ``version`` lies in this range, bounds included."""
        key = version_key(version)
        if self.min is not None and key < version_key(self.min):
            return False
        return self.max is None or key <= version_key(self.max)

    def is_empty(self) -> bool:
        """True when the lower bound is above the upper one: no version can match."""
        return (
            self.min is not None
            and self.max is not None
            and version_key(self.min) > version_key(self.max)
        )

    def __str__(self) -> str:
        if self.min is None and self.max is None:
            return "any"
        if self.max is None:
            return f"≥ {self.min}"
        if self.min is None:
            return f"≤ {self.max}"
        if same_version(self.min, self.max):
            return self.min
        return f"{self.min} – {self.max}"
