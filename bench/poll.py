"""Polling throughput of the edge agent against a simulated fleet, and what it costs.

A gateway's agent runs as its own process; so does this benchmark's. A
``meter-sim fleet`` process serves 200 Modbus TCP meters and 20 pty meters
(two RS-485 Modbus RTU buses of eight meters each, two optical meters, two P1
ports); an ``edge-agent run`` process polls all of them back to back
(interval 50 ms) for the measured period, signing and buffering every read.
From outside we count the reads in its buffer and read its CPU time and peak
RSS from /proc.

The RS-485 figure is compared with the wire-time limit of the same
transactions at 9600 baud: request and response bytes × 11 bits / 9600 plus
the t3.5 silence before each frame. The serial lines here are ptys paced at
their baud (``pace: true``), so the ratio shows what the agent adds to the
line's own time (1.0 = the line is the only limit).

    python -m bench.poll                 # 20 s measured
    python -m bench.poll --full          # 120 s measured
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml
from rich.console import Console

from bench.harness import Figure, Headline, Result, finish
from firmware_profiles import get_profile
from protocols.channels import ModbusChannel
from protocols.modbus_plan import plan_blocks

TCP_METERS = 200
RTU_BUSES = 2
RTU_PER_BUS = 8
BAUD = 9600
BITS_PER_CHAR = 11
T35_S = 3.5 * BITS_PER_CHAR / BAUD
TCP_PROFILE = "eastron-sdm630"
RTU_PROFILE = "eastron-sdm120"


def fleet_file(path: Path) -> None:
    meters = [{"serial": f"TCP{n:04d}", "profile": TCP_PROFILE, "protocol": "modbus_tcp"}
              for n in range(TCP_METERS)]
    meters += [{"serial": f"RTU{b}{n:02d}", "profile": RTU_PROFILE, "protocol": "modbus_rtu",
                "bus": f"rs485-{b}", "unit_id": n + 1, "baudrate": BAUD}
               for b in range(RTU_BUSES) for n in range(RTU_PER_BUS)]
    meters += [{"serial": f"IEC{n}", "profile": "landis-gyr-zmd310", "protocol": "iec62056_21"}
               for n in range(2)]
    meters += [{"serial": f"P1{n}", "profile": "sagemcom-t210d", "protocol": "dsmr_p1",
                "gas_serial": f"G{n}"} for n in range(2)]
    path.write_text(yaml.safe_dump({"speed": 60, "pace": True, "meters": meters}))


def rtu_wire_limit_polls_per_s() -> tuple[float, int]:
    """Polls per second one 9600-baud bus could carry at best, and transactions per poll."""
    profile = get_profile(RTU_PROFILE)
    channels = [c for c in profile.channels if isinstance(c, ModbusChannel)]
    blocks = plan_blocks(channels, profile.modbus)
    seconds = 0.0
    for block in blocks:
        request, response = 8, 5 + 2 * block.count
        seconds += (request + response) * BITS_PER_CHAR / BAUD + 2 * T35_S
    return 1 / seconds, len(blocks)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def count_reads(buffer: Path) -> tuple[int, int]:
    """(all reads, reads of RTU meters) in the agent's buffer."""
    with sqlite3.connect(f"file:{buffer}?mode=ro", uri=True) as db:
        total = db.execute("SELECT count(*) FROM reads").fetchone()[0]
        rtu = db.execute(
            "SELECT count(*) FROM reads WHERE CAST(data AS TEXT) LIKE '%\"meter\":\"RTU%'"
        ).fetchone()[0]
    return total, rtu


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.stat().st_size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="measure 120 s instead of 20 s")
    parser.add_argument("--seconds", type=float, help="measured period")
    args = parser.parse_args(argv)
    seconds = args.seconds or (120.0 if args.full else 20.0)
    console = Console(width=120)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
        work = Path(tmp)
        fleet_file(work / "fleet.yaml")
        sections = work / "meters.toml"
        fleet = subprocess.Popen(
            [bin_dir / "meter-sim", "fleet", "-c", work / "fleet.yaml",
             "--agent-config", sections, "--poll-interval", "0.05"],
            stdout=subprocess.DEVNULL,
        )
        agent = None
        try:
            wait_for(sections)
            subprocess.run([bin_dir / "edge-agent", "keys", "generate", "--key",
                            work / "collector.key"], check=True, capture_output=True)
            (work / "edge-agent.toml").write_text(textwrap.dedent("""\
                collector = "bench-gw"
                [key]
                path = "collector.key"
                [collection]
                retries = 0
                tcp_lanes = 16
                """) + sections.read_text())
            agent = subprocess.Popen(
                [bin_dir / "edge-agent", "run", "-c", work / "edge-agent.toml"],
                stderr=subprocess.DEVNULL,
            )
            time.sleep(3)  # connect and warm up before measuring
            reads0, rtu0 = count_reads(work / "buffer.sqlite")
            cpu0, started = proc_cpu_s(agent.pid), time.monotonic()
            time.sleep(seconds)
            reads1, rtu1 = count_reads(work / "buffer.sqlite")
            cpu1, elapsed = proc_cpu_s(agent.pid), time.monotonic() - started
            peak_rss = proc_peak_rss_mib(agent.pid)
        finally:
            for process in (agent, fleet):
                if process is not None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
    reads, rtu_reads = reads1 - reads0, rtu1 - rtu0
    limit, transactions = rtu_wire_limit_polls_per_s()
    rtu_rate_per_bus = rtu_reads / elapsed / RTU_BUSES
    cpu_us = (cpu1 - cpu0) / max(reads, 1) * 1e6
    return finish("poll", f"Edge agent polling {TCP_METERS} TCP + 20 pty meters", [
        Figure("reads/s, whole fleet", reads / elapsed, "reads/s", f"{reads} reads in "
               f"{elapsed:.0f} s"),
        Figure("agent CPU per read", cpu_us, "µs/read",
               f"{cpu1 - cpu0:.1f} CPU-s = {100 * (cpu1 - cpu0) / elapsed:.0f}% of one core"),
        Figure("agent peak RSS", peak_rss, "MiB", "VmHWM"),
        Figure("RS-485 polls/s per bus", rtu_rate_per_bus, "polls/s",
               f"{RTU_PER_BUS} × {RTU_PROFILE} at {BAUD} baud, paced"),
        Figure("RS-485 wire-time limit", limit, "polls/s",
               f"{transactions} transactions/poll, bytes × 11 / {BAUD} + t3.5"),
        Figure("RS-485 measured ÷ wire limit", rtu_rate_per_bus / limit, "ratio",
               "1.0 = the line is the only limit"),
    ], full=args.full, console=console,
        headline=Headline("RS-485 polls/s per bus", "RS-485 wire-time limit",
                          "RS-485 measured ÷ wire limit"))


if __name__ == "__main__":
    main()
