"""The edge buffer: signed reads wait here, durably, until the hub has acked them.

A gateway loses power, its link drops for days, its agent is killed mid-write;
none of that may lose or duplicate a read. So every batch is signed, chained
and committed in one SQLite transaction (WAL, ``synchronous=FULL``): after a
crash the buffer holds either the whole batch or none of it, and the next
batch continues the chain from the last committed read — seq stays gap-free
across restarts. Nothing unacked is ever deleted: when the disk budget is
used up by unacked reads, :meth:`EdgeBuffer.append` raises :class:`BufferFull`
and the agent raises an alarm.

Example::

    buffer = EdgeBuffer("buffer.sqlite", collector="gw-0001", signer=signer)
    sealed = buffer.append(readings)          # signed, chained, durable
    for read in buffer.pending(limit=500):    # what the hub has not acked yet
        ...
    buffer.ack(through_seq=sealed[-1].seq)    # hub stored everything ≤ seq
    buffer.prune()                            # drop acked reads past retention
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlite_utils import Database

from edge_agent.buffer_schema import migrate
from protocols.canonical import decode_read
from protocols.chain import (
    ChainTip,
    SealedRead,
    read_hash,
    sign_and_chain,
    verify_chain,
    verify_read,
)
from protocols.errors import ChainError, MalformedReadError
from protocols.read import COLLECTOR_RE, Reading
from protocols.signing import Signer, load_public_key, public_key_pem

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
"""About 500 000 reads: months of a gateway's polling with the link down."""
DEFAULT_RETENTION = timedelta(days=7)
"""Acked reads are kept this long, for diagnosis on site, then pruned."""
DEFAULT_MIN_FREE_BYTES = 32 * 1024 * 1024
"""Stop appending before the filesystem is full, so SQLite never hits ENOSPC mid-write."""
ROW_OVERHEAD_BYTES = 16
"""Per-row cost in SQLite beyond the blobs (rowid, cell header, pointer), for the budget."""
VERIFY_CHUNK = 2000
OPEN_TIMEOUT_S = 30
"""How long to wait for another process's write transaction before giving up."""


class EdgeBufferError(Exception):
    """Base of the buffer's own errors (a read's own problems are ``ReadError``)."""


class BufferFull(EdgeBufferError):
    """No room for a batch without deleting unacked reads, which is never done."""


class AckError(EdgeBufferError):
    """An ack that cannot be right for this buffer (it acks reads never made)."""


class CollectorMismatch(EdgeBufferError):
    """The buffer file belongs to another collector's chain."""


@dataclass(frozen=True)
class BufferStats:
    """The numbers an operator asks about a gateway's buffer."""

    collector: str
    last_seq: int
    acked_through: int
    held: int
    stored_bytes: int
    budget_bytes: int
    oldest_unacked_at: datetime | None

    @property
    def pending(self) -> int:
        """Reads not yet acked by the hub (the buffer depth)."""
        return self.last_seq - self.acked_through


