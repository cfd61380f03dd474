"""A billing cycle as operators follow it: progress per route, what still needs a read, runs.

Read models (pydantic) and the queries that fill them, shared by the REST API
(``/api/v1/cycles…``) and the operator pages (``/cycles…``): one query, two
renderings, so the dashboard and a script never disagree on a count. Counts
come from ``reconciliations`` — what the last reconcile run found — rather
than from reconciling again on every page view, which takes seconds on a
large cycle; ``reconciled_at`` says how fresh they are.

Sending a re-read route lives here too (:func:`send_reread`), so the API and
the page take one path and are audited the same way.

Example::

    with store.connect() as conn:
        items, total = list_cycles(conn, PageParams(limit=20, offset=0))
        detail = cycle_detail(conn, "C2026-11")
    print(detail.totals.progress, [r.route for r in detail.routes])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, func, select

from hub.api.pagination import PageParams, paged_rows
from hub.api.routes.runs import RunOut
from hub.api.runs import Step, latest_runs, run_of
from hub.api.settings import HubSettings
from hub.edits.audit import record
from hub.edits.model import Severity
from hub.edits.store import OPEN
from hub.reconcile import RouteSummary, Status
from hub.reconcile_store import UnknownCycle
from hub.reread_store import PublishError, build_from_store
from hub.store import Store
from hub.store.collectors import ACTIVE
from hub.store.tables import (
    audit_log,
    bills,
    collectors,
    cycle_runs,
    cycles,
    edit_exceptions,
    reconciliations,
)
from protocols.broker_settings import BrokerCredentialError
from protocols.route_message import Route
from protocols.scalars import format_decimal

SEVERITIES = frozenset(s.value for s in Severity)
REREAD_ACTION = "reread.send"
"""The audit log's name for a re-read route handed to a handheld."""

# --- read models ---------------------------------------------------------------------


class Progress(BaseModel):
    """How many meters are in each reconciliation status, and the share done."""

    meters: int = Field(description="Meters reconciled.")
    read: int
    missing: int
    trouble: int
    estimated: int
    inactive: int
    progress: float = Field(ge=0, le=1, description=(
        "Share of the meters needing a read that have one (read or estimated); inactive "
        "meters need none. 1 when none needs a read; 0 when nothing was reconciled."))

    @classmethod
    def of(cls, counts: Mapping[Status, int]) -> Progress:
        summary = RouteSummary("", counts)  # the reconcile step's own definition of done
        done = round(summary.done, 4) if summary.meters else 0.0
        return cls(meters=summary.meters, progress=done,
                   **{status.value: counts.get(status, 0) for status in Status})


class RouteProgress(Progress):
    route: str


class CycleSummary(BaseModel):
    """One row of the cycles list."""

    id: str
    read_window_start: date
    read_window_end: date
    scheduled_read_date: date
    bill_period_start: date
    bill_period_end: date
    totals: Progress
    reconciled_at: datetime | None = Field(
        description="When the counts were made (the last reconcile run); null: never.")
    open_exceptions: int


class SeverityCounts(BaseModel):
    blocking: int = 0
    warning: int = 0
    info: int = 0


class BillLink(BaseModel):
    account: str
    total: str = Field(description="Decimal string.")
    currency: str


class BillsSummary(BaseModel):
    count: int
    total: str = Field(description="Sum of the bills' totals, a decimal string.")
    currency: str | None = Field(description="The bills' currency (null: no bills).")
    first: list[BillLink] = Field(description="The first bills by account, for links.")


class CycleDetail(CycleSummary):
    """The cycle dashboard: facts, progress per route, last runs, exceptions, bills."""

    routes: list[RouteProgress]
    runs: dict[Step, RunOut] = Field(description="The latest run of each step.")
    open_by_severity: SeverityCounts
    bills: BillsSummary


class MeterRow(BaseModel):
    """One meter's reconciliation result, in walk order."""

    model_config = ConfigDict(from_attributes=True)

    route: str
    sequence: int
    meter: str
    account: str | None
    status: Status
    rule: str = Field(description="Why this status, or which rule chose the billing read.")
    collector: str | None
    seq: int | None
    read_at: datetime | None
    trouble: list[str]


class RerouteStop(BaseModel):
    sequence: int
    meter: str
    account: str
    address: str
    previous_value: str | None = Field(description="Last good read (decimal string).")
    previous_read_at: datetime | None
    low: str | None = Field(description="Lowest acceptable new read (decimal string).")
    high: str | None = Field(description="Highest acceptable new read (decimal string).")


