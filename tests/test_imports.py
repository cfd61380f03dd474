"""Master data import: whole files or nothing, every problem located, history kept, idempotent."""

from __future__ import annotations

import subprocess
import tempfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hub.imports import (
    COLUMNS,
    Counts,
    FileUnusable,
    ImportRejected,
    Kind,
    Problem,
    import_file,
)
from hub.imports.csv_file import read_csv
from hub.imports.problems import FILE, NO_LINE, ROW
from hub.imports.rows import (
    PARSERS,
    AccountRow,
    CycleRow,
    MeterRow,
    RouteStopRow,
    parse_records,
)
from hub.store.tables import accounts, cycles, meter_installations, meters, route_stops, routes
from protocols.scalars import format_decimal
from tests.conftest import script

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "master_data"
T1 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
TABLES = (accounts, meters, meter_installations, cycles, routes, route_stops)

ACCOUNTS = """\
account_id,name,service_address,status,rate_code,rate_options
A-1,Ada Lindqvist,"2 Elm Street, Millbrook",active,RES-E1,senior;low_income
A-2,Ben Okafor,4 Elm Street,active,RES-E1,
A-3,(vacant premise),6 Elm Street,vacant,RES-W1,
"""
METERS = """\
meter_serial,service,model,profile,multiplier,dials,unit,size,account_id,installed_on,removed_on
E-1,electric,Eastron SDM630,eastron-sdm630,40,6,kWh,,A-1,2020-01-15,
E-2,electric,,,1.0,5,kWh,,A-2,2021-06-01,
W-1,water,Arad Octave,arad-octave,1,5,m3,5/8in,A-3,2019-03-01,
"""
CYCLES = """\
cycle_id,read_window_start,read_window_end,scheduled_read_date,bill_period_start,bill_period_end
C1,2026-11-01,2026-11-07,2026-11-03,2026-10-01,2026-10-31
C2,2026-12-01,2026-12-07,,2026-11-01,2026-11-30
"""
ROUTES = """\
route_id,cycle_id,sequence,meter_serial,location_notes,latitude,longitude,hazards
R1,C1,1,E-1,east wall,45.50163,-73.56681,dog
R1,C1,2,E-2,"garage, behind the bins",,,
R2,C2,1,W-1,curb box,45.5,-73.5,locked gate
"""
BASE = {Kind.ACCOUNTS: ACCOUNTS, Kind.METERS: METERS, Kind.CYCLES: CYCLES, Kind.ROUTES: ROUTES}
METERS_HEADER = METERS.splitlines()[0]
ROUTES_HEADER = ROUTES.splitlines()[0]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(store, tmp_path, kind, text, **kwargs):
    return import_file(store, kind, write(tmp_path, f"{kind}.csv", text), **kwargs)


def load_base(store, tmp_path, *kinds, now=T1):
    for kind in kinds or tuple(BASE):
        load(store, tmp_path, kind, BASE[kind], now=now)


def rejected(store, tmp_path, kind, text) -> tuple[Problem, ...]:
    with pytest.raises(ImportRejected) as caught:
        load(store, tmp_path, kind, text)
    return caught.value.problems


def snapshot(store) -> dict[str, list[tuple]]:
    with store.connect() as conn:
        return {table.name: [tuple(row) for row in conn.execute(
            select(table).order_by(*table.primary_key.columns))] for table in TABLES}


def counts(summary) -> dict[str, tuple[int, int, int, int]]:
    return {name: (c.added, c.changed, c.unchanged, c.removed)
            for name, c in summary.counts.items()}


# --- good files, and importing them again ------------------------------------------------------


