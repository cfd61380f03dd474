"""The pieces of an edge → broker → hub run for sync tests, each a real component.

A gateway is a directory with a key, a buffer and an ``edge-agent.toml`` whose
``[sync]`` section points at the test's broker; it runs as ``edge-agent run``
(a process that can be killed) or as an in-process :class:`SyncClient`
thread. The hub is an :class:`IngestWorker` thread or a ``meterhub serve``
process. :func:`assert_exactly_once` is the verdict every fault test ends with.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from edge_agent.buffer import EdgeBuffer
from edge_agent.keys import generate_key_file, load_signer
from edge_agent.sync import SyncClient
from edge_agent.sync_config import SyncSection
from hub.metrics import HubMetrics
from hub.serve import IngestWorker
from hub.store import Store
from hub.store.collectors import add_collector
from hub.store.reads import check_stored_chain, read_count
from hub.store.tables import reads
from protocols.broker_settings import BrokerSettings
from tests.conftest import script
from tests.readings import readings

FAST_SYNC = {
    "batch_size": 50, "linger_s": 0.1, "window": 4, "ack_timeout_s": 3.0,
    "backoff_min_s": 0.2, "backoff_max_s": 2.0, "keepalive_s": 5,
    "connect_timeout_s": 5.0, "status_interval_s": 2.0,
}


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               tick: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(tick)


class Gateway:
    """A collector's directory: key, buffer, config. Enrolled at the hub on creation."""

    def __init__(self, root: Path, store: Store, *, collector: str = "gw-1",
                 broker_port: int, **sync: object) -> None:
        self.root = root
        self.collector = collector
        root.mkdir(parents=True, exist_ok=True)
        self.signer = generate_key_file(root / "collector.key")
        with store.begin() as conn:
            add_collector(conn, collector, self.signer.public_key)
        self.sync = SyncSection(host="127.0.0.1", port=broker_port, **{**FAST_SYNC, **sync})
        lines = [f'collector = "{collector}"', "[agent]", "housekeeping_interval_s = 1",
                 "[sync]"]
        lines += [f"{name} = {_toml(value)}" for name, value in
                  self.sync.model_dump(exclude_none=True).items()]
        (root / "edge-agent.toml").write_text("\n".join(lines) + "\n")

    @property
    def buffer_path(self) -> Path:
        return self.root / "buffer.sqlite"

    def buffer(self) -> EdgeBuffer:
        return EdgeBuffer(self.buffer_path, collector=self.collector,
                          signer=load_signer(self.root / "collector.key"))

    def append(self, count: int) -> int:
        """Buffer ``count`` more readings; return the buffer's last seq."""
        with self.buffer() as buffer:
            for start in range(0, count, 2000):
                buffer.append(readings(min(2000, count - start)))
            return buffer.tip().seq

    def acked(self) -> int:
        with self.buffer() as buffer:
            return buffer.tip_acked()

    def start_agent(self, env: dict[str, str]) -> subprocess.Popen:
        with open(self.root / "agent.log", "ab") as log:
            return subprocess.Popen(
                [script("edge-agent"), "--log-level", "info", "run", "-c",
                 str(self.root / "edge-agent.toml")],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )

    @contextmanager
    def sync_thread(self, on_route: Callable[[bytes], object] | None = None,
                    **override: object) -> Iterator[SyncClient]:
        settings = self.sync.model_copy(update=override)
        with self.buffer() as buffer:
            client = SyncClient(buffer, settings, version="test", on_route=on_route)
            stop = threading.Event()
            thread = threading.Thread(target=client.run, args=(stop,), name="sync")
            thread.start()
            try:
                yield client
            finally:
                stop.set()
                thread.join(30)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return f'"{value}"'


@contextmanager
def hub_thread(store: Store, broker_port: int, *, verify: bool = False,
               subscription: str | None = None, metrics: HubMetrics | None = None,
               **broker: object) -> Iterator[IngestWorker]:
    """A hub worker thread; ``broker`` adds settings (credentials, TLS) to host and port."""
    settings = BrokerSettings(host="127.0.0.1", port=broker_port, keepalive_s=5, **broker)
    more = {"subscription": subscription} if subscription is not None else {}
    worker = IngestWorker(store, settings, verify=verify, verifier_processes=1,
                          metrics=metrics, **more)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="hub")
    thread.start()
    try:
        wait_until(worker.connected.is_set, 10, "the hub worker to connect")
        yield worker
    finally:
        stop.set()
        thread.join(30)


def start_hub_process(db_url: str, broker_port: int, env: dict[str, str],
                      log: Path) -> subprocess.Popen:
    with open(log, "ab") as stderr:
        return subprocess.Popen(
            [script("meterhub"), "--log-level", "info", "--db", db_url, "serve",
             "--broker-port", str(broker_port), "--verifier-processes", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )


def stop_process(process: subprocess.Popen, *, kill: bool = False) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    process.wait(30)


def assert_exactly_once(store: Store, gateway: Gateway, count: int) -> None:
    """Every read 1…count stored once, byte for byte as buffered, one chain; nothing unacked."""
    with store.connect() as conn:
        assert read_count(conn, gateway.collector) == count
        assert check_stored_chain(conn, gateway.collector) == count
        stored = dict(conn.execute(select(reads.c.seq, reads.c.data)
                                   .where(reads.c.collector == gateway.collector)).all())
    with gateway.buffer() as buffer:
        assert buffer.tip().seq == count
        assert buffer.tip_acked() == count, "reads left unacked at the edge"
        assert buffer.stats().pending == 0
        for sealed in buffer.reads(from_seq=1):
            assert stored[sealed.seq] == sealed.data
