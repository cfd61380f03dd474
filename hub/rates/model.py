"""A rate table as plain frozen data: its versions by effective date and their components.

:mod:`hub.rates.schema` builds these from YAML and checks them; :mod:`hub.billing`
prices a bill period with them. Nothing here does I/O or arithmetic on money
beyond picking a version and a season: a rate is data, the bill is a pure
function over it.

Shapes, as the YAML says them (``hub/rates/schema.py`` documents the file):

- a :class:`RateTable` is one rate code (``RES-E1``) with its
  :class:`RateVersion` s in date order; a version is in force from its
  ``effective`` date to the day before the next one (or to its own ``ends``);
- a version's *components* are priced in dependency order and shown in file
  order; each has an ``id`` that names its bill lines;
- *blocks* (:class:`Blocks`) are how a quantity is priced: tiers (blocks of
  use, each with an upper bound ``up_to`` except the last) either all year or
  per :class:`Season` (each month of the year in exactly one season);
- *options* (:class:`RateOption`) are special rate options an account carries
  (``senior``, ``low_income``): a discount on some components, and/or other
  blocks replacing a component's.

Example::

    rate = load_rate("hub/rates/tables/RES-W1.yaml")
    for version, start, end in rate.versions_in(date(2026, 10, 1), date(2026, 10, 31)):
        print(version.effective, start, end, [c.id for c in version.components])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar, Literal

RATE_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A rate code, as accounts carry it (``hub.imports.rows`` checks the same shape)."""
OPTION_RE = re.compile(r"[a-z0-9_]{1,64}")
"""A rate option name, as accounts carry it (``senior``, ``low_income``)."""
ID_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
"""A component id, a season or a TOU period name: it becomes part of bill line codes."""
SERVICES = ("electric", "water", "gas")
MONTHS = tuple(range(1, 13))
ONE_DAY = timedelta(days=1)
EMPTY: Mapping[str, Any] = MappingProxyType({})

RoundingMode = Literal["half_up", "half_even", "down", "up"]
RoundingPer = Literal["line", "bill"]


@dataclass(frozen=True, slots=True)
class Rounding:
    """How a version rounds money: to ``places`` decimals, by ``mode``, ``per`` line or bill.

    Modes: ``half_up`` (0.005 → 0.01, the default, as bills are usually
    rounded), ``half_even`` (banker's: 0.005 → 0.00, 0.015 → 0.02), ``down``
    (toward zero: truncate) and ``up`` (away from zero). Negative amounts
    (discounts) round symmetrically: −0.005 half-up is −0.01.

    ``per="line"`` (the default) rounds every bill line's amount; the bill's
    total is the sum of the rounded lines, so the printed lines always add up.
    ``per="bill"`` leaves every line's amount unrounded (kept to 6 decimals
    more than ``places``, half-even: exact for products of use and price) and
    rounds only the total; a last line ``rounding`` carries the difference
    between the rounded total and the sum of the lines, so that the total
    still equals the sum of the lines.
    """

    places: int = 2
    mode: RoundingMode = "half_up"
    per: RoundingPer = "line"


@dataclass(frozen=True, slots=True)
class Tier:
    """One block: use up to ``up_to`` (cumulative, in the rate's unit) at ``price`` per unit.

    ``up_to`` is ``None`` on the last tier only (no upper bound). It is the
    URDB ``energyratestructure`` tier's ``max``.
    """

    up_to: Decimal | None
    price: Decimal


@dataclass(frozen=True, slots=True)
class Season:
    """Blocks that apply in some months of the year (``months`` are 1–12)."""

    name: str
    months: tuple[int, ...]
    tiers: tuple[Tier, ...]


@dataclass(frozen=True, slots=True)
class Blocks:
    """How a quantity is priced: ``tiers`` all year, or per season (exactly one of the two).

    A single price is a single tier without ``up_to``. Seasons cover every
    month exactly once (the schema checks it).
    """

    tiers: tuple[Tier, ...] = ()
    seasons: tuple[Season, ...] = ()

    @property
    def seasonal(self) -> bool:
        return bool(self.seasons)

    def season_of(self, month: int) -> Season | None:
        """The season of ``month`` (``None`` when the blocks are not seasonal)."""
        for season in self.seasons:
            if month in season.months:
                return season
        return None

    def tiers_in(self, month: int) -> tuple[Tier, ...]:
        """The tiers that price use in ``month``."""
        season = self.season_of(month)
        return self.tiers if season is None else season.tiers


