"""URDB import: an OpenEI Utility Rate Database electric tariff as a meterhub rate file.

The URDB (https://openei.org/wiki/Utility_Rate_Database) publishes US electric
tariffs as JSON (API version 7: ``https://api.openei.org/utility_rates?version=7
&detail=full&getpage=<label>`` returns ``{"items": [tariff]}``). :func:`convert`
turns one tariff into the text of a rate file (``hub/rates/schema.py``
documents the format), :func:`import_urdb` reads a JSON file, converts, checks
the result with :func:`~hub.rates.schema.parse_rate` and writes
``<out_dir>/<CODE>.yaml``. Everything the importer cannot reproduce exactly is
refused with :class:`UnsupportedTariff`, which lists *every* such feature of the
tariff, each with the URDB field and why; nothing is approximated.

Example::

    tariff = read_tariff("sce-tou-d.json")             # {"items": [one tariff]} or the tariff
    text = convert(tariff, code="RES-TOU", source="sce-tou-d.json")
    path = import_urdb("sce-tou-d.json", code="RES-TOU", out_dir=Path("rates"))

Mapping (URDB field → rate file):

- ``label``, ``utility``, ``name``, ``sector``, ``servicetype``, ``description``,
  ``energycomments``, ``demandcomments`` → the header comments, with the URL
  ``https://apps.openei.org/USURDB/rate/view/<label>``; ``description:
  "<utility> — <name>"``.
- ``startdate`` (epoch seconds) → ``effective``: its UTC date (URDB stamps
  local midnight, the same date in UTC for every US zone); 2000-01-01 when
  absent. ``enddate`` → ``ends``: its UTC date, taken as the last day in force.
- ``fixedchargefirstmeter`` + ``fixedchargeunits`` → component ``customer``
  (``fixed``): ``$/month`` → ``per: bill``, ``$/day`` → ``per: day`` (units
  absent: ``$/month``, the URDB default).
- ``energyratestructure`` whose schedules give every month one period (all
  day, weekdays and weekends) → component ``energy`` (``tiered``, on the
  total register): the period's tiers, or one season per period, named
  ``period_<N>``, over the months that use it.
- ``energyratestructure`` with periods by hour → component ``energy``
  (``tou``): one TOU period per URDB period, ``period_<N>`` for index N − 1
  (``energytoulabels`` become comments beside them);
  ``energyweekdayschedule``/``energyweekendschedule`` → ``weekday``/``weekend``,
  the same 12 × 24 cells, index N − 1 written ``period_<N>``.
- tier ``max`` → ``up_to`` (a last-tier ``max`` of 1e30 or more, URDB's "no
  limit", is dropped); tier ``rate`` + ``adj`` → ``price``, their exact sum
  (adjustments are charges per kWh, riders and fuel costs, like the rate);
  tier ``unit`` ``kWh`` (or absent) → ``scale: bill`` (bounds per bill, as
  URDB's are per month), ``kWh daily`` → ``scale: days, standard_days: 1``.
- ``flatdemandstructure`` + ``flatdemandmonths`` (``flatdemandunit`` kW) →
  component ``demand``: tiers by kW, seasonal (``period_<N>``) when months
  use different periods; left out when every price is 0 (it would ask every
  account for a kW reading). ``lookbackpercent`` (a fraction) +
  ``lookbackrange`` (months) → its ``ratchet: {percent, months}``.
- ``mincharge`` + ``minchargeunits`` → component ``minimum`` over all the
  other components: ``$/month`` → ``per: bill``, ``$/day`` → ``per: day``.

Every number is the decimal written in the JSON: :func:`read_tariff` parses
with ``parse_float=Decimal`` (``0.1`` stays ``0.1``), prices are exact sums, and
a binary float handed to :func:`convert` is refused rather than rounded.

Refused (:class:`UnsupportedTariff`; all of a tariff's reasons at once):

- ``demandratestructure``: time-of-use demand charges;
- ``coincidentratestructure``: coincident (system-peak) demand charges;
- tiers whose ``unit`` is ``kWh/kW`` or ``kWh/kW daily`` (bounds that depend on
  the month's demand) or anything but ``kWh``/``kWh daily``; ``kWh`` and
  ``kWh daily`` bounds mixed in one charge;
- tiers inside a time-of-use tariff: URDB counts a tier's kWh over the whole
  month across all periods (SAM insists every period has the same bounds),
  while a TOU period here counts its own use, so the bills would differ;
- ``sell`` rates (net metering, export credits);
- a last tier with a real ``max`` (use above it has no price);
- a price (``rate + adj``) or charge below zero (credits);
- ``fixedchargeunits`` / ``minchargeunits`` ``$/year`` (annual charges) or any
  unit but ``$/month``/``$/day``; ``fixedchargeeaaddl`` (a charge per
  additional meter);
- ``flatdemandunit`` other than kW (kVA, hp);
- ``lookbackmonths`` naming only some months (a ratchet over part of the
  year), a ``lookbackpercent`` without ``lookbackrange`` or without a flat
  demand charge to apply to;
- ``fueladjustmentsmonthly`` (per-month adders), ``demandreactivepowercharge``;
- ``country`` other than USA (the rate file's currency is USD).

Not imported but not refused, written as comments for the analyst (see
:func:`notes`): the free-text ``energyattrs``/``fixedattrs``/``demandattrs``,
``demandwindow``, ``dgrules``, applicability limits (``peakkwcapacitymin`` …),
periods no month uses. Holidays: URDB has no holiday dimension and neither has
the rate file; a holiday is billed as the weekday or weekend day it is.

Time-of-use without registers. A TOU period here names the meter register it
accumulates in; a URDB period is a price, not a register, and a meter's
tariff registers (1.8.1, 1.8.2) follow the meter's own switching program, which
need not be the tariff's. So by default period ``period_<N>`` names the
register ``energy_import_kwh_period_<N>``, which no meter reads, and there is no
``fallback`` (URDB gives no all-period price, and an average would be
invented): such a rate is billed from interval data through the schedules,
and a bill without intervals is a :class:`~hub.billing.BillingError` naming the
period registers. When the meter's TOU registers do follow the tariff's
schedule, ``period_registers={1: "energy_import_kwh_t1", …}`` (CLI:
``--register 1=energy_import_kwh_t1``, every period or none) names them.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import (
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from pathlib import Path
from typing import Any

from edge_agent.files import write_atomic
from hub.data_files import DataFileError, read_text
from hub.rates.model import MONTHS, RATE_CODE_RE
from hub.rates.schema import RateError, parse_rate
from protocols.read import REGISTER_RE

__all__ = ["UnsupportedTariff", "UrdbError", "convert", "import_urdb", "notes", "parse_tariff",
           "read_tariff", "view_url"]

VIEW_URL = "https://apps.openei.org/USURDB/rate/view/{label}"
DEFAULT_EFFECTIVE = date(2000, 1, 1)
"""The ``effective`` date of a tariff without ``startdate``."""
NO_LIMIT = Decimal("1E+30")
"""A last-tier ``max`` at or above this is URDB's "no limit" (SAM writes 1e38)."""
MAX_FILE_BYTES = 50_000_000
"""A tariff is tens of kilobytes; an API answer with many tariffs a few megabytes."""
MAX_EXPONENT = 30
"""Numbers beyond 10^±30 are not prices, bounds or charges (and would print huge)."""
HOURS = 24
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
REGISTER = "energy_import_kwh"
DESCRIPTION_MAX = 200
COMMENT_WIDTH = 96
COMMENT_MAX = 2000
EXACT = Context(prec=1000, traps=[Inexact, Rounded, InvalidOperation, Overflow])
"""Sums and percentages of JSON decimals, exact or refused."""
_UNSAFE = re.compile(
    r"(?:[^\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029\ufeff])+")
