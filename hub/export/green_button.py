"""An account's usage and bill summary as a Green Button file (NAESB REQ.21 ESPI, Atom).

Green Button is how a North American utility hands a customer (or a third
party the customer chose) their own data: an Atom feed
(``http://www.w3.org/2005/Atom``) whose entries carry ESPI resources
(``http://naesb.org/espi``), linked by ``self``/``up``/``related`` hrefs:

- ``UsagePoint`` — the service point, with ``ServiceCategory/kind``
  (0 electricity, 1 gas, 2 water);
- ``MeterReading`` — the meter's readings of one ``ReadingType``;
- ``ReadingType`` — what the numbers mean: ``accumulationBehaviour`` 4 (delta
  per interval), ``commodity``, ``currency``, ``dataQualifier`` 12 (normal),
  ``flowDirection`` 1 (forward), ``intervalLength``, ``kind`` (12 energy, 58
  volume), ``powerOfTenMultiplier``, ``timeAttribute``, ``uom`` (72 Wh, 42 m³,
  119 ft³, 128 US gal);
- ``IntervalBlock`` — one per local day: ``interval`` and its
  ``IntervalReading`` elements, each ``timePeriod`` (``duration``, ``start``)
  and ``value``;
- ``UsageSummary`` — the bill: ``billingPeriod``, ``billLastPeriod`` (in
  hundred-thousandths of the currency, as ESPI counts money), ``currency``
  (ISO 4217 numeric: 840 for USD), ``overallConsumptionLastPeriod``,
  ``statusTimeStamp``, ``commodity`` and ``readCycle``.

Child elements follow the order of the ESPI schema's sequences. Times are
seconds since 1970-01-01 UTC; readings are integers in the ``uom`` scaled by
``10**powerOfTenMultiplier``, the largest power (0, -1, -2, -3, -6, -9, -12)
at which every value is a whole number, so nothing is rounded: a value that
needs finer places is a :class:`GreenButtonError`. The output is deterministic:
ids are UUIDv5 of the account, meter and cycle, and the only time in it that is
not from the data is ``generated_at``, which the caller passes.

Example::

    xml = green_button_xml("A-1001", [IntervalUsage(start, 3600, Decimal("0.412")), ...],
                           BillSummary.from_row(row, period_start, period_end),
                           meter="SDM630-00001", service="electric", unit="kWh",
                           cycle="C2026-11", generated_at=bills_computed_at)
"""

from __future__ import annotations

import unicodedata
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from itertools import pairwise
from typing import NamedTuple

from hub.export.rows import EXACT, ExportError, ExportRow

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
ET.register_namespace("", ATOM)  # ElementTree's registry is global: Atom as the default
ET.register_namespace("espi", ESPI)  # namespace, ESPI as espi:, the way Green Button files look

DEFAULT_BASE_URL = "/espi/1_1/resource"
"""Where the ``self``/``up`` hrefs point: the ESPI REST resource root."""
COST_SCALE = 100_000
"""ESPI money is an integer count of hundred-thousandths of the currency."""
INT48 = 2**47
UINT32 = 2**32
POWERS_OF_TEN = (0, -1, -2, -3, -6, -9, -12)
"""``UnitMultiplierKind`` values tried, coarsest first, to make every reading whole."""
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/meterhub/green-button")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GreenButtonError(ExportError, ValueError):
    """Data that cannot be written as Green Button without changing it."""


@dataclass(frozen=True)
class _Unit:
    uom: int
    """ESPI ``UnitSymbolKind``."""
    factor: Decimal
    """How many of the ``uom`` one of ours is (kWh → 1000 Wh)."""
    kind: int
    """ESPI ``MeasurementKind``: 12 energy, 58 volume."""


UNITS: Mapping[str, _Unit] = {
    "kWh": _Unit(72, Decimal(1000), 12),
    "Wh": _Unit(72, Decimal(1), 12),
    "m3": _Unit(42, Decimal(1), 58),
    "ft3": _Unit(119, Decimal(1), 58),
    "ccf": _Unit(119, Decimal(100), 58),
    "gal": _Unit(128, Decimal(1), 58),
}
SERVICES: Mapping[str, tuple[int, int]] = {
    "electric": (0, 1),  # ServiceKind electricity; CommodityKind electricity secondary metered
    "gas": (1, 7),       # gas; natural gas
    "water": (2, 9),     # water; potable water
}
CURRENCIES: Mapping[str, int] = {
    "USD": 840, "CAD": 124, "EUR": 978, "GBP": 826, "AUD": 36, "CHF": 756, "CNY": 156,
    "DKK": 208, "INR": 356, "JPY": 392, "NOK": 578, "RUB": 643, "SEK": 752,
}
"""ISO 4217 numeric codes of the currencies ESPI's ``Currency`` lists."""


