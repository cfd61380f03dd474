"""The background verifier: every stored read's own signature, checked on every core.

Ingest checks one signature per batch and lets the hash chain vouch for the
rest (DESIGN.md, "the read"). That proves the batch came from the collector,
but a read is evidence on its own only once its own signature and canonical
form are checked — and billing takes ``verify_status = 'ok'`` reads only
(:data:`hub.store.reads.billable_reads`). So this loop takes pending reads in
id order, spreads the Ed25519 checks over a process pool (a check is CPU
work the GIL would serialise), and records each verdict. A failure marks the
read ``failed``, copies it to the quarantine with the reason, and raises an
alarm: a collector signed bytes that do not verify, which means a broken or
compromised collector, or a read altered after it was signed.

Several hub workers may run verifiers on one store: a verdict is recorded
only on a read still pending, so a read is never settled twice.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from hub.store import Store
from hub.store.collectors import Collector, get_collector
from hub.store.reads import (
    add_to_quarantine,
    pending_verification,
    record_failed,
    record_verified,
)
from protocols.canonical import decode_read
from protocols.errors import ReadError, WrongKeyError
from protocols.signing import load_public_key, verify_signature

log = logging.getLogger(__name__)

CHUNK = 4000
"""Reads per round: large enough to keep every core busy, small enough to commit often."""
IDLE_S = 2.0

Job = tuple[int, bytes, bytes, str | None]
"""(read id, signed bytes, signature, PEM of the key enrolled for its seq or None)."""
Verdict = tuple[int, str | None, str | None]
"""(read id, failure reason or None, failure message or None)."""


def verify_jobs(jobs: Sequence[Job]) -> list[Verdict]:
    """Check each read's canonical form and own signature (runs in a pool process)."""
    keys: dict[str, object] = {}
    verdicts: list[Verdict] = []
    for read_id, data, sig, pem in jobs:
        try:
            if pem is None:
                raise WrongKeyError("its key is not enrolled for its seq")
            key = keys.get(pem) or keys.setdefault(pem, load_public_key(pem.encode("ascii")))
            decode_read(data)
            verify_signature(key, data, sig)  # type: ignore[arg-type]
        except ReadError as exc:
            verdicts.append((read_id, exc.reason, exc.message))
        else:
            verdicts.append((read_id, None, None))
    return verdicts


@dataclass(frozen=True)
class Round:
    verified: int
    failed: int

    @property
    def checked(self) -> int:
        return self.verified + self.failed


class BackgroundVerifier:
    """Verifies pending reads until none are left; ``run`` keeps doing so until stopped."""

    def __init__(
        self, store: Store, *, processes: int | None = None, chunk: int = CHUNK,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.processes = max(1, processes or os.cpu_count() or 1)
        self.chunk = chunk
        self._clock = clock
        self._pool: Executor | None = None

    def __enter__(self) -> BackgroundVerifier:
        if self.processes > 1:
            # spawn, not fork: the hub has broker and database threads a fork would copy mid-call
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def run(self, stop: threading.Event, *, idle_s: float = IDLE_S) -> None:
        with self:
            while not stop.is_set():
                try:
                    done = self.verify_pending(stop=stop)
                except Exception:
                    log.exception("background verifier round failed; retrying")
                    done = Round(0, 0)
                if not done.checked:
                    stop.wait(idle_s)

    def verify_pending(self, *, stop: threading.Event | None = None) -> Round:
        """Verify every read pending now (and any stored meanwhile); return the tally."""
        verified = failed = 0
        after_id = 0
        while stop is None or not stop.is_set():
            with self.store.connect() as conn:
                rows = pending_verification(conn, after_id=after_id, limit=self.chunk)
                collectors: dict[str, Collector] = {}
                jobs: list[Job] = []
                for row in rows:
                    collector = collectors.get(row.collector)
                    if collector is None:
                        collector = collectors[row.collector] = get_collector(conn, row.collector)
                    key = collector.key_for(row.key_id, row.seq)
                    jobs.append((row.id, row.data, row.sig, key.public_key_pem if key else None))
            if not jobs:
                break
            after_id = jobs[-1][0]
            verdicts = self._check(jobs)
            ok, bad = self._record(verdicts, {row.id: row for row in rows})
            verified, failed = verified + ok, failed + bad
        if verified or failed:
            log.info("background verifier: %d reads verified, %d failed", verified, failed)
        return Round(verified, failed)

    def _check(self, jobs: list[Job]) -> list[Verdict]:
        if self._pool is None:
            return verify_jobs(jobs)
        share = -(-len(jobs) // self.processes)
        parts = [jobs[i:i + share] for i in range(0, len(jobs), share)]
        return [v for part in self._pool.map(verify_jobs, parts) for v in part]

    def _record(self, verdicts: list[Verdict], rows: dict) -> tuple[int, int]:
        at = self._clock()
        good = [read_id for read_id, reason, _ in verdicts if reason is None]
        failures = [(read_id, reason, message) for read_id, reason, message in verdicts
                    if reason is not None]
        with self.store.begin() as conn:
            ok = record_verified(conn, good, at=at)
            bad = 0
            for read_id, reason, message in failures:
                row = rows[read_id]
                if not record_failed(conn, read_id, error=f"{reason}: {message}", at=at):
                    continue
                bad += 1
                add_to_quarantine(
                    conn, topic="(background verifier)", reason=reason or "invalid_read",
                    detail=f"stored read failed verification: {message}; it can never be billed",
                    raw=row.data, collector=row.collector, first_seq=row.seq,
                    last_seq=row.seq, received_at=at,
                )
                log.error("ALARM %s seq %d: stored read failed verification (%s): %s; "
                          "quarantined, it can never be billed", row.collector, row.seq,
                          reason, message)
        return ok, bad
