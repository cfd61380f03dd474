"""Backlog drain: a gateway back after days offline empties its buffer into the hub.

A gateway that lost its link for a week holds hundreds of thousands of
signed reads. This measures how long the real sync client takes to get
every one of them stored at the hub and acked: edge buffer → private
Mosquitto → ``meterhub serve`` (SQLite) → ack → buffer. The limit printed
beside it is the aim (1 000 000 reads in 30 s); the default run drains
200 000 and scales, ``--full`` drains the million.

Building the buffer means signing every read (≈ 30 µs each); that is done
once and kept in ``bench/out/backlog/`` for later runs, each of which drains
a fresh copy.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import Progress

from bench.harness import Figure, machine, print_figures
from bench.mqtt_rig import broker_and_hub, drain, fill_buffer
from edge_agent.buffer import EdgeBuffer
from hub.store.collectors import add_collector
from protocols.signing import Signer

OUT = Path("bench/out/backlog").resolve()
AIM_READS, AIM_SECONDS = 1_000_000, 30.0


def prepared_buffer(count: int, progress: Progress) -> tuple[Path, Signer]:
    """A kept buffer of ``count`` unacked reads and its signer (built on first use)."""
    cache = OUT.parent / f"backlog-{count}"
    cache.mkdir(parents=True, exist_ok=True)
    key = cache / "signer.raw"
    if key.exists() and (cache / "edge.sqlite").exists():
        return cache / "edge.sqlite", Signer(Ed25519PrivateKey.from_private_bytes(
            key.read_bytes()))
    signer = Signer.generate()
    fill_buffer(cache / "edge.sqlite", "bench-backlog", signer, count, progress).close()
    key.write_bytes(signer.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption()))
    key.chmod(0o600)
    return cache / "edge.sqlite", signer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="drain 1 000 000 reads")
    parser.add_argument("--reads", type=int, help="reads in the backlog")
    parser.add_argument("--workers", type=int, default=1,
                        help="hub ingest processes sharing the subscription")
    args = parser.parse_args()
    count = args.reads or (AIM_READS if args.full else 200_000)
    console = Console(width=120)
    with Progress(console=console) as progress:
        source, signer = prepared_buffer(count, progress)
        with broker_and_hub(OUT, workers=args.workers) as (broker, store):
            with store.begin() as conn:
                add_collector(conn, "bench-backlog", signer.public_key)
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{source}{suffix}").exists():
                    shutil.copy(f"{source}{suffix}", OUT / f"edge.sqlite{suffix}")
            with EdgeBuffer(OUT / "edge.sqlite", collector="bench-backlog") as buffer:
                seconds = drain(buffer, broker.port, timeout=1800, progress=progress)
    rate = count / seconds
    projected = AIM_READS / rate
    print_figures(f"Backlog drain — {machine()}", [
        Figure("backlog drained and acked", count, "reads",
               f"{args.workers} hub worker{'s' if args.workers > 1 else ''}"),
        Figure("time to drain", seconds, "s"),
        Figure("drain rate", rate, "reads/s"),
        Figure("1 000 000 reads at this rate", projected, "s", f"aim ≤ {AIM_SECONDS:.0f} s"),
        Figure("aim ÷ projected time", AIM_SECONDS / projected, "ratio", "≥ 1 meets the aim"),
    ], console)


if __name__ == "__main__":
    main()
