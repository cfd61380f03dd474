"""The cycle file's rows from the store: each billed account-meter with its reads and bill.

One row per meter of each billed account: its route, the read type (a
handheld's actual read says ``handheld``), the previous and current billing
reads of the rate's register with their dates, the multiplier, the use, the
rule ids of the edits' findings on it (cleared ones left out), and the bill
— its lines and total on the account's first meter (an account with two
meters, after an exchange, has one bill). ``generated_at`` is when the bills
were computed, so exporting again gives the same bytes.

Example::

    with store.connect() as conn:
        rows, generated_at = export_rows(conn, "C2026-11", book)
    write_export(Path("out"), "C2026-11", rows, Format.CSV, signer, generated_at=generated_at)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise

from sqlalchemy import Connection, func, select

from hub.billing_store import (
    BilledRead,
    billing_history,
    cycle_billing_reads,
    earlier_reads,
)
from hub.edits.usage import register_delta
from hub.export.green_button import BillSummary, IntervalUsage
from hub.export.rows import ExportLine, ExportRow
from hub.rates.book import RateBook
from hub.store.tables import (
    bill_lines,
    bills,
    cycles,
    edit_exceptions,
    meters,
    reads,
    route_stops,
    routes,
)


class NothingToExport(LookupError):
    """The cycle has no bills: run ``meterhub cycle bill`` first."""


def export_rows(conn: Connection, cycle_id: str, book: RateBook
                ) -> tuple[list[ExportRow], datetime]:
    """Every billed account-meter of ``cycle_id``, and when its bills were computed."""
    bill_rows = {r.account: r for r in conn.execute(select(bills).where(bills.c.cycle == cycle_id))}
    if not bill_rows:
        raise NothingToExport(f"cycle {cycle_id} has no bills; run `meterhub cycle bill "
                              f"{cycle_id}` first")
    generated_at = conn.execute(select(func.max(bills.c.computed_at))
                                .where(bills.c.cycle == cycle_id)).scalar_one()
    lines: dict[str, list[ExportLine]] = defaultdict(list)
    for line in conn.execute(select(bill_lines).where(bill_lines.c.cycle == cycle_id)
                             .order_by(bill_lines.c.account, bill_lines.c.position)):
        lines[line.account].append(ExportLine(
            line.code, line.description, Decimal(line.quantity), line.unit,
            Decimal(line.price) if line.price is not None else None, Decimal(line.amount)))
    current = [r for r in cycle_billing_reads(conn, cycle_id) if r.account in bill_rows]
    meter_ids = {r.meter for r in current}
    meter_rows = {r.serial: r for r in conn.execute(select(meters).where(
        meters.c.serial.in_(meter_ids)))}
    route_of = dict(conn.execute(
        select(route_stops.c.meter, route_stops.c.route)
        .join(routes, routes.c.id == route_stops.c.route).where(routes.c.cycle == cycle_id)
    ).all())
    flags: dict[str, set[str]] = defaultdict(set)
    for meter, rule in conn.execute(select(edit_exceptions.c.meter, edit_exceptions.c.rule).where(
            (edit_exceptions.c.cycle == cycle_id) & (edit_exceptions.c.status != "cleared"))):
        flags[meter].add(rule)
    history = billing_history(conn, {r.meter for r in current})
    rows, billed = [], set()
    for read in current:
        bill = bill_rows[read.account]
        rate = book.rate(bill.rate_code)
        meter = meter_rows[read.meter]
        first = read.account not in billed
        billed.add(read.account)
        before = next(iter(reversed(earlier_reads(history, read))), None)
        value = read.registers.get(rate.register)
        earlier = before.registers.get(rate.register) if before is not None else None
        multiplier = read.multiplier
        used = (register_delta(earlier, value, meter.dials).used * multiplier
                if value is not None and earlier is not None else None)
        its_lines = tuple(lines.get(read.account, ())) if first else ()
        rows.append(ExportRow(
            cycle=cycle_id, route=route_of.get(read.meter, "-"), account=read.account,
            meter=read.meter, service=meter.service, read_type=_read_type(read),
            previous_read=earlier, previous_read_at=before.read_at if earlier is not None
            else None, current_read=value, current_read_at=read.read_at if value is not None
            else None, multiplier=multiplier, consumption=used, unit=rate.unit,
            edit_flags=tuple(sorted(flags.get(read.meter, ()))), lines=its_lines,
            total=Decimal(bill.total) if first else Decimal("0.00"), currency=bill.currency))
    return rows, generated_at


def _read_type(read: BilledRead) -> str:
    if read.kind == "actual" and (read.source or "").startswith("handheld"):
        return "handheld"
    return str(read.kind)


def green_button_inputs(conn: Connection, cycle_id: str, account: str, book: RateBook
                        ) -> tuple[ExportRow, list[IntervalUsage], BillSummary, datetime]:
    """What an account's Green Button file holds: its meter's intervals and its cycle bill.

    The intervals are the use between consecutive verified reads of the
    meter's billed register in the cycle's read window (a gateway's 15-minute
    polls become 15-minute intervals); the bill summary is the cycle's bill
    over its bill period.
    """
    rows, generated_at = export_rows(conn, cycle_id, book)
    row = next((r for r in rows if r.account == account and r.lines), None)
    if row is None:
        raise NothingToExport(f"account {account} has no bill in cycle {cycle_id}")
    cycle = conn.execute(select(cycles).where(cycles.c.id == cycle_id)).one()
    register = book.rate(conn.execute(select(bills.c.rate_code).where(
        (bills.c.cycle == cycle_id) & (bills.c.account == account))).scalar_one()).register
    start = datetime.combine(cycle.read_window_start, time(), UTC)
    end = datetime.combine(cycle.read_window_end + timedelta(days=1), time(), UTC)
    points = []
    for read_at, values in conn.execute(
        select(reads.c.read_at, reads.c["values"]).where(
            (reads.c.meter == row.meter) & (reads.c.verify_status == "ok")
            & (reads.c.read_at >= start) & (reads.c.read_at < end)).order_by(reads.c.read_at)
    ):
        value = (values.get(register) or {}).get("value")
        if value is not None:
            points.append((read_at.replace(microsecond=0), Decimal(value)))
    multiplier = row.multiplier
    usage = [IntervalUsage(a, int((b - a).total_seconds()), (vb - va) * multiplier)
             for (a, va), (b, vb) in pairwise(points) if b > a and vb >= va]
    summary = BillSummary.from_row(
        row, datetime.combine(cycle.bill_period_start, time(), UTC),
        datetime.combine(cycle.bill_period_end + timedelta(days=1), time(), UTC))
    return row, usage, summary, generated_at.replace(microsecond=0)  # ESPI: whole seconds