def test_good_files_import_with_the_right_counts_and_typed_values(store, tmp_path):
    summaries = [load(store, tmp_path, kind, BASE[kind], now=T1) for kind in BASE]

    assert [counts(s) for s in summaries] == [
        {"accounts": (3, 0, 0, 0)},
        {"meters": (3, 0, 0, 0), "meter_installations": (3, 0, 0, 0)},
        {"cycles": (2, 0, 0, 0)},
        {"routes": (2, 0, 0, 0), "route_stops": (3, 0, 0, 0)},
    ]
    with store.connect() as conn:
        a1 = conn.execute(select(accounts).where(accounts.c.id == "A-1")).one()
        e1, e2, _ = conn.execute(select(meters).order_by(meters.c.serial)).all()
        c2 = conn.execute(select(cycles).where(cycles.c.id == "C2")).one()
        r1 = conn.execute(select(route_stops).where(route_stops.c.route == "R1")
                          .order_by(route_stops.c.sequence)).all()
        installed = conn.execute(select(meter_installations.c.installed_on)
                                 .where(meter_installations.c.meter == "E-1")).scalar_one()
    assert a1.service_address == "2 Elm Street, Millbrook"
    assert a1.rate_options == ["low_income", "senior"]
    assert a1.updated_at == T1
    assert (e1.multiplier, e1.dials, e1.model, e1.size) == ("40", 6, "Eastron SDM630", None)
    assert e2.multiplier == "1.0"  # the CIS's decimal text, kept as written
    assert installed == date(2020, 1, 15)
    assert c2.scheduled_read_date == date(2026, 12, 7)  # empty: the read window's end
    assert [(s.meter, s.latitude, s.longitude, s.hazards) for s in r1] == [
        ("E-1", "45.50163", "-73.56681", "dog"), ("E-2", None, None, "")]


def test_importing_the_same_files_again_writes_nothing(store, tmp_path):
    load_base(store, tmp_path, now=T1)
    before = snapshot(store)

    again = [load(store, tmp_path, kind, BASE[kind], now=T2) for kind in BASE]

    assert [s.writes for s in again] == [0, 0, 0, 0]
    assert counts(again[1]) == {"meters": (0, 0, 3, 0), "meter_installations": (0, 0, 3, 0)}
    assert counts(again[3]) == {"routes": (0, 0, 2, 0), "route_stops": (0, 0, 3, 0)}
    assert snapshot(store) == before  # updated_at included: still T1


def test_rate_options_in_another_order_are_no_change(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS)
    summary = load(store, tmp_path, Kind.ACCOUNTS,
                   ACCOUNTS.replace("senior;low_income", "low_income;senior"), now=T2)
    assert summary.writes == 0


def test_a_changed_row_is_updated_and_only_it_gets_a_new_updated_at(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS, Kind.METERS)
    load(store, tmp_path, Kind.ACCOUNTS, ACCOUNTS.replace("2 Elm Street", "2A Elm Street"),
         now=T2)
    summary = load(store, tmp_path, Kind.METERS,
                   METERS.replace("E-2,electric,,,1.0,5", "E-2,electric,EM340,,2,6"), now=T2)

    assert counts(summary) == {"meters": (0, 1, 2, 0), "meter_installations": (0, 0, 3, 0)}
    with store.connect() as conn:
        stamps = dict(conn.execute(select(accounts.c.id, accounts.c.updated_at)).all())
        e2 = conn.execute(select(meters).where(meters.c.serial == "E-2")).one()
    assert stamps == {"A-1": T2, "A-2": T1, "A-3": T1}
    assert (e2.model, e2.multiplier, e2.dials, e2.updated_at) == ("EM340", "2", 6, T2)


def test_a_dry_run_counts_and_writes_nothing(store, tmp_path):
    summary = load(store, tmp_path, Kind.ACCOUNTS, ACCOUNTS, dry_run=True)
    assert summary.dry_run
    assert counts(summary) == {"accounts": (3, 0, 0, 0)}
    assert snapshot(store)["accounts"] == []


