"""Master data rows against the store: what they refer to, what they would change, then the writes.

Each ``plan_*`` function takes an open connection and a file's parsed rows,
reads what it needs, and returns a :class:`Plan`: the problems only the
store can reveal (an account that is not there, an installation that would
overlap one already recorded, a removal date that would be rewritten) and
the changes the rows would make, counted per table. Only a plan without
problems is written, by :meth:`Plan.write`, in the caller's transaction, so
a file is imported whole or not at all. A row equal to what is stored writes
nothing, not even ``updated_at``: importing the same file twice is a no-op.

Installations are history. A ``meter_installations`` row is never deleted,
and its only change is getting the ``removed_on`` it did not have; periods
are half-open, ``[installed_on, removed_on)``, so a meter exchanged on day D
(old removed on D, new installed on D) never overlaps its successor.

Billed-read history (``billing_reads`` with origin ``cis``) is added or
updated per (cycle, meter) and never deleted by being absent; a billing read
meterhub's own edits made is never replaced by one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import combinations
from pathlib import PurePath
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Row,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)

from hub.imports.problems import ROW, Problem
from hub.imports.rows import (
    AccountRow,
    CycleRow,
    HistoryRead,
    HistoryRow,
    Kind,
    MeterRow,
    RouteStopRow,
    history_reads,
)
from hub.store.tables import (
    accounts,
    billing_reads,
    cycles,
    meter_installations,
    meters,
    route_stops,
    routes,
)
from protocols.scalars import format_decimal

_CHUNK = 500
"""Keys per ``IN (…)`` query: far below SQLite's and PostgreSQL's bound-parameter limits."""

Step = Callable[[Connection, datetime], None]


@dataclass(frozen=True)
class Counts:
    """What an import did (or would do) to one table's rows."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0

    @property
    def writes(self) -> int:
        return self.added + self.changed + self.removed


@dataclass
class Plan:
    """A file's effect on the store, computed before anything is written."""

    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, Counts] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def write(self, conn: Connection, now: datetime | None = None) -> None:
        """Make the changes, ``now`` being every touched row's ``updated_at`` (aware UTC)."""
        if self.problems:
            raise ValueError("a plan with problems is never written")
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError(f"naive datetime {now!r}: updated_at is aware UTC")
        for step in self.steps:
            step(conn, now)


# --- accounts and cycles: one row per key, updated in place ---------------------------------


def plan_accounts(conn: Connection, rows: Sequence[AccountRow], *, file: str) -> Plan:
    """Add new accounts and update changed ones; accounts missing from the file stay."""
    _lock(conn, accounts)
    plan = Plan()
    _upsert(plan, conn, accounts, accounts.c.id, {
        row.account_id: {"name": row.name, "service_address": row.service_address,
                         "status": row.status, "rate_code": row.rate_code,
                         "rate_options": list(row.rate_options)}
        for row in rows})
    return plan


def plan_cycles(conn: Connection, rows: Sequence[CycleRow], *, file: str) -> Plan:
    """Add new cycles and update changed ones; cycles missing from the file stay."""
    _lock(conn, cycles)
    plan = Plan()
    _upsert(plan, conn, cycles, cycles.c.id, {
        row.cycle_id: {"read_window_start": row.read_window_start,
                       "read_window_end": row.read_window_end,
                       "scheduled_read_date": row.scheduled_read_date,
                       "bill_period_start": row.bill_period_start,
                       "bill_period_end": row.bill_period_end}
        for row in rows})
    return plan


def _upsert(plan: Plan, conn: Connection, table: Table, key: Column[Any],
            wanted: Mapping[str, Mapping[str, Any]]) -> None:
    """Plan inserts of new keys and updates of keys whose values differ from the stored row."""
    stored = {row._mapping[key.name]: row for row in _rows_where_in(conn, table, key, wanted)}
    new = [{key.name: k, **values} for k, values in wanted.items() if k not in stored]
    changed = [{key.name: k, **values} for k, values in wanted.items()
               if k in stored and _differs(stored[k], values)]
    plan.counts[table.name] = Counts(added=len(new), changed=len(changed),
                                     unchanged=len(wanted) - len(new) - len(changed))
    plan.steps.append(lambda conn, now: _insert(conn, table, new, now))
    plan.steps.append(lambda conn, now: _update(conn, table, (key,), changed, now))


# --- meters and their installations -----------------------------------------------------------


