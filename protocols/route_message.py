"""The re-read route a hub sends a handheld on ``meterhub/v1/{collector}/routes``.

Everything a technician needs offline, per meter, in walk order: where it is
and what to watch for, what it said last time, and the high/low limits a new
read must fall within (a read outside them is keyed again before it is
kept). Decimals travel as strings, times as ISO 8601 UTC with ``Z``.

Example::

    payload = encode_route(route)
    route = decode_route(payload)      # RouteError naming the field on bad input
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from protocols.errors import ReadError
from protocols.read import COLLECTOR_RE, METER_RE
from protocols.scalars import (
    ScalarError,
    format_decimal,
    format_instant,
    parse_decimal,
    parse_instant,
)

ROUTE_FORMAT_VERSION = 1


class RouteError(ReadError):
    """A route message that does not follow this format."""

    reason = "malformed_route"


@dataclass(frozen=True)
class Limits:
    """The range a new read of the register must fall in to be accepted without re-entry."""

    low: Decimal
    high: Decimal

    def admits(self, value: Decimal) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PreviousRead:
    value: Decimal
    read_at: datetime


@dataclass(frozen=True)
class RouteStop:
    sequence: int
    meter: str
    account: str
    service: str
    address: str
    register: str
    unit: str
    dials: int
    location_notes: str = ""
    hazards: str = ""
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    profile: str | None = None
    previous: PreviousRead | None = None
    limits: Limits | None = None


@dataclass(frozen=True)
class Route:
    route_id: str
    cycle: str
    collector: str
    issued_at: datetime
    stops: tuple[RouteStop, ...] = field(default=())


def encode_route(route: Route) -> bytes:
    body = {
        "v": ROUTE_FORMAT_VERSION, "route_id": route.route_id, "cycle": route.cycle,
        "collector": route.collector, "issued_at": format_instant(route.issued_at),
        "stops": [_stop_json(s) for s in route.stops],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _stop_json(stop: RouteStop) -> dict[str, Any]:
    return {
        "sequence": stop.sequence, "meter": stop.meter, "account": stop.account,
        "service": stop.service, "address": stop.address, "register": stop.register,
        "unit": stop.unit, "dials": stop.dials, "location_notes": stop.location_notes,
        "hazards": stop.hazards,
        "latitude": None if stop.latitude is None else format_decimal(stop.latitude),
        "longitude": None if stop.longitude is None else format_decimal(stop.longitude),
        "profile": stop.profile,
        "previous": None if stop.previous is None else {
            "value": format_decimal(stop.previous.value),
            "read_at": format_instant(stop.previous.read_at)},
        "limits": None if stop.limits is None else {
            "low": format_decimal(stop.limits.low), "high": format_decimal(stop.limits.high)},
    }


def decode_route(payload: bytes) -> Route:
    """Parse a route message, or raise :class:`RouteError` naming the field."""
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise RouteError(f"route is not UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("v") != ROUTE_FORMAT_VERSION:
        raise RouteError(f"not a version {ROUTE_FORMAT_VERSION} route message", field="v")
    collector = _text(raw, "collector")
    if not COLLECTOR_RE.fullmatch(collector):
        raise RouteError(f"{collector!r} is not a collector id", field="collector")
    stops = raw.get("stops")
    if not isinstance(stops, list):
        raise RouteError("stops must be an array", field="stops")
    parsed = tuple(_stop(s, f"stops[{i}]") for i, s in enumerate(stops))
    if len({s.sequence for s in parsed}) != len(parsed):
        raise RouteError("two stops share a sequence number", field="stops")
    return Route(_text(raw, "route_id"), _text(raw, "cycle"), collector,
                 _instant(raw.get("issued_at"), "issued_at"),
                 tuple(sorted(parsed, key=lambda s: s.sequence)))


def _stop(raw: object, where: str) -> RouteStop:
    if not isinstance(raw, dict):
        raise RouteError("a stop is an object", field=where)
    sequence, dials = raw.get("sequence"), raw.get("dials")
    if type(sequence) is not int or sequence < 1:
        raise RouteError(f"sequence {sequence!r} is not ≥ 1", field=f"{where}.sequence")
    if type(dials) is not int or not 1 <= dials <= 12:
        raise RouteError(f"dials {dials!r} is not 1–12", field=f"{where}.dials")
    meter = _text(raw, "meter", where)
    if not METER_RE.fullmatch(meter):
        raise RouteError(f"{meter!r} is not a meter serial", field=f"{where}.meter")
    previous, limits = raw.get("previous"), raw.get("limits")
    if previous is not None and not isinstance(previous, dict):
        raise RouteError("previous is an object or null", field=f"{where}.previous")
    if limits is not None and not isinstance(limits, dict):
        raise RouteError("limits is an object or null", field=f"{where}.limits")
    low = _decimal(limits.get("low"), f"{where}.limits.low") if limits else None
    high = _decimal(limits.get("high"), f"{where}.limits.high") if limits else None
    if low is not None and high is not None and low > high:
        raise RouteError("low limit above high limit", field=f"{where}.limits")
    profile = raw.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise RouteError("profile is a string or null", field=f"{where}.profile")
    return RouteStop(
        sequence=sequence, meter=meter, account=_text(raw, "account", where),
        service=_text(raw, "service", where), address=_text(raw, "address", where, empty=True),
        register=_text(raw, "register", where), unit=_text(raw, "unit", where), dials=dials,
        location_notes=_text(raw, "location_notes", where, empty=True),
        hazards=_text(raw, "hazards", where, empty=True),
        latitude=_optional_decimal(raw.get("latitude"), f"{where}.latitude"),
        longitude=_optional_decimal(raw.get("longitude"), f"{where}.longitude"),
        profile=profile,
        previous=None if previous is None else PreviousRead(
            _decimal(previous.get("value"), f"{where}.previous.value"),
            _instant(previous.get("read_at"), f"{where}.previous.read_at")),
        limits=None if low is None or high is None else Limits(low, high),
    )


def _text(raw: dict[str, Any], name: str, where: str = "", *, empty: bool = False) -> str:
    value = raw.get(name)
    path = f"{where}.{name}" if where else name
    if not isinstance(value, str) or (not empty and not value):
        raise RouteError(f"must be a {'' if empty else 'non-empty '}string", field=path)
    return value


def _decimal(value: object, path: str) -> Decimal:
    try:
        return parse_decimal(value)
    except ScalarError as exc:
        raise RouteError(str(exc), field=path) from None


def _optional_decimal(value: object, path: str) -> Decimal | None:
    return None if value is None else _decimal(value, path)


def _instant(value: object, path: str) -> datetime:
    try:
        return parse_instant(value)
    except ScalarError as exc:
        raise RouteError(str(exc), field=path) from None
