"""Meter edits: billing reads, exceptions, the append-only audit log, rejected reads.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

The audit log is append-only in the database itself, not only by the
absence of an update function: triggers refuse UPDATE and DELETE on SQLite
and PostgreSQL, so no API, script or hand-typed SQL session rewrites what an
operator decided (dropping the triggers takes a schema migration, which is
itself on record).

Frozen: a later schema change is a new revision, never an edit of this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

APPEND_ONLY_MESSAGE = "audit_log is append-only"

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"""
    for verb in ("UPDATE", "DELETE")
]
_POSTGRESQL_TRIGGERS = [
    f"""CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'
                USING ERRCODE = 'integrity_constraint_violation';
        END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()""",
]


def upgrade() -> None:
    op.create_table(
        "billing_reads",
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("read_at", UtcDateTime, nullable=False),
        sa.Column("registers", sa.JSON, nullable=False),
        sa.Column("multiplier", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32)),
        sa.Column("flags", sa.JSON, nullable=False),
        sa.Column("meter_offset_s", sa.String(32)),
        sa.Column("collector", sa.String(64)),
        sa.Column("seq", sa.BigInteger),
        sa.Column("method", sa.String(32)),
        sa.Column("reason", sa.Text),
        sa.Column("audit_id", sa.BigInteger),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("cycle", "meter", name="pk_billing_reads"),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_billing_reads_cycle"),
        sa.ForeignKeyConstraint(["meter"], ["meters.serial"], name="fk_billing_reads_meter"),
    )
    op.create_index("ix_billing_reads_meter", "billing_reads", ["meter", "read_at"])
    op.create_table(
        "edit_exceptions",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64)),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("register", sa.String(64)),
        sa.Column("read_ref", sa.String(160), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rule_set", sa.String(64), nullable=False),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("resolved_at", UtcDateTime),
        sa.Column("resolved_by", sa.String(128)),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_edit_exceptions_cycle"),
        sa.ForeignKeyConstraint(["meter"], ["meters.serial"], name="fk_edit_exceptions_meter"),
        sa.UniqueConstraint("cycle", "meter", "rule", "read_ref",
                            name="uq_edit_exceptions_cycle"),
    )
    op.create_index("ix_edit_exceptions_status", "edit_exceptions", ["status", "cycle"])
    op.create_table(
        "audit_log",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("cycle", sa.String(64)),
        sa.Column("meter", sa.String(64)),
        sa.Column("exception_id", sa.BigInteger),
        sa.Column("reason", sa.Text),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
    )
    op.create_index("ix_audit_log_cycle", "audit_log", ["cycle", "meter"])
    op.create_table(
        "rejected_reads",
        sa.Column("collector", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("rejected_at", UtcDateTime, nullable=False),
        sa.Column("audit_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("collector", "seq", name="pk_rejected_reads"),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_rejected_reads_cycle"),
    )
    op.create_index("ix_rejected_reads_cycle", "rejected_reads", ["cycle", "meter"])
    triggers = _POSTGRESQL_TRIGGERS if op.get_bind().dialect.name == "postgresql" \
        else _SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_refuse_change()")
    for table in ("rejected_reads", "audit_log", "edit_exceptions", "billing_reads"):
        op.drop_table(table)
