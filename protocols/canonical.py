"""Canonical bytes of a read: the one byte string that is hashed and signed.

The form is the JCS idea (RFC 8785) narrowed to our schema: UTF-8 JSON, keys
sorted, no insignificant whitespace, decimals and instants as strings (see
:mod:`protocols.scalars`), every field always present (absent values are
``null``), flags sorted and unique.

The encoder writes the fixed schema directly instead of sorting a dict at run
time: it is the edge's hot path (every read, before it is signed) and costs a
quarter of the generic ``json.dumps(sort_keys=True)``. The tests hold it to the
generic form byte for byte.

Decoding is strict and typed: bytes that are not JSON, a missing or unknown
field, a wrong type, or any byte form other than the canonical one each raise
their own :class:`~protocols.errors.MalformedReadError` subclass, naming the
field. A verifier hashes and checks signatures over the bytes it received; it
never re-encodes in order to verify. Re-encoding here only proves the bytes
were already canonical, so that one read has one hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring  # the C-accelerated escaper json.dumps uses
from typing import Any

from protocols.errors import (
    ExtraFieldError,
    InvalidFieldError,
    MalformedReadError,
    MissingFieldError,
    NonCanonicalError,
    ReadError,
)
from protocols.read import (
    READ_FORMAT_VERSION,
    ClockQuality,
    Read,
    Reading,
    RegisterValue,
    scalar_field,
)
from protocols.scalars import (
    format_decimal,
    format_instant,
    parse_decimal,
    parse_instant,
)

READ_FIELDS = frozenset(
    {"clock", "collected_at", "collector", "flags", "key_id", "meter", "prev_hash",
     "read_at", "seq", "source", "v", "values"}
)
CLOCK_FIELDS = frozenset({"meter_offset_s", "ntp_synced"})
REGISTER_FIELDS = frozenset({"obis", "unit", "value"})
MAX_READ_BYTES = 64 * 1024
"""A read is a few hundred bytes; anything this large is an attack or a bug."""


# --- encoding ----------------------------------------------------------------


def encode_read(read: Read) -> bytes:
    """The canonical bytes of ``read``."""
    return encode_chained(
        read, collector=read.collector, seq=read.seq, prev_hash=read.prev_hash,
        key_id=read.key_id,
    )


def encode_chained(
    reading: Reading, *, collector: str, seq: int, prev_hash: str, key_id: str
) -> bytes:
    """The canonical bytes ``reading`` will have once placed in a chain.

    The edge buffer calls this directly, so it need not build a :class:`Read`
    per reading; the chain fields must already be valid (the buffer makes them).
    """
    clock = reading.clock
    offset = "null" if clock.meter_offset_s is None else f'"{format_decimal(clock.meter_offset_s)}"'
    flags = ",".join(f'"{flag}"' for flag in reading.flags)
    prefixes = _REGISTER_PREFIXES
    values = ",".join([
        f'{prefixes.get((name, r.obis, r.unit)) or _register_prefix(name, r.obis, r.unit)}'
        f'{format_decimal(r.value)}"}}'
        for name, r in reading.values.items()
    ])
    synced = "true" if clock.ntp_synced else "false"
    return (
        f'{{"clock":{{"meter_offset_s":{offset},"ntp_synced":{synced}}},'
        f'"collected_at":"{format_instant(reading.collected_at)}",'
        f'"collector":"{collector}",'
        f'"flags":[{flags}],'
        f'"key_id":"{key_id}",'
        f'"meter":{encode_basestring(reading.meter)},'
        f'"prev_hash":"{prev_hash}",'
        f'"read_at":"{format_instant(reading.read_at)}",'
        f'"seq":{seq},'
        f'"source":"{reading.source.value}",'
        f'"v":{READ_FORMAT_VERSION},'
        f'"values":{{{values}}}}}'
    ).encode()


_REGISTER_PREFIXES: dict[tuple[str, str | None, str], str] = {}
"""Encoded ``"name":{"obis":…,"unit":…,"value":"`` per register definition. A fleet has a
handful of register definitions repeated in every poll, so this stays small; it is
cleared if it ever grows past a bound, so hostile input cannot grow it without limit."""
_MAX_REGISTER_PREFIXES = 4096


def _register_prefix(name: str, obis: str | None, unit: str) -> str:
    if len(_REGISTER_PREFIXES) >= _MAX_REGISTER_PREFIXES:
        _REGISTER_PREFIXES.clear()
    prefix = f'"{name}":{{"obis":{_optional(obis)},"unit":{encode_basestring(unit)},"value":"'
    _REGISTER_PREFIXES[(name, obis, unit)] = prefix
    return prefix


def _optional(text: str | None) -> str:
    return "null" if text is None else encode_basestring(text)


def read_as_json_object(read: Read) -> dict[str, Any]:
    """The read as the plain JSON object its canonical bytes encode (for the generic form)."""
    return {
        "clock": {
            "meter_offset_s": None
            if read.clock.meter_offset_s is None
            else format_decimal(read.clock.meter_offset_s),
            "ntp_synced": read.clock.ntp_synced,
        },
        "collected_at": format_instant(read.collected_at),
        "collector": read.collector,
        "flags": list(read.flags),
        "key_id": read.key_id,
        "meter": read.meter,
        "prev_hash": read.prev_hash,
        "read_at": format_instant(read.read_at),
        "seq": read.seq,
        "source": read.source.value,
        "v": READ_FORMAT_VERSION,
        "values": {
            name: {"obis": r.obis, "unit": r.unit, "value": format_decimal(r.value)}
            for name, r in read.values.items()
        },
    }


# --- decoding ----------------------------------------------------------------


def decode_read(data: bytes) -> Read:
    """Parse canonical read bytes into a :class:`Read`, or raise a typed error."""
    raw = _parse_json(data)
    collector = raw.get("collector") if isinstance(raw.get("collector"), str) else None
    seq = raw.get("seq") if type(raw.get("seq")) is int else None
    try:
        read = _read_from_object(raw)
        canonical = encode_read(read)
        if canonical != data:
            raise NonCanonicalError(_first_difference(data, canonical))
    except ReadError as exc:
        raise exc.located(collector=collector, seq=seq) from None
    return read


def _parse_json(data: bytes) -> dict[str, Any]:
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedReadError(f"read bytes must be bytes, not {type(data).__name__}")
    if len(data) > MAX_READ_BYTES:
        raise MalformedReadError(f"{len(data)} bytes is larger than a read may be")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedReadError(f"not UTF-8 at byte {exc.start}") from None
    try:
        raw = json.loads(text, object_pairs_hook=_object_without_duplicates,
                         parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedReadError(f"not JSON: {exc.msg} at byte {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, 10 000 nested arrays
        raise MalformedReadError(f"not a JSON document a read can be: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedReadError(f"a read is a JSON object, not {type(raw).__name__}")
    return raw


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise NonCanonicalError(f"key {duplicate!r} appears twice")
    return result


def _reject_constant(name: str) -> None:
    raise MalformedReadError(f"{name} is not a number a read may carry")


def _read_from_object(raw: dict[str, Any]) -> Read:
    _expect_fields(raw, READ_FIELDS, "")
    if raw["v"] != READ_FORMAT_VERSION or type(raw["v"]) is not int:
        raise InvalidFieldError(
            f"read format version {raw['v']!r} is not supported (expected {READ_FORMAT_VERSION})",
            field="v",
        )
    return Read(
        meter=raw["meter"],
        read_at=scalar_field(parse_instant, raw["read_at"], "read_at"),
        collected_at=scalar_field(parse_instant, raw["collected_at"], "collected_at"),
        clock=_clock(raw["clock"]),
        source=_string(raw["source"], "source"),
        values=_values(raw["values"]),
        flags=_flag_list(raw["flags"]),
        collector=raw["collector"],
        seq=raw["seq"],
        prev_hash=raw["prev_hash"],
        key_id=raw["key_id"],
    )


def _expect_fields(raw: object, expected: frozenset[str], path: str) -> None:
    if not isinstance(raw, dict):
        raise InvalidFieldError("must be a JSON object", field=path or None)
    missing = expected - raw.keys()
    if missing:
        raise MissingFieldError(
            f"missing {', '.join(sorted(missing))}", field=_join(path, min(missing))
        )
    extra = raw.keys() - expected
    if extra:
        raise ExtraFieldError(
            f"unknown field(s) {', '.join(sorted(extra))}", field=_join(path, min(extra))
        )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError(f"must be a string, not {type(value).__name__}", field=field)
    return value


def _clock(raw: object) -> ClockQuality:
    _expect_fields(raw, CLOCK_FIELDS, "clock")
    assert isinstance(raw, dict)
    offset = raw["meter_offset_s"]
    return ClockQuality(
        ntp_synced=raw["ntp_synced"],
        meter_offset_s=None if offset is None
        else scalar_field(parse_decimal, offset, "clock.meter_offset_s"),
    )


def _values(raw: object) -> Mapping[str, RegisterValue]:
    if not isinstance(raw, dict):
        raise InvalidFieldError("must be a JSON object of registers", field="values")
    registers = {}
    for name, register in raw.items():
        path = f"values.{name}"
        _expect_fields(register, REGISTER_FIELDS, path)
        try:
            registers[name] = RegisterValue(
                value=scalar_field(parse_decimal, register["value"], f"{path}.value"),
                unit=register["unit"],
                obis=register["obis"],
            )
        except InvalidFieldError as exc:
            if exc.field in REGISTER_FIELDS:
                exc.field = f"{path}.{exc.field}"
            raise
    return registers


def _flag_list(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise InvalidFieldError("must be a JSON array of flag names", field="flags")
    return tuple(raw)


def _first_difference(got: bytes, canonical: bytes) -> str:
    offset = next(
        (i for i, (a, b) in enumerate(zip(got, canonical, strict=False)) if a != b),
        min(len(got), len(canonical)),
    )
    return (
        f"not in canonical form from byte {offset}: got {got[offset:offset + 24]!r}, "
        f"canonical form has {canonical[offset:offset + 24]!r}"
    )
