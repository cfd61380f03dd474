"""Reconciliation: for every meter on a cycle's routes, which read bills it, or why none does.

The hub operator's morning question — *which meters of this cycle still lack
a good read, and why?* — answered as a pure function over plain data, so the
rules can be read and tested without a database (:mod:`hub.reconcile_store`
loads the data and calls it).

Each meter on each route of the cycle is classified:

- ``inactive`` — no installation of it serves an active account on any day of
  the read window: nothing to read (a read that came anyway is still chosen,
  so the meter edits can flag consumption on an inactive or vacant account);
- ``read`` — a verified read taken inside the window: the billing read;
- ``trouble`` — no usable read, but a technician reported trouble (no access,
  dog, damaged meter …) inside the window;
- ``missing`` — nothing: it goes on a re-read route;
- ``estimated`` — set later by the meter edits, never here.

The billing read is chosen by source first — AMI, then a handheld probe, then
a handheld manual read — and then by nearness to the scheduled read date
(midnight at the start of that day, in the utility's time zone); the rule
that decided is named in the result, so an operator can see why.

Example::

    result = reconcile(cycle, stops, installations, reads)
    for meter in result.meters:
        print(meter.route, meter.sequence, meter.meter, meter.status, meter.rule)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from protocols.read import Source
from protocols.scalars import format_instant
from protocols.trouble import trouble_codes

SOURCE_RANK = {Source.AMI: 0, Source.HANDHELD_PROBE: 1, Source.HANDHELD_MANUAL: 2}
ACTIVE_ACCOUNT = "active"


class Status(StrEnum):
    READ = "read"
    MISSING = "missing"
    TROUBLE = "trouble"
    ESTIMATED = "estimated"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Cycle:
    id: str
    window_start: date
    window_end: date
    scheduled: date
    zone: tzinfo = UTC

    def window(self) -> tuple[datetime, datetime]:
        """The window as instants: from the first day's midnight to the day after the last."""
        start = datetime.combine(self.window_start, time(), self.zone)
        end = datetime.combine(self.window_end + timedelta(days=1), time(), self.zone)
        return start, end

    @property
    def target(self) -> datetime:
        return datetime.combine(self.scheduled, time(), self.zone)


@dataclass(frozen=True)
class Stop:
    route: str
    sequence: int
    meter: str


@dataclass(frozen=True)
class Installation:
    meter: str
    account: str
    account_status: str
    installed_on: date
    removed_on: date | None

    def overlaps(self, first: date, last: date) -> bool:
        """Installed on some day of [first, last], whatever its account's status."""
        return self.installed_on <= last and (self.removed_on or date.max) >= first

    def serves(self, first: date, last: date) -> bool:
        """Installed on some day of [first, last] and its account is active."""
        return self.account_status == ACTIVE_ACCOUNT and self.overlaps(first, last)


@dataclass(frozen=True)
class CandidateRead:
    """A verified stored read of a meter: enough to choose and cite it."""

    collector: str
    seq: int
    meter: str
    read_at: datetime
    source: Source
    flags: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    meter_offset_s: str | None = None

    @property
    def trouble(self) -> tuple[str, ...]:
        return trouble_codes(self.flags)


@dataclass(frozen=True)
class MeterResult:
    route: str
    sequence: int
    meter: str
    account: str | None
    status: Status
    rule: str
    billing_read: CandidateRead | None = None
    trouble: tuple[str, ...] = ()
    reads_in_window: int = 0

    def as_row(self) -> dict[str, Any]:
        read = self.billing_read
        return {
            "route": self.route, "sequence": self.sequence, "meter": self.meter,
            "account": self.account or "", "status": self.status.value, "rule": self.rule,
            "read_at": format_instant(read.read_at) if read else "",
            "source": read.source.value if read else "",
            "collector": read.collector if read else "", "seq": read.seq if read else "",
            "trouble": ";".join(self.trouble), "reads_in_window": self.reads_in_window,
        }