@dataclass(frozen=True)
class _Installation:
    """One period of a meter on an account, from the file (``line``) or the store (``None``)."""

    meter: str
    account: str
    installed_on: date
    removed_on: date | None
    line: int | None

    def overlaps(self, other: _Installation) -> bool:
        """Whether the half-open periods share a day; an open end is "still installed"."""
        return ((other.removed_on is None or self.installed_on < other.removed_on)
                and (self.removed_on is None or other.installed_on < self.removed_on))

    def describe(self) -> str:
        until = f"to {self.removed_on}" if self.removed_on else "(still installed)"
        where = f"line {self.line}" if self.line is not None else "in the store"
        return (f"meter {self.meter} on account {self.account} from {self.installed_on} "
                f"{until} ({where})")


def plan_meters(conn: Connection, rows: Sequence[MeterRow], *, file: str) -> Plan:
    """Meters updated in place; installations added, or given their removal date.

    Refused: an account not in the store; a removal date that differs from
    the one recorded (history is not rewritten); a meter installed in two
    places at once; an account with two meters of one service at once.
    """
    _lock(conn, meters, meter_installations)
    plan = Plan()
    plan.problems += _unknown(conn, rows, file, "account_id", accounts.c.id, "accounts")
    described = {row.meter_serial: row for row in reversed(rows)}  # first row of each meter
    _upsert(plan, conn, meters, meters.c.serial,
            {serial: row.attributes for serial, row in described.items()})

    history = _history(conn, described, {row.account_id for row in rows})
    new, removals, unchanged = [], [], 0
    for row in rows:
        stored = history.get(row.installation)
        mine = _Installation(*row.installation, row.removed_on, row.line)
        if stored is None:
            new.append(mine)
        elif stored.removed_on == row.removed_on:
            unchanged += 1
        elif stored.removed_on is None:
            removals.append(mine)
        else:
            plan.problems.append(Problem(
                file, row.line, "removed_on",
                f"installation of meter {row.meter_serial} on account {row.account_id} from "
                f"{row.installed_on} was removed on {stored.removed_on}; the file says "
                f"{row.removed_on or 'it is still installed'}, and a recorded removal is "
                "never changed"))
            continue
        history[row.installation] = mine
    plan.problems += _overlaps(file, history.values(), _services(conn, history.values(), rows),
                               {row.meter_serial: row.line for row in described.values()})
    plan.counts[meter_installations.name] = Counts(added=len(new), changed=len(removals),
                                                   unchanged=unchanged)
    plan.steps.append(lambda conn, now: _insert(conn, meter_installations, [
        {"meter": i.meter, "account": i.account, "installed_on": i.installed_on,
         "removed_on": i.removed_on} for i in new], None))
    plan.steps.append(lambda conn, now: _update(
        conn, meter_installations,
        (meter_installations.c.meter, meter_installations.c.account,
         meter_installations.c.installed_on),
        [{"meter": i.meter, "account": i.account, "installed_on": i.installed_on,
          "removed_on": i.removed_on} for i in removals], None))
    return plan


def _history(conn: Connection, described: Collection[str], file_accounts: Collection[str]
             ) -> dict[tuple[str, str, date], _Installation]:
    """Stored installations the file can collide with: of its meters, and on their accounts."""
    c = meter_installations.c
    found: dict[tuple[str, str, date], Row[Any]] = {}
    for row in _rows_where_in(conn, meter_installations, c.meter, described):
        found[(row.meter, row.account, row.installed_on)] = row
    touched_accounts = set(file_accounts) | {row.account for row in found.values()}
    for row in _rows_where_in(conn, meter_installations, c.account, touched_accounts):
        found[(row.meter, row.account, row.installed_on)] = row
    return {key: _Installation(row.meter, row.account, row.installed_on, row.removed_on, None)
            for key, row in found.items()}


def _services(conn: Connection, history: Iterable[_Installation], rows: Sequence[MeterRow]
              ) -> dict[str, tuple[str, str | None]]:
    """Each meter's service after the import, and before it (``None`` for a new meter)."""
    before = dict(_pairs_where_in(conn, meters.c.serial, meters.c.service,
                                  {i.meter for i in history}))
    after = {serial: (service, service) for serial, service in before.items()}
    for row in rows:
        after[row.meter_serial] = (row.service, before.get(row.meter_serial))
    return after


