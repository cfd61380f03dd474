"""Cycle runs: an operator asks for a cycle step, workers claim it, do it, record how.

A step (reconcile, edits, bill, export) can take minutes on a large cycle,
longer than an HTTP request should wait, so asking for one adds a ``queued``
row to ``cycle_runs`` and answers at once (202). One step of a cycle runs at
a time: a second request while one is queued or running is refused (409),
since two edits runs of one cycle would fight over the same exceptions.

Reconcile and export are one piece of work each (they are quick, or write
one file): a runner claims the oldest queued run with a conditional UPDATE
(``… WHERE id = :id AND status = 'queued'``), so of several workers polling
the table exactly one wins it, on SQLite and PostgreSQL alike.

Edits and bills are split by route: asking for one also queues one *part*
per route of the cycle (``cycle_run_parts``; route ``*``, the whole cycle,
when it has no routes or the run asks for ``{"by_route": false}``). Every
runner claims parts — on PostgreSQL with ``SELECT … FOR UPDATE SKIP
LOCKED``, so claimers pass each other instead of queueing on one row; on
SQLite with the same conditional UPDATE — and works each in one
transaction that also records the part ``done``. The run is ``running``
from its first claim, and its last part to finish closes it: that worker
locks the run's row first, so of two parts finishing at once the second
sees the first's commit and no run is left open or closed twice. The run's
result combines its parts' (:func:`hub.api.steps.combine`); it is
``failed``, with the failed parts' errors, if any part failed. The other
parts still run: a route's edits or bills stand on their own, and running
the step again redoes every route.

A part whose worker died is claimed again: its transaction rolled back, and
a route's edits and bills are safe to redo. A runner notices at once a dead
worker of its own machine (:func:`running_part_workers`,
:func:`requeue_parts`); any other after :data:`STALE_AFTER`.

Example::

    with store.begin() as conn:
        run = request_run(conn, "C2026-11", Step.EDITS, requested_by="alice")
    # CycleRunners pick up its parts; GET /api/v1/runs/{run.id} shows its result
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, exists, func, insert, select, update

from hub.reconcile_store import UnknownCycle
from hub.store.tables import cycle_run_parts, cycle_runs, cycles, routes

STALE_AFTER = timedelta(hours=6)
"""A run (or part) still ``running`` this long after it started belonged to a worker that died."""
WHOLE_CYCLE = "*"
"""The route of the one part of a run that is not split by route."""
MAX_ERRORS_SHOWN = 3


class Step(StrEnum):
    RECONCILE = "reconcile"
    EDITS = "edits"
    BILL = "bill"
    EXPORT = "export"


PARTED_STEPS = frozenset({Step.EDITS, Step.BILL})
"""The steps whose runs are split into one part per route."""


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RunConflict(Exception):
    """A step of this cycle is already queued or running."""


class PartLost(Exception):
    """A part is no longer this worker's: it was given up as abandoned meanwhile."""


@dataclass(frozen=True)
class Run:
    id: int
    cycle: str
    step: Step
    options: dict[str, Any]
    status: RunStatus
    requested_by: str
    requested_at: datetime
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class Part:
    """One route's share of an edits or bill run (``run`` as it was when the part was read)."""

    run: Run
    route: str
    status: RunStatus
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


def request_run(conn: Connection, cycle: str, step: Step, *, requested_by: str,
                options: dict[str, Any] | None = None, now: datetime | None = None) -> Run:
    """Queue ``step`` of ``cycle``; :class:`UnknownCycle` or :class:`RunConflict` if it can't be.

    The cycle's row is locked first, so two requests racing for one cycle queue
    one run between them, not two. An edits or bill run gets its parts here:
    one per route of the cycle, or one for the whole cycle (``options``
    ``{"by_route": False}``, or a cycle without routes).
    """
    if conn.execute(select(cycles.c.id).where(cycles.c.id == cycle).with_for_update()
                    ).first() is None:
        raise UnknownCycle(f"no cycle {cycle!r}; import it with `meterhub import cycles`")
    busy = conn.execute(select(cycle_runs.c.id, cycle_runs.c.step, cycle_runs.c.status).where(
        (cycle_runs.c.cycle == cycle)
        & cycle_runs.c.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))).first()
    if busy is not None:
        raise RunConflict(f"cycle {cycle} already has run {busy.id} ({busy.step}) {busy.status}; "
                          "wait for it to finish")
    options = options or {}
    run_id = conn.execute(insert(cycle_runs).values(
        cycle=cycle, step=step.value, options=options, status=RunStatus.QUEUED.value,
        requested_by=requested_by, requested_at=now or datetime.now(UTC),
    ).returning(cycle_runs.c.id)).scalar_one()
    if step in PARTED_STEPS:
        by_route = options.get("by_route", True) and sorted(conn.execute(
            select(routes.c.id).where(routes.c.cycle == cycle)).scalars())
        conn.execute(insert(cycle_run_parts), [
            {"run_id": run_id, "route": route, "status": RunStatus.QUEUED.value}
            for route in by_route or [WHOLE_CYCLE]])
    return get_run(conn, int(run_id))


