"""Master data from the CIS: accounts, meters and their installations, cycles, routes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Frozen: a later schema change is a new revision, never an edit of this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("service_address", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rate_code", sa.String(64), nullable=False),
        sa.Column("rate_options", sa.JSON, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
    )
    op.create_table(
        "meters",
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column("model", sa.String(64)),
        sa.Column("profile", sa.String(64)),
        sa.Column("multiplier", sa.String(32), nullable=False),
        sa.Column("dials", sa.Integer, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("size", sa.String(32)),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("serial", name="pk_meters"),
    )
    op.create_table(
        "meter_installations",
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("installed_on", sa.Date, nullable=False),
        sa.Column("removed_on", sa.Date),
        sa.PrimaryKeyConstraint("meter", "account", "installed_on",
                                name="pk_meter_installations"),
        sa.ForeignKeyConstraint(["meter"], ["meters.serial"],
                                name="fk_meter_installations_meter"),
        sa.ForeignKeyConstraint(["account"], ["accounts.id"],
                                name="fk_meter_installations_account"),
    )
    op.create_index("ix_meter_installations_account", "meter_installations",
                    ["account", "installed_on"])
    op.create_table(
        "cycles",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("read_window_start", sa.Date, nullable=False),
        sa.Column("read_window_end", sa.Date, nullable=False),
        sa.Column("scheduled_read_date", sa.Date, nullable=False),
        sa.Column("bill_period_start", sa.Date, nullable=False),
        sa.Column("bill_period_end", sa.Date, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cycles"),
    )
    op.create_table(
        "routes",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_routes"),
        sa.ForeignKeyConstraint(["cycle"], ["cycles.id"], name="fk_routes_cycle"),
    )
    op.create_table(
        "route_stops",
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("location_notes", sa.Text, nullable=False),
        sa.Column("latitude", sa.String(16)),
        sa.Column("longitude", sa.String(16)),
        sa.Column("hazards", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("route", "sequence", name="pk_route_stops"),
        sa.ForeignKeyConstraint(["route"], ["routes.id"], name="fk_route_stops_route"),
        sa.ForeignKeyConstraint(["meter"], ["meters.serial"], name="fk_route_stops_meter"),
        sa.UniqueConstraint("route", "meter", name="uq_route_stops_route"),
    )


def downgrade() -> None:
    for table in ("route_stops", "routes", "cycles", "meter_installations", "meters",
                  "accounts"):
        op.drop_table(table)