class IntervalUsage(NamedTuple):
    """Use over one interval, in the export's unit (a plain tuple works too)."""

    start: datetime
    duration_s: int
    value: Decimal


@dataclass(frozen=True, slots=True)
class BillSummary:
    """A bill as Green Button summarises it: period, total, consumption."""

    period_start: datetime
    period_end: datetime
    total: Decimal
    consumption: Decimal
    unit: str
    currency: str = "USD"

    @classmethod
    def from_row(cls, row: ExportRow, period_start: datetime, period_end: datetime
                 ) -> BillSummary:
        """The summary of a cycle-file row's bill over its bill period."""
        if row.consumption is None:
            raise GreenButtonError(f"row {'/'.join(row.key)} has no consumption to summarise")
        return cls(period_start, period_end, row.total, row.consumption, row.unit,
                   row.currency)


UsageItem = IntervalUsage | tuple[datetime, int, Decimal]


def green_button_xml(account: str, usage: Iterable[UsageItem],
                     bill_summary: BillSummary | None, *, meter: str, service: str, unit: str,
                     cycle: str, generated_at: datetime, day_zone: tzinfo = UTC,
                     base_url: str = DEFAULT_BASE_URL) -> bytes:
    """The Green Button feed of one account-meter: interval usage and the cycle's bill.

    ``usage`` values are in ``unit``; intervals must not overlap and start on
    whole seconds. Interval blocks are the days of ``day_zone`` (the utility's
    zone). ``generated_at`` is the feed's ``updated`` time: pass the data's own
    time (when the bill was computed) so the same data gives the same bytes.
    """
    for name, value in (("account", account), ("meter", meter), ("cycle", cycle)):
        _check_text(value, name)
    if unit not in UNITS:
        raise GreenButtonError(f"unit {unit!r} has no ESPI unit; known: {', '.join(UNITS)}")
    if service not in SERVICES:
        raise GreenButtonError(f"service {service!r} is not one of {', '.join(SERVICES)}")
    readings = _intervals(usage)
    if bill_summary is not None:
        _check_bill(bill_summary, unit)
    scale = UNITS[unit]
    base_values = [r.value * scale.factor for r in readings]
    if bill_summary is not None:
        base_values.append(bill_summary.consumption * scale.factor)
    power = _power_of_ten(base_values)
    feed = _Feed(account, meter, cycle, service, unit, power,
                 _seconds(generated_at, "generated_at"), base_url)
    return feed.xml(readings, bill_summary, day_zone)


# --- checking and scaling ------------------------------------------------------------------

def _check_text(value: object, name: str) -> None:
    if not isinstance(value, str) or not value or value != value.strip():
        raise GreenButtonError(f"{name} {value!r} must be non-empty text without outer spaces")
    if any(unicodedata.category(ch) in ("Cc", "Cs") or ch in "\ufffe\uffff" for ch in value):
        raise GreenButtonError(f"{name} {value!r} holds a character XML cannot carry")


def _seconds(value: object, name: str) -> int:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise GreenButtonError(f"{name} must be an aware datetime, got {value!r}")
    if value.microsecond:
        raise GreenButtonError(f"{name} {value.isoformat()} is not on a whole second "
                               "(ESPI times are whole seconds)")
    return (value - _EPOCH) // timedelta(seconds=1)


