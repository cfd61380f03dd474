"""``meterhub serve``: the hub's MQTT ingest worker and its background verifier.

The worker subscribes to the reads of every collector through a shared
subscription, so the broker hands each batch to exactly one of however many
workers run (``meterhub serve --workers N`` on one machine, see
:mod:`hub.workers`; more hubs on other machines); all state lives in the
database. Paho's network thread only queues each batch; a store thread of the worker
takes whatever has queued (up to :data:`GROUP_MESSAGES` batches) and ingests
it with one commit (:meth:`~hub.ingest.Ingestor.ingest_group`): the durable
commit is most of a batch's cost, and during it the network thread goes on
receiving. Each batch is PUBACKed by hand only after that commit
(``manual_ack``), and the hub's ack to the edge is published after it too,
so a worker that dies mid-batch leaves the batch unacknowledged at the edge,
which resends it, and nothing is lost. A batch whose ingest failed (the
store is down) is PUBACKed without an ack to the edge, which resends it
later; a batch received before a reconnect is not PUBACKed after it (its
message id may name another message by then). Storing a batch twice changes
nothing.

Every worker also subscribes, plainly, to each collector's status topic
(birth ``online`` with buffer depth, last will ``offline``, both retained)
and keeps ``collector_status`` current: recording a status is idempotent and
ignores one older than what is stored, so several workers writing the same
message agree, and a worker that starts late learns every state from the
retained messages at once. A status from a collector the hub has not
enrolled (or has revoked), or one that breaks the contract, is logged once
and dropped; it never stops ingest.

Reconnection is paho's own (exponential back-off from 1 s to 30 s): a hub
is one or a few processes, so there is no thundering herd to spread out —
unlike thousands of gateways, which add jitter (edge_agent/sync.py).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hub.ingest import GAP_WAIT_S, Ingestor, received
from hub.store import Store
from hub.store.collector_status import record_status
from hub.store.collectors import find_collector
from hub.verifier import BackgroundVerifier
from protocols.broker_settings import BrokerSettings
from protocols.mqtt_contract import (
    SHARED_READS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    ContractError,
    ack_topic,
    decode_status,
    encode_ack,
    parse_topic,
)

if TYPE_CHECKING:
    from hub.metrics import HubMetrics

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
GROUP_MESSAGES = 8
"""At most this many queued batches share one commit (8 × 1000 reads: a few tens of ms)."""
MAX_REMEMBERED_DROPS = 10_000
"""Senders of dropped status messages remembered (to log each once): bounded, so a flood of
junk topics cannot grow a worker's memory (past it, each is logged once more)."""


