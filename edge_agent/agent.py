"""Start-up and the main loop of the edge agent.

Start-up refuses rather than limps: a key others can read, a config with a
typo, a buffer written by a newer agent or altered behind the agent's back
each stop the agent with a message naming the file and the fix. Once running,
the loop keeps the buffer healthy (pruning acked reads past retention and
reporting its depth); meter polling and MQTT sync join this loop as their
components arrive (see the issues for drivers and sync).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from edge_agent.buffer import EdgeBuffer
from edge_agent.config import AgentConfig
from edge_agent.keys import load_signer, passphrase_from_env
from protocols.signing import Signer

log = logging.getLogger(__name__)

BUDGET_ALARM_SHARE = 0.9
"""Warn operators well before BufferFull starts refusing reads."""


@dataclass
class Agent:
    """A started agent: its verified key and its open buffer."""

    config: AgentConfig
    signer: Signer
    buffer: EdgeBuffer

    @classmethod
    def start(cls, config: AgentConfig) -> Agent:
        """Load the key (refusing a readable one), open the buffer, check its tip."""
        signer = load_signer(
            config.key.path, passphrase=passphrase_from_env(config.key.passphrase_env)
        )
        buffer = open_buffer(config, signer=signer)
        try:
            buffer.check_tip()
        except BaseException:
            buffer.close()
            raise
        stats = buffer.stats()
        log.info(
            "agent %s started: key %s, buffer %s at seq %d with %d unacked",
            config.collector, signer.key_id, config.buffer.path, stats.last_seq, stats.pending,
        )
        return cls(config, signer, buffer)

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
        interval = self.config.agent.housekeeping_interval_s
        while not stop.is_set():
            self.housekeeping()
            stop.wait(interval)
        log.info("agent %s stopping", self.config.collector)

    def close(self) -> None:
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