def test_the_demo_files_import_cleanly_in_order_and_again_change_nothing(store):
    summaries = [import_file(store, kind, DEMO / f"{kind}.csv", now=T1) for kind in BASE]

    assert {name: c.added for s in summaries for name, c in s.counts.items()} == {
        "accounts": 60, "meters": 60, "meter_installations": 60, "cycles": 13, "routes": 3,
        "route_stops": 59}
    with store.connect() as conn:
        statuses = conn.execute(select(accounts.c.status)).scalars().all()
        services = conn.execute(select(meters.c.service)).scalars().all()
        installs = conn.execute(select(meter_installations)).all()
    assert (statuses.count("inactive"), statuses.count("vacant")) == (2, 1)
    assert sorted(services) == ["electric"] * 40 + ["gas"] * 8 + ["water"] * 12
    per_account: dict[str, list] = {}
    for row in installs:
        per_account.setdefault(row.account, []).append(row)
    [exchange] = [rows for rows in per_account.values() if len(rows) == 2]
    old, new = sorted(exchange, key=lambda r: r.installed_on)
    assert old.removed_on == new.installed_on and new.removed_on is None
    assert all(s.writes == 0
               for s in (import_file(store, kind, DEMO / f"{kind}.csv") for kind in BASE))


# --- problems: located, complete, and nothing written -------------------------------------------


def test_one_bad_row_imports_nothing_and_names_file_line_column_and_reason(store, tmp_path):
    path = write(tmp_path, "accounts.csv", ACCOUNTS.replace("vacant,RES-W1", "gold,RES-W1"))
    with pytest.raises(ImportRejected) as caught:
        import_file(store, Kind.ACCOUNTS, path)

    assert caught.value.problems == (Problem(
        str(path), 4, "status", "'gold' is not one of active, inactive, vacant, closed"),)
    assert snapshot(store)["accounts"] == []


@pytest.mark.parametrize("cycle_id", ["2026/11", "2026:11", ".C1", "C 1"])
def test_a_cycle_id_that_could_not_name_its_export_file_is_refused(store, tmp_path, cycle_id):
    problems = rejected(store, tmp_path, Kind.CYCLES, CYCLES.replace("C2,", f"{cycle_id},"))
    assert [(p.line, p.column) for p in problems] == [(3, "cycle_id")]
    assert "names the cycle's export file" in problems[0].reason
    assert snapshot(store)["cycles"] == []


@given(st.text(alphabet="C2026-11./:_ a\\", min_size=1, max_size=70))
@example("C2026-11.a_b")
def test_every_cycle_id_import_accepts_can_name_an_export_file(cycle_id):
    from hub.export.files import export_file_name
    from hub.imports.rows import parse_cycle

    fields = dict(zip(CYCLES.splitlines()[0].split(","), CYCLES.splitlines()[1].split(","),
                      strict=True))
    parsed = parse_cycle({**fields, "cycle_id": cycle_id}, file="cycles.csv", line=2)
    if not isinstance(parsed, list):
        assert export_file_name(parsed.cycle_id, "csv") == f"{parsed.cycle_id}.csv"


def test_every_bad_row_is_reported_not_just_the_first(store, tmp_path):
    text = ACCOUNTS + (
        "A-4,,8 Elm Street,active,RES-E1,\n"            # line 5: no name
        "A 5,Eve,10 Elm Street,closed,RES E1,Senior\n"  # line 6: three bad fields
        "A-6,Fay,12 Elm Street,active,RES-E1,senior;senior\n"  # line 7
        "A-7,Gus\n"                                     # line 8: too few fields
    )
    problems = rejected(store, tmp_path, Kind.ACCOUNTS, text)
    assert [(p.line, p.column) for p in problems] == [
        (5, "name"), (6, "account_id"), (6, "rate_code"), (6, "rate_options"),
        (7, "rate_options"), (8, ROW)]
    assert "has 2 fields; the header has 6" in problems[-1].reason
    assert snapshot(store)["accounts"] == []


