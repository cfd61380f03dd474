"""Bill a cycle from the store: determinants from billing reads, bills and lines saved.

The thin shell around :func:`hub.billing.compute_bill`. For each account
with billing reads in the cycle it works out the determinants — each
register's use from the previous billing read to this one (rollover at the
dial count), times the multiplier; demand; the meter's size; for water, the
account's winter average; for demand ratchets, the demands of earlier bills
— and names, for each, the billing reads it came from (collector, seq and
the signature of an actual read). Accounts held by an open blocking
exception (:func:`hub.edits.store.held_accounts`) are not billed and are
listed; so is any account whose determinants cannot be worked out, with why.

Billing again replaces the cycle's bills as a whole, in one transaction.
Or some of its accounts' bills only (``accounts=``: one route's, when hub
workers share a cycle by route): then only their bills are deleted and
computed, and only their held or unbillable entries listed, so runs over
disjoint accounts go on at once and together do what one whole run does.

Example::

    with store.begin() as conn:
        run = bill_cycle(conn, "C2026-11", RateBook.load(default_rate_dir()))
    print(run.billed, run.total, [s.account for s in run.skipped])
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from hub.billing import BillingError, Determinants, ReadRef, compute_bill
from hub.edits.store import HeldAccount, held_accounts
from hub.edits.usage import is_cumulative, register_delta
from hub.rates.book import RateBook, UnknownRateError
from hub.rates.model import RateTable, Wastewater
from hub.reconcile_store import load_cycle
from hub.store.tables import accounts as accounts_table
from hub.store.tables import (
    bill_lines,
    billing_reads,
    bills,
    cycles,
    meters,
    reads,
)
from protocols.scalars import format_decimal

DEMAND_REGISTERS = {"demand_kw": Decimal(1), "max_demand_kw": Decimal(1),
                    "demand_w": Decimal("0.001"), "max_demand_w": Decimal("0.001")}
"""Registers a demand comes from, with the factor to kW (the first one present counts)."""
RATCHET_BILLS = 12


@dataclass(frozen=True)
class Skipped:
    account: str
    why: str


@dataclass
class BillingRun:
    cycle: str
    billed: int = 0
    total: Decimal = Decimal(0)
    by_rate: Counter[str] = field(default_factory=Counter)
    held: list[HeldAccount] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class BilledRead:
    """One meter's billing read, as a row of the store (registers and multiplier as Decimals)."""

    cycle: str
    meter: str
    account: str | None
    kind: str
    source: str | None
    read_at: datetime
    registers: Mapping[str, Decimal]
    multiplier: Decimal
    collector: str | None
    seq: int | None
    bill_period_start: date


