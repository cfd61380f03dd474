"""Collectors and their keys, stored reads, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Frozen: a later schema change is a new revision, never an edit of this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "collectors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrolled_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime),
        sa.Column("revoked_reason", sa.Text),
        sa.Column("broker_password_hash", sa.Text),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("last_received_at", UtcDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_collectors"),
    )
    op.create_table(
        "collector_keys",
        sa.Column("collector", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("from_seq", sa.BigInteger, nullable=False),
        sa.Column("through_seq", sa.BigInteger),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("collector", "key_id", name="pk_collector_keys"),
        sa.ForeignKeyConstraint(["collector"], ["collectors.id"],
                                name="fk_collector_keys_collector"),
    )
    op.create_table(
        "reads",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("collector", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("read_at", UtcDateTime, nullable=False),
        sa.Column("collected_at", UtcDateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("ntp_synced", sa.Boolean, nullable=False),
        sa.Column("meter_offset_s", sa.String(32)),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("flags", sa.JSON, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("sig", sa.LargeBinary, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("verify_status", sa.String(16), nullable=False),
        sa.Column("verified_at", UtcDateTime),
        sa.Column("verify_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_reads"),
        sa.ForeignKeyConstraint(["collector"], ["collectors.id"], name="fk_reads_collector"),
        sa.UniqueConstraint("collector", "seq", name="uq_reads_collector"),
    )
    op.create_index("ix_reads_meter_read_at", "reads", ["meter", "read_at"])
    op.create_index("ix_reads_verify_status_id", "reads", ["verify_status", "id"])
    op.create_table(
        "quarantine",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("collector", sa.String(64)),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("first_seq", sa.BigInteger),
        sa.Column("last_seq", sa.BigInteger),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
    )
    op.create_index("ix_quarantine_collector", "quarantine", ["collector", "received_at"])


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("reads")
    op.drop_table("collector_keys")
    op.drop_table("collectors")
