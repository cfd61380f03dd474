"""Prometheus metrics of a hub process: what ingest did, and what is waiting in the store.

Two kinds of numbers, kept apart on purpose:

- **Counted as it happens** (per process): batches by outcome, reads stored,
  reads refused by reason, status messages, ingest latency and read age.
  The workers of one ``meterhub serve --workers N`` count into files of a
  shared directory (prometheus_client's multiprocess mode, set up by the
  supervisor through ``$PROMETHEUS_MULTIPROC_DIR``), and worker 0's
  ``/metrics`` answers with their sum, a worker restarted after a crash
  included; separate hubs (other machines) each answer for their own, so
  sum them across instances in PromQL
  (``sum(rate(meterhub_reads_ingested_total[5m]))``).
- **Read from the store at scrape time** (the same in every worker): reads
  waiting for the background verifier, quarantined batches, open exceptions
  by severity, queued and running cycle runs, collectors online, offline and
  revoked, and the reads collectors say they still buffer. These are a few
  indexed counts, cheap at a scrape every 15–60 s; take ``max`` across
  instances, not ``sum``. When the store cannot answer, ``meterhub_store_up``
  is 0 and the store gauges are left out, so an alert fires on the store, not
  on counts that only look like zero.

Every network entry point of the hub is authenticated, ``/metrics`` too: it
needs a viewer token. Make one for Prometheus and point the scrape job at it::

    meterhub tokens create prometheus --role viewer --out /etc/prometheus/meterhub.token

    scrape_configs:
      - job_name: meterhub
        authorization:
          type: Bearer
          credentials_file: /etc/prometheus/meterhub.token
        static_configs:
          - targets: ["hub-1:8080", "hub-2:8080"]

Each :class:`HubMetrics` has a registry of its own (never prometheus_client's
global one), so tests and benchmarks can run several hubs in one process.

Example::

    metrics = HubMetrics(store, offline_after_s=settings.collector_offline_after_s)
    worker = IngestWorker(store, broker, metrics=metrics)
    app = create_app(store, settings, runner=runner, metrics=metrics_route(metrics))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from hub.api.auth import VIEWER, Principal
from hub.api.runs import RunStatus
from hub.edits.model import Severity
from hub.store import Store
from hub.store.collector_status import collector_health
from hub.store.collectors import ACTIVE
from hub.store.reads import FAILED, PENDING
from hub.store.tables import collectors, cycle_runs, edit_exceptions, quarantine, reads
from hub.workers import METRICS_DIR_ENV

if TYPE_CHECKING:
    from hub.ingest import IngestOutcome

log = logging.getLogger(__name__)

REJECT_REASONS = (
    # the batch or a read in it is not well-formed (protocols.errors)
    "malformed_batch", "malformed", "missing_field", "extra_field", "invalid_field",
    "non_canonical", "invalid_read",
    # the chain or the signatures do not hold (protocols.errors, hub.ingest)
    "broken_chain", "seq_gap", "seq_regression", "wrong_collector", "conflict",
    "bad_signature", "wrong_key",
    # the sender is not one the hub stores reads of (hub.ingest)
    "unknown_collector", "revoked_key", "wrong_topic",
)
"""The refusal codes ingest gives, each a label value from the start (so ``rate()`` of a
reason that has never happened is 0, not missing). A code not listed is still counted."""
BATCH_OUTCOMES = ("stored", "partial", "replayed", "seq_gap", "refused", "failed")
"""``partial``: a linked prefix stored, the rest refused; ``failed``: the store failed
(nothing acked, the edge resends)."""
STATUS_OUTCOMES = ("recorded", "stale", "unknown_collector", "malformed")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""One batch, authenticated and committed: a millisecond on an idle SQLite, seconds when the
database is struggling (or a gap wait of ``GAP_WAIT_S`` is in it)."""
AGE_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)
"""From a read polled a second ago to a month-old backlog catching up after an outage."""
RUN_STATES = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
COLLECTOR_STATES = ("online", "offline", "revoked")


