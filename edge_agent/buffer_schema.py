"""The edge buffer's schema, as numbered migrations recorded in ``PRAGMA user_version``.

A gateway upgraded in the field opens a buffer written by an older agent, full
of unacked reads; each migration runs once, in its own write transaction, so a
power cut mid-upgrade leaves the previous version intact. An agent that finds
a *newer* schema than it knows refuses to touch the file rather than guess.
To change the schema, append a migration; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database

from protocols.chain import GENESIS_HASH


class SchemaError(Exception):
    """The buffer file's schema is not one this agent can use."""


def _v1_initial(db: Database) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # The signed bytes and signature, keyed by seq; everything else is derived from them.
    db["reads"].create({"seq": int, "data": bytes, "sig": bytes}, pk="seq",
                       not_null={"data", "sig"})
    # One row: where the chain ends, what the hub has acked, and the anchor — the
    # seq and hash just before the oldest read still held (genesis until pruning),
    # so the remaining chain stays verifiable after acked reads are deleted.
    db.execute(
        """
        CREATE TABLE chain (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_seq INTEGER NOT NULL,
            last_hash TEXT NOT NULL,
            acked_through INTEGER NOT NULL,
            anchor_seq INTEGER NOT NULL,
            anchor_hash TEXT NOT NULL,
            stored_bytes INTEGER NOT NULL,
            CHECK (acked_through <= last_seq AND anchor_seq <= acked_through)
        )
        """
    )
    db.execute(
        "INSERT INTO chain VALUES (1, 0, ?, 0, 0, ?, 0)", [GENESIS_HASH, GENESIS_HASH]
    )
    # Each ack as it arrived: retention counts from the moment a read was acked.
    db["acks"].create({"through_seq": int, "acked_at": str}, pk="through_seq",
                      not_null={"acked_at"})
    # Public keys that signed reads here, so the buffer verifies without the private key.
    db["keys"].create({"key_id": str, "public_key": str, "first_seq": int}, pk="key_id",
                      not_null={"public_key", "first_seq"})


MIGRATIONS: tuple[Callable[[Database], None], ...] = (_v1_initial,)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: Database) -> int:
    """Bring ``db`` to :data:`SCHEMA_VERSION`; return the version it had before."""
    before = schema_version(db)
    if before > SCHEMA_VERSION:
        raise SchemaError(
            f"buffer schema is version {before}, newer than this agent's {SCHEMA_VERSION}; "
            "upgrade the agent (the buffer was left untouched)"
        )
    for version in range(before + 1, SCHEMA_VERSION + 1):
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            if schema_version(db) < version:
                MIGRATIONS[version - 1](db)
                db.conn.execute(f"PRAGMA user_version = {version}")
            db.conn.execute("COMMIT")
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
    return before
