"""An operator's decision on an exception: accept, reject (re-read), estimate, or override.

Each decision is one transaction that changes the exception(s), the meter's
billing read where the decision says so, and appends one audit record with
who, when, what, why and the state before and after:

- **accept** — the read stands as it is; this exception closes.
- **reject** — the read is wrong: it and the meter's other reads stored for
  the window so far are marked rejected for the cycle (never chosen again,
  never deleted), the billing read goes, every open exception about it closes,
  and the meter shows as missing, so the next ``meterhub cycle reread`` puts
  it on a handheld's route. Until a new read
  arrives the edits hold the account (``awaiting_reread``).
- **estimate** — bill an estimate instead (a read it replaces is rejected,
  not overwritten); past the consecutive-estimate limit only an operator's
  estimate, with its reason on record, may go on.
- **override** — bill the values the operator gives; they stand until another
  operator decision.

A reason is required for every decision: it is what an auditor, or the
customer calling about the bill, will read.

Example::

    with store.begin() as conn:
        done = resolve(conn, 17, Action.OVERRIDE, actor="j.smith", rule_set=rules,
                       zone=UTC, reason="photo of the dial: 10 412",
                       values={"energy_import_kwh": Decimal("10412")})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from hub.edits.audit import record
from hub.edits.estimate import CannotEstimate, estimate
from hub.edits.model import EstimationMethod, MeterFacts, MeterRead, ReadKind
from hub.edits.ruleset import RuleSet
from hub.edits.store import (
    EDITS_ORIGIN,
    OPEN,
    billing_row,
    describe_row,
    load_facts,
    load_history,
    load_later_reads,
    read_from_row,
)
from hub.reconcile import Cycle, MeterResult, Status
from hub.reconcile_store import load_cycle
from hub.store.tables import billing_reads, edit_exceptions, reads, rejected_reads
from protocols.read import REGISTER_RE

MAX_REASON = 2000


class Action(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    ESTIMATE = "estimate"
    OVERRIDE = "override"

    @property
    def status(self) -> str:
        """The status an exception closed by this action takes."""
        return _STATUS[self]


_STATUS = {Action.ACCEPT: "accepted", Action.REJECT: "rejected",
           Action.ESTIMATE: "estimated", Action.OVERRIDE: "overridden"}


class ResolveError(ValueError):
    """A decision that cannot be carried out, with what and why."""


class UnknownException(ResolveError, LookupError):
    """No exception has that id."""


class AlreadyResolved(ResolveError):
    """The exception is no longer open."""


@dataclass(frozen=True)
class Resolution:
    exception_id: int
    action: Action
    audit_id: int
    closed: tuple[int, ...]
    """Every exception this decision closed (reject/estimate/override close all on the read)."""
    billing_read: Mapping[str, Any] | None
    """The meter's billing read after the decision (None: it waits for a re-read)."""


