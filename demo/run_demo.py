"""``make demo``: meterhub's story so far, on one machine, with nothing but Python.

A gateway gets a signing key; a simulated fleet of meters is polled for a day
and every read is signed, chained and stored in the gateway's buffer; the
power is cut (kill -9) in the middle of writes, again and again, and the
chain survives; the reads are carried to the hub as a file and verified; a
one-character forgery is caught; then the gateway syncs over MQTT (a private
Mosquitto with the hub's passwords and ACL) and the hub stores, acks and
verifies every read. Each step runs the real command a person would type,
and prints it first.

Later issues grow this into the whole billing cycle (routes, edits, bills,
CIS export); issue 9 adds the embedded broker for machines without Mosquitto.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from edge_agent.buffer import EdgeBuffer
from edge_agent.keys import load_signer
from hub.store import Store
from hub.store.tables import reads
from protocols.canonical import decode_read
from protocols.read import ClockQuality, Reading, RegisterValue, Source
from simulators.billing_history import COLUMNS as HISTORY_COLUMNS
from simulators.billing_history import HistoryShape, history_rows, monthly_cycles
from simulators.faceplate import Faceplate
from simulators.faults import Fault, FaultSwitch
from simulators.meter_model import MeterSpec, Service, SimulatedMeter
from simulators.private_broker import Mosquitto

REPO = Path(__file__).resolve().parents[1]
MASTER_DATA = REPO / "demo" / "master_data"
MASTER_METERS = MASTER_DATA / "meters.csv"
BIN = Path(sys.executable).parent
COLLECTOR = "gw-0001"
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
POLL = timedelta(minutes=15)
console = Console(width=100)


FAULTS = {
    "SDM630-00001": "spike",
    "SDM630-00002": "tamper",
    "SDM630-00003": "stuck",
    "SDM630-00004": "zero",
    "SDM630-00005": "backward",
}
"""The meters that misbehave this cycle, and how (the edits must catch each).

Spike and tamper are the simulator's own faults (a register jump, the tamper
status bit); stuck, zero and backward lie between bills, so the meter stops
counting (stuck, zero) or its last bill was above what it shows now
(backward), written into the billing history the CIS hands over.
"""
SIMULATOR_FAULTS = {"spike": Fault.SPIKE, "tamper": Fault.TAMPER}
HISTORY_SHAPES = {"stuck": HistoryShape(flat_last=2), "zero": HistoryShape(flat_last=1),
                  "backward": HistoryShape(above_start_days=20)}
TAMPER_FLAGS = {0: "tamper_terminal_cover"}
UNITS = {"demand_kw": "kW"}
"""Registers in another unit than the meter's energy (the rest are kWh or m3)."""
PAST_CYCLES = monthly_cycles(date(2025, 11, 3), 12)
SCHEDULED = datetime(2026, 11, 3, tzinfo=UTC)
"""Cycle C2026-11's scheduled read date (demo/master_data/cycles.csv), at midnight UTC."""


def master_meters() -> list[dict[str, str]]:
    with MASTER_METERS.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def meter_specs() -> dict[str, MeterSpec]:
    """Every meter of the sample utility as the simulator runs it (demo/master_data)."""
    specs = {}
    services = {row["meter_serial"]: row["service"] for row in master_meters()}
    for n, (serial, service) in enumerate(services.items()):
        still = FAULTS.get(serial) in ("stuck", "zero")
        if service == "water":
            spec = MeterSpec(serial, Service.WATER, dials=5, mean_per_day=Decimal("0.4"),
                             start_value=Decimal(random.Random(n).randint(100, 900)), seed=n)
        elif service == "gas":
            spec = MeterSpec(serial, Service.GAS, dials=5, mean_per_day=Decimal("3.1"),
                             start_value=Decimal(random.Random(n).randint(1000, 5000)), seed=n)
        else:
            spec = MeterSpec(serial, Service.ELECTRIC, tou=True,
                             mean_per_day=Decimal(8 + n % 7), clock_drift_ppm=(n % 9 - 4) * 20,
                             start_value=Decimal(random.Random(n).randint(6000, 40000)), seed=n)
        specs[serial] = replace(spec, mean_per_day=Decimal(0)) if still else spec
    return specs


