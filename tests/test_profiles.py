"""Firmware profiles: the bundled maps, validation with exact key paths, extends, selection."""

import os
import random
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols.driver
from firmware_profiles import (
    BUNDLED_DIR,
    PROFILE_PATH_ENV,
    Profile,
    ProfileError,
    ProfileLibrary,
    ProfileNotFound,
    ProfileValidationError,
    default_library,
    get_profile,
    load_profile_file,
    select_profile,
)
from protocols.channels import (
    ByteOrder,
    DataType,
    ModbusChannel,
    ObisChannel,
    Role,
)
from protocols.read import FLAG_RE, OBIS_RE, REGISTER_RE, UNIT_RE

REQUIRED_IDS = {
    "eastron-sdm120", "eastron-sdm630", "eastron-sdm630-v2", "carlo-gavazzi-em340", "abb-b23",
    "schneider-iem3255", "landis-gyr-zmd310", "iskra-mt174", "sagemcom-t210d", "kaifa-ma105",
}

MODBUS_PROFILE = """\
id: {id}
manufacturer: Acme
model: {model}
firmware: {{min: "1.0", max: null}}
protocol: modbus
service: electric
source: test fixture
modbus: {{function: 4, data_type: float32}}
channels:
  energy_import_kwh: {{address: 0x0048, unit: kWh}}
  voltage_l1_v: {{address: 0x0000, unit: V}}
"""


@pytest.fixture(scope="module")
def library():
    return ProfileLibrary.load([])


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, library: ProfileLibrary | None = None) -> list[tuple[str, str]]:
    _, errors = (library or ProfileLibrary.load([])).check_files([path])
    assert len(errors) == 1, "expected the file to be invalid"
    assert errors[0].path == path
    return errors[0].problems


def modbus_profile(name="acme-m1", model="M1", extra_channels="", extra=""):
    return MODBUS_PROFILE.format(id=name, model=model) + extra_channels + extra


# --- the bundled profiles -------------------------------------------------------------


def test_every_bundled_profile_loads_and_passes_check(library):
    assert library.check() == []
    ids = {profile.id for profile in library.all()}
    assert ids >= REQUIRED_IDS
    assert len({p.model for p in library.all()}) >= 9
    assert [p.id for p in library.all()] == sorted(ids)
    assert {path.stem for path in BUNDLED_DIR.glob("*.yaml")} == ids


def test_bundled_profiles_name_their_source_and_use_canonical_names(library):
    for profile in library.all():
        assert profile.source.strip(), profile.id
        assert profile.path.parent == BUNDLED_DIR
        assert profile.id == profile.path.stem
        for channel in profile.channels:
            assert REGISTER_RE.fullmatch(channel.name)
            if channel.role is Role.VALUE:
                assert UNIT_RE.fullmatch(channel.unit), (profile.id, channel.name)
            if channel.obis is not None:
                assert OBIS_RE.fullmatch(channel.obis), (profile.id, channel.name)
            assert all(FLAG_RE.fullmatch(flag) for flag in channel.flags.values())
            kind = ModbusChannel if profile.protocol == "modbus" else ObisChannel
            assert isinstance(channel, kind)


def test_sdm120_is_float32_input_registers_at_the_documented_addresses(library):
    profile = library.get("eastron-sdm120")
    expected = {
        "voltage_l1_v": 0x0000, "current_l1_a": 0x0006, "active_power_w": 0x000C,
        "frequency_hz": 0x0046, "energy_import_kwh": 0x0048, "energy_export_kwh": 0x004A,
        "demand_w": 0x0054,
    }
    for name, address in expected.items():
        channel = profile.channel(name)
        assert (channel.address, channel.function, channel.data_type) == (
            address, 4, DataType.FLOAT32)
    assert profile.channel("active_power_w").unit == "W"
    assert profile.channel("energy_import_kwh").obis == "1-0:1.8.0"
    assert profile.serial.baudrate == 2400
    assert profile.modbus.max_gap == 0