class HubMetrics:
    """A hub process's metrics: ingest counters, and (with a store) the store's queue depths.

    ``offline_after_s`` is the hub's ``collector_offline_after_s``: a collector
    whose last status is older than this counts as offline even if it said
    online.
    """

    def __init__(self, store: Store | None = None, *, offline_after_s: float = 3600.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.batches = Counter("meterhub_batches", "Reads batches ingested, by outcome.",
                               ["outcome"], registry=registry)
        self.reads_ingested = Counter("meterhub_reads_ingested",
                                      "Reads stored (new to the hub).", registry=registry)
        self.reads_duplicate = Counter(
            "meterhub_reads_duplicate", "Reads received again, byte for byte, and not stored "
            "twice (redeliveries, resends after a lost ack).", registry=registry)
        self.reads_rejected = Counter(
            "meterhub_reads_rejected", "Reads refused (quarantined and not acked), by reason; "
            "a message whose reads cannot be counted counts as one.", ["reason"],
            registry=registry)
        self.ingest_latency = Histogram(
            "meterhub_ingest_latency_seconds", "Time to authenticate and commit one batch.",
            buckets=LATENCY_BUCKETS, registry=registry)
        # One observation per stored batch (its oldest new read), not per read: observing
        # costs about 1.5 µs, a tenth of what ingest spends on a read, and the oldest read
        # is the one that answers "how far behind is the hub?".
        self.read_age = Histogram(
            "meterhub_read_age_seconds", "Age at ingest (received_at - read_at) of the oldest "
            "new read of each stored batch: how late reads reach the hub, outages included.",
            buckets=AGE_BUCKETS, registry=registry)
        self.status_messages = Counter(
            "meterhub_status_messages", "Collector status messages (birth, last will), by "
            "what became of them.", ["outcome"], registry=registry)
        for outcome in BATCH_OUTCOMES:
            self.batches.labels(outcome)
        for reason in REJECT_REASONS:
            self.reads_rejected.labels(reason)
        for outcome in STATUS_OUTCOMES:
            self.status_messages.labels(outcome)
        self.store_gauges = (StoreGauges(store, offline_after_s=offline_after_s, clock=clock)
                             if store is not None else None)
        if self.store_gauges is not None:
            registry.register(self.store_gauges)
        self.exposed = self._exposed()
        """What ``/metrics`` answers with: :attr:`registry` or, under ``--workers``, every
        worker's counts summed (from ``$PROMETHEUS_MULTIPROC_DIR``) and the store's gauges."""

    def _exposed(self) -> CollectorRegistry:
        shared = os.environ.get(METRICS_DIR_ENV)
        if not shared:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=shared)  # reads the files per scrape
        if self.store_gauges is not None:
            registry.register(self.store_gauges)
        return registry

    def observe_batch(self, outcome: IngestOutcome, seconds: float) -> None:
        """Count one ingested message by what became of it (``Ingestor.ingest`` calls this)."""
        self.ingest_latency.observe(seconds)
        self.batches.labels(batch_outcome(outcome)).inc()
        if outcome.stored:
            self.reads_ingested.inc(outcome.stored)
        if outcome.duplicates:
            self.reads_duplicate.inc(outcome.duplicates)
        refusal = outcome.refusal
        if refusal is not None and refusal.reason != "replayed":
            count = refusal.last_seq - refusal.first_seq + 1 if refusal.first_seq else 1
            self.reads_rejected.labels(refusal.reason).inc(count)

    def observe_failure(self, seconds: float) -> None:
        """A message whose ingest raised (the store is down): nothing stored, nothing acked."""
        self.ingest_latency.observe(seconds)
        self.batches.labels("failed").inc()

    def observe_read_age(self, seconds: float) -> None:
        self.read_age.observe(max(seconds, 0.0))

    def observe_status(self, outcome: str) -> None:
        self.status_messages.labels(outcome).inc()

    def exposition(self) -> bytes:
        """Everything in the Prometheus text format (what ``/metrics`` answers)."""
        encoder, _ = choose_encoder("")
        return encoder(self.exposed)


