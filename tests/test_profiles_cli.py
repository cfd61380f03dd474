"""``edge-agent profiles list|show|check`` through a real typer app."""

import json

import pytest
import typer
from typer.testing import CliRunner

from edge_agent.profiles_cli import profiles_app
from firmware_profiles import BUNDLED_DIR

app = typer.Typer()
app.add_typer(profiles_app, name="profiles")

GOOD = """\
id: acme-m1
manufacturer: Acme
model: M1
firmware: {min: "1.0", max: null}
protocol: modbus
service: water
source: test fixture
channels:
  volume_m3: {address: 0x0010, type: uint32, scale: "0.001", unit: m3}
"""


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["profiles", *args])

    return invoke


def test_without_a_command_it_shows_help(run):
    result = run()
    assert "list" in result.output and "check" in result.output


def test_list_shows_every_bundled_profile(run):
    result = run("list")
    assert result.exit_code == 0, result.output
    for path in BUNDLED_DIR.glob("*.yaml"):
        assert path.stem in result.output
    assert "≥ 2.0" in result.output and "dsmr_p1" in result.output


def test_list_filters_by_protocol(run):
    result = run("list", "--protocol", "dsmr_p1")
    assert result.exit_code == 0
    assert "sagemcom-t210d" in result.output and "kaifa-ma105" in result.output
    assert "eastron-sdm120" not in result.output
    assert run("list", "--protocol", "mbus").exit_code == 2


def test_list_includes_extra_directories(run, tmp_path):
    (tmp_path / "acme-m1.yaml").write_text(GOOD)
    result = run("list", "--profile-dir", str(tmp_path))
    assert "acme-m1" in result.output


def test_show_prints_the_header_and_channel_table(run):
    result = run("show", "carlo-gavazzi-em340")
    assert result.exit_code == 0, result.output
    for text in ("Carlo Gavazzi EM340", "energy_import_kwh", "0x0034 fn 4", "LSW first", "0.1",
                 "kWh", "1-0:1.8.0", "source"):
        assert text in result.output
    result = run("show", "landis-gyr-zmd310")
    assert "F.F" in result.output and "status 0:clock_invalid" in result.output


def test_show_json_is_a_complete_machine_readable_dump(run):
    result = run("show", "sagemcom-t210d", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["id"] == "sagemcom-t210d" and data["protocol"] == "dsmr_p1"
    gas = next(c for c in data["channels"] if c["name"] == "volume_m3")
    assert gas == {**gas, "code": "0-1:24.2.1", "group": 1, "mbus_channel": 1, "unit": "m3",
                   "scale": "1", "role": "value", "kind": "obis"}
    assert data["firmware"] == {"min": "50", "max": None}


def test_show_a_file_and_an_unknown_id(run, tmp_path):
    path = tmp_path / "acme-m1.yaml"
    path.write_text(GOOD)
    assert "volume_m3" in run("show", str(path)).output
    result = run("show", "eastron-sdm12")
    assert result.exit_code == 1
    assert "no profile 'eastron-sdm12'" in result.output
    assert "eastron-sdm120" in result.output


def test_check_passes_for_the_bundled_profiles(run):
    result = run("check")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: ")
    assert "no problems" in result.output


def test_check_a_broken_file_prints_file_key_why_and_fails(run, tmp_path):
    path = tmp_path / "acme-m1.yaml"
    path.write_text(GOOD.replace("scale: \"0.001\"", "scale: 0.001") + "colour: red\n")
    result = run("check", str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{path}: colour: unknown key" in lines
    assert any(line.startswith(f"{path}: channels.volume_m3.scale: ") for line in lines)


def test_check_given_files_only_checks_those(run, tmp_path):
    path = tmp_path / "acme-m1.yaml"
    path.write_text(GOOD)
    result = run("check", str(path))
    assert result.exit_code == 0
    assert "OK: 1 profile, 1 channel," in result.output


def test_check_reports_broken_files_in_extra_directories(run, tmp_path):
    (tmp_path / "acme-m1.yaml").write_text(GOOD.replace("id: acme-m1", "id: acme-m2"))
    result = run("check", "--profile-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path / 'acme-m1.yaml'}: id: 'acme-m2' must equal the file name" in result.output


def test_check_select_shows_the_chosen_profile(run):
    result = run("check", "--select", "SDM630", "--firmware", "2.3")
    assert result.exit_code == 0, result.output
    assert "SDM630 firmware 2.3 → eastron-sdm630-v2" in result.output


def test_check_select_without_a_match_fails_with_the_reason(run):
    result = run("check", "--select", "SDM630", "--firmware", "0.1")
    assert result.exit_code == 1
    assert "no profile for SDM630 firmware '0.1'" in result.output
    assert "eastron-sdm630 (firmware ≥ 1.0)" in result.output


def test_check_select_needs_a_firmware(run):
    assert run("check", "--select", "SDM630").exit_code == 2
