"""The batch envelope: how a run of a collector's signed reads travels to the hub.

The same envelope is the MQTT payload on ``meterhub/v1/{collector}/reads`` and
the file a technician carries when a handheld has no link
(``edge-agent buffer export`` → ``meterhub verify``)::

    {"v":1,"collector":"gw-1","first_seq":41,"last_seq":42,
     "reads":[{"b":"<signed bytes as a JSON string>","sig":"<base64>"}, …]}

``b`` holds the signed bytes verbatim (they are UTF-8 JSON text, so a JSON
string carries them exactly); the hub verifies those bytes before it parses
them. The header's ``collector``, ``first_seq`` and ``last_seq`` are claims for
routing and acking only; :func:`protocols.chain.verify_chain` checks them
against the signed contents.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from protocols.chain import SealedRead, SignedRead
from protocols.errors import BatchError
from protocols.read import COLLECTOR_RE

BATCH_FORMAT_VERSION = 1
MAX_BATCH_READS = 10_000
"""Edges send hundreds per batch; a bound keeps one payload from exhausting the hub."""

_HEADER_FIELDS = frozenset({"v", "collector", "first_seq", "last_seq", "reads"})
_ENTRY_FIELDS = frozenset({"b", "sig"})


@dataclass(frozen=True)
class Batch:
    """A decoded envelope: header claims plus the signed reads, still unverified."""

    collector: str
    first_seq: int
    last_seq: int
    reads: tuple[SignedRead, ...]


def encode_batch(collector: str, reads: Sequence[SealedRead]) -> bytes:
    """The envelope for a non-empty run of consecutive sealed reads."""
    if not reads:
        raise ValueError("a batch carries at least one read")
    envelope = {
        "v": BATCH_FORMAT_VERSION,
        "collector": collector,
        "first_seq": reads[0].seq,
        "last_seq": reads[-1].seq,
        "reads": [
            {"b": r.data.decode("utf-8"), "sig": base64.b64encode(r.sig).decode("ascii")}
            for r in reads
        ],
    }
    return orjson.dumps(envelope)  # compact UTF-8, as json.dumps(..., separators=(",", ":"))


def decode_batch(payload: bytes, *, max_reads: int = MAX_BATCH_READS) -> Batch:
    """Parse an envelope, or raise :class:`BatchError` saying what is wrong."""
    try:
        raw = orjson.loads(payload)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge numbers, deep nesting
        raise BatchError(f"batch is not UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BatchError("batch is not a JSON object")
    if raw.keys() != _HEADER_FIELDS:
        missing, extra = _HEADER_FIELDS - raw.keys(), raw.keys() - _HEADER_FIELDS
        raise BatchError(f"batch header: missing {sorted(missing)}, unknown {sorted(extra)}")
    if type(raw["v"]) is not int or raw["v"] != BATCH_FORMAT_VERSION:
        raise BatchError(f"batch format version {raw['v']!r} is not supported", field="v")
    collector = raw["collector"]
    if not isinstance(collector, str) or not COLLECTOR_RE.fullmatch(collector):
        raise BatchError(f"{collector!r} is not a collector name", field="collector")
    first, last = _seq(raw, "first_seq", collector), _seq(raw, "last_seq", collector)
    entries = raw["reads"]
    if not isinstance(entries, list) or not entries:
        raise BatchError("reads must be a non-empty array", collector=collector, field="reads")
    if len(entries) > max_reads:
        raise BatchError(f"{len(entries)} reads exceed the limit of {max_reads} per batch",
                         collector=collector, field="reads")
    if last - first + 1 != len(entries):
        raise BatchError(
            f"header claims seq {first}–{last} ({last - first + 1} reads) but carries "
            f"{len(entries)}", collector=collector,
        )
    reads = tuple(_entry(entry, index, collector) for index, entry in enumerate(entries))
    return Batch(collector, first, last, reads)


def _seq(raw: dict[str, Any], name: str, collector: str) -> int:
    value = raw[name]
    if type(value) is not int or value < 1:
        raise BatchError(f"{value!r} is not a seq ≥ 1", collector=collector, field=name)
    return value


def _entry(entry: object, index: int, collector: str) -> SignedRead:
    where = {"collector": collector, "field": f"reads[{index}]"}
    if not isinstance(entry, dict) or entry.keys() != _ENTRY_FIELDS:
        raise BatchError('each read is {"b": …, "sig": …}', **where)
    if not isinstance(entry["b"], str) or not isinstance(entry["sig"], str):
        raise BatchError("b and sig must be strings", **where)
    try:
        data = entry["b"].encode("utf-8")
        sig = base64.b64decode(entry["sig"], validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise BatchError(f"cannot decode read: {exc}", **where) from None
    return SignedRead(data, sig)
