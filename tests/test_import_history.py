"""Billed-read history import: earlier cycles' billing reads, whole or nothing, idempotent."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from hub.imports import COLUMNS, ImportRejected, Kind, Problem, import_file
from hub.imports.problems import ROW
from hub.imports.rows import REGISTER_RE, HistoryRow, history_reads, parse_history
from hub.store.tables import billing_reads
from protocols.scalars import format_decimal
from tests.conftest import script

T1 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)

MASTER_DATA = {
    Kind.ACCOUNTS: """\
account_id,name,service_address,status,rate_code,rate_options
A-1,Ada Lindqvist,2 Elm Street,active,COM-E2,
A-2,Ben Okafor,4 Elm Street,active,RES-W1,
""",
    Kind.METERS: """\
meter_serial,service,model,profile,multiplier,dials,unit,size,account_id,installed_on,removed_on
E-1,electric,,,40,6,kWh,,A-1,2020-01-15,2026-10-14
E-3,electric,,,40,6,kWh,,A-1,2026-10-14,
W-1,water,,,1,5,m3,5/8in,A-2,2019-03-01,
""",
    Kind.CYCLES: """\
cycle_id,read_window_start,read_window_end,scheduled_read_date,bill_period_start,bill_period_end
C2026-09,2026-09-01,2026-09-07,2026-09-03,2026-08-01,2026-08-31
C2026-10,2026-10-01,2026-10-07,2026-10-03,2026-09-01,2026-09-30
C2026-11,2026-11-01,2026-11-07,2026-11-03,2026-10-01,2026-10-31
""",
}
HEADER = "cycle_id,meter_serial,read_at,read_type,register,value,multiplier"
HISTORY = f"""\
{HEADER}
C2026-09,E-1,2026-09-03T09:12:00Z,actual,energy_import_kwh,10250.5,40
C2026-09,E-1,2026-09-03T09:12:00Z,actual,demand_kw,4.125,40
C2026-10,E-1,2026-10-03T11:12:00+02:00,estimated,energy_import_kwh,10412.0,40
C2026-10,E-1,2026-10-03T11:12:00+02:00,estimated,demand_kw,3.900,40
C2026-09,W-1,2026-09-04T07:00:00Z,actual,volume_m3,512.125,1
"""
"""Five rows, three billed reads: E-1 in September and October, W-1 in September."""


def write(tmp_path: Path, text: str, name: str = "history.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(store, tmp_path, text, **kwargs):
    return import_file(store, Kind.HISTORY, write(tmp_path, text), **kwargs)


@pytest.fixture
def master(store, tmp_path):
    """``store`` with the accounts, meters (an exchange on A-1) and three cycles imported."""
    for kind, text in MASTER_DATA.items():
        import_file(store, kind, write(tmp_path, text, f"{kind}.csv"), now=T1)
    return store


def stored(store) -> dict[tuple[str, str], object]:
    with store.connect() as conn:
        return {(row.cycle, row.meter): row for row in conn.execute(select(billing_reads))}


def rejected(store, tmp_path, text) -> tuple[Problem, ...]:
    with pytest.raises(ImportRejected) as caught:
        load(store, tmp_path, text, now=T2)
    return caught.value.problems


def counts(summary) -> tuple[int, int, int, int]:
    c = summary.counts["billing_reads"]
    return (c.added, c.changed, c.unchanged, c.removed)


# --- good files, and importing them again ------------------------------------------------------


def test_a_good_file_imports_one_billing_read_per_cycle_and_meter(master, tmp_path):
    summary = load(master, tmp_path, HISTORY, now=T1)

    assert counts(summary) == (3, 0, 0, 0)
    reads = stored(master)
    assert sorted(reads) == [("C2026-09", "E-1"), ("C2026-09", "W-1"), ("C2026-10", "E-1")]
    september, october = reads[("C2026-09", "E-1")], reads[("C2026-10", "E-1")]
    assert september.registers == {"demand_kw": "4.125", "energy_import_kwh": "10250.5"}
    assert october.registers == {"demand_kw": "3.900", "energy_import_kwh": "10412.0"}
    assert (september.kind, october.kind) == ("actual", "estimated")
    assert october.read_at == datetime(2026, 10, 3, 9, 12, tzinfo=UTC)  # +02:00, stored UTC
    assert october.read_at.tzinfo is UTC
    assert (september.multiplier, reads[("C2026-09", "W-1")].multiplier) == ("40", "1")
    assert (september.account, reads[("C2026-09", "W-1")].account) == ("A-1", "A-2")
    assert {(r.origin, r.detail, r.updated_at) for r in reads.values()} == {
        ("cis", "imported from history.csv", T1)}
    assert {(r.source, r.meter_offset_s, r.collector, r.seq, r.method, r.reason, r.audit_id)
            for r in reads.values()} == {(None,) * 7}
    assert all(r.flags == [] for r in reads.values())


def test_the_account_is_the_one_the_meter_served_on_the_read_day(master, tmp_path):
    load(master, tmp_path, f"""\
{HEADER}
C2026-11,E-1,2026-10-14T09:00:00Z,actual,energy_import_kwh,10600,40
C2026-11,E-3,2026-10-14T09:30:00Z,actual,energy_import_kwh,0.0,40
C2026-10,E-3,2026-10-03T09:00:00Z,actual,energy_import_kwh,0.0,40
""")
    reads = stored(master)
    assert reads[("C2026-11", "E-1")].account == "A-1"  # its final read, on the day it came off
    assert reads[("C2026-11", "E-3")].account == "A-1"  # installed that day
    assert reads[("C2026-10", "E-3")].account is None   # not yet installed anywhere


def test_importing_the_same_file_again_changes_nothing(master, tmp_path):
    load(master, tmp_path, HISTORY, now=T1)
    before = stored(master)

    again = load(master, tmp_path, HISTORY, now=T2)

    assert (counts(again), again.writes) == ((0, 0, 3, 0), 0)
    assert stored(master) == before  # updated_at included: still T1


def test_the_same_reads_in_another_order_and_offset_are_no_change(master, tmp_path):
    load(master, tmp_path, HISTORY, now=T1)
    header, *rows = HISTORY.splitlines()
    shuffled = "\n".join([header, *reversed(rows)]).replace(
        "2026-09-03T09:12:00Z", "2026-09-03T04:12:00-05:00") + "\n"

    assert load(master, tmp_path, shuffled, now=T2).writes == 0


def test_a_changed_value_updates_that_read_and_only_its_updated_at(master, tmp_path):
    load(master, tmp_path, HISTORY, now=T1)

    summary = load(master, tmp_path, HISTORY.replace("3.900", "3.950"), now=T2)

    assert counts(summary) == (0, 1, 2, 0)
    reads = stored(master)
    assert reads[("C2026-10", "E-1")].registers == {"demand_kw": "3.950",
                                                    "energy_import_kwh": "10412.0"}
    assert {key: r.updated_at for key, r in reads.items()} == {
        ("C2026-09", "E-1"): T1, ("C2026-09", "W-1"): T1, ("C2026-10", "E-1"): T2}


def test_a_read_listed_again_gets_exactly_the_files_registers(master, tmp_path):
    load(master, tmp_path, HISTORY, now=T1)

    summary = load(master, tmp_path, HISTORY.replace(
        "C2026-10,E-1,2026-10-03T11:12:00+02:00,estimated,demand_kw,3.900,40\n", ""), now=T2)

    assert counts(summary) == (0, 1, 2, 0)
    assert stored(master)[("C2026-10", "E-1")].registers == {"energy_import_kwh": "10412.0"}


def test_reads_missing_from_a_later_file_are_left_alone(master, tmp_path):
    load(master, tmp_path, HISTORY, now=T1)

    summary = load(master, tmp_path, f"""\
{HEADER}
C2026-11,W-1,2026-11-03T07:00:00Z,actual,volume_m3,530.5,1
""", now=T2)

    assert counts(summary) == (1, 0, 0, 0)
    assert sorted(stored(master)) == [("C2026-09", "E-1"), ("C2026-09", "W-1"),
                                      ("C2026-10", "E-1"), ("C2026-11", "W-1")]


def test_a_dry_run_counts_and_writes_nothing(master, tmp_path):
    summary = load(master, tmp_path, HISTORY, dry_run=True)
    assert summary.dry_run
    assert counts(summary) == (3, 0, 0, 0)
    assert stored(master) == {}


# --- problems: located, complete, and nothing written -------------------------------------------

GOOD = "C2026-09,W-1,2026-09-04T07:00:00Z,actual,volume_m3,512.125,1"
FLOW = "C2026-09,W-1,2026-09-04T07:00:00Z,actual,flow_m3h,0.25,1"
"""Another register of the billed read on line 6 (``GOOD`` repeats that line's register)."""


@pytest.mark.parametrize(("line", "column", "says"), [
    (GOOD.replace("2026-09-04T07:00:00Z", "2026-09-04"), "read_at",
     "2026-09-04 is a date without a time; write when the meter was read, with its zone: "
     "2026-09-04T09:12:00Z (UTC) or 2026-09-04T11:12:00+02:00"),
    (GOOD.replace("07:00:00Z", "07:00:00"), "read_at",
     "2026-09-04T07:00:00 has no time zone; add Z for UTC"),
    (GOOD.replace("2026-09-04T07:00:00Z", "04/09/2026 07:00"), "read_at",
     "'04/09/2026 07:00' is not an instant like 2026-10-03T09:12:00Z"),
    (GOOD.replace("09-04T07", "09-31T07"), "read_at", "is not a calendar instant"),
    (GOOD.replace("512.125", "-512.125"), "value", "-512.125 is below 0"),
    (GOOD.replace("512.125", "5.1e2"), "value", "'5.1e2' is not a decimal number"),
    (GOOD.replace(",1", ",0"), "multiplier", "0 is not above 0"),
    (GOOD.replace("actual", "measured"), "read_type", "'measured' is not one of actual, estimated"),
    (GOOD.replace("volume_m3", "Volume m3"), "register", "'Volume m3' is not a register name"),
    (GOOD.replace("C2026-09", "C2025-01"), "cycle_id",
     "cycle C2025-01 is not in the store; import it with the cycles file first"),
    (GOOD.replace("W-1", "W-9"), "meter_serial",
     "meter W-9 is not in the store; import it with the meters file first"),
    (FLOW.replace("T07:00", "T08:00"), "read_at",
     "2026-09-04T08:00:00.000Z here but 2026-09-04T07:00:00.000Z on line 6; the rows of cycle "
     "C2026-09 meter W-1 are one billed read and agree on read_at, read_type and multiplier"),
    (FLOW.replace("actual", "estimated"), "read_type", "estimated here but actual on line 6"),
    (FLOW.replace(",1", ",1.0"), "multiplier", "1.0 here but 1 on line 6"),
    (GOOD.replace("512.125", "512.250"), ROW,
     "register volume_m3 of cycle C2026-09 meter W-1 is also on line 6"),
])
def test_a_bad_row_is_reported_with_file_line_column_and_reason(master, tmp_path, line, column,
                                                                says):
    problems = rejected(master, tmp_path, HISTORY + line + "\n")

    [problem] = problems
    assert (problem.file, problem.line, problem.column) == (
        str(tmp_path / "history.csv"), 7, column)
    assert says in problem.reason
    assert stored(master) == {}


def test_every_bad_row_is_reported_and_nothing_is_written(master, tmp_path):
    load(master, tmp_path, HISTORY, now=T1)
    before = stored(master)
    text = HISTORY.replace("3.900", "3.950") + (  # a change that must not be made either
        "C2026-11,E-3,2026-11-03,actual,energy_import_kwh,12,40\n"          # line 7
        "C2026-11,E-9,2026-11-03T09:00:00Z,read,energy_import_kwh,-1,40\n"  # line 8
    )

    problems = rejected(master, tmp_path, text)

    assert [(p.line, p.column) for p in problems] == [
        (7, "read_at"), (8, "read_type"), (8, "value")]
    assert stored(master) == before


def test_a_read_billed_by_meterhubs_edits_is_never_replaced(master, tmp_path):
    with master.begin() as conn:
        conn.execute(insert(billing_reads), [{
            "cycle": "C2026-10", "meter": "E-1", "account": "A-1", "kind": "actual",
            "origin": "edits", "read_at": datetime(2026, 10, 3, 9, 0, tzinfo=UTC),
            "registers": {"energy_import_kwh": "10411.5"}, "multiplier": "40",
            "source": "ami", "flags": [], "collector": "gw-0001", "seq": 812,
            "detail": "chosen by the edits", "updated_at": T1}])
    before = stored(master)

    problems = rejected(master, tmp_path, HISTORY)

    reason = ("cycle C2026-10 meter E-1 was billed by meterhub's edits; a history import "
              "cannot replace it")
    assert problems == (Problem(str(tmp_path / "history.csv"), 4, ROW, reason),
                        Problem(str(tmp_path / "history.csv"), 5, ROW, reason))
    assert stored(master) == before


# --- the row parser, for any text at all ------------------------------------------------------

PLAUSIBLE = {
    "cycle_id": ["C2026-11", "C 1"], "meter_serial": ["SDM630-00001", "E:1", "-E"],
    "read_at": ["2026-10-03T09:12:00Z", "2026-10-03T11:12:00+02:00", "2026-10-03T09:12Z",
                "2026-10-03T09:12:00.123456-05:00", "2026-10-03", "2026-10-03T09:12:00",
                "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                "2026-02-30T00:00:00Z", "2026-10-03T09:12:00+24:00", "2026-10-03 09:12:00Z"],
    "read_type": ["actual", "estimated", "Actual", "override"],
    "register": ["energy_import_kwh", "energy_import_kwh_t1", "volume_m3", "demand_kw", "kWh",
                 "1_8_0", "a" * 65],
    "value": ["0", "0.000", "10412.5", "-1", "1e3", "-0", "01"],
    "multiplier": ["1", "40", "0", "-1", "1.50", "1e3"],
}


def field_text(column: str):
    return st.one_of(st.sampled_from(PLAUSIBLE[column]), st.text(max_size=80),
                     st.sampled_from(PLAUSIBLE[column]).map(lambda s: f" {s}\t"))


def unparse(row: HistoryRow) -> dict[str, str]:
    """The CSV fields that say what ``row`` says."""
    fields = {}
    for column in COLUMNS[Kind.HISTORY]:
        value = getattr(row, column)
        fields[column] = (value.isoformat() if isinstance(value, datetime)
                          else format_decimal(value) if isinstance(value, Decimal)
                          else str(value))
    return fields


@settings(max_examples=500, deadline=None)
@given(st.fixed_dictionaries({column: field_text(column) for column in COLUMNS[Kind.HISTORY]}))
@example({"cycle_id": "C", "meter_serial": "M", "read_at": "0001-01-01T00:00:00+01:00",
          "read_type": "actual", "register": "r", "value": "1", "multiplier": "1"})
def test_any_text_in_any_field_gives_a_history_row_or_located_problems(fields):
    result = parse_history(fields, file="f.csv", line=7)
    if isinstance(result, list):
        assert result
        for problem in result:
            assert (problem.file, problem.line) == ("f.csv", 7)
            assert problem.column in COLUMNS[Kind.HISTORY]
            assert problem.reason
        return
    assert isinstance(result, HistoryRow)
    assert result.read_at.tzinfo is UTC
    assert result.read_at.microsecond % 1000 == 0
    assert result.read_type in ("actual", "estimated")
    assert REGISTER_RE.fullmatch(result.register)
    assert result.value >= 0 and result.multiplier > 0
    assert parse_history(unparse(result), file="f.csv", line=7) == result


def test_the_rows_of_a_billed_read_become_one_read_with_its_registers():
    rows = [parse_history(dict(zip(COLUMNS[Kind.HISTORY], line.split(","), strict=True)),
                          file="f", line=number)
            for number, line in enumerate(HISTORY.splitlines()[1:], start=2)]

    reads = history_reads(rows)

    assert [(r.cycle_id, r.meter_serial, r.line, r.lines) for r in reads] == [
        ("C2026-09", "E-1", 2, (2, 3)), ("C2026-10", "E-1", 4, (4, 5)),
        ("C2026-09", "W-1", 6, (6,))]
    assert reads[0].registers == {"demand_kw": Decimal("4.125"),
                                  "energy_import_kwh": Decimal("10250.5")}


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def meterhub(tmp_path, cli_env):
    """Run ``meterhub --db <a fresh, upgraded SQLite store> …``; returns the completed process."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"

    def run(*args):
        return subprocess.run([script("meterhub"), "--db", url, *map(str, args)], cwd=tmp_path,
                              env=cli_env, capture_output=True, text=True, timeout=60,
                              check=False)

    assert run("db", "upgrade").returncode == 0
    for kind, text in MASTER_DATA.items():
        assert run("import", kind, write(tmp_path, text, f"{kind}.csv")).returncode == 0
    return run


def test_cli_imports_history_and_prints_what_changed(meterhub, tmp_path):
    path = write(tmp_path, HISTORY)

    dry = meterhub("import", "history", path, "--dry-run")
    result = meterhub("import", "history", path)
    again = meterhub("import", "history", path)

    assert dry.returncode == 0, dry.stderr
    assert "history.csv: dry run, nothing written" in dry.stdout
    assert result.returncode == 0, result.stderr
    assert "history.csv: imported" in result.stdout
    assert "│ billing_reads │     3 │       0 │         0 │       0 │" in result.stdout
    assert again.returncode == 0, again.stderr
    assert "already up to date, nothing written" in again.stdout
    assert "│ billing_reads │     0 │       0 │         3 │       0 │" in again.stdout


def test_cli_prints_every_history_problem_and_exits_1(meterhub, tmp_path):
    path = write(tmp_path, HISTORY + GOOD.replace("2026-09-04T07:00:00Z", "2026-09-04") + "\n")

    result = meterhub("import", "history", path)

    assert result.returncode == 1
    assert "1 problem(s); nothing was imported" in result.stdout
    assert "│    7 │ read_at │ 2026-09-04 is a date without a time" in result.stdout
    assert "Traceback" not in result.stderr