def test_sdm630_and_its_firmware_variant(library):
    base, variant = library.get("eastron-sdm630"), library.get("eastron-sdm630-v2")
    assert [base.channel(f"voltage_l{n}_v").address for n in (1, 2, 3)] == [0, 2, 4]
    assert variant.extends == "eastron-sdm630"
    assert variant.model == base.model and variant.protocol == base.protocol
    assert set(base.channel_names) < set(variant.channel_names)
    assert variant.channel("energy_import_kwh_l1").address == 0x015A
    variant_text = (BUNDLED_DIR / "eastron-sdm630-v2.yaml").read_text()
    assert "voltage_l1_v" not in variant_text


def test_em340_reads_int32_least_significant_word_first(library):
    channel = library.get("carlo-gavazzi-em340").channel("energy_import_kwh")
    assert (channel.address, channel.data_type, channel.word_order, channel.scale) == (
        0x0034, DataType.INT32, ByteOrder.LITTLE, Decimal("0.1"))


def test_abb_b23_energy_is_uint64_hundredths_in_holding_registers(library):
    profile = library.get("abb-b23")
    for name, address in (("energy_import_kwh", 0x5000), ("energy_export_kwh", 0x5004)):
        channel = profile.channel(name)
        assert (channel.address, channel.function, channel.data_type, channel.scale) == (
            address, 3, DataType.UINT64, Decimal("0.01"))
    assert profile.channel("voltage_l1_v").address == 0x5B00


def test_schneider_addresses_are_register_numbers_minus_one(library):
    channel = library.get("schneider-iem3255").channel("energy_import_wh")
    assert (channel.address, channel.data_type, channel.unit) == (0x0C83, DataType.INT64, "Wh")


def test_optical_meters_have_their_clock_and_demand_sets(library):
    zmd = library.get("landis-gyr-zmd310")
    assert zmd.iec.max_baud == 4800 and zmd.serial.parity == "E"
    roles = {c.code: c.role for c in zmd.obis_channels}
    assert roles["0.9.1"] is Role.CLOCK_TIME and roles["0.9.2"] is Role.CLOCK_DATE
    assert roles["F.F"] is Role.STATUS and zmd.channel("meter_status").flags
    assert zmd.channel("demand_kw").code == "1.6.0"
    assert zmd.channel("energy_import_kwh").obis == "1-0:1.8.0"
    assert library.get("iskra-mt174").iec.reaction_s == 0.02


def test_dsmr_meters_read_gas_on_mbus_channel_one(library):
    for profile_id in ("sagemcom-t210d", "kaifa-ma105"):
        profile = library.get(profile_id)
        assert profile.serial.baudrate == 115200
        gas = {c.name: c for c in profile.obis_channels if c.mbus_channel == 1}
        assert (gas["volume_m3"].code, gas["volume_m3"].group, gas["volume_m3"].unit) == (
            "0-1:24.2.1", 1, "m3")
        assert gas["gas_capture_time"].role is Role.CLOCK and gas["gas_capture_time"].group == 0
        assert gas["gas_meter_id"].role is Role.IDENTITY
        assert profile.channel("energy_import_kwh_t1").code == "1-0:1.8.1"
        assert profile.channel("meter_time").role is Role.CLOCK


def test_a_modbus_water_meter_reports_volume_flow_and_alarms(library):
    water = [p for p in library.all() if p.service == "water" and p.protocol == "modbus"]
    assert water
    profile = water[0]
    assert profile.channel("volume_m3").unit == "m3"
    assert profile.channel("flow_m3h").unit == "m3/h"
    status = [c for c in profile.channels if c.role is Role.STATUS]
    assert status and "leak" in status[0].flags.values()
    assert [c.name for c in profile.value_channels] == [
        c.name for c in profile.channels if c.role is Role.VALUE]
    assert status[0] not in profile.value_channels


# --- validation: each problem with its key path --------------------------------------------

