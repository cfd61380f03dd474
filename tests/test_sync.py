"""Edge sync through a real Mosquitto into a real hub store: delivery, acks, status, credentials."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.broker_config import BrokerAccount, mosquitto_password_hash, write_broker_config
from protocols.mqtt_contract import Status, decode_status, status_topic
from simulators.private_broker import Mosquitto
from tests.sync_harness import (
    Gateway,
    assert_exactly_once,
    hub_thread,
    stop_process,
    wait_until,
)


class StatusWatcher:
    """Subscribes to a collector's status topic and keeps every message (retained ones too)."""

    def __init__(self, port: int, collector: str) -> None:
        self.seen: list[Status] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{collector}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(status_topic(collector), qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        with self._changed:
            self.seen.append(decode_status(message.payload))
            self._changed.notify_all()

    def wait_for(self, state: str, timeout: float = 15) -> Status:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: bool(self.seen) and self.seen[-1].state == state, timeout)
        assert ok, f"no {state} status within {timeout} s (saw {self.seen})"
        return self.seen[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_buffered_reads_reach_the_store_once_and_are_acked(tmp_path, store, mosquitto):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port)
    gateway.append(1234)
    with hub_thread(store, mosquitto.port), gateway.sync_thread() as sync:
        wait_until(lambda: gateway.acked() == 1234, 30, "the backlog to be acked")
        gateway.append(66)  # reads taken while syncing follow, with a part-full batch
        wait_until(lambda: gateway.acked() == 1300, 30, "new reads to be acked")
    assert_exactly_once(store, gateway, 1300)
    assert sync.stats.reads_acked == 1300
    assert sync.stats.rewinds == 0


def test_nothing_is_acked_while_no_hub_listens_and_all_is_resent_once_one_does(
        tmp_path, store, mosquitto):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port, ack_timeout_s=1.0)
    gateway.append(300)
    with gateway.sync_thread() as sync:
        wait_until(lambda: sync.stats.rewinds >= 2, 15, "ack timeouts to rewind the sender")
        assert gateway.acked() == 0
        with hub_thread(store, mosquitto.port):
            wait_until(lambda: gateway.acked() == 300, 30, "the resend to be acked")
    assert_exactly_once(store, gateway, 300)


def test_a_refused_collector_keeps_its_reads_and_backs_off_until_it_is_enrolled(
        tmp_path, store, mosquitto, caplog):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port)
    with store.begin() as conn:  # forget the enrolment: the hub does not know gw-1
        conn.exec_driver_sql("DELETE FROM collector_keys")
        conn.exec_driver_sql("DELETE FROM collectors")
    gateway.append(120)
    caplog.set_level(logging.ERROR, logger="edge_agent.sync")
    with hub_thread(store, mosquitto.port), gateway.sync_thread() as sync:
        wait_until(lambda: sync.stats.rejections >= 2, 15, "the hub to refuse twice")
        assert gateway.acked() == 0
        assert "unknown_collector" in caplog.text and "ALARM" in caplog.text
        from hub.store.collectors import add_collector

        with store.begin() as conn:
            add_collector(conn, "gw-1", gateway.signer.public_key)
        wait_until(lambda: gateway.acked() == 120, 30, "the reads to be accepted")
    assert_exactly_once(store, gateway, 120)


def test_the_agent_announces_itself_and_its_last_will_says_offline(tmp_path, store, mosquitto,
                                                                   cli_env):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port)
    gateway.append(40)  # no hub: these stay unacked and show as buffer depth
    watcher = StatusWatcher(mosquitto.port, "gw-1")
    agent = gateway.start_agent(cli_env)
    try:
        online = watcher.wait_for("online")
        assert online.buffer_depth == 40 and online.last_seq == 40 and online.version
        stop_process(agent, kill=True)
        offline = watcher.wait_for("offline")  # the broker's last will, retained
        assert offline.version == online.version
        agent = gateway.start_agent(cli_env)
        watcher.wait_for("online")
        stop_process(agent)  # a clean stop says offline itself
        assert watcher.wait_for("offline").buffer_depth == 40
    finally:
        stop_process(agent, kill=True)
        watcher.close()
    late = StatusWatcher(mosquitto.port, "gw-1")  # retained: a newcomer sees it at once
    try:
        assert late.wait_for("offline").state == "offline"
    finally:
        late.close()


