"""`make demo` keeps working: a small run of the same script, checked for what it claims."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_and_catches_the_forgery(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "demo" / "run_demo.py"), "--meters", "10", "--hours", "3",
         "--power-cuts", "2", "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "120/120" in out                              # 10 meters × 12 polls signed
    assert out.count("newest read intact and signed") == 2
    assert "reads verified, chain intact" in out
    assert "rejected forged.batch.json: SignatureError" in out
    assert "forgeries caught" in out
    assert "one unbroken chain from seq 1" in out             # synced over MQTT, stored once
    assert "over MQTT, stored once, each signature verified" in out
    ingested = re.search(r"meterhub_reads_ingested_total (\S+)", out)   # /metrics, scraped
    stored = re.search(r"│ gw-0001\s+│\s+(\d+) │\s+0 │\s+(\d+) │\s+0 │", out)  # reads status
    assert ingested and stored and float(ingested.group(1)) == int(stored.group(2)) > 120
    assert re.search(r'meterhub_batches_total\{outcome="stored"\} [1-9]', out)
    assert "cycle C2026-11" in out                           # imported and reconciled
    assert "46 meters missing" in out                        # 10 polled of the 56 on routes
    assert (tmp_path / "run" / "reread-route.json").exists()
    for rule in ("spike", "negative_consumption", "stuck_register", "meter_alarm",
                 "zero_consumption", "estimated_missing"):  # the fleet's faults, caught
        assert f"│ {rule}" in out, rule
    assert "awaiting_reread" in out                          # rejected: waits for a re-read
    assert "cycle C2026-11: no account held" in out          # decisions released them all
    assert "audit log: 7 action(s)" in out                   # each decision on record
    assert "45 missing meters estimated" in out
    assert "verified: C2026-11.csv holds" in out             # the CIS file checks out
    assert "exported again: byte-identical file and manifest" in out
    assert (tmp_path / "run" / "gw-0001" / "collector.key").stat().st_mode & 0o777 == 0o600