CASES = {
    "unknown top-level key": (modbus_profile(extra="colour: red\n"), "colour", "unknown key"),
    "unknown channel key": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: A, colour: red}\n"),
        "channels.current_l1_a.colour", "unknown key"),
    "wrong type": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: A, type: float33}\n"),
        "channels.current_l1_a.type", "float33"),
    "wrong value type": (modbus_profile().replace("manufacturer: Acme", "manufacturer: [1]"),
                         "manufacturer", "string"),
    "bad canonical name": (
        modbus_profile(extra_channels="  Current-L1: {address: 6, unit: A}\n"),
        "channels.Current-L1", "canonical register name"),
    "address out of range": (
        modbus_profile(extra_channels="  current_l1_a: {address: 70000, unit: A}\n"),
        "channels.current_l1_a.address", "outside 0..65535"),
    "address runs past the end": (
        modbus_profile(extra_channels="  current_l1_a: {address: 0xFFFF, unit: A}\n"),
        "channels.current_l1_a.address", "runs past register 65535"),
    "function not 3 or 4 in a channel": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: A, function: 6}\n"),
        "channels.current_l1_a.function", "3 or 4"),
    "function not 3 or 4 as default": (
        modbus_profile().replace("function: 4", "function: 16"), "modbus.function", "3 or 4"),
    "overlapping registers": (
        modbus_profile(extra_channels="  current_l1_a: {address: 0x0049, unit: A}\n"),
        "channels.current_l1_a.address", "overlap channels.energy_import_kwh"),
    "modbus channel without address": (
        modbus_profile(extra_channels="  current_l1_a: {unit: A}\n"),
        "channels.current_l1_a.address", "required"),
    "OBIS key in a modbus profile": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, code: 31.7.0, unit: A}\n"),
        "channels.current_l1_a.code", "belongs to OBIS channels"),
    "status without flags": (
        modbus_profile(extra_channels="  alarms: {address: 0x100, type: uint16, role: status}\n"),
        "channels.alarms.flags", "names its bits"),
    "flags on a value channel": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: A, flags: {0: x}}\n"),
        "channels.current_l1_a.flags", "only a status channel"),
    "flag bit beyond the register": (
        modbus_profile(extra_channels="  alarms: {address: 0x100, type: uint16, role: status, "
                                      "flags: {16: leak}}\n"),
        "channels.alarms.flags.16", "outside 0..15"),
    "bad flag name": (
        modbus_profile(extra_channels="  alarms: {address: 0x100, type: uint16, role: status, "
                                      "flags: {0: Leak Alarm}}\n"),
        "channels.alarms.flags.0", "flag name"),
    "status word as float": (
        modbus_profile(extra_channels="  alarms: {address: 0x100, role: status, "
                                      "flags: {0: leak}}\n"),
        "channels.alarms.type", "integer"),
    "scale as a float": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: A, scale: 0.1}\n"),
        "channels.current_l1_a.scale", "as a string"),
    "scale zero": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: A, scale: 0}\n"),
        "channels.current_l1_a.scale", "must not be 0"),
    "value channel without unit": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6}\n"),
        "channels.current_l1_a.unit", "required"),
    "bad unit": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: 'amps and more'}\n"),
        "channels.current_l1_a.unit", "is not a unit"),
    "bad OBIS": (
        modbus_profile(extra_channels="  current_l1_a: {address: 6, unit: A, obis: nope}\n"),
        "channels.current_l1_a.obis", "OBIS"),
    "id differs from the file name": (modbus_profile(name="acme-other"), "id",
                                      "must equal the file name"),
    "firmware min above max": (
        modbus_profile().replace('{min: "1.0", max: null}', '{min: "2.0", max: "1.10"}'),
        "firmware", "above max"),
    "firmware as a float": (
        modbus_profile().replace('{min: "1.0", max: null}', '{min: 1.10, max: null}'),
        "firmware.min", "quote it"),
    "firmware missing": (modbus_profile().replace('firmware: {min: "1.0", max: null}\n', ""),
                         "firmware", "required"),
    "source missing": (modbus_profile().replace("source: test fixture\n", ""), "source",
                       "required"),
    "unknown protocol": (modbus_profile().replace("protocol: modbus", "protocol: mbus"),
                         "protocol", "mbus"),
    "iec settings on a modbus profile": (modbus_profile(extra="iec: {mode: C}\n"), "iec",
                                         "only for protocol iec62056_21"),
    "no channels": (modbus_profile().split("channels:")[0], "channels", "at least one channel"),
    "extends an unknown profile": (modbus_profile(extra="extends: eastron-sdm6300\n"),
                                   "extends", "no profile 'eastron-sdm6300'"),
    "remove without extends": (modbus_profile(extra="remove: [voltage_l1_v]\n"), "remove",
                               "only a firmware variant"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_problem_is_reported_with_its_key_path(tmp_path, case):
    text, key, why = CASES[case]
    name = "acme-m1"
    path = write(tmp_path, name, text)
    problems = problems_of(path)
    assert any(k == key and why in w for k, w in problems), problems


OBIS_PROFILE = """\
id: acme-p1
manufacturer: Acme
model: P1
firmware: {min: "50", max: null}
protocol: dsmr_p1
service: electric
source: test fixture
channels:
  energy_import_kwh_t1: {code: "1-0:1.8.1", unit: kWh}
"""

OBIS_CASES = {
    "OBIS channel without code": ("  energy_import_kwh_t2: {unit: kWh}\n",
                                  "channels.energy_import_kwh_t2.code", "required"),
    "address in an OBIS profile": ("  energy_import_kwh_t2: {code: 1-0:1.8.2, address: 3, "
                                   "unit: kWh}\n",
                                   "channels.energy_import_kwh_t2.address", "Modbus channels"),
    "code as a YAML float": ("  energy_import_kwh_t2: {code: 1.8, unit: kWh}\n",
                             "channels.energy_import_kwh_t2.code", "quote it"),
    "the same data set twice": ("  total: {code: '1-0:1.8.1', unit: kWh}\n",
                                "channels.total.code", "already reads 1-0:1.8.1"),
    "two clocks": ("  t1: {code: '0-0:1.0.0', role: clock}\n"
                   "  t2: {code: '0-0:1.0.1', role: clock}\n",
                   "channels.t2.role", "second clock"),
    "a date without a time": ("  d: {code: '0.9.2', role: clock_date}\n", "channels.d.role",
                              "needs a clock_time"),
    "modbus settings on a P1 profile": ("", "modbus", "only for protocol modbus"),
}


@pytest.mark.parametrize("case", OBIS_CASES, ids=list(OBIS_CASES))
def test_obis_profile_problems_have_key_paths(tmp_path, case):
    channels, key, why = OBIS_CASES[case]
    text = OBIS_PROFILE + channels
    if key == "modbus":
        text += "modbus: {merge: false}\n"
    problems = problems_of(write(tmp_path, "acme-p1", text))
    assert any(k == key and why in w for k, w in problems), problems


def test_mbus_sub_meters_only_in_dsmr(tmp_path):
    text = OBIS_PROFILE.replace("dsmr_p1", "iec62056_21") + (
        "  volume_m3: {code: '0-1:24.2.1', group: 1, unit: m3, mbus_channel: 1}\n")
    problems = problems_of(write(tmp_path, "acme-p1", text))
    assert ("channels.volume_m3.mbus_channel",
            "only dsmr_p1 telegrams carry M-Bus sub-meters") in problems


def test_registers_of_different_functions_do_not_overlap(tmp_path):
    text = modbus_profile(extra_channels="  current_l1_a: {address: 0x0048, function: 3, "
                                         "unit: A}\n")
    profile = load_profile_file(write(tmp_path, "acme-m1", text))
    assert {c.function for c in profile.modbus_channels} == {3, 4}


def test_all_problems_of_a_file_are_collected(tmp_path):
    text = modbus_profile(name="wrong-id", extra="colour: red\n", extra_channels=(
        "  Bad: {address: 1, unit: A}\n"
        "  current_l1_a: {address: 0x0049, unit: A}\n"
        "  alarms: {address: 0x100, type: uint16, role: status}\n"
        "  frequency_hz: {address: 0x46, unit: Hz, scale: 0.1}\n"))
    keys = {key for key, _ in problems_of(write(tmp_path, "acme-m1", text))}
    assert {"id", "colour", "channels.Bad", "channels.current_l1_a.address",
            "channels.alarms.flags", "channels.frequency_hz.scale"} <= keys


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "acme-m1", "id: acme-m1\nchannels:\n  a: [1, 2\n  b: 3\n")
    problems = problems_of(path)
    assert problems[0][0] == "(syntax)"
    assert "line 4" in problems[0][1]
    assert len(problems) == 1