def _overlaps(file: str, history: Iterable[_Installation],
              services: Mapping[str, tuple[str, str | None]],
              meter_lines: Mapping[str, int]) -> list[Problem]:
    """A meter in two places at once, or an account with two meters of one service at once."""
    by_meter: dict[str, list[_Installation]] = defaultdict(list)
    by_account: dict[tuple[str, str], list[_Installation]] = defaultdict(list)
    for inst in history:
        by_meter[inst.meter].append(inst)
        by_account[(inst.account, services[inst.meter][0])].append(inst)
    problems = []
    for group in by_meter.values():
        for a, b in _overlapping(group):
            if a.line is not None or b.line is not None:
                problems.append(_overlap_problem(file, a, b,
                                                 f"meter {a.meter} is installed twice at once"))
    for (account, service), group in by_account.items():
        what = f"account {account} would have two {service} meters at once"
        for a, b in _overlapping(group):
            if a.line is not None or b.line is not None:
                problems.append(_overlap_problem(file, a, b, what))
                continue
            # both recorded before: the file's doing only if it changed a meter's service
            moved = [i.meter for i in (a, b) if services[i.meter][0] != services[i.meter][1]]
            if moved:
                problems.append(Problem(file, meter_lines[moved[0]], "service",
                                        f"{what}: {a.describe()} overlaps {b.describe()}"))
    return problems


def _overlapping(group: list[_Installation]) -> Iterator[tuple[_Installation, _Installation]]:
    """Pairs of distinct overlapping installations, in start order (groups are a few rows)."""
    ordered = sorted(group, key=lambda i: (i.installed_on, i.line or 0, i.meter, i.account))
    for a, b in combinations(ordered, 2):
        if a.overlaps(b):
            yield a, b


def _overlap_problem(file: str, a: _Installation, b: _Installation, what: str) -> Problem:
    """Reported at the file's later line, naming both installations."""
    here, other = (a, b) if (a.line or 0) > (b.line or 0) else (b, a)
    assert here.line is not None
    return Problem(file, here.line, "installed_on",
                   f"{what}: {here.describe()} overlaps {other.describe()}")


# --- routes and their stops ---------------------------------------------------------------------


def plan_routes(conn: Connection, rows: Sequence[RouteStopRow], *, file: str) -> Plan:
    """Each route in the file gets exactly the file's stops; other routes stay as they are.

    A route counts as changed, and its ``updated_at`` moves, when its cycle or
    any of its stops changes.
    """
    _lock(conn, routes, route_stops)
    plan = Plan()
    plan.problems += _unknown(conn, rows, file, "cycle_id", cycles.c.id, "cycles")
    plan.problems += _unknown(conn, rows, file, "meter_serial", meters.c.serial, "meters")

    wanted: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    cycle_of: dict[str, str] = {}
    for row in rows:
        cycle_of[row.route_id] = row.cycle_id
        wanted[row.route_id][row.sequence] = {
            "meter": row.meter_serial, "location_notes": row.location_notes,
            "latitude": _text(row.latitude), "longitude": _text(row.longitude),
            "hazards": row.hazards}
    stored_cycle = dict(_pairs_where_in(conn, routes.c.id, routes.c.cycle, cycle_of))
    stored_stops: dict[str, dict[int, Row[Any]]] = defaultdict(dict)
    for stop in _rows_where_in(conn, route_stops, route_stops.c.route, cycle_of):
        stored_stops[stop.route][stop.sequence] = stop

    stops = Counts()
    new_routes, changed_routes, unchanged_routes = [], [], 0
    drop: list[dict[str, Any]] = []
    put: list[dict[str, Any]] = []
    for route, cycle in cycle_of.items():
        had, want = stored_stops[route], wanted[route]
        added = [seq for seq in want if seq not in had]
        removed = [seq for seq in had if seq not in want]
        changed = [seq for seq in want if seq in had and _differs(had[seq], want[seq])]
        stops = Counts(stops.added + len(added), stops.changed + len(changed),
                       stops.unchanged + len(want) - len(added) - len(changed),
                       stops.removed + len(removed))
        # delete before insert: a meter moving between sequences must not meet itself
        drop += [{"route": route, "sequence": seq} for seq in removed + changed]
        put += [{"route": route, "sequence": seq, **want[seq]} for seq in changed + added]
        if route not in stored_cycle:
            new_routes.append({"id": route, "cycle": cycle})
        elif stored_cycle[route] != cycle or added or removed or changed:
            changed_routes.append({"id": route, "cycle": cycle})
        else:
            unchanged_routes += 1

    plan.counts[routes.name] = Counts(len(new_routes), len(changed_routes), unchanged_routes)
    plan.counts[route_stops.name] = stops
    plan.steps.append(lambda conn, now: _insert(conn, routes, new_routes, now))
    plan.steps.append(lambda conn, now: _update(conn, routes, (routes.c.id,), changed_routes,
                                                now))
    plan.steps.append(lambda conn, now: _delete(conn, route_stops,
                                                (route_stops.c.route, route_stops.c.sequence),
                                                drop))
    plan.steps.append(lambda conn, now: _insert(conn, route_stops, put, None))
    return plan