class RerouteOut(BaseModel):
    """A re-read route as sent to a handheld."""

    route_id: str
    cycle: str
    collector: str
    issued_at: datetime
    audit_id: int
    stops: list[RerouteStop]

    @classmethod
    def of(cls, route: Route, audit_id: int) -> RerouteOut:
        return cls(
            route_id=route.route_id, cycle=route.cycle, collector=route.collector,
            issued_at=route.issued_at, audit_id=audit_id, stops=[RerouteStop(
                sequence=s.sequence, meter=s.meter, account=s.account, address=s.address,
                previous_value=format_decimal(s.previous.value) if s.previous else None,
                previous_read_at=s.previous.read_at if s.previous else None,
                low=format_decimal(s.limits.low) if s.limits else None,
                high=format_decimal(s.limits.high) if s.limits else None,
            ) for s in route.stops])


# --- queries ---------------------------------------------------------------------------


def list_cycles(conn: Connection, params: PageParams) -> tuple[list[CycleSummary], int]:
    """A page of cycles, newest scheduled read date first, with their counts."""
    rows, total = paged_rows(conn, select(cycles).order_by(
        cycles.c.scheduled_read_date.desc(), cycles.c.id.desc()), params)
    ids = [row.id for row in rows]
    counts, reconciled = _status_counts(conn, ids)
    opened = dict(conn.execute(
        select(edit_exceptions.c.cycle, func.count()).where(
            edit_exceptions.c.cycle.in_(ids) & (edit_exceptions.c.status == OPEN))
        .group_by(edit_exceptions.c.cycle)).tuples().all()) if ids else {}
    return [_summary(row, counts.get(row.id, {}), reconciled.get(row.id),
                     int(opened.get(row.id, 0))) for row in rows], total


def cycle_detail(conn: Connection, cycle_id: str) -> CycleDetail:
    """The dashboard of ``cycle_id``; :class:`UnknownCycle` if it is not imported."""
    row = _cycle_row(conn, cycle_id)
    by_route: dict[str, dict[Status, int]] = defaultdict(dict)
    for route, status, count in conn.execute(
            select(reconciliations.c.route, reconciliations.c.status, func.count())
            .where(reconciliations.c.cycle == cycle_id)
            .group_by(reconciliations.c.route, reconciliations.c.status)).tuples():
        by_route[route][Status(status)] = int(count)
    counts, reconciled = _status_counts(conn, [cycle_id])
    severities = SeverityCounts(**{severity: int(count) for severity, count in conn.execute(
        select(edit_exceptions.c.severity, func.count()).where(
            (edit_exceptions.c.cycle == cycle_id) & (edit_exceptions.c.status == OPEN))
        .group_by(edit_exceptions.c.severity)).tuples() if severity in SEVERITIES})
    summary = _summary(row, counts.get(cycle_id, {}), reconciled.get(cycle_id),
                       severities.blocking + severities.warning + severities.info)
    return CycleDetail(
        **summary.model_dump(),
        routes=[RouteProgress(route=route, **Progress.of(c).model_dump())
                for route, c in sorted(by_route.items())],
        runs={step: RunOut.of(run) for step, run in latest_runs(conn, cycle_id).items()},
        open_by_severity=severities, bills=_bills(conn, cycle_id))


def meter_results(conn: Connection, cycle_id: str, params: PageParams, *,
                  statuses: Collection[Status] | None = None, route: str | None = None
                  ) -> tuple[list[MeterRow], int]:
    """A page of the cycle's reconciliation results in walk order, narrowed as asked."""
    _cycle_row(conn, cycle_id)
    query = select(reconciliations).where(reconciliations.c.cycle == cycle_id)
    if statuses is not None:
        query = query.where(reconciliations.c.status.in_([s.value for s in statuses]))
    if route is not None:
        query = query.where(reconciliations.c.route == route)
    rows, total = paged_rows(conn, query.order_by(reconciliations.c.route,
                                                  reconciliations.c.sequence), params)
    return [MeterRow.model_validate(row) for row in rows], total


def recent_runs(conn: Connection, cycle_id: str, limit: int = 10) -> list[RunOut]:
    """The cycle's last runs, newest first (the dashboard's runs table)."""
    rows = conn.execute(select(cycle_runs).where(cycle_runs.c.cycle == cycle_id)
                        .order_by(cycle_runs.c.id.desc()).limit(limit)).all()
    return [RunOut.of(run_of(row)) for row in rows]


def active_collectors(conn: Connection) -> list[str]:
    """Enrolled, unrevoked collectors: the handhelds a route can go to."""
    return list(conn.execute(select(collectors.c.id).where(collectors.c.status == ACTIVE)
                             .order_by(collectors.c.id)).scalars())


