"""Cycle runs: an operator asks for a cycle step, a worker claims it, does it, records how.

A step (reconcile, edits, bill, export) can take minutes on a large cycle,
longer than an HTTP request should wait, so asking for one adds a ``queued``
row to ``cycle_runs`` and answers at once (202). A runner claims the oldest
queued run with a conditional UPDATE (``… WHERE id = :id AND status =
'queued'``): of several workers polling the same table, exactly one wins each
run, on SQLite and PostgreSQL alike. One step of a cycle runs at a time: a
second request while one is queued or running is refused (409), since two
edits runs of one cycle would fight over the same exceptions.

Example::

    with store.begin() as conn:
        run = request_run(conn, "C2026-11", Step.EDITS, requested_by="alice")
    # a CycleRunner picks it up; GET /api/v1/runs/{run.id} shows its result
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hub.reconcile_store import UnknownCycle
from hub.store.tables import cycle_runs, cycles

STALE_AFTER = timedelta(hours=6)
"""A run still ``running`` this long after it started belonged to a worker that died."""


class Step(StrEnum):
    RECONCILE = "reconcile"
    EDITS = "edits"
    BILL = "bill"
    EXPORT = "export"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RunConflict(Exception):
    """A step of this cycle is already queued or running."""


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


def request_run(conn: Connection, cycle: str, step: Step, *, requested_by: str,
                options: dict[str, Any] | None = None, now: datetime | None = None) -> Run:
    """Queue ``step`` of ``cycle``; :class:`UnknownCycle` or :class:`RunConflict` if it can't be.

    The cycle's row is locked first, so two requests racing for one cycle queue
    one run between them, not two.
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
    run_id = conn.execute(insert(cycle_runs).values(
        cycle=cycle, step=step.value, options=options or {}, status=RunStatus.QUEUED.value,
        requested_by=requested_by, requested_at=now or datetime.now(UTC),
    ).returning(cycle_runs.c.id)).scalar_one()
    return get_run(conn, int(run_id))


def claim_next(conn: Connection, worker: str, *, now: datetime | None = None) -> Run | None:
    """Claim the oldest queued run for ``worker``; None when there is none (or it was taken)."""
    candidate = conn.execute(select(cycle_runs.c.id).where(
        cycle_runs.c.status == RunStatus.QUEUED).order_by(cycle_runs.c.id).limit(1)).scalar()
    if candidate is None:
        return None
    claimed = conn.execute(update(cycle_runs).where(
        (cycle_runs.c.id == candidate) & (cycle_runs.c.status == RunStatus.QUEUED)
    ).values(status=RunStatus.RUNNING.value, worker=worker,
             started_at=now or datetime.now(UTC)))
    return get_run(conn, candidate) if claimed.rowcount == 1 else None


def finish_run(conn: Connection, run_id: int, *, result: dict[str, Any] | None = None,
               error: str | None = None, now: datetime | None = None) -> Run:
    conn.execute(update(cycle_runs).where(cycle_runs.c.id == run_id).values(
        status=(RunStatus.FAILED if error is not None else RunStatus.DONE).value,
        finished_at=now or datetime.now(UTC), result=result, error=error,
    ))
    return get_run(conn, run_id)


def fail_abandoned(conn: Connection, *, now: datetime | None = None) -> int:
    """Mark runs whose worker died mid-step failed (their step's transaction rolled back)."""
    now = now or datetime.now(UTC)
    return conn.execute(update(cycle_runs).where(
        (cycle_runs.c.status == RunStatus.RUNNING) & (cycle_runs.c.started_at < now - STALE_AFTER)
    ).values(status=RunStatus.FAILED.value, finished_at=now,
             error="abandoned: its worker stopped before finishing; nothing it did was kept")
    ).rowcount


def get_run(conn: Connection, run_id: int) -> Run:
    row = conn.execute(select(cycle_runs).where(cycle_runs.c.id == run_id)).first()
    if row is None:
        raise LookupError(f"no run {run_id}")
    return run_of(row)


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
