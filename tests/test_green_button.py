"""Green Button (NAESB ESPI) export: Atom structure, ESPI element order, exact numbers.

The element orders below are the ``xs:sequence`` orders of the ESPI schema
(``usage.xsd``, REQ.21 version 3.3, as published in the Green Button Alliance's
OpenESPI-Common-java); a resource may leave optional elements out, but the
ones it has must come in this order.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from hub.export.green_button import (
    ATOM,
    ESPI,
    BillSummary,
    GreenButtonError,
    IntervalUsage,
    green_button_xml,
)
from tests.test_export_formats import row

READING_TYPE = ("accumulationBehaviour", "commodity", "consumptionTier", "currency",
                "dataQualifier", "defaultQuality", "flowDirection", "intervalLength", "kind",
                "phase", "powerOfTenMultiplier", "timeAttribute", "tou", "uom", "cpp",
                "interharmonic", "measuringPeriod", "argument")
USAGE_SUMMARY = ("billingPeriod", "billLastPeriod", "billToDate", "costAdditionalLastPeriod",
                 "costAdditionalDetailLastPeriod", "currency", "overallConsumptionLastPeriod",
                 "currentBillingPeriodOverAllConsumption", "currentDayLastYearNetConsumption",
                 "currentDayNetConsumption", "currentDayOverallConsumption", "peakDemand",
                 "previousDayLastYearOverallConsumption", "previousDayNetConsumption",
                 "previousDayOverallConsumption", "qualityOfReading", "ratchetDemand",
                 "ratchetDemandPeriod", "statusTimeStamp", "commodity", "tariffProfile",
                 "readCycle", "tariffRiderRefs", "billingChargeSource")
USAGE_POINT = ("roleFlags", "ServiceCategory", "status", "serviceDeliveryPoint")
INTERVAL_BLOCK = ("interval", "IntervalReading")
INTERVAL_READING = ("cost", "ReadingQuality", "timePeriod", "value", "consumptionTier", "tou",
                    "cpp")
DATE_TIME_INTERVAL = ("duration", "start")
SUMMARY_MEASUREMENT = ("powerOfTenMultiplier", "timeStamp", "uom", "value", "readingTypeRef")
REQUIRED = {"UsageSummary": {"statusTimeStamp"}, "DateTimeInterval": {"duration", "start"},
            "ServiceCategory": {"kind"}}
A, E = f"{{{ATOM}}}", f"{{{ESPI}}}"

START = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # midnight in Toronto (EST)
BILLED = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def hourly(hours=30, value="0.412"):
    return [IntervalUsage(START + timedelta(hours=h), 3600, Decimal(value) + Decimal(h) / 1000)
            for h in range(hours)]


def bill(total="58.82", consumption="412.500", unit="kWh"):
    return BillSummary(START, START + timedelta(days=30), Decimal(total), Decimal(consumption),
                       unit)


def feed(usage=None, summary="default", **overrides):
    kwargs = {"meter": "SDM630-00001", "service": "electric", "unit": "kWh",
              "cycle": "C2026-11", "generated_at": BILLED,
              "day_zone": ZoneInfo("America/Toronto")}
    kwargs.update(overrides)
    return green_button_xml("A-1001", hourly() if usage is None else usage,
                            bill() if summary == "default" else summary, **kwargs)


def resources(data):
    root = ET.fromstring(data)
    found = {}
    for entry in root.findall(f"{A}entry"):
        (resource,) = list(entry.find(f"{A}content"))
        found.setdefault(resource.tag.removeprefix(E), []).append((entry, resource))
    return root, found


def names(element):
    return [child.tag.removeprefix(E) for child in element]


def assert_in_schema_order(element, order):
    seen = names(element)
    assert all(name in order for name in seen), seen
    positions = [order.index(name) for name in seen]
    assert positions == sorted(positions), seen


def test_the_feed_is_atom_with_espi_entries():
    root, found = resources(feed())
    assert root.tag == f"{A}feed"
    for tag in ("id", "title", "updated", "link"):
        assert root.find(f"{A}{tag}") is not None
    assert set(found) == {"UsagePoint", "MeterReading", "ReadingType", "IntervalBlock",
                          "UsageSummary"}
    assert len(found["IntervalBlock"]) == 2  # 30 hours from midnight: two local days


def test_every_entry_has_the_atom_elements_and_self_and_up_links():
    root, _ = resources(feed())
    for entry in root.findall(f"{A}entry"):
        assert entry.find(f"{A}id").text.startswith("urn:uuid:")
        for tag in ("title", "content", "published", "updated"):
            assert entry.find(f"{A}{tag}") is not None
        rels = [link.get("rel") for link in entry.findall(f"{A}link")]
        assert "self" in rels and "up" in rels


def test_resources_link_to_each_other_by_href():
    _, found = resources(feed())

    def links(resource):
        entry = found[resource][0][0]
        return {(link.get("rel"), link.get("href")) for link in entry.findall(f"{A}link")}

    up_self = next(h for r, h in links("UsagePoint") if r == "self")
    mr_links = links("MeterReading")
    assert ("up", f"{up_self}/MeterReading") in mr_links
    rt_self = next(h for r, h in links("ReadingType") if r == "self")
    assert ("related", rt_self) in mr_links
    mr_self = next(h for r, h in mr_links if r == "self")
    assert all(("up", f"{mr_self}/IntervalBlock") in {(link.get("rel"), link.get("href"))
               for link in entry.findall(f"{A}link")} for entry, _ in found["IntervalBlock"])
    assert ("related", f"{up_self}/UsageSummary") in links("UsagePoint")


def test_espi_elements_follow_the_schema_order():
    _, found = resources(feed())
    assert_in_schema_order(found["UsagePoint"][0][1], USAGE_POINT)
    assert_in_schema_order(found["ReadingType"][0][1], READING_TYPE)
    summary = found["UsageSummary"][0][1]
    assert_in_schema_order(summary, USAGE_SUMMARY)
    assert REQUIRED["UsageSummary"] <= set(names(summary))
    assert_in_schema_order(summary.find(f"{E}billingPeriod"), DATE_TIME_INTERVAL)
    assert_in_schema_order(summary.find(f"{E}overallConsumptionLastPeriod"),
                           SUMMARY_MEASUREMENT)
    for _, block in found["IntervalBlock"]:
        assert_in_schema_order(block, INTERVAL_BLOCK)
        assert names(block.find(f"{E}interval")) == list(DATE_TIME_INTERVAL)
        for reading in block.findall(f"{E}IntervalReading"):
            assert_in_schema_order(reading, INTERVAL_READING)
            assert names(reading.find(f"{E}timePeriod")) == list(DATE_TIME_INTERVAL)


@pytest.mark.parametrize(("service", "unit", "kind", "commodity", "uom"), [
    ("electric", "kWh", "0", "1", "72"), ("gas", "m3", "1", "7", "42"),
    ("water", "gal", "2", "9", "128"), ("water", "ccf", "2", "9", "119"),
])
def test_service_and_unit_map_to_espi_codes(service, unit, kind, commodity, uom):
    _, found = resources(feed(service=service, unit=unit, summary=bill(unit=unit)))
    point = found["UsagePoint"][0][1]
    assert point.find(f"{E}ServiceCategory/{E}kind").text == kind
    reading_type = found["ReadingType"][0][1]
    assert reading_type.find(f"{E}commodity").text == commodity
    assert reading_type.find(f"{E}uom").text == uom


def test_reading_type_describes_hourly_forward_deltas_in_wh():
    _, found = resources(feed())
    rt = {name: el.text for name, el in zip(names(found["ReadingType"][0][1]),
                                            found["ReadingType"][0][1], strict=True)}
    assert rt["accumulationBehaviour"] == "4" and rt["flowDirection"] == "1"
    assert rt["intervalLength"] == "3600" and rt["uom"] == "72" and rt["kind"] == "12"
    assert rt["powerOfTenMultiplier"] == "0" and rt["currency"] == "840"


def test_interval_values_are_exact_integers_in_the_uom():
    usage = hourly()
    _, found = resources(feed(usage))
    values = [int(r.find(f"{E}value").text) for _, block in found["IntervalBlock"]
              for r in block.findall(f"{E}IntervalReading")]
    assert values == [int(u.value * 1000) for u in usage]  # kWh -> Wh, power of ten 0
    starts = [int(r.find(f"{E}timePeriod/{E}start").text) for _, block in
              found["IntervalBlock"] for r in block.findall(f"{E}IntervalReading")]
    assert starts[0] == int(START.timestamp())


def test_values_finer_than_the_uom_use_the_next_schema_power_of_ten():
    usage = [IntervalUsage(START, 86400, Decimal("0.0125"))]  # m3 to a tenth of a litre
    _, found = resources(feed(usage, service="water", unit="m3",
                              summary=bill(consumption="0.0125", unit="m3")))
    # UnitMultiplierKind has -3 and -6 but no -4: micro cubic metres it is
    assert found["ReadingType"][0][1].find(f"{E}powerOfTenMultiplier").text == "-6"
    assert found["IntervalBlock"][0][1].find(f"{E}IntervalReading/{E}value").text == "12500"
    overall = found["UsageSummary"][0][1].find(f"{E}overallConsumptionLastPeriod")
    assert overall.find(f"{E}powerOfTenMultiplier").text == "-6"
    assert overall.find(f"{E}value").text == "12500"


def test_a_value_too_large_for_48_bits_is_a_typed_error():
    with pytest.raises(GreenButtonError, match="48-bit"):
        feed([IntervalUsage(START, 3600, Decimal(2**47))], summary=None)


def test_the_bill_is_in_hundred_thousandths_of_the_currency():
    _, found = resources(feed())
    summary = found["UsageSummary"][0][1]
    assert summary.find(f"{E}billLastPeriod").text == "5882000"
    assert summary.find(f"{E}currency").text == "840"
    assert summary.find(f"{E}billingPeriod/{E}duration").text == str(30 * 86400)
    assert summary.find(f"{E}overallConsumptionLastPeriod/{E}value").text == "412500"
    assert summary.find(f"{E}readCycle").text == "C2026-11"
    assert summary.find(f"{E}statusTimeStamp").text == str(int(BILLED.timestamp()))


def test_interval_blocks_are_the_days_of_the_utility_zone():
    _, found = resources(feed())
    first, second = (block for _, block in found["IntervalBlock"])
    assert first.find(f"{E}interval/{E}duration").text == "86400"
    assert len(first.findall(f"{E}IntervalReading")) == 24
    assert len(second.findall(f"{E}IntervalReading")) == 6


def test_the_same_data_gives_the_same_bytes_in_any_order():
    usage = hourly()
    assert feed(usage) == feed(list(reversed(usage)))
    assert feed(usage) == feed([(u.start, u.duration_s, u.value) for u in usage])


def test_ids_are_stable_per_meter_and_per_cycle_where_they_should_be():
    _, november = resources(feed())
    root_dec, december = resources(feed(cycle="C2026-12"))
    assert (november["UsagePoint"][0][0].find(f"{A}id").text
            == december["UsagePoint"][0][0].find(f"{A}id").text)
    assert (november["UsageSummary"][0][0].find(f"{A}id").text
            != december["UsageSummary"][0][0].find(f"{A}id").text)
    assert ET.fromstring(feed()).find(f"{A}id").text != root_dec.find(f"{A}id").text


def test_usage_without_a_bill_has_no_summary():
    _, found = resources(feed(summary=None))
    assert "UsageSummary" not in found
    assert found["ReadingType"][0][1].find(f"{E}currency") is None


def test_a_bill_summary_comes_from_a_cycle_file_row():
    summary = BillSummary.from_row(row(), START, START + timedelta(days=30))
    assert summary.total == Decimal("58.82") and summary.consumption == Decimal("412.500")
    with pytest.raises(GreenButtonError):
        BillSummary.from_row(row(consumption=None), START, START + timedelta(days=30))


def test_the_document_is_utf8_xml_with_a_declaration():
    data = feed()
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<feed ')
    assert data.endswith(b"</feed>\n")


@pytest.mark.parametrize(("change", "message"), [
    ({"usage": [IntervalUsage(datetime(2026, 11, 1), 3600, Decimal(1))]}, "aware"),
    ({"usage": [IntervalUsage(START, 3600, Decimal(1)),
                IntervalUsage(START + timedelta(minutes=30), 3600, Decimal(1))]}, "overlap"),
    ({"usage": [IntervalUsage(START, 0, Decimal(1))]}, "positive"),
    ({"usage": [IntervalUsage(START, 3600, 1.5)]}, "Decimal"),
    ({"usage": [IntervalUsage(START, 3600, Decimal("1E-16"))]}, "decimal places"),
    ({"usage": [IntervalUsage(START + timedelta(microseconds=5), 3600, Decimal(1))]},
     "whole second"),
    ({"unit": "therm"}, "unit"),
    ({"service": "steam"}, "service"),
    ({"summary": bill(total="58.820001")}, "whole number"),
    ({"summary": bill(unit="m3")}, "usage in"),
    ({"summary": BillSummary(START, START, Decimal(1), Decimal(1), "kWh")}, "positive"),
    ({"summary": BillSummary(START, BILLED, Decimal(1), Decimal(1), "kWh", "XTS")},
     "currency"),
])
def test_data_that_would_change_is_a_typed_error(change, message):
    with pytest.raises(GreenButtonError, match=message):
        feed(**change)


def test_a_control_character_in_an_id_is_refused():
    with pytest.raises(GreenButtonError):
        feed(meter="SDM\x00630")