# --- components ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fixed:
    """A fixed customer charge: ``amount`` per bill or per day, or an amount by meter size.

    ``per="bill"``: the charge of a whole bill period (prorated by days only
    when a rate change falls inside the period). ``per="day"``: ``amount`` ×
    the days of the period. ``by_meter_size`` (water: ``5/8in``, ``1in`` …)
    replaces ``amount``: the account's meter size picks it.
    """

    type: ClassVar[str] = "fixed"
    id: str
    description: str
    per: Literal["bill", "day"]
    amount: Decimal | None = None
    by_meter_size: Mapping[str, Decimal] = field(default_factory=lambda: EMPTY)

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Tiered:
    """Use of one register priced by blocks: inclining, declining, flat or seasonal.

    ``scale`` says what the tier bounds are per: ``bill`` (as written, for a
    whole bill period) or ``days`` (per ``standard_days`` days: the bounds are
    scaled by the bill's days ÷ ``standard_days``, so a 33-day bill gets 10 %
    more of each block than a 30-day one). ``direction`` is ``inclining``
    (prices never fall from tier to tier), ``declining`` (never rise) or
    ``None`` (not checked).
    """

    type: ClassVar[str] = "tiered"
    id: str
    description: str
    register: str
    blocks: Blocks
    scale: Literal["bill", "days"] = "bill"
    standard_days: int | None = None
    direction: Literal["inclining", "declining"] | None = None

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class TouPeriod:
    """A time-of-use period: the register the meter accumulates it in, and its blocks."""

    name: str
    register: str
    blocks: Blocks


@dataclass(frozen=True, slots=True)
class TimeOfUse:
    """Energy by time-of-use period.

    From the meter's TOU registers (each period names its register), or —
    when the bill carries interval data — from the intervals, each mapped to
    a period through ``weekday``/``weekend``: 12 rows (January first) of 24
    period names (hour 0 first), in the account's time zone; Saturday and
    Sunday are weekend days. These are URDB's ``energyweekdayschedule`` and
    ``energyweekendschedule`` with period names instead of indices.

    ``fallback`` prices the total ``register`` when neither intervals nor all
    the periods' registers are there (a meter without TOU registers); without
    a fallback such a bill is an error.
    """

    type: ClassVar[str] = "tou"
    id: str
    description: str
    periods: tuple[TouPeriod, ...]
    weekday: tuple[tuple[str, ...], ...]
    weekend: tuple[tuple[str, ...], ...]
    register: str
    fallback: Blocks | None = None

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ()

    def period(self, name: str) -> TouPeriod:
        for period in self.periods:
            if period.name == name:
                return period
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Ratchet:
    """Bill at least ``percent`` % of the highest demand of the last ``months`` bills."""

    percent: Decimal
    months: int


@dataclass(frozen=True, slots=True)
class Demand:
    """A charge on the period's maximum demand (kW), priced by blocks of kW.

    With a ``ratchet`` the billed demand is the larger of this period's and
    ``ratchet.percent`` % of the highest of the last ``ratchet.months``
    entries of the account's demand history (URDB ``lookbackpercent`` and
    ``lookbackrange``).
    """

    type: ClassVar[str] = "demand"
    id: str
    description: str
    blocks: Blocks
    ratchet: Ratchet | None = None

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class MinimumBill:
    """The least the components ``of`` may come to (per bill, or per day × days).

    When their lines (discounts on them included) total less, a line makes
    up the difference. URDB ``mincharge``/``minchargeunits``.
    """

    type: ClassVar[str] = "minimum"
    id: str
    description: str
    amount: Decimal
    per: Literal["bill", "day"]
    of: tuple[str, ...]

    @property
    def depends_on(self) -> tuple[str, ...]:
        return self.of


@dataclass(frozen=True, slots=True)
class Percentage:
    """A fee or tax: ``percent`` % of the lines of the components ``of``.

    ``of`` may name other percentages (a tax on top of a fee) and minimum
    bills, never itself through a chain.
    """

    type: ClassVar[str] = "percentage"
    id: str
    description: str
    percent: Decimal
    of: tuple[str, ...]

    @property
    def depends_on(self) -> tuple[str, ...]:
        return self.of


@dataclass(frozen=True, slots=True)
class Wastewater:
    """Wastewater, priced on the lesser of the water used and the account's winter average.

    ``winter_months`` are the months whose use makes the average (the caller
    computes the average, per bill period, from those months' bills). A bill
    period's days inside the winter months are billed on actual use (the
    average is being measured then); the other days on the lesser of the
    actual use and the average, each split by days. ``default_average`` is the
    winter average of an account without winter history (a new account).
    """

    type: ClassVar[str] = "wastewater"
    id: str
    description: str
    register: str
    blocks: Blocks
    winter_months: tuple[int, ...]
    default_average: Decimal

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ()