def test_keys_given_twice_in_one_file_are_problems_naming_both_lines(store, tmp_path):
    text = ACCOUNTS + "A-2,Ben Okafor,4 Elm Street,inactive,RES-E1,\n"
    assert rejected(store, tmp_path, Kind.ACCOUNTS, text) == (Problem(
        str(tmp_path / "accounts.csv"), 5, ROW, "account A-2 is also on line 3"),)


@pytest.mark.parametrize(("kind", "text", "line", "reason"), [
    (Kind.CYCLES, CYCLES + "C1,2026-11-02,2026-11-08,,2026-10-01,2026-10-31\n", 4,
     "cycle C1 is also on line 2"),
    (Kind.METERS, METERS + "E-1,electric,Eastron SDM630,eastron-sdm630,40,6,kWh,,A-1,"
     "2020-01-15,2021-01-01\n", 5,
     "installation of meter E-1 on account A-1 from 2020-01-15 is also on line 2"),
    (Kind.ROUTES, ROUTES + "R1,C1,2,W-1,,,,\n", 5, "route R1 sequence 2 is also on line 3"),
    (Kind.ROUTES, ROUTES + "R1,C1,3,E-1,,,,\n", 5, "meter E-1 on route R1 is also on line 2"),
])
def test_repeated_keys_of_every_kind_name_both_lines(kind, text, line, reason):
    parsed = parse_records(kind, read_csv_text(text, kind).records, file="f.csv")
    assert parsed.problems == (Problem("f.csv", line, ROW, reason),)


def test_a_meter_described_two_ways_in_one_file_is_a_problem():
    text = METERS + ("E-1,electric,Eastron SDM630,eastron-sdm630,80,6,kWh,,A-2,2018-01-01,"
                     "2019-01-01\n")
    parsed = parse_records(Kind.METERS, read_csv_text(text, Kind.METERS).records, file="f")
    [problem] = parsed.problems
    assert (problem.line, problem.column) == (5, "multiplier")
    assert "'80' here but '40' on line 2" in problem.reason


def test_unknown_accounts_cycles_and_meters_are_refused(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS, Kind.METERS, Kind.CYCLES)
    meters_problems = rejected(store, tmp_path, Kind.METERS,
                               METERS + "G-1,gas,,,1,5,m3,,A-9,2024-01-01,\n")
    routes_problems = rejected(store, tmp_path, Kind.ROUTES,
                               ROUTES + "R3,C9,1,X-9,,,,\n")

    assert [(p.line, p.column) for p in meters_problems] == [(5, "account_id")]
    assert "account A-9 is not in the store" in meters_problems[0].reason
    assert [(p.line, p.column) for p in routes_problems] == [(5, "cycle_id"), (5, "meter_serial")]
    assert "cycle C9 is not in the store" in routes_problems[0].reason
    assert "meter X-9 is not in the store" in routes_problems[1].reason
    assert snapshot(store)["routes"] == []


@pytest.mark.parametrize(("header", "says"), [
    ("account_id,name,service_address,status,rate_code", "missing column(s): rate_options"),
    ("account_id,name,service_address,status,rate_code,rate_options,email",
     "unknown column(s): email"),
    ("account_id,name,name,service_address,status,rate_code,rate_options",
     "column(s) named twice: name"),
])
def test_a_wrong_header_makes_the_file_unusable(store, tmp_path, header, says):
    path = write(tmp_path, "accounts.csv", header + "\nA-1,Ada\n")
    with pytest.raises(FileUnusable) as caught:
        import_file(store, Kind.ACCOUNTS, path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.column) == (str(path), 1, FILE)
    assert says in problem.reason


# --- meter history ------------------------------------------------------------------------------


EXCHANGE = f"""\
{METERS_HEADER}
E-1,electric,Eastron SDM630,eastron-sdm630,40,6,kWh,,A-1,2020-01-15,2026-10-14
E-3,electric,Eastron SDM630,eastron-sdm630-v2,40,6,kWh,,A-1,2026-10-14,
"""


