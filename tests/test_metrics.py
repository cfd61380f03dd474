"""The hub's Prometheus metrics: ingest counted as it happens, queue depths read from the store."""

from __future__ import annotations

import inspect
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import hub.ingest
import protocols.errors
from hub.access.roles import Role
from hub.access.tokens import create_token
from hub.api.app import create_app
from hub.api.runs import Step, request_run
from hub.ingest import Ingestor
from hub.metrics import REJECT_REASONS, HubMetrics, metrics_route
from hub.store import Store
from hub.store.collector_status import record_status
from hub.store.collectors import revoke_collector
from hub.store.engine import make_engine
from hub.store.tables import collectors, quarantine
from protocols.batch import encode_batch
from protocols.errors import ReadError
from protocols.mqtt_contract import Status, reads_topic
from protocols.signing import Signer
from protocols.web_server import WebServer
from tests.api_fixtures import hub_settings
from tests.test_billing_store import billed_cycle
from tests.test_ingest import NOW, enrolled, sealed_reads, tip_of

UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none"


def sample(metrics: HubMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def stranger_batch(collector: str, count: int) -> bytes:
    return encode_batch(collector, sealed_reads(Signer.generate(), collector, count))


def test_every_ingest_outcome_is_counted_by_outcome_and_reason(store):
    metrics = HubMetrics()
    ingestor = Ingestor(store, clock=lambda: NOW, metrics=metrics)
    sealed = sealed_reads(enrolled(store, "gw-1"), "gw-1", 8)
    batch = encode_batch("gw-1", sealed[:3])
    assert ingestor.ingest(reads_topic("gw-1"), batch).stored == 3
    ingestor.ingest(reads_topic("gw-1"), batch)  # the same batch again
    foreign = sealed_reads(Signer.generate(), "gw-1", 1, after=tip_of(sealed[:5]))
    ingestor.ingest(reads_topic("gw-1"), encode_batch("gw-1", [*sealed[3:5], *foreign]))
    ingestor.ingest(reads_topic("gw-unknown"), stranger_batch("gw-unknown", 2))
    ingestor.ingest("meterhub/v1/gw-1/nonsense", b"{}")

    assert sample(metrics, "meterhub_batches_total", outcome="stored") == 1
    assert sample(metrics, "meterhub_batches_total", outcome="replayed") == 1
    assert sample(metrics, "meterhub_batches_total", outcome="partial") == 1
    assert sample(metrics, "meterhub_batches_total", outcome="refused") == 2
    assert sample(metrics, "meterhub_reads_ingested_total") == 5
    assert sample(metrics, "meterhub_reads_duplicate_total") == 3
    assert sample(metrics, "meterhub_reads_rejected_total", reason="unknown_collector") == 2
    assert sample(metrics, "meterhub_reads_rejected_total", reason="wrong_topic") == 1
    assert sum(sample(metrics, "meterhub_reads_rejected_total", reason=r)
               for r in REJECT_REASONS) == 4  # + seq 6, signed with a stranger's key
    assert sample(metrics, "meterhub_reads_rejected_total", reason="wrong_key") == 1
    assert sample(metrics, "meterhub_reads_rejected_total", reason="seq_gap") == 0
    assert sample(metrics, "meterhub_ingest_latency_seconds_count") == 5
    # one age per stored batch: its oldest read, taken 4–6 h before NOW
    assert sample(metrics, "meterhub_read_age_seconds_count") == 2
    assert sample(metrics, "meterhub_read_age_seconds_bucket", le="3600.0") == 0
    assert sample(metrics, "meterhub_read_age_seconds_bucket", le="86400.0") == 2


def test_a_store_failure_counts_as_a_failed_batch():
    metrics = HubMetrics()
    broken = Store(make_engine(UNREACHABLE), "broken")
    with pytest.raises(OperationalError):
        Ingestor(broken, metrics=metrics).ingest(reads_topic("gw-1"),
                                                 stranger_batch("gw-1", 1))
    assert sample(metrics, "meterhub_batches_total", outcome="failed") == 1
    assert sample(metrics, "meterhub_ingest_latency_seconds_count") == 1


def test_every_refusal_reason_has_a_label_from_the_start():
    reasons = {"unknown_collector", "revoked_key", "wrong_topic"}
    for module in (protocols.errors, hub.ingest):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ReadError) and cls.__module__ == module.__name__:
                reasons.add(cls.reason)
    assert reasons <= set(REJECT_REASONS)