def test_a_channel_listed_twice_is_refused_not_silently_dropped(tmp_path):
    text = ("id: acme-m1\nchannels:\n  energy_import_kwh: {address: 0}\n"
            "  energy_import_kwh: {address: 2}\n")
    problems = problems_of(write(tmp_path, "acme-m1", text))
    assert problems == [("(syntax)", "line 4, column 3: found duplicate key "
                                     "'energy_import_kwh' (while constructing a mapping)")]


@pytest.mark.parametrize(("text", "why"), [
    ("", "not an empty file"),
    ("- a\n- b\n", "not a list"),
    ("just text\n", "not a str"),
    ("date: 2021-02-30\n", "cannot build"),
])
def test_a_file_that_is_no_mapping_says_so(tmp_path, text, why):
    problems = problems_of(write(tmp_path, "acme-m1", text))
    assert len(problems) == 1 and why in problems[0][1]


def test_unreadable_and_non_utf8_files_are_problems_not_crashes(tmp_path):
    path = tmp_path / "acme-m1.yaml"
    path.write_bytes(b"id: \xff\xfe\n")
    assert problems_of(path)[0] == ("(file)", "not UTF-8 text (byte 4)")
    missing = tmp_path / "nothing-here.yaml"
    assert problems_of(missing)[0][0] == "(file)"