def claim_next(conn: Connection, worker: str, *, now: datetime | None = None) -> Run | None:
    """Claim the oldest queued run not split into parts; None when there is none (or it was taken).

    A run with parts is claimed part by part (:func:`claim_part`).
    """
    candidate = conn.execute(select(cycle_runs.c.id).where(
        (cycle_runs.c.status == RunStatus.QUEUED) & ~_has_parts()
    ).order_by(cycle_runs.c.id).limit(1)).scalar()
    if candidate is None:
        return None
    claimed = conn.execute(update(cycle_runs).where(
        (cycle_runs.c.id == candidate) & (cycle_runs.c.status == RunStatus.QUEUED)
    ).values(status=RunStatus.RUNNING.value, worker=worker,
             started_at=now or datetime.now(UTC)))
    return get_run(conn, candidate) if claimed.rowcount == 1 else None


def claim_part(conn: Connection, worker: str, *, now: datetime | None = None) -> Part | None:
    """Claim the oldest run's first queued part for ``worker``; None when there is none.

    On PostgreSQL the candidate row is locked with SKIP LOCKED, so concurrent
    claimers each get a different part at once, none waiting for another; on
    SQLite (one writer at a time) the conditional UPDATE alone decides. The
    run becomes ``running`` with its first claimed part.
    """
    now = now or datetime.now(UTC)
    parts = cycle_run_parts.c
    candidate = conn.execute(
        select(parts.run_id, parts.route).where(parts.status == RunStatus.QUEUED)
        .order_by(parts.run_id, parts.route).limit(1).with_for_update(skip_locked=True)
    ).first()
    if candidate is None:
        return None
    claimed = conn.execute(update(cycle_run_parts).where(
        (parts.run_id == candidate.run_id) & (parts.route == candidate.route)
        & (parts.status == RunStatus.QUEUED)
    ).values(status=RunStatus.RUNNING.value, worker=worker, started_at=now))
    if claimed.rowcount != 1:
        return None
    # the run's row is locked only by whoever is making it running already: pass them by
    if conn.execute(select(cycle_runs.c.id).where(
            (cycle_runs.c.id == candidate.run_id) & (cycle_runs.c.status == RunStatus.QUEUED))
            .with_for_update(skip_locked=True)).first() is not None:
        conn.execute(update(cycle_runs).where(cycle_runs.c.id == candidate.run_id).values(
            status=RunStatus.RUNNING.value, worker=worker, started_at=now))
    return get_part(conn, int(candidate.run_id), candidate.route)


def finish_part(conn: Connection, part: Part, *, result: dict[str, Any] | None = None,
                error: str | None = None, now: datetime | None = None) -> list[Part] | None:
    """Record ``part`` done (or failed, with ``error``); all the run's parts if it was the last.

    Call it in the transaction that did the part's work, so the work and its
    record commit together. The run's row is locked first: of parts finishing
    at once, each counts the others only once their commits are visible, so
    exactly one of them sees none left and closes the run
    (:func:`close_run`, in the same transaction). :class:`PartLost` if the
    part was given up as abandoned meanwhile.
    """
    parts = cycle_run_parts.c
    conn.execute(select(cycle_runs.c.id).where(cycle_runs.c.id == part.run.id)
                 .with_for_update())
    recorded = conn.execute(update(cycle_run_parts).where(
        (parts.run_id == part.run.id) & (parts.route == part.route)
        & (parts.status == RunStatus.RUNNING) & (parts.worker == part.worker)
    ).values(status=(RunStatus.FAILED if error is not None else RunStatus.DONE).value,
             finished_at=now or datetime.now(UTC), result=result, error=error))
    if recorded.rowcount != 1:
        raise PartLost(f"part {part.route} of run {part.run.id} is no longer {part.worker}'s")
    unfinished = conn.execute(select(func.count()).select_from(cycle_run_parts).where(
        (parts.run_id == part.run.id)
        & parts.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))).scalar_one()
    return None if unfinished else get_parts(conn, part.run.id)


Combine = Callable[[Connection, Run, Sequence[Part]], dict[str, Any]]
"""Makes a run's result of its parts' results (:func:`hub.api.steps.combine`)."""


def close_run(conn: Connection, run: Run, parts: Sequence[Part], combine: Combine, *,
              now: datetime | None = None) -> Run:
    """Finish ``run`` once every part has: failed if any part failed, else its combined result."""
    failed = [p for p in parts if p.status is RunStatus.FAILED]
    if not failed:
        return finish_run(conn, run.id, result=combine(conn, run, parts), now=now)
    if len(parts) == 1:
        return finish_run(conn, run.id, error=failed[0].error, now=now)
    shown = "; ".join(f"route {p.route}: {p.error}" for p in failed[:MAX_ERRORS_SHOWN])
    more = f" (and {len(failed) - MAX_ERRORS_SHOWN} more)" if len(failed) > MAX_ERRORS_SHOWN \
        else ""
    return finish_run(conn, run.id, now=now, error=f"{len(failed)} of {len(parts)} routes "
                      f"failed: {shown}{more}; the other routes' work stands")