def fleet(size: int) -> list[Faceplate]:
    """The gateway's meters: the sample utility's (demo/master_data), but for a few.

    Every seventh meter of the utility is out of the gateway's reach (a dead
    radio, a meter in a basement), so the cycle has missing meters to find.
    """
    specs = meter_specs()
    reachable = [s for n, s in enumerate(specs.values()) if n % 7 != 6]
    return [Faceplate(spec, epoch=EPOCH, clock=lambda: 0.0, faults=FaultSwitch(
                [SIMULATOR_FAULTS[FAULTS[spec.serial]]] if FAULTS.get(spec.serial)
                in SIMULATOR_FAULTS else []))
            for spec in reachable[:size]]


def poll(meter: Faceplate, at: datetime) -> Reading:
    """What the collector makes of one poll of one meter (the drivers do this in the field)."""
    meter_time = meter.meter_time(at)
    offset = Decimal((meter_time - at).total_seconds()).quantize(Decimal("0.001"))
    spec = meter.spec
    total = spec.total_register
    names = [total, f"{total}_t1", f"{total}_t2", "demand_kw"] if spec.tou else [total]
    obis = {"energy_import_kwh": "1.8.0", "energy_import_kwh_t1": "1.8.1",
            "energy_import_kwh_t2": "1.8.2", "demand_kw": "1.6.0"}
    flags = tuple(TAMPER_FLAGS.values()) if meter.status_word(TAMPER_FLAGS) else ()
    return Reading(
        meter=spec.serial,
        read_at=meter_time,
        collected_at=at,
        clock=ClockQuality(ntp_synced=True, meter_offset_s=offset),
        source=Source.AMI,
        values={name: RegisterValue(meter.value(name, UNITS.get(name, spec.unit), at),
                                    UNITS.get(name, spec.unit), obis.get(name))
                for name in names},
        flags=flags,
    )


