"""The plain data the meter edits work on: a read, a meter's facts, a finding.

Everything in :mod:`hub.edits` is a pure function over these frozen values,
so a rule can be read, tested and benchmarked without a database; the store
layer (:mod:`hub.edits.store`) loads them and saves what comes out.

A meter's *history* is its billing reads of earlier cycles (actual, estimated
or overridden), oldest first: what the utility billed, not every read the
meter ever sent, because the edits ask "is this bill's read plausible against
earlier bills?".

Example::

    read = MeterRead(read_at, {"energy_import_kwh": Decimal("10412.5")}, source="ami",
                     collector="gw-0001", seq=812)
    facts = MeterFacts("SDM630-00001", "electric", dials=6, multiplier=Decimal(1), unit="kWh")
    findings = run_rules(EditInput(cycle, facts, read, history), default_rule_set())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from hub.reconcile import Cycle

ACTIVE = "active"


class Severity(StrEnum):
    """How much a finding matters: only ``blocking`` holds the account out of billing."""

    INFO = "info"
    WARNING = "warning"
    BLOCKING = "blocking"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.BLOCKING: 2}


class ReadKind(StrEnum):
    """Where a billing read's value came from (DOMAIN.md's read types, as billed)."""

    ACTUAL = "actual"
    """Taken from the meter and signed by the collector that took it."""
    ESTIMATED = "estimated"
    """Computed by :mod:`hub.edits.estimate`; names its method."""
    OVERRIDE = "override"
    """Entered at the hub by an operator, with an audited reason."""


class EstimationMethod(StrEnum):
    INTERPOLATION = "interpolation"
    """Linear between the last good read and a later good read."""
    SAME_PERIOD_LAST_YEAR = "same_period_last_year"
    """Last year's daily use over the same calendar period, times this period's days."""
    AVERAGE_DAILY_USAGE = "average_daily_usage"
    """Average daily use of the last cycles, times the days since the last read."""


@dataclass(frozen=True, slots=True)
class MeterRead:
    """A meter's register values at one instant, as a bill would use them.

    ``registers`` holds cumulative registers (energy, volume) and any demand
    or TOU registers the read carried, name → value in the meter's unit,
    before the multiplier. ``collector``/``seq`` are the signed provenance of
    an actual read; ``audit_id``/``reason`` that of an override; ``method``
    that of an estimate. ``multiplier`` is the one in force when the read was
    billed (history entries); ``None`` on the read under edit.
    """

    read_at: datetime
    registers: Mapping[str, Decimal]
    kind: ReadKind = ReadKind.ACTUAL
    source: str | None = None
    flags: tuple[str, ...] = ()
    meter_offset_s: Decimal | None = None
    collector: str | None = None
    seq: int | None = None
    method: EstimationMethod | None = None
    reason: str | None = None
    audit_id: int | None = None
    multiplier: Decimal | None = None
    cycle: str | None = None

    @property
    def signed(self) -> bool:
        """Carries a collector's signature chain (collector and seq)."""
        return self.collector is not None and self.seq is not None


@dataclass(frozen=True, slots=True)
class MeterFacts:
    """A meter's master data as the cycle sees it: the meter and the account it serves."""

    serial: str
    service: str
    dials: int
    multiplier: Decimal
    unit: str
    size: str | None = None
    account: str | None = None
    account_status: str | None = None
    installed_on: date | None = None
    removed_on: date | None = None

    @property
    def active(self) -> bool:
        return self.account_status == ACTIVE


@dataclass(frozen=True, slots=True)
class EditInput:
    """One meter's billing read of ``cycle``, its history (oldest first) and its facts."""

    cycle: Cycle
    meter: MeterFacts
    read: MeterRead
    history: tuple[MeterRead, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found: its name, how much it matters, and a sentence an operator reads."""

    rule: str
    severity: Severity
    message: str
    register: str | None = None

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.BLOCKING


@dataclass(frozen=True, slots=True)
class EstimationSettings:
    """The rule set's word on estimation (see the ``estimation`` block of a rule set)."""

    methods: tuple[EstimationMethod, ...] = (
        EstimationMethod.INTERPOLATION, EstimationMethod.SAME_PERIOD_LAST_YEAR,
        EstimationMethod.AVERAGE_DAILY_USAGE)
    """Tried in this order; the first that has what it needs makes the estimate."""
    history_cycles: int = 6
    """How many of the latest history cycles average daily usage is taken over."""
    min_history_cycles: int = 1
    """Fewer complete cycles than this and average daily usage refuses to estimate."""
    max_consecutive: int = 2
    """Estimated reads allowed in a row; one more needs an actual read."""
    auto_estimate_missing: bool = True
    """Estimate a missing meter when edits run (else it waits for an operator)."""
    last_year_tolerance_days: int = 20
    """How far last year's reads may sit from the same calendar dates and still count."""
    max_wrap_share: Decimal = Decimal("0.1")
    """A drop counts as a rollover only if the wrapped use is at most this share of 10^dials."""
    extra: Mapping[str, object] = field(default_factory=dict)
