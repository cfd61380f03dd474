"""`meter-sim` serves each protocol; `edge-agent read` reads each back, as a technician would."""

import json
import signal
import subprocess
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import script, start_meter_sim_fleet

START = Decimal("12345.678")
FLEET = {
    "epoch": "2026-11-01T00:00:00Z",
    "meters": [
        {"serial": "TCP1", "profile": "eastron-sdm120", "protocol": "modbus_tcp",
         "start_value": str(START)},
        {"serial": "RTU1", "profile": "carlo-gavazzi-em340", "protocol": "modbus_rtu",
         "unit_id": 7, "start_value": str(START)},
        {"serial": "IEC1", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21",
         "start_value": str(START)},
        {"serial": "P1A", "profile": "sagemcom-t210d", "protocol": "dsmr_p1",
         "gas_serial": "GAS1", "start_value": str(START)},
    ],
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("fleet")
    manifest = work / "manifest.json"
    sim = start_meter_sim_fleet(work, FLEET, manifest, "--manifest", str(manifest))
    yield {m["serial"]: m for m in json.loads(manifest.read_text())["meters"]}
    sim.send_signal(signal.SIGTERM)
    assert sim.wait(30) == 0


def edge_agent_read(cli_env, *args):
    return subprocess.run([script("edge-agent"), "read", *args], capture_output=True,
                          text=True, env=cli_env, timeout=60, check=False)


def read(meter, cli_env):
    result = edge_agent_read(
        cli_env, "--protocol", meter["protocol"], "--port", meter["endpoint"],
        "--profile", meter["profile"], "--unit-id", str(meter["unit_id"]), "--json",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("serial", ["TCP1", "RTU1", "IEC1"])
def test_each_protocol_reads_back_the_simulated_register(served, cli_env, serial):
    meter = served[serial]
    [sample] = read(meter, cli_env)
    value = Decimal(sample["values"]["energy_import_kwh"]["value"])
    assert sample["values"]["energy_import_kwh"]["unit"] == "kWh"
    # The simulator's clock started with the fleet a few seconds ago at its epoch: at
    # 12 kWh/day the register can only have moved by a few thousandths since. (The EM340
    # counts in 0.1 kWh, so it shows the start truncated to one decimal.)
    assert START - Decimal("0.1") < value <= START + Decimal("0.1"), value


def test_p1_reads_the_meter_and_its_gas_submeter(served, cli_env):
    samples = read(served["P1A"], cli_env)
    electricity, gas = samples
    assert electricity["mbus_channel"] == 0 and gas["mbus_channel"] == 1
    assert {"energy_import_kwh_t1", "energy_import_kwh_t2"} <= set(electricity["values"])
    assert gas["values"]["volume_m3"]["unit"] == "m3"
    assert electricity["meter_time"] is not None and gas["meter_time"] is not None
    meter_time = datetime.fromisoformat(electricity["meter_time"].replace("Z", "+00:00"))
    epoch = datetime.fromisoformat(served["P1A"]["epoch"])
    assert abs(meter_time - epoch) < timedelta(minutes=5)


def test_the_table_names_every_register(served, cli_env):
    meter = served["IEC1"]
    result = edge_agent_read(cli_env, "-p", "iec62056_21", "--port", meter["endpoint"],
                             "--profile", meter["profile"])
    assert result.returncode == 0, result.stderr
    assert "energy_import_kwh" in result.stdout and "1.8.0" in result.stdout


def test_a_read_of_nothing_fails_typed(cli_env, tmp_path):
    result = edge_agent_read(cli_env, "-p", "iec62056_21", "--port", str(tmp_path / "nope"),
                             "--profile", "landis-gyr-zmd310")
    assert result.returncode == 1
    assert "[link]" in result.stderr
    result = edge_agent_read(cli_env, "-p", "modbus_tcp", "--port", "127.0.0.1:1",
                             "--profile", "landis-gyr-zmd310")
    assert result.returncode == 1
    assert "speaks iec62056_21" in result.stderr
