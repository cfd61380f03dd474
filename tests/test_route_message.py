"""The route message format, and trouble reports as reads."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.canonical import decode_read
from protocols.chain import GENESIS_TIP, sign_and_chain
from protocols.errors import InvalidFieldError
from protocols.read import ClockQuality, Reading, Source
from protocols.route_message import (
    Limits,
    PreviousRead,
    Route,
    RouteError,
    RouteStop,
    decode_route,
    encode_route,
)
from protocols.signing import Signer
from protocols.trouble import Trouble, trouble_codes

AT = datetime(2026, 11, 23, 8, 30, 15, 123000, tzinfo=UTC)
decimals = st.decimals(min_value=0, max_value=10**9, places=3)


@st.composite
def stops(draw, sequence: int) -> RouteStop:
    previous = draw(st.none() | decimals.map(lambda v: PreviousRead(v, AT)))
    low = draw(decimals)
    return RouteStop(
        sequence=sequence, meter=draw(st.from_regex(r"[A-Z][A-Z0-9-]{0,20}", fullmatch=True)),
        account=draw(st.text(min_size=1, max_size=20)), service="water",
        address=draw(st.text(max_size=40)), register="volume_m3", unit="m3",
        dials=draw(st.integers(1, 12)), location_notes=draw(st.text(max_size=40)),
        hazards=draw(st.text(max_size=20)),
        latitude=draw(st.none() | st.decimals(-90, 90, places=5)),
        longitude=draw(st.none() | st.decimals(-180, 180, places=5)),
        profile=draw(st.none() | st.just("arad-octave")), previous=previous,
        limits=draw(st.none() | decimals.map(lambda extra: Limits(low, low + extra))),
    )


@given(st.data())
def test_a_route_round_trips(data):
    count = data.draw(st.integers(0, 5))
    route = Route("C1-reread", "C1", "hh-01", AT,
                  tuple(data.draw(stops(n)) for n in range(1, count + 1)))
    assert decode_route(encode_route(route)) == route


@given(st.binary(max_size=300))
def test_any_bytes_are_a_route_or_a_route_error(payload):
    with contextlib.suppress(RouteError):
        decode_route(payload)


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.update(v=2), "v"),
    (lambda r: r["stops"][0].update(sequence=0), "stops[0].sequence"),
    (lambda r: r["stops"][0].update(limits={"low": "5", "high": "4"}), "stops[0].limits"),
    (lambda r: r["stops"][0].update(meter="a b"), "stops[0].meter"),
    (lambda r: r.update(collector="hh/1"), "collector"),
])
def test_a_bad_route_names_the_field(change, field):
    stop = RouteStop(1, "M1", "A1", "electric", "", "energy_import_kwh", "kWh", 6)
    raw = json.loads(encode_route(Route("r", "C1", "hh-01", AT, (stop,))))
    change(raw)
    with pytest.raises(RouteError) as caught:
        decode_route(json.dumps(raw).encode())
    assert caught.value.field == field


def trouble_report(flags: tuple[str, ...]) -> Reading:
    return Reading(meter="M1", read_at=AT, collected_at=AT,
                   clock=ClockQuality(ntp_synced=False), source=Source.HANDHELD_MANUAL,
                   values={}, flags=flags)


def test_a_trouble_report_may_carry_no_register_and_survives_the_chain():
    sealed, _ = sign_and_chain([trouble_report((Trouble.DOG.flag,))], signer=Signer.generate(),
                               collector="hh-01", after=GENESIS_TIP)
    read = decode_read(sealed[0].data)
    assert dict(read.values) == {} and trouble_codes(read.flags) == ("dog",)


def test_only_a_trouble_report_may_carry_no_register():
    with pytest.raises(InvalidFieldError, match="at least one register"):
        trouble_report(("manual_high_low_confirmed",))
    assert Limits(Decimal(1), Decimal(2)).admits(Decimal("1.5"))