Component = Fixed | Tiered | TimeOfUse | Demand | MinimumBill | Percentage | Wastewater
COMPONENT_TYPES: Mapping[str, type] = MappingProxyType({
    kind.type: kind
    for kind in (Fixed, Tiered, TimeOfUse, Demand, MinimumBill, Percentage, Wastewater)})
"""Each component class by its YAML ``type``."""


# --- options ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discount:
    """``percent`` % off the components ``of``, or a fixed ``amount`` off one component.

    A fixed discount is per bill (prorated by days across a rate change) or
    per day; it never takes more than the component's own lines come to.
    """

    of: tuple[str, ...]
    percent: Decimal | None = None
    amount: Decimal | None = None
    per: Literal["bill", "day"] = "bill"


@dataclass(frozen=True, slots=True)
class RateOption:
    """A special rate option: a discount, and/or blocks replacing some components' blocks."""

    name: str
    description: str
    discount: Discount | None = None
    replace_tiers: Mapping[str, Blocks] = field(default_factory=lambda: EMPTY)
    """Component id → the blocks that price it instead (tiered and wastewater components)."""


# --- versions and the table ------------------------------------------------------------------


class NoVersionError(LookupError):
    """No version of a rate is in force on a day."""


@dataclass(frozen=True, slots=True)
class RateVersion:
    """The rate as in force from ``effective`` (to ``ends``, or to the next version)."""

    effective: date
    components: tuple[Component, ...]
    options: Mapping[str, RateOption] = field(default_factory=lambda: EMPTY)
    rounding: Rounding = Rounding()
    ends: date | None = None
    """The last day in force, when the rate stops before a next version (or has none)."""

    def component(self, component_id: str) -> Component:
        """The component ``component_id`` (``KeyError`` when the version has none)."""
        for component in self.components:
            if component.id == component_id:
                return component
        raise KeyError(component_id)

    @property
    def label(self) -> str:
        """``v2026-10-15``: how bill lines and errors name the version."""
        return f"v{self.effective.isoformat()}"


@dataclass(frozen=True, slots=True)
class RateTable:
    """One rate code and its versions, oldest first.

    ``register`` is the service's total register (``energy_import_kwh``,
    ``volume_m3``) that components price unless they name another; ``unit``
    the unit of its use; ``currency`` that of every amount. ``cache`` is
    where :mod:`hub.billing` keeps what it derives from the table per bill
    period, so it lives and dies with the table (not part of equality).
    """

    code: str
    service: str
    unit: str
    description: str
    versions: tuple[RateVersion, ...]
    register: str
    currency: str = "USD"
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def spans(self) -> list[tuple[RateVersion, date, date | None]]:
        """Each version with the first and last day it is in force (``None``: no end)."""
        spans: list[tuple[RateVersion, date, date | None]] = []
        for index, version in enumerate(self.versions):
            last = version.ends
            if index + 1 < len(self.versions):
                following = self.versions[index + 1].effective - ONE_DAY
                last = following if last is None else min(last, following)
            spans.append((version, version.effective, last))
        return spans

    def version_on(self, day: date) -> RateVersion:
        """The version in force on ``day``; :class:`NoVersionError` when none is."""
        for version, first, last in self.spans():
            if first <= day and (last is None or day <= last):
                return version
        raise NoVersionError(self._none_on(day))

    def versions_in(self, start: date, end: date) -> list[tuple[RateVersion, date, date]]:
        """The versions in force in ``[start, end]`` with the days each covers (inclusive).

        Days no version covers (before the first, or in a gap after a
        version's ``ends``) are in no part: the parts' days then add up to
        less than the period's.

        Example: a change on 2026-10-15 inside October gives
        ``[(v1, 2026-10-01, 2026-10-14), (v2, 2026-10-15, 2026-10-31)]``.
        """
        if end < start:
            raise ValueError(f"period ends ({end}) before it starts ({start})")
        parts = []
        for version, first, last in self.spans():
            low = max(first, start)
            high = end if last is None else min(last, end)
            if low <= high:
                parts.append((version, low, high))
        return parts

    def _none_on(self, day: date) -> str:
        if not self.versions:
            return f"rate {self.code} has no versions"
        return (f"rate {self.code} has no version in force on {day.isoformat()} "
                f"(versions: {', '.join(v.effective.isoformat() for v in self.versions)})")
