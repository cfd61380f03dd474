"""The hub keeps each collector's status from the broker: birth, last will, and late starts.

A real Mosquitto and a real hub worker; the "edge" is a plain paho client
doing what the agent's sync does (birth ``online`` retained, last will
``offline`` retained), so the will can be fired by dropping the TCP link.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.metrics import HubMetrics
from hub.store.collector_status import collector_health
from protocols.mqtt_contract import PLAIN_READS_SUBSCRIPTION, Status, encode_status, status_topic
from tests.sync_harness import hub_thread, wait_until
from tests.test_ingest import enrolled


class Edge:
    """A collector's MQTT session driven by hand: connect with a will, publish, drop the link."""

    def __init__(self, broker, collector: str, *, will: bool = True) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=collector,
                                  protocol=mqtt.MQTTv311)
        if will:
            self.client.will_set(status_topic(collector), encode_status(Status("offline", "1.0")),
                                 qos=1, retain=True)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self._pump(self.client.is_connected)

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._pump(info.is_published)

    def drop_link(self) -> None:
        """The link dies without a DISCONNECT: the broker publishes the will."""
        self.client.socket().close()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.1)

    def _pump(self, done) -> None:
        deadline = time.monotonic() + 10
        while not done():
            assert time.monotonic() < deadline, "the broker did not answer"
            self.client.loop(timeout=0.05)


def online(depth: int) -> bytes:
    return encode_status(Status("online", "1.0", datetime.now(UTC), buffer_depth=depth,
                                last_seq=depth, acked_through=0))


def health(store, collector: str):
    with store.connect() as conn:
        return collector_health(conn).get(collector)


@pytest.fixture
def mosquitto(mosquitto_factory):
    """A broker of this test's own: the counts below include every retained status on it,
    and the session's shared broker keeps other tests' retained statuses."""
    return mosquitto_factory()


@pytest.fixture
def ids(mosquitto) -> Iterator[dict[str, str]]:
    """Collector ids of this test only (the session broker keeps retained messages)."""
    suffix = secrets.token_hex(3)
    names = {name: f"{name}-{suffix}" for name in ("early", "edge", "stranger")}
    yield names
    cleaner = Edge(mosquitto, f"cleaner-{suffix}", will=False)
    for collector in names.values():
        cleaner.publish(status_topic(collector), b"")  # clear what is retained
    cleaner.disconnect()


def test_the_hub_records_births_wills_and_what_was_said_before_it_started(
        store, mosquitto, ids, caplog):
    early, edge_id, stranger = ids["early"], ids["edge"], ids["stranger"]
    enrolled(store, early)
    enrolled(store, edge_id)
    before = Edge(mosquitto, early)
    before.publish(status_topic(early), online(7))  # retained, before any hub runs
    before.disconnect()

    metrics = HubMetrics(store)
    with hub_thread(store, mosquitto.port, subscription=PLAIN_READS_SUBSCRIPTION,
                    metrics=metrics) as worker:
        wait_until(lambda: health(store, early) is not None, 10, "the retained status")
        said = health(store, early)
        assert (said.state, said.buffer_depth, said.version) == ("online", 7, "1.0")

        edge = Edge(mosquitto, edge_id)
        edge.publish(status_topic(edge_id), online(3))
        wait_until(lambda: health(store, edge_id) is not None, 10, "the birth")
        assert health(store, edge_id).state == "online"
        edge.drop_link()
        wait_until(lambda: health(store, edge_id).state == "offline", 10, "the last will")

        junk = Edge(mosquitto, stranger, will=False)
        for _ in range(2):
            junk.publish(status_topic(stranger), online(1), retain=False)  # never enrolled
            junk.publish(status_topic(early), b"{not json", retain=False)
        junk.publish(status_topic(early), online(9), retain=False)
        wait_until(lambda: health(store, early).buffer_depth == 9, 10, "a later status")
        junk.disconnect()
        assert worker.statuses == 4

    assert health(store, stranger) is None
    sample = metrics.registry.get_sample_value
    assert sample("meterhub_status_messages_total", {"outcome": "unknown_collector"}) == 2
    assert sample("meterhub_status_messages_total", {"outcome": "malformed"}) == 2
    assert sample("meterhub_status_messages_total", {"outcome": "recorded"}) == 4
    dropped = [r for r in caplog.records
               if r.levelno == logging.WARNING and "dropped a status" in r.getMessage()]
    assert len(dropped) == 2  # once per sender and kind, not once per message
