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

A worker that died is noticed by the other runners, on any machine, within
about a minute. Every runner keeps a heartbeat (``cycle_runners``,
:func:`beat`) from a thread of its own, so a step that holds the runner for
minutes does not stop it, and deletes its row when it stops cleanly
(:func:`forget_runner`). Before each round a runner gives up the work of
every other worker that is dead by one of two rules:

- a runner of its own machine whose process is gone (``{host}-{pid}``, a
  pid check: at once);
- a worker whose last sign of life is older than :data:`RUNNER_DEAD_AFTER`
  (:func:`silent_workers`): its heartbeat, or its latest claim if that is
  later (the worker wrote it, so it was alive then). A worker without a
  heartbeat row — one that claimed before migration 0007, or died before its
  first heartbeat — is judged by its claims alone.

Its parts are queued again (:func:`requeue_parts`): its transaction rolled
back, and a route's edits and bills are safe to redo. Its whole runs
(reconcile, export) are failed :data:`ABANDONED` (:func:`fail_runs_of`), so
the cycle's step can be asked for again at once. Both are conditional
UPDATEs (``status = 'running' AND worker = :dead``), so two runners judging
one worker dead at once give its work up once; a part claimed again
meanwhile is its new worker's and left alone. Each run's row is locked
before its parts, as :func:`finish_part` locks them, so giving up never
deadlocks with a part finishing. A worker that was only slow finds its part
or run gone when it records it (:class:`PartLost`, :class:`RunLost`), so
nothing is recorded twice; the heartbeat rows of the dead are swept away
(:func:`forget_silent_runners`). The times compared are each machine's own
UTC clock: :data:`RUNNER_DEAD_AFTER` (six heartbeats) leaves room for
clocks a few seconds apart (NTP), not a minute.

:data:`STALE_AFTER` stays as a last resort (:func:`fail_abandoned`): a
heartbeat shows that a runner's process lives, not that its step moves. A
step stuck on a lock or a file system that never answers holds its cycle
with a fresh heartbeat; a part or run still running hours after it started
is failed whoever holds it.

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

from sqlalchemy import Connection, delete, exists, func, insert, select, union_all, update

from hub.reconcile_store import UnknownCycle
from hub.store.tables import cycle_run_parts, cycle_runners, cycle_runs, cycles, routes

RUNNER_DEAD_AFTER = timedelta(seconds=60)
"""A worker silent this long (no heartbeat, no claim) is dead: six of a runner's
heartbeats (:data:`hub.api.runner.HEARTBEAT_S`) missed in a row."""
STALE_AFTER = timedelta(hours=6)
"""A run (or part) still ``running`` this long after it started is failed, however alive its
worker looks: its step is stuck (the last resort behind the heartbeats)."""
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


class RunLost(Exception):
    """A whole run is no longer this worker's: it was given up as abandoned meanwhile."""


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
               error: str | None = None, now: datetime | None = None,
               worker: str | None = None) -> Run:
    """Record the run done (or failed, with ``error``).

    With ``worker``, only while the run is still running and that worker's:
    :class:`RunLost` if it was given up as abandoned meanwhile.
    """
    held = cycle_runs.c.id == run_id
    if worker is not None:
        held &= (cycle_runs.c.status == RunStatus.RUNNING) & (cycle_runs.c.worker == worker)
    recorded = conn.execute(update(cycle_runs).where(held).values(
        status=(RunStatus.FAILED if error is not None else RunStatus.DONE).value,
        finished_at=now or datetime.now(UTC), result=result, error=error,
    ))
    if worker is not None and recorded.rowcount != 1:
        raise RunLost(f"run {run_id} is no longer {worker}'s")
    return get_run(conn, run_id)


ABANDONED = "abandoned: its worker stopped before finishing; nothing it did was kept"


def fail_abandoned(conn: Connection, *, now: datetime | None = None) -> int:
    """Mark runs and parts still running :data:`STALE_AFTER` after they started failed.

    The last resort: a dead worker's work is given up long before
    (:func:`silent_workers`); what is left this long is stuck. A run split
    into parts is never abandoned as a whole (a big cycle may take longer
    than :data:`STALE_AFTER`); its abandoned parts are, and a run whose last
    part that was closes failed. How many runs and parts were marked.
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


def beat(conn: Connection, worker: str, *, host: str, pid: int, started_at: datetime,
         now: datetime | None = None) -> None:
    """Record that runner ``worker`` (of ``host``, process ``pid``) is alive now: its heartbeat.

    Its row is added the first time (and again if it was swept away while
    the runner was silent). Only the runner itself writes its row.
    """
    now = now or datetime.now(UTC)
    moved = conn.execute(update(cycle_runners).where(cycle_runners.c.worker == worker)
                         .values(heartbeat_at=now)).rowcount
    if not moved:
        conn.execute(insert(cycle_runners).values(worker=worker, host=host, pid=pid,
                                                  started_at=started_at, heartbeat_at=now))


def forget_runner(conn: Connection, worker: str) -> None:
    """Remove runner ``worker``'s heartbeat: it stopped cleanly, holding nothing."""
    conn.execute(delete(cycle_runners).where(cycle_runners.c.worker == worker))


