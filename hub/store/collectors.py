"""The collector registry: who may put reads in the store, with which keys, from which seq.

A collector is enrolled with its Ed25519 public key; a rotation closes the
old key's seq range and opens the new key's, so every read stays verifiable
against the key that signed it; a revocation stops everything the collector
sends from that moment (its stored reads stay, as evidence). Every function
takes an open connection and runs inside the caller's transaction.

Example::

    with store.engine.begin() as conn:
        add_collector(conn, "gw-0001", public_key)
        rotate_key(conn, "gw-0001", new_public_key, from_seq=90_001)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Row, insert, select, update

from hub.store.tables import collector_keys, collectors
from protocols.chain import GENESIS_HASH
from protocols.read import COLLECTOR_RE
from protocols.signing import key_id_for, load_public_key, public_key_pem

ACTIVE = "active"
REVOKED = "revoked"


class CollectorError(Exception):
    """A registry change that cannot be made (unknown id, duplicate, bad seq)."""


@dataclass(frozen=True)
class CollectorKey:
    key_id: str
    public_key_pem: str
    from_seq: int
    through_seq: int | None

    def covers(self, seq: int) -> bool:
        return self.from_seq <= seq and (self.through_seq is None or seq <= self.through_seq)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return _parse_key(self.public_key_pem)


@dataclass(frozen=True)
class Collector:
    id: str
    key_id: str
    status: str
    enrolled_at: datetime
    revoked_at: datetime | None
    last_seq: int
    last_hash: str
    last_received_at: datetime | None
    keys: tuple[CollectorKey, ...]
    broker_password_hash: str | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def key_for(self, key_id: str, seq: int) -> CollectorKey | None:
        """The key named ``key_id`` if it was this collector's key at ``seq``."""
        for key in self.keys:
            if key.key_id == key_id and key.covers(seq):
                return key
        return None


@lru_cache(maxsize=4096)
def _parse_key(pem: str) -> Ed25519PublicKey:
    """Parsed keys are cached: a PEM never changes meaning, and ingest looks keys up per batch."""
    return load_public_key(pem.encode("ascii"))


def add_collector(
    conn: Connection, collector_id: str, public_key: Ed25519PublicKey, *,
    broker_password_hash: str | None = None, now: datetime | None = None,
) -> Collector:
    if not COLLECTOR_RE.fullmatch(collector_id):
        raise CollectorError(f"{collector_id!r} is not a collector id "
                             f"(letters, digits, '-', '_', '.'; pattern {COLLECTOR_RE.pattern})")
    if _row(conn, collector_id) is not None:
        raise CollectorError(f"collector {collector_id} is already enrolled; "
                             "use `meterhub collectors rotate` to give it a new key")
    now = now or datetime.now(UTC)
    pem, key_id = public_key_pem(public_key).decode("ascii"), key_id_for(public_key)
    conn.execute(insert(collectors).values(
        id=collector_id, key_id=key_id, public_key=pem, status=ACTIVE, enrolled_at=now,
        broker_password_hash=broker_password_hash, last_seq=0, last_hash=GENESIS_HASH,
    ))
    conn.execute(insert(collector_keys).values(
        collector=collector_id, key_id=key_id, public_key=pem, from_seq=1, added_at=now,
    ))
    return get_collector(conn, collector_id)


def get_collector(conn: Connection, collector_id: str, *, lock: bool = False) -> Collector:
    """The collector and its keys; ``lock`` holds its row until the transaction ends."""
    collector = find_collector(conn, collector_id, lock=lock)
    if collector is None:
        raise CollectorError(f"collector {collector_id} is not enrolled")
    return collector


def find_collector(conn: Connection, collector_id: str, *, lock: bool = False) -> Collector | None:
    row = _row(conn, collector_id, lock=lock)
    if row is None:
        return None
    keys = conn.execute(
        select(collector_keys).where(collector_keys.c.collector == collector_id)
        .order_by(collector_keys.c.from_seq)
    ).all()
    return Collector(
        id=row.id, key_id=row.key_id, status=row.status, enrolled_at=row.enrolled_at,
        revoked_at=row.revoked_at, last_seq=row.last_seq, last_hash=row.last_hash,
        last_received_at=row.last_received_at, broker_password_hash=row.broker_password_hash,
        keys=tuple(CollectorKey(k.key_id, k.public_key, k.from_seq, k.through_seq)
                   for k in keys),
    )


