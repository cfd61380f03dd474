"""Hub ingest: authenticate a collector's batch, store it exactly once, and say what to ack.

One batch, one transaction. The collector's row is locked first (so two hub
workers never extend one chain at once), then the batch is authenticated the
way DESIGN.md describes — each read's hash recomputed from the bytes as
received, each ``prev_hash`` linked to the read before it (the first to the
last read stored), seq continuity, every read's key enrolled for its seq,
and the Ed25519 signature of the last new read, which through the chain
vouches for the rest. New reads are inserted, the chain tip advanced and
anything refused quarantined with its reason, all in the same commit; only
then is the ack sent.

What is acked is what is stored: ``through_seq`` is the stored tip, and a
refused read is named in ``rejected`` but never acked, so the edge keeps its
copy (the refusal may be an attacker's or a bad link's doing, and the edge's
copy is the genuine one). A batch that starts beyond the stored tip is a
``seq_gap``: nothing is stored, the edge resends from the tip. A batch the
hub already holds byte for byte is ``replayed``: it changes nothing.

Example::

    ingestor = Ingestor(store)
    outcome = ingestor.ingest("meterhub/v1/gw-0001/reads", payload)
    publish(ack_topic(outcome.collector), encode_ack(outcome.ack))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from hub.read_row import read_row
from hub.store import Store
from hub.store.collectors import Collector, find_collector
from hub.store.reads import add_to_quarantine, advance_tip, insert_reads, stored_hashes
from protocols.batch import Batch, decode_batch
from protocols.chain import SignedRead
from protocols.errors import (
    BatchError,
    ChainError,
    ReadError,
    SeqRegressionError,
    SignatureError,
    WrongCollectorError,
    WrongKeyError,
)
from protocols.mqtt_contract import Ack, ContractError, Rejection, parse_topic
from protocols.signing import verify_signature

if TYPE_CHECKING:
    from hub.metrics import HubMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Why reads ``first_seq``…``last_seq`` of a batch were not stored."""

    reason: str
    detail: str
    first_seq: int
    last_seq: int

    @property
    def rejected(self) -> tuple[Rejection, ...]:
        """What the ack names: the seq range, or nothing when no seq could be read."""
        return (Rejection(self.first_seq, self.last_seq, self.reason),) if self.first_seq else ()


@dataclass(frozen=True)
class Verdict:
    """What authentication decided: rows to insert, reads already held, and any refusal."""

    new_rows: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    refusal: Refusal | None = None


@dataclass(frozen=True)
class IngestOutcome:
    """The result of one message: whom to ack (``None``: nobody can be addressed) and how."""

    collector: str | None
    ack: Ack | None
    stored: int = 0
    duplicates: int = 0
    refusal: Refusal | None = None


# --- the pure part: one batch against one collector's stored chain --------------------


class ConflictError(ChainError):
    """A read for a seq the hub already holds, with other bytes than the ones it holds."""

    reason = "conflict"


def authenticate(
    batch: Batch, collector: Collector, stored: Mapping[int, str], *, received_at: datetime,
) -> Verdict:
    """Decide which of ``batch``'s reads to store; ``stored`` maps held seqs to their hashes.

    Reads the hub already holds must be byte-identical to what it holds. New
    reads must continue the stored chain and be signed with a key enrolled
    for their seq; the last new read's signature must verify. When the
    chain breaks partway, the linked prefix is kept if its own last read's
    signature verifies (one more check), and the rest is refused.
    """
    if batch.first_seq > collector.last_seq + 1:
        return Verdict(refusal=Refusal(
            "seq_gap",
            f"batch starts at seq {batch.first_seq} but the hub holds {collector.id} only "
            f"through seq {collector.last_seq}", batch.first_seq, batch.last_seq,
        ))
    rows: list[dict[str, Any]] = []
    duplicates = 0
    link_hash = collector.last_hash
    problem: ReadError | None = None
    failed_seq = batch.first_seq
    for offset, signed in enumerate(batch.reads):
        seq = batch.first_seq + offset
        try:
            row = _checked_row(signed, seq, collector, received_at)
            if seq <= collector.last_seq:
                if stored.get(seq) != row["hash"]:
                    raise ConflictError(
                        "a different read is stored under this seq: the collector's chain "
                        "forked (a buffer restored from an old copy?) or this is a forgery",
                        collector=collector.id, seq=seq)
                duplicates += 1
            else:
                if row["prev_hash"] != link_hash:
                    raise ChainError(
                        "prev_hash does not match the hash of the read before it: a read was "
                        "altered, removed or reordered", collector=collector.id, seq=seq)
                rows.append(row)
            link_hash = row["hash"]
        except ReadError as exc:
            problem, failed_seq = exc, seq
            break
    if rows:
        last = rows[-1]
        if not _signature_holds(batch.reads[last["seq"] - batch.first_seq], last, collector):
            failed_seq = rows[0]["seq"]
            problem = _unauthenticated(last["seq"], collector.id, problem)
            rows = []
    if problem is not None:
        return Verdict(rows, duplicates, Refusal(problem.reason, str(problem), failed_seq,
                                                 batch.last_seq))
    if not rows:
        return Verdict(duplicates=duplicates, refusal=Refusal(
            "replayed", f"every read of seq {batch.first_seq}–{batch.last_seq} is already "
            "stored, byte for byte: a redelivery or a replay; nothing changed",
            batch.first_seq, batch.last_seq))
    return Verdict(rows, duplicates)


