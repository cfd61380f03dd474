"""Buses and meters in the agent's config: every mistake caught at load, by key."""

import pytest

from edge_agent.config import ConfigError, load_config
from edge_agent.meter_plan import plan_meters
from protocols.channels import Protocol

GOOD = '''
collector = "gw-0001"

[collection]
default_interval_s = 60

[[bus]]
name = "rs485-a"
protocol = "modbus_rtu"
port = "/dev/ttyUSB0"
baudrate = 9600

[[bus]]
name = "probe"
protocol = "iec62056_21"
port = "/dev/ttyUSB1"

[[meter]]
serial = "E1001"
profile = "eastron-sdm120"
bus = "rs485-a"
unit_id = 1
interval_s = 900

[[meter]]
serial = "E1002"
model = "SDM630"
firmware = "1.0"
bus = "rs485-a"
unit_id = 2

[[meter]]
serial = "E2001"
profile = "abb-b23"
host = "10.0.0.7"

[[meter]]
serial = "L3001"
profile = "landis-gyr-zmd310"
bus = "probe"
'''


def load(tmp_path, text):
    path = tmp_path / "edge-agent.toml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_a_gateway_config_plans_every_meter(tmp_path):
    plans = {plan.serial: plan for plan in plan_meters(load(tmp_path, GOOD))}
    assert plans["E1001"].protocol is Protocol.MODBUS_RTU
    assert plans["E1001"].interval_s == 900
    assert plans["E1002"].profile.model.upper() == "SDM630"
    assert plans["E1002"].interval_s == 60
    assert plans["E2001"].protocol is Protocol.MODBUS_TCP
    assert plans["E2001"].lane == "tcp:10.0.0.7:502"
    assert plans["L3001"].protocol is Protocol.IEC62056_21
    assert plans["E1001"].lane == plans["E1002"].lane == "bus:rs485-a"


def test_an_unknown_profile_and_a_wrong_protocol_are_named(tmp_path):
    text = GOOD.replace('"eastron-sdm120"', '"eastron-sdm12"').replace(
        'profile = "landis-gyr-zmd310"', 'profile = "eastron-sdm630"')
    found = dict(problems(tmp_path, text))
    assert "meter[0].profile" in found
    assert "eastron-sdm12" in found["meter[0].profile"]
    assert "speaks modbus" in found["meter[3].profile"]


def test_unknown_bus_duplicate_serial_and_shared_address(tmp_path):
    text = GOOD.replace('bus = "probe"', 'bus = "nowhere"').replace(
        'serial = "E1002"', 'serial = "E1001"').replace("unit_id = 2", "unit_id = 1")
    found = problems(tmp_path, text)
    keys = [key for key, _ in found]
    assert "meter[3].bus" in keys
    assert any("'E1001' is used 2 times" in why for _, why in found)
    assert any("share address 1 on bus:rs485-a" in why for _, why in found)


def test_a_meter_needs_one_place_and_one_profile(tmp_path):
    text = GOOD + '\n[[meter]]\nserial = "X1"\nprofile = "abb-b23"\nbus = "rs485-a"\nhost = "h"\n'
    found = problems(tmp_path, text)
    assert any(key.startswith("meter.4") and "exactly one of bus" in why for key, why in found)
    text = GOOD + '\n[[meter]]\nserial = "X1"\nmodel = "B23"\nhost = "h"\n'
    assert any("model needs firmware" in why for _, why in problems(tmp_path, text))


def test_no_profile_for_this_firmware_says_what_exists(tmp_path):
    text = GOOD.replace('firmware = "1.0"', 'firmware = "0.1"')
    found = dict(problems(tmp_path, text))
    assert "meter[1].model" in found


def test_a_config_without_meters_is_still_valid(tmp_path):
    assert plan_meters(load(tmp_path, 'collector = "gw-0001"\n')) == []


def test_meters_on_one_rs485_line_must_agree_on_its_settings(tmp_path):
    mixed = GOOD.replace("baudrate = 9600\n", "")  # SDM120 defaults to 2400 baud, SDM630 to 9600
    found = dict(problems(tmp_path, mixed))
    why = found["bus[0]"]
    assert "E1001 (eastron-sdm120): 2400 8N1" in why
    assert "E1002 (eastron-sdm630" in why and "9600 8N1" in why
    assert "set baudrate" in why
    assert plan_meters(load(tmp_path, GOOD))  # the bus's own baudrate settles it


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "../etc/passwd", ""])
def test_an_unknown_meter_time_zone_is_a_load_error(tmp_path, zone):
    text = GOOD.replace('port = "/dev/ttyUSB1"\n', f'port = "/dev/ttyUSB1"\ntimezone = "{zone}"\n')
    found = problems(tmp_path, text)
    assert any(key.startswith("bus.1.timezone") and "unknown time zone" in why
               for key, why in found), found


def test_a_known_meter_time_zone_loads(tmp_path):
    text = GOOD.replace('port = "/dev/ttyUSB1"\n',
                        'port = "/dev/ttyUSB1"\ntimezone = "Europe/Vienna"\n')
    assert load(tmp_path, text).buses["probe"].timezone == "Europe/Vienna"