def batch_outcome(outcome: IngestOutcome) -> str:
    refusal = outcome.refusal
    if refusal is None:
        return "stored"
    if refusal.reason in ("replayed", "seq_gap"):
        return refusal.reason
    return "partial" if outcome.stored else "refused"


class StoreGauges(Collector):
    """The store's queue depths, counted when Prometheus scrapes (never cached, never stale)."""

    def __init__(self, store: Store, *, offline_after_s: float,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.offline_after_s = offline_after_s
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # registering must not query the store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("meterhub_store_up", "1 when the store answered this scrape.")
        try:
            with self.store.connect() as conn:
                families = list(self._families(conn))
        except SQLAlchemyError as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, conn: Connection) -> Iterator[Metric]:
        yield _gauge("meterhub_reads_pending_verification",
                     "Stored reads whose own signature the background verifier has not checked "
                     "yet (they cannot be billed before).",
                     _count(conn, select(func.count()).select_from(reads)
                            .where(reads.c.verify_status == PENDING)))
        yield _gauge("meterhub_reads_failed_verification",
                     "Stored reads whose own signature failed: quarantined, never billed.",
                     _count(conn, select(func.count()).select_from(reads)
                            .where(reads.c.verify_status == FAILED)))
        yield _gauge("meterhub_quarantined_batches",
                     "Messages refused at ingest and kept in quarantine.",
                     _count(conn, select(func.count()).select_from(quarantine)))
        open_by_severity = dict(conn.execute(
            select(edit_exceptions.c.severity, func.count())
            .where(edit_exceptions.c.status == "open").group_by(edit_exceptions.c.severity)
        ).all())
        yield _labelled("meterhub_exceptions_open", "Meter-edit exceptions waiting for an "
                        "operator, by severity (blocking ones hold bills).", "severity",
                        {s.value: open_by_severity.get(s.value, 0) for s in Severity})
        runs = dict(conn.execute(
            select(cycle_runs.c.status, func.count())
            .where(cycle_runs.c.status.in_(RUN_STATES)).group_by(cycle_runs.c.status)).all())
        yield _labelled("meterhub_cycle_runs", "Cycle steps queued or running.", "status",
                        {state: runs.get(state, 0) for state in RUN_STATES})
        states, buffered = self._collectors(conn)
        yield _labelled("meterhub_collectors", "Enrolled collectors: online (said so within "
                        "the offline threshold), offline (said so, went quiet, or never "
                        "spoke) and revoked.", "state", states)
        yield _gauge("meterhub_collector_buffered_reads",
                     "Reads the active collectors last said they hold unacked, summed.",
                     buffered)

    def _collectors(self, conn: Connection) -> tuple[dict[str, int], int]:
        now = self.clock()
        health = collector_health(conn)
        states = dict.fromkeys(COLLECTOR_STATES, 0)
        buffered = 0
        for collector_id, status in conn.execute(select(collectors.c.id, collectors.c.status)):
            said = health.get(collector_id)
            if status != ACTIVE:
                states["revoked"] += 1
                continue
            online = said is not None and said.online(now, self.offline_after_s)
            states["online" if online else "offline"] += 1
            if said is not None and said.buffer_depth:
                buffered += said.buffer_depth
        return states, buffered


def _count(conn: Connection, query: object) -> int:
    return int(conn.execute(query).scalar_one())  # type: ignore[call-overload]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(name: str, documentation: str, label: str,
              values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in values.items():
        family.add_metric([value], count)
    return family


def metrics_route(metrics: HubMetrics) -> Callable[..., Response]:
    """The ``GET /metrics`` endpoint for :func:`hub.api.app.create_app`: viewers and up.

    Answers in the format the scraper asks for (``Accept``): Prometheus text,
    or OpenMetrics.
    """

    def scrape(request: Request, _who: Annotated[Principal, Depends(VIEWER)]) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.exposed), media_type=content_type)

    return scrape
