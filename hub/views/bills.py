"""Bills as the API and the pages show them: lines, determinants, and the reads behind each line.

A customer disputing a charge asks "where does this number come from?".
The stored bill already names, per determinant, the billing reads it was
computed from; here each line is traced back through them (a fee or tax
through the lines it was computed from, with :meth:`hub.billing.Bill.trace`,
the same walk the billing engine defines) to the signed reads — collector,
seq, hash and signature — and to the register values and multiplier that
made each determinant.

Example::

    with store.connect() as conn:
        bill = bill_detail(conn, "C2026-11", "A-1001")
    for line in bill.lines:
        print(line.code, line.amount, [(s.collector, s.seq) for s in line.sources])
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row, Select, and_, func, select

from hub.api.pagination import PageParams, paged_rows
from hub.billing import Bill, BillLine, Determinants, ReadRef
from hub.billing_store import BilledRead, billing_history, earlier_reads
from hub.edits.usage import is_cumulative, register_delta
from hub.store.tables import accounts, bill_lines, billing_reads, bills, cycles, meters, reads
from protocols.scalars import format_decimal

DECIMAL_TEXT = "A decimal as text, exactly (never a float)."


class BillOut(BaseModel):
    cycle: str
    account: str
    account_name: str | None
    rate_code: str
    period_start: date
    period_end: date
    total: str = Field(description=DECIMAL_TEXT)
    currency: str
    computed_at: datetime
    line_count: int = Field(description="How many lines the bill has.")


class SourceRead(BaseModel):
    """A billing read a line came from; the signed read's evidence when it is an actual one."""

    meter: str
    kind: str = Field(description="actual, estimated or override.")
    collector: str | None
    seq: int | None
    read_at: datetime
    signature: str | None = Field(description="The signed read's Ed25519 signature, base64.")
    hash: str | None = Field(description="SHA-256 of the signed read's bytes (hex).")
    key_id: str | None
    verify_status: str | None = Field(description="pending, ok or failed (actual reads).")


class LineOut(BaseModel):
    position: int
    code: str
    description: str
    quantity: str = Field(description=DECIMAL_TEXT)
    unit: str
    price: str | None = Field(description=DECIMAL_TEXT)
    amount: str = Field(description=DECIMAL_TEXT)
    version: date = Field(description="The effective date of the rate version used.")
    determinant: str | None = Field(description="The determinant it priced.")
    basis: list[str] = Field(description="The lines a fee, tax, discount or minimum was "
                             "computed from.")
    sources: list[SourceRead] = Field(description="The billing reads it traces to.")


class RegisterMeasure(BaseModel):
    """One register's use on one meter: the reads it ran between, times the multiplier."""

    meter: str
    name: str = Field(description="The register's canonical name.")
    previous: str | None = Field(description=DECIMAL_TEXT)
    current: str = Field(description=DECIMAL_TEXT)
    used: str | None = Field(description=DECIMAL_TEXT)
    rolled: bool
    multiplier: str = Field(description=DECIMAL_TEXT)
    consumption: str | None = Field(description="used × multiplier. " + DECIMAL_TEXT)
    kind: str = Field(description="The current billing read's kind.")
    previous_read_at: datetime | None
    read_at: datetime


class BillDetail(BillOut):
    days: int = Field(description="Days in the bill period, both ends included.")
    demand_kw: str | None = Field(description=DECIMAL_TEXT)
    determinants: dict[str, Any] = Field(description="The determinants as stored with the bill "
                                         "(consumption, demand, options, sources).")
    measures: list[RegisterMeasure] = Field(description="How each register's consumption was "
                                            "measured, per meter.")
    lines: list[LineOut] = Field(description="In the bill's order.")


def _text(value: Any) -> str:
    return format_decimal(Decimal(str(value)))


def _listing() -> Select:
    count = (select(func.count()).where(and_(bill_lines.c.cycle == bills.c.cycle,
                                             bill_lines.c.account == bills.c.account))
             .correlate(bills).scalar_subquery())
    return (select(bills, accounts.c.name.label("account_name"), count.label("line_count"))
            .outerjoin(accounts, accounts.c.id == bills.c.account)
            .join(cycles, cycles.c.id == bills.c.cycle))


def _bill_out(row: Row) -> dict[str, Any]:
    return {"cycle": row.cycle, "account": row.account, "account_name": row.account_name,
            "rate_code": row.rate_code, "period_start": row.period_start,
            "period_end": row.period_end, "total": _text(row.total), "currency": row.currency,
            "computed_at": row.computed_at, "line_count": row.line_count}


def bill_page(conn: Connection, params: PageParams, *, cycle: str | None = None,
              account: str | None = None, rate_code: str | None = None
              ) -> tuple[list[BillOut], int]:
    """A page of bills, the latest cycle first, then by account."""
    query = _listing()
    if cycle is not None:
        query = query.where(bills.c.cycle == cycle)
    if account is not None:
        query = query.where(bills.c.account == account)
    if rate_code is not None:
        query = query.where(bills.c.rate_code == rate_code)
    query = query.order_by(cycles.c.bill_period_end.desc(), bills.c.cycle, bills.c.account)
    rows, total = paged_rows(conn, query, params)
    return [BillOut(**_bill_out(row)) for row in rows], total