def bill_cycle(conn: Connection, cycle_id: str, book: RateBook, *,
               now: datetime | None = None, accounts: Collection[str] | None = None
               ) -> BillingRun:
    """Compute and save every bill of ``cycle_id`` (the caller's transaction).

    ``accounts``: only those accounts' bills (see the module's docstring); an
    account is billed from all of its meters' billing reads, on any route.
    """
    now = now or datetime.now(UTC)
    scope = frozenset(accounts) if accounts is not None else None
    cycle = load_cycle(conn, cycle_id, UTC)
    period = conn.execute(select(cycles.c.bill_period_start, cycles.c.bill_period_end)
                          .where(cycles.c.id == cycle.id)).one()
    run = BillingRun(cycle.id, held=[h for h in held_accounts(conn, cycle.id)
                                     if scope is None or h.account in scope])
    held = {h.account for h in run.held}
    determinants, run.skipped = load_determinants(conn, cycle.id, period[0], period[1], book,
                                                  held, accounts=scope)
    if scope is None:
        conn.execute(delete(bill_lines).where(bill_lines.c.cycle == cycle.id))
        conn.execute(delete(bills).where(bills.c.cycle == cycle.id))
    else:
        for chunk in _chunks(sorted(scope)):
            conn.execute(delete(bill_lines).where(
                (bill_lines.c.cycle == cycle.id) & bill_lines.c.account.in_(chunk)))
            conn.execute(delete(bills).where(
                (bills.c.cycle == cycle.id) & bills.c.account.in_(chunk)))
    bill_rows, line_rows = [], []
    for found in determinants:
        try:
            bill = compute_bill(found, book.rate(found.rate_code))
        except BillingError as exc:
            run.skipped.append(Skipped(found.account, str(exc)))
            continue
        run.billed += 1
        run.total += bill.total
        run.by_rate[found.rate_code] += 1
        bill_rows.append({
            "cycle": cycle.id, "account": found.account, "rate_code": found.rate_code,
            "period_start": found.period_start, "period_end": found.period_end,
            "total": format_decimal(bill.total), "currency": _currency(book, found.rate_code),
            "determinants": describe_determinants(found), "computed_at": now})
        line_rows.extend({
            "cycle": cycle.id, "account": found.account, "position": n, "code": line.code,
            "description": line.description, "quantity": format_decimal(line.quantity),
            "unit": line.unit, "price": format_decimal(line.price) if line.price is not None
            else None, "amount": format_decimal(line.amount), "determinant": line.determinant,
            "basis": list(line.basis), "version": line.version}
            for n, line in enumerate(bill.lines, 1))
    if bill_rows:
        conn.execute(insert(bills), bill_rows)
    if line_rows:
        conn.execute(insert(bill_lines), line_rows)
    run.skipped.sort(key=lambda s: s.account)
    return run


def load_determinants(conn: Connection, cycle_id: str, period_start: date, period_end: date,
                      book: RateBook, held: Iterable[str] = (), *,
                      accounts: Collection[str] | None = None
                      ) -> tuple[list[Determinants], list[Skipped]]:
    """Every billable account's determinants for the cycle, and the accounts left out, why.

    ``accounts``: those accounts only.
    """
    held = set(held)
    current = [r for r in cycle_billing_reads(conn, cycle_id, accounts=accounts) if r.account]
    by_account: dict[str, list[BilledRead]] = defaultdict(list)
    for read in current:
        by_account[read.account].append(read)  # type: ignore[index]
    history = billing_history(conn, {r.meter for r in current})
    meter_rows = {r.serial: r for r in conn.execute(select(meters).where(
        meters.c.serial.in_({r.meter for r in current})))} if current else {}
    account_rows = {r.id: r for r in conn.execute(select(accounts_table).where(
        accounts_table.c.id.in_(set(by_account))))} if by_account else {}
    signatures = _signatures(conn, [r for r in current if r.collector] + [
        h for reads_of in history.values() for h in reads_of if h.collector])
    found, skipped = [], []
    for account, its_reads in sorted(by_account.items()):
        if account in held:
            continue
        row = account_rows[account]
        try:
            rate = book.rate(row.rate_code)
        except UnknownRateError as exc:
            skipped.append(Skipped(account, str(exc)))
            continue
        try:
            found.append(_determinants(row, rate, its_reads, history, meter_rows, signatures,
                                       period_start, period_end))
        except _CannotBill as exc:
            skipped.append(Skipped(account, str(exc)))
    return found, skipped


class _CannotBill(Exception):
    """An account whose determinants cannot be worked out (the reason is the message)."""


