"""``make demo``: the whole story of a billing cycle on one machine, with nothing but Python.

What happens (each command is printed before it runs, so any step can be
repeated by hand; every file stays in ``demo-run/``):

1. The hub and its broker: the gateway ``gw-0001`` and the handheld ``hh-01``
   get signing keys and are enrolled at the hub; the broker is a private
   Mosquitto with the passwords and ACL ``meterhub broker-config`` writes, or —
   where Mosquitto is not installed — the embedded amqtt broker (anonymous, on
   loopback: the demo says so). ``meterhub serve`` ingests, verifies and serves
   the API and the operator pages; an operator login and tokens are made.
2. A fleet of simulated meters (``meter-sim fleet``) speaks the real protocols
   on real sockets and pseudo-terminals: Modbus TCP, Modbus RTU on three RS-485
   buses, IEC 62056-21 optical and DSMR P1, some with faults; the gateway
   (``edge-agent run``) polls it with the production drivers, signs every read
   and syncs it over MQTT; the handheld (``edge-agent route``) waits for a route.
3. Meanwhile the billing office imports the CIS's files and billing history.
4. Power cuts: the gateway is killed with ``kill -9`` while it polls and syncs,
   and restarted; its hash chain survives and the hub stores every read once.
5. The gateway's reads travel to the hub as a file, are verified there, and a
   one-digit forgery is caught.
6. The hub has stored every read once, one unbroken chain, each signature checked.
7. The operator reconciles the cycle through the API: the meters out of the
   gateway's reach are missing, and go to the handheld as a re-read route.
8. A scripted technician walks that route on the handheld's own page (HTTP):
   probes the optical meter, keys what the dials show, reports a dog; the
   handheld signs and syncs each read and the missing meters drop to none.
9. The meter edits raise exceptions for the faults; the operator decides each.
10. Bills; the signed cycle file for the CIS, verified, re-exported byte-identical.
11. Prometheus scrapes the hub's ``/metrics``.

What is real: every meterhub process and command, the protocol drivers, the
serial and TCP links (pseudo-terminals and loopback sockets), MQTT through a
real broker, SQLite stores, Ed25519 signatures, HTTP to the hub's API and the
handheld's page. What is simulated: the meters (``meter-sim``, driven by the
same firmware profiles), the technician's taps (a script posting the page's
forms; the dials it "reads" come from the same meter model), the operator's
clicks (API requests with an operator token, as the pages send), and the
calendar: the sample utility (``demo/master_data/``) is re-dated so that the
cycle being read is the one whose read window is open today (see
``demo/demo_utility.py``). Meters run at real speed, so a month's use comes
from the billing history, not from the minute the fleet runs.

By default the demo stops everything it started and exits, saying how to serve
the operator pages again; with ``--serve`` it keeps the hub serving them until
Ctrl-C. Ctrl-C at any point stops every process the demo started.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from demo_field import Operator, Technician, Visit
from demo_processes import (
    Broker,
    DemoFailed,
    Registry,
    choose_broker,
    log_has,
    start_amqtt,
    start_mosquitto,
    sweep,
    wait_for,
)
from demo_utility import FAULTS, P1_PILOT, PROBE_METER, TROUBLE, Utility, utility_for
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from edge_agent.buffer import EdgeBuffer
from hub.store import Store
from hub.store.tables import reads
from protocols.mqtt_contract import PLAIN_READS_SUBSCRIPTION, SHARED_READS_SUBSCRIPTION
from simulators.private_broker import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GATEWAY = "gw-0001"
HANDHELD = "hh-01"
OPERATOR = "j.smith"
LOGIN = "demo"
PIDFILE = "demo.pids"
console = Console(width=100)
STARTED = time.monotonic()


def heading(title: str) -> None:
    """A step's heading, with the time since the demo started."""
    elapsed = int(time.monotonic() - STARTED)
    console.rule(f"{title}  [dim]{elapsed // 60}:{elapsed % 60:02d}[/dim]")


DECISIONS = {
    ("spike", "spike"): ("reject", "100 000 kWh in a month: the register glitched; send a "
                                   "technician"),
    ("tamper", "meter_alarm"): ("accept", "field service checked the terminal cover seal: "
                                          "intact, alarm reset"),
    ("stuck", "stuck_register"): ("estimate", "register stuck for three cycles; meter "
                                              "exchange ordered (work order 4471)"),
    ("zero", "zero_consumption"): ("accept", "customer abroad since September, confirmed "
                                             "by phone"),
    ("backward", "negative_consumption"): ("override", "misread last cycle: the technician's "
                                                       "photo of the dial shows 412 kWh used"),
}
"""What the billing office decides for each fault's main finding (the demo's operator)."""


@dataclass
class Command:
    args: tuple[str, ...]
    cwd: Path
    expect_failure: bool = False
    quiet: bool = False
    env: dict[str, str] | None = None


