"""The thread that works queued cycle runs and their parts, one at a time, in ``meterhub serve``.

It wakes when this process queues a run (:meth:`CycleRunner.wake`) and
otherwise polls every few seconds, so runs queued through another worker
are taken too — and the parts of an edits or bill run spread over every
worker's runner (:mod:`hub.api.runs`). A failing step fails its run (or
part) with the error's sentence; the step's own transaction has rolled
back, so a failed run or part changed nothing.

A runner is named ``{host}-{pid}``. Before each round it gives the parts
held by a dead runner of its own host back to the queue (the process is
gone, so its transaction rolled back), which is what a restarted worker of
``meterhub serve --workers N`` needs; a runner of another host that died is
given up after :data:`~hub.api.runs.STALE_AFTER`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from sqlalchemy import Connection

from hub.api.runs import (
    Part,
    PartLost,
    Run,
    claim_next,
    claim_part,
    close_run,
    fail_abandoned,
    finish_part,
    finish_run,
    requeue_parts,
    running_part_workers,
)
from hub.api.settings import HubSettings
from hub.api.steps import combine, execute, execute_part
from hub.store import Store

log = logging.getLogger(__name__)

POLL_S = 5.0


class CycleRunner:
    def __init__(self, store: Store, settings: HubSettings, *, worker: str | None = None,
                 poll_s: float = POLL_S) -> None:
        self.store = store
        self.settings = settings
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.poll_s = poll_s
        self.parts_done = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CycleRunner:
        with self.store.begin() as conn:
            abandoned = fail_abandoned(conn)
        if abandoned:
            log.warning("%d cycle run(s) or part(s) abandoned by a stopped worker marked failed",
                        abandoned)
        self._thread = threading.Thread(target=self._loop, name="cycle runner", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

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

    def requeue_dead(self) -> int:
        """Queue again the parts held by runners of this host whose process is gone."""
        with self.store.begin() as conn:
            dead = {w for w in running_part_workers(conn) if _dead_here(w)}
            requeued = requeue_parts(conn, dead)
        if requeued:
            log.warning("%d run part(s) of stopped worker(s) %s queued again", requeued,
                        ", ".join(sorted(dead)))
        return requeued

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
            with self.store.begin() as conn:
                finish_run(conn, run.id, error=str(exc) or type(exc).__name__)
            return
        with self.store.begin() as conn:
            finish_run(conn, run.id, result=result)
        log.info("run %d: %s of cycle %s done", run.id, run.step, run.cycle)

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
