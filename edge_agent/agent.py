"""Start-up and the main loop of the edge agent.

Start-up refuses rather than limps: a key others can read, a config with a
typo, a buffer written by a newer agent or altered behind the agent's back
each stop the agent with a message naming the file and the fix. Once running,
the loop keeps the buffer healthy (pruning acked reads past retention and
reporting its depth), the collector polls every configured meter on its
lanes, a single writer signs and buffers what the polls return, and each
meter's health is saved for ``edge-agent status`` (MQTT sync joins with its
issue). With a ``[metrics]`` section the agent also serves Prometheus metrics
(edge_agent/metrics.py), started with the agent so a bad token file or a port
in use stops it at start.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from edge_agent import __version__
from edge_agent.buffer import EdgeBuffer
from edge_agent.buffer_writer import BufferWriter
from edge_agent.collector import Collector
from edge_agent.config import AgentConfig
from edge_agent.health import HealthBoard
from edge_agent.keys import load_signer, passphrase_from_env
from edge_agent.meter_plan import plan_meters
from edge_agent.metrics import EdgeMetrics, serve_metrics
from edge_agent.sync import SyncClient
from protocols.signing import Signer
from protocols.web_server import WebServer

log = logging.getLogger(__name__)

BUDGET_ALARM_SHARE = 0.9
"""Warn operators well before BufferFull starts refusing reads."""
HEALTH_SAVE_S = 5.0


@dataclass
class Agent:
    """A started agent: its verified key and its open buffer."""

    config: AgentConfig
    signer: Signer
    buffer: EdgeBuffer
    metrics: EdgeMetrics | None = None
    metrics_server: WebServer | None = None

    @classmethod
    def start(cls, config: AgentConfig) -> Agent:
        """Load the key (refusing a readable one), check the broker password can be read,
        open the buffer, check its tip.

        With ``[metrics]``, also start serving metrics (:class:`MetricsError` if it cannot).
        """
        signer = load_signer(
            config.key.path, passphrase=passphrase_from_env(config.key.passphrase_env)
        )
        if config.sync is not None:
            # A missing or world-readable broker password must stop the agent here, not
            # leave it polling forever with nothing ever synced.
            config.sync.password()
        buffer = open_buffer(config, signer=signer)
        metrics = server = None
        try:
            buffer.check_tip()
            if config.metrics is not None:
                metrics = EdgeMetrics(buffer, collector=config.collector, version=__version__)
                server = serve_metrics(config.metrics, metrics)
        except BaseException:
            buffer.close()
            raise
        stats = buffer.stats()
        log.info(
            "agent %s started: key %s, buffer %s at seq %d with %d unacked",
            config.collector, signer.key_id, config.buffer.path, stats.last_seq, stats.pending,
        )
        return cls(config, signer, buffer, metrics, server)

    def housekeeping(self) -> None:
        pruned = self.buffer.prune()
        stats = self.buffer.stats()
        used = stats.stored_bytes / stats.budget_bytes
        log.info(
            "buffer: seq %d, %d unacked, %d held, %.1f%% of budget%s",
            stats.last_seq, stats.pending, stats.held, 100 * used,
            f", pruned {pruned}" if pruned else "",
        )
        if used >= BUDGET_ALARM_SHARE:
            log.warning(
                "ALARM buffer at %.0f%% of its budget with %d unacked reads (oldest %s): "
                "the hub is not acking; reads will be refused when it is full",
                100 * used, stats.pending, stats.oldest_unacked_at,
            )

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (SIGTERM/SIGINT in the CLI)."""
        plans = plan_meters(self.config)
        sync = (SyncClient(self.buffer, self.config.sync, version=__version__)
                if self.config.sync is not None else None)  # before any thread starts
        writer = BufferWriter(self.buffer).start()
        health = HealthBoard({plan.serial: plan.protocol.value for plan in plans})
        collector = Collector(
            plans, collection=self.config.collection, sink=writer.submit, health=health,
            metrics=self.metrics,
        )
        polling = threading.Thread(target=collector.run, args=(stop,), name="collector")
        polling.start()
        syncing = None
        if sync is not None:
            if self.metrics is not None:
                self.metrics.watch_sync(sync)
            syncing = threading.Thread(target=sync.run, args=(stop,), name="sync")
            syncing.start()
        health_path = Path(self.config.collection.health_path)
        interval = self.config.agent.housekeeping_interval_s
        next_housekeeping = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_housekeeping:
                    self.housekeeping()
                    next_housekeeping = time.monotonic() + interval
                if plans:
                    health.save(health_path)
                stop.wait(min(HEALTH_SAVE_S, interval))
        finally:
            log.info("agent %s stopping", self.config.collector)
            stop.set()
            polling.join()
            writer.stop()
            if syncing is not None:
                syncing.join()
            if plans:
                health.save(health_path)
        log.info("agent %s stopped: %d reads buffered", self.config.collector, writer.appended)

    def close(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.stop()  # before the buffer it reads goes away
        self.buffer.close()


def open_buffer(config: AgentConfig, *, signer: Signer | None = None) -> EdgeBuffer:
    """The configured buffer; without a signer it can be inspected but not appended to."""
    return EdgeBuffer(
        config.buffer.path,
        collector=config.collector,
        signer=signer,
        budget_bytes=config.buffer.budget_bytes,
        retention=timedelta(days=config.buffer.retention_days),
        min_free_bytes=config.buffer.min_free_bytes,
    )
