"""A whole sync path on one machine for benchmarks: a Mosquitto, a hub, and edge buffers.

The hub runs as its own ``meterhub serve`` process (ingest only: the
background verifier is another job and would compete for the same two
cores), the broker is a private Mosquitto, and the edge side is the real
:class:`~edge_agent.sync.SyncClient` over a real buffer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
SYNC = SyncSection(batch_size=1000, linger_s=0.05, window=8, ack_timeout_s=60,
                   backoff_min_s=0.2, backoff_max_s=2)


@contextmanager
def broker_and_hub(workdir: Path, *, workers: int = 1) -> Iterator[tuple[Mosquitto, Store]]:
    """A private broker and a fresh SQLite hub store with ``workers`` ingest processes."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    url = f"sqlite:///{workdir / 'hub.sqlite'}"
    with Mosquitto(workdir / "broker").start() as broker, \
            Store.open(url, upgrade_schema=True) as store:
        hubs = [subprocess.Popen(
            [BIN / "meterhub", "--db", url, "serve", "--broker-port", str(broker.port),
             "--no-verifier"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ) for _ in range(workers)]
        try:
            time.sleep(1.5)  # the workers connect and subscribe
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
