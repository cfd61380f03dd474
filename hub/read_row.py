"""Turn a received read's bytes into the row the hub stores, quickly and strictly.

Ingest authenticates a batch by its hash chain and one signature, then has
to store every read's fields (meter, both clocks, registers, flags). Full
decoding (:func:`protocols.canonical.decode_read`: every field's pattern,
the canonical re-encoding check) costs ~35 µs a read, ten times the JSON
parse, and would make ingest CPU-bound; it runs in the background verifier
instead, with the signature check, before a read can be billed. This parse
still refuses anything that would make a wrong row: a missing or mistyped
field, an unknown format version, a time without its zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from protocols.chain import read_hash
from protocols.errors import (
    ExtraFieldError,
    InvalidFieldError,
    MalformedReadError,
    MissingFieldError,
)
from protocols.read import READ_FORMAT_VERSION, TROUBLE_FLAG_PREFIX, Source

_SOURCES = frozenset(s.value for s in Source)
_FIELDS = ("clock", "collected_at", "collector", "flags", "key_id", "meter", "prev_hash",
           "read_at", "seq", "source", "v", "values")


def read_row(data: bytes, sig: bytes, *, received_at: datetime) -> dict[str, Any]:
    """The ``reads`` row for one read's signed bytes, or a typed ``MalformedReadError``."""
    try:
        raw = orjson.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge numbers, deep nesting
        raise MalformedReadError(f"read is not UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedReadError("read is not a JSON object")
    for name in _FIELDS:
        if name not in raw:
            raise MissingFieldError(f"missing {name}", field=name)
    if len(raw) != len(_FIELDS):
        extra = sorted(set(raw) - set(_FIELDS))
        raise ExtraFieldError(f"unknown field(s) {', '.join(extra)}", field=extra[0])
    if raw["v"] != READ_FORMAT_VERSION or type(raw["v"]) is not int:
        raise InvalidFieldError(f"read format version {raw['v']!r} is not supported", field="v")
    seq = raw["seq"]
    if type(seq) is not int or seq < 1:
        raise InvalidFieldError(f"{seq!r} is not a seq ≥ 1", field="seq")
    clock = raw["clock"]
    if not isinstance(clock, dict) or type(clock.get("ntp_synced")) is not bool:
        raise InvalidFieldError("clock must hold ntp_synced (true/false)", field="clock")
    offset = clock.get("meter_offset_s")
    if offset is not None and not isinstance(offset, str):
        raise InvalidFieldError("meter_offset_s must be a decimal string",
                                field="clock.meter_offset_s")
    if not isinstance(raw["source"], str) or raw["source"] not in _SOURCES:
        raise InvalidFieldError(f"unknown source {raw['source']!r}", field="source")
    if not isinstance(raw["flags"], list):
        raise InvalidFieldError("flags must be an array", field="flags")
    trouble_report = any(isinstance(f, str) and f.startswith(TROUBLE_FLAG_PREFIX)
                         for f in raw["flags"])
    if not isinstance(raw["values"], dict) or not (raw["values"] or trouble_report):
        raise InvalidFieldError("values must be a non-empty object (only a trouble report "
                                "may carry none)", field="values")
    return {
        "collector": _text(raw, "collector"),
        "seq": seq,
        "meter": _text(raw, "meter"),
        "read_at": _instant(raw, "read_at"),
        "collected_at": _instant(raw, "collected_at"),
        "source": raw["source"],
        "ntp_synced": clock["ntp_synced"],
        "meter_offset_s": offset,
        "values": raw["values"],
        "flags": raw["flags"],
        "key_id": _text(raw, "key_id"),
        "prev_hash": _text(raw, "prev_hash"),
        "hash": read_hash(data),
        "data": data,
        "sig": sig,
        "received_at": received_at,
        "verify_status": "pending",
    }


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value:
        raise InvalidFieldError(f"must be a non-empty string, not {value!r}", field=name)
    return value


def _instant(raw: dict[str, Any], name: str) -> datetime:
    value = _text(raw, name)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFieldError(f"{value!r} is not an ISO 8601 time", field=name) from None
    if parsed.tzinfo is UTC:  # the canonical form, ending in Z
        return parsed
    if parsed.tzinfo is None:
        raise InvalidFieldError(f"{value!r} has no time zone", field=name)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidFieldError(f"{value!r} is outside the years 1–9999 in UTC",
                                field=name) from None