def installations(store) -> list[tuple[str, str, date, date | None]]:
    return [(m, a, i, r) for m, a, i, r in snapshot(store)["meter_installations"]]


def test_a_meter_exchange_keeps_both_installations(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS, Kind.METERS)
    summary = load(store, tmp_path, Kind.METERS, EXCHANGE, now=T2)

    assert counts(summary) == {"meters": (1, 0, 1, 0), "meter_installations": (1, 1, 0, 0)}
    assert installations(store) == [
        ("E-1", "A-1", date(2020, 1, 15), date(2026, 10, 14)),
        ("E-2", "A-2", date(2021, 6, 1), None),     # not in this file: kept as it was
        ("E-3", "A-1", date(2026, 10, 14), None),
        ("W-1", "A-3", date(2019, 3, 1), None),
    ]
    assert load(store, tmp_path, Kind.METERS, EXCHANGE).writes == 0


def test_a_recorded_removal_date_is_never_changed(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS, Kind.METERS)
    load(store, tmp_path, Kind.METERS, EXCHANGE)
    before = snapshot(store)

    removal = ",2026-10-14\n"
    moved = rejected(store, tmp_path, Kind.METERS, EXCHANGE.replace(removal, ",2026-10-20\n", 1))
    reopened = rejected(store, tmp_path, Kind.METERS, EXCHANGE.replace(removal, ",\n", 1))

    assert [(p.line, p.column) for p in moved] == [(2, "removed_on")]
    assert ("installation of meter E-1 on account A-1 from 2020-01-15 was removed on 2026-10-14; "
            "the file says 2026-10-20") in moved[0].reason
    assert "the file says it is still installed" in reopened[0].reason
    assert snapshot(store) == before


def test_a_meter_installed_in_two_places_at_once_is_refused(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS, Kind.METERS)
    against_store = rejected(store, tmp_path, Kind.METERS,
                             f"{METERS_HEADER}\nE-1,electric,Eastron SDM630,eastron-sdm630,40,6,"
                             "kWh,,A-2,2025-01-01,\n")
    in_file = rejected(store, tmp_path, Kind.METERS,
                       f"{METERS_HEADER}\n"
                       "W-9,water,,,1,5,m3,,A-1,2020-01-01,2022-01-01\n"
                       "W-9,water,,,1,5,m3,,A-2,2021-06-01,\n")

    twice, two_electric = sorted(against_store, key=lambda p: "two electric" in p.reason)
    assert [(p.line, p.column) for p in against_store] == [(2, "installed_on")] * 2
    assert twice.reason.startswith("meter E-1 is installed twice at once: "
                                   "meter E-1 on account A-2 from 2025-01-01 (still installed) "
                                   "(line 2) overlaps meter E-1 on account A-1 from 2020-01-15 "
                                   "(still installed) (in the store)")
    assert two_electric.reason.startswith("account A-2 would have two electric meters at once")
    [problem] = in_file
    assert problem.line == 3
    assert "(line 3) overlaps meter W-9 on account A-1 from 2020-01-01 to 2022-01-01 (line 2)" \
        in problem.reason


def test_an_account_with_two_meters_of_one_service_at_once_is_refused(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS, Kind.METERS)
    problems = rejected(store, tmp_path, Kind.METERS,
                        f"{METERS_HEADER}\nE-9,electric,,,1,6,kWh,,A-1,2023-05-01,\n")
    [problem] = problems
    assert problem.line == 2
    assert problem.reason.startswith("account A-1 would have two electric meters at once")
    assert "E-1 on account A-1 from 2020-01-15 (still installed) (in the store)" in problem.reason

    # another service on the same account, and a swap on the day of removal, are both fine
    water = load(store, tmp_path, Kind.METERS,
                 f"{METERS_HEADER}\nW-9,water,,,1,5,m3,,A-1,2023-05-01,\n")
    assert counts(water)["meter_installations"] == (1, 0, 0, 0)


