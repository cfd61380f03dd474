"""Verify a batch file of signed reads the way the hub verifies reads arriving over MQTT.

A handheld with no link, or a gateway's buffer pulled off a dead box, reaches
the hub as a file (``edge-agent buffer export``). Before the hub believes a
single number in it, every read's bytes must be canonical, every signature
must verify against the collector's enrolled key, and the reads must form one
unbroken chain. A file may hold one batch or several, one per line.

Example::

    report = verify_batch_file(Path("gw-0001.batch.json"), public_key)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.batch import Batch, decode_batch
from protocols.canonical import decode_read
from protocols.chain import GENESIS_TIP, ChainTip, SignedRead, verify_chain
from protocols.errors import BatchError
from protocols.read import Read


@dataclass(frozen=True)
class FileVerification:
    """What a verified file holds, for the operator's summary."""

    collector: str
    reads: int
    first_seq: int
    last_seq: int
    anchored: bool
    """True when the chain was checked from genesis or from a tip the caller trusted."""
    meters: int
    first_read_at: datetime
    last_read_at: datetime


def read_batches(path: Path) -> Iterator[Batch]:
    """The batches in ``path``: one JSON envelope per non-empty line (or one in all)."""
    content = path.read_bytes()
    lines = [line for line in content.splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            yield decode_batch(line)
        except BatchError as exc:
            exc.message = f"{path}, line {number}: {exc.message}"
            exc.args = (str(exc),)
            raise


def verify_batch_file(
    path: Path, public_key: Ed25519PublicKey, *, after: ChainTip | None = None
) -> FileVerification:
    """Verify every read in ``path``; raise the first problem as a typed ``ReadError``.

    Without ``after``, a file starting at seq 1 is checked from genesis; one
    starting later is checked from its first read's own ``prev_hash`` (reported
    as not anchored: the reads before it are not in the file).
    """
    signed: list[SignedRead] = []
    collector: str | None = None
    for batch in read_batches(path):
        if collector is not None and batch.collector != collector:
            raise BatchError(
                f"{path} mixes collectors {collector!r} and {batch.collector!r}",
                collector=batch.collector,
            )
        collector = batch.collector
        signed.extend(batch.reads)
    if not signed:
        raise BatchError(f"{path} holds no reads")
    anchored = after is not None
    if after is None:
        first = decode_read(signed[0].data)
        anchored = first.seq == 1
        after = GENESIS_TIP if anchored else ChainTip(first.seq - 1, first.prev_hash)
    reads: list[Read] = verify_chain(signed, public_key, collector=collector, after=after)
    return FileVerification(
        collector=reads[0].collector,
        reads=len(reads),
        first_seq=reads[0].seq,
        last_seq=reads[-1].seq,
        anchored=anchored,
        meters=len({r.meter for r in reads}),
        first_read_at=min(r.read_at for r in reads),
        last_read_at=max(r.read_at for r in reads),
    )