def _checked_row(signed: SignedRead, seq: int, collector: Collector,
                 received_at: datetime) -> dict[str, Any]:
    row = read_row(signed.data, signed.sig, received_at=received_at)
    if row["collector"] != collector.id:
        raise WrongCollectorError(f"read belongs to collector {row['collector']!r}",
                                  collector=collector.id, seq=seq)
    if row["seq"] != seq:
        raise SeqRegressionError(f"read carries seq {row['seq']} at the place of seq {seq}",
                                 collector=collector.id, seq=seq)
    if collector.key_for(row["key_id"], seq) is None:
        raise WrongKeyError(f"signed with key {row['key_id']}, which is not enrolled for "
                            f"{collector.id} at this seq", collector=collector.id, seq=seq)
    return row


def _signature_holds(signed: SignedRead, row: Mapping[str, Any], collector: Collector) -> bool:
    key = collector.key_for(row["key_id"], row["seq"])
    if key is None:
        return False
    try:
        verify_signature(key.public_key, signed.data, signed.sig)
    except ReadError:
        return False
    return True


def _unauthenticated(seq: int, collector: str, problem: ReadError | None) -> ReadError:
    """The refusal when the signature closing the new reads fails: nothing new is vouched for."""
    why = (f"the signature of seq {seq}, the last new read before the problem, does not "
           "verify, so none of the batch's new reads is authenticated")
    if problem is None:
        return SignatureError(f"{why} (bytes altered, or re-chained around an altered read)",
                              collector=collector, seq=seq)
    problem.message = f"{problem.message}; and {why}"
    problem.args = (str(problem),)
    return problem


# --- the shell: one message against the store -------------------------------------------


GAP_WAIT_S = 0.25
"""How long a batch that starts beyond the stored tip waits for the batches before it.

With several workers on the shared subscription, batch k+1 can reach the
store a moment before batch k, which another worker is still processing.
Answering ``seq_gap`` at once would make the edge resend both; waiting a
little first lets batch k commit. A batch whose predecessor really was lost
waits this long before its gap is reported."""
GAP_POLL_S = 0.01


