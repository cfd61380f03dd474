"""Prometheus metrics of the edge agent: how its meters answer and how far behind its sync is.

A gateway runs unattended; "which meters stopped answering, and how much is
waiting for the hub?" should reach the utility's monitoring without anyone
logging in to the box. With a ``[metrics]`` section the agent serves
``GET /metrics`` (Prometheus text)::

    [metrics]
    listen_host = "127.0.0.1"       # default; any other address needs token_file
    listen_port = 9465
    token_file = "metrics.token"    # mode 0600: the bearer token the scraper must send

Every network entry point is authenticated: an agent listening beyond
loopback without ``token_file`` refuses to start, and so does one whose token
file others can read (like the signing key). On loopback without a token the
page is open to the box's own users only. Prometheus sends the token with
``authorization: {type: Bearer, credentials_file: …}`` in its scrape job.

What is served:

- ``meterhub_edge_polls_total{meter}`` and
  ``meterhub_edge_poll_failures_total{meter,error}``: one poll is one
  scheduled read with its retries; it fails when its last attempt fails, and
  ``error`` is that attempt's driver error class (``NoResponse``,
  ``TimeoutError_``, ``FrameError``, ``ChecksumError``, ``LinkError``,
  ``DeviceError``, ``ProfileError``);
- ``meterhub_edge_buffer_depth`` (reads not yet acked by the hub) and
  ``meterhub_edge_unacked_age_seconds`` (age of the oldest of them, 0 when
  none), with the buffer's bytes and budget — read at scrape time;
- ``meterhub_edge_sync_*``: batches and reads sent, reads acked, refusals,
  rewinds and connects, from the sync client's own counters;
- ``meterhub_edge_info{collector,version}``.

Served by a tiny FastAPI app on :class:`protocols.web_server.WebServer`, not
by prometheus_client's own HTTP server, which has no authentication: the
agent already carries FastAPI and uvicorn for the handheld page, and
WebServer binds before it starts, so a port in use stops the agent at start
with a message instead of a log line on a thread.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from pydantic import ConfigDict, Field, model_validator

from edge_agent.tls_config import TlsSettings
from protocols.driver import MeterError
from protocols.private_files import PrivateFileError, read_private_file
from protocols.web_paths import is_loopback
from protocols.web_server import TlsError, WebServer

if TYPE_CHECKING:
    from edge_agent.buffer import EdgeBuffer
    from edge_agent.sync import SyncClient

log = logging.getLogger(__name__)

DEFAULT_PORT = 9465
MIN_TOKEN_CHARS = 16
MAX_TOKEN_BYTES = 4096


class MetricsSection(TlsSettings):
    """The ``[metrics]`` section; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """0 lets the system pick a free port (tests)."""
    token_file: Path | None = None

    @model_validator(mode="after")
    def _authenticated_beyond_loopback(self) -> MetricsSection:
        if self.token_file is None and not is_loopback(self.listen_host):
            raise ValueError(
                f"listen_host {self.listen_host!r} is reachable from the network: set "
                "token_file (a file holding a bearer token, mode 0600), so only the scraper "
                "gets in")
        return self

    def resolved(self, base: Path) -> MetricsSection:
        """``token_file`` and the TLS files made relative to ``base`` (the config's directory)."""
        update = self.tls_resolved(base)
        if self.token_file is not None:
            update["token_file"] = base / self.token_file
        return self.model_copy(update=update) if update else self


class MetricsError(Exception):
    """The metrics page cannot be served as configured (token file, address)."""


def load_token(path: Path) -> str:
    """The bearer token in ``path``, refusing a file others can read (like a key)."""
    try:
        data = read_private_file(path, what="the metrics token", limit=MAX_TOKEN_BYTES)
    except PrivateFileError as exc:
        raise MetricsError(str(exc)) from None
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MetricsError(f"{path}: the metrics token is not UTF-8 text") from None
    if len(data) > MAX_TOKEN_BYTES or len(token) < MIN_TOKEN_CHARS or any(
            c.isspace() for c in token):
        raise MetricsError(f"{path}: a metrics token is one line of {MIN_TOKEN_CHARS} to "
                           f"{MAX_TOKEN_BYTES} characters without spaces")
    return token