def heartbeats(conn: Connection) -> dict[str, datetime]:
    """Each runner's last heartbeat, by worker."""
    return {row.worker: row.heartbeat_at for row in conn.execute(
        select(cycle_runners.c.worker, cycle_runners.c.heartbeat_at))}


def running_workers(conn: Connection) -> set[str]:
    """The workers holding a running part or whole run now."""
    return {worker for worker, _ in _claims(conn)}


def silent_workers(conn: Connection, *, now: datetime | None = None) -> set[str]:
    """The workers holding a running part or whole run that gave no sign of life lately.

    A worker's last sign of life is its heartbeat or its latest running
    claim, whichever is later; it is silent when that is older than
    :data:`RUNNER_DEAD_AFTER`. A worker with no heartbeat row is judged by
    its claims alone.
    """
    cutoff = (now or datetime.now(UTC)) - RUNNER_DEAD_AFTER
    last: dict[str, datetime] = {}
    for worker, started_at in _claims(conn):
        last[worker] = max(started_at, last.get(worker, started_at))
    for worker, heartbeat_at in conn.execute(
            select(cycle_runners.c.worker, cycle_runners.c.heartbeat_at)
            .where(cycle_runners.c.worker.in_(sorted(last)))):
        last[worker] = max(heartbeat_at, last[worker])
    return {worker for worker, at in last.items() if at < cutoff}


def _claims(conn: Connection) -> list[tuple[str, datetime]]:
    """(worker, started_at) of every running part and every running run not split into parts."""
    parts, runs = cycle_run_parts.c, cycle_runs.c
    return [(row.worker, row.started_at) for row in conn.execute(union_all(
        select(parts.worker, parts.started_at).where(
            (parts.status == RunStatus.RUNNING) & parts.worker.is_not(None)),
        select(runs.worker, runs.started_at).where(
            (runs.status == RunStatus.RUNNING) & runs.worker.is_not(None) & ~_has_parts()),
    )) if row.started_at is not None]


def fail_runs_of(conn: Connection, workers: Collection[str], *,
                 now: datetime | None = None) -> int:
    """Mark the running whole runs (not split into parts) of ``workers``, known to be dead,
    failed :data:`ABANDONED`; how many.

    Failed, not queued again: the step may be asked for again at once, by
    someone who can tell whether its cycle's data has changed meanwhile.
    """
    if not workers:
        return 0
    runs = cycle_runs.c
    return conn.execute(update(cycle_runs).where(
        (runs.status == RunStatus.RUNNING) & runs.worker.in_(sorted(workers)) & ~_has_parts()
    ).values(status=RunStatus.FAILED.value, finished_at=now or datetime.now(UTC),
             error=ABANDONED)).rowcount


def requeue_parts(conn: Connection, workers: Collection[str]) -> int:
    """Queue again the running parts of ``workers``, known to be dead; how many.

    Run by run, in run order, each run's row locked before its parts (as
    :func:`finish_part` locks them); only parts still running and held by a
    dead worker change, so two runners doing this at once requeue each part
    once, and a part claimed again meanwhile stays its new worker's.
    """
    if not workers:
        return 0
    parts = cycle_run_parts.c
    held = (parts.status == RunStatus.RUNNING) & parts.worker.in_(sorted(workers))
    requeued = 0
    for run_id in conn.execute(select(parts.run_id).where(held).distinct()
                               .order_by(parts.run_id)).scalars().all():
        conn.execute(select(cycle_runs.c.id).where(cycle_runs.c.id == run_id)
                     .with_for_update())
        requeued += conn.execute(update(cycle_run_parts).where(held & (parts.run_id == run_id))
                                 .values(status=RunStatus.QUEUED.value, worker=None,
                                         started_at=None)).rowcount
    return requeued


def forget_silent_runners(conn: Connection, *, now: datetime | None = None) -> int:
    """Remove the heartbeats older than :data:`RUNNER_DEAD_AFTER`; how many.

    Rows of runners that died, whatever they held (that is given up by its
    claims' age alone): a machine whose workers crash and restart would
    otherwise gather one row per process.
    """
    cutoff = (now or datetime.now(UTC)) - RUNNER_DEAD_AFTER
    return conn.execute(delete(cycle_runners).where(cycle_runners.c.heartbeat_at < cutoff)
                        ).rowcount


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
