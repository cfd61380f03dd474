"""Billing a cycle from the store (SQLite and PostgreSQL): determinants, provenance, held."""

from __future__ import annotations

import base64
from decimal import Decimal

from sqlalchemy import select, update

from hub.billing import compute_bill
from hub.billing_store import bill_cycle, load_determinants
from hub.rates.book import RateBook, default_rate_dir
from hub.store.tables import accounts, bill_lines, bills, cycles, reads
from tests.test_edits_store import SCHEDULED, Fleet, bill_history, edits, kwh
from tests.test_reconcile import seed_cycle

BOOK = RateBook.load(default_rate_dir())
METERS = ["E-ONE", "E-TWO", "E-HELD", "E-NEW"]


def billed_cycle(store):
    """C1 on RES-E1: three meters with history, one new; E-HELD spikes and is held."""
    seed_cycle(store, METERS, first=SCHEDULED)
    with store.begin() as conn:
        conn.execute(update(accounts).values(rate_code="RES-E1"))
        conn.execute(update(accounts).where(accounts.c.id == "A-E-TWO")
                     .values(rate_options=["senior"]))
    for meter in METERS[:3]:
        bill_history(store, meter, [str(1000 + 300 * n) for n in range(6)])  # last: 2500
    fleet = Fleet(store)
    fleet.send(kwh("E-ONE", "2800.000"), kwh("E-TWO", "2812.500"),
               kwh("E-HELD", "9800.000"), kwh("E-NEW", "120.000"))
    edits(store)
    with store.begin() as conn:
        run = bill_cycle(conn, "C1", BOOK)
    return run


def test_each_account_is_billed_from_its_billing_reads(store):
    run = billed_cycle(store)
    assert run.billed == 2 and run.by_rate == {"RES-E1": 2}
    with store.connect() as conn:
        period = conn.execute(select(cycles.c.bill_period_start, cycles.c.bill_period_end)
                              .where(cycles.c.id == "C1")).one()
        found, _ = load_determinants(conn, "C1", period[0], period[1], BOOK, {"A-E-HELD"})
        stored = {r.account: r for r in conn.execute(select(bills))}
        lines = conn.execute(select(bill_lines).where(bill_lines.c.account == "A-E-ONE")
                             .order_by(bill_lines.c.position)).all()
    one = next(d for d in found if d.account == "A-E-ONE")
    assert one.consumption["energy_import_kwh"] == Decimal("300.000")
    expected = compute_bill(one, BOOK.rate("RES-E1"))
    assert Decimal(stored["A-E-ONE"].total) == expected.total
    assert [Decimal(line.amount) for line in lines] == [line.amount for line in expected.lines]
    assert sum(Decimal(line.amount) for line in lines) == Decimal(stored["A-E-ONE"].total)
    assert stored["A-E-TWO"].determinants["options"] == ["senior"]


def test_every_line_traces_to_the_signed_reads_it_came_from(store):
    billed_cycle(store)
    with store.connect() as conn:
        row = conn.execute(select(bills).where(bills.c.account == "A-E-ONE")).one()
        sig = conn.execute(select(reads.c.sig).where(reads.c.meter == "E-ONE")).scalar_one()
    sources = row.determinants["sources"]["energy_import_kwh"]
    previous, current = sources
    assert (previous["kind"], previous["collector"]) == ("actual", None)  # the CIS's history
    assert (current["kind"], current["collector"], current["seq"]) == ("actual", "gw-1", 1)
    assert current["signature"] == base64.b64encode(sig).decode()


def test_held_and_unbillable_accounts_are_reported_not_billed(store):
    run = billed_cycle(store)
    assert "A-E-HELD" in {h.account for h in run.held}
    skipped = {s.account: s.why for s in run.skipped}
    assert "no earlier billing read" in skipped["A-E-NEW"]
    with store.connect() as conn:
        billed = set(conn.execute(select(bills.c.account)).scalars())
    assert billed == {"A-E-ONE", "A-E-TWO"}


def test_billing_again_replaces_the_cycles_bills(store):
    billed_cycle(store)
    with store.connect() as conn:
        before = conn.execute(select(bills.c.account, bills.c.total).order_by(bills.c.account)
                              ).all()
    with store.begin() as conn:
        again = bill_cycle(conn, "C1", BOOK)
    with store.connect() as conn:
        after = conn.execute(select(bills.c.account, bills.c.total).order_by(bills.c.account)
                             ).all()
        lines = conn.execute(select(bill_lines.c.account)).all()
    assert before == after and again.billed == 2
    assert {line.account for line in lines} == {"A-E-ONE", "A-E-TWO"}


def test_a_discount_or_fixed_charge_line_traces_to_reads_too(store):
    billed_cycle(store)
    with store.connect() as conn:
        row = conn.execute(select(bills).where(bills.c.account == "A-E-TWO")).one()
        lines = conn.execute(select(bill_lines).where(bill_lines.c.account == "A-E-TWO")
                             .order_by(bill_lines.c.position)).all()
    assert row.determinants["sources"]["days"]  # a per-day or per-bill charge's period
    derived = [line for line in lines if line.determinant is None]
    assert derived, "the senior discount is a line computed from other lines"
    codes = {line.code for line in lines}
    assert all(line.basis and set(line.basis) <= codes for line in derived)