"""What YAML cannot print in a line (controls, surrogates, line separators): a space instead."""


class UrdbError(DataFileError):
    """A URDB tariff that cannot be read or converted.

    ``file`` is the JSON file (or the source name given to :func:`convert`),
    ``field`` the URDB field, as a path (``energyratestructure[1][0].rate``),
    or in brackets what else is wrong: ``(file)`` unreadable, ``(syntax)``
    broken JSON, ``(root)`` not an object, ``(code)`` the rate code,
    ``(registers)`` the period registers, ``(tariff)`` several fields
    (:class:`UnsupportedTariff`), ``(conversion)`` a converted rate the schema
    refuses (a bug here); ``why`` is what is wrong, said so a person can act.
    """

    @property
    def field(self) -> str:
        """The URDB field at fault: this error's ``key``, in URDB's words."""
        return self.key


class UnsupportedTariff(UrdbError):
    """A tariff using features the rate file cannot express: ``reasons`` lists every one.

    Each reason is ``(field, why)``, e.g. ``("demandratestructure", "time-of-use
    demand charges are not supported")``.
    """

    def __init__(self, file: str, reasons: Sequence[tuple[str, str]]) -> None:
        self.reasons = tuple(reasons)
        lines = "\n".join(f"  {where}: {why}" for where, why in self.reasons)
        super().__init__(file, "(tariff)",
                         f"{len(self.reasons)} unsupported feature(s):\n{lines}")


def view_url(label: str) -> str:
    """The tariff's page on apps.openei.org."""
    return VIEW_URL.format(label=label)


# --- reading ---------------------------------------------------------------------------------


def read_tariff(path: str | Path, *, label: str | None = None) -> dict[str, Any]:
    """The tariff in the JSON file at ``path`` (see :func:`parse_tariff`)."""
    name = str(path)
    text = read_text(path, error=UrdbError, what="a URDB tariff file",
                     max_bytes=MAX_FILE_BYTES, encoding="utf-8-sig")
    return parse_tariff(text, name, label=label)


