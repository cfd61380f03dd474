"""Re-read routes: limits from history, the route of missing meters, delivery to a handheld."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from hub.reconcile import Reconciliation
from hub.reread import HistoryRead, StopDetails, build_reread_route, limits_for
from hub.reread_store import PublishError, build_from_store, publish_route
from hub.verifier import BackgroundVerifier
from protocols.broker_settings import BrokerSettings
from protocols.mqtt_contract import routes_topic
from protocols.route_message import Route, decode_route
from tests.readings import T0, reading
from tests.sync_harness import Gateway, hub_thread, wait_until
from tests.test_reconcile import CYCLE, at, installed, read, seed_cycle
from tests.test_reconcile import one as reconcile_one

SCHEDULED = datetime(2026, 11, 23, tzinfo=UTC)


def history(*points: tuple[int, str]) -> list[HistoryRead]:
    """(days before the scheduled date, value) pairs."""
    return [HistoryRead(SCHEDULED - timedelta(days=d), Decimal(v)) for d, v in points]


def test_limits_run_from_the_previous_read_to_three_times_the_expected_use():
    previous, limits = limits_for(history((40, "1000.0"), (10, "1300.0")), SCHEDULED, "kWh", 6)
    assert previous.value == Decimal("1300.0")
    assert previous.read_at == SCHEDULED - timedelta(days=10)
    # 10 kWh/day over 30 days, 10 days ahead: expected 100, high = previous + 300 ...
    # ... but never less than 50 kWh a day of headroom: 500
    assert limits.low == Decimal("1300.0") and limits.high == Decimal("1800.0")
    _, busy = limits_for(history((40, "0"), (10, "6000")), SCHEDULED, "kWh", 6)
    assert busy.high == Decimal("12000")  # 200 kWh/day × 10 days × 3


def test_a_meter_without_history_gets_no_limits_and_one_read_gets_the_floor():
    assert limits_for([], SCHEDULED, "kWh", 6) == (None, None)
    _, limits = limits_for(history((5, "12.340")), SCHEDULED, "m3", 5)
    assert (limits.low, limits.high) == (Decimal("12.340"), Decimal("22.340"))  # 2 m3/day × 5


def test_the_high_limit_stays_below_the_dial_count():
    _, limits = limits_for(history((40, "90000"), (10, "99000")), SCHEDULED, "kWh", 5)
    assert limits.high == Decimal("99999")


@given(st.lists(st.tuples(st.integers(0, 400), st.decimals(0, 10**6, places=3)),
                min_size=1, max_size=8, unique_by=lambda p: p[0]),
       st.sampled_from(["kWh", "m3", "ft3"]))
def test_limits_always_admit_the_previous_read_and_stay_ordered(points, unit):
    reads = [HistoryRead(SCHEDULED - timedelta(days=d, hours=1), v) for d, v in points]
    previous, limits = limits_for(reads, SCHEDULED, unit, 9)
    assert previous.value == max(reads, key=lambda r: r.read_at).value
    assert limits.low == previous.value <= limits.high < Decimal(10) ** 9
    assert limits.admits(previous.value)


def details(meter: str, **changes) -> StopDetails:
    base = {"account": f"A-{meter}", "address": "1 Main St", "service": "electric",
            "unit": "kWh", "dials": 6, "profile": None, "location_notes": "",
            "hazards": "", "latitude": None, "longitude": None}
    return StopDetails(**{**base, **changes})


def test_the_route_holds_only_missing_meters_in_walk_order():
    results = [reconcile_one(m, [installed(m)], reads, CYCLE) for m, reads in
               (("M1", []), ("M2", [read("M2", at(23))]), ("M3", []))]
    reconciliation = Reconciliation("C1", tuple(
        replace(r, sequence=n) for n, r in enumerate(results, 1)))
    route = build_reread_route(
        reconciliation, {m: details(m, hazards="dog" if m == "M3" else "") for m in
                         ("M1", "M3")},
        {"M3": history((20, "5.0"))}, scheduled=SCHEDULED, collector="hh-01",
        route_id="C1-reread", issued_at=SCHEDULED)
    assert [(s.sequence, s.meter) for s in route.stops] == [(1, "M1"), (2, "M3")]
    assert route.stops[0].previous is None and route.stops[0].limits is None
    assert route.stops[1].previous.value == Decimal("5.0") and route.stops[1].hazards == "dog"
    assert route.stops[1].location_notes == "route R1 #3"
    assert route.stops[1].register == "energy_import_kwh"


# --- from the store to a handheld over a real broker -------------------------------------


def receive_route(port: int, collector: str, timeout: float = 10) -> Route:
    """Connect as a late subscriber: the retained route must be there."""
    got: list[bytes] = []
    arrived = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"handheld-{collector}")
    client.on_message = lambda _c, _u, m: (got.append(m.payload), arrived.set())
    client.on_connect = lambda c, *_: c.subscribe(routes_topic(collector), qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert arrived.wait(timeout), "no retained route on the handheld's topic"
    finally:
        client.loop_stop()
        client.disconnect()
    return decode_route(got[-1])


def test_a_reread_route_from_synced_reads_reaches_the_handheld(tmp_path, store, mosquitto):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port)
    earlier = T0 - timedelta(days=40)
    with gateway.buffer() as buffer:  # E3 has history before the window, E1 is read in it
        buffer.append([
            replace(reading(0, meter="E3"), read_at=earlier, collected_at=earlier),
            reading(0, meter="E1"),
        ])
    with hub_thread(store, mosquitto.port), gateway.sync_thread():
        wait_until(lambda: gateway.acked() == 2, 20, "the reads to be stored")
    BackgroundVerifier(store, processes=1).verify_pending()
    seed_cycle(store, ["E1", "E2", "E3"])
    with store.connect() as conn:
        route, result = build_from_store(conn, "C1", "hh-01", UTC, now=T0)
    assert [m.status.value for m in result.meters] == ["read", "missing", "missing"]
    assert [s.meter for s in route.stops] == ["E2", "E3"]
    assert route.stops[0].hazards == "dog" and route.stops[0].address == "2 Main St"
    assert route.stops[1].previous.read_at == earlier.replace(microsecond=0)
    assert route.stops[1].limits.low == route.stops[1].previous.value
    publish_route(route, BrokerSettings(port=mosquitto.port))
    delivered = receive_route(mosquitto.port, "hh-01")
    assert delivered.route_id == route.route_id
    assert [s.meter for s in delivered.stops] == ["E2", "E3"]
    assert delivered.stops[1].limits == route.stops[1].limits


def test_publishing_to_a_broker_that_is_not_there_is_a_clear_error():
    from simulators.private_broker import free_port

    route = Route("r", "C1", "hh-01", SCHEDULED, ())
    with pytest.raises(PublishError, match="cannot reach broker"):
        publish_route(route, BrokerSettings(port=free_port()))
