"""Exact text forms of the two scalar types a read carries: decimals and UTC instants.

A signed read must have exactly one byte form, so each scalar has exactly one
text form: decimals as plain positional strings that keep the meter's trailing
zeros (``"0.000"`` stays ``"0.000"``: the meter said three decimals), and
instants as ISO 8601 UTC with milliseconds and ``Z``. Parsing is strict: any
other spelling of the same number or instant is rejected, not normalised.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

MAX_DECIMAL_CHARS = 40
"""No meter register needs more; a bound keeps hostile input from costing memory."""

_DECIMAL_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


class ScalarError(ValueError):
    """A decimal or timestamp that has no canonical form or is not in it."""


def normalize_decimal(value: Decimal) -> Decimal:
    """Return ``value`` ready to be signed: finite, bounded, negative zero made zero.

    The exponent is kept, so ``Decimal("1.500")`` keeps its three places.
    """
    if not isinstance(value, Decimal):
        raise ScalarError(f"expected Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise ScalarError(f"{value} is not a finite number")
    if value.is_zero() and value.is_signed():
        value = value.copy_abs()
    if len(format(value, "f")) > MAX_DECIMAL_CHARS:
        raise ScalarError(f"{value} has more than {MAX_DECIMAL_CHARS} characters")
    return value


def format_decimal(value: Decimal) -> str:
    """Positional notation, no exponent, trailing zeros kept: ``Decimal('1E+3')`` → ``'1000'``."""
    text = str(value)  # C-fast, and already positional unless it chose an exponent
    return format(value, "f") if "E" in text else text


def parse_decimal(text: str) -> Decimal:
    """Parse a canonical decimal string; reject ``+1``, ``01``, ``1e3``, ``-0``, ``.5``."""
    if not isinstance(text, str):
        raise ScalarError(f"expected a decimal string, got {type(text).__name__}")
    if len(text) > MAX_DECIMAL_CHARS or not _DECIMAL_RE.fullmatch(text):
        raise ScalarError(f"{text!r} is not a canonical decimal string")
    if text.startswith("-") and not text.strip("-0."):
        raise ScalarError(f"{text!r} is negative zero; write it without the sign")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # unreachable for regex-valid text, kept for safety
        raise ScalarError(f"{text!r} is not a decimal") from exc


def normalize_instant(value: datetime) -> datetime:
    """UTC, truncated to the millisecond; naive datetimes are refused, never guessed."""
    if not isinstance(value, datetime):
        raise ScalarError(f"expected datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScalarError(f"{value.isoformat()} has no time zone; times must be aware UTC")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def format_instant(value: datetime) -> str:
    """``2026-11-23T19:41:00.123Z`` for an instant made by :func:`normalize_instant`."""
    # isoformat is C; a normalised instant always ends in "+00:00", replaced by "Z".
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_instant(text: str) -> datetime:
    """Parse the canonical instant form and nothing else."""
    if not isinstance(text, str) or not _TIMESTAMP_RE.fullmatch(text):
        raise ScalarError(f"{text!r} is not an instant of the form YYYY-MM-DDTHH:MM:SS.mmmZ")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ScalarError(f"{text!r} is not a valid calendar instant: {exc}") from exc
