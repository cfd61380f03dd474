"""`make demo` keeps working: the story told end to end, checked for what it claims.

The full run hides Mosquitto from the demo (a machine with only Python), so it
runs on the embedded amqtt broker; the interrupted run uses whatever broker the
machine has (Mosquitto in CI) and is stopped with SIGINT once every process is
up: nothing the demo started may outlive it.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "run_demo.py"
pytestmark = pytest.mark.slow


def without_mosquitto() -> dict[str, str]:
    """The environment with every PATH directory holding a ``mosquitto`` left out."""
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "mosquitto").exists()]
    return {**os.environ, "PATH": os.pathsep.join(path)}


def survivors(marker: str) -> list[str]:
    """Command lines of live processes (not this one) that mention ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if marker in command:
            found.append(f"{entry.name}: {command}")
    return found


def test_the_whole_story_on_a_machine_with_only_python(tmp_path):
    work = tmp_path / "run"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(DEMO), "--poll-seconds", "14", "--poll-interval", "4",
         "--power-cuts", "1", "--workdir", str(work)],
        capture_output=True, text=True, timeout=240, check=False, env=without_mosquitto(),
    )
    took = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-3000:]
    prose = " ".join(out.split())  # sentences as printed, whatever the line breaks
    cycle = re.search(r"Cycle (C\d{4}-\d{2});", prose).group(1)

    # the embedded broker, and it says what it lacks
    assert "embedded amqtt broker" in prose and "no passwords or ACL" in prose
    assert "--subscription meterhub/v1/+/reads" in prose
    # the fleet: every protocol, over real wires, with its faults
    assert "56 simulated meters the gateway polls" in out
    for protocol in ("modbus_tcp", "modbus_rtu", "iec62056_21", "dsmr_p1"):
        assert f"│ {protocol}" in out, protocol
    wire = re.search(r"SDM630-00013\s+│ no_answer\s+│ (\d+) no_response", out)
    assert wire and int(wire.group(1)) > 0
    assert re.search(r"LGZ-61000002\s+│ tamper .*tamper_terminal_cover", out)
    # power cut, the chain, the file, the forgery
    assert "power cut 1: killed; the buffer reopens at seq" in prose
    gateway = int(re.search(r"(\d+) reads signed, every one acked by the hub", prose).group(1))
    assert gateway > 100
    assert f"ok: {gateway} reads verified, chain intact through seq {gateway}" in out
    assert "rejected forged.batch.json: SignatureError" in prose
    assert f"gw-0001: {gateway} reads, one unbroken chain from seq 1" in out
    # reconcile → re-read route → technician → the gap closes
    assert "13 meters, published (retained) to meterhub/v1/hh-01/routes" in prose
    assert re.search(r"LGZ-61000005 │ probe\s+│ \d+\.\d+", out)
    assert "dog — dog loose" in prose
    assert "13 reads synced from hh-01, stored and verified" in prose
    assert "missing meters: 13 → 0" in prose
    # edits, decisions, bills, the CIS file
    for rule in ("spike", "negative_consumption", "stuck_register", "meter_alarm",
                 "zero_consumption", "estimated_missing", "inactive_consumption"):
        assert f"│ {rule}" in out, rule
    assert re.search(r"exceptions/\d+/resolve .*awaiting_reread", prose)
    assert f"cycle {cycle}: no account held" in prose
    assert re.search(r"exceptions\s+│ (\d+) raised, every one resolved", out)
    bills = re.search(r"(\d+) bills, total ([\d,]+\.\d\d) USD", prose)
    assert bills and int(bills.group(1)) == 63
    assert f"verified: {cycle}.csv holds 63 rows" in prose
    assert "exported again: byte-identical file and manifest" in prose
    ingested = re.search(r"meterhub_reads_ingested_total (\S+)", out)
    assert ingested and float(ingested.group(1)) == gateway + 13
    # the summary: where to log in, how to get the pages back
    assert re.search(r"operator pages\s+│ http://127\.0\.0\.1:\d+/ ", out)
    password = (work / "demo.password").read_text().strip()
    assert re.search(rf"operator login\s+│ demo / {re.escape(password)}", out)
    assert "nothing, once the demo exits: it stops every process it started" in prose
    assert "serve --http-port 8080" in prose
    assert (work / "gw-0001" / "collector.key").stat().st_mode & 0o777 == 0o600
    assert (work / "exports" / "1" / f"{cycle}.csv").exists()
    assert not survivors(str(work)), survivors(str(work))
    assert took < 180, f"the demo took {took:.0f} s"


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path):
    work = tmp_path / "run"
    log = tmp_path / "demo.out"
    with log.open("w") as output:
        demo = subprocess.Popen([sys.executable, str(DEMO), "--poll-seconds", "60",
                                 "--workdir", str(work)], stdout=output,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        # every background process is up once the gateway's power cuts begin
        while "4. Power cuts" not in log.read_text():
            assert demo.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2)
        running = survivors(str(work))
        assert len(running) >= 5, running   # broker, hub, two fleets, gateway, handheld
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
    out = log.read_text()
    assert "interrupted: stopping every process the demo started" in " ".join(out.split())
    assert "Traceback" not in out
    assert not survivors(str(work)), survivors(str(work))


def test_a_failed_step_stops_what_was_started(tmp_path):
    # A fleet file the simulator refuses: the broker, the hub and the other fleet are up by
    # the time the demo finds out, and must all be stopped on the way out.
    work = tmp_path / "run"
    result = subprocess.run([sys.executable, str(DEMO), "--poll-interval", "0", "--workdir",
                             str(work)], capture_output=True, text=True, timeout=180,
                            check=False)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo step failed: the simulated fleet to start" in " ".join(result.stdout.split())
    assert "subscribed to" in (work / "hub.log").read_text()       # the hub had started
    assert not survivors(str(work)), survivors(str(work))