def parse_tariff(text: str, source: str, *, label: str | None = None) -> dict[str, Any]:
    """One tariff from JSON ``text``: a tariff object, or an API answer ``{"items": […]}``.

    An answer must hold exactly one tariff unless ``label`` picks one. Numbers
    with a fraction or exponent become exact ``Decimal`` s; a key written twice,
    ``NaN`` and ``Infinity`` are errors.
    """
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise UrdbError(source, "(syntax)",
                        f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except _JsonValueError as exc:
        raise UrdbError(source, "(syntax)", str(exc)) from None
    except RecursionError:
        raise UrdbError(source, "(syntax)", "nested too deeply") from None
    if not isinstance(data, dict):
        raise UrdbError(source, "(root)", f"a URDB tariff or API answer is a JSON object, "
                                          f"not {_kind(data)}")
    if "items" not in data:
        if label is not None and data.get("label") != label:
            raise UrdbError(source, "label", f"the tariff is labelled {data.get('label')!r}, "
                                             f"not {label!r}")
        return data
    items = data["items"]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UrdbError(source, "items", "must be a list of tariff objects")
    if not items:
        raise UrdbError(source, "items", "no tariffs in the answer")
    labels = [str(item.get("label")) for item in items]
    if label is not None:
        chosen = [item for item in items if item.get("label") == label]
        if not chosen:
            raise UrdbError(source, "items", f"no tariff labelled {label!r}; the labels are "
                                             f"{', '.join(labels)}")
        if len(chosen) > 1:
            raise UrdbError(source, "items", f"{len(chosen)} tariffs labelled {label!r}")
        return chosen[0]
    if len(items) > 1:
        raise UrdbError(source, "items", f"{len(items)} tariffs; choose one with --label "
                                         f"(labels: {', '.join(labels)})")
    return items[0]


class _JsonValueError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _JsonValueError(f"{name} is not a number a tariff can hold")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonValueError(f"key {key!r} written twice in one object")
        result[key] = value
    return result


# --- the tariff, parsed ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tier:
    up_to: Decimal | None
    price: Decimal
    daily: bool
    """The bound is per day (URDB ``kWh daily``); false for a tier without a bound."""


@dataclass(slots=True)
class _Parsed:
    """What the conversion needs, checked; ``unsupported`` and ``notes`` as found."""

    utility: str
    name: str
    label: str | None
    effective: date
    ends: date | None
    energy: list[list[_Tier]] = field(default_factory=list)
    weekday: list[list[int]] = field(default_factory=list)
    weekend: list[list[int]] = field(default_factory=list)
    fixed: tuple[Decimal, str] | None = None
    minimum: tuple[Decimal, str] | None = None
    demand: list[list[_Tier]] = field(default_factory=list)
    demand_months: list[int] = field(default_factory=list)
    ratchet: tuple[Decimal, int] | None = None
    labels: dict[int, str] = field(default_factory=dict)
    header: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unsupported: dict[str, list[Any]] = field(default_factory=dict)

    def refuse(self, where: str, why: str, kind: str | None = None) -> None:
        """Record an unsupported feature; the same ``kind`` again only counts another place."""
        entry = self.unsupported.setdefault(kind or f"{where}\0{why}", [where, why, 0])
        entry[2] += 1

    def reasons(self) -> list[tuple[str, str]]:
        found = []
        for where, why, count in self.unsupported.values():
            more = f" (and {count - 1} more)" if count > 1 else ""
            found.append((f"{where}{more}", why))
        return found

    @property
    def seasonal(self) -> bool:
        """Every month has one energy period, all day, weekdays and weekends."""
        return all(len(set(self.weekday[m]) | set(self.weekend[m])) == 1 for m in range(12))


class _Reader:
    """Typed access to the tariff's fields, with errors naming the field."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def error(self, where: str, why: str) -> UrdbError:
        return UrdbError(self.source, where, why)

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "required: the tariff's " + {
                    "name": "name (e.g. \"Residential Service\")",
                    "utility": "utility (e.g. \"Pacific Gas & Electric Co\")"}.get(key, key))
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be text, not {_kind(value)}")
        cleaned = _clean(value)
        if required and not cleaned:
            raise self.error(key, "must not be empty")
        return cleaned or None

    def number(self, value: Any, where: str, *, huge: bool = False) -> Decimal:
        if isinstance(value, bool) or value is None:
            raise self.error(where, f"must be a number, not {_kind(value)}")
        if isinstance(value, float):
            raise self.error(where, f"{value!r} is a binary float; read the JSON with "
                                    "parse_float=Decimal (read_tariff does) so prices stay exact")
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, Decimal):
            number = value
        else:
            raise self.error(where, f"must be a number, not {_kind(value)}")
        if not number.is_finite():
            raise self.error(where, f"{value} is not a finite number")
        if number and not huge and not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
            raise self.error(where, f"{value} is out of range for a tariff")
        return number

    def optional_number(self, key: str) -> Decimal | None:
        value = self.data.get(key)
        return None if value is None else self.number(value, key)

    def integer(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(where, f"must be a whole number, not {_kind(value)}")
        return value

    def day(self, key: str) -> date | None:
        value = self.data.get(key)
        if value is None:
            return None
        seconds = self.integer(value, key)
        try:
            return datetime.fromtimestamp(seconds, UTC).date()
        except (OverflowError, OSError, ValueError):
            raise self.error(key, f"{seconds} is not a date (seconds since 1970)") from None

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(where, f"must be a list, not {_kind(value)}")
        return value


def _parse(data: Mapping[str, Any], source: str) -> _Parsed:
    if not isinstance(data, Mapping):
        raise UrdbError(source, "(root)", f"a tariff is a JSON object, not {_kind(data)}")
    r = _Reader(data, source)
    name = r.text("name", required=True)
    utility = r.text("utility", required=True)
    label = r.text("label")
    assert name is not None and utility is not None
    start = r.day("startdate")
    end = r.day("enddate")
    effective = start or DEFAULT_EFFECTIVE
    if end is not None and end < effective:
        raise r.error("enddate", f"{end} is before the tariff starts ({effective})")
    parsed = _Parsed(utility, name, label, effective, end)
    _header(parsed, r, start)
    _country(parsed, r)
    _energy(parsed, r)
    _fixed(parsed, r)
    _minimum(parsed, r)
    _demand(parsed, r)
    _refused_fields(parsed, r)
    _notes(parsed, r)
    return parsed


def _header(parsed: _Parsed, r: _Reader, start: date | None) -> None:
    rows = [("Utility", parsed.utility), ("Name", parsed.name)]
    if parsed.label:
        rows += [("Label", parsed.label), ("URL", view_url(parsed.label))]
    else:
        rows.append(("Label", "none (the tariff has no URDB label)"))
    for key, title in (("sector", "Sector"), ("servicetype", "Service type")):
        value = r.text(key)
        if value:
            rows.append((title, value))
    if start is None:
        rows.append(("Effective", f"{DEFAULT_EFFECTIVE} (the tariff has no startdate; the "
                                  "importer's default)"))
    else:
        rows.append(("Effective", f"{start} (startdate {r.data['startdate']}, its UTC date)"))
    if parsed.ends is not None:
        rows.append(("Ends", f"{parsed.ends} (enddate {r.data['enddate']}, its UTC date, taken "
                             "as the last day in force)"))
    for key, title in (("description", "Description"), ("energycomments", "Energy comments"),
                       ("demandcomments", "Demand comments")):
        value = r.text(key)
        if value:
            rows.append((title, value))
    parsed.header = rows


def _country(parsed: _Parsed, r: _Reader) -> None:
    country = r.text("country")
    if country is not None and country != "USA":
        parsed.refuse("country", f"{country!r}: only US tariffs (in USD) are supported")


def _energy(parsed: _Parsed, r: _Reader) -> None:
    key = "energyratestructure"
    if key not in r.data or r.data[key] is None:
        raise r.error(key, "required: the energy charges, a list of periods each a list of "
                           "tiers {max, unit, rate, adj}")
    periods = r.array(r.data[key], key)
    if not periods:
        raise r.error(key, "no periods: a tariff here has energy charges")
    parsed.energy = [_tiers(parsed, r, raw, f"{key}[{index}]", energy=True)
                     for index, raw in enumerate(periods)]
    count = len(parsed.energy)
    parsed.weekday = _schedule(r, "energyweekdayschedule", count)
    parsed.weekend = _schedule(r, "energyweekendschedule", count)
    raw_labels = r.data.get("energytoulabels")
    if isinstance(raw_labels, list):
        parsed.labels = {index: _clean(text) for index, text in enumerate(raw_labels)
                         if isinstance(text, str) and _clean(text) and index < count}
    daily = {tier.daily for period in _used_periods(parsed) for tier in period
             if tier.up_to is not None}  # a bound's unit; a tier without one has none
    if len(daily) > 1:
        parsed.refuse(key, "'kWh' and 'kWh daily' tier bounds mixed in one tariff are not "
                           "supported (one charge has one scale)")
    if not parsed.seasonal:
        for index, period in enumerate(parsed.energy):
            if len(period) > 1:
                parsed.refuse(f"{key}[{index}]", f"{len(period)} tiers in a time-of-use "
                              "tariff: URDB counts tier use over the whole month across all "
                              "periods, a TOU period here counts its own use; tiers within "
                              "time-of-use periods are not supported")


def _used_periods(parsed: _Parsed) -> list[list[_Tier]]:
    used = {index for rows in (parsed.weekday, parsed.weekend) for row in rows for index in row}
    return [period for index, period in enumerate(parsed.energy) if index in used]


def _tiers(parsed: _Parsed, r: _Reader, raw: Any, where: str, *,
           energy: bool) -> list[_Tier]:
    """A URDB period's tiers, checked: bounds increasing, a last tier without a real max."""
    tiers = r.array(raw, where)
    if not tiers:
        raise r.error(where, "a period with no tiers")
    built: list[_Tier] = []
    previous: Decimal | None = None
    for index, tier in enumerate(tiers):
        here = f"{where}[{index}]"
        if not isinstance(tier, dict):
            raise r.error(here, f"a tier is an object {{max, unit, rate, adj}}, not {_kind(tier)}")
        up_to = _bound(parsed, r, tier, here, last=index == len(tiers) - 1)
        if previous is not None and up_to is not None and up_to <= previous:
            raise r.error(f"{here}.max", f"{_plain(up_to)} is not above the previous tier's "
                                         f"{_plain(previous)}: tiers increase")
        price = _price(parsed, r, tier, here)
        daily = False
        if energy:
            daily = _energy_unit(parsed, r, tier, here, bounded=up_to is not None) and (
                up_to is not None)
            if tier.get("sell") is not None and r.number(tier["sell"], f"{here}.sell"):
                parsed.refuse(f"{here}.sell", "sell rates (net metering, export credits) are "
                                              "not supported", kind="sell")
        elif tier.get("unit") not in (None, "kW"):
            parsed.refuse(f"{here}.unit", f"demand tiers in {tier['unit']!r} are not supported "
                                          "(demand here is kW)", kind="demand unit")
        built.append(_Tier(up_to, price, daily))
        previous = up_to if up_to is not None else previous
    return built


def _bound(parsed: _Parsed, r: _Reader, tier: Mapping[str, Any], here: str, *,
           last: bool) -> Decimal | None:
    """The tier's ``max`` as ``up_to``: ``None`` for the last tier without a real limit."""
    if tier.get("max") is None:
        if not last:
            raise r.error(f"{here}.max", "required: every tier but the last ends somewhere")
        return None
    up_to = r.number(tier["max"], f"{here}.max", huge=True)
    if up_to <= 0:
        raise r.error(f"{here}.max", f"{up_to} is not a tier bound (above 0)")
    if up_to >= NO_LIMIT:
        if not last:
            raise r.error(f"{here}.max", f"{up_to} ends a tier that is not the last")
        return None
    if up_to.adjusted() < -MAX_EXPONENT:
        raise r.error(f"{here}.max", f"{up_to} is out of range for a tier bound")
    if last:
        parsed.refuse(f"{here}.max", f"the last tier ends at {_plain(up_to)}: use above it "
                                     "has no price in the tariff")
    return up_to


def _price(parsed: _Parsed, r: _Reader, tier: Mapping[str, Any], here: str) -> Decimal:
    """The tier's ``rate + adj``, exactly (a negative one is refused)."""
    if tier.get("rate") is None and tier.get("adj") is None:
        raise r.error(f"{here}.rate", "required: the tier's price (rate, and adj if any)")
    rate = Decimal(0) if tier.get("rate") is None else r.number(tier["rate"], f"{here}.rate")
    adj = Decimal(0) if tier.get("adj") is None else r.number(tier["adj"], f"{here}.adj")
    price = _exact(r, lambda: rate + adj, f"{here}.rate")
    if price < 0:
        parsed.refuse(f"{here}.rate", f"rate + adj is {_plain(price)}: credits (negative "
                                      "prices) are not supported")
    return price


def _energy_unit(parsed: _Parsed, r: _Reader, tier: Mapping[str, Any], where: str, *,
                 bounded: bool) -> bool:
    """Whether the tier's bound is per day; other units are refused."""
    unit = tier.get("unit")
    if unit is None or unit == "kWh":
        return False
    if unit == "kWh daily":
        return True
    if not isinstance(unit, str):
        raise r.error(f"{where}.unit", f"must be text such as 'kWh', not {_kind(unit)}")
    if unit in ("kWh/kW", "kWh/kW daily"):
        why = f"{unit!r} tiers (bounds per kW of the month's demand) are not supported"
    else:
        why = f"{unit!r} is not a tier unit this importer knows (kWh, kWh daily)"
    if bounded:  # the unit is the bound's: a tier without one prices all use above
        parsed.refuse(f"{where}.unit", why, kind=f"unit {unit}")
    return False


def _schedule(r: _Reader, key: str, periods: int) -> list[list[int]]:
    raw = r.data.get(key)
    if raw is None:
        if periods == 1:
            return [[0] * HOURS for _ in MONTHS]
        raise r.error(key, f"required: 12 rows (January first) of 24 period indices; the "
                           f"tariff has {periods} periods")
    rows = r.array(raw, key)
    if len(rows) != 12:
        raise r.error(key, f"{len(rows)} rows; a schedule has one per month (12, January "
                           "first)")
    built = []
    for month, row in enumerate(rows):
        cells = r.array(row, f"{key}[{month}]")
        if len(cells) != HOURS:
            raise r.error(f"{key}[{month}]", f"{len(cells)} hours; a row has 24 (hour 0 to 23)")
        checked = []
        for hour, cell in enumerate(cells):
            index = r.integer(cell, f"{key}[{month}][{hour}]")
            if not 0 <= index < periods:
                raise r.error(f"{key}[{month}][{hour}]",
                              f"period index {index}, but energyratestructure has {periods} "
                              f"period(s) (0 to {periods - 1})")
            checked.append(index)
        built.append(checked)
    return built


def _charge(parsed: _Parsed, r: _Reader, key: str, units_key: str) -> tuple[Decimal, str] | None:
    amount = r.optional_number(key)
    if amount is None or amount == 0:
        return None
    if amount < 0:
        parsed.refuse(key, f"{_plain(amount)}: credits (negative charges) are not supported")
        return None
    units = r.data.get(units_key)
    if units is None or units == "$/month":
        return amount, "bill"
    if units == "$/day":
        return amount, "day"
    if units == "$/year":
        what = "annual charges" if key.startswith("fixed") else "annual minimum charges"
        parsed.refuse(units_key, f"'$/year': {what} are not supported")
    else:
        parsed.refuse(units_key, f"{units!r} is not a unit this importer knows ($/month, "
                                 "$/day)")
    return None


def _fixed(parsed: _Parsed, r: _Reader) -> None:
    parsed.fixed = _charge(parsed, r, "fixedchargefirstmeter", "fixedchargeunits")


def _minimum(parsed: _Parsed, r: _Reader) -> None:
    parsed.minimum = _charge(parsed, r, "mincharge", "minchargeunits")


def _demand(parsed: _Parsed, r: _Reader) -> None:
    key = "flatdemandstructure"
    raw = r.data.get(key)
    periods = [] if raw is None else r.array(raw, key)
    demand = [_tiers(parsed, r, period, f"{key}[{index}]", energy=False)
              for index, period in enumerate(periods)]
    months_raw = r.data.get("flatdemandmonths")
    if demand:
        if months_raw is None or months_raw == []:
            if len(demand) > 1:
                raise r.error("flatdemandmonths", f"required: the flatdemandstructure period "
                                                  f"of each month ({len(demand)} periods)")
            months = [0] * 12
        else:
            cells = r.array(months_raw, "flatdemandmonths")
            if len(cells) != 12:
                raise r.error("flatdemandmonths", f"{len(cells)} entries; one per month (12)")
            months = []
            for month, cell in enumerate(cells):
                index = r.integer(cell, f"flatdemandmonths[{month}]")
                if not 0 <= index < len(demand):
                    raise r.error(f"flatdemandmonths[{month}]",
                                  f"period index {index}, but flatdemandstructure has "
                                  f"{len(demand)} period(s)")
                months.append(index)
        unit = r.data.get("flatdemandunit")
        if unit is not None and unit != "kW":
            parsed.refuse("flatdemandunit", f"{unit!r}: demand charges in anything but kW "
                                            "are not supported")
        if any(tier.price for index in set(months) for tier in demand[index]):
            parsed.demand, parsed.demand_months = demand, months
        else:
            parsed.notes.append("flatdemandstructure: every price is 0; no demand component "
                                "(it would need a kW reading on every bill)")
    _ratchet(parsed, r)


def _ratchet(parsed: _Parsed, r: _Reader) -> None:
    fraction = r.optional_number("lookbackpercent")
    if fraction is None or fraction == 0:
        return
    if not 0 < fraction <= 1:
        raise r.error("lookbackpercent", f"{_plain(fraction)} is not a fraction above 0 and at "
                                         "most 1 (URDB writes 80 % as 0.8)")
    ok = True
    if not parsed.demand:
        parsed.refuse("lookbackpercent", "a demand ratchet without a flat demand charge to "
                                         "apply to is not supported")
        ok = False
    months_raw = r.data.get("lookbackrange")
    months = None if months_raw is None else r.integer(months_raw, "lookbackrange")
    if months is None or not 1 <= months <= 36:
        parsed.refuse("lookbackrange", "a ratchet looks back 1 to 36 months; "
                                       f"{'none given' if months is None else months} is not "
                                       "supported")
        ok = False
    flags = r.data.get("lookbackmonths")
    if flags:
        cells = r.array(flags, "lookbackmonths")
        if not all(cell is True for cell in cells) or len(cells) != 12:
            parsed.refuse("lookbackmonths", "a ratchet over only some months of the year is "
                                            "not supported")
            ok = False
    if ok:
        assert months is not None
        percent = _exact(r, lambda: fraction * 100, "lookbackpercent")
        if percent == percent.to_integral_value():
            percent = percent.quantize(Decimal(1))  # 0.8 × 100 is 80, not 80.0
        parsed.ratchet = (percent, months)


def _refused_fields(parsed: _Parsed, r: _Reader) -> None:
    if _charges(r, "demandratestructure"):
        parsed.refuse("demandratestructure", "time-of-use demand charges are not supported")
    if _charges(r, "coincidentratestructure"):
        parsed.refuse("coincidentratestructure", "coincident (system-peak) demand charges are "
                                                 "not supported")
    adjustments = r.data.get("fueladjustmentsmonthly")
    if adjustments:
        values = r.array(adjustments, "fueladjustmentsmonthly")
        if any(r.number(value, f"fueladjustmentsmonthly[{index}]")
               for index, value in enumerate(values)):
            parsed.refuse("fueladjustmentsmonthly", "monthly fuel adjustments ($/kWh by month) "
                                                    "are not supported")
    for key, why in (("demandreactivepowercharge", "reactive power (kVAR) charges are not "
                                                   "supported"),
                     ("fixedchargeeaaddl", "a fixed charge per additional meter is not "
                                           "supported")):
        value = r.optional_number(key)
        if value:
            parsed.refuse(key, why)


def _charges(r: _Reader, key: str) -> bool:
    """Whether the rate structure ``key`` has a price that is not zero."""
    raw = r.data.get(key)
    if not raw:
        return False
    for index, period in enumerate(r.array(raw, key)):
        for tier_index, tier in enumerate(r.array(period, f"{key}[{index}]")):
            if not isinstance(tier, dict):
                raise r.error(f"{key}[{index}][{tier_index}]", "a tier is an object")
            for part in ("rate", "adj"):
                if tier.get(part) is not None and r.number(
                        tier[part], f"{key}[{index}][{tier_index}].{part}"):
                    return True
    return False


_APPLICABILITY = "who may take the rate is not part of a rate file"
_NOTED = {
    "demandwindow": "the minutes demand is averaged over is the meter's setting",
    "dgrules": "how customer generation is credited; sell rates are refused when present",
    "peakkwcapacitymin": _APPLICABILITY, "peakkwcapacitymax": _APPLICABILITY,
    "peakkwhusagemin": _APPLICABILITY, "peakkwhusagemax": _APPLICABILITY,
    "voltagecategory": _APPLICABILITY, "phasewiring": _APPLICABILITY,
}
"""Fields that do not change a bill computed here, written as notes (with why)."""


def _notes(parsed: _Parsed, r: _Reader) -> None:
    for key in ("energyattrs", "fixedattrs", "demandattrs"):
        attrs = r.data.get(key)
        if isinstance(attrs, list) and attrs:
            words = []
            for attr in attrs:
                if isinstance(attr, dict):
                    words.extend(f"{_clean(str(k))}: {_clean(str(v))}" for k, v in attr.items())
            if words:
                parsed.notes.append(f"{key} (free text, not imported; check by hand): "
                                    + "; ".join(words))
    for key, why in _NOTED.items():
        value = r.data.get(key)
        if value not in (None, "", []):
            shown = _plain(value) if isinstance(value, Decimal) else _clean(str(value))
            parsed.notes.append(f"{key}: {shown} (not imported: {why})")
    if parsed.seasonal:
        used = {row[0] for row in parsed.weekday} | {row[0] for row in parsed.weekend}
        unused = [f"period_{index + 1}" for index in range(len(parsed.energy))
                  if index not in used]
        if unused:
            parsed.notes.append(f"energyratestructure: {', '.join(unused)} defined but no month "
                                "uses it; not imported")


# --- converting ------------------------------------------------------------------------------


def convert(tariff: Mapping[str, Any], *, code: str, source: str,
            period_registers: Mapping[int, str] | None = None) -> str:
    """The rate file text for URDB ``tariff``, as rate ``code``; ``source`` names it in errors.

    Deterministic: the same tariff gives the same bytes. ``period_registers``
    maps URDB periods (numbered from 1, as ``period_<N>``) to the meter's TOU
    registers; see the module doc. Raises :class:`UnsupportedTariff` listing
    every feature the rate file cannot express, :class:`UrdbError` for a
    malformed tariff.
    """
    if not isinstance(code, str) or not RATE_CODE_RE.fullmatch(code):
        raise UrdbError(source, "(code)", f"{code!r} is not a rate code such as RES-E1 "
                                          "(letters, digits, . _ -)")
    parsed = _parse(tariff, source)
    reasons = parsed.reasons()
    if reasons:
        raise UnsupportedTariff(source, reasons)
    registers = _registers(parsed, source, period_registers)
    return _render(parsed, code, source, registers)


def notes(tariff: Mapping[str, Any], *, source: str = "tariff") -> tuple[str, ...]:
    """What the tariff has that a converted rate leaves out without refusing (free-text
    attributes, applicability limits, unused periods); :func:`convert` writes them as comments."""
    return tuple(_parse(tariff, source).notes)


def _registers(parsed: _Parsed, source: str,
               given: Mapping[int, str] | None) -> dict[int, str]:
    count = len(parsed.energy)
    if not given:
        return _default_registers(count)
    if parsed.seasonal:
        raise UrdbError(source, "(registers)", "the tariff has one period per month: it "
                                               "converts to tiered energy on the total "
                                               "register, with no TOU registers to name")
    chosen: dict[int, str] = {}
    for number, register in given.items():
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= count:
            raise UrdbError(source, "(registers)", f"period {number!r}: the tariff's periods "
                                                   f"are 1 to {count}")
        if not isinstance(register, str) or not REGISTER_RE.fullmatch(register):
            raise UrdbError(source, "(registers)", f"{register!r} is not a register name such "
                                                   "as energy_import_kwh_t1")
        chosen[number - 1] = register
    if len(chosen) != count:
        missing = [str(index + 1) for index in range(count) if index not in chosen]
        raise UrdbError(source, "(registers)", f"name a register for every period or none; "
                                               f"missing: {', '.join(missing)}")
    if len(set(chosen.values())) != count or REGISTER in chosen.values():
        raise UrdbError(source, "(registers)", "each period needs its own TOU register (not "
                                               f"the total {REGISTER})")
    return chosen


def _default_registers(count: int) -> dict[int, str]:
    """URDB period index → a register no meter reads (see the module doc)."""
    return {index: f"{REGISTER}_period_{index + 1}" for index in range(count)}


def _render(parsed: _Parsed, code: str, source: str, registers: Mapping[int, str]) -> str:
    lines = _header_lines(parsed, source, registers)
    description = f"{parsed.utility} — {parsed.name}"
    if len(description) > DESCRIPTION_MAX:
        description = description[:DESCRIPTION_MAX - 1] + "…"
    lines += [f"code: {code}", "service: electric", "unit: kWh", f"register: {REGISTER}",
              "currency: USD", f"description: {_quote(description)}", "versions:",
              f"  - effective: {parsed.effective.isoformat()}"]
    if parsed.ends is not None:
        lines.append(f"    ends: {parsed.ends.isoformat()}")
    lines.append("    components:")
    ids = []
    if parsed.fixed is not None:
        amount, per = parsed.fixed
        ids.append("customer")
        lines += ["      - id: customer", "        type: fixed",
                  "        description: Fixed charge", f"        per: {per}",
                  f"        amount: {_plain(amount)}"]
    ids.append("energy")
    lines += _tiered_energy(parsed) if parsed.seasonal else _tou_energy(parsed, registers)
    if parsed.demand:
        ids.append("demand")
        lines += ["      - id: demand", "        type: demand", "        description: Demand"]
        lines += _blocks(parsed.demand, parsed.demand_months, "        ")
        if parsed.ratchet is not None:
            percent, months = parsed.ratchet
            lines.append(f"        ratchet: {{percent: {_plain(percent)}, months: {months}}}")
    if parsed.minimum is not None:
        amount, per = parsed.minimum
        lines += ["      - id: minimum", "        type: minimum",
                  "        description: Minimum charge", f"        amount: {_plain(amount)}",
                  f"        per: {per}", f"        of: [{', '.join(ids)}]"]
    return "\n".join(lines) + "\n"


def _header_lines(parsed: _Parsed, source: str, registers: Mapping[int, str]) -> list[str]:
    """The comments a rate file starts with: where it came from, and what to know about it."""
    lines = ["# Imported from the OpenEI Utility Rate Database (URDB) by meterhub's URDB "
             "importer", f"# (hub/rates/urdb.py documents the mapping). Source: "
                         f"{_clean(source)}"]
    for title, value in parsed.header:
        lines.extend(_comment(f"{title}: {value}"))
    lines.append("# Prices are URDB rate + adj, exactly.")
    if not parsed.seasonal:
        if registers == _default_registers(len(parsed.energy)):
            how = ("URDB periods are not meter registers, so each period names a register no "
                   "meter reads and there is no fallback price: bill it from interval data (or "
                   "import again naming the meter's TOU registers).")
        else:
            how = "Its registers were named at import as the meter's TOU registers."
        lines.extend(_comment(f"Energy is time-of-use: period_N is URDB period index N-1. {how}"))
    for note in parsed.notes:
        lines.extend(_comment(f"Note: {note}"))
    return lines


def _tiered_energy(parsed: _Parsed) -> list[str]:
    months = [parsed.weekday[m][0] for m in range(12)]
    lines = ["      - id: energy", "        type: tiered", "        description: Energy"]
    used = [parsed.energy[index] for index in sorted(set(months))]
    if any(tier.daily for period in used for tier in period):
        lines += ["        scale: days", "        standard_days: 1"]
    return lines + _blocks(parsed.energy, months, "        ")


def _blocks(periods: list[list[_Tier]], months: list[int], indent: str) -> list[str]:
    """``price``/``tiers`` when every month has the same period, else one season per period."""
    used = sorted(set(months))
    if len(used) == 1:
        return [f"{indent}{_tiers_text(periods[used[0]])}"]
    lines = [f"{indent}seasons:"]
    for index in used:
        in_season = [month + 1 for month in range(12) if months[month] == index]
        lines.append(f"{indent}  - name: period_{index + 1}")
        lines.append(f"{indent}    months: [{', '.join(map(str, in_season))}]")
        lines.append(f"{indent}    {_tiers_text(periods[index])}")
    return lines


def _tiers_text(tiers: list[_Tier]) -> str:
    if len(tiers) == 1:
        return f"price: {_plain(tiers[0].price)}"
    parts = []
    for tier in tiers:
        bound = "" if tier.up_to is None else f"up_to: {_plain(tier.up_to)}, "
        parts.append(f"{{{bound}price: {_plain(tier.price)}}}")
    return f"tiers: [{', '.join(parts)}]"


def _tou_energy(parsed: _Parsed, registers: Mapping[int, str]) -> list[str]:
    lines = ["      - id: energy", "        type: tou", "        description: Energy",
             "        periods:"]
    for index, period in enumerate(parsed.energy):
        label = parsed.labels.get(index)
        note = f"  # URDB period index {index}" + (f": {label}" if label else "")
        lines.append(f"          period_{index + 1}: {{register: {registers[index]}, "
                     f"price: {_plain(period[0].price)}}}{note}")
    for key, rows in (("weekday", parsed.weekday), ("weekend", parsed.weekend)):
        lines.append(f"        {key}:")
        for month, row in enumerate(rows):
            cells = ", ".join(f"period_{index + 1}" for index in row)
            lines.append(f"          - [{cells}]  # {MONTH_NAMES[month]}")
    return lines


# --- importing -------------------------------------------------------------------------------


def import_urdb(path: str | Path, *, code: str, out_dir: str | Path, label: str | None = None,
                overwrite: bool = False,
                period_registers: Mapping[int, str] | None = None) -> Path:
    """Convert the URDB tariff in ``path`` into ``<out_dir>/<code>.yaml``; return that path.

    The converted text is validated with :func:`~hub.rates.schema.parse_rate`
    before anything is written (a conversion the schema refuses is a bug in this
    importer, raised as :class:`UrdbError` on field ``(conversion)``), then
    written atomically. An existing file is replaced only with
    ``overwrite=True`` (otherwise :class:`FileExistsError`).
    """
    source = str(path)
    tariff = read_tariff(path, label=label)
    try:  # the file's name, not where it lies, goes in the header: the same bytes anywhere
        text = convert(tariff, code=code, source=Path(path).name,
                       period_registers=period_registers)
    except UnsupportedTariff as exc:
        raise UnsupportedTariff(source, exc.reasons) from None
    except UrdbError as exc:
        raise UrdbError(source, exc.field, exc.why) from None
    target = Path(out_dir) / f"{code}.yaml"
    try:
        parse_rate(text, str(target))
    except RateError as exc:
        raise UrdbError(source, "(conversion)", f"the converted rate does not validate, a bug "
                                                f"in the importer: {exc}") from None
    write_atomic(target, text.encode("utf-8"), overwrite=overwrite)
    return target


# --- text ------------------------------------------------------------------------------------


def _exact(r: _Reader, compute: Any, where: str) -> Decimal:
    try:
        with localcontext(EXACT):
            return compute()
    except (Inexact, Rounded, InvalidOperation, Overflow):
        raise r.error(where, "too many digits to add up exactly") from None


def _plain(number: Decimal) -> str:
    """A decimal as written, without exponent: ``0.1012``, ``80.0``, ``0.000015``."""
    return format(number, "f")


def _clean(text: str) -> str:
    """One line of text: control characters and runs of whitespace become one space."""
    return " ".join(_UNSAFE.sub(" ", text).split())


def _quote(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of it)."""
    return json.dumps(_clean(text), ensure_ascii=False)


def _comment(text: str) -> list[str]:
    cleaned = _clean(text)
    if len(cleaned) > COMMENT_MAX:
        cleaned = cleaned[:COMMENT_MAX - 1] + "…"
    wrapped = textwrap.wrap(cleaned, COMMENT_WIDTH, break_long_words=True,
                            break_on_hyphens=False) or [""]
    return [f"# {wrapped[0]}"] + [f"#   {line}" for line in wrapped[1:]]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"{value!r}" if len(repr(value)) <= 40 else f"a {type(value).__name__}"
