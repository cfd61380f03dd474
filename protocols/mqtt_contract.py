"""The MQTT contract ``v1``: topic names, the hub's ack and the collector's status message.

Both ends import these, so a topic or a field is spelled in one place. The
batch payload itself lives in :mod:`protocols.batch` (it is also a file
format). Nothing here opens a connection.

Topics (``{collector}`` is the collector id, which is also its broker user name)::

    meterhub/v1/{collector}/reads    edge → hub   QoS 1        batch envelope
    meterhub/v1/{collector}/ack      hub → edge   QoS 1        Ack
    meterhub/v1/{collector}/status   edge → hub   QoS 1, kept  Status (birth / last will)
    meterhub/v1/{collector}/routes   hub → edge   QoS 1        re-read route

The ack::

    {"through_seq": 120, "rejected": [{"seq": 121, "last_seq": 140, "reason": "seq_gap"}]}

``through_seq`` is the highest seq such that every seq up to it is durably
stored at the hub. ``rejected`` names reads the hub did not store and why;
an entry covers ``seq`` through ``last_seq`` (``last_seq`` is omitted for a
single read), so a rejected batch of 500 reads is one entry, not 500. A
rejected read is never acked: the edge keeps it and sends it again (at once
after ``seq_gap``, after a back-off for anything else).

Example::

    topic = reads_topic("gw-0001")                 # "meterhub/v1/gw-0001/reads"
    collector, kind = parse_topic(topic)           # ("gw-0001", "reads")
    payload = encode_ack(Ack(120, (Rejection(121, 140, "seq_gap"),)))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from protocols.errors import ReadError
from protocols.read import COLLECTOR_RE
from protocols.scalars import format_instant

TOPIC_ROOT = "meterhub/v1"
TopicKind = Literal["reads", "ack", "status", "routes"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("reads", "ack", "status", "routes")
SHARED_READS_SUBSCRIPTION = f"$share/meterhub/{TOPIC_ROOT}/+/reads"
"""What hub workers subscribe to: the broker hands each batch to one of them."""
PLAIN_READS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/reads"
"""For a lone hub on a broker without shared subscriptions (the embedded demo broker)."""
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/status"


class ContractError(ReadError):
    """A topic, ack or status message that does not follow the contract."""

    reason = "contract"


def topic(collector: str, kind: TopicKind) -> str:
    if not COLLECTOR_RE.fullmatch(collector):
        raise ValueError(f"{collector!r} is not a collector id")
    return f"{TOPIC_ROOT}/{collector}/{kind}"


def reads_topic(collector: str) -> str:
    return topic(collector, "reads")


def ack_topic(collector: str) -> str:
    return topic(collector, "ack")


def status_topic(collector: str) -> str:
    return topic(collector, "status")


def routes_topic(collector: str) -> str:
    return topic(collector, "routes")


def parse_topic(name: str) -> tuple[str, TopicKind]:
    """``(collector, kind)`` of a contract topic, or :class:`ContractError`."""
    parts = name.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_ROOT or parts[3] not in TOPIC_KINDS:
        raise ContractError(f"topic {name!r} is not meterhub/v1/{{collector}}/{{kind}}")
    if not COLLECTOR_RE.fullmatch(parts[2]):
        raise ContractError(f"topic {name!r} names no valid collector id")
    return parts[2], parts[3]  # type: ignore[return-value]


# --- the ack --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """Reads ``seq``…``last_seq`` were not stored, for ``reason`` (a ReadError reason code)."""

    seq: int
    last_seq: int
    reason: str

    def covers(self, seq: int) -> bool:
        return self.seq <= seq <= self.last_seq


@dataclass(frozen=True, slots=True)
class Ack:
    through_seq: int
    rejected: tuple[Rejection, ...] = field(default=())

    @property
    def only_gaps(self) -> bool:
        """Every rejection is a seq gap: the edge should resend at once, without alarm."""
        return all(r.reason == "seq_gap" for r in self.rejected)


def encode_ack(ack: Ack) -> bytes:
    rejected: list[dict[str, Any]] = []
    for r in ack.rejected:
        entry: dict[str, Any] = {"seq": r.seq, "reason": r.reason}
        if r.last_seq != r.seq:
            entry["last_seq"] = r.last_seq
        rejected.append(entry)
    return json.dumps({"through_seq": ack.through_seq, "rejected": rejected},
                      separators=(",", ":")).encode("utf-8")


def decode_ack(payload: bytes) -> Ack:
    """Parse an ack, or raise :class:`ContractError` saying what is wrong."""
    raw = _json_object(payload, "ack")
    through = raw.get("through_seq")
    if type(through) is not int or through < 0:
        raise ContractError(f"ack through_seq {through!r} is not a seq ≥ 0", field="through_seq")
    entries = raw.get("rejected", [])
    if not isinstance(entries, list):
        raise ContractError("ack rejected must be an array", field="rejected")
    rejected = []
    for index, entry in enumerate(entries):
        where = f"rejected[{index}]"
        if not isinstance(entry, dict):
            raise ContractError("each rejection is an object", field=where)
        seq, last, reason = entry.get("seq"), entry.get("last_seq", entry.get("seq")), \
            entry.get("reason")
        if type(seq) is not int or type(last) is not int or not 1 <= seq <= last:
            raise ContractError(f"bad seq range {seq!r}–{last!r}", field=where)
        if not isinstance(reason, str) or not reason:
            raise ContractError("a rejection names its reason", field=where)
        rejected.append(Rejection(seq, last, reason))
    return Ack(through, tuple(rejected))


# --- the collector's status -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """What a collector says about itself: online with its buffer depth, or offline."""

    state: Literal["online", "offline"]
    version: str
    at: datetime | None = None
    buffer_depth: int | None = None
    last_seq: int | None = None
    acked_through: int | None = None


def encode_status(status: Status) -> bytes:
    body: dict[str, Any] = {"state": status.state, "version": status.version}
    if status.at is not None:
        body["at"] = format_instant(status.at.astimezone(UTC))
    for name in ("buffer_depth", "last_seq", "acked_through"):
        value = getattr(status, name)
        if value is not None:
            body[name] = value
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode_status(payload: bytes) -> Status:
    raw = _json_object(payload, "status")
    state = raw.get("state")
    if state not in ("online", "offline"):
        raise ContractError(f"status state {state!r} is not online or offline", field="state")
    version = raw.get("version")
    if not isinstance(version, str):
        raise ContractError("status names the agent version", field="version")
    at = raw.get("at")
    if at is not None and not isinstance(at, str):
        raise ContractError(f"status time {at!r} is not an ISO 8601 string", field="at")
    counts = {}
    for name in ("buffer_depth", "last_seq", "acked_through"):
        value = raw.get(name)
        if value is not None and (type(value) is not int or value < 0):
            raise ContractError(f"{name} {value!r} is not a count", field=name)
        counts[name] = value
    try:
        when = datetime.fromisoformat(at) if at is not None else None
        if when is not None:
            if when.tzinfo is None:
                raise ContractError(f"status time {at!r} has no time zone", field="at")
            when = when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ContractError(f"status time {at!r} is not an ISO 8601 time", field="at") from None
    return Status(state, version, when, **counts)


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge numbers, deep nesting
        raise ContractError(f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"{what} is not a JSON object")
    return raw
