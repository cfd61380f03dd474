"""Cycle-run parts: an edits or bill run split by route, so several hub workers share it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

A part is one route of a run's cycle (or the whole cycle, route ``*``); a
runner claims a queued part, works that route's meters or accounts in one
transaction, and records the part's result. The run is done when every part
is (see ``hub/api/runs.py``).

Frozen: a later schema change is a new revision, never an edit of this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cycle_run_parts",
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(128)),
        sa.Column("started_at", UtcDateTime),
        sa.Column("finished_at", UtcDateTime),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("run_id", "route", name="pk_cycle_run_parts"),
        sa.ForeignKeyConstraint(["run_id"], ["cycle_runs.id"],
                                name="fk_cycle_run_parts_run_id"),
    )
    op.create_index("ix_cycle_run_parts_status", "cycle_run_parts", ["status", "run_id"])


def downgrade() -> None:
    op.drop_table("cycle_run_parts")
