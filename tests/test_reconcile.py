"""Reconciliation: the pure rules, then a cycle reconciled from reads that came through sync."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert

from hub.reconcile import (
    SOURCE_RANK,
    CandidateRead,
    Cycle,
    Installation,
    Status,
    Stop,
    reconcile,
)
from hub.reconcile_store import reconcile_cycle
from hub.store.tables import accounts, cycles, meter_installations, meters, route_stops, routes
from hub.verifier import BackgroundVerifier
from protocols.read import Source
from tests.readings import T0, reading
from tests.sync_harness import Gateway, hub_thread, wait_until

CYCLE = Cycle("C1", date(2026, 11, 20), date(2026, 11, 26), date(2026, 11, 23))
SCHEDULED = T0.date()
VALUE = {"energy_import_kwh": {"obis": "1.8.0", "unit": "kWh", "value": "1.000"}}


def installed(meter: str, account: str = "A1", status: str = "active",
              on: date = date(2020, 1, 1), off: date | None = None) -> Installation:
    return Installation(meter, account, status, on, off)


def read(meter: str, at: datetime, source: Source = Source.AMI, seq: int = 1,
         flags: tuple[str, ...] = ()) -> CandidateRead:
    return CandidateRead("gw-1", seq, meter, at, source, flags, VALUE)


def one(stop_meter: str, installations, reads, cycle: Cycle = CYCLE):
    result = reconcile(cycle, [Stop("R1", 1, stop_meter)], installations, reads)
    assert len(result.meters) == 1
    return result.meters[0]


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_the_read_nearest_the_scheduled_date_bills():
    got = one("M1", [installed("M1")], [read("M1", at(21), seq=1), read("M1", at(23, 2), seq=2),
                                         read("M1", at(25), seq=3)])
    assert got.status is Status.READ and got.billing_read.seq == 2
    assert got.rule == "nearest the scheduled read date" and got.account == "A1"


def test_ami_wins_over_a_nearer_manual_read_and_says_so():
    got = one("M1", [installed("M1")], [read("M1", at(23), Source.HANDHELD_MANUAL, seq=1),
                                         read("M1", at(26, 20), Source.AMI, seq=2)])
    assert got.billing_read.seq == 2
    assert got.rule == "ami over handheld_manual, nearest the scheduled date"


def test_reads_outside_the_window_do_not_count():
    got = one("M1", [installed("M1")], [read("M1", at(19, 23)), read("M1", at(27))])
    assert got.status is Status.MISSING and got.reads_in_window == 0


def test_the_window_is_the_utilitys_days_not_utc_days():
    chicago = Cycle("C1", date(2026, 11, 20), date(2026, 11, 26), date(2026, 11, 23),
                    ZoneInfo("America/Chicago"))
    late_local = datetime(2026, 11, 27, 3, tzinfo=UTC)  # 21:00 on the 26th in Chicago
    assert one("M1", [installed("M1")], [read("M1", late_local)], chicago).status is Status.READ
    assert one("M1", [installed("M1")], [read("M1", late_local)]).status is Status.MISSING


def test_trouble_reports_without_a_read_make_trouble_with_their_codes():
    got = one("M1", [installed("M1")], [read("M1", at(22), Source.HANDHELD_MANUAL,
                                             flags=("trouble_dog",)),
                                        read("M1", at(24), Source.HANDHELD_MANUAL,
                                             flags=("trouble_no_access", "trouble_dog"))])
    assert got.status is Status.TROUBLE and got.trouble == ("dog", "no_access")


def test_a_read_beats_a_trouble_report():
    got = one("M1", [installed("M1")], [read("M1", at(22), flags=("trouble_dog",)),
                                        read("M1", at(24), seq=7)])
    assert got.status is Status.READ and got.billing_read.seq == 7


def test_meters_without_an_active_account_in_the_window_are_inactive():
    assert one("M1", [installed("M1", status="vacant")], []).status is Status.INACTIVE
    assert one("M1", [installed("M1", off=date(2026, 11, 1))], []).status is Status.INACTIVE
    assert one("M1", [], [read("M1", at(23))]).status is Status.INACTIVE
    exchanged = one("M1", [installed("M1", on=date(2026, 11, 25))], [])
    assert exchanged.status is Status.MISSING  # installed on day 6 of the window: read it


def test_route_summaries_count_and_measure_progress():
    stops = [Stop("R1", n, f"M{n}") for n in range(1, 5)] + [Stop("R2", 1, "M9")]
    installs = [installed(f"M{n}") for n in (1, 2, 3, 9)]
    result = reconcile(CYCLE, stops, installs, [read("M1", at(23)), read("M2", at(22))])
    r1, r2 = result.routes()
    assert r1.counts == {Status.READ: 2, Status.MISSING: 1, Status.INACTIVE: 1}
    assert r1.done == 2 / 3 and r2.done == 0
    assert [m.meter for m in result.with_status(Status.MISSING)] == ["M3", "M9"]


@given(st.lists(st.tuples(st.sampled_from(["M1", "M2", "M3"]), st.integers(0, 24 * 12),
                          st.sampled_from(list(Source)), st.booleans()), max_size=30))
def test_every_stop_gets_one_verdict_and_a_billing_read_is_in_window_and_best_source(spec):
    reads = [read(m, at(18) + timedelta(hours=h), s, seq=i,
                  flags=("trouble_dog",) if t else ())
             for i, (m, h, s, t) in enumerate(spec)]
    stops = [Stop("R1", n, f"M{n}") for n in (1, 2, 3)]
    result = reconcile(CYCLE, stops, [installed(f"M{n}") for n in (1, 2, 3)], reads)
    start, end = CYCLE.window()
    assert [m.meter for m in result.meters] == ["M1", "M2", "M3"]
    for verdict in result.meters:
        usable = [r for r in reads if r.meter == verdict.meter and start <= r.read_at < end
                  and not r.trouble]
        assert (verdict.status is Status.READ) == bool(usable)
        if usable:
            best = min(SOURCE_RANK[r.source] for r in usable)
            assert verdict.billing_read in usable
            assert SOURCE_RANK[verdict.billing_read.source] == best


# --- from the store, with reads that came through the real sync path ---------------------


def test_a_cycle_reconciled_from_synced_reads(tmp_path, store, mosquitto):
    gateway = Gateway(tmp_path / "gw", store, broker_port=mosquitto.port)
    with gateway.buffer() as buffer:
        buffer.append([reading(0, meter="E1"), reading(1, meter="E1"), reading(2, meter="E2")])
    with hub_thread(store, mosquitto.port), gateway.sync_thread():
        wait_until(lambda: gateway.acked() == 3, 20, "the reads to be stored")
    seed_cycle(store, ["E1", "E2", "E3"])
    with store.connect() as conn:
        before = reconcile_cycle(conn, "C1", UTC)
    assert [m.status for m in before.meters] == [Status.MISSING] * 3  # not verified yet
    BackgroundVerifier(store, processes=1).verify_pending()
    with store.connect() as conn:
        after = reconcile_cycle(conn, "C1", UTC)
    assert [m.status for m in after.meters] == [Status.READ, Status.READ, Status.MISSING]
    assert after.meters[0].billing_read.seq == 1  # 06:00 on the scheduled day beats 06:15


def seed_cycle(store, serials: list[str], first: date = SCHEDULED) -> None:
    """Cycle C1 (window first±2 days, scheduled ``first``), route R1 of ``serials`` in order."""
    with store.begin() as conn:
        conn.execute(insert(cycles).values(
            id="C1", read_window_start=first - timedelta(days=2),
            read_window_end=first + timedelta(days=2), scheduled_read_date=first,
            bill_period_start=first - timedelta(days=30), bill_period_end=first,
            updated_at=T0))
        conn.execute(insert(accounts), [
            {"id": f"A-{s}", "name": "x", "service_address": f"{n} Main St",
             "status": "active", "rate_code": "R", "rate_options": [], "updated_at": T0}
            for n, s in enumerate(serials, 1)])
        conn.execute(insert(meters), [
            {"serial": s, "service": "electric", "multiplier": "1", "dials": 6, "unit": "kWh",
             "profile": "landis-gyr-zmd310", "updated_at": T0} for s in serials])
        conn.execute(insert(meter_installations), [
            {"meter": s, "account": f"A-{s}", "installed_on": date(2020, 1, 1)}
            for s in serials])
        conn.execute(insert(routes).values(id="R1", cycle="C1", updated_at=T0))
        conn.execute(insert(route_stops), [
            {"route": "R1", "sequence": n, "meter": s, "location_notes": f"stop {n}",
             "hazards": "dog" if n == 2 else ""} for n, s in enumerate(serials, 1)])


def test_the_demo_utility_imports_and_reconciles_from_the_command_line(tmp_path, cli_env):
    import json
    import subprocess
    from pathlib import Path

    from tests.conftest import script

    samples = Path(__file__).resolve().parents[1] / "demo" / "master_data"
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"

    def meterhub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script("meterhub"), "--db", db, *args], cwd=tmp_path,
                              env=cli_env, capture_output=True, text=True, timeout=60,
                              check=False)

    assert meterhub("db", "upgrade").returncode == 0
    # every stop's hazard in brackets, as some CIS write them: printed as data, not markup
    routes_csv = tmp_path / "routes.csv"
    routes_csv.write_text("\n".join(
        line if n == 0 else f"{line}[dog] [/gate]"
        for n, line in enumerate((samples / "routes.csv").read_text().splitlines())) + "\n")
    for kind in ("accounts", "meters", "cycles", "routes"):
        imported = meterhub("import", kind,
                            str(routes_csv if kind == "routes" else samples / f"{kind}.csv"))
        assert imported.returncode == 0, imported.stderr
    result = meterhub("cycle", "reconcile", "C2026-11", "--report", "report.json")
    assert result.returncode == 0, result.stderr
    assert "cycle C2026-11" in result.stdout and "R01" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    statuses = {m["status"] for m in report["meters"]}
    assert statuses <= {"missing", "inactive"} and "missing" in statuses  # no reads yet
    assert meterhub("cycle", "reconcile", "C2099-01").returncode == 1
    csv_report = meterhub("cycle", "reconcile", "C2026-11", "--report", "r.csv")
    assert csv_report.returncode == 0
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert header.startswith("route,sequence,meter,account,status,rule")
    reread = meterhub("cycle", "reread", "C2026-11", "--collector", "hh-01", "--out",
                      "route.json", "--no-publish")
    assert reread.returncode == 0, reread.stderr
    assert "[dog]" in reread.stdout and "[/gate]" in reread.stdout
    route = json.loads((tmp_path / "route.json").read_text())
    assert len(route["stops"]) == sum(m["status"] == "missing" for m in report["meters"])
