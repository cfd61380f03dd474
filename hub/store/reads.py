"""Stored reads and the quarantine: the writes ingest makes and the queries others need.

Each function takes an open connection and runs in the caller's transaction,
so ingest can store a batch, advance the collector's chain tip and
quarantine the rest of the batch atomically.

A read is stored ``pending``: its chain and its batch's last signature were
checked at ingest, its own signature not yet. The background verifier moves
it to ``ok`` or ``failed``; :data:`billable_reads` is the only door billing
may use, and it opens on ``ok`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Row, func, insert, select, update
from sqlalchemy.engine import Dialect

from hub.store.tables import collectors, quarantine, reads
from hub.store.types import UtcDateTime, sqlite_utc_text
from protocols.chain import GENESIS_HASH
from protocols.errors import ChainError, SeqGapError

PENDING = "pending"
VERIFIED = "ok"
FAILED = "failed"

billable_reads = select(reads).where(reads.c.verify_status == VERIFIED)
"""Reads whose own signature the hub has verified: nothing else may reach a bill."""


def insert_reads(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert new reads (one ``executemany``); a repeated (collector, seq) is an error.

    This is ingest's hot path, so the statement is compiled once per
    database kind and each row is bound by a list of per-column converters:
    SQLAlchemy's own bind processing costs more per row than the insert
    itself. The converters are SQLAlchemy's, except the one for timestamps on
    SQLite, which writes the same text in a fifth of the time
    (``tests/test_store.py`` holds it to SQLAlchemy's round trip).
    """
    if not rows:
        return
    plan = insert_plan(conn.dialect)
    conn.exec_driver_sql(plan.sql, plan.params(rows))