class EdgeBuffer:
    """One collector's durable, signed, chained store of reads awaiting the hub's ack.

    Open it without a ``signer`` to inspect, export or ack; appending needs the
    signer. One buffer file belongs to one collector for life. The object is
    safe to share between threads (the poller appends, the sync client acks).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        collector: str,
        signer: Signer | None = None,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        retention: timedelta = DEFAULT_RETENTION,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not COLLECTOR_RE.fullmatch(collector):
            raise ValueError(f"{collector!r} is not a valid collector name")
        if budget_bytes <= 0:
            raise ValueError("budget_bytes must be positive")
        self.path = Path(path)
        self.collector = collector
        self.budget_bytes = budget_bytes
        self.retention = retention
        self.min_free_bytes = min_free_bytes
        self._signer = signer
        self._clock = clock
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_S, check_same_thread=False)
        self.db = Database(conn)
        try:
            self._enable_wal()
            self.db.execute("PRAGMA synchronous = FULL")  # a commit survives a power cut
            migrate(self.db)
            self._bind_collector()
        except BaseException:
            conn.close()
            raise

    # --- life cycle -----------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> EdgeBuffer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the four operations ----------------------------------------------------

    def append(self, readings: Sequence[Reading]) -> list[SealedRead]:
        """Sign, chain and durably store ``readings`` as one batch; return them sealed.

        All or nothing: on any error (including :class:`BufferFull`) nothing of
        the batch is stored and the chain is unchanged.
        """
        if self._signer is None:
            raise EdgeBufferError("this buffer was opened without a signing key; cannot append")
        readings = list(readings)
        for reading in readings:
            if not isinstance(reading, Reading):
                raise TypeError(f"append takes Reading objects, not {type(reading).__name__}")
        if not readings:
            return []
        with self._lock, self._write():
            tip, stored_bytes = self._tip_and_size()
            self._check_free_disk()
            sealed, new_tip = sign_and_chain(
                readings, signer=self._signer, collector=self.collector, after=tip
            )
            incoming = sum(len(s.data) + len(s.sig) for s in sealed)
            incoming += ROW_OVERHEAD_BYTES * len(sealed)
            stored_bytes = self._make_room(stored_bytes, incoming)
            conn = self.db.conn
            conn.executemany("INSERT INTO reads (seq, data, sig) VALUES (?, ?, ?)", sealed)
            conn.execute(
                "UPDATE chain SET last_seq = ?, last_hash = ?, stored_bytes = ? WHERE id = 1",
                (new_tip.seq, new_tip.hash, stored_bytes + incoming),
            )
            self._remember_key(self._signer, first_seq=sealed[0].seq)
        return sealed

    def pending(self, limit: int = 1000, *, after_seq: int | None = None) -> list[SealedRead]:
        """Up to ``limit`` unacked reads in seq order (after ``after_seq`` if given)."""
        with self._lock:
            start = max(self.tip_acked(), after_seq or 0)
            rows = self.db.execute(
                "SELECT seq, data, sig FROM reads WHERE seq > ? ORDER BY seq LIMIT ?",
                (start, limit),
            ).fetchall()
        return [self._sealed(row) for row in rows]

    def ack(self, through_seq: int) -> int:
        """Record that the hub durably holds every read ≤ ``through_seq``.

        Returns how many reads this newly acked; a repeated or older ack (MQTT
        redelivers) acks nothing and is not an error.
        """
        with self._lock, self._write():
            last_seq, acked = self.db.execute(
                "SELECT last_seq, acked_through FROM chain WHERE id = 1"
            ).fetchone()
            if through_seq > last_seq:
                raise AckError(
                    f"hub acked through seq {through_seq}, but {self.collector}'s last read is "
                    f"seq {last_seq}: the hub holds reads this buffer never made"
                )
            if through_seq <= acked:
                return 0
            self.db.execute("UPDATE chain SET acked_through = ? WHERE id = 1", [through_seq])
            self.db.execute(
                "INSERT INTO acks (through_seq, acked_at) VALUES (?, ?)",
                [through_seq, self._clock().isoformat()],
            )
        return through_seq - acked

    def prune(self, now: datetime | None = None) -> int:
        """Delete acked reads acked longer than the retention ago; return how many."""
        cutoff = ((now or self._clock()) - self.retention).isoformat()
        with self._lock, self._write():
            row = self.db.execute(
                "SELECT MAX(through_seq) FROM acks WHERE acked_at <= ?", [cutoff]
            ).fetchone()
            if row[0] is None:
                return 0
            return self._delete_through(row[0])

    # --- inspection -------------------------------------------------------------

    def tip(self) -> ChainTip:
        with self._lock:
            return self._tip_and_size()[0]

    def tip_acked(self) -> int:
        with self._lock:
            return self.db.execute("SELECT acked_through FROM chain WHERE id = 1").fetchone()[0]

    def stats(self) -> BufferStats:
        with self._lock:
            last_seq, acked, stored_bytes = self.db.execute(
                "SELECT last_seq, acked_through, stored_bytes FROM chain WHERE id = 1"
            ).fetchone()
            held = self.db.execute("SELECT COUNT(*) FROM reads").fetchone()[0]
            oldest = self.pending(limit=1)
        oldest_at = decode_read(oldest[0].data).collected_at if oldest else None
        return BufferStats(self.collector, last_seq, acked, held, stored_bytes,
                           self.budget_bytes, oldest_at)

    def reads(self, *, from_seq: int = 1, to_seq: int | None = None) -> Iterator[SealedRead]:
        """Every held read from ``from_seq`` through ``to_seq`` in seq order, in chunks."""
        last = to_seq if to_seq is not None else self.tip().seq
        seq = from_seq - 1
        while seq < last:
            with self._lock:
                rows = self.db.execute(
                    "SELECT seq, data, sig FROM reads WHERE seq > ? AND seq <= ? "
                    "ORDER BY seq LIMIT ?",
                    (seq, last, VERIFY_CHUNK),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._sealed(row)
            seq = rows[-1][0]

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every key that signed reads in this buffer, by key id."""
        with self._lock:
            rows = self.db.execute("SELECT key_id, public_key FROM keys").fetchall()
        return {key_id: load_public_key(pem.encode("ascii")) for key_id, pem in rows}

    def verify(
        self,
        keys: Mapping[str, Ed25519PublicKey] | Ed25519PublicKey | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Verify every held read's signature and the chain from the anchor to the tip.

        ``keys`` defaults to the keys recorded in the buffer; pass the key you
        trust (the hub's enrolled copy) to rule out a swapped key table.
        Returns the number of reads verified; raises a typed ``ReadError``.
        """
        keys = self.public_keys() if keys is None else keys
        with self._lock:
            anchor_seq, anchor_hash, last_seq, last_hash = self.db.execute(
                "SELECT anchor_seq, anchor_hash, last_seq, last_hash FROM chain WHERE id = 1"
            ).fetchone()
        tip = ChainTip(anchor_seq, anchor_hash)
        count = 0
        batch: list[SealedRead] = []
        for sealed in self.reads(from_seq=anchor_seq + 1, to_seq=last_seq):
            batch.append(sealed)
            if len(batch) == VERIFY_CHUNK:
                tip = self._verify_run(batch, keys, tip)
                count += len(batch)
                batch = []
                if progress:
                    progress(count)
        if batch:
            tip = self._verify_run(batch, keys, tip)
            count += len(batch)
            if progress:
                progress(count)
        if tip != ChainTip(last_seq, last_hash):
            raise ChainError(
                f"the chain ends at seq {tip.seq} but the buffer records its tip as seq "
                f"{last_seq}: reads at the end were removed or altered",
                collector=self.collector, seq=tip.seq + 1,
            )
        return count

    def check_tip(self, keys: Mapping[str, Ed25519PublicKey] | None = None) -> None:
        """Cheap start-up check: the newest read is intact, signed, and is the recorded tip.

        A full :meth:`verify` costs one signature check per read; this costs one.
        """
        keys = self.public_keys() if keys is None else keys
        with self._lock:
            tip = self._tip_and_size()[0]
            row = self.db.execute(
                "SELECT seq, data, sig FROM reads ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return
        newest = self._sealed(row)
        if newest.seq != tip.seq or read_hash(newest.data) != tip.hash:
            raise ChainError(
                f"the newest held read (seq {newest.seq}) is not the recorded tip "
                f"(seq {tip.seq}): the buffer was altered outside the agent",
                collector=self.collector, seq=newest.seq,
            )
        verify_read(newest.signed, keys)

    # --- internals --------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken before anything is read (no lost update)."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _verify_run(
        self, batch: list[SealedRead], keys: Mapping[str, Ed25519PublicKey] | Ed25519PublicKey,
        tip: ChainTip,
    ) -> ChainTip:
        verify_chain((s.signed for s in batch), keys, collector=self.collector, after=tip)
        return ChainTip(batch[-1].seq, read_hash(batch[-1].data))

    def _enable_wal(self) -> None:
        """Switch the file to WAL, waiting out another process doing the same.

        The switch needs an exclusive lock taken while holding a shared one, so
        SQLite answers "locked" at once instead of waiting for the busy timeout
        when two processes open a new buffer together (the agent and a
        technician's ``edge-agent status``, say). Retry for as long as the
        busy timeout would have waited.
        """
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        delay = 0.01
        while True:
            try:
                self.db.enable_wal()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _sealed(self, row: tuple[object, object, object]) -> SealedRead:
        """A stored row as a read, refusing rows whose types were changed outside the agent."""
        seq, data, sig = row
        if not isinstance(data, bytes) or not isinstance(sig, bytes):
            raise MalformedReadError(
                f"stored read is {type(data).__name__}/{type(sig).__name__}, not bytes: "
                "the buffer was altered outside the agent",
                collector=self.collector, seq=seq if isinstance(seq, int) else None,
            )
        return SealedRead(seq, data, sig)  # type: ignore[arg-type]

    def _tip_and_size(self) -> tuple[ChainTip, int]:
        last_seq, last_hash, stored_bytes = self.db.execute(
            "SELECT last_seq, last_hash, stored_bytes FROM chain WHERE id = 1"
        ).fetchone()
        return ChainTip(last_seq, last_hash), stored_bytes

    def _bind_collector(self) -> None:
        with self._write():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'collector'").fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('collector', ?), ('created_at', ?)",
                    [self.collector, self._clock().isoformat()],
                )
            elif row[0] != self.collector:
                raise CollectorMismatch(
                    f"{self.path} holds collector {row[0]!r}'s chain, not {self.collector!r}; "
                    "a buffer belongs to one collector for life"
                )

    def _check_free_disk(self) -> None:
        free = shutil.disk_usage(self.path.parent).free
        if free < self.min_free_bytes:
            raise BufferFull(
                f"{self.path.parent} has {free} bytes free, below the {self.min_free_bytes} "
                "bytes kept in reserve; free disk space"
            )

    def _make_room(self, stored_bytes: int, incoming: int) -> int:
        """Delete acked reads, oldest first, until ``incoming`` fits; return the new size."""
        if stored_bytes + incoming <= self.budget_bytes:
            return stored_bytes
        excess = stored_bytes + incoming - self.budget_bytes
        freed, through = 0, None
        for seq, size in self.db.execute(
            "SELECT seq, length(data) + length(sig) FROM reads "
            "WHERE seq <= (SELECT acked_through FROM chain WHERE id = 1) ORDER BY seq"
        ):
            freed += size + ROW_OVERHEAD_BYTES
            through = seq
            if freed >= excess:
                break
        if freed < excess:
            raise BufferFull(
                f"{self.collector}'s buffer holds {stored_bytes} of {self.budget_bytes} "
                f"budgeted bytes and a batch of {incoming} bytes does not fit even after "
                f"dropping every acked read; unacked reads are never dropped — the hub must "
                f"ack (last acked seq {self.tip_acked()})"
            )
        assert through is not None
        self._delete_through(through)
        log.warning("buffer budget reached: dropped acked reads through seq %d early", through)
        return self._tip_and_size()[1]

    def _delete_through(self, seq: int) -> int:
        """Delete acked reads ≤ ``seq``, moving the anchor; caller holds the transaction."""
        row = self.db.execute("SELECT data FROM reads WHERE seq = ?", [seq]).fetchone()
        if row is None:
            return 0
        count, size = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(data) + length(sig)), 0) FROM reads "
            "WHERE seq <= ?", [seq]
        ).fetchone()
        self.db.execute("DELETE FROM reads WHERE seq <= ?", [seq])
        self.db.execute("DELETE FROM acks WHERE through_seq < ?", [seq])
        self.db.execute(
            "UPDATE chain SET anchor_seq = ?, anchor_hash = ?, "
            "stored_bytes = stored_bytes - ? WHERE id = 1",
            [seq, read_hash(row[0]), size + ROW_OVERHEAD_BYTES * count],
        )
        return count

    def _remember_key(self, signer: Signer, *, first_seq: int) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO keys (key_id, public_key, first_seq) VALUES (?, ?, ?)",
            [signer.key_id, public_key_pem(signer.public_key).decode("ascii"), first_seq],
        )

