"""The thread that works queued cycle runs and their parts, one at a time, in ``meterhub serve``.

It wakes when this process queues a run (:meth:`CycleRunner.wake`) and
otherwise polls every few seconds, so runs queued through another worker
are taken too — and the parts of an edits or bill run spread over every
worker's runner (:mod:`hub.api.runs`). A failing step fails its run (or
part) with the error's sentence; the step's own transaction has rolled
back, so a failed run or part changed nothing.

A runner is named ``{host}-{pid}``. From :meth:`CycleRunner.start` to
:meth:`CycleRunner.stop` a thread of its own records the runner's heartbeat
every :data:`HEARTBEAT_S` in a short transaction of its own, since a step
holds the runner's thread for minutes; a heartbeat that cannot be written is
logged and tried again next time, and never stops the runner. A clean stop
deletes the runner's row.

Before each round the runner gives up the work of dead workers
(:meth:`CycleRunner.requeue_dead`): a runner of its own host whose process is
gone (at once), and any worker, of any host, silent for
:data:`~hub.api.runs.RUNNER_DEAD_AFTER` (no heartbeat, no claim). Their
parts go back to the queue (the process is gone, so its transaction rolled
back), which is what a restarted worker of ``meterhub serve --workers N``
and the workers of a machine that crashed need; their whole runs fail as
abandoned, so the step can be asked for again. What is still running after
:data:`~hub.api.runs.STALE_AFTER` is failed as stuck, whoever holds it
(:mod:`hub.api.runs` says why both).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from hub.api.runs import (
    Part,
    PartLost,
    Run,
    RunLost,
    beat,
    claim_next,
    claim_part,
    close_run,
    fail_abandoned,
    fail_runs_of,
    finish_part,
    finish_run,
    forget_runner,
    forget_silent_runners,
    requeue_parts,
    running_workers,
    silent_workers,
)
from hub.api.settings import HubSettings
from hub.api.steps import combine, execute, execute_part
from hub.store import Store

log = logging.getLogger(__name__)

POLL_S = 5.0
HEARTBEAT_S = 10.0
"""How often a started runner records its heartbeat (:data:`~hub.api.runs.RUNNER_DEAD_AFTER`)."""


class CycleRunner:
    def __init__(self, store: Store, settings: HubSettings, *, worker: str | None = None,
                 poll_s: float = POLL_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.store = store
        self.settings = settings
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.parts_done = 0
        self.started_at = datetime.now(UTC)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stop_beating = threading.Event()
        self._beat_failures = 0
        self._thread: threading.Thread | None = None
        self._heart: threading.Thread | None = None

    def start(self) -> CycleRunner:
        self.started_at = datetime.now(UTC)
        self.beat()  # before anything is claimed
        with self.store.begin() as conn:
            abandoned = fail_abandoned(conn)
        if abandoned:
            log.warning("%d cycle run(s) or part(s) stuck for hours marked failed", abandoned)
        self._heart = threading.Thread(target=self._beat_loop, name="cycle runner heartbeat",
                                       daemon=True)
        self._heart.start()
        self._thread = threading.Thread(target=self._loop, name="cycle runner", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop after the part or run at hand; the heartbeat goes on until then.

        If the runner finished, its heartbeat row is deleted; if it is still
        working after ``timeout_s`` the row is left to go stale, and the
        other runners give its part up once it is
        :data:`~hub.api.runs.RUNNER_DEAD_AFTER` old.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._stop_beating.set()
        if self._heart is not None:
            self._heart.join(timeout_s)
        if self._thread is not None and self._thread.is_alive():
            log.warning("cycle runner %s still working after %.0f s; its heartbeat stopped",
                        self.worker, timeout_s)
            return
        if self._heart is not None and self._heart.is_alive():
            log.warning("cycle runner %s: its last heartbeat is still being written; its row "
                        "is left to go stale", self.worker)
            return
        try:
            with self.store.begin() as conn:
                forget_runner(conn, self.worker)
        except SQLAlchemyError as exc:  # stopping anyway: a left row goes stale, is swept
            log.warning("cycle runner %s: its heartbeat row was not removed: %s", self.worker, exc)

    def beat(self, *, now: datetime | None = None) -> bool:
        """Record this runner's heartbeat in a transaction of its own; whether it was written.

        A store failure is logged (a warning the first of a row of them) and
        not raised: the next heartbeat tries again.
        """
        try:
            with self.store.begin() as conn:
                beat(conn, self.worker, host=socket.gethostname(), pid=os.getpid(),
                     started_at=self.started_at, now=now)
        except SQLAlchemyError as exc:  # the store failed: the next heartbeat tries again
            self._beat_failures += 1
            log.log(logging.WARNING if self._beat_failures == 1 else logging.DEBUG,
                    "cycle runner %s: heartbeat not recorded (%d in a row): %s; retrying every "
                    "%.0f s", self.worker, self._beat_failures, exc, self.heartbeat_s)
            return False
        if self._beat_failures:
            log.warning("cycle runner %s: heartbeat recorded again after %d failure(s)",
                        self.worker, self._beat_failures)
            self._beat_failures = 0
        return True

    def run_pending(self) -> int:
        """Work every queued part and run now, in this thread; how many were worked."""
        self.requeue_dead()
        done = 0
        while not self._stop.is_set():
            with self.store.begin() as conn:
                part = claim_part(conn, self.worker)
            if part is not None:
                self._work_part(part)
                done += 1
                continue
            with self.store.begin() as conn:
                run = claim_next(conn, self.worker)
            if run is None:
                return done
            self._work(run)
            done += 1
        return done

    def requeue_dead(self, *, now: datetime | None = None) -> int:
        """Give up the work of dead workers; how many parts were queued again and runs failed.

        Dead: a runner of this host whose process is gone, or any worker
        silent for :data:`~hub.api.runs.RUNNER_DEAD_AFTER` (never this one).
        Its parts are queued again, its whole runs failed as abandoned.
        """
        now = now or datetime.now(UTC)
        with self.store.begin() as conn:
            dead = silent_workers(conn, now=now) | {
                w for w in running_workers(conn) if _dead_here(w)}
            dead.discard(self.worker)
            failed = fail_runs_of(conn, dead, now=now)
            requeued = requeue_parts(conn, dead)
            forget_silent_runners(conn, now=now)
        if requeued:
            log.warning("%d run part(s) of stopped worker(s) %s queued again", requeued,
                        ", ".join(sorted(dead)))
        if failed:
            log.warning("%d run(s) of stopped worker(s) %s failed as abandoned", failed,
                        ", ".join(sorted(dead)))
        return requeued + failed

    def _beat_loop(self) -> None:
        while not self._stop_beating.wait(self.heartbeat_s):
            try:
                self.beat()
            except Exception:
                log.exception("cycle runner %s: heartbeat failed; retrying in %.0f s",
                              self.worker, self.heartbeat_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pending()
            except Exception:
                log.exception("cycle runner: the store failed; retrying in %.0f s", self.poll_s)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _work(self, run: Run) -> None:
        log.info("run %d: %s of cycle %s for %s", run.id, run.step, run.cycle, run.requested_by)
        try:
            result = execute(self.store, self.settings, run)
        except Exception as exc:
            expected = _expected(exc)
            log.log(logging.WARNING if expected else logging.ERROR, "run %d (%s of %s) failed: %s",
                    run.id, run.step, run.cycle, exc, exc_info=not expected)
            self._finish(run, error=str(exc) or type(exc).__name__)
            return
        if self._finish(run, result=result):
            log.info("run %d: %s of cycle %s done", run.id, run.step, run.cycle)

    def _finish(self, run: Run, *, result: dict[str, Any] | None = None,
                error: str | None = None) -> bool:
        """Record ``run`` finished unless it was given up meanwhile; whether it was recorded."""
        try:
            with self.store.begin() as conn:
                finish_run(conn, run.id, result=result, error=error, worker=self.worker)
        except RunLost as exc:
            log.warning("run %d (%s of %s): %s; it stays failed", run.id, run.step, run.cycle,
                        exc)
            return False
        return True

    def _work_part(self, part: Part) -> None:
        what = f"run {part.run.id} ({part.run.step} of {part.run.cycle}) route {part.route}"
        log.info("%s: started by %s", what, self.worker)
        try:
            with self.store.begin() as conn:
                closed = _record(conn, part, result=execute_part(conn, self.settings, part))
        except PartLost as exc:
            log.warning("%s: %s; its work was not kept", what, exc)
            return
        except Exception as exc:
            expected = _expected(exc)
            log.log(logging.WARNING if expected else logging.ERROR, "%s failed: %s", what, exc,
                    exc_info=not expected)
            try:
                with self.store.begin() as conn:
                    closed = _record(conn, part, error=str(exc) or type(exc).__name__)
            except PartLost as lost:
                log.warning("%s: %s", what, lost)
                return
        else:
            log.info("%s: done", what)
        self.parts_done += 1
        if closed is not None:
            log.info("run %d: %s of cycle %s %s", closed.id, closed.step, closed.cycle,
                     closed.status)


def _record(conn: Connection, part: Part, *, result: dict[str, Any] | None = None,
            error: str | None = None) -> Run | None:
    """Record ``part`` finished; the run, closed, if it was the run's last part."""
    every = finish_part(conn, part, result=result, error=error)
    return close_run(conn, part.run, every, combine) if every is not None else None


def _expected(exc: Exception) -> bool:
    """A failure a person can act on (logged as a warning), not a bug (logged with its trace)."""
    return not isinstance(exc, (AssertionError, TypeError, AttributeError, KeyError))


def _dead_here(worker: str | None) -> bool:
    """Whether ``worker`` names a runner of this host (``{host}-{pid}``) whose process is gone."""
    host, _, pid = (worker or "").rpartition("-")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's process, say)
    return False
