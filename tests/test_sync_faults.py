"""Sync under faults, with real processes, a real broker and a real store.

Each test ends the same way (:func:`assert_exactly_once`): every read the
gateway buffered is stored once, byte for byte, in one unbroken chain, and
the gateway holds nothing unacked.
"""

from __future__ import annotations

import random
import time

import pytest

from hub.ingest import Ingestor
from tests.sync_harness import (
    Gateway,
    assert_exactly_once,
    hub_thread,
    start_hub_process,
    stop_process,
    wait_until,
)
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow


def test_kill_9_of_the_agent_mid_sync_loses_and_duplicates_nothing(tmp_path, store, mosquitto,
                                                                   cli_env):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port, batch_size=40,
                      window=3)
    total = gateway.append(12_000)
    rng = random.Random(20261123)
    kills_mid_sync = 0
    with hub_thread(store, mosquitto.port):
        for _ in range(22):
            before = gateway.acked()
            agent = gateway.start_agent(cli_env)
            wait_until(lambda b=before, t=total: gateway.acked() > b or gateway.acked() == t, 30,
                       "the agent to make progress")
            time.sleep(rng.uniform(0, 0.25))
            stop_process(agent, kill=True)
            kills_mid_sync += gateway.acked() < total
            total = gateway.append(rng.randint(0, 150))  # the meters kept being read
        agent = gateway.start_agent(cli_env)
        try:
            wait_until(lambda: gateway.acked() == total, 60, "the rest to be acked")
        finally:
            stop_process(agent)
    assert kills_mid_sync >= 20, f"only {kills_mid_sync} kills landed mid-sync"
    assert_exactly_once(store, gateway, total)


def test_a_broker_restart_mid_sync(tmp_path, store, mosquitto_factory):
    broker = mosquitto_factory()
    gateway = Gateway(tmp_path / "gw", store, broker_port=broker.port, batch_size=50)
    total = gateway.append(6000)
    with hub_thread(store, broker.port), gateway.sync_thread():
        wait_until(lambda: gateway.acked() > 500, 30, "sync to be under way")
        broker.stop()
        total = gateway.append(300)  # buffered while the broker is down
        time.sleep(2)
        broker.start()
        wait_until(lambda: gateway.acked() == total, 60, "sync to finish after the restart")
    assert_exactly_once(store, gateway, total)


def test_a_hub_killed_mid_batch_and_restarted(tmp_path, store, store_url, mosquitto, cli_env):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port, batch_size=200,
                      ack_timeout_s=2.0)
    total = gateway.append(20_000)
    hub = start_hub_process(store_url, mosquitto.port, cli_env, tmp_path / "hub.log")
    try:
        with gateway.sync_thread():
            wait_until(lambda: gateway.acked() > 2000, 60, "ingest to be under way")
            stop_process(hub, kill=True)
            time.sleep(0.5)  # an ack the hub published just before it died may still land
            acked_at_kill = gateway.acked()
            time.sleep(1.5)
            assert gateway.acked() == acked_at_kill  # nobody acks while the hub is dead
            hub = start_hub_process(store_url, mosquitto.port, cli_env, tmp_path / "hub.log")
            wait_until(lambda: gateway.acked() == total, 90, "the restarted hub to catch up")
    finally:
        stop_process(hub)
    assert acked_at_kill < total
    assert_exactly_once(store, gateway, total)


def test_a_30_second_network_partition(tmp_path, store, mosquitto):
    with TcpProxy("127.0.0.1", mosquitto.port).start() as proxy:
        gateway = Gateway(tmp_path / "gw", store, broker_port=proxy.port, batch_size=50,
                          keepalive_s=5)
        total = gateway.append(3000)
        with hub_thread(store, mosquitto.port), gateway.sync_thread() as sync:
            wait_until(lambda: gateway.acked() > 300, 30, "sync to be under way")
            proxy.partition()
            cut_at = time.monotonic()
            connects = sync.stats.connects
            time.sleep(3)
            stalled = gateway.acked()
            while time.monotonic() - cut_at < 30:
                total = gateway.append(50)  # polling goes on while the link is down
                time.sleep(1)
            assert gateway.acked() == stalled, "acks arrived through a partitioned link"
            assert stalled < total
            proxy.heal()
            wait_until(lambda: gateway.acked() == total, 60, "sync to resume after the partition")
            assert sync.stats.connects > connects  # the dead link was noticed and replaced
    assert_exactly_once(store, gateway, total)


def test_a_store_outage_longer_than_the_brokers_window_does_not_stall_ingest(
        tmp_path, store, mosquitto_factory, monkeypatch):
    """Batches whose ingest failed are released at the broker (the edge resends them): left
    unacknowledged, two would fill this broker's in-flight window and stop ingest for good."""
    broker = mosquitto_factory(max_inflight=2)
    gateway = Gateway(tmp_path / "gw", store, broker_port=broker.port, batch_size=20,
                      window=4, ack_timeout_s=1.0)
    total = gateway.append(400)
    real = Ingestor.ingest_group
    outage = {"groups": 0}

    def store_down_at_first(self, messages):
        if outage["groups"] < 6:  # more failed batches than the window holds
            outage["groups"] += 1
            return [None] * len(messages)
        return real(self, messages)

    monkeypatch.setattr(Ingestor, "ingest_group", store_down_at_first)
    with hub_thread(store, broker.port), gateway.sync_thread():
        wait_until(lambda: outage["groups"] == 6, 30, "the outage to swallow six groups")
        wait_until(lambda: gateway.acked() == total, 60, "ingest to resume after the outage")
    assert_exactly_once(store, gateway, total)