def sent_route(conn: Connection, cycle_id: str, audit_id: int) -> dict[str, Any] | None:
    """What :func:`send_reread` recorded under ``audit_id`` for ``cycle_id`` (None: nothing)."""
    row = conn.execute(select(audit_log.c.after).where(
        (audit_log.c.id == audit_id) & (audit_log.c.action == REREAD_ACTION)
        & (audit_log.c.cycle == cycle_id))).first()
    return dict(row.after) if row is not None and row.after else None


# --- sending a re-read route -------------------------------------------------------------


class NothingToReread(Exception):
    """Every meter of the cycle has a read (or needs none): no route to send."""


class CannotPublish(Exception):
    """The route could not be handed to the broker (it was not sent)."""


class NoBroker(CannotPublish):
    """This hub was started without a broker to send routes through."""


def send_reread(store: Store, settings: HubSettings, cycle_id: str, collector: str, *,
                actor: str) -> RerouteOut:
    """Build the re-read route of ``cycle_id``'s meters needing a read, send it, audit it.

    Raises :class:`UnknownCycle`, :class:`NothingToReread`, or
    :class:`CannotPublish` (:class:`NoBroker` when there is no broker at all);
    the audit record is written only once the broker has confirmed the route.
    """
    with store.connect() as conn:
        route, _ = build_from_store(conn, cycle_id, collector, settings.zone)
    if not route.stops:
        raise NothingToReread(f"no meter of cycle {cycle_id} needs a read: every one is read, "
                              "in trouble or inactive; no route was sent")
    if settings.publish_route is None:
        raise NoBroker("this hub has no broker to send routes through: start `meterhub serve` "
                       "with its broker options; no route was sent")
    try:
        settings.publish_route(route)
    except (PublishError, BrokerCredentialError) as exc:
        raise CannotPublish(f"the route was not sent: {exc}") from None
    meters = [stop.meter for stop in route.stops]
    with store.begin() as conn:
        audit_id = record(
            conn, actor=actor, action=REREAD_ACTION, cycle=cycle_id,
            reason=f"route {route.route_id} with {len(meters)} meters to {collector}",
            after={"route_id": route.route_id, "collector": collector, "meters": meters})
    return RerouteOut.of(route, audit_id)


# --- helpers -----------------------------------------------------------------------------


def _cycle_row(conn: Connection, cycle_id: str) -> Any:
    row = conn.execute(select(cycles).where(cycles.c.id == cycle_id)).first()
    if row is None:
        raise UnknownCycle(f"cycle {cycle_id}")
    return row


def _status_counts(conn: Connection, ids: Iterable[str]
                   ) -> tuple[dict[str, dict[Status, int]], dict[str, datetime]]:
    """Per cycle: meters per status, and when they were reconciled."""
    ids = list(ids)
    counts: dict[str, dict[Status, int]] = defaultdict(dict)
    reconciled: dict[str, datetime] = {}
    if not ids:
        return counts, reconciled
    for cycle_id, status, count, at in conn.execute(
            select(reconciliations.c.cycle, reconciliations.c.status, func.count(),
                   func.max(reconciliations.c.reconciled_at))
            .where(reconciliations.c.cycle.in_(ids))
            .group_by(reconciliations.c.cycle, reconciliations.c.status)).tuples():
        counts[cycle_id][Status(status)] = int(count)
        if cycle_id not in reconciled or at > reconciled[cycle_id]:
            reconciled[cycle_id] = at
    return counts, reconciled


def _summary(row: Any, counts: Mapping[Status, int], reconciled_at: datetime | None,
             open_exceptions: int) -> CycleSummary:
    return CycleSummary(
        id=row.id, read_window_start=row.read_window_start,
        read_window_end=row.read_window_end, scheduled_read_date=row.scheduled_read_date,
        bill_period_start=row.bill_period_start, bill_period_end=row.bill_period_end,
        totals=Progress.of(counts), reconciled_at=reconciled_at,
        open_exceptions=open_exceptions)


BILL_LINKS = 20


def _bills(conn: Connection, cycle_id: str) -> BillsSummary:
    """Count and total of the cycle's bills (summed as Decimal, never float)."""
    rows = conn.execute(select(bills.c.account, bills.c.total, bills.c.currency)
                        .where(bills.c.cycle == cycle_id).order_by(bills.c.account)).all()
    total = sum((Decimal(row.total) for row in rows), Decimal(0))
    currencies = {row.currency for row in rows}
    return BillsSummary(
        count=len(rows), total=format_decimal(total),
        currency=currencies.pop() if len(currencies) == 1 else None,
        first=[BillLink(account=row.account, total=row.total, currency=row.currency)
               for row in rows[:BILL_LINKS]])