# --- routes ----------------------------------------------------------------------------------


def stops(store, route):
    return [(seq, meter) for r, seq, meter, *_ in snapshot(store)["route_stops"] if r == route]


def test_a_resequenced_route_replaces_its_stops_and_leaves_other_routes_alone(store, tmp_path):
    load_base(store, tmp_path, now=T1)
    swapped = load(store, tmp_path, Kind.ROUTES, f"""\
{ROUTES_HEADER}
R1,C1,1,E-2,"garage, behind the bins",,,
R1,C1,2,E-1,east wall,45.50163,-73.56681,dog
""", now=T2)
    assert counts(swapped) == {"routes": (0, 1, 0, 0), "route_stops": (0, 2, 0, 0)}
    assert stops(store, "R1") == [(1, "E-2"), (2, "E-1")]
    assert stops(store, "R2") == [(1, "W-1")]
    with store.connect() as conn:
        stamps = dict(conn.execute(select(routes.c.id, routes.c.updated_at)).all())
    assert stamps == {"R1": T2, "R2": T1}

    shortened = load(store, tmp_path, Kind.ROUTES,
                     f'{ROUTES_HEADER}\nR1,C1,1,E-2,"garage, behind the bins",,,\n')
    assert counts(shortened) == {"routes": (0, 1, 0, 0), "route_stops": (0, 0, 1, 1)}
    assert stops(store, "R1") == [(1, "E-2")]


def test_a_route_given_two_cycles_is_a_problem():
    text = ROUTES + "R1,C2,3,W-1,,,,\n"
    parsed = parse_records(Kind.ROUTES, read_csv_text(text, Kind.ROUTES).records, file="f")
    assert [(p.line, p.column) for p in parsed.problems] == [(5, "cycle_id")]


# --- the CSV file itself --------------------------------------------------------------------


def read_csv_text(text: str, kind: Kind, *, encoding: str = "utf-8"):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "f.csv"
        path.write_bytes(text.encode(encoding))
        return read_csv(path, COLUMNS[kind])


def test_a_bom_crlf_line_ends_and_blank_lines_are_read_with_physical_line_numbers():
    text = ("\ufeff" + ACCOUNTS.replace("\n", "\r\n")
            + "\r\n,,,,,\r\n" + 'A-4,"Dee\r\nDoe",x,active,R,\r\nA-5,Eve,y,active,R,\r\n')
    table = read_csv_text(text, Kind.ACCOUNTS)
    assert [(r.line, r.fields["account_id"]) for r in table.records] == [
        (2, "A-1"), (3, "A-2"), (4, "A-3"), (7, "A-4"), (9, "A-5")]
    assert table.problems == ()
    parsed = parse_records(Kind.ACCOUNTS, table.records, file="f")
    assert [(p.line, p.column) for p in parsed.problems] == [(7, "name")]  # a line break


@pytest.mark.parametrize(("data", "line", "says"), [
    (b"", 1, "no header"),
    (ACCOUNTS.encode() + b"A-9,J\xf6rg,x,active,R,\n", 5, "not UTF-8"),
    (ACCOUNTS.encode() + b'A-9,"unterminated,x,active,R,\n', 5, "not valid CSV"),
])
def test_a_file_that_is_not_utf8_csv_is_unusable(tmp_path, data, line, says):
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    with pytest.raises(FileUnusable) as caught:
        read_csv(path, COLUMNS[Kind.ACCOUNTS])
    [problem] = caught.value.problems
    assert (problem.line, problem.column) == (line, FILE)
    assert says in problem.reason


def test_a_missing_file_is_unusable_without_a_line(tmp_path):
    with pytest.raises(FileUnusable) as caught:
        read_csv(tmp_path / "nope.csv", COLUMNS[Kind.ACCOUNTS])
    assert caught.value.problems[0].line == NO_LINE
    assert "No such file" in caught.value.problems[0].reason