def write_history(path: Path) -> int:
    """The CIS's billed reads of the last 12 cycles for every meter, agreeing with the fleet."""
    specs = meter_specs()
    rows = []
    for row in master_meters():
        spec = specs[row["meter_serial"]]
        installed = (date.fromisoformat(row["installed_on"]),
                     date.fromisoformat(row["removed_on"]) if row["removed_on"] else None)
        shape = HISTORY_SHAPES.get(FAULTS.get(spec.serial, ""), HistoryShape())
        history_spec = replace(spec, mean_per_day=Decimal(9)) if spec.mean_per_day == 0 \
            else spec
        rows += history_rows(history_spec, EPOCH, PAST_CYCLES, shape=shape, installed=installed,
                             multiplier=Decimal(row["multiplier"]))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def sh(*args: str, cwd: Path, expect_failure: bool = False, quiet: bool = False,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a meterhub command as a person would, showing it and what it printed.

    ``quiet`` runs what the demo itself reads (a JSON listing) without printing it.
    """
    shown = " ".join(f"'{a}'" if " " in a else a for a in args)
    if not quiet:
        console.print(f"[bold cyan]$ {shown}[/bold cyan]", highlight=False)
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True,
                            text=True, check=False,
                            env={**os.environ, "COLUMNS": "96", "NO_COLOR": "1", **(env or {})})
    for line in (result.stdout + result.stderr).rstrip().splitlines():
        if not quiet:
            console.print(f"  {line}", highlight=False, markup=False)
    if (result.returncode != 0) != expect_failure:
        raise SystemExit(f"demo step failed: {shown} exited {result.returncode}")
    return result


def power_cut_child(buffer_path: str, key_path: str, meters_count: int) -> None:
    """Keep polling and appending until killed (run in a subprocess by the demo).

    Like an agent after a power cut, it resumes from the newest read it finds.
    """
    meters = fleet(meters_count)
    buffer = EdgeBuffer(buffer_path, collector=COLLECTOR, signer=load_signer(Path(key_path)))
    newest = buffer.reads(from_seq=buffer.tip().seq)
    at = decode_read(next(newest).data).collected_at
    print("ready", flush=True)
    while True:
        at += POLL
        buffer.append([poll(meter, at) for meter in meters])


def forge_one_digit(batch: dict) -> tuple[int, str, str]:
    """Raise the hundreds digit of the first register of some read, in place."""
    for entry in batch["reads"]:
        read = json.loads(entry["b"])
        for name, register in read["values"].items():
            value = register["value"]
            point = value.index(".")
            if point < 3:
                continue
            digit = point - 3
            forged = value[:digit] + str((int(value[digit]) + 1) % 10) + value[digit + 1:]
            entry["b"] = entry["b"].replace(f'"value":"{value}"', f'"value":"{forged}"', 1)
            return read["seq"], f"{name}={value}", forged
    raise SystemExit("no read with a register of three integer digits to forge")


def step_keys(gateway: Path) -> None:
    console.rule("1. The gateway gets its signing key")
    sh("edge-agent", "keys", "generate", "--key", "collector.key", cwd=gateway)
    (gateway / "edge-agent.toml").write_text(
        f'collector = "{COLLECTOR}"\n\n[key]\npath = "collector.key"\n\n'
        '[buffer]\npath = "buffer.sqlite"\nbudget_mb = 64\nretention_days = 7\n'
    )


def step_poll(gateway: Path, meter_count: int, hours: int) -> None:
    console.rule(f"2. Polling {meter_count} simulated meters every 15 minutes for {hours} h")
    signer = load_signer(gateway / "collector.key")
    meters = fleet(meter_count)
    polls = hours * 60 // 15
    started = time.perf_counter()
    with EdgeBuffer(gateway / "buffer.sqlite", collector=COLLECTOR, signer=signer) as buffer:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("signing and buffering reads", total=polls * len(meters))
            for round_ in range(1, polls + 1):
                at = EPOCH + POLL * round_
                buffer.append([poll(meter, at) for meter in meters])
                progress.advance(task, len(meters))
        appended = buffer.tip().seq
        first = buffer.pending(limit=1)[0]
    rate = appended / (time.perf_counter() - started)
    console.print(f"{appended} reads signed and durably stored ({rate:,.0f} reads/s, "
                  "including the meter simulation). The first one, exactly as signed:")
    console.print(first.data.decode(), highlight=False, markup=False, soft_wrap=True)


def step_power_cuts(gateway: Path, cuts: int, meter_count: int) -> None:
    console.rule(f"3. Power cuts: kill -9 while the gateway writes, {cuts} times")
    rng = random.Random(7)
    for cut in range(1, cuts + 1):
        child = subprocess.Popen(
            [sys.executable, __file__, "--power-cut-child", str(gateway / "buffer.sqlite"),
             str(gateway / "collector.key"), str(meter_count)],
            stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(rng.uniform(0.05, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with EdgeBuffer(gateway / "buffer.sqlite", collector=COLLECTOR) as buffer:
            buffer.check_tip()
            console.print(f"  power cut {cut}: killed mid-write; the buffer reopens at seq "
                          f"{buffer.tip().seq}, newest read intact and signed")
    sh("edge-agent", "buffer", "verify", cwd=gateway)


def step_to_the_hub(work: Path, gateway: Path) -> None:
    console.rule("4. The reads travel to the hub as a file and are verified there")
    sh("edge-agent", "keys", "export-public", "--out", "../gw-0001.pub", cwd=gateway)
    sh("edge-agent", "buffer", "export", "--out", "../gw-0001.batch.json", cwd=gateway)
    sh("meterhub", "verify", "gw-0001.batch.json", "--public-key", "gw-0001.pub", cwd=work)


def step_forgery(work: Path) -> None:
    console.rule("5. Someone changes one digit of one read in the file")
    lines = (work / "gw-0001.batch.json").read_text().splitlines()
    batch = json.loads(lines[0])
    forged_seq, before, after = forge_one_digit(batch)
    console.print(f"  seq {forged_seq}: {before} → {after}")
    lines[0] = json.dumps(batch)
    (work / "forged.batch.json").write_text("\n".join(lines) + "\n")
    sh("meterhub", "verify", "forged.batch.json", "--public-key", "gw-0001.pub", cwd=work,
       expect_failure=True)


def step_ack(gateway: Path) -> int:
    console.rule("6. The hub acks; the gateway's buffer drains")
    console.print("  (Mosquitto is not installed here: the ack is given by hand. With it, this "
                  "step syncs over MQTT.)", style="yellow")
    with EdgeBuffer(gateway / "buffer.sqlite", collector=COLLECTOR) as buffer:
        last = buffer.tip().seq
        buffer.ack(last)
    sh("edge-agent", "status", cwd=gateway)
    return last


def step_sync(work: Path, gateway: Path) -> int:
    """The gateway syncs over MQTT through a private, password-and-ACL Mosquitto to the hub."""
    console.rule("6. The gateway syncs over MQTT; the hub stores, acks and verifies every read")

    db = f"sqlite:///{work / 'hub.sqlite'}"
    sh("meterhub", "--db", db, "db", "upgrade", cwd=work)
    sh("meterhub", "--db", db, "collectors", "add", "--id", COLLECTOR, "--public-key",
       "gw-0001.pub", "--broker-password-file", f"{COLLECTOR}/mqtt.password", cwd=work)
    sh("meterhub", "--db", db, "broker-config", "--out", "broker", "--hub-password-file",
       "hub.password", cwd=work)
    with Mosquitto(work / "broker-run", password_file=work / "broker" / "passwd",
                   acl_file=work / "broker" / "acl").start() as broker:
        console.print(f"  a private Mosquitto on 127.0.0.1:{broker.port} with that passwd and acl")
        with (gateway / "edge-agent.toml").open("a") as config:
            config.write(f'\n[sync]\nport = {broker.port}\npassword_file = "mqtt.password"\n'
                         "linger_s = 0.2\nbatch_size = 200\n")
        sh("meterhub", "--db", db, "tokens", "create", "prometheus", "--role", "viewer",
           "--out", "prometheus.token", cwd=work)
        hub = _background(work, "hub.log", "meterhub", "--log-level", "info", "--db", db, "serve",
                          "--broker-port", str(broker.port), "--broker-password-file",
                          "hub.password", "--http-port", "0", "--exports-dir", "exports")
        _wait_for_line(work / "hub.log", "subscribed to", hub)
        hub_url = _hub_url(work / "hub.log")
        agent = _background(gateway, "agent.log", "edge-agent", "--log-level", "info", "run")
        try:
            with EdgeBuffer(gateway / "buffer.sqlite", collector=COLLECTOR) as buffer:
                last = buffer.tip().seq
                with Progress("[progress.description]{task.description}", BarColumn(),
                              MofNCompleteColumn(), TimeElapsedColumn(),
                              console=console) as progress:
                    task = progress.add_task("acked by the hub", total=last)
                    deadline = time.monotonic() + 120
                    while buffer.tip_acked() < last:
                        if time.monotonic() > deadline:
                            raise SystemExit("demo step failed: the hub did not ack in 120 s")
                        progress.update(task, completed=buffer.tip_acked())
                        time.sleep(0.1)
                    progress.update(task, completed=last)
            _wait_verified(work, db)
            _show_metrics(hub_url, (work / "prometheus.token").read_text().strip())
        finally:
            for process in (agent, hub):
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    sh("edge-agent", "status", cwd=gateway)
    sh("meterhub", "--db", db, "reads", "status", cwd=work)
    sh("meterhub", "--db", db, "reads", "check-chain", "--collector", COLLECTOR, cwd=work)
    return last


def step_cycle(work: Path) -> str:
    """The billing office imports the CIS's files and asks which meters lack a read."""
    console.rule("7. The billing office imports the CIS files and reconciles cycle C2026-11")
    db = f"sqlite:///{work / 'hub.sqlite'}"
    for kind in ("accounts", "meters", "cycles", "routes"):
        sh("meterhub", "--db", db, "import", kind, str(MASTER_DATA / f"{kind}.csv"), cwd=work)
    sh("meterhub", "--db", db, "cycle", "reconcile", "C2026-11", "--report", "reconcile.csv",
       cwd=work)
    sh("meterhub", "--db", db, "cycle", "reread", "C2026-11", "--collector", "hh-01", "--out",
       "reread-route.json", "--no-publish", cwd=work)
    missing = sum(1 for row in csv.DictReader((work / "reconcile.csv").open())
                  if row["status"] == "missing")
    console.print(f"  {missing} meters missing: their re-read route for handheld hh-01 is in "
                  "reread-route.json (the handheld itself joins the demo in a later issue)")
    return str(missing)


DECISIONS = {
    ("spike", "spike"): ("reject", "7 times the usual use in a month: send a technician"),
    ("tamper", "meter_alarm"): ("accept", "field service checked the terminal cover seal: "
                                          "intact, alarm reset"),
    ("stuck", "stuck_register"): ("estimate", "register stuck for three cycles; meter "
                                              "exchange ordered (work order 4471)"),
    ("zero", "zero_consumption"): ("accept", "customer abroad since September, confirmed "
                                             "by phone"),
    ("backward", "negative_consumption"): ("override", "misread: the technician's photo of "
                                                       "the dial shows 412 kWh used"),
}
"""What the billing office decides for each fault's main finding (the demo's operator)."""


def step_bill(work: Path) -> dict[str, str]:
    """The bills, and the cycle file the CIS gets, signed by the hub and checked."""
    console.rule("9. Bills and the CIS cycle file")
    db = f"sqlite:///{work / 'hub.sqlite'}"
    sh("meterhub", "keys", "generate", "--key", "hub.key", cwd=work)
    sh("meterhub", "keys", "export-public", "--key", "hub.key", "--out", "hub.pub", cwd=work)
    billed = sh("meterhub", "--db", db, "cycle", "bill", "C2026-11", cwd=work)
    export = ("meterhub", "--db", db, "cycle", "export", "C2026-11", "--key", "hub.key",
              "--out", "cis")
    sh(*export, cwd=work)
    sh("meterhub", "export", "verify", "cis/C2026-11.csv", "--public-key", "hub.pub", cwd=work)
    first = [(work / "cis" / name).read_bytes()
             for name in ("C2026-11.csv", "C2026-11.csv.manifest.json")]
    sh(*export, cwd=work)
    again = [(work / "cis" / name).read_bytes()
             for name in ("C2026-11.csv", "C2026-11.csv.manifest.json")]
    if again != first:
        raise SystemExit("demo step failed: a re-export differs from the first export")
    console.print("  exported again: byte-identical file and manifest")
    title = next(line for line in billed.stdout.splitlines() if "bills, total" in line)
    return {"bills": title.split(":", 1)[1].strip(), "file": str(work / "cis" / "C2026-11.csv")}


def _history(work: Path) -> Path:
    path = work / "history.csv"
    rows = write_history(path)
    console.print(f"  the CIS's billed reads of the last 12 cycles: {path.name}, {rows} rows")
    return path


def step_edits(work: Path) -> dict[str, int]:
    """The meter edits raise exceptions for the faults; an operator works them off."""
    console.rule("8. Meter edits: validate, estimate, work the exceptions queue")
    history = _history(work)
    db = f"sqlite:///{work / 'hub.sqlite'}"
    env = {"METERHUB_OPERATOR": "j.smith"}
    sh("meterhub", "--db", db, "import", "history", str(history), cwd=work)
    sh("meterhub", "--db", db, "cycle", "edits", "C2026-11", cwd=work)
    sh("meterhub", "--db", db, "exceptions", "list", "--cycle", "C2026-11", "--severity",
       "blocking", cwd=work)
    found = _open_exceptions(work, db)
    kinds = {rule for _, rule in found}
    decided = 0
    for (fault, rule), (action, reason) in DECISIONS.items():
        meter = next(m for m, f in FAULTS.items() if f == fault)
        exception_id = found.get((meter, rule))
        if exception_id is None:
            continue
        extra = _override_values(history, meter) if action == "override" else []
        sh("meterhub", "--db", db, "exceptions", "resolve", str(exception_id), "--action",
           action, "--reason", reason, *extra, cwd=work, env=env)
        decided += 1
        if action == "reject":
            sh("meterhub", "--db", db, "cycle", "reread", "C2026-11", "--collector", "hh-01",
               "--out", "reread-route-2.json", "--no-publish", cwd=work)
            sh("meterhub", "--db", db, "cycle", "edits", "C2026-11", cwd=work)
            waiting = _open_exceptions(work, db)[(meter, "awaiting_reread")]
            sh("meterhub", "--db", db, "exceptions", "resolve", str(waiting), "--action",
               "estimate", "--reason", "no technician free before the bill run; estimate now, "
               "true up on the next actual read", cwd=work, env=env)
            decided += 1
    rest = _open_exceptions(work, db, "blocking")
    for (meter, rule), exception_id in rest.items():
        if rule == "no_estimate":  # a meter new this cycle: nothing to estimate from
            sh("meterhub", "--db", db, "exceptions", "resolve", str(exception_id), "--action",
               "override", "--reason", "new meter, no history: the customer read the display "
               "to us by phone", "--value", _self_read(meter), cwd=work, env=env)
    accept = [i for (_, rule), i in rest.items() if rule != "no_estimate"]
    if accept:
        sh("meterhub", "--db", db, "exceptions", "resolve", *map(str, accept), "--action",
           "accept", "--reason", "reviewed with the route's technician: reads stand",
           cwd=work, env=env)
    held = sh("meterhub", "--db", db, "exceptions", "held", "C2026-11", cwd=work)
    if "no account held" not in held.stdout:
        raise SystemExit("demo step failed: accounts are still held out of billing")
    sh("meterhub", "--db", db, "audit", "--cycle", "C2026-11", "--by", "j.smith", cwd=work)
    return {"kinds": len(kinds), "decided": decided + len(rest),
            "estimated": sum(1 for _, rule in found if rule == "estimated_missing")}


def _open_exceptions(work: Path, db: str, severity: str | None = None
                     ) -> dict[tuple[str, str], int]:
    args = ["--severity", severity] if severity else []
    listed = sh("meterhub", "--db", db, "exceptions", "list", "--cycle", "C2026-11", "--json",
                *args, cwd=work, quiet=True)
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    return {(row["meter"], row["rule"]): row["id"] for row in rows}


def _self_read(meter: str) -> str:
    """What the meter's display shows on the scheduled read date (the customer's own read)."""
    spec = meter_specs()[meter]
    value = SimulatedMeter(spec, EPOCH).registers(SCHEDULED)[spec.total_register]
    return f"{spec.total_register}={value}"


def _override_values(history: Path, meter: str) -> list[str]:
    """The technician's dial photo: a month's plausible use past the last bill."""
    with history.open(encoding="utf-8") as handle:
        billed = [Decimal(r["value"]) for r in csv.DictReader(handle)
                  if r["meter_serial"] == meter and r["register"] == "energy_import_kwh"]
    return ["--value", f"energy_import_kwh={billed[-1] + 412}"]


def _background(cwd: Path, log: str, *args: str) -> subprocess.Popen[bytes]:
    console.print(f"[bold cyan]$ {' '.join(args)} &[/bold cyan]   (log: {cwd / log})")
    with (cwd / log).open("ab") as output:
        return subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=cwd, stdout=output,
                                stderr=output)


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``process`` logs ``text`` (the hub has subscribed), so no batch goes unheard."""
    deadline = time.monotonic() + 30
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo step failed: no '{text}' in {log}")
        time.sleep(0.1)


def _hub_url(log: Path) -> str:
    """The address ``meterhub serve --http-port 0`` says it serves the API on."""
    found = re.search(r"API and operator pages on (http://\S+)", log.read_text(errors="replace"))
    if found is None:
        raise SystemExit(f"demo step failed: the hub did not say where its API is ({log})")
    return found.group(1).rstrip(".,)")


INGEST_METRICS = ("meterhub_reads_ingested_total", "meterhub_batches_total",
                  "meterhub_reads_rejected_total", "meterhub_ingest_latency_seconds_count",
                  "meterhub_reads_pending_verification")


def _show_metrics(hub_url: str, token: str) -> None:
    """Scrape the hub's /metrics as Prometheus would (with its viewer token) and show ingest."""
    request = urllib.request.Request(f"{hub_url}/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    console.print(f"  GET {hub_url}/metrics (a viewer token, as Prometheus scrapes it):")
    for line in text.splitlines():
        if line.startswith(INGEST_METRICS):
            console.print(f"    {line}")


def _wait_verified(work: Path, db: str) -> None:
    """Until the hub's background verifier has checked every stored read's own signature."""
    with Store.open(db) as store:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with store.connect() as conn:
                pending = conn.execute(select(func.count()).select_from(reads)
                                       .where(reads.c.verify_status == "pending")).scalar_one()
            if not pending:
                return
            time.sleep(0.2)
    raise SystemExit("demo step failed: reads still unverified after 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the meterhub demo.")
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--power-cuts", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=REPO / "demo-run")
    parser.add_argument("--power-cut-child", nargs=3, metavar=("BUFFER", "KEY", "METERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.power_cut_child:
        buffer_path, key_path, meters_count = args.power_cut_child
        power_cut_child(buffer_path, key_path, int(meters_count))
        return

    started = time.perf_counter()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    gateway = work / COLLECTOR
    gateway.mkdir(parents=True)
    console.print(Panel.fit(
        "[bold]meterhub demo[/bold] — a gateway signs every read the moment it is taken,\n"
        "keeps it through power cuts, and the hub proves each one is genuine.",
        border_style="green"))
    step_keys(gateway)
    step_poll(gateway, args.meters, args.hours)
    step_power_cuts(gateway, args.power_cuts, args.meters)
    step_to_the_hub(work, gateway)
    step_forgery(work)
    synced = shutil.which("mosquitto") is not None
    reads = step_sync(work, gateway) if synced else step_ack(gateway)
    missing = step_cycle(work) if synced else "not reconciled (no Mosquitto: no reads at the hub)"
    edits = step_edits(work) if synced else None
    billing = step_bill(work) if synced else None

    summary = Table(title="what happened", show_header=False)
    summary.add_row("meters simulated", str(args.meters))
    summary.add_row("reads signed and chained", str(reads))
    summary.add_row("power cuts survived", f"{args.power_cuts} (no gap, no duplicate)")
    summary.add_row("forgeries caught", "1 of 1")
    summary.add_row("missing meters in cycle C2026-11", missing)
    if edits is not None:
        summary.add_row("meter edits", f"{edits['kinds']} kinds of exception, "
                        f"{edits['estimated']} missing meters estimated, {edits['decided']} "
                        "decisions on the audit log, no account held")
    if billing is not None:
        summary.add_row("bills", billing["bills"])
        summary.add_row("CIS cycle file", f"{billing['file']} (signed manifest verified, "
                        "re-export byte-identical)")
    summary.add_row("synced to the hub", "over MQTT, stored once, each signature verified"
                    if synced else "no (Mosquitto not installed)")
    summary.add_row("files", str(work))
    summary.add_row("took", f"{time.perf_counter() - started:.1f} s")
    console.print(summary)
    console.print("Next: the handheld re-reads the missing meters on its route page, and the "
                  "operator pages (see the README).", style="dim")


if __name__ == "__main__":
    main()
