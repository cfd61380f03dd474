"""The thread that works queued cycle runs, one at a time, in every ``meterhub serve``.

It wakes when this process queues a run (:meth:`CycleRunner.wake`) and
otherwise polls every few seconds, so runs queued through another worker
are taken too. A failing step fails its run with the error's sentence; the
step's own transaction has rolled back, so a failed run changed nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from hub.api.runs import Run, claim_next, fail_abandoned, finish_run
from hub.api.settings import HubSettings
from hub.api.steps import execute
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
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CycleRunner:
        with self.store.begin() as conn:
            abandoned = fail_abandoned(conn)
        if abandoned:
            log.warning("%d cycle run(s) abandoned by a stopped worker marked failed", abandoned)
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
        """Work every queued run now, in this thread; how many were run."""
        done = 0
        while not self._stop.is_set():
            with self.store.begin() as conn:
                run = claim_next(conn, self.worker)
            if run is None:
                return done
            self._work(run)
            done += 1
        return done

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
            expected = not isinstance(exc, (AssertionError, TypeError, AttributeError, KeyError))
            log.log(logging.WARNING if expected else logging.ERROR,
                    "run %d (%s of %s) failed: %s", run.id, run.step, run.cycle, exc,
                    exc_info=not expected)
            with self.store.begin() as conn:
                finish_run(conn, run.id, error=str(exc) or type(exc).__name__)
            return
        with self.store.begin() as conn:
            finish_run(conn, run.id, result=result)
        log.info("run %d: %s of cycle %s done", run.id, run.step, run.cycle)