@dataclass(frozen=True)
class InsertPlan:
    """The reads INSERT for one database kind, and how to bind rows to it."""

    sql: str
    positional: bool
    binders: tuple[tuple[str, Callable[[Any], Any]], ...]

    def params(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """DB-API parameters for ``rows``: tuples or dicts, as the driver's style wants.

        Per row, one C-level lookup of every column (a missing one is NULL) and a
        call only for the columns whose value needs converting: this runs for
        every read ingested.
        """
        names = [name for name, _ in self.binders]
        # a batch's rows share one received_at object: convert it once, not once per read
        converting = [(index, _remember_last(bind) if name == "received_at" else bind)
                      for index, (name, bind) in enumerate(self.binders) if bind is not _same]
        params: list[Any] = []
        for row in rows:
            if row.keys() >= self._names:
                values = list(self._getter(row))
            else:
                values = [row.get(name) for name in names]
            for index, bind in converting:
                values[index] = bind(values[index])
            params.append(tuple(values) if self.positional else dict(zip(names, values,
                                                                         strict=True)))
        return params

    @cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.binders)

    @cached_property
    def _getter(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        return itemgetter(*(name for name, _ in self.binders))


_PLANS: dict[tuple[str, str], InsertPlan] = {}


def insert_plan(dialect: Dialect) -> InsertPlan:
    """The reads INSERT compiled once per database kind (ingest's hot path)."""
    key = (dialect.name, dialect.driver)
    plan = _PLANS.get(key)
    if plan is None:
        columns = {c.name: c for c in reads.columns if c.name != "id"}
        compiled = insert(reads).compile(dialect=dialect, column_keys=list(columns))
        order = compiled.positiontup or list(columns)
        binders = []
        for name in order:
            column_type = columns[name].type
            if isinstance(column_type, UtcDateTime) and dialect.name == "sqlite":
                binders.append((name, sqlite_utc_text))
                continue
            if isinstance(column_type, JSON) and dialect.name == "sqlite":
                binders.append((name, fast_compact_json))
                continue
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            binders.append((name, process or _same))
        plan = _PLANS[key] = InsertPlan(str(compiled), compiled.positiontup is not None,
                                        tuple(binders))
    return plan


def fast_compact_json(value: Any) -> str:
    """:func:`hub.store.engine.compact_json`'s text for a read's registers and flags, 5× faster.

    Those hold only what ``orjson.loads`` made of a read (objects, arrays,
    strings, integers, booleans, null), for which both write the same compact
    UTF-8 text; a property test holds them to it.
    """
    return orjson.dumps(value).decode("utf-8")


def _same(value: Any) -> Any:
    return value


def _remember_last(bind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``bind``, answering again from memory when given the very same object again."""
    last: list[Any] = [object(), None]

    def bind_once(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, bind(value)
        return last[1]

    return bind_once


def advance_tip(conn: Connection, collector: str, *, seq: int, hash_: str,
                received_at: datetime) -> None:
    conn.execute(update(collectors).where(collectors.c.id == collector).values(
        last_seq=seq, last_hash=hash_, last_received_at=received_at,
    ))


def stored_hashes(
    conn: Connection, collector: str, first_seq: int, last_seq: int
) -> dict[int, str]:
    """Hash of each stored read of ``collector`` with seq in [first, last]."""
    rows = conn.execute(
        select(reads.c.seq, reads.c.hash).where(
            (reads.c.collector == collector) & reads.c.seq.between(first_seq, last_seq)
        )
    ).all()
    return {row.seq: row.hash for row in rows}


def add_to_quarantine(
    conn: Connection, *, topic: str, reason: str, detail: str, raw: bytes,
    collector: str | None = None, first_seq: int | None = None, last_seq: int | None = None,
    received_at: datetime | None = None,
) -> None:
    conn.execute(insert(quarantine).values(
        collector=collector, topic=topic, reason=reason, detail=detail, raw=raw,
        first_seq=first_seq, last_seq=last_seq, received_at=received_at or datetime.now(UTC),
    ))


def quarantine_reasons(conn: Connection, collector: str | None = None) -> dict[str, int]:
    """How many quarantine entries there are per reason (optionally for one collector)."""
    query = select(quarantine.c.reason, func.count()).group_by(quarantine.c.reason)
    if collector is not None:
        query = query.where(quarantine.c.collector == collector)
    return {reason: count for reason, count in conn.execute(query).all()}


def read_count(conn: Connection, collector: str | None = None) -> int:
    query = select(func.count()).select_from(reads)
    if collector is not None:
        query = query.where(reads.c.collector == collector)
    return conn.execute(query).scalar_one()


def pending_verification(conn: Connection, *, after_id: int, limit: int) -> list[Row[Any]]:
    """The next reads (by id) whose own signature has not been checked yet."""
    return list(conn.execute(
        select(reads.c.id, reads.c.collector, reads.c.seq, reads.c.key_id, reads.c.data,
               reads.c.sig)
        .where((reads.c.verify_status == PENDING) & (reads.c.id > after_id))
        .order_by(reads.c.id).limit(limit)
    ).all())


def record_verified(conn: Connection, ids: Iterable[int], *, at: datetime) -> int:
    ids = list(ids)
    if not ids:
        return 0
    result = conn.execute(update(reads).where(
        reads.c.id.in_(ids) & (reads.c.verify_status == PENDING)
    ).values(verify_status=VERIFIED, verified_at=at))
    return result.rowcount


def record_failed(conn: Connection, read_id: int, *, error: str, at: datetime) -> bool:
    """Mark one read failed; ``False`` if another worker already settled it."""
    result = conn.execute(update(reads).where(
        (reads.c.id == read_id) & (reads.c.verify_status == PENDING)
    ).values(verify_status=FAILED, verified_at=at, verify_error=error))
    return result.rowcount == 1


def check_stored_chain(conn: Connection, collector: str, *, chunk: int = 5000) -> int:
    """Walk ``collector``'s stored reads from seq 1: gap-free, each linked to the one before.

    The walk must end at the tip the hub recorded for the collector, so reads
    deleted from the end are caught too. Returns the number of reads; raises
    :class:`~protocols.errors.ChainError` naming the first seq that does not follow.
    """
    tip = conn.execute(select(collectors.c.last_seq, collectors.c.last_hash)
                       .where(collectors.c.id == collector)).first()
    expected_seq, expected_hash = 1, GENESIS_HASH
    while True:
        rows = conn.execute(
            select(reads.c.seq, reads.c.prev_hash, reads.c.hash)
            .where((reads.c.collector == collector) & (reads.c.seq >= expected_seq))
            .order_by(reads.c.seq).limit(chunk)
        ).all()
        if not rows:
            if tip is not None and (tip.last_seq, tip.last_hash) != (expected_seq - 1,
                                                                     expected_hash):
                raise ChainError(
                    f"stored reads end at seq {expected_seq - 1}, but the hub recorded the "
                    f"chain's tip at seq {tip.last_seq}: reads were deleted or altered",
                    collector=collector, seq=expected_seq)
            return expected_seq - 1
        for seq, prev_hash, hash_ in rows:
            if seq != expected_seq:
                raise SeqGapError(f"stored reads jump from seq {expected_seq - 1} to {seq}",
                                  collector=collector, seq=seq)
            if prev_hash != expected_hash:
                raise ChainError("stored read does not link to the one before it",
                                 collector=collector, seq=seq)
            expected_seq, expected_hash = seq + 1, hash_