# --- extends -------------------------------------------------------------------------------


def test_a_variant_lists_only_what_differs(tmp_path):
    base = write(tmp_path, "acme-m1", modbus_profile(extra_channels=(
        "  current_l1_a: {address: 6, unit: A}\n")))
    variant = write(tmp_path, "acme-m1-v2", """\
        id: acme-m1-v2
        extends: acme-m1
        firmware: {min: "2.0", max: null}
        source: release notes 2.0
        modbus: {max_block: 10}
        remove: [current_l1_a]
        channels:
          voltage_l1_v: {address: 0x0010, unit: V}
          frequency_hz: {address: 0x0046, unit: Hz}
        """)
    library = ProfileLibrary.load([tmp_path])
    profile = library.get("acme-m1-v2")
    assert profile.path == variant and library.get("acme-m1").path == base
    assert (profile.manufacturer, profile.model, profile.protocol) == ("Acme", "M1", "modbus")
    assert str(profile.firmware) == "≥ 2.0" and profile.source == "release notes 2.0"
    assert profile.channel_names == ("energy_import_kwh", "voltage_l1_v", "frequency_hz")
    assert profile.channel("voltage_l1_v").address == 0x0010
    assert profile.channel("frequency_hz").function == 4   # the base's default still applies
    assert profile.channel("frequency_hz").data_type is DataType.FLOAT32
    assert profile.modbus.max_block == 10
    assert profile.extends == "acme-m1"


