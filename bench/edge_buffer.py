"""Signed durable appends per second, against the cost of the signature itself.

Every read is signed once (Ed25519) before it is buffered, so the pure sign
rate of the same reads is the ceiling an edge buffer can approach; a raw
``executemany`` of the same rows, unsigned, into the same kind of SQLite file
(WAL, synchronous=FULL) shows what storage alone costs. The figure that
matters is appends ÷ sign rate: how little the buffer adds beyond the
signature (aim ≥ 0.8 at batch 1000).

    python -m bench.edge_buffer            # 20 000 reads per run
    python -m bench.edge_buffer --full     # 200 000 reads per run
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from bench.harness import OUT, Figure, Headline, Result, finish, machine, median_rate
from edge_agent.buffer import EdgeBuffer
from protocols.chain import GENESIS_TIP, sign_and_chain
from protocols.read import ClockQuality, Reading, RegisterValue, Source
from protocols.signing import Signer
from simulators.meter_model import MeterSpec, Service, SimulatedMeter

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


def fleet_readings(count: int, meters: int = 200) -> list[Reading]:
    """``count`` realistic readings: a fleet polled every 15 minutes, TOU registers."""
    fleet = [SimulatedMeter(MeterSpec(f"SDM630-{n:06d}", Service.ELECTRIC, tou=True, seed=n),
                            EPOCH) for n in range(meters)]
    readings = []
    for index in range(count):
        meter = fleet[index % meters]
        at = EPOCH + timedelta(minutes=15 * (index // meters))
        registers = meter.registers(at)
        readings.append(Reading(
            meter=meter.spec.serial,
            read_at=meter.meter_time(at),
            collected_at=at,
            clock=ClockQuality(ntp_synced=True, meter_offset_s=Decimal("0.000")),
            source=Source.AMI,
            values={name: RegisterValue(value, "kWh", None) for name, value in registers.items()},
        ))
    return readings


def measure(readings: list[Reading], batch: int, workdir: Path, repeats: int) -> list[Figure]:
    signer = Signer.generate()
    count = len(readings)
    batches = [readings[i:i + batch] for i in range(0, count, batch)]
    state: dict[str, object] = {}

    def fresh_buffer() -> None:
        if "buffer" in state:
            state["buffer"].close()  # type: ignore[attr-defined]
        shutil.rmtree(workdir / "buf", ignore_errors=True)
        state["buffer"] = EdgeBuffer(workdir / "buf" / "buffer.sqlite", collector="bench-gw",
                                     signer=signer, budget_bytes=2**40, min_free_bytes=0)

    def append_all() -> None:
        buffer: EdgeBuffer = state["buffer"]  # type: ignore[assignment]
        for chunk in batches:
            buffer.append(chunk)

    appends = median_rate(count, append_all, repeats=repeats, setup=fresh_buffer)
    buffer: EdgeBuffer = state["buffer"]  # type: ignore[assignment]
    sealed = list(buffer.reads())
    buffer.close()
    signed_bytes = [s.data for s in sealed]

    def sign_all() -> None:
        sign = signer.sign
        for data in signed_bytes:
            sign(data)

    sign_rate = median_rate(count, sign_all, repeats=repeats)

    def chain_all() -> None:
        tip = GENESIS_TIP
        for chunk in batches:
            _, tip = sign_and_chain(chunk, signer=signer, collector="bench-gw", after=tip)

    chained = median_rate(count, chain_all, repeats=repeats)

    rows = [(s.seq, s.data) for s in sealed]
    row_batches = [rows[i:i + batch] for i in range(0, count, batch)]

    def fresh_raw() -> None:
        if "raw" in state:
            state["raw"].close()  # type: ignore[attr-defined]
        shutil.rmtree(workdir / "raw", ignore_errors=True)
        (workdir / "raw").mkdir()
        conn = sqlite3.connect(workdir / "raw" / "raw.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE reads (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        state["raw"] = conn

    def insert_all() -> None:
        conn: sqlite3.Connection = state["raw"]  # type: ignore[assignment]
        for chunk in row_batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO reads VALUES (?, ?)", chunk)
            conn.execute("COMMIT")

    raw = median_rate(count, insert_all, repeats=repeats, setup=fresh_raw)
    state["raw"].close()  # type: ignore[attr-defined]
    ratio = appends / sign_rate
    encode_us = 1e6 / chained - 1e6 / sign_rate
    storage_us = 1e6 / appends - 1e6 / chained
    return [
        Figure(f"signed durable appends, batch {batch}", appends, "reads/s",
               "sign + chain + commit (WAL, synchronous=FULL)"),
        Figure(f"pure Ed25519 sign, same reads, batch {batch} run", sign_rate, "reads/s",
               "the limit"),
        Figure(f"raw executemany, unsigned, batch {batch}", raw, "rows/s", "storage alone"),
        Figure(f"appends ÷ sign rate, batch {batch}", ratio, "ratio",
               "aim ≥ 0.8 at batch 1000" + (" ✓" if ratio >= 0.8 else "")),
        Figure(f"  of which encode + hash + chain, batch {batch}", encode_us, "µs/read",
               "sign_and_chain without storage, minus signing"),
        Figure(f"  of which storage, batch {batch}", storage_us, "µs/read",
               "insert + commit + bookkeeping"),
    ]


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20_000, help="reads per timed run")
    parser.add_argument("--full", action="store_true", help="200 000 reads per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--dir", type=Path, default=OUT,
                        help="where the SQLite files go (a real disk, not tmpfs)")
    args = parser.parse_args(argv)
    count = 200_000 if args.full else args.reads
    console = Console(width=120)
    console.print(f"[bold]edge buffer[/bold]: {count} reads per run, median of "
                  f"{args.repeats}; {machine()}")
    readings = fleet_readings(count)
    args.dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        for batch in (100, 1000):
            figures += measure(readings, batch, Path(workdir), args.repeats)
    return finish("edge_buffer", "Edge buffer: signed durable appends", figures,
                  full=args.full, console=console,
                  headline=Headline("signed durable appends, batch 1000",
                                    "pure Ed25519 sign, same reads, batch 1000 run",
                                    "appends ÷ sign rate, batch 1000", aim=0.8))


if __name__ == "__main__":
    main()