def _determinants(account: Any, rate: RateTable, current: Sequence[BilledRead],
                  history: Mapping[str, Sequence[BilledRead]], meter_rows: Mapping[str, Any],
                  signatures: Mapping[tuple[str, int], str], period_start: date,
                  period_end: date) -> Determinants:
    consumption: dict[str, Decimal] = defaultdict(Decimal)
    sources: dict[str, list[ReadRef]] = defaultdict(list)
    demand: Decimal | None = None
    demand_history: list[Decimal] = []
    sizes = []
    earlier_of: dict[str, list[BilledRead]] = {}
    for read in current:
        meter = meter_rows[read.meter]
        if meter.service != rate.service:
            raise _CannotBill(f"rate {rate.code} is for {rate.service}; meter {read.meter} "
                              f"measures {meter.service}")
        sizes.append(meter.size)
        earlier = earlier_of[read.meter] = earlier_reads(history, read)
        if not earlier:
            raise _CannotBill(f"meter {read.meter} has no earlier billing read to measure "
                              "this cycle's use from (import its history or its install read)")
        previous = earlier[-1]
        refs = (_ref(previous, signatures), _ref(read, signatures))
        sources["days"].extend(refs)  # the reads bounding the period a per-day charge counts
        for name, value in read.registers.items():
            if not is_cumulative(name) or name not in previous.registers:
                continue
            used = register_delta(previous.registers[name], value, meter.dials).used
            if used < 0:
                raise _CannotBill(f"meter {read.meter}: {name} went backward "
                                  f"({format_decimal(used)}); resolve it in the edits first")
            consumption[name] += used * read.multiplier
            sources[name].extend(refs)
        found = _demand(read)
        if found is not None:
            demand = found if demand is None else max(demand, found)
            sources["demand_kw"].append(refs[1])
        demand_history.extend(d for d in (_demand(h) for h in earlier[-RATCHET_BILLS:])
                              if d is not None)
    return Determinants(
        account=account.id, rate_code=rate.code, options=tuple(account.rate_options),
        period_start=period_start, period_end=period_end, consumption=dict(consumption),
        demand_kw=demand, meter_size=next((s for s in sizes if s), None),
        demand_history=tuple(demand_history[-RATCHET_BILLS:]),
        winter_average=_winter_average(rate, current, earlier_of, meter_rows, period_end),
        sources={name: tuple(refs) for name, refs in sources.items()})


def earlier_reads(history: Mapping[str, Sequence[BilledRead]], read: BilledRead
                  ) -> list[BilledRead]:
    """The meter's billing reads before ``read``, oldest first: its last one bills from."""
    return [h for h in history.get(read.meter, ()) if h.read_at < read.read_at]


def _demand(read: BilledRead) -> Decimal | None:
    for name, factor in DEMAND_REGISTERS.items():
        value = read.registers.get(name)
        if value is not None:
            return value * factor * read.multiplier
    return None


def _winter_average(rate: RateTable, current: Sequence[BilledRead],
                    earlier_of: Mapping[str, Sequence[BilledRead]],
                    meter_rows: Mapping[str, Any], period_end: date) -> Decimal | None:
    """The account's average use per bill over the rate's winter months, from its bills.

    ``earlier_of`` holds each current read's meter's billing reads before it.
    """
    version = rate.version_on(period_end)
    wastewater = next((c for c in version.components if isinstance(c, Wastewater)), None)
    if wastewater is None:
        return None
    name = wastewater.register
    uses = []
    for read in current:
        dials = meter_rows[read.meter].dials
        for before, after in pairwise(earlier_of[read.meter]):
            if name not in after.registers or name not in before.registers \
                    or after.bill_period_start.month not in wastewater.winter_months:
                continue
            used = register_delta(before.registers[name], after.registers[name], dials).used
            if used >= 0:
                uses.append(used * after.multiplier)
    return sum(uses, Decimal(0)) / len(uses) if uses else None


def _ref(read: BilledRead, signatures: Mapping[tuple[str, int], str]) -> ReadRef:
    signature = signatures.get((read.collector, read.seq)) \
        if read.collector is not None and read.seq is not None else None
    return ReadRef(meter=read.meter, kind=read.kind, collector=read.collector, seq=read.seq,
                   signature=signature, read_at=read.read_at)