# --- billed-read history ----------------------------------------------------------------------

ORIGIN_CIS = "cis"
"""``billing_reads.origin`` of a read imported from the CIS (meterhub's edits write ``edits``)."""


def plan_history(conn: Connection, rows: Sequence[HistoryRow], *, file: str) -> Plan:
    """Add the file's billed reads and update changed ones; reads not in the file stay.

    A billed read is the file's rows for one (cycle, meter). Its account is
    the one the meter's installation served on the read's (UTC) day. Refused:
    a cycle or meter not in the store, and a billed read that meterhub's own
    edits made for that cycle and meter.
    """
    _lock(conn, billing_reads)
    plan = Plan()
    plan.problems += _unknown(conn, rows, file, "cycle_id", cycles.c.id, "cycles")
    plan.problems += _unknown(conn, rows, file, "meter_serial", meters.c.serial, "meters")

    reads = history_reads(rows)
    stored = _billing_reads(conn, reads)
    installed: dict[str, list[Row[Any]]] = defaultdict(list)
    for inst in _rows_where_in(conn, meter_installations, meter_installations.c.meter,
                               {read.meter_serial for read in reads}):
        installed[inst.meter].append(inst)
    detail = f"imported from {PurePath(file).name}"
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for read in reads:
        had = stored.get((read.cycle_id, read.meter_serial))
        if had is not None and had.origin != ORIGIN_CIS:
            plan.problems += [Problem(file, line, ROW,
                                      f"cycle {read.cycle_id} meter {read.meter_serial} was "
                                      "billed by meterhub's edits; a history import cannot "
                                      "replace it") for line in read.lines]
            continue
        values = {"account": _account_on(installed[read.meter_serial], read.read_at.date()),
                  "kind": read.read_type, "read_at": read.read_at,
                  "registers": {name: format_decimal(value)
                                for name, value in read.registers.items()},
                  "multiplier": format_decimal(read.multiplier)}
        key = {"cycle": read.cycle_id, "meter": read.meter_serial}
        if had is None:
            new.append({**key, **values, "origin": ORIGIN_CIS, "source": None, "flags": [],
                        "meter_offset_s": None, "collector": None, "seq": None,
                        "method": None, "reason": None, "audit_id": None, "detail": detail})
        elif _differs(had, values):
            changed.append({**key, **values, "detail": detail})
    plan.counts[billing_reads.name] = Counts(added=len(new), changed=len(changed),
                                             unchanged=len(reads) - len(new) - len(changed))
    plan.steps.append(lambda conn, now: _insert(conn, billing_reads, new, now))
    plan.steps.append(lambda conn, now: _update(
        conn, billing_reads, (billing_reads.c.cycle, billing_reads.c.meter), changed, now))
    return plan


def _billing_reads(conn: Connection, reads: Sequence[HistoryRead]
                   ) -> dict[tuple[str, str], Row[Any]]:
    """The stored billing reads of the file's (cycle, meter) pairs, by chunks of both."""
    c = billing_reads.c
    wanted = {(read.cycle_id, read.meter_serial) for read in reads}
    found = {}
    for cycle_chunk in _chunks(cycle for cycle, _ in wanted):
        for meter_chunk in _chunks(meter for _, meter in wanted):
            for row in conn.execute(
                    select(c.cycle, c.meter, c.origin, c.account, c.kind, c.read_at,
                           c.registers, c.multiplier)
                    .where(c.meter.in_(meter_chunk), c.cycle.in_(cycle_chunk))):
                if (row.cycle, row.meter) in wanted:
                    found[(row.cycle, row.meter)] = row
    return found


def _account_on(installations: Iterable[Row[Any]], day: date) -> str | None:
    """The account a meter served on ``day``, or ``None``.

    The installation covering ``day`` (``[installed_on, removed_on)``), else
    the one removed on ``day``: a meter's final read is taken the day it
    comes off.
    """
    removed_that_day = None
    for inst in installations:
        if inst.installed_on <= day and (inst.removed_on is None or day < inst.removed_on):
            return str(inst.account)
        if inst.removed_on == day:
            removed_that_day = str(inst.account)
    return removed_that_day


