"""Operator access, collector health, cycle runs and exports: what the API and pages need.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Frozen: a later schema change is a new revision, never an edit of this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                     autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("expires_at", UtcDateTime),
        sa.Column("revoked_at", UtcDateTime),
        sa.Column("last_used_at", UtcDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "web_users",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("disabled_at", UtcDateTime),
        sa.PrimaryKeyConstraint("name", name="pk_web_users"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("ended_at", UtcDateTime),
        sa.PrimaryKeyConstraint("id_hash", name="pk_web_sessions"),
        sa.ForeignKeyConstraint(["user"], ["web_users.name"], name="fk_web_sessions_user"),
    )
    op.create_table(
        "collector_status",
        sa.Column("collector", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("reported_at", UtcDateTime),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("buffer_depth", sa.BigInteger),
        sa.Column("last_seq", sa.BigInteger),
        sa.Column("acked_through", sa.BigInteger),
        sa.PrimaryKeyConstraint("collector", name="pk_collector_status"),
    )
    op.create_table(
        "cycle_runs",
        _id(),
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", UtcDateTime, nullable=False),
        sa.Column("worker", sa.String(128)),
        sa.Column("started_at", UtcDateTime),
        sa.Column("finished_at", UtcDateTime),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_cycle_runs"),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_cycle_runs_cycle"),
    )
    op.create_index("ix_cycle_runs_status", "cycle_runs", ["status", "id"])
    op.create_index("ix_cycle_runs_cycle", "cycle_runs", ["cycle", "id"])
    op.create_table(
        "reconciliations",
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("account", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("collector", sa.String(64)),
        sa.Column("seq", sa.BigInteger),
        sa.Column("read_at", UtcDateTime),
        sa.Column("trouble", sa.JSON, nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("reconciled_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("cycle", "meter", name="pk_reconciliations"),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_reconciliations_cycle"),
    )
    op.create_index("ix_reconciliations_status", "reconciliations", ["cycle", "status", "route"])
    op.create_table(
        "exports",
        _id(),
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("manifest_name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("verified_at", UtcDateTime),
        sa.Column("verified_ok", sa.Boolean),
        sa.Column("verify_detail", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_exports"),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_exports_cycle"),
    )
    op.create_index("ix_exports_cycle", "exports", ["cycle", "id"])


def downgrade() -> None:
    for table in ("exports", "reconciliations", "cycle_runs", "collector_status",
                  "web_sessions", "web_users", "api_tokens"):
        op.drop_table(table)