class EdgeMetrics:
    """The agent's metrics in a registry of its own: poll counters plus scrape-time gauges."""

    def __init__(self, buffer: EdgeBuffer | None, *, collector: str, version: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter("meterhub_edge_polls", "Scheduled polls of a meter (with their "
                             "retries), by meter.", ["meter"], registry=self.registry)
        self.poll_failures = Counter(
            "meterhub_edge_poll_failures", "Polls whose last attempt failed, by meter and "
            "driver error.", ["meter", "error"], registry=self.registry)
        self.sync: SyncClient | None = None
        self.registry.register(_AgentGauges(self, buffer, collector, version, clock))

    def watch_meters(self, serials: Iterable[str]) -> None:
        """Show every configured meter from the start, at 0 polls."""
        for serial in serials:
            self.polls.labels(serial)

    def watch_sync(self, sync: SyncClient) -> None:
        self.sync = sync

    def poll_succeeded(self, serial: str) -> None:
        self.polls.labels(serial).inc()

    def poll_failed(self, serial: str, error: MeterError) -> None:
        self.polls.labels(serial).inc()
        self.poll_failures.labels(serial, type(error).__name__).inc()

    def exposition(self) -> bytes:
        encoder, _ = choose_encoder("")
        return encoder(self.registry)


class _AgentGauges(Collector):
    """What is read when scraped: the buffer's depth and age, the sync client's counters."""

    def __init__(self, metrics: EdgeMetrics, buffer: EdgeBuffer | None, collector: str,
                 version: str, clock: Callable[[], datetime]) -> None:
        self.metrics = metrics
        self.buffer = buffer
        self.collector = collector
        self.version = version
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # registering must not touch the buffer

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("meterhub_edge_info", "The agent: its collector id and "
                                 "version.", labels=["collector", "version"])
        info.add_metric([self.collector, self.version], 1)
        yield info
        if self.buffer is not None:
            yield from self._buffer()
        if self.metrics.sync is not None:
            yield from _sync_families(self.metrics.sync)

    def _buffer(self) -> Iterator[Metric]:
        try:
            stats = self.buffer.stats()  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            log.warning("metrics: the buffer could not be read: %s", exc)
            return
        age = 0.0
        if stats.oldest_unacked_at is not None:
            age = max((self.clock() - stats.oldest_unacked_at).total_seconds(), 0.0)
        for name, text, value in (
            ("meterhub_edge_buffer_depth", "Reads not yet acked by the hub.", stats.pending),
            ("meterhub_edge_unacked_age_seconds", "Age of the oldest unacked read (by its "
             "collection time); 0 when everything is acked.", age),
            ("meterhub_edge_last_seq", "Seq of the newest read buffered.", stats.last_seq),
            ("meterhub_edge_buffer_stored_bytes", "Bytes of reads held.", stats.stored_bytes),
            ("meterhub_edge_buffer_budget_bytes", "Bytes the buffer may hold before it refuses "
             "reads.", stats.budget_bytes),
        ):
            yield GaugeMetricFamily(name, text, value=value)


def _sync_families(sync: SyncClient) -> Iterator[Metric]:
    stats = sync.stats
    for name, text, value in (
        ("meterhub_edge_sync_batches_sent", "Batches published to the hub (resends included).",
         stats.batches_sent),
        ("meterhub_edge_sync_reads_sent", "Reads published (resends included).",
         stats.reads_sent),
        ("meterhub_edge_sync_reads_acked", "Reads the hub acked as stored.", stats.reads_acked),
        ("meterhub_edge_sync_rejections", "Hub acks that refused reads.", stats.rejections),
        ("meterhub_edge_sync_rewinds", "Resends from the last acked seq (gap, silence, "
         "refusal).", stats.rewinds),
    ):
        yield CounterMetricFamily(name, text, value=value)
    connects = CounterMetricFamily("meterhub_edge_sync_connects", "Connection attempts to the "
                                   "broker, by result.", labels=["result"])
    connects.add_metric(["ok"], stats.connects)
    connects.add_metric(["failed"], stats.connect_failures)
    yield connects
    if stats.last_ack_at is not None:
        yield GaugeMetricFamily("meterhub_edge_sync_last_ack_timestamp_seconds",
                                "When the hub last acked new reads (Unix time).",
                                value=stats.last_ack_at.timestamp())


def metrics_app(metrics: EdgeMetrics, token: str | None) -> FastAPI:
    """``GET /metrics``, behind ``Authorization: Bearer <token>`` when a token is given."""
    app = FastAPI(title="edge-agent metrics", openapi_url=None, docs_url=None, redoc_url=None)
    expected = token.encode("utf-8") if token is not None else None

    @app.get("/metrics")
    def scrape(request: Request) -> Response:
        if expected is not None:
            scheme, _, secret = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    secret.strip().encode("utf-8"), expected):
                return Response("a bearer token is required\n", status_code=401,
                                headers={"WWW-Authenticate": "Bearer"}, media_type="text/plain")
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.registry), media_type=content_type)

    return app


def serve_metrics(section: MetricsSection, metrics: EdgeMetrics) -> WebServer:
    """Start serving ``metrics`` as configured; :class:`MetricsError` when it cannot be."""
    token = load_token(section.token_file) if section.token_file is not None else None
    if token is None and not is_loopback(section.listen_host):  # config validation, again
        raise MetricsError(f"metrics on {section.listen_host} need a token_file")
    try:
        server = WebServer(metrics_app(metrics, token), section.listen_host,
                           section.listen_port, name="edge metrics", tls=section.tls).start()
    except TlsError as exc:
        raise MetricsError(f"metrics: {exc}") from None
    except (OSError, RuntimeError) as exc:
        raise MetricsError(f"cannot serve metrics on {section.listen_host}:"
                           f"{section.listen_port}: {exc}") from None
    log.info("metrics on %s/metrics (%s)", server.url,
             "bearer token required" if token else "loopback, no token")
    return server