def resolve(conn: Connection, exception_id: int, action: Action | str, *, actor: str,
            reason: str, rule_set: RuleSet, zone: tzinfo = UTC,
            values: Mapping[str, Decimal] | None = None,
            method: EstimationMethod | str | None = None,
            now: datetime | None = None) -> Resolution:
    """Carry out ``action`` on exception ``exception_id`` (in the caller's transaction)."""
    action = Action(action)
    now = now or datetime.now(UTC)
    reason = _required_text(reason, "a reason")
    actor = _required_text(actor, "who decides (--by)")
    exception = conn.execute(select(edit_exceptions).where(
        edit_exceptions.c.id == exception_id).with_for_update()).first()
    if exception is None:
        raise UnknownException(f"no exception {exception_id}")
    if exception.status != OPEN:
        raise AlreadyResolved(f"exception {exception_id} is already {exception.status} "
                              f"(by {exception.resolved_by})")
    if values and action is not Action.OVERRIDE:
        raise ResolveError("values go with --action override only")
    if method is not None and action is not Action.ESTIMATE:
        raise ResolveError("a method goes with --action estimate only")
    before_row = conn.execute(select(billing_reads).where(
        (billing_reads.c.cycle == exception.cycle)
        & (billing_reads.c.meter == exception.meter))).first()
    before = {"exception": _exception_state(exception),
              "billing_read": describe_row(before_row) if before_row is not None else None}
    after_row = _after(conn, exception, before_row, action, rule_set=rule_set, zone=zone,
                       values=values, method=method, reason=reason, now=now)
    closing = (exception.id,) if action is Action.ACCEPT else _open_on_meter(conn, exception)
    audit_id = record(
        conn, actor=actor, action=action.value, cycle=exception.cycle, meter=exception.meter,
        exception_id=exception.id, reason=reason, before=before, at=now,
        after={"exceptions": list(closing), "status": action.status,
               "billing_read": describe_row(after_row) if after_row is not None else None})
    if action in (Action.REJECT, Action.ESTIMATE) and _is_signed(before_row):
        _reject_window_reads(conn, exception, zone, audit_id, now)
    if action is not Action.ACCEPT:
        conn.execute(delete(billing_reads).where(
            (billing_reads.c.cycle == exception.cycle)
            & (billing_reads.c.meter == exception.meter)))
        if after_row is not None:
            conn.execute(insert(billing_reads).values(**{**after_row, "audit_id": audit_id}))
    conn.execute(update(edit_exceptions).where(edit_exceptions.c.id.in_(closing)).values(
        status=action.status, resolved_at=now, resolved_by=actor))
    return Resolution(exception.id, action, audit_id, closing,
                      describe_row(after_row) if after_row is not None else None)


def _after(conn: Connection, exception: Any, before_row: Any, action: Action, *,
           rule_set: RuleSet, zone: tzinfo, values: Mapping[str, Decimal] | None,
           method: EstimationMethod | str | None, reason: str, now: datetime
           ) -> dict[str, Any] | None:
    """The meter's billing read once ``action`` is carried out (None: none until a re-read)."""
    if action is Action.ACCEPT:
        if before_row is None:
            raise ResolveError(
                f"meter {exception.meter} has no billing read in {exception.cycle} to accept: "
                "estimate or override it, or wait for the re-read")
        return dict(before_row._mapping)
    if action is Action.REJECT:
        _require_signed(before_row, exception)
        return None
    if action is Action.ESTIMATE:
        return _estimate_row(conn, exception, rule_set, zone, method, reason, now)
    if not values:
        raise ResolveError("an override needs the values to bill (register=value)")
    return _override_row(conn, exception, before_row, values, zone, reason, now)


def _required_text(text: str | None, what: str) -> str:
    cleaned = (text or "").strip()
    if not cleaned:
        raise ResolveError(f"{what} is required")
    if len(cleaned) > MAX_REASON:
        raise ResolveError(f"{what} is longer than {MAX_REASON} characters")
    return cleaned


def _exception_state(exception: Any) -> dict[str, Any]:
    return {"id": exception.id, "rule": exception.rule, "severity": exception.severity,
            "status": exception.status, "read_ref": exception.read_ref}


def _open_on_meter(conn: Connection, exception: Any) -> tuple[int, ...]:
    """The open exceptions about this meter's read in this cycle: one decision closes them all."""
    return tuple(conn.execute(select(edit_exceptions.c.id).where(
        (edit_exceptions.c.cycle == exception.cycle)
        & (edit_exceptions.c.meter == exception.meter)
        & (edit_exceptions.c.status == OPEN)).order_by(edit_exceptions.c.id)).scalars())


def _is_signed(row: Any) -> bool:
    return row is not None and row.kind == ReadKind.ACTUAL.value and row.collector is not None


def _require_signed(row: Any, exception: Any) -> None:
    if not _is_signed(row):
        what = "no billing read" if row is None else f"an {row.kind} billing read"
        raise ResolveError(
            f"meter {exception.meter} has {what} in {exception.cycle}: reject applies to a "
            "meter's read; estimate or override instead, or wait for the re-read")


