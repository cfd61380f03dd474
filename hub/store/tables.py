"""The hub's tables, as SQLAlchemy Core: what every query is written against.

The schema on disk is made by the Alembic migrations in ``migrations/``;
``tests/test_store_migrations.py`` checks that migrating an empty database
gives exactly these tables, on SQLite and PostgreSQL.

- ``collectors``: one row per enrolled collector with its current key, its
  status, and the tip of its chain as stored (``last_seq``/``last_hash``) —
  the row ingest locks, so two hub workers never extend one chain at once.
- ``collector_keys``: every key a collector has had and the seqs it signed,
  so reads signed before a rotation stay verifiable.
- ``reads``: every stored read, unique by (collector, seq), with the exact
  signed bytes and signature as evidence, and the background verifier's
  verdict (``verify_status`` pending → ok | failed).
- ``quarantine``: what was received and not stored as it came, with why.

Master data, as the CIS exports it (``meterhub import``):

- ``accounts``: who is billed, at which service address, on which rate.
- ``meters`` and ``meter_installations``: a meter's own facts, and which
  account it served from which day to which (a meter exchange is a removal
  and an install, both kept).
- ``cycles``, ``routes`` and ``route_stops``: the read window and bill period
  of each billing cycle, and its meters in walk order.

Meter edits (``meterhub cycle edits``, ``meterhub exceptions``):

- ``billing_reads``: the read each meter bills on in each cycle — actual
  (citing the signed read), estimated (naming its method) or overridden
  (citing the audit record); ``origin`` says whether meterhub's edits made
  it or it came from the CIS as history (``meterhub import history``).
- ``edit_exceptions``: every finding of the rules, open until an operator
  resolves it; unique per cycle, meter, rule and the read it is about, so
  running the edits again opens nothing twice.
- ``audit_log``: every action on an exception or a billing read — who,
  when, what, before and after. Append-only: the migration installs
  triggers that refuse UPDATE and DELETE, on SQLite and PostgreSQL alike.
- ``rejected_reads``: reads an operator rejected for a cycle; they are
  never chosen as that cycle's billing read again (the read itself stays).

Bills (``meterhub cycle bill``):

- ``bills``: one per account and cycle — its rate, bill period, total, and
  the determinants it was computed from, each naming the billing reads
  (collector, seq, signature) it came from;
- ``bill_lines``: the bill's lines in order, each naming the determinant it
  priced (or, for a fee, tax, discount or minimum, the lines it was computed
  from: ``basis``) and the rate version it used.

Cycle steps asked for through the API (``hub/api/runs.py``):

- ``cycle_runs``: one per step asked for, queued until a runner takes it;
- ``cycle_run_parts``: an edits or bill run split by route, one row per
  route, each claimed and worked by one runner of however many hub workers;
- ``cycle_runners``: each running runner's heartbeat, so the others can tell
  a runner that died (on any machine) from one still working.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hub.store.types import UtcDateTime

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
})

collectors = Table(
    "collectors", metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("enrolled_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("revoked_reason", Text),
    Column("broker_password_hash", Text),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("last_hash", String(64), nullable=False),
    Column("last_received_at", UtcDateTime),
)

collector_keys = Table(
    "collector_keys", metadata,
    Column("collector", String(64), ForeignKey("collectors.id"), primary_key=True),
    Column("key_id", String(32), primary_key=True),
    Column("public_key", Text, nullable=False),
    Column("from_seq", BigInteger, nullable=False),
    Column("through_seq", BigInteger),
    Column("added_at", UtcDateTime, nullable=False),
)

reads = Table(
    "reads", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("collector", String(64), ForeignKey("collectors.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("meter", String(64), nullable=False),
    Column("read_at", UtcDateTime, nullable=False),
    Column("collected_at", UtcDateTime, nullable=False),
    Column("source", String(32), nullable=False),
    Column("ntp_synced", Boolean, nullable=False),
    Column("meter_offset_s", String(32)),
    Column("values", JSON, nullable=False),
    Column("flags", JSON, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("sig", LargeBinary, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("verify_status", String(16), nullable=False, default="pending"),
    Column("verified_at", UtcDateTime),
    Column("verify_error", Text),
    UniqueConstraint("collector", "seq"),
    Index("ix_reads_meter_read_at", "meter", "read_at"),
    Index("ix_reads_verify_status_id", "verify_status", "id"),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("collector", String(64)),
    Column("topic", Text, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("first_seq", BigInteger),
    Column("last_seq", BigInteger),
    Column("raw", LargeBinary, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_quarantine_collector", "collector", "received_at"),
)

accounts = Table(
    "accounts", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("service_address", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("rate_code", String(64), nullable=False),
    Column("rate_options", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

meters = Table(
    "meters", metadata,
    Column("serial", String(64), primary_key=True),
    Column("service", String(16), nullable=False),
    Column("model", String(64)),
    Column("profile", String(64)),
    Column("multiplier", String(32), nullable=False),
    Column("dials", Integer, nullable=False),
    Column("unit", String(16), nullable=False),
    Column("size", String(32)),
    Column("updated_at", UtcDateTime, nullable=False),
)

meter_installations = Table(
    "meter_installations", metadata,
    Column("meter", String(64), ForeignKey("meters.serial"), primary_key=True),
    Column("account", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("installed_on", Date, primary_key=True),
    Column("removed_on", Date),
    Index("ix_meter_installations_account", "account", "installed_on"),
)

cycles = Table(
    "cycles", metadata,
    Column("id", String(64), primary_key=True),
    Column("read_window_start", Date, nullable=False),
    Column("read_window_end", Date, nullable=False),
    Column("scheduled_read_date", Date, nullable=False),
    Column("bill_period_start", Date, nullable=False),
    Column("bill_period_end", Date, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

routes = Table(
    "routes", metadata,
    Column("id", String(64), primary_key=True),
    Column("cycle", String(64), ForeignKey("cycles.id"), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

route_stops = Table(
    "route_stops", metadata,
    Column("route", String(64), ForeignKey("routes.id"), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("meter", String(64), ForeignKey("meters.serial"), nullable=False),
    Column("location_notes", Text, nullable=False),
    Column("latitude", String(16)),
    Column("longitude", String(16)),
    Column("hazards", Text, nullable=False),
    UniqueConstraint("route", "meter"),
)

billing_reads = Table(
    "billing_reads", metadata,
    Column("cycle", String(64), ForeignKey("cycles.id"), primary_key=True),
    Column("meter", String(64), ForeignKey("meters.serial"), primary_key=True),
    Column("account", String(64)),
    Column("kind", String(16), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("read_at", UtcDateTime, nullable=False),
    Column("registers", JSON, nullable=False),
    Column("multiplier", String(32), nullable=False),
    Column("source", String(32)),
    Column("flags", JSON, nullable=False),
    Column("meter_offset_s", String(32)),
    Column("collector", String(64)),
    Column("seq", BigInteger),
    Column("method", String(32)),
    Column("reason", Text),
    Column("audit_id", BigInteger),
    Column("detail", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_billing_reads_meter", "meter", "read_at"),
)

edit_exceptions = Table(
    "edit_exceptions", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("cycle", String(64), ForeignKey("cycles.id"), nullable=False),
    Column("meter", String(64), ForeignKey("meters.serial"), nullable=False),
    Column("account", String(64)),
    Column("rule", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("register", String(64)),
    Column("read_ref", String(160), nullable=False),
    Column("status", String(16), nullable=False),
    Column("rule_set", String(64), nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("resolved_by", String(128)),
    UniqueConstraint("cycle", "meter", "rule", "read_ref"),
    Index("ix_edit_exceptions_status", "status", "cycle"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("cycle", String(64)),
    Column("meter", String(64)),
    Column("exception_id", BigInteger),
    Column("reason", Text),
    Column("before", JSON),
    Column("after", JSON),
    Index("ix_audit_log_cycle", "cycle", "meter"),
)

rejected_reads = Table(
    "rejected_reads", metadata,
    Column("collector", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("cycle", String(64), ForeignKey("cycles.id"), nullable=False),
    Column("meter", String(64), nullable=False),
    Column("rejected_at", UtcDateTime, nullable=False),
    Column("audit_id", BigInteger, nullable=False),
    Index("ix_rejected_reads_cycle", "cycle", "meter"),
)

bills = Table(
    "bills", metadata,
    Column("cycle", String(64), ForeignKey("cycles.id"), primary_key=True),
    Column("account", String(64), ForeignKey("accounts.id"), primary_key=True),
    Column("rate_code", String(64), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("total", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("determinants", JSON, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
)

bill_lines = Table(
    "bill_lines", metadata,
    Column("cycle", String(64), primary_key=True),
    Column("account", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("code", String(96), nullable=False),
    Column("description", Text, nullable=False),
    Column("quantity", String(32), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("price", String(32)),
    Column("amount", String(32), nullable=False),
    Column("determinant", String(64)),
    Column("basis", JSON, nullable=False),
    Column("version", Date, nullable=False),
    ForeignKeyConstraint(["cycle", "account"], ["bills.cycle", "bills.account"]),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Column("last_used_at", UtcDateTime),
)

web_users = Table(
    "web_users", metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime),
)

web_sessions = Table(
    "web_sessions", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user", String(128), ForeignKey("web_users.name"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
)

collector_status = Table(
    "collector_status", metadata,
    Column("collector", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("version", String(64), nullable=False),
    Column("reported_at", UtcDateTime),
    Column("received_at", UtcDateTime, nullable=False),
    Column("buffer_depth", BigInteger),
    Column("last_seq", BigInteger),
    Column("acked_through", BigInteger),
)

cycle_runs = Table(
    "cycle_runs", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("cycle", String(64), ForeignKey("cycles.id"), nullable=False),
    Column("step", String(16), nullable=False),
    Column("options", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("worker", String(128)),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("result", JSON),
    Column("error", Text),
    Index("ix_cycle_runs_status", "status", "id"),
    Index("ix_cycle_runs_cycle", "cycle", "id"),
)

cycle_run_parts = Table(
    "cycle_run_parts", metadata,
    Column("run_id", BigInteger, ForeignKey("cycle_runs.id"), primary_key=True),
    Column("route", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("worker", String(128)),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("result", JSON),
    Column("error", Text),
    Index("ix_cycle_run_parts_status", "status", "run_id"),
)

cycle_runners = Table(
    "cycle_runners", metadata,
    Column("worker", String(128), primary_key=True),
    Column("host", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
)

reconciliations = Table(
    "reconciliations", metadata,
    Column("cycle", String(64), ForeignKey("cycles.id"), primary_key=True),
    Column("meter", String(64), primary_key=True),
    Column("route", String(64), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("account", String(64)),
    Column("status", String(16), nullable=False),
    Column("rule", Text, nullable=False),
    Column("collector", String(64)),
    Column("seq", BigInteger),
    Column("read_at", UtcDateTime),
    Column("trouble", JSON, nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("reconciled_at", UtcDateTime, nullable=False),
    Index("ix_reconciliations_status", "cycle", "status", "route"),
)

exports = Table(
    "exports", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("cycle", String(64), ForeignKey("cycles.id"), nullable=False),
    Column("format", String(16), nullable=False),
    Column("file_name", Text, nullable=False),
    Column("manifest_name", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("verified_at", UtcDateTime),
    Column("verified_ok", Boolean),
    Column("verify_detail", Text),
    Index("ix_exports_cycle", "cycle", "id"),
)