def list_collectors(conn: Connection) -> list[Collector]:
    ids = conn.execute(select(collectors.c.id).order_by(collectors.c.id)).scalars().all()
    return [get_collector(conn, collector_id) for collector_id in ids]


def revoke_collector(
    conn: Connection, collector_id: str, *, reason: str, now: datetime | None = None
) -> Collector:
    """Refuse everything the collector sends from now on; its stored reads stay."""
    current = get_collector(conn, collector_id, lock=True)
    if not current.active:
        raise CollectorError(f"collector {collector_id} was already revoked at "
                             f"{current.revoked_at:%Y-%m-%d %H:%M}Z")
    conn.execute(update(collectors).where(collectors.c.id == collector_id).values(
        status=REVOKED, revoked_at=now or datetime.now(UTC), revoked_reason=reason,
    ))
    return get_collector(conn, collector_id)


def rotate_key(
    conn: Connection, collector_id: str, public_key: Ed25519PublicKey, *, from_seq: int,
    now: datetime | None = None,
) -> Collector:
    """Make ``public_key`` the collector's key for seqs ≥ ``from_seq``.

    The old key keeps verifying the reads it signed before ``from_seq``. The
    seq must be beyond what the hub already stores: a stored read's key is
    settled evidence and never re-assigned.
    """
    current = get_collector(conn, collector_id, lock=True)
    if not current.active:
        raise CollectorError(f"collector {collector_id} is revoked; enrol it again under a "
                             "new id instead of rotating a revoked key")
    if from_seq <= current.last_seq:
        raise CollectorError(
            f"from_seq {from_seq} is not after seq {current.last_seq}, the last read stored "
            f"from {collector_id}; stored reads keep the key that signed them"
        )
    key_id = key_id_for(public_key)
    if any(key.key_id == key_id for key in current.keys):
        raise CollectorError(f"key {key_id} was already used by {collector_id}; "
                             "a rotation needs a new key")
    # Every key that could sign from_seq or later stops before it (a key that signed
    # nothing stored yet may end up covering no seq at all: it is retired).
    reaching = [key for key in current.keys
                if key.through_seq is None or key.through_seq >= from_seq]
    for key in reaching:
        conn.execute(update(collector_keys).where(
            (collector_keys.c.collector == collector_id) & (collector_keys.c.key_id == key.key_id)
        ).values(through_seq=from_seq - 1))
    pem = public_key_pem(public_key).decode("ascii")
    conn.execute(insert(collector_keys).values(
        collector=collector_id, key_id=key_id, public_key=pem, from_seq=from_seq,
        added_at=now or datetime.now(UTC),
    ))
    conn.execute(update(collectors).where(collectors.c.id == collector_id)
                 .values(key_id=key_id, public_key=pem))
    return get_collector(conn, collector_id)


def set_broker_password_hash(conn: Connection, collector_id: str, password_hash: str) -> None:
    get_collector(conn, collector_id)
    conn.execute(update(collectors).where(collectors.c.id == collector_id)
                 .values(broker_password_hash=password_hash))


def active_broker_accounts(conn: Connection) -> Sequence[tuple[str, str]]:
    """(collector id, broker password hash) of every active collector that has one."""
    rows = conn.execute(
        select(collectors.c.id, collectors.c.broker_password_hash)
        .where((collectors.c.status == ACTIVE) & collectors.c.broker_password_hash.is_not(None))
        .order_by(collectors.c.id)
    ).all()
    return [(row.id, row.broker_password_hash) for row in rows]


def _row(conn: Connection, collector_id: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(collectors).where(collectors.c.id == collector_id)
    if lock:
        query = query.with_for_update()
    return conn.execute(query).first()
