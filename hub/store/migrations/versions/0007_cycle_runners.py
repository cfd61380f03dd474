"""Cycle runners' heartbeats: a runner of a machine that died is noticed in a minute, not hours.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

Every cycle runner keeps one row here, named as it names the runs and parts
it claims (``{host}-{pid}``), and moves ``heartbeat_at`` forward every few
seconds from a thread of its own. A runner whose heartbeat stopped holds its
parts and runs for no one: the others give them up (see
``hub/api/runs.py``). ``cycle_runs.worker`` and ``cycle_run_parts.worker``
already say who holds what, so no other table changes.

Frozen: a later schema change is a new revision, never an edit of this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cycle_runners",
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("heartbeat_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("worker", name="pk_cycle_runners"),
    )


def downgrade() -> None:
    op.drop_table("cycle_runners")
