"""Run a cycle's meter edits against the store: load each meter's case, save what comes out.

The thin shell around :func:`hub.edits.engine.evaluate`. In one transaction
(the caller's) it reconciles the cycle, loads every meter's facts, history
(billing reads of earlier cycles), this cycle's kept estimate or override,
the first good read after the window and whether an operator rejected a
read; then it saves each meter's billing read (``billing_reads``) and turns
every finding into an exception (``edit_exceptions``).

Running the edits again is safe and cheap: an exception is unique per
cycle, meter, rule and the read it is about, so nothing opens twice; an open
exception whose finding is gone (a re-read arrived, the rule set changed) is
*cleared*, on the audit log; an exception an operator resolved stays
resolved. Estimates the edits make on their own are on the audit log too,
under :data:`~hub.edits.audit.SYSTEM_ACTOR`.

A run can be narrowed to some of the cycle's meters (``meters=``: one
route's, when several hub workers share a cycle by route): everything it
reads and writes is then about those meters only — their billing reads,
their exceptions (opened, kept or cleared), their audit records — so runs
over disjoint meters go on at once, in separate transactions, and together
do what one run over the whole cycle does.

Example::

    with store.begin() as conn:
        run = run_edits(conn, "C2026-11", ZoneInfo("America/Toronto"), default_rule_set())
    print(run.opened, "exceptions opened;", len(run.held), "accounts held")
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, func, insert, select, update

from hub.edits.audit import SYSTEM_ACTOR, record_many
from hub.edits.engine import MeterCase, MeterOutcome, evaluate
from hub.edits.model import EstimationMethod, Finding, MeterFacts, MeterRead, ReadKind
from hub.edits.ruleset import RuleSet
from hub.reconcile import (
    CandidateRead,
    Cycle,
    MeterResult,
    Reconciliation,
)
from hub.reconcile_store import (
    candidate_from_row,
    candidate_reads_query,
    cycle_meters,
    load_cycle,
    reconcile_loaded,
)
from hub.store.tables import (
    accounts,
    billing_reads,
    cycles,
    edit_exceptions,
    meter_installations,
    rejected_reads,
)
from hub.store.tables import meters as meters_table
from protocols.scalars import ScalarError, format_decimal, format_instant, parse_decimal

OPEN = "open"
CLEARED = "cleared"
EDITS_ORIGIN = "edits"
MAX_HISTORY = 26
"""Billing reads of earlier cycles kept per meter: two years of monthly bills."""
HISTORY_DAYS = 2 * 366 + 31
"""How far back history is fetched: two years, and the month the first of them closed."""
LATER_DAYS = 62
"""How far after the window a good read still helps interpolate an estimate."""
COMPARED = ("account", "kind", "read_at", "registers", "multiplier", "source", "flags",
            "meter_offset_s", "collector", "seq", "method", "reason", "audit_id")
"""The billing-read columns whose change is a new billing read (``detail`` is prose)."""


@dataclass(frozen=True)
class HeldAccount:
    """An account held out of billing: its meters and the blocking exceptions on them."""

    account: str
    meters: tuple[str, ...]
    rules: tuple[str, ...]
    exceptions: int


@dataclass
class EditsRun:
    cycle: str
    rule_set: str
    meters: int = 0
    billing: Counter[str] = field(default_factory=Counter)
    findings: Counter[tuple[str, str]] = field(default_factory=Counter)
    opened: int = 0
    cleared: int = 0
    open_exceptions: int = 0
    held: list[HeldAccount] = field(default_factory=list)


def run_edits(conn: Connection, cycle_id: str, zone: tzinfo, rule_set: RuleSet, *,
              now: datetime | None = None, meters: Collection[str] | None = None) -> EditsRun:
    """Run every edit of ``rule_set`` over ``cycle_id`` and save the outcome (one transaction).

    ``meters``: only those meters of the cycle (see the module's docstring). The
    cycle's row is then locked shared rather than exclusive, so the runs over
    its other meters go on meanwhile, and the cycle-wide ``open_exceptions`` and
    ``held`` are left at zero and empty: they are only known once every one of
    those runs has committed (:func:`count_open`, :func:`held_accounts`).
    """
    now = now or datetime.now(UTC)
    scope = frozenset(meters) if meters is not None else None
    conn.execute(select(cycles.c.id).where(cycles.c.id == cycle_id)
                 .with_for_update(read=scope is not None))
    cycle = load_cycle(conn, cycle_id, zone)
    reconciliation = reconcile_loaded(conn, cycle, scope)
    cases = load_cases(conn, cycle, reconciliation, meters=scope)
    outcomes = [evaluate(case, rule_set) for case in cases]
    run = EditsRun(cycle.id, rule_set.version, meters=len(outcomes))
    facts = {case.meter.serial: case.meter for case in cases}
    _save_billing_reads(conn, cycle, outcomes, facts, now, run, scope)
    _save_exceptions(conn, cycle, outcomes, facts, rule_set.version, now, run, scope)
    if scope is None:
        run.open_exceptions = count_open(conn, cycle.id)
        run.held = held_accounts(conn, cycle.id)
    return run


# --- loading -----------------------------------------------------------------

def load_cases(conn: Connection, cycle: Cycle, reconciliation: Reconciliation, *,
               meters: Collection[str] | None = None) -> list[MeterCase]:
    """Every meter of the reconciled cycle as the engine needs it (one query per table).

    ``meters``: what is fetched is theirs only (the reconciliation is theirs already).
    """
    results = list(reconciliation.meters)
    facts = load_facts(conn, cycle, results, meters=meters)
    start, end = cycle.window()
    history = load_history(conn, cycle, start, meters=meters)
    kept = {meter: read_from_row(row)
            for meter, row in load_billing_rows(conn, cycle.id, meters=meters).items()}
    later = load_later_reads(conn, cycle, end, meters=meters)
    rejected = load_rejected_meters(conn, cycle.id)
    cases = []
    for result in results:
        actual = candidate_read(result.billing_read, cycle.id) if result.billing_read else None
        cases.append(MeterCase(
            cycle=cycle, meter=facts[result.meter], status=result.status, actual=actual,
            kept=kept.get(result.meter), history=tuple(history.get(result.meter, ())),
            later=later.get(result.meter), rejected=result.meter in rejected,
            trouble=result.trouble))
    return cases


def load_facts(conn: Connection, cycle: Cycle, results: Sequence[MeterResult], *,
               meters: Collection[str] | None = None) -> dict[str, MeterFacts]:
    meter_query = _for_meters(select(meters_table), meters_table.c.serial, cycle, None, meters)
    meter_rows = {r.serial: r for r in conn.execute(meter_query)}
    installs: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(_for_meters(
        select(meter_installations, accounts.c.status)
        .join(accounts, accounts.c.id == meter_installations.c.account),
        meter_installations.c.meter, cycle, None, meters)
    ):
        installs[row.meter].append(row)
    facts = {}
    for result in results:
        meter = meter_rows[result.meter]
        own = [i for i in installs.get(result.meter, ()) if i.account == result.account]
        install = max(own or installs.get(result.meter, ()) or [None],
                      key=lambda i: i.installed_on if i is not None else cycle.window_start)
        facts[result.meter] = MeterFacts(
            serial=meter.serial, service=meter.service, dials=meter.dials,
            multiplier=Decimal(meter.multiplier), unit=meter.unit, size=meter.size,
            account=result.account or (install.account if install is not None else None),
            account_status=install.status if install is not None else None,
            installed_on=install.installed_on if install is not None else None,
            removed_on=install.removed_on if install is not None else None)
    return facts


def load_history(conn: Connection, cycle: Cycle, before: datetime, meter: str | None = None,
                 *, meters: Collection[str] | None = None) -> dict[str, list[MeterRead]]:
    """Each meter's billing reads of earlier cycles, oldest first, the last two years' worth.

    All the cycle's meters, only ``meter``, or only ``meters``. Only what the rules and the
    estimator read of a history is fetched: a 100 000-meter cycle brings a
    million and more history rows, and each column costs.
    """
    columns = billing_reads.c
    query = select(columns.meter, columns.read_at, columns.registers, columns.kind,
                   columns.multiplier, columns.cycle, columns.method, columns.audit_id).where(
        (columns.cycle != cycle.id) & (columns.read_at < before)
        & (columns.read_at >= before - timedelta(days=HISTORY_DAYS)))
    query = _for_meters(query, columns.meter, cycle, meter, meters)
    history: dict[str, list[MeterRead]] = defaultdict(list)
    kinds = {kind.value: kind for kind in ReadKind}
    methods = {method.value: method for method in EstimationMethod}
    for row in conn.execute(query.order_by(columns.meter, columns.read_at)).all():
        history[row[0]].append(MeterRead(
            row[1], {name: Decimal(value) for name, value in row[2].items()}, kinds[row[3]],
            method=methods[row[6]] if row[6] else None, audit_id=row[7],
            multiplier=Decimal(row[4]), cycle=row[5]))
    return {meter: reads[-MAX_HISTORY:] for meter, reads in history.items()}


def load_billing_rows(conn: Connection, cycle_id: str, *,
                      meters: Collection[str] | None = None) -> dict[str, Any]:
    query = select(billing_reads).where(billing_reads.c.cycle == cycle_id)
    if meters is not None:
        query = query.where(billing_reads.c.meter.in_(meters))
    return {row.meter: row for row in conn.execute(query)}


def load_later_reads(conn: Connection, cycle: Cycle, after: datetime,
                     meter: str | None = None, *, meters: Collection[str] | None = None
                     ) -> dict[str, MeterRead]:
    """The first good verified read of each meter after the window (not one rejected here)."""
    query, meter_column = candidate_reads_query(after, after + timedelta(days=LATER_DAYS),
                                                rejected_in=None)
    query = _for_meters(query, meter_column, cycle, meter, meters)
    rows = conn.execute(query.order_by(meter_column, query.selected_columns.read_at)).all()
    later: dict[str, MeterRead] = {}
    for r in rows:
        if r.meter in later:
            continue
        candidate = candidate_from_row(r)
        if candidate.trouble or not candidate.values:
            continue
        later[r.meter] = candidate_read(candidate, cycle.id)
    return later


def _for_meters(query: Select[Any], column: Any, cycle: Cycle, meter: str | None,
                meters: Collection[str] | None = None) -> Select[Any]:
    """Narrow ``query`` to one meter, to ``meters``, or to the meters on the cycle's routes.

    ``meters`` is one route's worth (hundreds to a few thousand): one IN list.
    """
    if meter is not None:
        return query.where(column == meter)
    if meters is not None:
        return query.where(column.in_(meters))
    on_routes = cycle_meters(cycle.id)
    return query.join(on_routes, on_routes.c.meter == column)


def load_rejected_meters(conn: Connection, cycle_id: str) -> set[str]:
    return set(conn.execute(select(rejected_reads.c.meter)
                            .where(rejected_reads.c.cycle == cycle_id)).scalars())


# --- conversions ---------------------------------------------------------------

def candidate_read(candidate: CandidateRead, cycle_id: str) -> MeterRead:
    """A stored signed read as the edits see it: its registers as Decimals."""
    registers = {}
    for name, value in candidate.values.items():
        text = value.get("value") if isinstance(value, Mapping) else None
        if isinstance(text, str):
            try:
                registers[name] = parse_decimal(text)
            except ScalarError:
                continue
    offset = candidate.meter_offset_s
    return MeterRead(
        read_at=candidate.read_at, registers=registers, kind=ReadKind.ACTUAL,
        source=str(candidate.source), flags=tuple(candidate.flags),
        meter_offset_s=parse_decimal(offset) if offset is not None else None,
        collector=candidate.collector, seq=candidate.seq, cycle=cycle_id)


def read_from_row(row: Any) -> MeterRead:
    """A ``billing_reads`` row as a :class:`MeterRead`."""
    return MeterRead(
        read_at=row.read_at,
        registers={name: parse_decimal(value) for name, value in row.registers.items()},
        kind=ReadKind(row.kind), source=row.source, flags=tuple(row.flags),
        meter_offset_s=parse_decimal(row.meter_offset_s) if row.meter_offset_s else None,
        collector=row.collector, seq=row.seq,
        method=EstimationMethod(row.method) if row.method else None,
        reason=row.reason, audit_id=row.audit_id, multiplier=parse_decimal(row.multiplier),
        cycle=row.cycle)


def billing_row(cycle_id: str, meter: MeterFacts, read: MeterRead, detail: str,
                now: datetime, origin: str = EDITS_ORIGIN) -> dict[str, Any]:
    """The ``billing_reads`` row that bills ``meter`` on ``read`` in ``cycle_id``."""
    offset = read.meter_offset_s
    multiplier = read.multiplier if read.kind is ReadKind.OVERRIDE and read.multiplier \
        else meter.multiplier
    return {
        "cycle": cycle_id, "meter": meter.serial, "account": meter.account,
        "kind": read.kind.value, "origin": origin, "read_at": read.read_at,
        "registers": {name: format_decimal(value) for name, value in read.registers.items()},
        "multiplier": format_decimal(multiplier), "source": read.source,
        "flags": list(read.flags),
        "meter_offset_s": format_decimal(offset) if offset is not None else None,
        "collector": read.collector, "seq": read.seq,
        "method": read.method.value if read.method else None, "reason": read.reason,
        "audit_id": read.audit_id, "detail": detail, "updated_at": now,
    }


def describe_row(row: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A billing-read row as plain JSON for the audit log's before/after."""
    get = row.get if isinstance(row, Mapping) else row._mapping.get
    described = {name: get(name) for name in (*COMPARED, "detail", "origin")}
    described["read_at"] = format_instant(get("read_at"))
    return described


def read_ref(read: MeterRead | None) -> str:
    """Which read an exception is about, stably across runs."""
    if read is None:
        return "none"
    if read.kind is ReadKind.ACTUAL and read.signed:
        return f"read:{read.collector}:{read.seq}"
    if read.kind is ReadKind.OVERRIDE:
        return f"override:{read.audit_id}"
    kind = read.method.value if read.method else read.kind.value
    return f"{read.kind.value}:{kind}:{format_instant(read.read_at)}"


# --- saving --------------------------------------------------------------------

def _save_billing_reads(conn: Connection, cycle: Cycle, outcomes: Sequence[MeterOutcome],
                        facts: Mapping[str, MeterFacts], now: datetime, run: EditsRun,
                        scope: frozenset[str] | None = None) -> None:
    existing = load_billing_rows(conn, cycle.id, meters=scope)
    inserts, updates, withdrawn, audits = [], [], [], []
    for outcome in outcomes:
        before = existing.get(outcome.meter)
        read = outcome.billing_read
        if read is None:
            if before is not None and before.origin == EDITS_ORIGIN:
                withdrawn.append(outcome.meter)
                audits.append(_system_audit(cycle.id, outcome.meter, "withdraw", now,
                                            outcome.detail, describe_row(before), None))
            continue
        run.billing[read.kind.value] += 1
        row = billing_row(cycle.id, facts[outcome.meter], read, outcome.detail, now)
        if before is None:
            inserts.append(row)
        elif any(_stored(row[c]) != _stored(getattr(before, c)) for c in COMPARED) \
                or before.origin != EDITS_ORIGIN:
            updates.append({**row, "b_cycle": row["cycle"], "b_meter": row["meter"]})
        else:
            continue
        if read.kind is ReadKind.ESTIMATED or before is not None:
            action = "estimate" if read.kind is ReadKind.ESTIMATED else "true_up"
            audits.append(_system_audit(
                cycle.id, outcome.meter, action, now, outcome.detail,
                describe_row(before) if before is not None else None, describe_row(row)))
    if inserts:
        conn.execute(insert(billing_reads), inserts)
    if updates:
        conn.execute(update(billing_reads).where(
            (billing_reads.c.cycle == bindparam("b_cycle"))
            & (billing_reads.c.meter == bindparam("b_meter"))), updates)
    for chunk in _chunks(withdrawn):
        conn.execute(delete(billing_reads).where(
            (billing_reads.c.cycle == cycle.id) & billing_reads.c.meter.in_(chunk)))
    record_many(conn, audits)


def _stored(value: Any) -> Any:
    """Compare as stored: times as UTC instants, everything else as is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, tuple):
        return list(value)
    return value


def _save_exceptions(conn: Connection, cycle: Cycle, outcomes: Sequence[MeterOutcome],
                     facts: Mapping[str, MeterFacts], rule_set: str, now: datetime,
                     run: EditsRun, scope: frozenset[str] | None = None) -> None:
    query = select(edit_exceptions.c.id, edit_exceptions.c.meter, edit_exceptions.c.rule,
                   edit_exceptions.c.read_ref, edit_exceptions.c.status
                   ).where(edit_exceptions.c.cycle == cycle.id)
    if scope is not None:  # never clear another run's meters' exceptions
        query = query.where(edit_exceptions.c.meter.in_(scope))
    existing = {(r.meter, r.rule, r.read_ref): r for r in conn.execute(query)}
    found: set[tuple[str, str, str]] = set()
    opened = []
    for outcome in outcomes:
        ref = read_ref(outcome.billing_read)
        for finding in outcome.findings:
            run.findings[(finding.rule, finding.severity.value)] += 1
            key = (outcome.meter, finding.rule, ref)
            if key in found:
                continue
            found.add(key)
            if key not in existing:
                opened.append(_exception_row(cycle.id, facts[outcome.meter], finding, ref,
                                             rule_set, now))
    if opened:
        conn.execute(insert(edit_exceptions), opened)
    stale = [r for key, r in existing.items() if r.status == OPEN and key not in found]
    if stale:
        conn.execute(update(edit_exceptions).where(edit_exceptions.c.id == bindparam("b_id")),
                     [{"b_id": r.id, "status": CLEARED, "resolved_at": now,
                       "resolved_by": SYSTEM_ACTOR} for r in stale])
        record_many(conn, [_system_audit(
            cycle.id, r.meter, "clear", now, "the finding is gone on re-running the edits",
            {"exception": r.id, "rule": r.rule, "status": OPEN},
            {"exception": r.id, "status": CLEARED}, exception_id=r.id) for r in stale])
    run.opened, run.cleared = len(opened), len(stale)


def _exception_row(cycle_id: str, meter: MeterFacts, finding: Finding, ref: str,
                   rule_set: str, now: datetime) -> dict[str, Any]:
    return {"cycle": cycle_id, "meter": meter.serial, "account": meter.account,
            "rule": finding.rule, "severity": finding.severity.value,
            "message": finding.message, "register": finding.register, "read_ref": ref,
            "status": OPEN, "rule_set": rule_set, "opened_at": now, "resolved_at": None,
            "resolved_by": None}


def _system_audit(cycle_id: str, meter: str, action: str, now: datetime, reason: str,
                  before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                  exception_id: int | None = None) -> dict[str, Any]:
    return {"at": now, "actor": SYSTEM_ACTOR, "action": action, "cycle": cycle_id,
            "meter": meter, "exception_id": exception_id, "reason": reason,
            "before": dict(before) if before is not None else None,
            "after": dict(after) if after is not None else None}


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


# --- queries ---------------------------------------------------------------------

def count_open(conn: Connection, cycle_id: str) -> int:
    return int(conn.execute(select(func.count()).select_from(edit_exceptions).where(
        (edit_exceptions.c.cycle == cycle_id) & (edit_exceptions.c.status == OPEN))).scalar_one())


def held_accounts(conn: Connection, cycle_id: str) -> list[HeldAccount]:
    """Accounts with an open blocking exception in the cycle: held out of billing."""
    rows = conn.execute(
        select(edit_exceptions.c.account, edit_exceptions.c.meter, edit_exceptions.c.rule)
        .where((edit_exceptions.c.cycle == cycle_id) & (edit_exceptions.c.status == OPEN)
               & (edit_exceptions.c.severity == "blocking"))
        .order_by(edit_exceptions.c.account, edit_exceptions.c.meter)).all()
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.account or ""].append(row)
    return [HeldAccount(account, tuple(dict.fromkeys(r.meter for r in group)),
                        tuple(dict.fromkeys(r.rule for r in group)), len(group))
            for account, group in grouped.items()]


__all__ = ["EditsRun", "HeldAccount", "held_accounts", "load_cases", "run_edits"]