PLANNERS: Mapping[Kind, Callable[..., Plan]] = {
    Kind.ACCOUNTS: plan_accounts,
    Kind.METERS: plan_meters,
    Kind.CYCLES: plan_cycles,
    Kind.ROUTES: plan_routes,
    Kind.HISTORY: plan_history,
}
"""The planner of each kind of file: ``planner(conn, rows, file=...)``."""


# --- reading and writing --------------------------------------------------------------------


def _unknown(conn: Connection, rows: Sequence[Any], file: str, column: str,
             key: Column[Any], kind: str) -> list[Problem]:
    """A problem for each row whose ``column`` names nothing in ``key``'s table yet.

    ``kind`` is the file that would bring it (``cycles``, ``meters``, ``accounts``).
    """
    named = {getattr(row, column) for row in rows}
    known = set(_values_where_in(conn, key, named))
    what = column.removesuffix("_id").removesuffix("_serial")
    return [Problem(file, row.line, column,
                    f"{what} {getattr(row, column)} is not in the store; import it with the "
                    f"{kind} file first")
            for row in rows if getattr(row, column) not in known]


def _lock(conn: Connection, *tables: Table) -> None:
    """On PostgreSQL, hold off another import of the same tables until this one ends.

    The plan is computed from what is read, then written: two imports
    interleaving there could each pass the checks the other breaks. Readers
    are not blocked. SQLite needs nothing: its transactions begin immediate,
    so only one writer is ever between read and write.
    """
    if conn.dialect.name == "postgresql":
        names = ", ".join(table.name for table in tables)
        conn.execute(text(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE"))


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start:start + _CHUNK]


def _rows_where_in(conn: Connection, table: Table, column: Column[Any], values: Iterable[Any]
                   ) -> Iterator[Row[Any]]:
    for chunk in _chunks(values):
        yield from conn.execute(select(table).where(column.in_(chunk)))


def _values_where_in(conn: Connection, column: Column[Any], values: Iterable[Any]
                     ) -> Iterator[Any]:
    for chunk in _chunks(values):
        yield from conn.execute(select(column).where(column.in_(chunk))).scalars()


def _pairs_where_in(conn: Connection, key: Column[Any], value: Column[Any],
                    keys: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    for chunk in _chunks(keys):
        for row in conn.execute(select(key, value).where(key.in_(chunk))):
            yield row[0], row[1]


def _differs(stored: Row[Any], values: Mapping[str, Any]) -> bool:
    return any(stored._mapping[name] != value for name, value in values.items())


def _text(value: Any) -> str | None:
    return None if value is None else format_decimal(value)


def _insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
            now: datetime | None) -> None:
    """Insert ``rows`` in one statement; ``now`` is their ``updated_at`` (tables with one)."""
    if rows:
        stamp = {"updated_at": now} if now is not None else {}
        conn.execute(insert(table), [{**row, **stamp} for row in rows])


def _update(conn: Connection, table: Table, key: Sequence[Column[Any]],
            rows: Sequence[Mapping[str, Any]], now: datetime | None) -> None:
    """Update each row found by its ``key`` columns; ``now`` is its ``updated_at``.

    One statement for all rows (an executemany), so every row names the
    same columns: the first row's.
    """
    if not rows:
        return
    key_names = {column.name for column in key}
    names = [name for name in rows[0] if name not in key_names]
    if now is not None:
        names.append("updated_at")
    # bound names differ from column names: SQLAlchemy reserves those for its own SET parameters
    statement = (update(table)
                 .where(and_(*(column == bindparam(f"key_{column.name}", type_=column.type)
                               for column in key)))
                 .values({name: bindparam(f"new_{name}", type_=table.c[name].type)
                          for name in names}))
    stamp = {} if now is None else {"updated_at": now}
    conn.execute(statement, [{f"{'key' if name in key_names else 'new'}_{name}": value
                              for name, value in {**row, **stamp}.items()} for row in rows])


def _delete(conn: Connection, table: Table, key: Sequence[Column[Any]],
            rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        conn.execute(delete(table).where(_matches(key, row)))


def _matches(key: Sequence[Column[Any]], row: Mapping[str, Any]) -> Any:
    return and_(*(column == row[column.name] for column in key))