def bill_detail(conn: Connection, cycle: str, account: str) -> BillDetail | None:
    row = conn.execute(_listing().where((bills.c.cycle == cycle)
                                        & (bills.c.account == account))).first()
    if row is None:
        return None
    line_rows = conn.execute(select(bill_lines).where(
        (bill_lines.c.cycle == cycle) & (bill_lines.c.account == account))
        .order_by(bill_lines.c.position)).all()
    stored: dict[str, Any] = row.determinants or {}
    bill = _engine_bill(row, stored, line_rows)
    evidence = _evidence(conn, bill)
    items = []
    for line_row, line in zip(line_rows, bill.lines, strict=True):
        items.append(LineOut(
            position=line_row.position, code=line_row.code, description=line_row.description,
            quantity=_text(line_row.quantity), unit=line_row.unit,
            price=_text(line_row.price) if line_row.price is not None else None,
            amount=_text(line_row.amount), version=line_row.version,
            determinant=line_row.determinant, basis=[str(b) for b in line_row.basis or ()],
            sources=[_source(ref, evidence) for ref in bill.trace(line)]))
    demand = stored.get("demand_kw")
    return BillDetail(**_bill_out(row), days=bill.determinants.days,
                      demand_kw=_text(demand) if demand is not None else None,
                      determinants=stored, measures=measures(conn, cycle, account),
                      lines=items)


def _engine_bill(row: Row, stored: dict[str, Any], line_rows: list[Row]) -> Bill:
    """The stored bill as the billing engine's :class:`Bill`, so it traces lines its way."""
    sources = {name: tuple(ReadRef(meter=r["meter"], kind=r["kind"], collector=r["collector"],
                                   seq=r["seq"], signature=r["signature"],
                                   read_at=datetime.fromisoformat(r["read_at"]))
                           for r in refs)
               for name, refs in (stored.get("sources") or {}).items()}
    determinants = Determinants(
        account=row.account, rate_code=row.rate_code, options=tuple(stored.get("options", ())),
        period_start=row.period_start, period_end=row.period_end, consumption={},
        sources=sources)
    lines = tuple(BillLine(code=r.code, description=r.description,
                           quantity=Decimal(r.quantity), unit=r.unit,
                           price=Decimal(r.price) if r.price is not None else None,
                           amount=Decimal(r.amount), determinant=r.determinant,
                           version=r.version, basis=tuple(r.basis or ()))
                  for r in line_rows)
    return Bill(row.account, row.rate_code, row.period_start, row.period_end, determinants,
                lines, Decimal(row.total), row.currency)


def _evidence(conn: Connection, bill: Bill) -> dict[tuple[str, int], Row]:
    """The stored signed reads the bill cites, by (collector, seq)."""
    wanted = {(ref.collector, ref.seq) for refs in bill.determinants.sources.values()
              for ref in refs if ref.collector is not None and ref.seq is not None}
    found: dict[tuple[str, int], Row] = {}
    for collector in {c for c, _ in wanted}:
        seqs = sorted(s for c, s in wanted if c == collector)
        for start in range(0, len(seqs), 500):
            for row in conn.execute(select(reads.c.collector, reads.c.seq, reads.c.hash,
                                           reads.c.key_id, reads.c.verify_status).where(
                    (reads.c.collector == collector) & reads.c.seq.in_(seqs[start:start + 500]))):
                found[(row.collector, row.seq)] = row
    return found


def _source(ref: ReadRef, evidence: dict[tuple[str, int], Row]) -> SourceRead:
    read = evidence.get((ref.collector, ref.seq)) if ref.collector is not None \
        and ref.seq is not None else None
    return SourceRead(meter=ref.meter, kind=ref.kind, collector=ref.collector, seq=ref.seq,
                      read_at=ref.read_at, signature=ref.signature,
                      hash=read.hash if read is not None else None,
                      key_id=read.key_id if read is not None else None,
                      verify_status=read.verify_status if read is not None else None)


def measures(conn: Connection, cycle: str, account: str) -> list[RegisterMeasure]:
    """Each cumulative register of the account's billing reads in ``cycle``: from the meter's
    previous billing read to this one, as billing measured it."""
    current = conn.execute(select(billing_reads.c.meter).where(
        (billing_reads.c.cycle == cycle) & (billing_reads.c.account == account))
        .order_by(billing_reads.c.meter)).scalars().all()
    if not current:
        return []
    dials = dict(conn.execute(select(meters.c.serial, meters.c.dials).where(
        meters.c.serial.in_(current))).tuples().all())
    history = billing_history(conn, current)
    found = []
    for serial in current:
        this: BilledRead | None = next((r for r in history[serial] if r.cycle == cycle), None)
        if this is None:
            continue
        earlier = earlier_reads(history, this)
        previous = earlier[-1] if earlier else None
        for name, value in sorted(this.registers.items()):
            if not is_cumulative(name):
                continue
            before = previous.registers.get(name) if previous is not None else None
            used, rolled = None, False
            if before is not None:
                delta = register_delta(before, value, dials.get(serial, 0))
                used, rolled = delta.used, delta.rolled
            found.append(RegisterMeasure(
                meter=serial, name=name,
                previous=format_decimal(before) if before is not None else None,
                current=format_decimal(value),
                used=format_decimal(used) if used is not None else None, rolled=rolled,
                multiplier=format_decimal(this.multiplier),
                consumption=format_decimal(used * this.multiplier) if used is not None
                else None, kind=this.kind,
                previous_read_at=previous.read_at if previous is not None else None,
                read_at=this.read_at))
    return found
