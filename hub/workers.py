"""``meterhub serve --workers N``: N hub worker processes on one PostgreSQL store, supervised.

One hub process is bound by one core: ingest is hashing, JSON and SQL
round trips, which the GIL serialises. So ``--workers N`` makes the process
started a *supervisor* of N workers, each of them ``meterhub serve`` itself
(``python -m hub.workers [the same options] serve … --worker-index i``):

- every worker runs its own ingest (its own MQTT client on the shared
  subscription ``$share/meterhub/…``, so the broker hands each batch to one
  of them) and, when it has the cycle settings (``--http-port`` or
  ``--run-cycles``), its own cycle runner, so the route parts of an edits
  or bill run spread over all of them (:mod:`hub.api.runs`);
- worker 0 alone serves the API, the operator pages and ``/metrics`` (one
  port, so once) and runs the background verifier: the verifier records a
  verdict only on a read still pending, so several would be safe, but each
  would fetch and check the same pending reads — N times the Ed25519 work
  for nothing — and one already spreads its checks over every core.

Why workers are processes of ``meterhub serve`` itself rather than
``multiprocessing`` targets: a worker is then exactly the single-process hub
(same options, code path and logs; ``ps`` shows what each is), nothing of
the parent has to be pickled (the hub's signing key cannot be), and the
supervisor holds no store connection, broker session or thread — there is
little in it to crash. That is also why the API lives in worker 0 rather
than in the supervisor: if worker 0 dies the API is back with it after the
back-off, while the supervisor, doing almost nothing, stays up.

Failures. A worker that exits while the hub runs is logged and started
again after a back-off (1 s, doubling up to 30 s; back to 1 s once a worker
has run for a minute): its unacknowledged batches are resent by the edges
and taken by the other workers meanwhile, and a run part it held is queued
again by the next runner to look (:meth:`hub.api.runner.CycleRunner.requeue_dead`).
A worker that exits with 2 — a configuration problem, such as an HTTP port
in use or an unreadable password file — is not restarted, since that cannot
help: the supervisor stops the others and exits 2.

Signals. SIGTERM or SIGINT to the supervisor stops every worker (SIGTERM,
then SIGKILL after :data:`STOP_TIMEOUT_S`) and it exits 0. A worker whose
supervisor is gone (``kill -9``) stops too, so none is left orphaned.

Metrics. Each worker counts what it ingests into a file of a directory the
supervisor makes for the run (:func:`shared_metrics_dir`, handed down as
``$PROMETHEUS_MULTIPROC_DIR``), and worker 0's ``/metrics`` answers with the
sum (:mod:`hub.metrics`); the files of a worker that died stay, so totals
never go back. The directory is removed when the supervisor stops.

SQLite has one writer, so ``--workers`` above 1 is refused on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import typer
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0
"""A worker that ran this long before it exited is restarted after the shortest back-off."""
STOP_TIMEOUT_S = 90.0
"""How long a worker may take to stop (its cycle runner finishing a part) before SIGKILL."""
CONFIG_ERROR = 2
PARENT_CHECK_S = 1.0


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess directory: read once, when a worker imports it."""


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A fresh directory for the workers' metric files, removed afterwards.

    An operator's own ``$PROMETHEUS_MULTIPROC_DIR`` is used as it is and left in
    place (prometheus_client wants it emptied between runs: that is then theirs
    to do).
    """
    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        yield given
        return
    made = tempfile.mkdtemp(prefix="meterhub-metrics-")
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


class WorkersRefused(ValueError):
    """``--workers`` cannot be given with this store (SQLite)."""


def check_store(url: str, workers: int) -> None:
    """:class:`WorkersRefused` if ``url`` cannot take ``workers`` writers at once."""
    if workers > 1 and make_url(url).get_backend_name() == "sqlite":
        raise WorkersRefused(
            f"--workers {workers} needs PostgreSQL: SQLite has one writer, so more workers "
            "would only queue for its lock. Run one worker on SQLite, or move the store to "
            "PostgreSQL (--db postgresql+psycopg://user@host/db)")


def worker_command(ctx: typer.Context, index: int, *, skip: frozenset[str]) -> list[str]:
    """The command line of worker ``index``: this ``meterhub … serve`` with its own options.

    Rebuilt from what click parsed (not from ``sys.argv``), so options that
    came from ``METERHUB_*`` variables are passed on too; ``skip`` names the
    supervisor's own options. Passwords are never options, so none is shown.
    """
    root = ctx.find_root()
    return [sys.executable, "-m", "hub.workers", *_as_options(root, frozenset()),
            ctx.info_name or "serve", *_as_options(ctx, skip),
            "--worker-index", str(index), "--supervisor-pid", str(os.getpid())]


def _as_options(ctx: typer.Context, skip: frozenset[str]) -> list[str]:
    args: list[str] = []
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name in skip:
            continue
        value = ctx.params.get(param.name or "")
        if value is None:
            continue
        if param.is_flag:
            if value:
                args.append(param.opts[0])
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
            continue
        args += [param.opts[0], _text(value)]
    return args


def _text(value: object) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff_s: float = BACKOFF_MIN_S
    restart_at: float = 0.0
    restarts: int = 0


class Supervisor:
    """Starts ``count`` workers, restarts one that exits, stops them all when ``stop`` is set.

    ``command(i)`` is worker i's command line. :meth:`run` returns the exit
    code for the supervisor: 0 after a stop, 2 when a worker exited with a
    configuration problem.
    """

    def __init__(self, command: Callable[[int], list[str]], count: int, *,
                 backoff_min_s: float = BACKOFF_MIN_S, backoff_max_s: float = BACKOFF_MAX_S,
                 stable_s: float = STABLE_S, stop_timeout_s: float = STOP_TIMEOUT_S,
                 env: Mapping[str, str] | None = None) -> None:
        """``env``: the workers' environment (None: the supervisor's)."""
        self.command = command
        self.env = dict(env) if env is not None else None
        self.slots = [_Slot(i, backoff_s=backoff_min_s) for i in range(count)]
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s
        self.stop_timeout_s = stop_timeout_s

    def run(self, stop: threading.Event, *, tick_s: float = 0.2) -> int:
        code = 0
        try:
            while not stop.is_set():
                code = self._tend()
                if code:
                    break
                stop.wait(tick_s)
        finally:
            self._stop_all()
        return code

    def pids(self) -> list[int | None]:
        """Each worker's pid now (None while it waits to be restarted)."""
        return [s.process.pid if s.process is not None else None for s in self.slots]

    def _tend(self) -> int:
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is not None:
                returned = slot.process.poll()
                if returned is None:
                    continue
                if returned == CONFIG_ERROR:
                    log.error("hub worker %d exited with a configuration problem (status 2, "
                              "see its messages above); stopping every worker", slot.index)
                    return CONFIG_ERROR
                ran = now - slot.started
                if ran >= self.stable_s:
                    slot.backoff_s = self.backoff_min_s
                elif slot.restarts:  # it failed again soon after its last restart
                    slot.backoff_s = min(self.backoff_max_s, slot.backoff_s * 2)
                slot.restart_at = now + slot.backoff_s
                log.error("hub worker %d (pid %d) %s after %.0f s; restarting it in %.0f s",
                          slot.index, slot.process.pid, _how(returned), ran, slot.backoff_s)
                slot.process = None
                slot.restarts += 1
            if slot.process is None and now >= slot.restart_at:
                self._start(slot)
        return 0

    def _start(self, slot: _Slot) -> None:
        slot.process = subprocess.Popen(self.command(slot.index), env=self.env)
        slot.started = time.monotonic()
        log.info("hub worker %d started: pid %d", slot.index, slot.process.pid)

    def _stop_all(self) -> None:
        running = [s for s in self.slots if s.process is not None and s.process.poll() is None]
        for slot in running:
            slot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.stop_timeout_s
        for slot in running:
            process = slot.process
            assert process is not None
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("hub worker %d (pid %d) did not stop in %.0f s; killing it",
                          slot.index, process.pid, self.stop_timeout_s)
                process.kill()
                process.wait()
        log.info("every hub worker stopped")


def _how(returned: int) -> str:
    if returned < 0:
        try:
            return f"was killed by {signal.Signals(-returned).name}"
        except ValueError:
            return f"was killed by signal {-returned}"
    return f"exited with status {returned}"


def watch_supervisor(pid: int, stop: threading.Event, *, every_s: float = PARENT_CHECK_S
                     ) -> threading.Thread:
    """Set ``stop`` once this worker's supervisor ``pid`` is no longer its parent."""
    def watch() -> None:
        while not stop.wait(every_s):
            if os.getppid() != pid:
                log.warning("the supervisor (pid %d) is gone; this hub worker stops", pid)
                stop.set()

    thread = threading.Thread(target=watch, name="supervisor watch", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":  # a worker: `python -m hub.workers [meterhub options] serve …`
    from hub.cli import app

    app(prog_name="meterhub")