def test_queue_depths_and_collector_states_are_read_from_the_store_at_scrape_time(store):
    billed_cycle(store)  # verified reads, bills, an exception held open
    now = NOW + timedelta(days=1)
    metrics = HubMetrics(store, offline_after_s=600, clock=lambda: now)
    Ingestor(store).ingest(reads_topic("gw-new"),  # stored, not verified yet
                           encode_batch("gw-new", sealed_reads(enrolled(store, "gw-new"),
                                                               "gw-new", 4)))
    Ingestor(store).ingest(reads_topic("gw-nobody"), stranger_batch("gw-nobody", 1))
    with store.begin() as conn:
        silent = conn.execute(select(func.count()).select_from(collectors)).scalar_one()
        request_run(conn, "C1", Step.BILL, requested_by="tests")
    enrolled(store, "gw-on")
    enrolled(store, "gw-quiet")
    enrolled(store, "gw-gone")
    with store.begin() as conn:
        record_status(conn, "gw-on", Status("online", "t", now, buffer_depth=5), now=now)
        record_status(conn, "gw-quiet", Status("online", "t", now, buffer_depth=7),
                      now=now - timedelta(hours=1))
        record_status(conn, "gw-gone", Status("online", "t", now, buffer_depth=1), now=now)
        revoke_collector(conn, "gw-gone", reason="stolen")
        quarantined = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()

    families = {f.name: f for f in text_string_to_metric_families(
        metrics.exposition().decode())}
    value = {(f.name, tuple(sorted(s.labels.items()))): s.value
             for f in families.values() for s in f.samples}
    assert value[("meterhub_store_up", ())] == 1
    assert value[("meterhub_reads_pending_verification", ())] == 4
    assert value[("meterhub_reads_failed_verification", ())] == 0
    assert value[("meterhub_quarantined_batches", ())] == quarantined >= 1
    assert value[("meterhub_exceptions_open", (("severity", "blocking"),))] >= 1
    assert ("meterhub_exceptions_open", (("severity", "info"),)) in value
    assert value[("meterhub_cycle_runs", (("status", "queued"),))] == 1
    assert value[("meterhub_cycle_runs", (("status", "running"),))] == 0
    states = {s.labels["state"]: s.value for s in families["meterhub_collectors"].samples}
    assert states == {"online": 1, "offline": silent + 1, "revoked": 1}
    assert value[("meterhub_collector_buffered_reads", ())] == 5 + 7  # not the revoked one's


def test_an_unreachable_store_says_so_instead_of_reporting_zeros():
    broken = Store(make_engine(UNREACHABLE), "broken")
    text = HubMetrics(broken).exposition().decode()
    assert "meterhub_store_up 0.0" in text
    assert "meterhub_reads_pending_verification" not in text
    assert "meterhub_batches_total" in text  # the counters are still there


def test_metrics_over_http_need_a_viewer_token(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", upgrade_schema=True) as store:
        with store.begin() as conn:
            viewer = create_token(conn, "prometheus", Role.VIEWER, created_by="tests").secret
        metrics = HubMetrics(store)
        app = create_app(store, hub_settings(tmp_path), metrics=metrics_route(metrics))
        with WebServer(app, "127.0.0.1", 0) as server, httpx.Client(base_url=server.url) as http:
            anonymous = http.get("/metrics")
            forged = http.get("/metrics", headers={"Authorization": "Bearer mh_forged"})
            scraped = http.get("/metrics", headers={"Authorization": f"Bearer {viewer}"})
            openmetrics = http.get("/metrics", headers={
                "Authorization": f"Bearer {viewer}",
                "Accept": "application/openmetrics-text; version=1.0.0"})
    assert anonymous.status_code == forged.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(scraped.text)}
    assert {"meterhub_reads_ingested", "meterhub_reads_pending_verification",
            "meterhub_collectors", "meterhub_store_up"} <= names
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