def shown(args: tuple[str, ...] | list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def sh_all(*commands: Command) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at once; show each (in order) with what it printed."""
    started = []
    try:
        for c in commands:
            started.append(subprocess.Popen(
                [str(BIN / c.args[0]), *c.args[1:]], cwd=c.cwd, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                env={**os.environ, "COLUMNS": "96", "NO_COLOR": "1", **(c.env or {})}))
        results = []
        for c, process in zip(commands, started, strict=True):
            output, _ = process.communicate()
            if not c.quiet:
                console.print(f"[bold cyan]$ {shown(c.args)}[/bold cyan]", highlight=False,
                              soft_wrap=True)
                for line in output.rstrip().splitlines():
                    console.print(f"  {line}", highlight=False, markup=False)
            if (process.returncode != 0) != c.expect_failure:
                raise DemoFailed(f"{shown(c.args)} exited {process.returncode}:\n{output[-2000:]}")
            results.append(subprocess.CompletedProcess(c.args, process.returncode, output, ""))
        return results
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def sh(*args: str, cwd: Path, expect_failure: bool = False, quiet: bool = False,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one meterhub command as a person would, showing it and what it printed."""
    return sh_all(Command(args, cwd, expect_failure, quiet, env))[0]


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@dataclass
class Demo:
    args: argparse.Namespace
    work: Path
    registry: Registry
    utility: Utility
    db: str = ""
    broker: Broker | None = None
    hub_url: str = ""
    hub: subprocess.Popen[bytes] | None = None
    serve_args: list[str] = field(default_factory=list)
    fleet: subprocess.Popen[bytes] | None = None
    street: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    page_url: str = ""
    operator: Operator | None = None
    route: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    """What happened, for the summary."""

    @property
    def gateway(self) -> Path:
        return self.work / GATEWAY

    @property
    def handheld(self) -> Path:
        return self.work / HANDHELD

    @property
    def cycle(self) -> str:
        return self.utility.cycle.id

    def meterhub(self, *args: str, **kwargs: Any) -> Command:
        return Command(("meterhub", "--db", self.db, *args), self.work, **kwargs)

    # --- 0. the meters start first: nothing else depends on them --------------------------

    def start_fleets(self) -> None:
        fleet = self.utility.gateway_fleet(self.args.poll_interval)
        (self.work / "fleet.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
        (self.work / "street.yaml").write_text(yaml.safe_dump(self.utility.street_fleet(),
                                                              sort_keys=False))
        self.gateway.mkdir(parents=True)
        self.handheld.mkdir(parents=True)
        self.fleet = self.background(
            "fleet.log", "meter-sim", "fleet", "-c", str(self.work / "fleet.yaml"),
            "--agent-config", str(self.gateway / "meters.toml"),
            "--manifest", str(self.work / "fleet.json"), show=False)
        self.street = self.background(
            "street.log", "meter-sim", "fleet", "-c", str(self.work / "street.yaml"),
            "--manifest", str(self.work / "street.json"), show=False)

    def background(self, log: str, *args: str, cwd: Path | None = None,
                   show: bool = True) -> subprocess.Popen[bytes]:
        cwd = cwd or self.work
        if show:
            console.print(f"[bold cyan]$ {shown(args)} &[/bold cyan]   [dim](log: {cwd / log})"
                          "[/dim]", highlight=False, soft_wrap=True)
        return self.registry.spawn(args[0], [str(BIN / args[0]), *args[1:]], cwd=cwd,
                                   log=cwd / log)

    # --- 1. the hub and its broker --------------------------------------------------------

    def step_hub(self) -> None:
        heading("1. The hub, its broker, and who may talk to them")
        work, gw, hh = self.work, self.gateway, self.handheld
        self.db = f"sqlite:///{work / 'hub.sqlite'}"
        sh_all(Command(("edge-agent", "keys", "generate", "--key", "collector.key"), gw),
               Command(("edge-agent", "keys", "generate", "--key", "collector.key"), hh),
               self.meterhub("db", "upgrade"),
               Command(("meterhub", "keys", "generate", "--key", "hub.key"), work))
        sh_all(Command(("edge-agent", "keys", "export-public", "--key", "collector.key", "--out",
                        f"../{GATEWAY}.pub"), gw),
               Command(("edge-agent", "keys", "export-public", "--key", "collector.key", "--out",
                        f"../{HANDHELD}.pub"), hh),
               Command(("meterhub", "keys", "export-public", "--key", "hub.key", "--out",
                        "hub.pub"), work))
        password = secrets.token_urlsafe(12)
        secret_file(work / f"{LOGIN}.password", password)
        self.facts["login"] = (LOGIN, password)
        sh_all(*(self.meterhub("collectors", "add", "--id", collector, "--public-key",
                               f"{collector}.pub", "--broker-password-file",
                               f"{collector}/mqtt.password") for collector in (GATEWAY, HANDHELD)),
               self.meterhub("users", "add", LOGIN, "--role", "operator", "--password-file",
                             f"{LOGIN}.password"),
               self.meterhub("tokens", "create", OPERATOR, "--role", "operator", "--out",
                             "operator.token"),
               self.meterhub("tokens", "create", "prometheus", "--role", "viewer", "--out",
                             "prometheus.token"))
        kind = choose_broker(self.args.broker)
        if kind == "mosquitto":
            sh(*self.meterhub("broker-config", "--out", "broker", "--hub-password-file",
                              "hub.password").args, cwd=work)
            self.broker = start_mosquitto(self.registry, work / "broker-run",
                                          work / "broker" / "passwd", work / "broker" / "acl",
                                          SHARED_READS_SUBSCRIPTION)
            console.print(f"  a private Mosquitto on 127.0.0.1:{self.broker.port} with that "
                          "passwd and acl: each collector may publish only its own reads")
        else:
            self.broker = start_amqtt(self.registry, work / "broker-run", BIN / "amqtt",
                                      PLAIN_READS_SUBSCRIPTION)
            console.print(Panel(
                f"Mosquitto is not installed here, so the embedded [bold]amqtt[/bold] broker "
                f"stands in on 127.0.0.1:{self.broker.port}: QoS 1 and retained messages, but no "
                "shared subscriptions (the hub subscribes to meterhub/v1/+/reads) and [bold]no "
                "passwords or ACL[/bold]: any local process may connect. The hub still refuses "
                "any read a collector it trusts did not sign. In production: Mosquitto with "
                "the passwd and acl `meterhub broker-config` writes.", border_style="yellow",
                title="embedded broker"))
        broker_args = ["--broker-port", str(self.broker.port)]
        if self.broker.secured:
            broker_args += ["--broker-password-file", str(work / "hub.password")]
        self.serve_args = [
            "--db", self.db, "serve", *broker_args, "--subscription", self.broker.subscription,
            "--hub-key", str(work / "hub.key"), "--exports-dir", str(work / "exports")]
        self.hub = self.background("hub.log", "meterhub", "--log-level", "info",
                                   *self.serve_args, "--http-port", "0",
                                   "--verifier-processes", "1")
        wait_for("the hub to subscribe to the broker",
                 lambda: log_has(work / "hub.log", "subscribed to"), timeout=60,
                 process=self.hub, log=work / "hub.log")
        found = re.search(r"API and operator pages on (http://\S+)",
                          (work / "hub.log").read_text(errors="replace"))
        if found is None:
            raise DemoFailed(f"the hub did not say where it serves its API ({work / 'hub.log'})")
        self.hub_url = found.group(1).rstrip(".,)")
        self.operator = Operator(self.hub_url, (work / "operator.token").read_text().strip(),
                                 console)
        console.print(f"  the hub serves its API and operator pages on {self.hub_url}")

    # --- 2. the fleet, the gateway, the handheld ------------------------------------------

    def step_fleet(self) -> None:
        heading("2. Simulated meters on real wires; the gateway polls them, signs, syncs")
        work = self.work
        wait_for("the simulated fleet to start", lambda: (self.gateway / "meters.toml").exists()
                 and (work / "street.json").exists(), timeout=60, process=self.fleet,
                 log=work / "fleet.log")
        for args in (("-c", str(work / "fleet.yaml"), "--agent-config",
                      str(self.gateway / "meters.toml"), "--manifest", str(work / "fleet.json")),
                     ("-c", str(work / "street.yaml"), "--manifest", str(work / "street.json"))):
            console.print(f"[bold cyan]$ {shown(('meter-sim', 'fleet', *args))} &[/bold cyan]",
                          highlight=False, soft_wrap=True)
        manifest = json.loads((work / "fleet.json").read_text())
        table = Table(title=f"{len(manifest['meters'])} simulated meters the gateway polls "
                      "(fleet.yaml)", show_lines=False)
        for column in ("protocol", "meters", "wire", "faults"):
            table.add_column(column)
        wires = {"modbus_tcp": "a TCP port each on 127.0.0.1",
                 "modbus_rtu": "RS-485 buses on pseudo-terminals: rs485-a, rs485-b, rs485-water",
                 "iec62056_21": "an optical head each (pseudo-terminal), 300 baud → 9600",
                 "dsmr_p1": "a P1 port each (pseudo-terminal), a telegram a second"}
        for protocol, wire in wires.items():
            members = [m for m in manifest["meters"] if m["protocol"] == protocol]
            faults = ", ".join(f"{m['serial']}: {'/'.join(m['faults'])}" for m in members
                               if m["faults"])
            count = str(len(members))
            if protocol == "dsmr_p1":
                count += f" (+{len(P1_PILOT)} gas on M-Bus)"
            table.add_row(protocol, count, wire, faults or "—")
        console.print(table)
        console.print(f"  Out of the gateway's reach: {self.unreached()} — the handheld's job. "
                      f"The P1 ports are a pilot the CIS does not bill yet (on no route).")
        self.facts["fleet"] = len(manifest["meters"]) + len(P1_PILOT)

        sync = (f'port = {self.broker.port}\npassword_file = "mqtt.password"\n'  # type: ignore[union-attr]
                "linger_s = 0.2\nbatch_size = 200\nack_timeout_s = 5\nbackoff_min_s = 0.5\n"
                "backoff_max_s = 2\nstatus_interval_s = 5\n")
        (self.gateway / "edge-agent.toml").write_text(
            f'collector = "{GATEWAY}"\n\n[key]\npath = "collector.key"\n\n[buffer]\n'
            'path = "buffer.sqlite"\nbudget_mb = 64\n\n[collection]\nretries = 2\n'
            f"retry_backoff_s = 0.2\n\n[sync]\n{sync}\n"
            + (self.gateway / "meters.toml").read_text())
        self.start_agent()
        street = json.loads((work / "street.json").read_text())
        probe_port = street["meters"][0]["endpoint"]
        (self.handheld / "edge-agent.toml").write_text(
            f'collector = "{HANDHELD}"\n\n[key]\npath = "collector.key"\n\n[buffer]\n'
            f'path = "buffer.sqlite"\nbudget_mb = 16\n\n[sync]\n{sync}\n[handheld]\n'
            f'listen_host = "127.0.0.1"\nlisten_port = {free_port()}\n'
            f'routes_path = "routes.sqlite"\nprobe_protocol = "iec62056_21"\n'
            f'probe_port = "{probe_port}"\ndefault_profile = "landis-gyr-zmd310"\n')
        handheld = self.background("handheld.log", "edge-agent", "--log-level", "info", "route",
                                   "-c", str(self.handheld / "edge-agent.toml"),
                                   cwd=self.handheld)
        log = self.handheld / "handheld.log"
        wait_for("the handheld's route page", lambda: log_has(log, "route page at"),
                 timeout=60, process=handheld, log=log)
        found = re.search(r"route page at (http://\S+)", log.read_text(errors="replace"))
        self.page_url = found.group(1) if found else ""
        console.print(f"  the handheld {HANDHELD} is on, its probe on the optical meter "
                      f"{PROBE_METER}'s port ({probe_port}); its page: {self.page_url}")

    def unreached(self) -> str:
        missing = [m.serial for m in self.utility.meters.values() if m.route and not m.reachable]
        gas = [s for s in missing if s.startswith("GAS")]
        return ", ".join([s for s in missing if not s.startswith("GAS")]
                         + [f"{len(gas)} gas meters (no link at all)"])

    def start_agent(self, quiet: bool = False) -> None:
        log = self.gateway / "agent.log"
        offset = log.stat().st_size if log.exists() else 0
        self.agent = self.background("agent.log", "edge-agent", "--log-level", "info", "run",
                                     "-c", str(self.gateway / "edge-agent.toml"),
                                     cwd=self.gateway, show=not quiet)
        wait_for("the gateway agent to start",
                 lambda: b"running (key" in log.read_bytes()[offset:], timeout=60,
                 process=self.agent, log=log)
        self.facts.setdefault("agent_first_start", time.monotonic())

    # --- 3. the CIS's files ---------------------------------------------------------------

    def step_cis(self) -> None:
        cycle = self.utility.cycle
        heading("3. Meanwhile, the billing office loads the CIS's files")
        directory = self.work / "cis-files"
        paths = self.utility.write_master_data(directory)
        history = directory / "history.csv"
        rows = self.utility.write_history(history)
        console.print(
            f"  The sample utility (demo/master_data/) re-dated to today: cycle [bold]{cycle.id}"
            f"[/bold] is read {cycle.window_start} … {cycle.window_end} (scheduled today), the "
            f"12 cycles before it are billed history ({rows} rows), and route R04 adds the "
            f"optical meters. Files: {directory}", highlight=False)
        sh_all(self.meterhub("import", "accounts", str(paths["accounts"])),
               self.meterhub("import", "cycles", str(paths["cycles"])))
        sh(*self.meterhub("import", "meters", str(paths["meters"])).args, cwd=self.work)
        sh_all(self.meterhub("import", "routes", str(paths["routes"])),
               self.meterhub("import", "history", str(history)))

    # --- 4. power cuts ----------------------------------------------------------------------

    def step_power_cuts(self) -> None:
        cuts = self.args.power_cuts
        times = "once" if cuts == 1 else f"{cuts} times"
        heading(f"4. Power cuts: kill -9 the gateway while it polls and syncs, {times}")
        rng = random.Random()
        for cut in range(1, cuts + 1):
            time.sleep(rng.uniform(1.0, 2.5))
            assert self.agent is not None
            self.registry.power_cut(self.agent)
            with EdgeBuffer(self.gateway / "buffer.sqlite", collector=GATEWAY) as buffer:
                buffer.check_tip()
                tip, acked = buffer.tip().seq, buffer.tip_acked()
            resend = (f"; the {tip - acked} not yet acked go again after the restart"
                      if tip > acked else "")
            console.print(f"  power cut {cut}: killed; the buffer reopens at seq {tip}, newest "
                          f"read intact and signed (hub has acked {acked}){resend}")
            self.start_agent(quiet=True)
        window_end = self.facts["agent_first_start"] + self.args.poll_seconds
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            total = max(int(window_end - time.monotonic()), 1)
            polling = progress.add_task("gateway poll window (s)", total=total)
            acked = progress.add_task("reads acked by the hub", total=1)

            def show() -> tuple[int, int]:
                tip, done = self.buffer_state()
                left = max(int(window_end - time.monotonic()), 0)
                progress.update(polling, completed=total - min(left, total))
                progress.update(acked, total=max(tip, 1), completed=done)
                return tip, done

            while time.monotonic() < window_end:
                show()
                time.sleep(0.25)
            wire_log = (self.gateway / "agent.log").read_text(errors="replace")
            # The window is over: the meters go quiet, the gateway sends what it holds, stops.
            assert self.fleet is not None
            self.registry.stop(self.fleet)
            settled = 0
            deadline = time.monotonic() + 60
            while settled < 3:
                tip, done = show()
                settled = settled + 1 if done == tip else 0
                if time.monotonic() > deadline:
                    raise DemoFailed(f"the hub acked only {done} of {tip} reads in 60 s (logs: "
                                     f"{self.gateway / 'agent.log'}, {self.work / 'hub.log'})")
                time.sleep(0.3)
            assert self.agent is not None
            self.registry.stop(self.agent)
            tip, done = show()
        if done < tip:
            raise DemoFailed(f"the gateway stopped with reads {done + 1}–{tip} unacked")
        self.facts["gateway_reads"] = tip
        console.print(f"  the gateway polled for {self.args.poll_seconds:.0f} s; the meters went "
                      f"quiet and it stopped: {tip} reads signed, every one acked by the hub")
        self.show_wire(wire_log)
        sh("edge-agent", "buffer", "verify", cwd=self.gateway)

    def show_wire(self, log: str) -> None:
        """The fleet's faults as the gateway met them: failed attempts, flags on the reads."""
        failed: dict[str, dict[str, int]] = {}
        for meter, kind in re.findall(r"meter (\S+): poll attempt \d+/\d+ failed \[(\w+)\]",
                                      log):
            failed.setdefault(meter, {}).setdefault(kind, 0)
            failed[meter][kind] += 1
        with Store.open(self.db) as store, store.connect() as conn:
            rows = conn.execute(select(reads.c.meter, reads.c.flags).where(
                reads.c.collector == GATEWAY, reads.c.meter.in_(list(FAULTS))))
            kept: dict[str, int] = {}
            flags: dict[str, set[str]] = {}
            for meter, read_flags in rows:
                kept[meter] = kept.get(meter, 0) + 1
                flags.setdefault(meter, set()).update(read_flags)
        table = Table(title="the faulty meters, as the gateway met them on the wire "
                      "(agent.log, reads at the hub)")
        for column in ("meter", "fault", "failed attempts", "reads kept", "flags on the reads"):
            table.add_column(column)
        for meter, fault in FAULTS.items():
            if not self.utility.meters[meter].reachable:
                continue
            attempts = ", ".join(f"{n} {kind}" for kind, n in failed.get(meter, {}).items())
            table.add_row(meter, fault, attempts or "0", str(kept.get(meter, 0)),
                          ", ".join(sorted(flags.get(meter, ()))) or "—")
        console.print(table)
        console.print("  (stuck, zero and backward lie between bills: the billing history "
                      "shows them, and the meter edits will catch them)", style="dim")

    def buffer_state(self) -> tuple[int, int]:
        with EdgeBuffer(self.gateway / "buffer.sqlite", collector=GATEWAY) as buffer:
            return buffer.tip().seq, buffer.tip_acked()

    # --- 5. the evidence as a file, and a forgery ------------------------------------------

    def step_evidence(self) -> None:
        heading("5. The reads travel as a file and are verified; one forged digit is caught")
        work = self.work
        sh("edge-agent", "buffer", "export", "--from-seq", "1", "--out", f"../{GATEWAY}.batch.json",
           cwd=self.gateway)
        lines = (work / f"{GATEWAY}.batch.json").read_text().splitlines()
        batch = json.loads(lines[0])
        seq, before, after = forge_one_digit(batch)
        lines[0] = json.dumps(batch)
        (work / "forged.batch.json").write_text("\n".join(lines) + "\n")
        console.print(f"  a copy with one digit changed, forged.batch.json: seq {seq}: "
                      f"{before} → {after}")
        sh_all(Command(("meterhub", "verify", f"{GATEWAY}.batch.json", "--public-key",
                        f"{GATEWAY}.pub"), work),
               Command(("meterhub", "verify", "forged.batch.json", "--public-key",
                        f"{GATEWAY}.pub"), work, expect_failure=True))

    # --- 6. exactly once ------------------------------------------------------------------------

    def step_stored(self) -> None:
        heading("6. At the hub: every read stored once, one unbroken chain, each signature "
                     "checked")
        self.wait_verified()
        sh_all(self.meterhub("reads", "status"),
               self.meterhub("reads", "check-chain", "--collector", GATEWAY))

    def wait_verified(self) -> None:
        """Until the hub's background verifier has checked every stored read's own signature."""
        with Store.open(self.db) as store:
            def checked() -> bool:
                with store.connect() as conn:
                    return not conn.execute(select(func.count()).select_from(reads).where(
                        reads.c.verify_status == "pending")).scalar_one()
            wait_for("the hub's verifier to check every read", checked, timeout=120,
                     process=self.hub, log=self.work / "hub.log", every=0.2)

    def stored(self) -> dict[str, int]:
        with Store.open(self.db) as store, store.connect() as conn:
            rows = conn.execute(select(reads.c.source, func.count()).group_by(reads.c.source))
            return {source: count for source, count in rows}

    # --- 7. reconcile and the re-read route ------------------------------------------------

    def step_reconcile(self) -> None:
        heading(f"7. Which meters of cycle {self.cycle} still lack a read? Send a handheld")
        assert self.operator is not None
        result = self.operator.run(self.cycle, "reconcile", why="the dashboard's Reconcile button")
        self.show_reconciliation(result)
        self.facts["missing_before"] = result["counts"].get("missing", 0)
        route = self.operator.post(f"/cycles/{self.cycle}/reread", {"collector": HANDHELD},
                                   why="Missing reads → Send re-read route")
        table = Table(title=f"route {route['route_id']}: {len(route['stops'])} meters, "
                      f"published (retained) to meterhub/v1/{HANDHELD}/routes")
        for column in ("#", "meter", "address", "previous", "low", "high"):
            table.add_column(column)
        for stop in route["stops"]:
            table.add_row(str(stop["sequence"]), stop["meter"], stop["address"] or "",
                          stop["previous_value"] or "—", stop["low"] or "—", stop["high"] or "—")
        console.print(table)
        self.route = route

    def show_reconciliation(self, result: dict[str, Any]) -> None:
        table = Table(title=f"cycle {self.cycle}: {result['meters']} meters")
        statuses = ("read", "missing", "trouble", "estimated", "inactive")
        for column in ("route", *statuses, "done"):
            table.add_column(column, justify="left" if column == "route" else "right")
        for route in result["routes"]:
            table.add_row(route["route"], *(str(route["counts"].get(s, 0)) for s in statuses),
                          f"{route['done']:.0%}")
        console.print(table)

    # --- 8. the technician ----------------------------------------------------------------

    def step_technician(self) -> None:
        heading(f"8. The technician walks route {self.route['route_id']} on the handheld")
        technician = Technician(self.page_url)
        try:
            technician.wait_for_route(self.route["route_id"])
            console.print(f"  the handheld has the route; the technician opens {self.page_url}/ "
                          "and takes the stops in walk order")
            stops = self.route["stops"]
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console) as progress:
                task = progress.add_task("stops done", total=len(stops))

                def done(visit: Visit) -> None:
                    progress.advance(task)

                visits = technician.walk(
                    self.route["route_id"], stops, probe_meter=PROBE_METER, trouble=TROUBLE,
                    dials=lambda meter: self.utility.dials(meter, datetime.now(UTC)),
                    progress=done)
        finally:
            technician.close()
        table = Table(title=f"what the technician did (each a signed read on {HANDHELD})")
        for column in ("#", "meter", "how", "value / trouble"):
            table.add_column(column)
        for visit in visits:
            table.add_row(str(visit.sequence), visit.meter, visit.how,
                          visit.value + (f" — {visit.note}" if visit.note else ""))
        console.print(table)
        self.facts["visits"] = visits
        buffer_path = self.handheld / "buffer.sqlite"

        def synced() -> bool:
            with EdgeBuffer(buffer_path, collector=HANDHELD) as buffer:
                return buffer.tip_acked() >= buffer.tip().seq >= len(visits)

        wait_for("the handheld's reads to reach the hub", synced, timeout=60,
                 log=self.handheld / "handheld.log", every=0.2)
        self.wait_verified()
        console.print(f"  {len(visits)} reads synced from {HANDHELD}, stored and verified; "
                      "reconciling again:")
        assert self.operator is not None
        result = self.operator.run(self.cycle, "reconcile")
        self.show_reconciliation(result)
        self.facts["missing_after"] = result["counts"].get("missing", 0)
        self.facts["trouble"] = result["counts"].get("trouble", 0)
        console.print(f"  missing meters: {self.facts['missing_before']} → "
                      f"{self.facts['missing_after']}")

    # --- 9. meter edits -----------------------------------------------------------------------

    def step_edits(self) -> None:
        heading("9. Meter edits: validate, estimate, work the exceptions queue")
        operator = self.operator
        assert operator is not None
        operator.run(self.cycle, "edits", why="the dashboard's Meter edits button")
        found = self.open_exceptions()
        self.show_exceptions(found)
        raised = {row["id"] for row in found}
        decided = 0
        by_key = {(row["meter"], row["rule"]): row["id"] for row in found}
        for (fault, rule), (action, reason) in DECISIONS.items():
            meter = next(m for m, f in FAULTS.items() if f == fault)
            exception_id = by_key.get((meter, rule))
            if exception_id is None:
                continue
            body: dict[str, Any] = {"action": action, "reason": reason}
            if action == "override":
                body["values"] = self.override_values(meter)
            operator.post(f"/exceptions/{exception_id}/resolve", body, why=f"{meter}: {rule}")
            decided += 1
            if action == "reject":
                operator.run(self.cycle, "edits", why="the rejected read leaves the meter "
                             "awaiting a re-read")
                waiting = {(r["meter"], r["rule"]): r["id"] for r in self.open_exceptions()}
                raised |= set(waiting.values())
                operator.post(f"/exceptions/{waiting[(meter, 'awaiting_reread')]}/resolve",
                              {"action": "estimate", "reason": "no technician free before the "
                               "bill run; estimate now, true up on the next actual read"},
                              why=f"{meter}: awaiting_reread")
                decided += 1
        for _ in range(100):  # the rest of the queue, most severe first
            left = self.open_exceptions()
            if not left:
                break
            row = left[0]  # one decision may close others of the same meter: ask again
            operator.post(f"/exceptions/{row['id']}/resolve", self.decision(row),
                          why=f"{row['meter']}: {row['rule']}")
            decided += 1
        else:
            raise DemoFailed("the exceptions queue does not empty")
        self.facts["exceptions"] = (len(raised), decided)
        held = sh(*self.meterhub("exceptions", "held", self.cycle).args, cwd=self.work)
        if "no account held" not in held.stdout:
            raise DemoFailed("accounts are still held out of billing")
        audit = sh(*self.meterhub("audit", "--cycle", self.cycle, "--json").args, cwd=self.work,
                   quiet=True)
        console.print(f"[bold cyan]$ {shown(self.meterhub('audit', '--cycle', self.cycle).args)}"
                      "[/bold cyan]", highlight=False, soft_wrap=True)
        table = Table(title="the audit log of the cycle: who decided what, and why")
        for column in ("id", "at (UTC)", "who", "action", "meter", "reason"):
            table.add_column(column, overflow="ellipsis", no_wrap=True)
        for line in audit.stdout.splitlines():
            entry = json.loads(line)
            reason = entry.get("reason") or ""
            table.add_row(str(entry["id"]), entry["at"][11:19], entry["actor"], entry["action"],
                          entry.get("meter") or "",
                          reason if len(reason) <= 60 else reason[:59] + "…")
        console.print(table)

    def decision(self, row: dict[str, Any]) -> dict[str, Any]:
        """What the operator decides on the rest of the queue (past the faults' main findings)."""
        if row["rule"] in ("no_estimate", "estimation_limit"):
            return {"action": "override", "reason": "no history to estimate from: the customer "
                    "read the display to us by phone",
                    "values": {self.utility.meters[row["meter"]].spec.total_register:
                               str(self.utility.dials(row["meter"], datetime.now(UTC)))}}
        reasons = {
            "inactive_consumption": "a new tenant moved in; reactivation sent to the CIS",
            "estimated_missing": "the technician could not reach the meter: the estimate stands",
            "high_usage": "reviewed with the customer: the use is real",
        }
        return {"action": "accept",
                "reason": reasons.get(row["rule"], "reviewed with the route's technician: the "
                                                   "read stands")}

    def open_exceptions(self) -> list[dict[str, Any]]:
        assert self.operator is not None
        return self.operator.items("/exceptions", cycle=self.cycle, status="open")

    def show_exceptions(self, rows: list[dict[str, Any]]) -> None:
        table = Table(title=f"{len(rows)} open exceptions (GET /api/v1/exceptions?cycle="
                      f"{self.cycle}&status=open)")
        for column in ("id", "meter", "rule", "severity", "finding"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(str(row["id"]), row["meter"], row["rule"], row["severity"],
                          row["message"][:60])
        console.print(table)

    def override_values(self, meter: str) -> dict[str, str]:
        """The technician's dial photo: a month's plausible use past the last bill."""
        import csv

        with (self.work / "cis-files" / "history.csv").open(encoding="utf-8") as handle:
            billed = [Decimal(r["value"]) for r in csv.DictReader(handle)
                      if r["meter_serial"] == meter and r["register"] == "energy_import_kwh"]
        return {"energy_import_kwh": str(billed[-1] + 412)}

    # --- 10. bills and the cycle file --------------------------------------------------------

    def step_bill(self) -> None:
        heading("10. Bills, and the cycle file for the CIS: signed, verified, reproducible")
        operator = self.operator
        assert operator is not None
        operator.run(self.cycle, "bill", why="the dashboard's Bill button")
        bills = operator.items("/bills", cycle=self.cycle)
        total = sum((Decimal(b["total"]) for b in bills), Decimal(0))
        currency = bills[0]["currency"] if bills else ""
        by_rate: dict[str, int] = {}
        for bill in bills:
            by_rate[bill["rate_code"]] = by_rate.get(bill["rate_code"], 0) + 1
        console.print(f"  {len(bills)} bills, total {total:,.2f} {currency} ("
                      + ", ".join(f"{code}: {n}" for code, n in sorted(by_rate.items())) + ")")
        self.facts["bills"] = (len(bills), f"{total:,.2f} {currency}")
        first = operator.run(self.cycle, "export", why="the Exports page's Export button")
        path = self.work / "exports" / str(first["export_id"]) / first["file"]
        console.print(f"  {path.relative_to(self.work)}: {first['rows']} rows, sha256 "
                      f"{first['sha256'][:16]}…, and its signed manifest")
        sh("meterhub", "export", "verify", str(path), "--public-key", "hub.pub", cwd=self.work)
        again = operator.run(self.cycle, "export", why="export the same cycle again")
        second = self.work / "exports" / str(again["export_id"]) / again["file"]
        manifest = ".manifest.json"
        if (path.read_bytes(), Path(f"{path}{manifest}").read_bytes()) != \
                (second.read_bytes(), Path(f"{second}{manifest}").read_bytes()):
            raise DemoFailed("a re-export differs from the first export")
        console.print("  exported again: byte-identical file and manifest")
        self.facts["export"] = path

    # --- 11. metrics ------------------------------------------------------------------------

    def step_metrics(self) -> None:
        heading("11. Prometheus scrapes the hub")
        import httpx

        token = (self.work / "prometheus.token").read_text().strip()
        text = httpx.get(f"{self.hub_url}/metrics", headers={"Authorization": f"Bearer {token}"},
                         timeout=30).text
        console.print(f"  GET {self.hub_url}/metrics (a viewer token, as Prometheus scrapes it):")
        for line in text.splitlines():
            if line.startswith(INGEST_METRICS) and not (
                    "{" in line and line.rsplit(" ", 1)[-1] in ("0", "0.0")):
                console.print(f"    {line}", highlight=False)

    # --- the end ------------------------------------------------------------------------------

    def tell(self, started: float) -> None:
        """The whole story, step by step."""
        self.start_fleets()
        self.step_hub()
        self.step_fleet()
        self.step_cis()
        self.step_power_cuts()
        self.step_evidence()
        self.step_stored()
        self.step_reconcile()
        self.step_technician()
        self.step_edits()
        self.step_bill()
        self.step_metrics()
        self.summary(started)

    def summary(self, started: float) -> None:
        stored = self.stored()
        visits: list[Visit] = self.facts["visits"]
        raised, resolved = self.facts["exceptions"]
        bills, total = self.facts["bills"]
        login, password = self.facts["login"]
        table = Table(title="what happened", show_header=False)
        table.add_row("meters", f"{self.facts['fleet'] + 1} simulated, on their real protocols: "
                      f"{self.facts['fleet']} polled by {GATEWAY} (4 of them gas on M-Bus), 1 "
                      f"read by the handheld's probe; {len(visits)} stops on its route")
        table.add_row("reads at the hub", f"{sum(stored.values())} stored once, each signature "
                      f"verified ({stored.get('ami', 0)} from the gateway, "
                      f"{sum(n for s, n in stored.items() if s != 'ami')} from the handheld)")
        table.add_row("power cuts survived", f"{self.args.power_cuts} (kill -9; no gap, no "
                      "duplicate)")
        table.add_row("forgeries caught", "1 of 1")
        table.add_row(f"missing in {self.cycle}", f"{self.facts['missing_before']} → "
                      f"{self.facts['missing_after']} after "
                      f"{sum(v.how != 'trouble' for v in visits)} re-reads "
                      f"({sum(v.how == 'probe' for v in visits)} by probe) and "
                      f"{sum(v.how == 'trouble' for v in visits)} trouble report")
        table.add_row("exceptions", f"{raised} raised, every one resolved by {resolved} "
                      "decisions on the audit log; no account held")
        table.add_row("bills", f"{bills}, total {total}")
        table.add_row("CIS cycle file", f"{self.facts['export']} (signed manifest verified, "
                      "re-export byte-identical)")
        table.add_row("broker", f"{self.broker.kind}" + ("" if self.broker.secured else  # type: ignore[union-attr]
                      " (embedded; no passwords or ACL)"))
        table.add_row("files", f"{self.work}/ (logs: *.log)")
        table.add_row("operator pages", f"{self.hub_url}/ " + (
            "(served until Ctrl-C)" if self.args.serve else "(closed with the demo: to serve "
            "them again, see below)"))
        table.add_row("operator login", f"{login} / {password}")
        table.add_row("still running", "the hub and the broker, until Ctrl-C" if self.args.serve
                      else "nothing, once the demo exits: it stops every process it started")
        table.add_row("took", f"{time.perf_counter() - started:.0f} s")
        console.print(table)

    def how_to_serve_again(self) -> None:
        command = shown([str(BIN / "meterhub"), "--db", self.db, "serve", "--http-port", "8080",
                         "--hub-key", str(self.work / "hub.key"), "--exports-dir",
                         str(self.work / "exports")])
        console.print(Panel(
            "Everything the demo started is stopped. To open the operator pages on this cycle "
            f"again (login {self.facts['login'][0]}, password in {self.work / 'demo.password'}), "
            "run the command below, browse http://127.0.0.1:8080/ and stop it with Ctrl-C (its "
            "ingest looks for a broker on 127.0.0.1:1883 and waits; the pages work without one). "
            "Or run the demo with --serve.", title="the hub again", border_style="green"))
        console.print(command, highlight=False, soft_wrap=True)


INGEST_METRICS = ("meterhub_reads_ingested_total", "meterhub_batches_total",
                  "meterhub_reads_rejected_total", "meterhub_ingest_latency_seconds_count",
                  "meterhub_reads_pending_verification", "meterhub_exceptions_open",
                  "meterhub_collectors{")


def forge_one_digit(batch: dict[str, Any]) -> tuple[int, str, str]:
    """Raise the hundreds digit of the first register of some read, in place."""
    for entry in batch["reads"]:
        read = json.loads(entry["b"])
        for name, register in read["values"].items():
            value = register["value"]
            point = value.index(".") if "." in value else len(value)
            if point < 3:
                continue
            digit = point - 3
            forged = value[:digit] + str((int(value[digit]) + 1) % 10) + value[digit + 1:]
            entry["b"] = entry["b"].replace(f'"value":"{value}"', f'"value":"{forged}"', 1)
            return read["seq"], f"{name}={value}", forged
    raise DemoFailed("no read with a register of three integer digits to forge")


def interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the meterhub demo: a billing cycle, end "
                                     "to end, on this machine.")
    parser.add_argument("--workdir", type=Path, default=REPO / "demo-run",
                        help="Where every file goes (emptied first). Default: demo-run/.")
    parser.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                        help="auto: Mosquitto when installed, else the embedded amqtt.")
    parser.add_argument("--poll-seconds", type=float, default=30,
                        help="How long the gateway polls the fleet (power cuts included).")
    parser.add_argument("--poll-interval", type=float, default=5,
                        help="Seconds between two polls of a meter.")
    parser.add_argument("--power-cuts", type=int, default=3)
    parser.add_argument("--serve", action="store_true",
                        help="Keep the hub serving the operator pages after the summary, until "
                        "Ctrl-C.")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    work = args.workdir.resolve()
    swept = sweep(work / PIDFILE, str(work))
    if swept:
        console.print(f"stopped {len(swept)} processes an interrupted demo left running in {work}",
                      style="yellow")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    registry = Registry(work / PIDFILE)
    demo = Demo(args, work, registry, utility_for(datetime.now(UTC)))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, interrupted)
    code = 0
    console.print(Panel.fit(
        "[bold]meterhub demo[/bold] — meters read over their real protocols, every read signed "
        "where it is taken,\nsynced once, reconciled, re-read by a handheld, edited, billed, and "
        f"exported for the CIS.\nCycle {demo.cycle}; files in {work}; Ctrl-C stops everything.",
        border_style="green"))
    try:
        demo.tell(started)
        if args.serve:
            stop_all_but_the_hub(demo)
            console.print(Panel(
                f"The hub keeps serving the operator pages on {demo.hub_url}/ — login "
                f"{demo.facts['login'][0]} / {demo.facts['login'][1]}. Press Ctrl-C to stop it "
                "(and the broker).", border_style="green", title="serving"))
            while True:
                signal.pause()
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping every process the demo started …", style="yellow")
        code = 0 if args.serve and "bills" in demo.facts else 130
    except DemoFailed as exc:
        console.print(f"demo step failed: {exc}", style="bold red", highlight=False)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if demo.operator is not None:
            demo.operator.close()
        registry.close()
    if code == 0 and not args.serve:
        demo.how_to_serve_again()
    elif code == 0:
        console.print("stopped.")
    return code


def stop_all_but_the_hub(demo: Demo) -> None:
    """For --serve: the fleet and the agents have done their part; the hub and broker stay."""
    keep = {demo.hub.pid} if demo.hub else set()
    for process in list(demo.registry.processes.values()):
        if process.pid not in keep and "amqtt" not in str(process.args):
            demo.registry.stop(process)


if __name__ == "__main__":
    sys.exit(main())
