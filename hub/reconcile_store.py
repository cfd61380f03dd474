"""Load what reconciling a cycle needs from the store, and hand it to :func:`reconcile`.

Only reads the background verifier passed (``billable_reads``) are candidates:
an unverified read can never become a billing read; nor can a read an
operator rejected for this cycle (``rejected_reads``), so its meter shows as
missing and goes on the next re-read route. Reads are fetched for the
cycle's meters with a day's margin either side of the window, so a utility in
any time zone gets every read of its local window; the exact cut is made by
the pure function.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, Subquery, select

from hub.reconcile import (
    CandidateRead,
    Cycle,
    Installation,
    Reconciliation,
    Status,
    Stop,
    reconcile,
)
from hub.store.reads import billable_reads
from hub.store.tables import (
    accounts,
    billing_reads,
    cycles,
    meter_installations,
    rejected_reads,
    route_stops,
    routes,
)
from protocols.read import Source


class UnknownCycle(LookupError):
    """The cycle id names no imported cycle."""


def load_cycle(conn: Connection, cycle_id: str, zone: tzinfo) -> Cycle:
    row = conn.execute(select(cycles).where(cycles.c.id == cycle_id)).first()
    if row is None:
        known = conn.execute(select(cycles.c.id).order_by(cycles.c.id)).scalars().all()
        raise UnknownCycle(f"cycle {cycle_id!r} is not imported (known: "
                           f"{', '.join(known) or 'none'}); run `meterhub import cycles`")
    return Cycle(row.id, row.read_window_start, row.read_window_end, row.scheduled_read_date,
                 zone)


def load_stops(conn: Connection, cycle_id: str,
               meters: Collection[str] | None = None) -> list[Stop]:
    query = (select(route_stops.c.route, route_stops.c.sequence, route_stops.c.meter)
             .join(routes, routes.c.id == route_stops.c.route)
             .where(routes.c.cycle == cycle_id))
    if meters is not None:
        query = query.where(route_stops.c.meter.in_(meters))
    return [Stop(r.route, r.sequence, r.meter) for r in conn.execute(query)]


def cycle_meters(cycle_id: str) -> Subquery:
    """The distinct meters on the cycle's routes, for joining instead of long IN lists."""
    return (select(route_stops.c.meter).join(routes, routes.c.id == route_stops.c.route)
            .where(routes.c.cycle == cycle_id).distinct().subquery())


def load_installations(conn: Connection, cycle_id: str,
                       meters: Collection[str] | None = None) -> list[Installation]:
    on_routes = cycle_meters(cycle_id)
    query = (select(meter_installations, accounts.c.status)
             .join(accounts, accounts.c.id == meter_installations.c.account)
             .join(on_routes, on_routes.c.meter == meter_installations.c.meter))
    if meters is not None:
        query = query.where(meter_installations.c.meter.in_(meters))
    rows = conn.execute(query).all()
    return [Installation(r.meter, r.account, r.status, r.installed_on, r.removed_on)
            for r in rows]


def load_candidate_reads(conn: Connection, cycle: Cycle,
                         meters: Collection[str] | None = None) -> list[CandidateRead]:
    start = datetime.combine(cycle.window_start, time(), UTC) - timedelta(days=1)
    end = datetime.combine(cycle.window_end, time(), UTC) + timedelta(days=2)
    query, meter = candidate_reads_query(start, end, rejected_in=cycle.id)
    if meters is not None:  # only theirs: an AMI meter has hundreds of reads in a window
        query = query.where(meter.in_(meters))
    on_routes = cycle_meters(cycle.id)
    rows = conn.execute(query.join(on_routes, on_routes.c.meter == meter)).all()
    return [candidate_from_row(r) for r in rows]


def candidate_reads_query(start: datetime, end: datetime, *, rejected_in: str | None
                          ) -> tuple[Select[Any], ColumnElement[str]]:
    """Verified reads taken in [start, end) that no operator rejected, and their meter column.

    ``rejected_in`` names the cycle whose rejections count; ``None``: any cycle's.
    Rows fit :func:`candidate_from_row`.
    """
    candidates = billable_reads.subquery()
    rejected = rejected_reads.c
    joined = (rejected.collector == candidates.c.collector) & (rejected.seq == candidates.c.seq)
    if rejected_in is not None:
        joined = joined & (rejected.cycle == rejected_in)
    query = (
        select(candidates.c.collector, candidates.c.seq, candidates.c.meter,
               candidates.c.read_at, candidates.c.source, candidates.c.flags,
               candidates.c["values"], candidates.c.meter_offset_s)
        .outerjoin(rejected_reads, joined)
        .where((candidates.c.read_at >= start) & (candidates.c.read_at < end)
               & rejected.seq.is_(None))
    )
    return query, candidates.c.meter


def candidate_from_row(row: Row[Any]) -> CandidateRead:
    return CandidateRead(row.collector, row.seq, row.meter, row.read_at, Source(row.source),
                         tuple(row.flags), row[6], row.meter_offset_s)


def reconcile_cycle(conn: Connection, cycle_id: str, zone: tzinfo) -> Reconciliation:
    """Reconcile ``cycle_id`` from the store (read-only)."""
    return reconcile_loaded(conn, load_cycle(conn, cycle_id, zone))


def reconcile_loaded(conn: Connection, cycle: Cycle,
                     meters: Collection[str] | None = None) -> Reconciliation:
    """Reconcile a cycle already loaded with :func:`load_cycle`.

    A meter without a read that the meter edits estimated shows as
    ``estimated`` (it still lacks an actual read, so re-read routes keep it).
    ``meters``: only those meters, reading only their rows — a meter's result
    depends on its own stops, installations and reads alone, so each gets what
    reconciling the whole cycle gives it (the edits' route parts use this).
    """
    result = reconcile(cycle, load_stops(conn, cycle.id, meters),
                       load_installations(conn, cycle.id, meters),
                       load_candidate_reads(conn, cycle, meters))
    query = (select(billing_reads.c.meter, billing_reads.c.detail)
             .where((billing_reads.c.cycle == cycle.id) & (billing_reads.c.kind == "estimated")))
    if meters is not None:
        query = query.where(billing_reads.c.meter.in_(meters))
    estimated = dict(conn.execute(query).all())
    if not estimated:
        return result
    return Reconciliation(result.cycle, tuple(
        replace(m, status=Status.ESTIMATED, rule=f"estimated by the meter edits: "
                f"{estimated[m.meter]}")
        if m.meter in estimated and m.status in (Status.MISSING, Status.TROUBLE) else m
        for m in result.meters))


__all__ = ["UnknownCycle", "reconcile_cycle"]