# --- the row parsers, for any text at all ------------------------------------------------------

PLAUSIBLE = {
    "account_id": ["A-1", "100-2345/01"], "meter_serial": ["SDM630-00001", "E:1"],
    "cycle_id": ["C2026-11"], "route_id": ["R01"], "name": ["Ada"],
    "service_address": ["2 Elm St"], "status": ["active", "closed", "Active"],
    "rate_code": ["RES-E1"], "rate_options": ["", "senior", "senior;low_income", "a;;b"],
    "service": ["electric", "water", "gas"], "model": ["", "SDM630"],
    "profile": ["", "eastron-sdm630"], "multiplier": ["1", "40", "0", "-1", "1.50", "1e3"],
    "dials": ["1", "6", "12", "13", "0"], "unit": ["kWh", "m3", "gal", "ccf", "ft3", "kwh"],
    "size": ["", "5/8in"], "installed_on": ["2020-01-15", "2026-02-29"],
    "removed_on": ["", "2019-12-31", "2026-10-14"],
    "read_window_start": ["2026-11-01"], "read_window_end": ["2026-11-07", "2026-10-31"],
    "scheduled_read_date": ["", "2026-11-03", "2026-11-09"],
    "bill_period_start": ["2026-10-01"], "bill_period_end": ["2026-10-31", "2026-09-30"],
    "sequence": ["1", "10", "0", "999999", "1000000"], "location_notes": ["", "east wall"],
    "latitude": ["", "45.5", "-90", "90.1"], "longitude": ["", "-73.5", "180", "-180.5"],
    "hazards": ["", "dog"],
}
ROW_TYPES = {Kind.ACCOUNTS: AccountRow, Kind.METERS: MeterRow, Kind.CYCLES: CycleRow,
             Kind.ROUTES: RouteStopRow}


def field_text(column: str):
    return st.one_of(st.sampled_from(PLAUSIBLE[column]), st.text(max_size=80),
                     st.sampled_from(PLAUSIBLE[column]).map(lambda s: f" {s}\t"))


def unparse(row, kind) -> dict[str, str]:
    """The CSV fields that say what ``row`` says."""
    fields = {}
    for column in COLUMNS[kind]:
        value = getattr(row, column)
        if column == "rate_options":
            value = ";".join(value)
        fields[column] = ("" if value is None else format_decimal(value)
                          if isinstance(value, Decimal) else str(value))
    return fields


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(tuple(BASE)).flatmap(
    lambda kind: st.tuples(st.just(kind), st.fixed_dictionaries(
        {column: field_text(column) for column in COLUMNS[kind]}))))
@example((Kind.ROUTES, {"route_id": "R", "cycle_id": "C", "sequence": "1", "meter_serial": "M",
                        "location_notes": "", "latitude": "1", "longitude": "",
                        "hazards": "\x00"}))
def test_any_text_in_any_field_gives_a_row_or_located_problems(kind_and_fields):
    kind, fields = kind_and_fields
    result = PARSERS[kind](fields, file="f.csv", line=7)
    if isinstance(result, list):
        assert result
        for problem in result:
            assert (problem.file, problem.line) == ("f.csv", 7)
            assert problem.column in COLUMNS[kind]
            assert problem.reason
        return
    assert isinstance(result, ROW_TYPES[kind])
    assert PARSERS[kind](unparse(result, kind), file="f.csv", line=7) == result
    if isinstance(result, MeterRow):
        assert result.multiplier > 0
        assert result.removed_on is None or result.removed_on >= result.installed_on
    if isinstance(result, CycleRow):
        assert (result.read_window_start <= result.scheduled_read_date
                <= result.read_window_end)
    if isinstance(result, RouteStopRow) and result.latitude is not None:
        assert abs(result.latitude) <= 90 and abs(result.longitude) <= 180


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
@example('account_id,name,service_address,status,rate_code,rate_options\n"a\x00",\r\n\r')
def test_any_file_text_gives_records_or_an_unusable_file(body):
    header = ",".join(COLUMNS[Kind.ACCOUNTS])
    try:
        table = read_csv_text(f"{header}\n{body}", Kind.ACCOUNTS)
    except FileUnusable as exc:
        assert exc.problems
        return
    lines = [record.line for record in table.records] + [p.line for p in table.problems]
    assert all(line >= 2 for line in lines)
    assert all(set(r.fields) == set(COLUMNS[Kind.ACCOUNTS]) for r in table.records)
    parse_records(Kind.ACCOUNTS, table.records, file="f")