def test_a_variant_of_a_bundled_profile_from_another_directory(tmp_path):
    path = write(tmp_path, "eastron-sdm630-site", """\
        id: eastron-sdm630-site
        extends: eastron-sdm630
        firmware: {min: "3.0", max: "3.9"}
        source: site survey
        channels:
          energy_total_kwh: {address: 0x0156, unit: kWh}
        """)
    profile = load_profile_file(path)
    assert profile.model == "SDM630"
    assert profile.channel("energy_total_kwh").data_type is DataType.FLOAT32
    assert ProfileLibrary.load([tmp_path]).select("SDM630", "3.1").id == "eastron-sdm630-site"


def test_extends_cycles_are_detected(tmp_path):
    for name, other in (("acme-a", "acme-b"), ("acme-b", "acme-c"), ("acme-c", "acme-a")):
        write(tmp_path, name, modbus_profile(name=name, extra=f"extends: {other}\n"))
    errors = {e.path.stem: e for e in ProfileLibrary.load([tmp_path]).check()}
    for name in ("acme-a", "acme-b", "acme-c"):
        assert ("extends", "cycle") in [(k, w[:5]) for k, w in errors[name].problems]
    assert "acme-a → acme-b → acme-c → acme-a" in str(errors["acme-a"])


def test_a_variant_may_not_change_protocol(tmp_path):
    write(tmp_path, "acme-m1", modbus_profile())
    path = write(tmp_path, "acme-m1-p1", """\
        id: acme-m1-p1
        extends: acme-m1
        protocol: dsmr_p1
        firmware: {min: "2.0", max: null}
        source: test
        """)
    problems = problems_of(path, ProfileLibrary.load([tmp_path]))
    assert any(k == "protocol" and "keeps its base's protocol" in w for k, w in problems)


def test_a_variant_of_a_broken_base_says_so(tmp_path):
    write(tmp_path, "acme-m1", modbus_profile(extra="colour: red\n"))
    path = write(tmp_path, "acme-m1-v2", """\
        id: acme-m1-v2
        extends: acme-m1
        firmware: {min: "2.0", max: null}
        source: test
        remove: [nothing_like_this]
        """)
    problems = problems_of(path, ProfileLibrary.load([tmp_path]))
    assert problems == [("extends", f"base profile acme-m1 is invalid: fix "
                                    f"{tmp_path / 'acme-m1.yaml'} first")]


def test_removing_an_unknown_channel_and_overlaps_across_base_and_variant(tmp_path):
    write(tmp_path, "acme-m1", modbus_profile())
    path = write(tmp_path, "acme-m1-v2", """\
        id: acme-m1-v2
        extends: acme-m1
        firmware: {min: "2.0", max: null}
        source: test
        remove: [current_l9_a]
        channels:
          frequency_hz: {address: 0x0049, unit: Hz}
        """)
    problems = problems_of(path, ProfileLibrary.load([tmp_path]))
    assert ("remove.0", "'current_l9_a' is not a channel of acme-m1") in problems
    assert any(k == "channels.frequency_hz.address" and "energy_import_kwh" in w
               for k, w in problems)


# --- selection -----------------------------------------------------------------------------


def test_select_by_model_and_firmware(library):
    assert library.select("SDM630", "1.0").id == "eastron-sdm630"
    assert library.select("sdm630", "V2.3").id == "eastron-sdm630-v2"   # variant over base
    assert library.select("ZMD310", "B32").id == "landis-gyr-zmd310"
    assert library.select("ma105", "42").id == "kaifa-ma105"


def test_no_profile_for_this_firmware_lists_the_ranges(library):
    with pytest.raises(ProfileNotFound) as info:
        library.select("SDM630", "0.1")
    message = str(info.value)
    assert "'0.1'" in message
    assert "eastron-sdm630 (firmware ≥ 1.0)" in message
    assert "eastron-sdm630-v2 (firmware ≥ 2.0)" in message


def test_an_unknown_model_suggests_close_ones(library):
    with pytest.raises(ProfileNotFound) as info:
        library.select("SDM63", "1.0")
    assert "did you mean SDM630" in str(info.value)
    assert "known models:" in str(info.value)