@pytest.fixture
def secured_broker(tmp_path, mosquitto_factory):
    """A broker whose passwd and ACL come from the hub's broker-config, with two collectors."""
    secrets = {"meterhub": "hub-secret", "gw-1": "gw1-secret", "gw-2": "gw2-secret"}
    accounts = [BrokerAccount(user, mosquitto_password_hash(pw)) for user, pw in secrets.items()]
    passwd, acl = write_broker_config(tmp_path / "broker", accounts=accounts,
                                      collectors=["gw-1", "gw-2"], hub_username="meterhub")
    for user, secret in secrets.items():
        path = tmp_path / f"{user}.password"
        path.write_text(secret)
        path.chmod(0o600)
    return mosquitto_factory(password_file=passwd, acl_file=acl)


def test_sync_with_the_hubs_broker_credentials_and_acl(tmp_path, store, secured_broker):
    gateway = Gateway(tmp_path / "gw", store, broker_port=secured_broker.port,
                      username="gw-1", password_file=str(tmp_path / "gw-1.password"))
    gateway.append(200)
    with hub_thread(store, secured_broker.port, username="meterhub",
                    password_file=tmp_path / "meterhub.password"), gateway.sync_thread():
        wait_until(lambda: gateway.acked() == 200, 30, "reads over the secured broker")
    assert_exactly_once(store, gateway, 200)


def test_a_wrong_broker_password_is_an_alarm_and_nothing_is_lost(tmp_path, store,
                                                                 secured_broker, caplog):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-secret")
    os.chmod(wrong, 0o600)
    gateway = Gateway(tmp_path / "gw", store, broker_port=secured_broker.port,
                      username="gw-1", password_file=str(wrong))
    gateway.append(10)
    caplog.set_level(logging.ERROR, logger="edge_agent.sync")
    with gateway.sync_thread() as sync:
        wait_until(lambda: sync.stats.connects >= 2, 15, "a retry after the refusal")
    assert "broker refused the connection" in caplog.text
    assert gateway.acked() == 0


def test_a_tampered_batch_through_the_broker_is_quarantined_and_refused_in_the_ack(
        tmp_path, store, mosquitto):
    from hub.store.reads import quarantine_reasons, read_count
    from protocols.batch import encode_batch
    from protocols.mqtt_contract import Rejection, ack_topic, decode_ack, reads_topic
    from tests.test_ingest import altered, sealed_reads

    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port)
    batch = sealed_reads(gateway.signer, "gw-1", 8)
    batch[3] = altered(batch[3])
    acks: list = []
    got_ack = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tamperer")
    client.on_message = lambda _c, _u, m: (acks.append(decode_ack(m.payload)), got_ack.set())
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe(ack_topic("gw-1"), qos=1)
    client.loop_start()
    try:
        with hub_thread(store, mosquitto.port):
            client.publish(reads_topic("gw-1"), encode_batch("gw-1", batch), qos=1)
            assert got_ack.wait(10), "no ack for the tampered batch"
    finally:
        client.loop_stop()
        client.disconnect()
    assert acks[0].through_seq == 0
    assert acks[0].rejected == (Rejection(1, 8, "broken_chain"),)
    with store.connect() as conn:
        assert read_count(conn) == 0
        assert quarantine_reasons(conn) == {"broken_chain": 1}


def test_two_hub_workers_share_ingest_without_stalling_the_edge(tmp_path, store, mosquitto):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port, batch_size=100,
                      window=8, ack_timeout_s=30)
    gateway.append(6000)
    with hub_thread(store, mosquitto.port) as first, hub_thread(store, mosquitto.port) as second, \
            gateway.sync_thread() as sync:
        # far within the ack timeout: out-of-order batches must not leave the edge waiting on it
        wait_until(lambda: gateway.acked() == 6000, 20, "both workers to ingest the backlog")
    assert first.batches > 0 and second.batches > 0  # the broker shared the subscription
    assert sync.stats.rewinds <= 5
    assert_exactly_once(store, gateway, 6000)


def server_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = certificate("meterhub test CA", ca_key, "meterhub test CA", ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, "meterhub test CA", ca_key, ca=False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


def test_sync_over_tls_with_the_configured_ca_and_refused_without_it(tmp_path, store):
    ca, cert, key = server_certificate(tmp_path)
    with Mosquitto(tmp_path / "broker", tls=(cert, key)).start() as broker:
        gateway = Gateway(tmp_path / "gw", store, broker_port=broker.port, tls=True,
                          ca_file=str(ca))
        gateway.append(150)
        with hub_thread(store, broker.port, tls=True, ca_file=ca):
            with gateway.sync_thread():
                wait_until(lambda: gateway.acked() == 150, 30, "reads over TLS")
            gateway.append(10)
            with gateway.sync_thread(ca_file=None) as untrusting:  # the system CAs only
                wait_until(lambda: untrusting.stats.connect_failures >= 2, 15,
                           "the unverifiable broker to be refused twice")
                assert untrusting.stats.connects == 0
            assert gateway.acked() == 150
