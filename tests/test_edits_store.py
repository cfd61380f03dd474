"""Meter edits against a real store (SQLite and PostgreSQL): billing reads, exceptions, audit.

Reads arrive the real way — signed and chained, ingested, verified by the
background verifier — and history is billed reads of earlier cycles, as the
CIS import writes them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from hub.edits.actions import Action, AlreadyResolved, ResolveError, resolve
from hub.edits.audit import SYSTEM_ACTOR, entries
from hub.edits.model import MeterFacts, MeterRead, ReadKind
from hub.edits.queue import get_exception, list_exceptions
from hub.edits.ruleset import default_rule_set
from hub.edits.store import billing_row, held_accounts, run_edits
from hub.ingest import Ingestor
from hub.reconcile import Status
from hub.reconcile_store import reconcile_cycle
from hub.reread_store import build_from_store
from hub.store.tables import audit_log, billing_reads, cycles, edit_exceptions, reads
from hub.verifier import BackgroundVerifier
from protocols.batch import encode_batch
from protocols.chain import GENESIS_TIP, ChainTip, read_hash, sign_and_chain
from protocols.mqtt_contract import reads_topic
from protocols.read import ClockQuality, Reading, RegisterValue, Source
from tests.test_ingest import enrolled
from tests.test_reconcile import seed_cycle

SCHEDULED = date(2026, 11, 3)
WINDOW_NOON = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
RULES = default_rule_set()
METERS = ["E-NORMAL", "E-SPIKE", "E-MISSING", "E-TAMPER"]


class Fleet:
    """A collector sending signed reads to the store through ingest and the verifier."""

    def __init__(self, store) -> None:
        self.store = store
        self.signer = enrolled(store, "gw-1")
        self.tip = GENESIS_TIP
        self.ingestor = Ingestor(store, clock=lambda: NOW)

    def send(self, *readings: Reading) -> list[int]:
        sealed, _ = sign_and_chain(list(readings), signer=self.signer, collector="gw-1",
                                   after=self.tip)
        self.ingestor.ingest(reads_topic("gw-1"), encode_batch("gw-1", sealed))
        self.tip = ChainTip(sealed[-1].seq, read_hash(sealed[-1].data))
        BackgroundVerifier(self.store, processes=1, clock=lambda: NOW).verify_pending()
        return [s.seq for s in sealed]


def kwh(meter: str, value: str, at: datetime = WINDOW_NOON,
        flags: tuple[str, ...] = ()) -> Reading:
    return Reading(meter=meter, read_at=at, collected_at=at,
                   clock=ClockQuality(ntp_synced=True, meter_offset_s=Decimal("1.5")),
                   source=Source.AMI, flags=flags,
                   values={"energy_import_kwh": RegisterValue(Decimal(value), "kWh", "1.8.0")})


def past_cycle(conn, n: int) -> str:
    """Cycle P<n>: n months before C1, scheduled the 3rd."""
    month = 11 - n
    scheduled = date(2026, month, 3)
    conn.execute(insert(cycles).values(
        id=f"P{n}", read_window_start=scheduled - timedelta(days=2),
        read_window_end=scheduled + timedelta(days=2), scheduled_read_date=scheduled,
        bill_period_start=scheduled - timedelta(days=30), bill_period_end=scheduled,
        updated_at=NOW))
    return f"P{n}"


def bill_history(store, meter: str, values: list[str], kinds: list[ReadKind] | None = None
                 ) -> None:
    """Billed reads of ``meter`` for the months before C1, oldest first (as the CIS gives)."""
    facts = MeterFacts(meter, "electric", 6, Decimal(1), "kWh", account=f"A-{meter}")
    kinds = kinds or [ReadKind.ACTUAL] * len(values)
    with store.begin() as conn:
        known = set(conn.execute(select(cycles.c.id)).scalars())
        pairs = zip(reversed(values), reversed(kinds), strict=True)
        for back, (value, kind) in enumerate(pairs, 1):
            cycle = f"P{back}" if f"P{back}" in known else past_cycle(conn, back)
            at = datetime(2026, 11 - back, 3, 9, 0, tzinfo=UTC)
            read = MeterRead(at, {"energy_import_kwh": Decimal(value)}, kind=kind,
                             method=None)
            conn.execute(insert(billing_reads).values(
                **billing_row(cycle, facts, read, "imported from test", NOW, origin="cis")))


@pytest.fixture
def cycle(store):
    """C1 (window 11-01..11-05) with four meters of ~10 kWh/day and six months of history."""
    seed_cycle(store, METERS, first=SCHEDULED)
    for meter in METERS:
        bill_history(store, meter, [str(1000 + 300 * n) for n in range(6)])  # last: 2500
    return Fleet(store)


def edits(store, **kwargs):
    with store.begin() as conn:
        return run_edits(conn, "C1", UTC, RULES, now=NOW, **kwargs)


def open_rules(store, meter: str) -> set[str]:
    with store.connect() as conn:
        return {e.rule for e in list_exceptions(conn, cycle="C1", meter=meter, status="open")}


def billing(store, meter: str):
    with store.connect() as conn:
        return conn.execute(select(billing_reads).where(
            (billing_reads.c.cycle == "C1") & (billing_reads.c.meter == meter))).first()


def only_exception(store, meter: str, rule: str) -> int:
    with store.connect() as conn:
        found = list_exceptions(conn, cycle="C1", meter=meter, rule=rule, status="open")
    assert len(found) == 1, found
    return found[0].id


def test_a_cycle_gets_billing_reads_exceptions_and_held_accounts(store, cycle):
    cycle.send(kwh("E-NORMAL", "2800.000"), kwh("E-SPIKE", "9800.000"),
               kwh("E-TAMPER", "2790.000", flags=("tamper_terminal_cover",)))
    run = edits(store)
    normal = billing(store, "E-NORMAL")
    assert (normal.kind, normal.collector, normal.seq) == ("actual", "gw-1", 1)
    assert normal.registers == {"energy_import_kwh": "2800.000"}
    assert open_rules(store, "E-NORMAL") == set()
    assert {"spike", "high_usage"} <= open_rules(store, "E-SPIKE")
    assert "meter_alarm" in open_rules(store, "E-TAMPER")
    estimated = billing(store, "E-MISSING")
    assert (estimated.kind, estimated.origin) == ("estimated", "edits")
    assert estimated.method in ("average_daily_usage", "same_period_last_year")
    assert open_rules(store, "E-MISSING") == {"estimated_missing"}
    held = {h.account: h for h in run.held}
    assert set(held) == {"A-E-SPIKE", "A-E-TAMPER"}  # an estimate warns; it does not hold
    assert run.billing == {"actual": 3, "estimated": 1}
    with store.connect() as conn:
        trail = entries(conn, cycle="C1", meter="E-MISSING")
    assert [(e.actor, e.action) for e in trail] == [(SYSTEM_ACTOR, "estimate")]


def test_running_the_edits_again_opens_nothing_twice_and_changes_nothing(store, cycle):
    cycle.send(kwh("E-NORMAL", "2800.000"), kwh("E-SPIKE", "9800.000"))
    first = edits(store)
    with store.connect() as conn:
        before = conn.execute(select(billing_reads).order_by(billing_reads.c.meter)).all()
        audits = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    second = edits(store)
    with store.connect() as conn:
        after = conn.execute(select(billing_reads).order_by(billing_reads.c.meter)).all()
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == audits
    assert first.opened > 0 and (second.opened, second.cleared) == (0, 0)
    assert second.open_exceptions == first.open_exceptions
    assert before == after


def test_accepting_the_blocking_exceptions_releases_the_account_with_an_audit_record(
        store, cycle):
    cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    with store.connect() as conn:
        blocking = [e.id for e in list_exceptions(conn, cycle="C1", meter="E-SPIKE",
                                                  status="open", severity="blocking")]
    assert blocking
    for exception_id in blocking:
        with store.begin() as conn:
            resolve(conn, exception_id, Action.ACCEPT, actor="j.smith", rule_set=RULES,
                    reason="pool filled this month; customer confirmed", now=NOW)
    with store.connect() as conn:
        assert "A-E-SPIKE" not in {h.account for h in held_accounts(conn, "C1")}
        trail = entries(conn, exception_id=blocking[0])
    assert len(trail) == 1
    record = trail[0]
    assert (record.actor, record.action, record.at) == ("j.smith", "accept", NOW)
    assert record.reason == "pool filled this month; customer confirmed"
    assert record.before["exception"]["status"] == "open"
    assert record.after["status"] == "accepted"
    assert record.after["billing_read"]["registers"] == {"energy_import_kwh": "9800.000"}
    assert billing(store, "E-SPIKE").kind == "actual"  # accepting keeps the read


def test_a_decision_needs_a_reason_and_an_open_exception(store, cycle):
    cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    spike = only_exception(store, "E-SPIKE", "spike")
    with store.begin() as conn, pytest.raises(ResolveError, match="reason"):
        resolve(conn, spike, Action.ACCEPT, actor="j.smith", reason="  ", rule_set=RULES)
    with store.begin() as conn:
        resolve(conn, spike, Action.ACCEPT, actor="j.smith", reason="ok", rule_set=RULES)
    with store.begin() as conn, pytest.raises(AlreadyResolved, match="accepted"):
        resolve(conn, spike, Action.ACCEPT, actor="j.smith", reason="again", rule_set=RULES)
    other = only_exception(store, "E-SPIKE", "high_usage")
    with store.begin() as conn, pytest.raises(ResolveError, match="values"):
        resolve(conn, other, Action.OVERRIDE, actor="j.smith", reason="x", rule_set=RULES)


def test_rejecting_a_read_sends_the_meter_for_a_re_read_and_holds_it_until_one_comes(
        store, cycle):
    spike_seq, _ = cycle.send(kwh("E-SPIKE", "9800.000"),
                              kwh("E-SPIKE", "9801.000", at=WINDOW_NOON - timedelta(hours=1)))
    edits(store)
    spike = only_exception(store, "E-SPIKE", "spike")
    with store.begin() as conn:
        done = resolve(conn, spike, Action.REJECT, actor="j.smith", rule_set=RULES,
                       reason="implausible: 7 300 kWh in a month on a flat")
    assert set(done.closed) >= {spike, only_closed_high_usage(store)}
    assert billing(store, "E-SPIKE") is None
    with store.connect() as conn:
        stored = conn.execute(select(reads.c["values"]).where(reads.c.seq == spike_seq)).one()
        result = {m.meter: m for m in reconcile_cycle(conn, "C1", UTC).meters}
        route, _ = build_from_store(conn, "C1", "hh-01", UTC)
    assert stored[0]["energy_import_kwh"]["value"] == "9800.000"  # the read itself stays
    assert result["E-SPIKE"].status is Status.MISSING  # its neighbour, as wrong, went too
    assert "E-SPIKE" in [stop.meter for stop in route.stops]
    edits(store)
    assert open_rules(store, "E-SPIKE") == {"awaiting_reread"}  # not estimated behind its back
    cycle.send(kwh("E-SPIKE", "2790.000", at=WINDOW_NOON + timedelta(hours=20)))
    run = edits(store)
    assert billing(store, "E-SPIKE").registers == {"energy_import_kwh": "2790.000"}
    assert open_rules(store, "E-SPIKE") == set() and run.cleared == 1
    assert "A-E-SPIKE" not in {h.account for h in run.held}


def only_closed_high_usage(store) -> int:
    with store.connect() as conn:
        return next(e.id for e in list_exceptions(conn, cycle="C1", meter="E-SPIKE",
                                                  rule="high_usage", status="rejected"))


def test_an_operator_estimate_replaces_the_billing_read_but_never_the_read(store, cycle):
    [seq] = cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    spike = only_exception(store, "E-SPIKE", "spike")
    with store.begin() as conn:
        done = resolve(conn, spike, Action.ESTIMATE, actor="j.smith", rule_set=RULES,
                       reason="meter to be exchanged; bill on history", now=NOW)
    row = billing(store, "E-SPIKE")
    assert (row.kind, row.audit_id, row.reason) == ("estimated", done.audit_id,
                                                    "meter to be exchanged; bill on history")
    assert Decimal("2700") < Decimal(row.registers["energy_import_kwh"]) < Decimal("2900")
    with store.connect() as conn:
        assert conn.execute(select(reads.c.seq).where(reads.c.seq == seq)).scalar_one() == seq
    edits(store)  # the rejected read does not come back; the estimate stays
    assert billing(store, "E-SPIKE").kind == "estimated"
    assert open_rules(store, "E-SPIKE") == set()


def test_an_override_bills_the_operators_values_and_stands(store, cycle):
    cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    spike = only_exception(store, "E-SPIKE", "spike")
    with store.begin() as conn:
        done = resolve(conn, spike, Action.OVERRIDE, actor="j.smith", rule_set=RULES,
                       reason="photo of the dial: 2 800",
                       values={"energy_import_kwh": Decimal("2800")})
    row = billing(store, "E-SPIKE")
    assert (row.kind, row.registers, row.audit_id) == (
        "override", {"energy_import_kwh": "2800"}, done.audit_id)
    run = edits(store)
    assert billing(store, "E-SPIKE").kind == "override"
    assert open_rules(store, "E-SPIKE") == set()  # audited override: provenance holds
    assert "A-E-SPIKE" not in {h.account for h in run.held}


def test_a_real_read_trues_up_an_estimate_on_the_next_run(store, cycle):
    edits(store)
    assert billing(store, "E-MISSING").kind == "estimated"
    cycle.send(kwh("E-MISSING", "2810.000"))
    edits(store)
    row = billing(store, "E-MISSING")
    assert (row.kind, row.registers) == ("actual", {"energy_import_kwh": "2810.000"})
    assert open_rules(store, "E-MISSING") == set()
    with store.connect() as conn:
        actions = [e.action for e in entries(conn, meter="E-MISSING")]
    assert actions == ["estimate", "true_up", "clear"]


def test_too_many_estimates_in_a_row_hold_the_account_until_an_operator_decides(store):
    seed_cycle(store, ["E-EST"], first=SCHEDULED)
    bill_history(store, "E-EST", ["1000", "1300", "1600", "1900"],
                 [ReadKind.ACTUAL, ReadKind.ACTUAL, ReadKind.ESTIMATED, ReadKind.ESTIMATED])
    run = edits(store)
    assert open_rules(store, "E-EST") == {"estimation_limit"}
    assert [h.account for h in run.held] == ["A-E-EST"]
    limit = only_exception(store, "E-EST", "estimation_limit")
    with store.begin() as conn, pytest.raises(ResolveError, match="no billing read in C1"):
        resolve(conn, limit, Action.ACCEPT, actor="supervisor", reason="ok", rule_set=RULES)
    with store.begin() as conn:
        resolve(conn, limit, Action.ESTIMATE, actor="supervisor", rule_set=RULES,
                reason="access road closed until spring; approved by billing supervisor")
    assert billing(store, "E-EST").kind == "estimated"
    with store.connect() as conn:
        assert held_accounts(conn, "C1") == []
    assert edits(store).held == []  # the decision stands when the edits run again


def test_the_audit_log_refuses_updates_and_deletes_in_the_database(store, cycle):
    edits(store)
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() > 0
    for statement in (update(audit_log).values(actor="someone else"),
                      text("DELETE FROM audit_log")):
        with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
            conn.execute(statement)
    with store.connect() as conn:
        assert {e.actor for e in entries(conn)} == {SYSTEM_ACTOR}


def test_show_gives_the_finding_its_billing_read_and_its_trail(store, cycle):
    cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    spike = only_exception(store, "E-SPIKE", "spike")
    with store.begin() as conn:
        resolve(conn, spike, Action.ACCEPT, actor="j.smith", reason="checked", rule_set=RULES)
    with store.connect() as conn:
        detail = get_exception(conn, spike)
        assert get_exception(conn, 999_999) is None
    assert detail.item.status == "accepted" and detail.item.resolved_by == "j.smith"
    assert detail.billing_read["registers"] == {"energy_import_kwh": "9800.000"}
    assert [e.action for e in detail.trail] == ["accept"]


def test_exceptions_list_most_severe_first(store, cycle):
    cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    with store.connect() as conn:
        severities = [e.severity for e in list_exceptions(conn, cycle="C1")]
        status = conn.execute(select(edit_exceptions.c.status).distinct()).scalars().all()
    order = {"blocking": 0, "warning": 1, "info": 2}
    assert severities == sorted(severities, key=order.__getitem__)
    assert status == ["open"]


def test_an_estimated_meter_reconciles_as_estimated_and_stays_on_re_read_routes(store, cycle):
    with store.connect() as conn:
        before = {m.meter: m.status for m in reconcile_cycle(conn, "C1", UTC).meters}
    edits(store)
    with store.connect() as conn:
        after = {m.meter: m for m in reconcile_cycle(conn, "C1", UTC).meters}
        route, _ = build_from_store(conn, "C1", "hh-01", UTC)
    assert before["E-MISSING"] is Status.MISSING
    assert after["E-MISSING"].status is Status.ESTIMATED
    assert after["E-MISSING"].rule.startswith("estimated by the meter edits: ")
    stop = next(stop for stop in route.stops if stop.meter == "E-MISSING")  # only a read
    assert stop.previous.value == Decimal("2500")  # trues it up; the last bill is its low
    assert stop.limits.low == Decimal("2500") and stop.limits.high > Decimal("2800")


@pytest.mark.parametrize(("values", "why"), [
    ({"energy_import_kwh": Decimal("1000000000000000")}, "more than 15 digits"),
    ({"energy_import_kwh": Decimal("2800.0000000001")}, "more than 9 decimal places"),
    ({"energy_import_kwh": Decimal("-1")}, "cannot be negative"),
    ({"energy_import_kwh": Decimal("NaN")}, "must be a number"),
    ({"Energy Import": Decimal("2800")}, "not a register name"),
])
def test_an_override_the_api_would_refuse_is_refused_here_too(store, cycle, values, why):
    cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    spike = only_exception(store, "E-SPIKE", "spike")
    before = open_rules(store, "E-SPIKE"), billing(store, "E-SPIKE")
    with pytest.raises(ResolveError, match=why), store.begin() as conn:
        resolve(conn, spike, Action.OVERRIDE, actor="j.smith", rule_set=RULES,
                reason="typed from the dial", values=values)
    assert (open_rules(store, "E-SPIKE"), billing(store, "E-SPIKE")) == before


def test_the_largest_override_allowed_bills_exactly(store, cycle):
    cycle.send(kwh("E-SPIKE", "9800.000"))
    edits(store)
    spike = only_exception(store, "E-SPIKE", "spike")
    with store.begin() as conn:
        resolve(conn, spike, Action.OVERRIDE, actor="j.smith", rule_set=RULES,
                reason="typed from the dial",
                values={"energy_import_kwh": Decimal("999999999999999.999999999")})
    assert billing(store, "E-SPIKE").registers == {"energy_import_kwh": "999999999999999.999999999"}
