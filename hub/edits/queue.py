"""The exceptions queue as operators read it: filtered lists, one exception in full.

Read-only; decisions go through :mod:`hub.edits.actions`, so every change
is audited.

Example::

    for item in list_exceptions(conn, cycle="C2026-11", status="open", severity="blocking"):
        print(item.id, item.meter, item.rule, item.message)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, case, func, select

from hub.edits.audit import AuditEntry, entries
from hub.store.tables import billing_reads, edit_exceptions

STATUSES = ("open", "accepted", "rejected", "estimated", "overridden", "cleared")
SEVERITIES = ("info", "warning", "blocking")


@dataclass(frozen=True)
class ExceptionItem:
    id: int
    cycle: str
    meter: str
    account: str | None
    rule: str
    severity: str
    message: str
    read_ref: str
    status: str
    rule_set: str
    opened_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None

    @property
    def open(self) -> bool:
        return self.status == "open"


@dataclass(frozen=True)
class ExceptionDetail:
    item: ExceptionItem
    billing_read: dict[str, Any] | None
    trail: list[AuditEntry]


def list_exceptions(conn: Connection, *, cycle: str | None = None, status: str | None = None,
                    severity: str | None = None, rule: str | None = None,
                    meter: str | None = None, account: str | None = None,
                    limit: int | None = None, offset: int = 0) -> list[ExceptionItem]:
    """Exceptions matching every filter given, most severe first, then oldest first."""
    query = exceptions_query(cycle=cycle, status=status, severity=severity, rule=rule,
                             meter=meter, account=account)
    most_severe_first = case({name: -rank for rank, name in enumerate(SEVERITIES)},
                             value=edit_exceptions.c.severity, else_=1)
    query = query.order_by(most_severe_first, edit_exceptions.c.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [_item(r) for r in conn.execute(query)]


def count_exceptions(conn: Connection, **filters: str | None) -> int:
    """How many exceptions :func:`list_exceptions` would give with the same filters."""
    query = exceptions_query(**filters)
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def exceptions_query(*, cycle: str | None = None, status: str | None = None,
                     severity: str | None = None, rule: str | None = None,
                     meter: str | None = None, account: str | None = None) -> Select[Any]:
    """The exceptions matching every filter given (None: any), unordered."""
    query = select(edit_exceptions)
    for column, value in ((edit_exceptions.c.cycle, cycle), (edit_exceptions.c.status, status),
                          (edit_exceptions.c.severity, severity),
                          (edit_exceptions.c.rule, rule), (edit_exceptions.c.meter, meter),
                          (edit_exceptions.c.account, account)):
        if value is not None:
            query = query.where(column == value)
    return query


def get_exception(conn: Connection, exception_id: int) -> ExceptionDetail | None:
    """One exception with the meter's billing read for its cycle and its audit trail."""
    row = conn.execute(select(edit_exceptions).where(
        edit_exceptions.c.id == exception_id)).first()
    if row is None:
        return None
    billing = conn.execute(select(billing_reads).where(
        (billing_reads.c.cycle == row.cycle) & (billing_reads.c.meter == row.meter))).first()
    trail = [e for e in entries(conn, cycle=row.cycle, meter=row.meter)
             if e.exception_id in (None, row.id) or _closes(e, row.id)]
    return ExceptionDetail(_item(row), dict(billing._mapping) if billing else None, trail)


def _closes(entry: AuditEntry, exception_id: int) -> bool:
    closed = (entry.after or {}).get("exceptions")
    return isinstance(closed, list) and exception_id in closed


def _item(row: Any) -> ExceptionItem:
    return ExceptionItem(row.id, row.cycle, row.meter, row.account, row.rule, row.severity,
                         row.message, row.read_ref, row.status, row.rule_set, row.opened_at,
                         row.resolved_at, row.resolved_by)
