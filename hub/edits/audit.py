"""The audit log: every decision on an exception or a billing read, never rewritten.

Who, when, what, and the state before and after, one row per action. This
module can only append and read: there is no update or delete here, and the
database refuses both anyway (migration 0003 installs triggers on SQLite and
PostgreSQL), so the trail an auditor reads is the trail that was written.

Example::

    audit_id = record(conn, actor="j.smith", action="accept", cycle="C2026-11",
                      meter="SDM630-00001", exception_id=17, reason="new tenant, pool filled",
                      before={"status": "open"}, after={"status": "accepted"})
    for entry in entries(conn, cycle="C2026-11"):
        print(entry.at, entry.actor, entry.action, entry.reason)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from hub.store.tables import audit_log

SYSTEM_ACTOR = "meterhub edits"
"""The actor of what the edits do on their own (estimates, cleared findings)."""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    cycle: str | None
    meter: str | None
    exception_id: int | None
    reason: str | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


def record(conn: Connection, *, actor: str, action: str, cycle: str | None = None,
           meter: str | None = None, exception_id: int | None = None,
           reason: str | None = None, before: Mapping[str, Any] | None = None,
           after: Mapping[str, Any] | None = None, at: datetime | None = None) -> int:
    """Append one action to the log (in the caller's transaction); returns its id."""
    row = conn.execute(insert(audit_log).values(
        at=at or datetime.now(UTC), actor=actor, action=action, cycle=cycle, meter=meter,
        exception_id=exception_id, reason=reason,
        before=dict(before) if before is not None else None,
        after=dict(after) if after is not None else None,
    ).returning(audit_log.c.id)).scalar_one()
    return int(row)


def record_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append many actions at once (no ids back): the edits' bulk clears and estimates."""
    if rows:
        conn.execute(insert(audit_log), rows)


def entries(conn: Connection, *, cycle: str | None = None, meter: str | None = None,
            exception_id: int | None = None, actor: str | None = None,
            limit: int | None = None) -> list[AuditEntry]:
    """The log, oldest first, narrowed to a cycle, a meter, an exception or who acted."""
    query = select(audit_log).order_by(audit_log.c.id)
    if actor is not None:
        query = query.where(audit_log.c.actor == actor)
    if cycle is not None:
        query = query.where(audit_log.c.cycle == cycle)
    if meter is not None:
        query = query.where(audit_log.c.meter == meter)
    if exception_id is not None:
        query = query.where(audit_log.c.exception_id == exception_id)
    if limit is not None:
        query = query.limit(limit)
    return [AuditEntry(r.id, r.at, r.actor, r.action, r.cycle, r.meter, r.exception_id,
                       r.reason, r.before, r.after) for r in conn.execute(query)]