def cycle_billing_reads(conn: Connection, cycle_id: str, *,
                        accounts: Collection[str] | None = None) -> list[BilledRead]:
    """The cycle's billing reads (of ``accounts`` only, if given), by meter."""
    if accounts is None:
        return _billing_reads(conn, cycle_id=cycle_id)
    found = [read for chunk in _chunks(sorted(accounts))
             for read in _billing_reads(conn, cycle_id=cycle_id, accounts_in=chunk)]
    return sorted(found, key=lambda r: (r.meter, r.read_at))


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _billing_reads(conn: Connection, *, cycle_id: str | None = None,
                   meters_in: Iterable[str] | None = None,
                   accounts_in: Iterable[str] | None = None) -> list[BilledRead]:
    query = (select(billing_reads.c.cycle, billing_reads.c.meter, billing_reads.c.account,
                    billing_reads.c.kind, billing_reads.c.source, billing_reads.c.read_at,
                    billing_reads.c.registers,
                    billing_reads.c.multiplier, billing_reads.c.collector,
                    billing_reads.c.seq, cycles.c.bill_period_start)
             .join(cycles, cycles.c.id == billing_reads.c.cycle))
    if cycle_id is not None:
        query = query.where(billing_reads.c.cycle == cycle_id)
    if meters_in is not None:
        query = query.where(billing_reads.c.meter.in_(set(meters_in)))
    if accounts_in is not None:
        query = query.where(billing_reads.c.account.in_(set(accounts_in)))
    return [BilledRead(r.cycle, r.meter, r.account, r.kind, r.source, r.read_at,
                    {name: Decimal(value) for name, value in r.registers.items()},
                    Decimal(r.multiplier), r.collector, r.seq, r.bill_period_start)
            for r in conn.execute(query.order_by(billing_reads.c.meter, billing_reads.c.read_at))]


def billing_history(conn: Connection, meter_ids: Iterable[str]
                    ) -> dict[str, list[BilledRead]]:
    """Every billing read of each of ``meter_ids``, every cycle, oldest first."""
    history: dict[str, list[BilledRead]] = defaultdict(list)
    ids = sorted(meter_ids)
    for start in range(0, len(ids), 500):
        for read in _billing_reads(conn, meters_in=ids[start:start + 500]):
            history[read.meter].append(read)
    return history


def _signatures(conn: Connection, cited: Sequence[BilledRead]) -> dict[tuple[str, int], str]:
    """The base64 signature of each actual read cited, by (collector, seq)."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for read in cited:
        if read.collector is not None and read.seq is not None:
            wanted[read.collector].add(read.seq)
    found = {}
    for collector, seqs in wanted.items():
        ordered = sorted(seqs)
        for start in range(0, len(ordered), 500):
            for seq, sig in conn.execute(select(reads.c.seq, reads.c.sig).where(
                    (reads.c.collector == collector)
                    & reads.c.seq.in_(ordered[start:start + 500]))):
                found[(collector, seq)] = base64.b64encode(sig).decode()
    return found


def _currency(book: RateBook, code: str) -> str:
    return book.rate(code).currency


def describe_determinants(found: Determinants) -> dict[str, Any]:
    """Determinants as plain JSON for the bill row: what was priced, and from which reads."""
    return {
        "period": [found.period_start.isoformat(), found.period_end.isoformat()],
        "options": list(found.options),
        "consumption": {k: format_decimal(v) for k, v in sorted(found.consumption.items())},
        "demand_kw": format_decimal(found.demand_kw) if found.demand_kw is not None else None,
        "meter_size": found.meter_size,
        "winter_average": format_decimal(found.winter_average)
        if found.winter_average is not None else None,
        "demand_history": [format_decimal(d) for d in found.demand_history],
        "sources": {name: [{"meter": r.meter, "kind": r.kind, "collector": r.collector,
                            "seq": r.seq, "signature": r.signature,
                            "read_at": r.read_at.isoformat()} for r in refs]
                    for name, refs in sorted(found.sources.items())},
    }
