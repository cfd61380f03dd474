"""Backlog drain: a gateway back after days offline empties its buffer into the hub.

A gateway that lost its link for a week holds hundreds of thousands of
signed reads. This measures how long the real sync client takes to get
every one of them stored at the hub and acked: edge buffer → private
Mosquitto → ``meterhub serve`` (SQLite) → ack → buffer. The limit printed
beside it is the aim (1 000 000 reads in 30 s); the default run drains
200 000 and scales, ``--full`` drains the million.

Building the buffer means signing every read (≈ 30 µs each); that is done
once and kept in ``bench/out/buffer-bench-backlog-<count>/`` for later runs,
each of which drains a fresh copy. ``--postgres`` drains into a fresh
PostgreSQL database instead of a SQLite file; ``--workers N`` runs N hub
processes on the shared subscription (one gateway's chain is extended by one
of them at a time: see ``bench/ingest_workers.py`` for several gateways).
"""

from __future__ import annotations

import argparse
import shutil
from contextlib import ExitStack
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import Progress

from bench.harness import OUT as BENCH_OUT
from bench.harness import Figure, Headline, Result, finish
from bench.mqtt_rig import broker_and_hub, drain, fill_buffer, fresh_postgres
from edge_agent.buffer import EdgeBuffer
from hub.store.collectors import add_collector
from protocols.signing import Signer

OUT = BENCH_OUT / "backlog"
AIM_READS, AIM_SECONDS = 1_000_000, 30.0
SMALL_READS = 200_000
COLLECTOR = "bench-backlog"


def prepared_buffer(count: int, progress: Progress,
                    collector: str = COLLECTOR) -> tuple[Path, Signer]:
    """A kept buffer of ``count`` unacked reads and its signer (built on first use)."""
    cache = BENCH_OUT / f"buffer-{collector}-{count}"
    cache.mkdir(parents=True, exist_ok=True)
    key = cache / "signer.raw"
    if key.exists() and (cache / "edge.sqlite").exists():
        return cache / "edge.sqlite", Signer(Ed25519PrivateKey.from_private_bytes(
            key.read_bytes()))
    signer = Signer.generate()
    fill_buffer(cache / "edge.sqlite", collector, signer, count, progress).close()
    key.write_bytes(signer.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption()))
    key.chmod(0o600)
    return cache / "edge.sqlite", signer


def fresh_copy(source: Path, target: Path) -> None:
    """Copy a kept buffer (and its WAL, if any) over ``target``: a backlog nobody drained."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="drain 1 000 000 reads")
    parser.add_argument("--reads", type=int, help="reads in the backlog (default 200 000)")
    parser.add_argument("--workers", type=int, default=1,
                        help="hub ingest processes sharing the subscription")
    parser.add_argument("--postgres", action="store_true",
                        help="a fresh PostgreSQL database (METERHUB_BENCH_PG) instead of SQLite")
    args = parser.parse_args(argv)
    count = args.reads or (AIM_READS if args.full else SMALL_READS)
    console = Console(width=120)
    with Progress(console=console) as progress, ExitStack() as stack:
        source, signer = prepared_buffer(count, progress)
        url = stack.enter_context(fresh_postgres()) if args.postgres else None
        with broker_and_hub(OUT, workers=args.workers, url=url) as (broker, store):
            with store.begin() as conn:
                add_collector(conn, COLLECTOR, signer.public_key)
            fresh_copy(source, OUT / "edge.sqlite")
            with EdgeBuffer(OUT / "edge.sqlite", collector=COLLECTOR) as buffer:
                seconds = drain(buffer, broker.port, timeout=1800, progress=progress)
    rate = count / seconds
    projected = AIM_READS / rate
    store_kind = "PostgreSQL" if args.postgres else "SQLite"
    return finish("backlog", "Backlog drain", [
        Figure("backlog drained and acked", count, "reads",
               f"{args.workers} hub worker{'s' if args.workers > 1 else ''}, {store_kind}"),
        Figure("time to drain", seconds, "s"),
        Figure("drain rate", rate, "reads/s"),
        Figure(f"{AIM_READS:,} reads at this rate", projected, "s",
               "measured" if count == AIM_READS else f"scaled from {count:,}"),
        Figure(f"aim: {AIM_READS:,} reads", AIM_SECONDS, "s", "the issue's limit"),
        Figure("aim ÷ projected time", AIM_SECONDS / projected, "ratio", "≥ 1 meets the aim"),
    ], full=args.full, console=console,
        headline=Headline(f"{AIM_READS:,} reads at this rate", f"aim: {AIM_READS:,} reads",
                          "aim ÷ projected time", aim=1.0))


if __name__ == "__main__":
    main()
