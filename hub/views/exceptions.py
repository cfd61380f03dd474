"""The exceptions queue as the API and the pages show it, and the one way both decide.

Read models (pydantic) over :mod:`hub.edits.queue` — the queue's own order
(most severe first, then oldest) and its own detail (the billing read, the
audit trail) — plus a page total. A decision goes through :func:`decide`,
which validates the request the same way for JSON and for a form
(:class:`ResolveRequest`) and calls :func:`hub.edits.actions.resolve`, so an
operator's click and a script's POST are one audited path.

Example::

    with store.connect() as conn:
        items, total = exceptions_page(conn, Filters(cycle="C2026-11", status="open"),
                                       PageParams(limit=50, offset=0))
    done = decide(store, settings, items[0].id, ResolveRequest(
        action=Action.ACCEPT, reason="pool filled; customer confirmed"), actor="alice")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import Connection

from hub.api.pagination import PageParams
from hub.api.settings import HubSettings
from hub.edits.actions import Action, resolve
from hub.edits.audit import AuditEntry
from hub.edits.model import EstimationMethod, Severity
from hub.edits.queue import (
    STATUSES,
    ExceptionDetail,
    count_exceptions,
    get_exception,
    list_exceptions,
)
from hub.store import Store
from protocols.read import REGISTER_RE
from protocols.scalars import ScalarError, parse_decimal

ExceptionStatus = StrEnum(  # type: ignore[misc]
    "ExceptionStatus", {name.upper(): name for name in STATUSES})
"""An exception's status: ``open`` until decided, then the decision's (or ``cleared``)."""

MAX_REASON = 1000
Reason = Annotated[str, StringConstraints(
    strip_whitespace=True, min_length=1, max_length=MAX_REASON,
    pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
"""Free text for people, on one or more lines: no other control characters."""
DecimalText = Annotated[str, StringConstraints(
    max_length=26, pattern=r"^-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,9})?$")]
"""A register value an operator types: up to 15 digits and 9 decimals, far past any dial."""
RegisterName = Annotated[str, StringConstraints(pattern=rf"^{REGISTER_RE.pattern}$")]

# --- read models ---------------------------------------------------------------------


class ExceptionOut(BaseModel):
    """One finding of the meter edits, and whether (and how) it was decided."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    cycle: str
    meter: str
    account: str | None
    rule: str
    severity: Severity
    message: str
    read_ref: str = Field(description="Which read it is about: read:<collector>:<seq>, …")
    status: ExceptionStatus
    rule_set: str
    opened_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    open: bool


class BillingReadOut(BaseModel):
    """The read a meter bills on in the cycle: actual, estimated or overridden."""

    kind: str
    origin: str
    account: str | None
    read_at: datetime
    registers: dict[str, str] = Field(description="Register → decimal string.")
    multiplier: str
    source: str | None
    flags: list[str]
    collector: str | None
    seq: int | None
    method: str | None
    reason: str | None
    audit_id: int | None
    detail: str = Field(description="How it was chosen or made.")
    updated_at: datetime


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    exception_id: int | None
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ExceptionDetailOut(BaseModel):
    exception: ExceptionOut
    billing_read: BillingReadOut | None = Field(
        description="The meter's billing read in the cycle now (null: none, e.g. awaiting a "
                    "re-read).")
    trail: list[AuditEntryOut] = Field(description="Decisions on it, oldest first.")

    @classmethod
    def of(cls, detail: ExceptionDetail) -> ExceptionDetailOut:
        read = detail.billing_read
        return cls(exception=ExceptionOut.model_validate(detail.item),
                   billing_read=BillingReadOut.model_validate(read) if read else None,
                   trail=[_entry(e) for e in detail.trail])


class ResolutionOut(ExceptionDetailOut):
    """What a decision did: its audit record, every exception it closed, the result."""

    action: Action
    audit_id: int
    closed: list[int] = Field(description="Every exception this decision closed.")


class ResolveRequest(BaseModel):
    """An operator's decision on an exception."""

    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="accept: the read stands; reject: re-read the meter; "
                           "estimate: bill an estimate; override: bill `values`.")
    reason: Reason = Field(description="Why: on the audit log, read by auditors and by "
                           "customer service.")
    values: dict[RegisterName, DecimalText] | None = Field(
        None, validate_default=True,
        description="Register → decimal string to bill (override only).",
        examples=[{"energy_import_kwh": "10412.5"}])
    method: EstimationMethod | None = Field(
        None, description="Estimation method (estimate only; default: the rule set's order).")

    @field_validator("values")
    @classmethod
    def _values_go_with_override(cls, values: dict[str, str] | None,
                                 info: ValidationInfo) -> dict[str, str] | None:
        action = info.data.get("action")
        if values is not None and action is not Action.OVERRIDE:
            raise ValueError("values go with action override only")
        for name, text in (values or {}).items():
            try:
                parse_decimal(text)
            except ScalarError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if action is Action.OVERRIDE and not values:
            raise ValueError("an override needs at least one register=value to bill")
        return values

    @field_validator("method")
    @classmethod
    def _method_goes_with_estimate(cls, method: EstimationMethod | None,
                                   info: ValidationInfo) -> EstimationMethod | None:
        if method is not None and info.data.get("action") is not Action.ESTIMATE:
            raise ValueError("a method goes with action estimate only")
        return method


# --- queries and the decision ----------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the queue is narrowed to; None: any. Names are the table's columns."""

    cycle: str | None = None
    status: str | None = None
    severity: str | None = None
    rule: str | None = None
    meter: str | None = None
    account: str | None = None


def exceptions_page(conn: Connection, filters: Filters, params: PageParams
                    ) -> tuple[list[ExceptionOut], int]:
    """A page of the queue in its order, and how many match in all."""
    given = asdict(filters)
    items = list_exceptions(conn, **given, limit=params.limit, offset=params.offset)
    return [ExceptionOut.model_validate(i) for i in items], count_exceptions(conn, **given)


def exception_detail(conn: Connection, exception_id: int) -> ExceptionDetailOut | None:
    detail = get_exception(conn, exception_id)
    return ExceptionDetailOut.of(detail) if detail is not None else None


def decide(store: Store, settings: HubSettings, exception_id: int, request: ResolveRequest,
           *, actor: str) -> ResolutionOut:
    """Carry out ``request`` in one transaction; :mod:`hub.edits.actions`' errors as they are.

    :class:`~hub.edits.actions.UnknownException` (no such id),
    :class:`~hub.edits.actions.AlreadyResolved`, or
    :class:`~hub.edits.actions.ResolveError` saying why the decision cannot be made.
    """
    values = {name: parse_decimal(text) for name, text in (request.values or {}).items()}
    with store.begin() as conn:
        done = resolve(conn, exception_id, request.action, actor=actor, reason=request.reason,
                       rule_set=settings.rule_set, zone=settings.zone, values=values or None,
                       method=request.method)
        detail = get_exception(conn, exception_id)
    assert detail is not None  # it was just resolved in this transaction
    return ResolutionOut(**ExceptionDetailOut.of(detail).model_dump(), action=done.action,
                         audit_id=done.audit_id, closed=list(done.closed))


def _entry(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(id=entry.id, at=entry.at, actor=entry.actor, action=entry.action,
                         exception_id=entry.exception_id, reason=entry.reason,
                         before=dict(entry.before) if entry.before is not None else None,
                         after=dict(entry.after) if entry.after is not None else None)
