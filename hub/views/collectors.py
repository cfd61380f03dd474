"""Collectors as the API and the pages show them: registry facts joined with their health.

The registry (``collectors``) says whom the hub trusts; the last status
message (``collector_status``) says whether that collector is alive. An
operator asks both questions at once ("is gw-17 enrolled, and is it
talking?"), so one query answers both, and enrolment and revocation —
which change who may send reads — are audited here for both front ends.

Example::

    with store.begin() as conn:
        enrolled = enrol_collector(conn, "gw-0001", public_key, actor="alice",
                                   now=now, offline_after_s=3600)
    print(enrolled.broker_password)  # shown once; only its hash is kept
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row, Select, select

from hub.api.pagination import PageParams, paged_rows
from hub.broker_config import mosquitto_password_hash, new_broker_password
from hub.edits.audit import record
from hub.store.collector_status import CollectorHealth
from hub.store.collectors import (
    CollectorError,
    add_collector,
    find_collector,
    revoke_collector,
)
from hub.store.tables import collector_status, collectors

CollectorState = Literal["active", "revoked"]
REASON_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f\uFEFF][^\x00-\x1f\x7f-\x9f]*$"
"""A reason: one line, not blank, no control characters (as JSON Schema, Python and the
API's validator all read it alike)."""
BROKER_CONFIG_HINT = ("run `meterhub broker-config` and reload the broker, so the collector "
                      "can log in with this password")


class HealthOut(BaseModel):
    """The collector's last word about itself (its retained MQTT status message)."""

    online: bool = Field(description="Said online, recently enough to believe it.")
    state: str | None = Field(description="online or offline as last reported; null if "
                              "it never reported.")
    version: str | None
    reported_at: datetime | None = Field(description="The collector's clock when it said so.")
    received_at: datetime | None = Field(description="When the hub received the status.")
    buffer_depth: int | None = Field(description="Reads waiting on the collector.")
    acked_through: int | None = Field(description="The highest seq the hub acknowledged, "
                                      "as the collector knows it.")


class CollectorOut(BaseModel):
    id: str
    status: CollectorState
    key_id: str = Field(description="The current key's id (32 hex digits).")
    enrolled_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    last_seq: int = Field(description="The last seq stored from this collector.")
    last_received_at: datetime | None = Field(description="When its last batch was stored.")
    health: HealthOut


class EnrolledCollector(BaseModel):
    collector: CollectorOut
    broker_password: str = Field(description="The collector's MQTT password. Shown this once: "
                                 "the hub keeps only its hash.")
    next_step: str = BROKER_CONFIG_HINT


class AlreadyRevoked(CollectorError):
    """A revocation of a collector that is revoked already."""


def _query() -> Select:
    return select(collectors, collector_status.c.state, collector_status.c.version,
                  collector_status.c.reported_at, collector_status.c.received_at,
                  collector_status.c.buffer_depth, collector_status.c.acked_through,
                  collector_status.c.last_seq.label("status_last_seq")
                  ).outerjoin(collector_status, collector_status.c.collector == collectors.c.id)


def _out(row: Row, now: datetime, offline_after_s: float) -> CollectorOut:
    if row.received_at is None:
        health = HealthOut(online=False, state=None, version=None, reported_at=None,
                           received_at=None, buffer_depth=None, acked_through=None)
    else:
        seen = CollectorHealth(row.id, row.state, row.version, row.reported_at,
                               row.received_at, row.buffer_depth, row.status_last_seq,
                               row.acked_through)
        health = HealthOut(online=seen.online(now, offline_after_s), state=seen.state,
                           version=seen.version, reported_at=seen.reported_at,
                           received_at=seen.received_at, buffer_depth=seen.buffer_depth,
                           acked_through=seen.acked_through)
    return CollectorOut(id=row.id, status=row.status, key_id=row.key_id,
                        enrolled_at=row.enrolled_at, revoked_at=row.revoked_at,
                        revoked_reason=row.revoked_reason, last_seq=row.last_seq,
                        last_received_at=row.last_received_at, health=health)


def collector_page(conn: Connection, params: PageParams, *, now: datetime,
                   offline_after_s: float, status: CollectorState | None = None
                   ) -> tuple[list[CollectorOut], int]:
    """A page of collectors by id, with their health; the total."""
    query = _query()
    if status is not None:
        query = query.where(collectors.c.status == status)
    rows, total = paged_rows(conn, query.order_by(collectors.c.id), params)
    return [_out(row, now, offline_after_s) for row in rows], total


def collector_view(conn: Connection, collector_id: str, *, now: datetime,
                   offline_after_s: float) -> CollectorOut | None:
    row = conn.execute(_query().where(collectors.c.id == collector_id)).first()
    return _out(row, now, offline_after_s) if row is not None else None


def enrol_collector(conn: Connection, collector_id: str, key: Ed25519PublicKey, *, actor: str,
                    now: datetime, offline_after_s: float) -> EnrolledCollector:
    """Enrol with a new broker password (its hash stored), audited; CollectorError if taken."""
    if find_collector(conn, collector_id) is not None:
        raise CollectorError(f"collector {collector_id} is already enrolled; rotate its key "
                             "with `meterhub collectors rotate` instead")
    password = new_broker_password()
    added = add_collector(conn, collector_id, key,
                          broker_password_hash=mosquitto_password_hash(password), now=now)
    record(conn, actor=actor, action="collector.enrol", at=now,
           after={"collector": added.id, "key_id": added.key_id})
    view = collector_view(conn, collector_id, now=now, offline_after_s=offline_after_s)
    if view is None:  # unreachable: added in this very transaction
        raise CollectorError(f"collector {collector_id} vanished while being enrolled")
    return EnrolledCollector(collector=view, broker_password=password)


def revoke(conn: Connection, collector_id: str, *, reason: str, actor: str, now: datetime,
           offline_after_s: float) -> CollectorOut | None:
    """Revoke, audited; None if unknown, :class:`AlreadyRevoked` if revoked before."""
    found = find_collector(conn, collector_id, lock=True)
    if found is None:
        return None
    if not found.active:
        raise AlreadyRevoked(f"collector {collector_id} was already revoked at "
                             f"{found.revoked_at:%Y-%m-%d %H:%M}Z")
    revoke_collector(conn, collector_id, reason=reason, now=now)
    record(conn, actor=actor, action="collector.revoke", reason=reason, at=now,
           before={"collector": collector_id, "status": "active"},
           after={"collector": collector_id, "status": "revoked"})
    return collector_view(conn, collector_id, now=now, offline_after_s=offline_after_s)
