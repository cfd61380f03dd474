"""A whole sync path on one machine for benchmarks: a Mosquitto, a hub, and edge buffers.

The hub runs as its own ``meterhub serve`` process (ingest only: the
background verifier is another job and would compete for the same two
cores), or as several on the shared subscription, the broker is a private
Mosquitto, and the edge side is the real :class:`~edge_agent.sync.SyncClient`
over a real buffer. The store is a SQLite file unless a PostgreSQL URL is
given: :func:`fresh_postgres` makes an empty database for one run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from rich.progress import Progress

from bench.edge_buffer import fleet_readings
from edge_agent.buffer import EdgeBuffer
from edge_agent.sync import SyncClient
from edge_agent.sync_config import SyncSection
from hub.store import Store
from hub.store.collectors import add_collector
from protocols.signing import Signer
from simulators.private_broker import Mosquitto

BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("METERHUB_BENCH_PG", "host=127.0.0.1 port=5432 dbname=test")
"""The PostgreSQL server benchmarks make their databases on (a libpq connection string)."""
SUBSCRIBED = b"connected; subscribed"
"""What ``meterhub serve --log-level info`` logs once it has sent its SUBSCRIBE."""
SYNC = SyncSection(batch_size=1000, linger_s=0.05, window=8, ack_timeout_s=60,
                   backoff_min_s=0.2, backoff_max_s=2)


def wait_subscribed(hubs: list[subprocess.Popen[bytes]], logs: list[Path],
                    timeout: float = 120) -> None:
    """Return once every hub worker has subscribed: a batch published before is lost.

    A shared subscription delivers only to the subscribers it has, so a sync
    that starts first waits out its ack timeout for the batches nobody got
    (and a loaded machine can take seconds to start a worker).
    """
    deadline = time.monotonic() + timeout
    for hub, log in zip(hubs, logs, strict=True):
        while SUBSCRIBED not in log.read_bytes():
            if hub.poll() is not None:
                raise RuntimeError(f"meterhub serve exited with {hub.returncode}:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"meterhub serve did not subscribe within {timeout} s")
            time.sleep(0.05)
    time.sleep(0.2)  # the SUBSCRIBE is sent just before the line is logged


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on ``PG_ADMIN``'s server, dropped after."""
    name = f"meterhub_bench_{secrets.token_hex(6)}"
    params = dict(part.split("=", 1) for part in PG_ADMIN.split())
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    user = params.get("user", "")
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    try:
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def broker_and_hub(workdir: Path, *, workers: int = 1, url: str | None = None,
                   processes: list[subprocess.Popen[bytes]] | None = None,
                   ) -> Iterator[tuple[Mosquitto, Store]]:
    """A private broker and a fresh hub store with ``workers`` ingest processes.

    The store is a SQLite file in ``workdir`` unless ``url`` names another (an
    empty one). The hub processes are appended to ``processes`` if given.
    """
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    url = url or f"sqlite:///{workdir / 'hub.sqlite'}"
    with Mosquitto(workdir / "broker").start() as broker, \
            Store.open(url, upgrade_schema=True) as store:
        logs = [workdir / f"hub-{n}.log" for n in range(workers)]
        hubs = []
        for log in logs:
            with log.open("wb") as stderr:
                hubs.append(subprocess.Popen(
                    [BIN / "meterhub", "--log-level", "info", "--db", url, "serve",
                     "--broker-port", str(broker.port), "--no-verifier"],
                    stdout=subprocess.DEVNULL, stderr=stderr))
        if processes is not None:
            processes.extend(hubs)
        try:
            wait_subscribed(hubs, logs)
            yield broker, store
        finally:
            for hub in hubs:
                hub.terminate()
                hub.wait(30)


def enrolled_signer(store: Store, collector: str) -> Signer:
    signer = Signer.generate()
    with store.begin() as conn:
        add_collector(conn, collector, signer.public_key)
    return signer


def fill_buffer(path: Path, collector: str, signer: Signer, count: int,
                progress: Progress | None = None) -> EdgeBuffer:
    """An edge buffer holding ``count`` signed, unacked reads of a simulated fleet."""
    buffer = EdgeBuffer(path, collector=collector, signer=signer,
                        budget_bytes=4 * 1024**3, min_free_bytes=0)
    task = progress.add_task(f"signing {count:,} reads", total=count) if progress else None
    chunk = 10_000
    for start in range(0, count, chunk):
        buffer.append(fleet_readings(min(chunk, count - start)))
        if progress is not None and task is not None:
            progress.advance(task, min(chunk, count - start))
    return buffer


def drain(buffer: EdgeBuffer, port: int, *, settings: SyncSection = SYNC,
          timeout: float = 600, progress: Progress | None = None) -> float:
    """Seconds from starting sync until the hub has acked every buffered read."""
    target = buffer.tip().seq
    client = SyncClient(buffer, settings.model_copy(update={"port": port}), version="bench")
    stop = threading.Event()
    thread = threading.Thread(target=client.run, args=(stop,), name="sync")
    task = progress.add_task(f"syncing {target:,} reads", total=target) if progress else None
    start = time.perf_counter()
    thread.start()
    try:
        while buffer.tip_acked() < target:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"only {buffer.tip_acked():,} of {target:,} acked")
            if progress is not None and task is not None:
                progress.update(task, completed=buffer.tip_acked())
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        stop.set()
        thread.join(30)
        if progress is not None and task is not None:
            progress.update(task, completed=buffer.tip_acked())