@dataclass(frozen=True)
class RouteSummary:
    route: str
    counts: Mapping[Status, int]

    @property
    def meters(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> float:
        """Share of meters needing a read that have one (inactive ones need none)."""
        needed = self.meters - self.counts.get(Status.INACTIVE, 0)
        done = self.counts.get(Status.READ, 0) + self.counts.get(Status.ESTIMATED, 0)
        return done / needed if needed else 1.0


@dataclass(frozen=True)
class Reconciliation:
    cycle: str
    meters: tuple[MeterResult, ...]

    def routes(self) -> list[RouteSummary]:
        counts: dict[str, Counter[Status]] = defaultdict(Counter)
        for result in self.meters:
            counts[result.route][result.status] += 1
        return [RouteSummary(route, dict(c)) for route, c in sorted(counts.items())]

    def with_status(self, status: Status) -> list[MeterResult]:
        return [m for m in self.meters if m.status is status]


def reconcile(
    cycle: Cycle, stops: Iterable[Stop], installations: Iterable[Installation],
    reads: Iterable[CandidateRead],
) -> Reconciliation:
    """Classify every stop's meter for ``cycle`` and choose its billing read."""
    start, end = cycle.window()
    serving: dict[str, list[Installation]] = defaultdict(list)
    installed: dict[str, list[Installation]] = defaultdict(list)
    for installation in installations:
        if installation.serves(cycle.window_start, cycle.window_end):
            serving[installation.meter].append(installation)
        if installation.overlaps(cycle.window_start, cycle.window_end):
            installed[installation.meter].append(installation)
    in_window: dict[str, list[CandidateRead]] = defaultdict(list)
    for read in reads:
        if start <= read.read_at < end:
            in_window[read.meter].append(read)
    ordered = sorted(stops, key=lambda s: (s.route, s.sequence))
    return Reconciliation(cycle.id, tuple(
        _classify(stop, serving.get(stop.meter, []), installed.get(stop.meter, []),
                  in_window.get(stop.meter, []), cycle)
        for stop in ordered
    ))


def _classify(stop: Stop, serving: Sequence[Installation], installed: Sequence[Installation],
              reads: Sequence[CandidateRead], cycle: Cycle) -> MeterResult:
    where = {"route": stop.route, "sequence": stop.sequence, "meter": stop.meter,
             "reads_in_window": len(reads)}
    usable = [r for r in reads if not r.trouble and r.values]
    if not serving:
        rule = "no installation serves an active account in the window"
        account = max(installed, key=lambda i: i.installed_on).account if installed else None
        chosen = choose_billing_read(usable, cycle.target)[0] if usable else None
        return MeterResult(account=account, status=Status.INACTIVE, rule=rule,
                           billing_read=chosen, **where)
    account = max(serving, key=lambda i: i.installed_on).account
    if usable:
        chosen, rule = choose_billing_read(usable, cycle.target)
        return MeterResult(account=account, status=Status.READ, rule=rule, billing_read=chosen,
                           **where)
    trouble = tuple(dict.fromkeys(code for r in reads for code in r.trouble))
    if trouble:
        return MeterResult(account=account, status=Status.TROUBLE, trouble=trouble,
                           rule="only trouble reports in the window", **where)
    return MeterResult(account=account, status=Status.MISSING,
                       rule="no read in the window", **where)


def choose_billing_read(reads: Sequence[CandidateRead],
                        target: datetime) -> tuple[CandidateRead, str]:
    """The best source's read nearest ``target`` (earlier wins a tie), and the rule's name."""
    def nearness(read: CandidateRead) -> tuple[timedelta, datetime]:
        return abs(read.read_at - target), read.read_at

    best_rank = min(SOURCE_RANK[r.source] for r in reads)
    chosen = min((r for r in reads if SOURCE_RANK[r.source] == best_rank), key=nearness)
    nearest = min(reads, key=nearness)
    if len(reads) == 1:
        return chosen, "the only read in the window"
    if nearest.source != chosen.source:
        return chosen, (f"{chosen.source.value} over {nearest.source.value}, "
                        "nearest the scheduled date")
    return chosen, "nearest the scheduled read date"