class Ingestor:
    """Authenticates and stores batches; safe to run in several workers against one store."""

    def __init__(self, store: Store, *, gap_wait_s: float = GAP_WAIT_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 metrics: HubMetrics | None = None):
        """``metrics``: where every message's outcome, latency and read age are counted."""
        self.store = store
        self.gap_wait_s = gap_wait_s
        self._clock = clock
        self.metrics = metrics

    def ingest(self, topic: str, payload: bytes) -> IngestOutcome:
        if self.metrics is None:
            return self._ingest(topic, payload)
        started = time.perf_counter()
        try:
            outcome = self._ingest(topic, payload)
        except Exception:
            self.metrics.observe_failure(time.perf_counter() - started)
            raise
        self.metrics.observe_batch(outcome, time.perf_counter() - started)
        return outcome

    def _ingest(self, topic: str, payload: bytes) -> IngestOutcome:
        received_at = self._clock()
        try:
            collector_id, kind = parse_topic(topic)
            if kind != "reads":
                raise ContractError(f"{topic} is not a reads topic")
        except ContractError as exc:
            return self._refuse_unaddressed(topic, payload, str(exc), received_at)
        try:
            batch = decode_batch(payload)
        except BatchError as exc:
            return self._refuse(topic, payload, collector_id, received_at,
                                Refusal(exc.reason, str(exc), 0, 0))
        if batch.collector != collector_id:
            return self._refuse(topic, payload, collector_id, received_at, Refusal(
                "wrong_topic", f"a batch of collector {batch.collector} on {topic}: a collector "
                "publishes only under its own topic", batch.first_seq, batch.last_seq))
        deadline = time.monotonic() + self.gap_wait_s
        while True:
            outcome = self._store_batch(topic, payload, collector_id, batch, received_at)
            gap = outcome.refusal is not None and outcome.refusal.reason == "seq_gap"
            if not gap or time.monotonic() >= deadline:
                return self._logged(outcome, batch)
            time.sleep(GAP_POLL_S)

    def _store_batch(self, topic: str, payload: bytes, collector_id: str, batch: Batch,
                     received_at: datetime) -> IngestOutcome:
        """One attempt, one transaction: authenticate, insert, advance the tip, quarantine."""
        with self.store.begin() as conn:
            outcome, new_rows = self._store_in(conn, topic, payload, collector_id, batch,
                                               received_at)
        self._observe_age(new_rows, received_at)  # committed: count its age
        return outcome

    def _store_in(self, conn: Connection, topic: str, payload: bytes, collector_id: str,
                  batch: Batch, received_at: datetime
                  ) -> tuple[IngestOutcome, list[dict[str, Any]]]:
        """Authenticate, insert, advance the tip, quarantine — in the caller's transaction."""
        verdict = Verdict()
        collector = find_collector(conn, collector_id, lock=True)
        if collector is None or not collector.active:
            refusal: Refusal | None = _registry_refusal(collector_id, collector, batch)
            self._quarantine(conn, topic, payload, collector_id, refusal, received_at)
            through = collector.last_seq if collector else 0
        else:
            verdict = self._authenticate(conn, batch, collector, received_at)
            refusal = verdict.refusal
            through = collector.last_seq
            if verdict.new_rows:
                insert_reads(conn, verdict.new_rows)
                last = verdict.new_rows[-1]
                through = last["seq"]
                advance_tip(conn, collector_id, seq=through, hash_=last["hash"],
                            received_at=received_at)
            if refusal is not None and refusal.reason != "seq_gap":
                self._quarantine(conn, topic, payload, collector_id, refusal, received_at)
        rejected = refusal.rejected if refusal else ()
        return IngestOutcome(collector_id, Ack(through, rejected), len(verdict.new_rows),
                             verdict.duplicates, refusal), verdict.new_rows

    def _observe_age(self, new_rows: list[dict[str, Any]], received_at: datetime) -> None:
        if self.metrics is not None and new_rows:
            oldest = min(row["read_at"] for row in new_rows)
            self.metrics.observe_read_age((received_at - oldest).total_seconds())

    # --- several messages, one commit -------------------------------------------------

    def ingest_group(self, messages: Sequence[Received]) -> list[IngestOutcome | None]:
        """Ingest several received messages with one commit; an outcome for each.

        ``None`` for a message whose ingest failed (the store is down, or a bug):
        it must not be acked. The well-formed batches are stored in one
        transaction, in collector order (every worker locks collectors in the
        same order, so two groups never deadlock) and, per collector, in the
        order they came. What they would each have done alone is what they do
        here — the transaction sees its own inserts, so a collector's second
        batch follows its first — with one durable commit. A batch that finds a
        gap (its predecessor is still in another worker's hands) is retried
        alone after the commit, with the usual wait; if the group's transaction
        fails, every message is tried alone, so one bad message cannot hold up
        the others.
        """
        started = time.perf_counter()
        outcomes: list[IngestOutcome | None] = [None] * len(messages)
        alone = [i for i, m in enumerate(messages) if m.batch is None]
        grouped = sorted((i for i, m in enumerate(messages) if m.batch is not None),
                         key=lambda i: (messages[i].topic, i))
        stored: list[tuple[int, list[dict[str, Any]]]] = []
        try:
            with self.store.begin() as conn:
                for index in grouped:
                    message = messages[index]
                    batch = message.batch
                    assert batch is not None
                    outcome, new_rows = self._store_in(
                        conn, message.topic, message.payload, batch.collector, batch,
                        message.received_at)
                    if outcome.refusal is not None and outcome.refusal.reason == "seq_gap":
                        alone.append(index)
                    else:
                        outcomes[index] = self._logged(outcome, batch)
                        stored.append((index, new_rows))
        except Exception:
            log.warning("a group of %d batches failed; ingesting each alone", len(grouped),
                        exc_info=True)
            outcomes = [None] * len(messages)
            alone = list(range(len(messages)))
            stored = []
        seconds = time.perf_counter() - started
        for index, new_rows in stored:
            self._observe_age(new_rows, messages[index].received_at)
            outcome = outcomes[index]
            if self.metrics is not None and outcome is not None:
                self.metrics.observe_batch(outcome, seconds)
        for index in sorted(alone):
            message = messages[index]
            try:
                outcomes[index] = self.ingest(message.topic, message.payload)
            except Exception:
                log.exception("ingest of a batch on %s failed; the edge will resend",
                              message.topic)
        return outcomes

    def _authenticate(self, conn: Connection, batch: Batch, collector: Collector,
                      received_at: datetime) -> Verdict:
        overlap_end = min(batch.last_seq, collector.last_seq)
        stored = (stored_hashes(conn, collector.id, batch.first_seq, overlap_end)
                  if batch.first_seq <= overlap_end else {})
        return authenticate(batch, collector, stored, received_at=received_at)

    @staticmethod
    def _logged(outcome: IngestOutcome, batch: Batch) -> IngestOutcome:
        refusal, collector_id = outcome.refusal, outcome.collector
        through = outcome.ack.through_seq if outcome.ack else 0
        if refusal is None:
            log.debug("%s: stored seq %d–%d", collector_id, batch.first_seq, batch.last_seq)
        elif refusal.reason == "seq_gap":
            log.info("%s: %s; acking through %d", collector_id, refusal.detail, through)
        elif refusal.reason != "replayed":
            log.warning("ALARM %s: refused seq %d–%d (%s): %s", collector_id, refusal.first_seq,
                        refusal.last_seq, refusal.reason, refusal.detail)
        return outcome

    def _refuse(self, topic: str, payload: bytes, collector_id: str, received_at: datetime,
                refusal: Refusal) -> IngestOutcome:
        with self.store.begin() as conn:
            self._quarantine(conn, topic, payload, collector_id, refusal, received_at)
            collector = find_collector(conn, collector_id)
        through = collector.last_seq if collector else 0
        log.warning("ALARM %s: refused a batch on %s (%s): %s", collector_id, topic,
                    refusal.reason, refusal.detail)
        return IngestOutcome(collector_id, Ack(through, refusal.rejected), refusal=refusal)

    def _refuse_unaddressed(self, topic: str, payload: bytes, detail: str,
                            received_at: datetime) -> IngestOutcome:
        refusal = Refusal("wrong_topic", detail, 0, 0)
        with self.store.begin() as conn:
            self._quarantine(conn, topic, payload, None, refusal, received_at)
        log.warning("ALARM refused a message on %s: %s", topic, detail)
        return IngestOutcome(None, None, refusal=refusal)

    @staticmethod
    def _quarantine(conn: Connection, topic: str, payload: bytes, collector: str | None,
                    refusal: Refusal, received_at: datetime) -> None:
        add_to_quarantine(
            conn, topic=topic, reason=refusal.reason, detail=refusal.detail, raw=payload,
            collector=collector, first_seq=refusal.first_seq or None,
            last_seq=refusal.last_seq or None, received_at=received_at,
        )


@dataclass(frozen=True)
class Received:
    """A message as it came, and when; ``batch`` is ``None`` unless it is one a collector may
    send on its own reads topic (anything else takes :meth:`Ingestor.ingest`'s path, which
    quarantines it with its reason)."""

    topic: str
    payload: bytes
    received_at: datetime
    batch: Batch | None = None


def received(topic: str, payload: bytes, *, received_at: datetime) -> Received:
    """Decode a message's envelope without the store: the part of ingest that needs no lock."""
    try:
        collector_id, kind = parse_topic(topic)
        batch = decode_batch(payload)
    except (ContractError, BatchError):
        return Received(topic, payload, received_at)
    if kind != "reads" or batch.collector != collector_id:
        return Received(topic, payload, received_at)
    return Received(topic, payload, received_at, batch)


def _registry_refusal(collector_id: str, collector: Collector | None, batch: Batch) -> Refusal:
    if collector is None:
        return Refusal("unknown_collector", f"{collector_id} is not an enrolled collector; "
                       "enrol it with `meterhub collectors add`", batch.first_seq, batch.last_seq)
    return Refusal("revoked_key", f"{collector_id} was revoked at {collector.revoked_at}; "
                   "nothing it sends is stored", batch.first_seq, batch.last_seq)
