"""Re-read routes: the cycle's missing meters, in walk order, ready for a technician.

Each stop carries what the technician needs offline — where the meter is and
what to watch for, the last good read and its date, and the high/low limits
the new read must fall within. Pure functions over plain data; the store
layer is :mod:`hub.reread_store`.

The limits follow the handheld practice of checking against the prior read:

- low: the previous read — a cumulative register does not run backwards;
- high: the previous read plus three times the use expected since then (the
  average daily use between the last two reads before the window, times the
  days from the previous read to the scheduled date), and at least a floor
  per day for meters with little or no history;
- a meter without any previous read gets no limits: nothing to check against.

Example::

    route = build_reread_route(reconciliation, details, history, collector="hh-01",
                               route_id="C2026-11-reread-hh-01-1", issued_at=now)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from hub.reconcile import Reconciliation, Status
from protocols.route_message import Limits, PreviousRead, Route, RouteStop

HIGH_FACTOR = Decimal(3)
"""A new read may show up to three times the use the meter's history predicts."""
FLOOR_PER_DAY = {"kWh": Decimal(50), "m3": Decimal(2)}
"""The least headroom per day, so a meter that used nothing lately is not refused a read."""
DEFAULT_FLOOR_PER_DAY = Decimal(10)
REGISTER_BY_SERVICE = {"electric": "energy_import_kwh", "water": "volume_m3",
                       "gas": "volume_m3"}
SECONDS_PER_DAY = Decimal(86_400)


@dataclass(frozen=True)
class StopDetails:
    """What the master data says about a stop's meter and its place."""

    account: str
    address: str
    service: str
    unit: str
    dials: int
    profile: str | None
    location_notes: str
    hazards: str
    latitude: Decimal | None
    longitude: Decimal | None


@dataclass(frozen=True)
class HistoryRead:
    """A verified earlier read of the billing register."""

    read_at: datetime
    value: Decimal


def limits_for(history: Sequence[HistoryRead], scheduled: datetime, unit: str,
               dials: int) -> tuple[PreviousRead | None, Limits | None]:
    """The previous read and the high/low limits for a new read at ``scheduled``."""
    if not history:
        return None, None
    ordered = sorted(history, key=lambda h: h.read_at)
    last = ordered[-1]
    days_ahead = max(Decimal(0), Decimal((scheduled - last.read_at).total_seconds())
                     / SECONDS_PER_DAY)
    daily = Decimal(0)
    for earlier in reversed(ordered[:-1]):
        span = Decimal((last.read_at - earlier.read_at).total_seconds()) / SECONDS_PER_DAY
        if span >= 1:
            daily = max(Decimal(0), (last.value - earlier.value) / span)
            break
    floor = FLOOR_PER_DAY.get(unit, DEFAULT_FLOOR_PER_DAY) * max(days_ahead, Decimal(1))
    headroom = max(daily * days_ahead * HIGH_FACTOR, floor)
    exponent = last.value.as_tuple().exponent
    places = Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
    high = min(last.value + headroom, Decimal(10) ** dials - places)
    return (PreviousRead(last.value, last.read_at),
            Limits(last.value, high.quantize(places, rounding=ROUND_CEILING)))


NEEDS_A_READ = frozenset({Status.MISSING, Status.ESTIMATED})


def build_reread_route(
    reconciliation: Reconciliation, details: Mapping[str, StopDetails],
    history: Mapping[str, Sequence[HistoryRead]], *, scheduled: datetime, collector: str,
    route_id: str, issued_at: datetime,
) -> Route:
    """A route of every meter still lacking an actual read, in the cycle's walk order.

    That is the ``missing`` meters and the ``estimated`` ones: an estimate
    bills, but only an actual read trues it up.
    """
    stops = []
    for result in reconciliation.meters:  # already in (route, sequence) order
        if result.status not in NEEDS_A_READ:
            continue
        about = details[result.meter]
        previous, limits = limits_for(history.get(result.meter, ()), scheduled, about.unit,
                                      about.dials)
        stops.append(RouteStop(
            sequence=len(stops) + 1, meter=result.meter, account=about.account,
            service=about.service, address=about.address,
            register=REGISTER_BY_SERVICE.get(about.service, "energy_import_kwh"),
            unit=about.unit, dials=about.dials,
            location_notes=_where(result.route, result.sequence, about.location_notes),
            hazards=about.hazards, latitude=about.latitude, longitude=about.longitude,
            profile=about.profile, previous=previous, limits=limits,
        ))
    return Route(route_id, reconciliation.cycle, collector, issued_at, tuple(stops))


def _where(route: str, sequence: int, notes: str) -> str:
    """The notes, prefixed with the stop's place on its regular route."""
    prefix = f"route {route} #{sequence}"
    return f"{prefix}: {notes}" if notes else prefix
