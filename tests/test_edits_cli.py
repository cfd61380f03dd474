"""`meterhub cycle edits`, `exceptions …` and `audit`, as an operator types them."""

from __future__ import annotations

import json
import subprocess

import pytest

from hub.store import Store
from tests.conftest import script
from tests.test_edits_store import METERS, SCHEDULED, Fleet, bill_history, kwh
from tests.test_reconcile import seed_cycle


@pytest.fixture
def hub_db(tmp_path):
    """An SQLite hub with cycle C1: a spike on E-SPIKE, E-MISSING unread, the rest normal."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    with Store.open(url, upgrade_schema=True) as store:
        seed_cycle(store, METERS, first=SCHEDULED)
        for meter in METERS:
            bill_history(store, meter, [str(1000 + 300 * n) for n in range(6)])
        Fleet(store).send(kwh("E-NORMAL", "2800.000"), kwh("E-SPIKE", "9800.000"),
                          kwh("E-TAMPER", "2795.000"))
    return url


def run(tmp_path, cli_env, db, *args, operator="j.smith"):
    return subprocess.run([script("meterhub"), "--db", db, *args], cwd=tmp_path,
                          env={**cli_env, "METERHUB_OPERATOR": operator}, capture_output=True,
                          text=True, timeout=60, check=False)


def open_exceptions(tmp_path, cli_env, db, *filters):
    done = run(tmp_path, cli_env, db, "exceptions", "list", "--cycle", "C1", "--json", *filters)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_an_operator_runs_the_edits_and_works_the_queue_until_nothing_is_held(
        tmp_path, cli_env, hub_db):
    edits = run(tmp_path, cli_env, hub_db, "cycle", "edits", "C1")
    assert edits.returncode == 0, edits.stderr
    assert "spike" in edits.stdout and "estimated_missing" in edits.stdout
    assert "A-E-SPIKE" in edits.stdout  # listed as held
    blocking = open_exceptions(tmp_path, cli_env, hub_db, "--severity", "blocking")
    assert {row["meter"] for row in blocking} == {"E-SPIKE"}
    refused = run(tmp_path, cli_env, hub_db, "exceptions", "resolve", str(blocking[0]["id"]),
                  "--action", "override", "--reason", "dial photo")
    assert refused.returncode == 1 and "values" in refused.stderr
    spike = next(row["id"] for row in blocking if row["rule"] == "spike")
    done = run(tmp_path, cli_env, hub_db, "exceptions", "resolve", str(spike), "--action",
               "override", "--reason", "dial photo: 2 810", "--value",
               "energy_import_kwh=2810")
    assert done.returncode == 0, done.stderr
    assert "override by j.smith" in done.stdout
    held = run(tmp_path, cli_env, hub_db, "exceptions", "held", "C1")
    assert "no account held" in held.stdout
    shown = run(tmp_path, cli_env, hub_db, "exceptions", "show", str(spike))
    assert "overridden" in shown.stdout and "energy_import_kwh 2810" in shown.stdout
    trail = run(tmp_path, cli_env, hub_db, "audit", "--cycle", "C1", "--json")
    records = [json.loads(line) for line in trail.stdout.splitlines()]
    decision = next(r for r in records if r["action"] == "override")
    assert (decision["actor"], decision["reason"]) == ("j.smith", "dial photo: 2 810")
    assert decision["before"]["billing_read"]["registers"] == {"energy_import_kwh": "9800.000"}
    assert decision["after"]["billing_read"]["registers"] == {"energy_import_kwh": "2810"}
    assert any(r["action"] == "estimate" and r["meter"] == "E-MISSING" for r in records)


def test_a_bad_value_or_an_unknown_exception_is_refused_clearly(tmp_path, cli_env, hub_db):
    run(tmp_path, cli_env, hub_db, "cycle", "edits", "C1")
    bad = run(tmp_path, cli_env, hub_db, "exceptions", "resolve", "1", "--action", "override",
              "--reason", "x", "--value", "energy_import_kwh")
    assert bad.returncode == 2 and "register=value" in bad.stderr
    unknown = run(tmp_path, cli_env, hub_db, "exceptions", "resolve", "9999", "--action",
                  "accept", "--reason", "x")
    assert unknown.returncode == 1 and "no exception 9999" in unknown.stderr


def test_a_broken_rule_set_is_refused_naming_the_key(tmp_path, cli_env, hub_db):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: '1'\nsurprise: true\n")
    done = run(tmp_path, cli_env, hub_db, "cycle", "edits", "C1", "--rules", str(rules))
    assert done.returncode == 2
    assert "rules.yaml" in done.stderr and "surprise" in done.stderr