def finish_run(conn: Connection, run_id: int, *, result: dict[str, Any] | None = None,
               error: str | None = None, now: datetime | None = None) -> Run:
    conn.execute(update(cycle_runs).where(cycle_runs.c.id == run_id).values(
        status=(RunStatus.FAILED if error is not None else RunStatus.DONE).value,
        finished_at=now or datetime.now(UTC), result=result, error=error,
    ))
    return get_run(conn, run_id)


ABANDONED = "abandoned: its worker stopped before finishing; nothing it did was kept"


def fail_abandoned(conn: Connection, *, now: datetime | None = None) -> int:
    """Mark runs and parts whose worker died mid-step failed (their transactions rolled back).

    A run split into parts is never abandoned as a whole (a big cycle may
    take longer than :data:`STALE_AFTER`); its abandoned parts are, and a run
    whose last part that was closes failed. How many runs and parts were marked.
    """
    now = now or datetime.now(UTC)
    marked = conn.execute(update(cycle_runs).where(
        (cycle_runs.c.status == RunStatus.RUNNING) & (cycle_runs.c.started_at < now - STALE_AFTER)
        & ~_has_parts()
    ).values(status=RunStatus.FAILED.value, finished_at=now, error=ABANDONED)).rowcount
    parts = cycle_run_parts.c
    stale = (parts.status == RunStatus.RUNNING) & (parts.started_at < now - STALE_AFTER)
    for run_id in conn.execute(select(parts.run_id).where(stale).distinct()).scalars().all():
        # the run's row first, as finish_part locks it: no deadlock with a finishing part
        run = conn.execute(select(cycle_runs).where(cycle_runs.c.id == run_id)
                           .with_for_update()).first()
        marked += conn.execute(update(cycle_run_parts).where(stale & (parts.run_id == run_id))
                               .values(status=RunStatus.FAILED.value, finished_at=now,
                                       error=ABANDONED)).rowcount
        every = get_parts(conn, run_id)
        if run is not None and all(p.status in (RunStatus.DONE, RunStatus.FAILED)
                                   for p in every):
            close_run(conn, run_of(run), every, _no_combine, now=now)
    return marked


def _no_combine(_conn: Connection, run: Run, _parts: Sequence[Part]) -> dict[str, Any]:
    raise AssertionError(f"run {run.id} has a failed part: nothing to combine")


def running_part_workers(conn: Connection) -> set[str]:
    """The workers holding a running part now."""
    return set(conn.execute(select(cycle_run_parts.c.worker).where(
        cycle_run_parts.c.status == RunStatus.RUNNING).distinct()).scalars())


def requeue_parts(conn: Connection, workers: Collection[str]) -> int:
    """Queue again the running parts of ``workers``, known to be dead; how many."""
    if not workers:
        return 0
    parts = cycle_run_parts.c
    return conn.execute(update(cycle_run_parts).where(
        (parts.status == RunStatus.RUNNING) & parts.worker.in_(list(workers))
    ).values(status=RunStatus.QUEUED.value, worker=None, started_at=None)).rowcount


def get_run(conn: Connection, run_id: int) -> Run:
    row = conn.execute(select(cycle_runs).where(cycle_runs.c.id == run_id)).first()
    if row is None:
        raise LookupError(f"no run {run_id}")
    return run_of(row)


def get_part(conn: Connection, run_id: int, route: str) -> Part:
    run = get_run(conn, run_id)
    row = conn.execute(select(cycle_run_parts).where(
        (cycle_run_parts.c.run_id == run_id) & (cycle_run_parts.c.route == route))).one()
    return _part_of(run, row)


def get_parts(conn: Connection, run_id: int) -> list[Part]:
    """The run's parts by route (none for a run not split into parts)."""
    run = get_run(conn, run_id)
    rows = conn.execute(select(cycle_run_parts).where(cycle_run_parts.c.run_id == run_id)
                        .order_by(cycle_run_parts.c.route)).all()
    return [_part_of(run, row) for row in rows]


def latest_runs(conn: Connection, cycle: str) -> dict[Step, Run]:
    """Each step's most recent run of ``cycle`` (for the dashboard's 'last done' column)."""
    rows = conn.execute(select(cycle_runs).where(cycle_runs.c.cycle == cycle)
                        .order_by(cycle_runs.c.id)).all()
    return {Step(row.step): run_of(row) for row in rows}


def run_of(row: Any) -> Run:
    return Run(id=int(row.id), cycle=row.cycle, step=Step(row.step), options=dict(row.options),
               status=RunStatus(row.status), requested_by=row.requested_by,
               requested_at=row.requested_at, worker=row.worker, started_at=row.started_at,
               finished_at=row.finished_at, result=row.result, error=row.error)


def _part_of(run: Run, row: Any) -> Part:
    return Part(run=run, route=row.route, status=RunStatus(row.status), worker=row.worker,
                started_at=row.started_at, finished_at=row.finished_at, result=row.result,
                error=row.error)


def _has_parts() -> Any:
    return exists().where(cycle_run_parts.c.run_id == cycle_runs.c.id)
