"""Readings and hypothesis strategies shared by the tests."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from protocols.read import ClockQuality, Read, Reading, RegisterValue, Source

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def reading(
    n: int = 0,
    *,
    meter: str = "SDM630-0001",
    value: Decimal | None = None,
    flags: tuple[str, ...] = (),
) -> Reading:
    """A plausible AMI reading; ``n`` moves it forward in time and value."""
    at = T0 + timedelta(minutes=15 * n)
    return Reading(
        meter=meter,
        read_at=at - timedelta(seconds=2),
        collected_at=at,
        clock=ClockQuality(ntp_synced=True, meter_offset_s=Decimal("-2.000")),
        source=Source.AMI,
        values={
            "energy_import_kwh": RegisterValue(
                value if value is not None else Decimal(1000 + n).scaleb(-3) + 100, "kWh", "1.8.0"
            ),
            "energy_export_kwh": RegisterValue(Decimal("0.000"), "kWh", "2.8.0"),
        },
        flags=flags,
    )


def readings(count: int, **kwargs: object) -> list[Reading]:
    return [reading(n, **kwargs) for n in range(count)]  # type: ignore[arg-type]


# --- hypothesis strategies ---------------------------------------------------------

decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: len(format(d, "f")) <= 40
) | st.sampled_from([Decimal(x) for x in (
    "0.000", "123456789.123456", "-42.5", "99999999999999999999.999", "-0.001", "1E+3", "0",
)])
instants = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31),
    timezones=st.sampled_from([UTC]),
)
names = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
meters = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,30}", fullmatch=True)
units = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                           blacklist_characters='"\\\x85\xa0\u1680\u2028\u2029'),
    min_size=1, max_size=16,
).filter(lambda u: not any(c.isspace() for c in u))
obis = st.none() | st.sampled_from(["1.8.0", "1-0:1.8.1", "0-1:24.2.1", "C.1.0", "F.F", "2.8.0*01"])
registers = st.builds(RegisterValue, value=decimals, unit=units, obis=obis)
clocks = st.builds(ClockQuality, ntp_synced=st.booleans(),
                   meter_offset_s=st.none() | decimals)
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
hex32 = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
collectors = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)

reads = st.builds(
    Read,
    meter=meters,
    read_at=instants,
    collected_at=instants,
    clock=clocks,
    source=st.sampled_from(list(Source)),
    values=st.dictionaries(names, registers, min_size=1, max_size=5),
    flags=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True), max_size=4),
    collector=collectors,
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    prev_hash=hex64,
    key_id=hex32,
)
printable = st.text(alphabet=string.printable, max_size=8)