def _reject_window_reads(conn: Connection, exception: Any, zone: tzinfo, audit_id: int,
                         now: datetime) -> None:
    """Reject every read of the meter stored for the cycle's window so far.

    A gateway sends a meter's reads every few minutes: rejecting only the
    billing read would let its neighbour, wrong the same way, take its place.
    A read that arrives after this decision (the re-read) is a new candidate.
    """
    start, end = load_cycle(conn, exception.cycle, zone).window()
    already = rejected_reads.alias("already")
    found = conn.execute(
        select(reads.c.collector, reads.c.seq)
        .outerjoin(already, (already.c.collector == reads.c.collector)
                   & (already.c.seq == reads.c.seq))
        .where((reads.c.meter == exception.meter) & (reads.c.read_at >= start)
               & (reads.c.read_at < end) & already.c.seq.is_(None))).all()
    if found:
        conn.execute(insert(rejected_reads), [
            {"collector": r.collector, "seq": r.seq, "cycle": exception.cycle,
             "meter": exception.meter, "rejected_at": now, "audit_id": audit_id}
            for r in found])


def _estimate_row(conn: Connection, exception: Any, rule_set: RuleSet, zone: tzinfo,
                  method: EstimationMethod | str | None, reason: str,
                  now: datetime) -> dict[str, Any]:
    cycle, facts = _meter(conn, exception, zone)
    start, end = cycle.window()
    history = load_history(conn, cycle, start, meter=exception.meter).get(exception.meter, [])
    later = load_later_reads(conn, cycle, end, meter=exception.meter).get(exception.meter)
    settings = rule_set.estimation
    if exception.rule == "estimation_limit":
        # The operator's audited decision goes past the limit the rule set sets for the edits.
        settings = dataclasses.replace(settings, max_consecutive=len(history) + 1)
    try:
        made = estimate(facts, history, cycle.target, settings, later=later,
                        method=EstimationMethod(method) if method else None, cycle=cycle.id)
    except CannotEstimate as exc:
        raise ResolveError(str(exc)) from None  # it names the meter and why
    read = dataclasses.replace(made.read, reason=reason)
    return billing_row(cycle.id, facts, read, f"estimated by an operator: {made.explanation}",
                       now, origin=EDITS_ORIGIN)


def _override_row(conn: Connection, exception: Any, row: Any, values: Mapping[str, Decimal],
                  zone: tzinfo, reason: str, now: datetime) -> dict[str, Any]:
    cycle, facts = _meter(conn, exception, zone)
    for name, value in values.items():
        _check_override(name, value)
    read_at = read_from_row(row).read_at if row is not None else cycle.target
    read = MeterRead(read_at=read_at, registers=dict(values), kind=ReadKind.OVERRIDE,
                     reason=reason, cycle=cycle.id)
    return billing_row(cycle.id, facts, read, f"overridden by an operator: {reason}", now,
                       origin=EDITS_ORIGIN)


OVERRIDE_MAX_DIGITS = 15
"""Integer digits of an override value: far past any dial, and well inside the
28 significant digits billing's decimal arithmetic carries exactly."""
OVERRIDE_MAX_PLACES = 9


def _check_override(name: str, value: Decimal) -> None:
    """The API's bounds on a typed value, here so that every way in (CLI, API, code) has them."""
    if not REGISTER_RE.fullmatch(name):
        raise ResolveError(f"{name!r} is not a register name (e.g. energy_import_kwh)")
    if not value.is_finite():
        raise ResolveError(f"{name}: an override value must be a number, not {value}")
    if value < 0:
        raise ResolveError(f"{name}: an override value cannot be negative ({value})")
    if value >= Decimal(10) ** OVERRIDE_MAX_DIGITS:
        raise ResolveError(f"{name}: {value} has more than {OVERRIDE_MAX_DIGITS} digits "
                           "before the point; no register holds that")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -OVERRIDE_MAX_PLACES:
        raise ResolveError(f"{name}: {value} has more than {OVERRIDE_MAX_PLACES} decimal places")


def _meter(conn: Connection, exception: Any, zone: tzinfo) -> tuple[Cycle, MeterFacts]:
    cycle = load_cycle(conn, exception.cycle, zone)
    result = MeterResult(route="", sequence=0, meter=exception.meter,
                         account=exception.account, status=Status.READ, rule="")
    return cycle, load_facts(conn, cycle, [result])[exception.meter]