# --- the command line -----------------------------------------------------------------------

METERHUB = [script("meterhub")]


@pytest.fixture
def meterhub(tmp_path, cli_env):
    """Run ``meterhub --db <a fresh, upgraded SQLite store> …``; returns the completed process."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"

    def run(*args):
        return subprocess.run([*METERHUB, "--db", url, *map(str, args)], cwd=tmp_path,
                              env=cli_env, capture_output=True, text=True, timeout=60,
                              check=False)

    assert run("db", "upgrade").returncode == 0
    return run


def test_cli_imports_a_file_and_prints_what_changed(meterhub):
    result = meterhub("import", "accounts", DEMO / "accounts.csv")
    assert result.returncode == 0, result.stderr
    assert "accounts.csv: imported" in result.stdout
    assert "│ accounts │    60 │       0 │         0 │       0 │" in result.stdout

    again = meterhub("import", "accounts", DEMO / "accounts.csv")
    assert again.returncode == 0, again.stderr
    assert "already up to date, nothing written" in again.stdout


def test_cli_prints_every_problem_and_exits_1(meterhub, tmp_path):
    path = write(tmp_path, "accounts.csv", ACCOUNTS.replace("vacant,RES-W1", "gold,RES-W1")
                 + "A-4,,8 Elm Street,active,RES-E1,\n")
    result = meterhub("import", "accounts", path)
    assert result.returncode == 1
    assert "2 problem(s); nothing was imported" in result.stdout
    assert "│    4 │ status │ 'gold' is not one of active, inactive, vacant, closed" \
        in result.stdout
    assert "│    5 │ name   │ required; the field is empty" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_exits_2_for_a_missing_file_or_a_wrong_header(meterhub, tmp_path):
    missing = meterhub("import", "meters", "nope.csv")
    assert missing.returncode == 2
    assert "nope.csv: (file): cannot read: No such file or directory" in missing.stderr

    header = meterhub("import", "cycles", write(tmp_path, "c.csv", "cycle_id\nC1\n"))
    assert header.returncode == 2
    assert "missing column(s): read_window_start" in header.stderr
    assert "Traceback" not in missing.stderr + header.stderr


def test_counts_add_up_writes():
    assert Counts(added=1, changed=2, unchanged=5, removed=3).writes == 6


def test_a_new_service_is_checked_against_every_recorded_installation(store, tmp_path):
    load_base(store, tmp_path, Kind.ACCOUNTS, Kind.METERS)
    load(store, tmp_path, Kind.METERS, f"""\
{METERS_HEADER}
M-9,water,,,1,5,m3,,A-3,2018-01-01,2018-06-01
M-9,water,,,1,5,m3,,A-1,2023-05-01,
""")
    # the file restates only the old installation, but M-9 becoming electric puts two
    # electric meters on A-1 through the installation it does not mention
    [problem] = rejected(store, tmp_path, Kind.METERS,
                         f"{METERS_HEADER}\nM-9,electric,,,1,5,kWh,,A-3,2018-01-01,2018-06-01\n")
    assert (problem.line, problem.column) == (2, "service")
    assert problem.reason.startswith("account A-1 would have two electric meters at once")