class IngestWorker:
    """One hub worker: ingest over MQTT plus (optionally) the background verifier."""

    def __init__(
        self, store: Store, broker: BrokerSettings, *,
        subscription: str = SHARED_READS_SUBSCRIPTION, client_id: str | None = None,
        verifier_processes: int | None = None, verify: bool = True,
        gap_wait_s: float = GAP_WAIT_S, metrics: HubMetrics | None = None,
    ) -> None:
        """``metrics``: counts every batch and status message (see :mod:`hub.metrics`)."""
        self.store = store
        self.broker = broker
        self.subscription = subscription
        # unique per worker: a broker disconnects the older of two clients with one id
        self.client_id = client_id or (
            f"meterhub-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}")
        self.metrics = metrics
        self.ingestor = Ingestor(store, gap_wait_s=gap_wait_s, metrics=metrics)
        self.verifier = BackgroundVerifier(store, processes=verifier_processes) if verify else None
        self.connected = threading.Event()
        self._received: queue.Queue[tuple[int, mqtt.MQTTMessage, datetime]] = queue.Queue()
        """What paho received, with the connection it came on and when, for the store thread."""
        self._connection = 0
        """Counts connections: a message is PUBACKed only on the one it came on."""
        self.batches = 0
        self.groups = 0
        self.statuses = 0
        self._dropped: set[tuple[str, str]] = set()
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
            protocol=mqtt.MQTTv311, manual_ack=True,
        )
        self.broker.apply(client, default_username="meterhub")
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def run(self, stop: threading.Event) -> None:
        """Ingest (and verify) until ``stop`` is set."""
        verifying = None
        if self.verifier is not None:
            verifying = threading.Thread(target=self.verifier.run, args=(stop,),
                                         name="verifier", daemon=True)
            verifying.start()
        log.info("hub worker %s: store %s, broker %s:%d, subscribing %s", self.client_id,
                 self.store, self.broker.host, self.broker.effective_port, self.subscription)
        storing = threading.Thread(target=self._store_loop, args=(stop,), name="ingest store",
                                   daemon=True)
        storing.start()
        self._client.connect_async(self.broker.host, self.broker.effective_port,
                                   keepalive=self.broker.keepalive_s)
        self._client.loop_start()
        try:
            stop.wait()
        finally:
            storing.join()  # the group at hand is committed and acked before disconnecting
            self._client.disconnect()
            self._client.loop_stop()
            if verifying is not None:
                verifying.join()
            log.info("hub worker %s stopped after %d batches (in %d groups)", self.client_id,
                     self.batches, self.groups)

    # --- paho callbacks (network thread) ----------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                    reason: ReasonCode, _properties: object) -> None:
        if reason.is_failure:
            log.error("broker refused hub worker %s: %s", self.client_id, reason)
            return
        self._connection += 1
        client.subscribe([(self.subscription, 1), (STATUS_SUBSCRIPTION, 1)])
        self.connected.set()
        log.info("hub worker %s connected; subscribed to %s and %s", self.client_id,
                 self.subscription, STATUS_SUBSCRIPTION)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                       reason: ReasonCode, _properties: object) -> None:
        self.connected.clear()
        if reason.is_failure:
            log.warning("hub worker %s lost the broker (%s); reconnecting", self.client_id, reason)

    def _on_message(self, client: mqtt.Client, _userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/status"):
            self._on_status(message)
            client.ack(message.mid, message.qos)
            return
        self._received.put((self._connection, message, datetime.now(UTC)))

    # --- the store thread ----------------------------------------------------------------

    def _store_loop(self, stop: threading.Event) -> None:
        """Ingest what paho queued, a group at a time, until ``stop``.

        The group at hand is finished (committed, PUBACKed, acked); what is still
        queued then is neither, so the broker and the edges deliver it again.
        """
        while not stop.is_set():
            try:
                group = [self._received.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(group) < GROUP_MESSAGES:
                try:
                    group.append(self._received.get_nowait())
                except queue.Empty:
                    break
            try:
                self._store_group(group)
            except Exception:  # a bug: not acked, so the edges resend; the next group goes on
                log.exception("hub worker %s could not ingest %d batch(es); their edges will "
                              "resend them", self.client_id, len(group))
                for connection, message, _ in group:
                    self._release(connection, message)

    def _store_group(self, group: list[tuple[int, mqtt.MQTTMessage, datetime]]) -> None:
        outcomes = self.ingestor.ingest_group(
            [received(m.topic, m.payload, received_at=at) for _, m, at in group])
        self.groups += 1
        for (connection, message, _), outcome in zip(group, outcomes, strict=True):
            self._release(connection, message)
            if outcome is None:  # the store failed (ingest_group logged it): no ack
                continue
            self.batches += 1
            if outcome.collector is not None and outcome.ack is not None:
                self._client.publish(ack_topic(outcome.collector), encode_ack(outcome.ack),
                                     qos=1)

    def _release(self, connection: int, message: mqtt.MQTTMessage) -> None:
        """PUBACK ``message`` once it is stored — or once storing it failed.

        A failed batch is PUBACKed too: what keeps it safe is the edge, which
        resends whatever the hub has not acked (no ack goes out for it), and a
        broker redelivers an unacknowledged message only on a new connection.
        Left unacknowledged, failed batches would fill the broker's in-flight
        window for this worker (20 by default) and it would get no more
        messages until it reconnects: a store outage of a minute would stop
        ingest for good. Only on the connection the message came on: after a
        reconnect its message id may name another message.
        """
        if connection == self._connection:
            self._client.ack(message.mid, message.qos)

    # --- collector status ----------------------------------------------------------------

    def _on_status(self, message: mqtt.MQTTMessage) -> None:
        """Record a collector's status; anything wrong with it is logged once and dropped.

        Always PUBACKed: a status is republished every ``status_interval_s`` and
        kept retained, so one lost to a store failure is replaced soon.
        """
        if not message.payload:  # a retained status being cleared
            return
        try:
            collector, _ = parse_topic(message.topic)
        except ContractError as exc:
            self._drop(message.topic, "malformed", str(exc))
            return
        try:
            status = decode_status(message.payload)
        except ContractError as exc:
            self._drop(collector, "malformed", str(exc))
            return
        try:
            with self.store.begin() as conn:
                known = find_collector(conn, collector)
                kept = known is not None and known.active and record_status(
                    conn, collector, status)
        except Exception:
            log.exception("could not record the %s status of %s", status.state, collector)
            return
        if known is None or not known.active:
            self._drop(collector, "unknown_collector",
                       "not an enrolled collector" if known is None else "revoked")
            return
        self.statuses += 1
        if self.metrics is not None:
            self.metrics.observe_status("recorded" if kept else "stale")
        log.debug("%s says %s (buffer depth %s)%s", collector, status.state,
                  status.buffer_depth, "" if kept else "; older than the stored status")

    def _drop(self, sender: str, outcome: str, why: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_status(outcome)
        if (sender, outcome) in self._dropped:
            return
        if len(self._dropped) >= MAX_REMEMBERED_DROPS:
            self._dropped.clear()  # start over rather than grow, or go silent
        self._dropped.add((sender, outcome))
        log.warning("dropped a status message from %s (%s): %s; further ones are dropped "
                    "without a word", sender, outcome, why)