def test_the_narrowest_range_wins_between_unrelated_profiles(tmp_path):
    write(tmp_path, "acme-wide", modbus_profile(name="acme-wide"))
    write(tmp_path, "acme-narrow", modbus_profile(name="acme-narrow").replace(
        '{min: "1.0", max: null}', '{min: "1.5", max: "2.0"}'))
    write(tmp_path, "acme-capped", modbus_profile(name="acme-capped").replace(
        '{min: "1.0", max: null}', '{min: "1.0", max: "3.0"}'))
    library = ProfileLibrary.load([tmp_path])
    assert library.select("M1", "1.7").id == "acme-narrow"
    assert library.select("M1", "2.5").id == "acme-capped"
    assert library.select("M1", "4").id == "acme-wide"


def test_get_unknown_id_suggests_and_broken_id_explains(tmp_path, library):
    with pytest.raises(ProfileNotFound, match="did you mean eastron-sdm120"):
        library.get("eastron-sdm12")
    write(tmp_path, "acme-m1", modbus_profile(extra="colour: red\n"))
    with pytest.raises(ProfileValidationError) as info:
        ProfileLibrary.load([tmp_path]).get("acme-m1")
    assert info.value.problems == [("colour", "unknown key")]
    assert str(info.value).endswith("colour: unknown key")


def test_get_accepts_a_file_path(tmp_path, library):
    path = write(tmp_path, "acme-m1", modbus_profile())
    assert library.get(str(path)).id == "acme-m1"


def test_errors_are_profile_errors_for_the_drivers():
    assert issubclass(ProfileError, protocols.driver.ProfileError)
    assert issubclass(ProfileValidationError, ProfileError)
    assert issubclass(ProfileNotFound, ProfileError)


def test_a_profile_names_its_channels(library):
    profile = library.get("eastron-sdm120")
    assert isinstance(profile, Profile)
    with pytest.raises(ProfileError, match="has no channel 'energy_kwh'"):
        profile.channel("energy_kwh")


# --- directories -----------------------------------------------------------------------------


def test_the_environment_adds_directories(tmp_path, monkeypatch):
    write(tmp_path, "acme-m1", modbus_profile())
    monkeypatch.setenv(PROFILE_PATH_ENV, f"/nonexistent-dir{os.pathsep}{tmp_path}")
    default_library.cache_clear()
    try:
        assert get_profile("acme-m1").model == "M1"
        assert select_profile("M1", "1.0").id == "acme-m1"
        problems = [e.problems for e in default_library().check()]
        assert [("(dir)", "no such directory of profiles")] in problems
    finally:
        default_library.cache_clear()


def test_a_site_directory_overrides_a_bundled_profile(tmp_path):
    text = (BUNDLED_DIR / "eastron-sdm120.yaml").read_text().replace("baudrate: 2400",
                                                                       "baudrate: 9600")
    (tmp_path / "eastron-sdm120.yaml").write_text(text)
    profile = ProfileLibrary.load([tmp_path]).get("eastron-sdm120")
    assert profile.serial.baudrate == 9600 and profile.path.parent == tmp_path


# --- fuzzing: nothing but ProfileValidationError ever escapes the loader ----------------------

BUNDLED_TEXTS = sorted(p.read_text() for p in BUNDLED_DIR.glob("*.yaml"))
KEYS = ["id", "manufacturer", "model", "firmware", "protocol", "service", "source", "serial",
        "modbus", "iec", "channels", "extends", "remove", "address", "type", "code", "unit",
        "scale", "role", "flags", "group", "mbus_channel", "min", "max", "function"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True), st.text(max_size=12),
                    st.sampled_from(["modbus", "dsmr_p1", "status", "float32", "0x48", "kWh",
                                     "1.8.0", "eastron-sdm630", "acme-fuzz"]))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers()),
                        inner, max_size=6),
    ),
    max_leaves=30,
)


