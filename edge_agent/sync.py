"""Edge sync: send the buffer's unacked reads to the hub over MQTT until the hub acks them.

Store-and-forward, with the buffer as the only state that matters: what the
hub has acked is recorded there, everything after it is sent (again) after
any restart, reconnect or silence, and the hub's unique (collector, seq)
makes a resent read harmless. So the rules are few:

- Reads go out in batches of ``batch_size`` (a part-full batch after
  ``linger_s``) at QoS 1 on ``meterhub/v1/{collector}/reads``; at most
  ``window`` batches are unacked at once.
- An ack's ``through_seq`` is written to the buffer; nothing is deleted
  before it (the buffer prunes acked reads later, after its retention).
- A ``seq_gap`` rejection (the hub lost an earlier batch) or ``ack_timeout_s``
  of silence rewinds to the last acked seq and resends. Any other rejection
  is an alarm: the reads are kept and resent after a growing back-off, in
  case the fault was in transit; an operator must look if it persists.
- The connection is retried with exponential back-off and jitter. On every
  connect the agent announces itself ``online`` (retained, with version and
  buffer depth) on its status topic; the broker publishes the retained
  ``offline`` last will if the link dies, and the agent says ``offline``
  itself on a clean stop.

One thread owns the paho client (callback API v2) and drives its network
loop, so callbacks, publishes and buffer access never race.

Example::

    client = SyncClient(buffer, settings, version=__version__)
    threading.Thread(target=client.run, args=(stop,)).start()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.backoff import Backoff
from edge_agent.buffer import AckError, EdgeBuffer
from edge_agent.sync_config import SyncSection
from protocols.batch import encode_batch
from protocols.broker_settings import BrokerCredentialError
from protocols.mqtt_contract import (
    Ack,
    ContractError,
    Status,
    ack_topic,
    decode_ack,
    encode_status,
    reads_topic,
    routes_topic,
    status_topic,
)

log = logging.getLogger(__name__)

LOOP_TICK_S = 0.05


@dataclass
class SyncStats:
    connects: int = 0
    connect_failures: int = 0
    batches_sent: int = 0
    reads_sent: int = 0
    reads_acked: int = 0
    rewinds: int = 0
    rejections: int = 0
    last_ack_at: datetime | None = None


@dataclass
class _InFlight:
    first_seq: int
    last_seq: int
    sent_at: float


@dataclass
class _Session:
    """What one connection knows; a new connection starts from the buffer again."""

    connect_started: float
    ready: bool = False
    refused: bool = False
    cursor: int = 0
    in_flight: deque[_InFlight] = field(default_factory=deque)
    linger_since: float | None = None
    hold_until: float = 0.0
    rewound_at: int = -1
    """The acked seq the last rewind resent from; gap answers no newer than it are stale."""
    next_status: float = 0.0


class SyncClient:
    """Sends ``buffer``'s unacked reads to the hub and records the hub's acks."""

    def __init__(
        self, buffer: EdgeBuffer, settings: SyncSection, *, version: str,
        monotonic: Callable[[], float] = time.monotonic,
        on_route: Callable[[bytes], None] | None = None,
    ) -> None:
        """``on_route``: a handheld's handler for route messages (runs on the sync thread)."""
        self.buffer = buffer
        self.on_route = on_route
        self.settings = settings
        self.version = version
        self.collector = buffer.collector
        self.stats = SyncStats()
        self._monotonic = monotonic
        self._connect_backoff = Backoff(settings.backoff_min_s, settings.backoff_max_s)
        self._reject_backoff = Backoff(settings.backoff_min_s, settings.backoff_max_s)
        self._session: _Session | None = None
        self._client = self._make_client()

    # --- life cycle ----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Connect, sync, reconnect, until ``stop`` is set; then say offline and disconnect."""
        log.info("sync %s → %s:%d (batches of %d, window %d)", self.collector,
                 self.settings.host, self.settings.effective_port, self.settings.batch_size,
                 self.settings.window)
        while not stop.is_set():
            if self._connect():
                self._serve(stop)
            if stop.is_set():
                break
            delay = self._connect_backoff.next()
            log.info("sync %s: reconnecting in %.1f s", self.collector, delay)
            stop.wait(delay)

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.collector, clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self.settings.apply(client, default_username=self.collector)
        client.will_set(status_topic(self.collector),
                        encode_status(Status("offline", self.version)), qos=1, retain=True)
        client.max_inflight_messages_set(self.settings.window * 2 + 2)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _connect(self) -> bool:
        self._session = _Session(connect_started=self._monotonic())
        try:
            self._client.connect(self.settings.host, self.settings.effective_port,
                                 keepalive=self.settings.keepalive_s)
        except (OSError, BrokerCredentialError) as exc:  # incl. a TLS certificate refused
            self.stats.connect_failures += 1
            log.warning("sync %s: cannot reach broker %s:%d: %s", self.collector,
                        self.settings.host, self.settings.effective_port, exc)
            return False
        self.stats.connects += 1
        return True

    def _serve(self, stop: threading.Event) -> None:
        """Drive the network loop and the sending until the link drops or ``stop``."""
        session = self._session
        assert session is not None
        while not stop.is_set():
            rc = self._client.loop(timeout=LOOP_TICK_S)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or session.refused:
                break
            now = self._monotonic()
            if not session.ready:
                if now - session.connect_started > self.settings.connect_timeout_s:
                    log.warning("sync %s: no answer from the broker within %.0f s",
                                self.collector, self.settings.connect_timeout_s)
                    break
                continue
            self._pump(session, now)
        if stop.is_set() and session.ready:
            self._say_offline()
        self._client.disconnect()
        self._client.loop(timeout=LOOP_TICK_S)  # let paho send DISCONNECT and close

    def _say_offline(self) -> None:
        """A clean stop: the broker drops the will on DISCONNECT, so say offline ourselves.

        (If the link is already down at stop, the broker publishes the will.)
        """
        info = self._client.publish(status_topic(self.collector),
                                    encode_status(self._status("offline")), qos=1, retain=True)
        deadline = self._monotonic() + 2.0
        while not info.is_published() and self._monotonic() < deadline:
            if self._client.loop(timeout=LOOP_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    # --- sending ---------------------------------------------------------------------

    def _pump(self, session: _Session, now: float) -> None:
        if now >= session.next_status:
            self._publish_status(session, now)
        if session.in_flight and now - session.in_flight[0].sent_at > self.settings.ack_timeout_s:
            log.warning("sync %s: no ack for seq %d–%d within %.0f s; resending from seq %d",
                        self.collector, session.in_flight[0].first_seq,
                        session.in_flight[0].last_seq, self.settings.ack_timeout_s,
                        self.buffer.tip_acked() + 1)
            self._rewind(session)
        if now < session.hold_until:
            return
        while len(session.in_flight) < self.settings.window:
            # Count from the chain tip before fetching: while a part-full batch lingers,
            # this loop runs every tick, and the rows are fetched once, when they go out.
            waiting = self.buffer.tip().seq - session.cursor
            if waiting <= 0:
                session.linger_since = None
                return
            if waiting < self.settings.batch_size:
                session.linger_since = session.linger_since or now
                if now - session.linger_since < self.settings.linger_s:
                    return
            session.linger_since = None
            reads = self.buffer.pending(limit=self.settings.batch_size, after_seq=session.cursor)
            if not reads:  # the tip moved past rows no longer held: nothing to send
                return
            self._client.publish(reads_topic(self.collector),
                                 encode_batch(self.collector, reads), qos=1)
            session.in_flight.append(_InFlight(reads[0].seq, reads[-1].seq, now))
            session.cursor = reads[-1].seq
            self.stats.batches_sent += 1
            self.stats.reads_sent += len(reads)

    def _rewind(self, session: _Session) -> None:
        session.cursor = session.rewound_at = self.buffer.tip_acked()
        session.in_flight.clear()
        session.linger_since = None
        self.stats.rewinds += 1

    def _publish_status(self, session: _Session, now: float) -> None:
        self._client.publish(status_topic(self.collector),
                             encode_status(self._status("online")), qos=1, retain=True)
        session.next_status = now + self.settings.status_interval_s

    def _status(self, state: str) -> Status:
        stats = self.buffer.stats()
        return Status(state, self.version, datetime.now(UTC),  # type: ignore[arg-type]
                      buffer_depth=stats.pending, last_seq=stats.last_seq,
                      acked_through=stats.acked_through)

    # --- paho callbacks (run inside _client.loop, on this thread) ------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                    reason: ReasonCode, _properties: object) -> None:
        session = self._session
        assert session is not None
        if reason.is_failure:
            log.error("ALARM sync %s: broker refused the connection: %s (check the MQTT "
                      "user name and password)", self.collector, reason)
            session.refused = True
            return
        topics = [(ack_topic(self.collector), 1)]
        if self.on_route is not None:
            topics.append((routes_topic(self.collector), 1))
        client.subscribe(topics)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int,
                      reasons: list[ReasonCode], _properties: object) -> None:
        session = self._session
        assert session is not None
        if any(r.is_failure for r in reasons):
            log.error("ALARM sync %s: broker refused the subscription to %s (ACL?)",
                      self.collector, ack_topic(self.collector))
            session.refused = True
            return
        session.cursor = self.buffer.tip_acked()
        session.ready = True
        self._connect_backoff.reset()
        log.info("sync %s: connected; resending from seq %d", self.collector, session.cursor + 1)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                       reason: ReasonCode, _properties: object) -> None:
        if reason.is_failure:
            log.warning("sync %s: link lost (%s)", self.collector, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        if message.topic == routes_topic(self.collector):
            if self.on_route is not None:
                try:
                    self.on_route(message.payload)
                except Exception:  # a bad route must not stop the sync of reads
                    log.exception("sync %s: route message refused", self.collector)
            return
        try:
            ack = decode_ack(message.payload)
        except ContractError as exc:
            log.error("sync %s: ignoring a malformed ack: %s", self.collector, exc)
            return
        self._apply_ack(ack)

    def _apply_ack(self, ack: Ack) -> None:
        session = self._session
        assert session is not None
        now = self._monotonic()
        try:
            newly = self.buffer.ack(ack.through_seq)
        except AckError as exc:
            log.error("ALARM sync %s: %s", self.collector, exc)
            return
        if newly:
            self.stats.reads_acked += newly
            self.stats.last_ack_at = datetime.now(UTC)
        while session.in_flight and session.in_flight[0].last_seq <= ack.through_seq:
            session.in_flight.popleft()
        session.cursor = max(session.cursor, ack.through_seq)
        live = [r for r in ack.rejected if r.last_seq > ack.through_seq]
        if not live:
            if newly:
                self._reject_backoff.reset()
            return
        self.stats.rejections += 1
        if all(r.reason == "seq_gap" for r in live):
            # Every batch sent after a lost one comes back as a gap naming the same stored
            # tip; resend once per tip, not once per answer.
            if ack.through_seq > session.rewound_at:
                log.info("sync %s: hub holds reads only through seq %d; resending from there",
                         self.collector, ack.through_seq)
                self._rewind(session)
            return
        delay = self._reject_backoff.next()
        for r in live:
            log.error("ALARM sync %s: hub refused seq %d–%d (%s); kept, resending in %.0f s",
                      self.collector, r.seq, r.last_seq, r.reason, delay)
        self._rewind(session)
        session.hold_until = now + delay
