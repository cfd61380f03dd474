"""Bills and their lines.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Frozen: a later schema change is a new revision, never an edit of this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bills",
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("rate_code", sa.String(64), nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("total", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("determinants", sa.JSON, nullable=False),
        sa.Column("computed_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("cycle", "account", name="pk_bills"),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_bills_cycle"),
        sa.ForeignKeyConstraint(["account"], ["accounts.id"], name="fk_bills_account"),
    )
    op.create_table(
        "bill_lines",
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("code", sa.String(96), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("quantity", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("price", sa.String(32)),
        sa.Column("amount", sa.String(32), nullable=False),
        sa.Column("determinant", sa.String(64)),
        sa.Column("basis", sa.JSON, nullable=False),
        sa.Column("version", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("cycle", "account", "position", name="pk_bill_lines"),
        sa.ForeignKeyConstraint(["cycle", "account"], ["bills.cycle", "bills.account"],
                                name="fk_bill_lines_cycle"),
    )


def downgrade() -> None:
    op.drop_table("bill_lines")
    op.drop_table("bills")