def load_text(directory: Path, text: str) -> None:
    path = directory / "acme-fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_profile_file(path)
    except ProfileValidationError as exc:
        assert exc.problems and all(isinstance(k, str) and isinstance(w, str)
                                    for k, w in exc.problems)


fuzz_settings = settings(max_examples=150, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz_settings
@given(st.text(max_size=300))
def test_random_text_only_ever_raises_validation_errors(tmp_path_factory, text):
    load_text(tmp_path_factory.mktemp("fuzz"), text.replace("\ud800", ""))


@fuzz_settings
@given(documents)
def test_random_documents_only_ever_raise_validation_errors(tmp_path_factory, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    load_text(tmp_path_factory.mktemp("fuzz"), text)


@fuzz_settings
@given(st.sampled_from(BUNDLED_TEXTS), st.randoms(use_true_random=False),
       st.lists(st.tuples(st.sampled_from(["delete", "insert", "replace", "swap"]),
                          st.text(max_size=8)), min_size=1, max_size=6))
def test_mutated_profiles_only_ever_raise_validation_errors(
        tmp_path_factory, text, rng: random.Random, mutations):
    for action, fragment in mutations:
        at = rng.randrange(len(text) + 1)
        if action == "delete":
            text = text[:at] + text[at + rng.randrange(1, 20):]
        elif action == "insert":
            text = text[:at] + fragment + text[at:]
        elif action == "replace":
            text = text[:at] + fragment + text[at + len(fragment):]
        else:
            lines = text.splitlines(keepends=True)
            if len(lines) > 1:
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
                text = "".join(lines)
    load_text(tmp_path_factory.mktemp("fuzz"), text.replace("\ud800", ""))


channel_values = {
    "address": st.one_of(st.integers(-2, 70000), st.sampled_from([0, 0x48, 0x49, 0xFFFF])),
    "type": st.sampled_from([t.value for t in DataType] + ["float33", 3]),
    "unit": st.sampled_from(["kWh", "m3", "", "a b", 7]),
    "scale": st.one_of(st.sampled_from(["0.1", "0", "x", "1e400", "NaN"]), st.integers(-3, 3),
                       st.floats(allow_nan=True)),
    "role": st.sampled_from([r.value for r in Role] + ["other"]),
    "flags": st.dictionaries(st.integers(-1, 70), st.sampled_from(["leak", "Tamper", ""]),
                             max_size=3),
    "function": st.sampled_from([3, 4, 6, "4"]),
    "byte_order": st.sampled_from(["big", "little", "middle"]),
    "code": st.sampled_from(["1.8.0", "0-1:24.2.1", "F.F", "a b", "1-0:1.8.0*255"]),
    "group": st.integers(-1, 20),
    "mbus_channel": st.integers(-1, 6),
    "obis": st.sampled_from(["1-0:1.8.0", "nope"]),
}
near_valid_channels = st.dictionaries(
    st.sampled_from(["energy_import_kwh", "volume_m3", "alarms", "t", "Bad", "meter_time"]),
    st.fixed_dictionaries({}, optional=channel_values),
    max_size=5,
)


@fuzz_settings
@given(st.sampled_from(["modbus", "iec62056_21", "dsmr_p1", "x"]), near_valid_channels,
       st.sampled_from([None, "eastron-sdm630", "acme-fuzz", "nope"]),
       st.lists(st.sampled_from(["energy_import_kwh", "voltage_l1_v", "zz"]), max_size=2))
def test_near_valid_profiles_only_ever_raise_validation_errors(
        tmp_path_factory, protocol, channels, extends, remove):
    document = {"id": "acme-fuzz", "manufacturer": "Acme", "model": "F1", "protocol": protocol,
                "service": "electric", "source": "fuzz", "firmware": {"min": "1.0"},
                "channels": channels}
    if extends:
        document["extends"] = extends
    if remove:
        document["remove"] = remove
    load_text(tmp_path_factory.mktemp("fuzz"), yaml.safe_dump(document))
