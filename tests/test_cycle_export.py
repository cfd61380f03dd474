"""`meterhub cycle export` on a billed cycle: a signed file the CIS can verify, the same twice."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from hub.store import Store
from tests.conftest import script
from tests.test_billing_store import billed_cycle


@pytest.fixture
def hub_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    with Store.open(url, upgrade_schema=True) as store:
        billed_cycle(store)
    return url


def meterhub(tmp_path, cli_env, db, *args):
    return subprocess.run([script("meterhub"), "--db", db, *args], cwd=tmp_path, env=cli_env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("fmt", ["csv", "fixed", "jsonl"])
def test_an_exported_cycle_verifies_and_exports_again_to_the_same_bytes(tmp_path, cli_env,
                                                                         hub_db, fmt):
    assert meterhub(tmp_path, cli_env, hub_db, "keys", "generate", "--key", "hub.key"
                    ).returncode == 0
    assert (tmp_path / "hub.key").stat().st_mode & 0o777 == 0o600
    assert meterhub(tmp_path, cli_env, hub_db, "keys", "export-public", "--key", "hub.key",
                    "--out", "hub.pub").returncode == 0
    done = meterhub(tmp_path, cli_env, hub_db, "cycle", "export", "C1", "--key", "hub.key",
                    "--format", fmt, "--out", "out")
    assert done.returncode == 0, done.stderr
    [file] = [p for p in (tmp_path / "out").iterdir() if not p.name.endswith(".manifest.json")]
    manifest = file.with_name(file.name + ".manifest.json")
    first = (file.read_bytes(), manifest.read_bytes())
    verified = meterhub(tmp_path, cli_env, hub_db, "export", "verify", str(file),
                        "--public-key", "hub.pub")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = meterhub(tmp_path, cli_env, hub_db, "cycle", "export", "C1", "--key", "hub.key",
                     "--format", fmt, "--out", "out")
    assert again.returncode == 0
    assert (file.read_bytes(), manifest.read_bytes()) == first
    data = bytearray(first[0])
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    file.write_bytes(bytes(data))
    tampered = meterhub(tmp_path, cli_env, hub_db, "export", "verify", str(file),
                        "--public-key", "hub.pub")
    assert tampered.returncode == 1 and "sha256" in tampered.stderr


def test_the_csv_carries_each_billed_account_meter_with_its_bill(tmp_path, cli_env, hub_db):
    meterhub(tmp_path, cli_env, hub_db, "keys", "generate", "--key", "hub.key")
    assert meterhub(tmp_path, cli_env, hub_db, "cycle", "export", "C1", "--key", "hub.key",
                    "--out", "out").returncode == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "C1.csv").read_text())))
    assert [(r["account"], r["meter"]) for r in rows] == [("A-E-ONE", "E-ONE"),
                                                          ("A-E-TWO", "E-TWO")]
    one = rows[0]
    assert (one["route"], one["read_type"], one["previous_read"], one["current_read"],
            one["consumption"], one["unit"]) == ("R1", "actual", "2500", "2800.000",
                                                 "300.000", "kWh")
    assert one["total"] != "" and int(one["line_count"]) > 0


def test_a_cycle_without_bills_is_refused_with_the_fix(tmp_path, cli_env):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    Store.open(url, upgrade_schema=True).close()
    meterhub(tmp_path, cli_env, url, "keys", "generate", "--key", "hub.key")
    done = meterhub(tmp_path, cli_env, url, "cycle", "export", "C9", "--key", "hub.key")
    assert done.returncode == 1 and "meterhub cycle bill C9" in done.stderr


def test_an_accounts_green_button_file_carries_its_bill(tmp_path, cli_env, hub_db):
    done = meterhub(tmp_path, cli_env, hub_db, "cycle", "green-button", "C1", "A-E-ONE",
                    "--out", "gb.xml")
    assert done.returncode == 0, done.stderr
    espi = "{http://naesb.org/espi}"
    root = ET.parse(tmp_path / "gb.xml").getroot()
    summary = root.find(f".//{espi}UsageSummary")
    assert summary is not None
    bill = Decimal(summary.findtext(f"{espi}billLastPeriod")) / 100_000
    export = meterhub(tmp_path, cli_env, hub_db, "keys", "generate", "--key", "hub.key")
    assert export.returncode == 0
    meterhub(tmp_path, cli_env, hub_db, "cycle", "export", "C1", "--key", "hub.key",
             "--format", "jsonl", "--out", "out")
    rows = [json.loads(line) for line in (tmp_path / "out" / "C1.jsonl").read_text().splitlines()]
    assert bill == Decimal(next(r["total"] for r in rows if r["account"] == "A-E-ONE"))
    again = meterhub(tmp_path, cli_env, hub_db, "cycle", "green-button", "C1", "A-E-ONE",
                     "--out", "gb2.xml")
    assert again.returncode == 0
    assert (tmp_path / "gb.xml").read_bytes() == (tmp_path / "gb2.xml").read_bytes()
    missing = meterhub(tmp_path, cli_env, hub_db, "cycle", "green-button", "C1", "A-NOBODY",
                       "--out", "x.xml")
    assert missing.returncode == 1 and "no bill" in missing.stderr