def _duration(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < UINT32:
        raise GreenButtonError(f"{name} must be a positive whole number of seconds, "
                               f"got {value!r}")
    return value


def _decimal(value: object, name: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise GreenButtonError(f"{name} must be a finite Decimal, got {value!r}")
    return value


def _intervals(usage: Iterable[UsageItem]) -> list[IntervalUsage]:
    readings = []
    for item in usage:
        try:
            reading = IntervalUsage(*item)
        except TypeError:
            raise GreenButtonError(f"a usage interval is (start, duration_s, value), "
                                   f"got {item!r}") from None
        _seconds(reading.start, "interval start")
        _duration(reading.duration_s, "interval duration")
        _decimal(reading.value, "interval value")
        readings.append(reading)
    readings.sort(key=lambda r: r.start)
    for before, after in pairwise(readings):
        if before.start + timedelta(seconds=before.duration_s) > after.start:
            raise GreenButtonError(f"intervals overlap: {before.start.isoformat()} "
                                   f"(+{before.duration_s} s) and {after.start.isoformat()}")
    return readings


def _check_bill(bill: BillSummary, unit: str) -> None:
    start = _seconds(bill.period_start, "bill period start")
    end = _seconds(bill.period_end, "bill period end")
    _duration(end - start, "bill period")
    _decimal(bill.total, "bill total")
    _decimal(bill.consumption, "bill consumption")
    if bill.unit != unit:
        raise GreenButtonError(f"the bill is in {bill.unit!r}, the usage in {unit!r}")
    if bill.currency not in CURRENCIES:
        raise GreenButtonError(f"currency {bill.currency!r} has no ESPI code; known: "
                               f"{', '.join(CURRENCIES)}")


def _whole(value: Decimal, name: str) -> int:
    """``value`` as an Int48, or :class:`GreenButtonError` if it is not one exactly."""
    with localcontext(EXACT):
        try:
            whole = value.to_integral_exact()
        except (Inexact, InvalidOperation):
            raise GreenButtonError(f"{name} {value} is not a whole number") from None
    if not -INT48 <= whole < INT48:
        raise GreenButtonError(f"{name} {value} does not fit ESPI's 48-bit integers")
    return int(whole)


def _power_of_ten(values: list[Decimal]) -> int:
    with localcontext(EXACT):
        for power in POWERS_OF_TEN:
            if all(v.scaleb(-power) == v.scaleb(-power).to_integral_value() for v in values):
                return power
    raise GreenButtonError("a value has more decimal places than ESPI's smallest multiplier "
                           "(10^-12) can carry")


# --- the feed ------------------------------------------------------------------------------

def _atom(tag: str) -> str:
    return f"{{{ATOM}}}{tag}"


def _espi(tag: str) -> str:
    return f"{{{ESPI}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    element = ET.SubElement(parent, _espi(tag))
    if text is not None:
        element.text = str(text)
    return element


def _interval(parent: ET.Element, tag: str, start: int, duration: int) -> None:
    interval = _sub(parent, tag)
    _sub(interval, "duration", duration)
    _sub(interval, "start", start)


def _atom_time(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Feed:
    """One Green Button document under construction: ids, hrefs and entries."""

    def __init__(self, account: str, meter: str, cycle: str, service: str, unit: str,
                 power: int, generated_at: int, base_url: str) -> None:
        self.account, self.meter, self.cycle = account, meter, cycle
        self.service, self.unit, self.power = service, unit, power
        self.generated_at = generated_at
        self.updated = _atom_time(generated_at)
        self.customer = self.uuid("RetailCustomer").hex
        self.usage_point = self.uuid("UsagePoint").hex
        self.reading_type = self.uuid("ReadingType").hex
        self.customer_href = f"{base_url}/RetailCustomer/{self.customer}"
        self.up_href = f"{self.customer_href}/UsagePoint/{self.usage_point}"
        self.mr_href = f"{self.up_href}/MeterReading/1"
        self.rt_href = f"{base_url}/ReadingType/{self.reading_type}"
        self.root = ET.Element(_atom("feed"))

    def uuid(self, *parts: str) -> uuid.UUID:
        """Stable per account and meter; per cycle where ``parts`` include it."""
        return uuid.uuid5(_ID_NAMESPACE, "\x1f".join((self.account, self.meter, *parts)))

    def entry(self, resource: str, entry_id: uuid.UUID, title: str,
              links: Iterable[tuple[str, str]]) -> ET.Element:
        entry = ET.SubElement(self.root, _atom("entry"))
        ET.SubElement(entry, _atom("id")).text = entry_id.urn
        for rel, href in links:
            ET.SubElement(entry, _atom("link"), {"href": href, "rel": rel})
        ET.SubElement(entry, _atom("title")).text = title
        content = ET.SubElement(entry, _atom("content"))
        resource_element = ET.SubElement(content, _espi(resource))
        ET.SubElement(entry, _atom("published")).text = self.updated
        ET.SubElement(entry, _atom("updated")).text = self.updated
        return resource_element

    def xml(self, readings: list[IntervalUsage], bill: BillSummary | None,
            day_zone: tzinfo) -> bytes:
        ET.SubElement(self.root, _atom("id")).text = self.uuid("feed", self.cycle).urn
        ET.SubElement(self.root, _atom("title")).text = (
            f"Green Button data: account {self.account}, meter {self.meter}, "
            f"cycle {self.cycle}")
        ET.SubElement(self.root, _atom("updated")).text = self.updated
        ET.SubElement(self.root, _atom("link"), {"href": f"{self.up_href}", "rel": "self"})
        self.usage_point_entry(with_summary=bill is not None)
        self.meter_reading_entry()
        self.reading_type_entry(readings, bill)
        self.interval_block_entries(readings, day_zone)
        if bill is not None:
            self.usage_summary_entry(bill)
        ET.indent(self.root, space="  ")
        body = ET.tostring(self.root, encoding="unicode")
        return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'.encode()

    def usage_point_entry(self, *, with_summary: bool) -> None:
        links = [("self", self.up_href), ("up", f"{self.customer_href}/UsagePoint"),
                 ("related", f"{self.up_href}/MeterReading")]
        if with_summary:
            links.append(("related", f"{self.up_href}/UsageSummary"))
        point = self.entry("UsagePoint", self.uuid("UsagePoint"),
                           f"{self.service} service, meter {self.meter}", links)
        _sub(_sub(point, "ServiceCategory"), "kind", SERVICES[self.service][0])

    def meter_reading_entry(self) -> None:
        self.entry("MeterReading", self.uuid("MeterReading"), f"meter {self.meter} readings",
                   [("self", self.mr_href), ("up", f"{self.up_href}/MeterReading"),
                    ("related", self.rt_href), ("related", f"{self.mr_href}/IntervalBlock")])

    def reading_type_entry(self, readings: list[IntervalUsage], bill: BillSummary | None
                           ) -> None:
        unit = UNITS[self.unit]
        rt = self.entry("ReadingType", self.uuid("ReadingType"),
                        f"{self.unit} per interval, forward",
                        [("self", self.rt_href), ("up", self.rt_href.rsplit("/", 1)[0])])
        _sub(rt, "accumulationBehaviour", 4)  # deltaData: use within each interval
        _sub(rt, "commodity", SERVICES[self.service][1])
        if bill is not None:
            _sub(rt, "currency", CURRENCIES[bill.currency])
        _sub(rt, "dataQualifier", 12)  # normal
        _sub(rt, "flowDirection", 1)  # forward: delivered to the customer
        lengths = {r.duration_s for r in readings}
        if len(lengths) == 1:
            _sub(rt, "intervalLength", lengths.pop())
        _sub(rt, "kind", unit.kind)
        _sub(rt, "powerOfTenMultiplier", self.power)
        _sub(rt, "timeAttribute", 0)
        _sub(rt, "uom", unit.uom)

    def value(self, value: Decimal, name: str) -> int:
        with localcontext(EXACT):
            scaled = (value * UNITS[self.unit].factor).scaleb(-self.power)
        return _whole(scaled, name)

    def interval_block_entries(self, readings: list[IntervalUsage], day_zone: tzinfo) -> None:
        days: dict[object, list[IntervalUsage]] = {}
        for reading in readings:
            days.setdefault(reading.start.astimezone(day_zone).date(), []).append(reading)
        for day, block in days.items():
            start = _seconds(block[0].start, "interval start")
            end = _seconds(block[-1].start, "interval start") + block[-1].duration_s
            href = f"{self.mr_href}/IntervalBlock/{start}"
            element = self.entry("IntervalBlock", self.uuid("IntervalBlock", str(start)),
                                 f"{day}: {len(block)} intervals",
                                 [("self", href), ("up", f"{self.mr_href}/IntervalBlock")])
            _interval(element, "interval", start, _duration(end - start, "interval block"))
            for reading in block:
                interval_reading = _sub(element, "IntervalReading")
                _interval(interval_reading, "timePeriod",
                          _seconds(reading.start, "interval start"), reading.duration_s)
                _sub(interval_reading, "value",
                     self.value(reading.value, f"interval {reading.start.isoformat()}"))

    def usage_summary_entry(self, bill: BillSummary) -> None:
        start = _seconds(bill.period_start, "bill period start")
        end = _seconds(bill.period_end, "bill period end")
        summary_id = self.uuid("UsageSummary", self.cycle)
        href = f"{self.up_href}/UsageSummary/{summary_id.hex}"
        summary = self.entry("UsageSummary", summary_id, f"bill for cycle {self.cycle}",
                             [("self", href), ("up", f"{self.up_href}/UsageSummary")])
        _interval(summary, "billingPeriod", start, end - start)
        with localcontext(EXACT):
            cost = bill.total * COST_SCALE
        _sub(summary, "billLastPeriod", _whole(cost, "bill total in 1/100000 of the currency"))
        _sub(summary, "currency", CURRENCIES[bill.currency])
        overall = _sub(summary, "overallConsumptionLastPeriod")
        _sub(overall, "powerOfTenMultiplier", self.power)
        _sub(overall, "timeStamp", end)
        _sub(overall, "uom", UNITS[self.unit].uom)
        _sub(overall, "value", self.value(bill.consumption, "bill consumption"))
        _sub(summary, "statusTimeStamp", self.generated_at)
        _sub(summary, "commodity", SERVICES[self.service][1])
        _sub(summary, "readCycle", self.cycle)
