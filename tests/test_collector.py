"""The polling collector against a simulated fleet on real sockets and ptys."""

import threading
import time
from collections import defaultdict
from decimal import Decimal

import pytest

from edge_agent.collector import Collector
from edge_agent.config import AgentConfig
from edge_agent.meter_plan import plan_meters
from simulators.fleet import FleetFile, start_fleet

FLEET = {
    "speed": 60,
    "meters": [
        {"serial": "TCP1", "profile": "eastron-sdm120", "protocol": "modbus_tcp"},
        {"serial": "RTU1", "profile": "eastron-sdm120", "protocol": "modbus_rtu",
         "bus": "rs485-a", "unit_id": 1},
        {"serial": "RTU2", "profile": "carlo-gavazzi-em340", "protocol": "modbus_rtu",
         "bus": "rs485-a", "unit_id": 2},
        {"serial": "IEC1", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21"},
        {"serial": "P1A", "profile": "sagemcom-t210d", "protocol": "dsmr_p1",
         "gas_serial": "GAS1", "interval_s": 0.5},
    ],
}


class Sink:
    """Collects what the collector hands on, by meter."""

    def __init__(self):
        self.reads = defaultdict(list)
        self.lock = threading.Lock()

    def __call__(self, readings):
        with self.lock:
            for reading in readings:
                self.reads[reading.meter].append(reading)

    def count(self, meter):
        with self.lock:
            return len(self.reads[meter])


def agent_config(fleet, **collection):
    import tomllib

    sections = tomllib.loads(fleet.agent_sections(interval_s=0.2))
    return AgentConfig.model_validate({
        "collector": "gw-test",
        "collection": {"retries": 0, "retry_backoff_s": 0.05, **collection},
        **sections,
    })


def run_until(collector, done, timeout=30):
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "collector did not stop"


@pytest.fixture
def fleet():
    with start_fleet(FleetFile.model_validate(FLEET)) as running:
        yield running


def test_every_protocol_is_polled_into_reads(fleet):
    config = agent_config(fleet)
    sink = Sink()
    collector = Collector(plan_meters(config), collection=config.collection, sink=sink)
    meters = ["TCP1", "RTU1", "RTU2", "IEC1", "P1A", "GAS1"]
    run_until(collector, lambda: all(sink.count(m) >= 2 for m in meters))
    for meter in meters:
        assert sink.count(meter) >= 2, f"{meter} was not read twice"
    tcp = sink.reads["TCP1"][-1]
    assert set(tcp.values) >= {"energy_import_kwh", "voltage_l1_v"}
    assert tcp.clock.meter_offset_s is None and tcp.read_at == tcp.collected_at
    iec = sink.reads["IEC1"][-1]
    assert iec.clock.meter_offset_s is not None
    assert abs(iec.clock.meter_offset_s) < 5
    gas = sink.reads["GAS1"][-1]
    assert gas.values["volume_m3"].unit == "m3"
    assert gas.read_at <= gas.collected_at
    for health in collector.health.snapshot():
        assert health.healthy, health


def test_register_values_follow_the_simulated_meter(fleet):
    config = agent_config(fleet)
    sink = Sink()
    collector = Collector(plan_meters(config), collection=config.collection, sink=sink)
    run_until(collector, lambda: sink.count("RTU2") >= 1 and sink.count("IEC1") >= 1)
    for serial in ("RTU2", "IEC1"):
        read = sink.reads[serial][0]
        face = fleet.meter(serial).faceplate
        at = face.at_wall(read.collected_at.timestamp())  # simulated time of the poll
        shown = read.values["energy_import_kwh"].value
        expected = face.value("energy_import_kwh", "kWh", at)
        assert abs(shown - expected) <= Decimal("0.1"), (serial, shown, expected)


def test_faulty_meters_fail_typed_while_healthy_ones_keep_polling():
    fleet_file = FleetFile.model_validate({"speed": 60, "meters": [
        {"serial": "OK1", "profile": "eastron-sdm120", "protocol": "modbus_tcp"},
        {"serial": "MUTE", "profile": "eastron-sdm120", "protocol": "modbus_tcp",
         "faults": ["no_answer"]},
        {"serial": "NOISY", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21",
         "faults": ["garbled"]},
        {"serial": "OK2", "profile": "eastron-sdm120", "protocol": "modbus_rtu",
         "bus": "b", "unit_id": 1},
        {"serial": "MUTE2", "profile": "eastron-sdm120", "protocol": "modbus_rtu",
         "bus": "b", "unit_id": 2, "faults": ["no_answer"]},
    ]})
    with start_fleet(fleet_file) as fleet:
        config = agent_config(fleet)
        sink = Sink()
        collector = Collector(plan_meters(config), collection=config.collection, sink=sink)
        run_until(collector, lambda: sink.count("OK2") >= 4 and sink.count("OK1") >= 4
                  and _failures(collector, "MUTE2") >= 2 and _failures(collector, "NOISY") >= 2)
    health = {h.serial: h for h in collector.health.snapshot()}
    assert sink.count("OK1") >= 4 and sink.count("OK2") >= 4
    assert sink.count("MUTE") == sink.count("MUTE2") == sink.count("NOISY") == 0
    assert set(health["MUTE"].failures_by_kind) == {"no_response"}
    assert set(health["MUTE2"].failures_by_kind) == {"no_response"}
    assert set(health["NOISY"].failures_by_kind) <= {"checksum", "frame"}
    assert health["OK1"].healthy and health["OK2"].healthy


def _failures(collector, serial):
    return next(h.failures for h in collector.health.snapshot() if h.serial == serial)


@pytest.mark.parametrize(("fault", "flag"), [
    ("tamper", "tamper"), ("clock_skew", "clock_skew"), ("backward", "backward"),
    ("spike", "spike"),
])
def test_value_faults_become_flagged_reads(fault, flag):
    fleet_file = FleetFile.model_validate({"speed": 60, "meters": [
        {"serial": "IEC1", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21"},
    ]})
    with start_fleet(fleet_file) as fleet:
        config = agent_config(fleet)
        sink = Sink()
        collector = Collector(plan_meters(config), collection=config.collection, sink=sink)
        stop_after = {"armed": False}

        def done():
            if not stop_after["armed"] and sink.count("IEC1") >= 1:
                fleet.meter("IEC1").faults.set(fault)
                stop_after["armed"] = True
            return any(_has(r, flag) for r in sink.reads["IEC1"])

        run_until(collector, done)
    flagged = [r for r in sink.reads["IEC1"] if _has(r, flag)]
    assert flagged, f"{fault} never showed as the flag {flag}"
    assert not _has(sink.reads["IEC1"][0], flag), "flagged before the fault came on"


def _has(read, flag):
    """The flag itself, or a meter's more specific one (ZMD310: tamper_terminal_cover)."""
    return any(f == flag or f.startswith(f"{flag}_") for f in read.flags)
