"""A faulty fleet polled for a minute by the real agent: every fault shows, nothing stops.

The issue's acceptance run: `meter-sim fleet` serves healthy and faulty meters of
every protocol; `edge-agent run` polls them for a minute. Every line fault must
show as a typed, logged error and every value fault as a flagged read, while
the healthy meters keep being read and every read lands signed in the buffer.
"""

import json
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict

import pytest

from edge_agent.keys import generate_key_file
from tests.conftest import script, start_meter_sim_fleet

pytestmark = pytest.mark.slow

RUN_S = 60
HEALTHY = ["OK_TCP", "OK_RTU1", "OK_RTU2", "OK_IEC", "OK_P1", "G1"]
FLEET = {"speed": 60, "meters": [
    {"serial": "OK_TCP", "profile": "eastron-sdm630", "protocol": "modbus_tcp"},
    {"serial": "OK_RTU1", "profile": "eastron-sdm120", "protocol": "modbus_rtu",
     "bus": "a", "unit_id": 1},
    {"serial": "OK_RTU2", "profile": "abb-b23", "protocol": "modbus_rtu",
     "bus": "a", "unit_id": 2},
    {"serial": "OK_IEC", "profile": "iskra-mt174", "protocol": "iec62056_21"},
    {"serial": "OK_P1", "profile": "sagemcom-t210d", "protocol": "dsmr_p1", "gas_serial": "G1"},
    {"serial": "MUTE", "profile": "eastron-sdm120", "protocol": "modbus_tcp",
     "faults": ["no_answer"]},
    {"serial": "SLOW", "profile": "eastron-sdm120", "protocol": "modbus_rtu", "bus": "b",
     "unit_id": 3, "faults": ["slow_answer"], "slow_s": 3},
    {"serial": "NOISY_IEC", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21",
     "faults": ["garbled"]},
    {"serial": "NOISY_P1", "profile": "kaifa-ma105", "protocol": "dsmr_p1",
     "dsmr_version": "4.2", "interval_s": 1, "faults": ["garbled"]},
    {"serial": "ROLL", "profile": "carlo-gavazzi-em340", "protocol": "modbus_tcp",
     "faults": ["rollover"]},
    {"serial": "BACK", "profile": "eastron-sdm120", "protocol": "modbus_tcp",
     "faults": ["backward"], "fault_after_s": 10},
    {"serial": "STUCK", "profile": "schneider-iem3255", "protocol": "modbus_tcp",
     "faults": ["stuck"]},
    {"serial": "SPIKE", "profile": "eastron-sdm630", "protocol": "modbus_tcp",
     "faults": ["spike"], "fault_after_s": 10},
    {"serial": "TAMPER", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21",
     "faults": ["tamper"]},
    {"serial": "SKEW", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21",
     "faults": ["clock_skew"]},
]}
LINE_FAULTS = {"MUTE": {"no_response"}, "SLOW": {"no_response", "checksum", "frame"},
               "NOISY_IEC": {"checksum", "frame"}, "NOISY_P1": {"checksum", "frame"}}
VALUE_FAULTS = {"ROLL": "rollover", "BACK": "backward", "STUCK": "stuck", "SPIKE": "spike",
                "TAMPER": "tamper", "SKEW": "clock_skew"}


def buffered_reads(buffer):
    with sqlite3.connect(buffer) as db:
        rows = db.execute("SELECT data FROM reads ORDER BY seq").fetchall()
    reads = defaultdict(list)
    for (data,) in rows:
        read = json.loads(data)
        reads[read["meter"]].append(read)
    return reads


@pytest.fixture(scope="module")
def minute(tmp_path_factory):
    work = tmp_path_factory.mktemp("minute")
    sections = work / "meters.toml"
    sim = start_meter_sim_fleet(work, FLEET, sections, "--agent-config", str(sections),
                                "--poll-interval", "1")
    try:
        generate_key_file(work / "collector.key")
        meters = sections.read_text().replace(
            'serial = "STUCK"', 'serial = "STUCK"\nstuck_after_s = 5')
        (work / "edge-agent.toml").write_text(
            'collector = "gw-minute"\n[collection]\nretries = 1\nretry_backoff_s = 0.2\n'
            + meters)
        agent = subprocess.Popen([script("edge-agent"), "--log-level", "info", "run", "-c",
                                  work / "edge-agent.toml"], stderr=subprocess.PIPE, text=True)
        time.sleep(RUN_S)
        status = subprocess.run([script("edge-agent"), "status", "-c", work / "edge-agent.toml"],
                                capture_output=True, text=True, env={"COLUMNS": "250"},
                                check=False)
        agent.send_signal(signal.SIGTERM)
        _, log = agent.communicate(timeout=60)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    verify = subprocess.run([script("edge-agent"), "buffer", "verify", "-c",
                             work / "edge-agent.toml"], capture_output=True, text=True,
                            check=False)
    return {"returncode": agent.returncode, "log": log, "status": status,
            "verify": verify, "reads": buffered_reads(work / "buffer.sqlite")}


def test_the_agent_ran_the_minute_and_stopped_cleanly(minute):
    assert minute["returncode"] == 0, minute["log"][-3000:]
    assert "Traceback" not in minute["log"]
    assert minute["verify"].returncode == 0, minute["verify"].stderr


@pytest.mark.parametrize("serial", HEALTHY)
def test_healthy_meters_keep_being_read(minute, serial):
    assert len(minute["reads"][serial]) >= 15, f"{serial}: {len(minute['reads'][serial])} reads"


@pytest.mark.parametrize(("serial", "kinds"), LINE_FAULTS.items())
def test_line_faults_are_typed_logged_errors(minute, serial, kinds):
    logged = [line for line in minute["log"].splitlines() if f"meter {serial}:" in line]
    assert logged, f"no error logged for {serial}"
    seen = {kind for line in logged for kind in kinds if f"[{kind}]" in line}
    assert seen, logged[:3]
    assert len(minute["reads"][serial]) == 0


@pytest.mark.parametrize(("serial", "flag"), VALUE_FAULTS.items())
def test_value_faults_are_flagged_reads(minute, serial, flag):
    reads = minute["reads"][serial]
    assert reads, f"{serial} was never read"
    flagged = [r for r in reads if any(f == flag or f.startswith(f"{flag}_")
                                       for f in r["flags"])]
    assert flagged, f"{serial}: no read flagged {flag}; flags seen: " \
        f"{sorted({f for r in reads for f in r['flags']})}"


def test_status_shows_which_meters_fail(minute):
    status = minute["status"]
    assert status.returncode == 0, status.stderr
    for serial in ("MUTE", "NOISY_IEC", "OK_TCP"):
        assert serial in status.stdout
    assert "no_response" in status.stdout
