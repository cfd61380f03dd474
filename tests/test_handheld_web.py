"""The handheld's route page over HTTP: forms, the high/low rule, the probe and its refusals.

The page runs as it does on a handheld — uvicorn on a loopback port — over a
real route store, a real edge buffer (every outcome must verify as a signed,
chained read) and a simulated optical meter on a pty cable as the probe.
"""

import contextlib
import http.client
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlencode, urlsplit

import pytest
import typer
from typer.testing import CliRunner

from edge_agent import route_cli
from edge_agent.buffer import EdgeBuffer
from edge_agent.config import load_config
from edge_agent.handheld_config import HandheldSection
from edge_agent.handheld_probe import (
    UNVERIFIED_FLAG,
    Probe,
    RegisterMissing,
    WrongMeter,
    checked_reading,
)
from edge_agent.handheld_web import (
    CONFIRMED_FLAG,
    EntryError,
    HandheldServer,
    Keep,
    Reenter,
    check_manual,
    create_app,
    next_stop,
)
from edge_agent.keys import generate_key_file
from edge_agent.route_store import Progress, RouteStore
from firmware_profiles import get_profile
from protocols.canonical import decode_read
from protocols.channels import Protocol
from protocols.driver import ChannelValue, MeterSample
from protocols.read import Source
from protocols.route_message import Limits, PreviousRead, Route, RouteStop, encode_route
from protocols.signing import Signer
from protocols.web_paths import is_loopback
from simulators.faceplate import Faceplate
from simulators.iec_meter import IecMeterSimulator
from simulators.meter_model import MeterSpec, Service
from simulators.serial_link import VirtualCable

PROFILE = get_profile("landis-gyr-zmd310")
SERIAL = "LGZ-0056859504"
START = Decimal("12345.678")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
METER_CLOCK = NOW - timedelta(minutes=7)
"""Where the simulated meter's clock starts: seven minutes behind the handheld's (fixed) clock."""


def stop(sequence, *, meter, low="100", high="200", register="energy_import_kwh", **extra):
    return RouteStop(
        sequence=sequence, meter=meter, account=f"ACC-{sequence}", service="electric",
        address=f"{sequence} Mill Lane", register=register, unit="kWh", dials=6,
        location_notes="behind the garage", hazards=extra.pop("hazards", ""),
        latitude=Decimal("48.2082"), longitude=Decimal("16.3738"),
        profile="landis-gyr-zmd310",
        previous=PreviousRead(Decimal("150.0"), NOW - timedelta(days=30)),
        limits=Limits(Decimal(low), Decimal(high)), **extra,
    )


ROUTE = Route("R-2026-11-C07", "C07", "hh-0001", NOW, (
    stop(10, meter=SERIAL, low="12000", high="13000", hazards="Dog in yard"),
    stop(20, meter="M-20"),
    stop(30, meter="M-30"),
))


@contextlib.contextmanager
def iec_meter(serial=SERIAL):
    """A ZMD310 answering on a pty cable; its faceplate says what it should read."""
    face = Faceplate(MeterSpec(serial, Service.ELECTRIC, start_value=START), epoch=METER_CLOCK)
    with VirtualCable() as cable, IecMeterSimulator(
        cable.meter_path, face, PROFILE.obis_channels, settings=PROFILE.iec
    ):
        yield cable.device_path, face


@dataclass
class Page:
    status: int
    location: str
    body: str


class Handheld:
    """The page on a loopback port, with the store and buffer behind it."""

    def __init__(self, server, store, buffer):
        self.server, self.store, self.buffer = server, store, buffer

    def request(self, method, path, form=None, headers=None):
        connection = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        body = None if form is None else urlencode(form)
        sent = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
        connection.request(method, path, body=body, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        page = Page(response.status, response.getheader("Location") or "",
                    response.read().decode())
        connection.close()
        return page

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, form=None, **headers):
        return self.request("POST", path, form or {}, headers)

    def reads(self):
        return [decode_read(sealed.data) for sealed in self.buffer.reads()]


@pytest.fixture
def handheld_factory(tmp_path):
    opened = []

    def start(probe, route=ROUTE, *, access=None, allowed_hosts=("127.0.0.1", "localhost"),
              **buffer_options):
        store = RouteStore(tmp_path / "routes.sqlite", collector="hh-0001")
        store.save(route)
        buffer = EdgeBuffer(tmp_path / "buffer.sqlite", collector="hh-0001",
                            signer=Signer.generate(), **buffer_options)
        app = create_app(store, buffer, probe, clock=lambda: NOW, ntp=lambda: True,
                         allowed_hosts=allowed_hosts, access=access)
        server = HandheldServer(app, "127.0.0.1", 0).start()
        opened.append((server, store, buffer))
        return Handheld(server, store, buffer)

    yield start
    for server, store, buffer in opened:
        server.stop()
        store.close()
        buffer.close()


@pytest.fixture
def handheld(handheld_factory):
    """Manual reads and trouble only: no probe plugged in."""
    return handheld_factory(Probe(Protocol.IEC62056_21, None))


CARD = "/routes/R-2026-11-C07/stops/{}"


def text(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- the high/low rule and walk order (pure) ----------------------------------------------


LIMITED = stop(1, meter="M-1", low="100", high="200")


@pytest.mark.parametrize(("value", "confirm", "expected"), [
    ("150", None, Keep(Decimal("150"))),
    ("100", None, Keep(Decimal("100"))),                      # the limits are inclusive
    ("250", None, Reenter("250", Decimal(100), Decimal(200))),
    ("250", "", Reenter("250", Decimal(100), Decimal(200))),
    ("250", "250.0", Keep(Decimal("250.0"), (CONFIRMED_FLAG,))),
    ("250", "150,5", Keep(Decimal("150.5"))),                 # re-read right: an ordinary read
    ("250", "260", Reenter("260", Decimal(100), Decimal(200))),  # two different: ask again
    ("20", "20", Keep(Decimal("20"), (CONFIRMED_FLAG,))),
])
def test_a_keyed_read_outside_its_limits_is_kept_only_when_keyed_again_the_same(
        value, confirm, expected):
    assert check_manual(LIMITED, value, confirm) == expected


def test_without_limits_every_reading_is_kept():
    unlimited = RouteStop(**{**LIMITED.__dict__, "limits": None})
    assert check_manual(unlimited, "999999") == Keep(Decimal("999999"))


@pytest.mark.parametrize(("value", "confirm"), [
    ("", None), ("12a", None), ("-5", None), ("1.2.3", None), ("1e3", None),
    ("1000000", None), ("250", "abc"),
])
def test_text_that_is_no_reading_of_the_dials_is_refused(value, confirm):
    with pytest.raises(EntryError):
        check_manual(LIMITED, value, confirm)


def test_the_next_stop_is_the_next_to_do_in_walk_order_wrapping_round():
    assert next_stop(ROUTE, set(), 10) == 20
    assert next_stop(ROUTE, {20}, 10) == 30
    assert next_stop(ROUTE, {30}, 20) == 10
    assert next_stop(ROUTE, {10, 20, 30}, 30) is None


def test_a_meter_reporting_another_serial_is_refused_and_one_reporting_none_is_flagged():
    sample = MeterSample(values={"energy_import_kwh": ChannelValue(Decimal(5), "kWh", "1.8.0")},
                         identity=" m-20 ")
    assert checked_reading(ROUTE.stops[1], [sample], "p").reported_serial == "m-20"
    with pytest.raises(WrongMeter, match="M-30"):
        checked_reading(ROUTE.stops[1], [MeterSample(values=sample.values, identity="M-30")], "p")
    anonymous = checked_reading(ROUTE.stops[1], [MeterSample(values=sample.values)], "p")
    assert anonymous.flags == (UNVERIFIED_FLAG,)
    wh = MeterSample(values={"energy_import_kwh": ChannelValue(Decimal(5), "Wh")}, identity="M-20")
    with pytest.raises(RegisterMissing, match="Wh"):
        checked_reading(ROUTE.stops[1], [wh], "p")


# --- the pages ------------------------------------------------------------------------------


def test_the_route_list_and_route_page_show_progress_in_walk_order(handheld):
    assert "0 of 3" in text(handheld.get("/").body)
    page = handheld.get("/routes/R-2026-11-C07")
    assert page.status == 200
    body = text(page.body)
    assert "0 of 3 done" in body
    assert body.index("10 Mill Lane") < body.index("20 Mill Lane") < body.index("30 Mill Lane")
    assert page.body.count("status status-todo") == 3


def test_the_card_shows_what_the_technician_needs(handheld):
    page = handheld.get(CARD.format(10))
    body = text(page.body)
    for shown in (SERIAL, "ACC-10", "10 Mill Lane", "behind the garage", "Dog in yard",
                  "150.0 kWh", "12000 – 13000", "48.2082, 16.3738", "6 dials"):
        assert shown in body, shown
    assert 'class="hazard"' in page.body


def test_a_manual_read_out_of_limits_is_asked_again_then_kept_flagged(handheld):
    first = handheld.post(CARD.format(20) + "/manual", {"value": "950"})
    assert first.status == 200
    assert "outside the expected range 100 – 200" in text(first.body)
    assert 'name="confirm"' in first.body
    assert handheld.reads() == [] and handheld.store.visits(ROUTE.route_id) == {}
    kept = handheld.post(CARD.format(20) + "/manual", {"value": "950", "confirm": "950"})
    assert (kept.status, kept.location) == (303, CARD.format(30) + "?saved=20")
    [read] = handheld.reads()
    assert (read.meter, read.source, read.flags) == ("M-20", Source.HANDHELD_MANUAL,
                                                     (CONFIRMED_FLAG,))
    assert read.values["energy_import_kwh"].value == Decimal(950)
    assert read.values["energy_import_kwh"].unit == "kWh"
    assert (read.read_at, read.collected_at, read.clock.ntp_synced) == (NOW, NOW, True)
    assert handheld.store.visits(ROUTE.route_id)[20].value == "950"
    assert handheld.buffer.verify() == 1
    banner = text(handheld.get(kept.location).body)
    assert "Stop 20 saved: read 950" in banner


def test_a_re_entry_within_limits_is_kept_as_an_ordinary_read(handheld):
    assert handheld.post(CARD.format(20) + "/manual", {"value": "1500"}).status == 200
    kept = handheld.post(CARD.format(20) + "/manual", {"value": "1500", "confirm": "150.0"})
    assert kept.status == 303
    [read] = handheld.reads()
    assert read.flags == () and str(read.values["energy_import_kwh"].value) == "150.0"


def test_a_keyed_value_that_is_no_reading_is_refused_and_nothing_kept(handheld):
    page = handheld.post(CARD.format(20) + "/manual", {"value": "15O"})
    assert page.status == 422
    assert "not a reading" in text(page.body)
    assert handheld.reads() == []


def test_a_trouble_report_is_a_signed_read_without_registers_and_keeps_its_note(handheld):
    page = handheld.post(CARD.format(30) + "/trouble", {"code": "dog", "note": "  big & loud  "})
    assert (page.status, page.location) == (303, CARD.format(10) + "?saved=30")
    [read] = handheld.reads()
    assert (read.meter, read.source, read.flags, dict(read.values)) == (
        "M-30", Source.HANDHELD_MANUAL, ("trouble_dog",), {})
    visit = handheld.store.visits(ROUTE.route_id)[30]
    assert (visit.outcome, visit.trouble, visit.note, visit.seq) == ("trouble", "dog",
                                                                     "big & loud", 1)
    card = handheld.get(CARD.format(30)).body
    assert "note: big &amp; loud" in card
    assert handheld.buffer.verify() == 1


def test_an_unknown_trouble_code_or_an_overlong_note_is_refused(handheld):
    assert handheld.post(CARD.format(30) + "/trouble", {"code": "aliens"}).status == 422
    too_long = handheld.post(CARD.format(30) + "/trouble", {"code": "dog", "note": "x" * 501})
    assert too_long.status == 422
    assert handheld.reads() == []


def test_the_last_stop_done_leads_back_to_the_complete_route(handheld):
    handheld.post(CARD.format(10) + "/trouble", {"code": "no_access"})
    handheld.post(CARD.format(20) + "/manual", {"value": "150"})
    last = handheld.post(CARD.format(30) + "/manual", {"value": "160"})
    assert (last.status, last.location) == (303, "/routes/R-2026-11-C07?saved=30")
    body = text(handheld.get(last.location).body)
    assert "3 of 3 done" in body and "Route complete" in body
    assert "read 150" in body and "read 160" in body and "trouble: no_access" in body
    assert handheld.store.progress(ROUTE.route_id) == Progress(3, 3)
    assert [r.seq for r in handheld.reads()] == [1, 2, 3]
    assert handheld.buffer.verify() == 3


def test_the_probe_reads_the_routes_meter_and_its_clock(handheld_factory):
    with iec_meter() as (port, face):
        handheld = handheld_factory(Probe(Protocol.IEC62056_21, port))
        page = handheld.post(CARD.format(10) + "/probe")
        expected = face.value("energy_import_kwh", "kWh")
    assert (page.status, page.location) == (303, CARD.format(20) + "?saved=10")
    [read] = handheld.reads()
    assert (read.meter, read.source) == (SERIAL, Source.HANDHELD_PROBE)
    register = read.values["energy_import_kwh"]
    assert (register.unit, register.obis) == ("kWh", "1-0:1.8.0")
    assert START <= register.value <= expected  # the register only moves forward
    assert expected - register.value < Decimal("0.01")
    assert read.collected_at == NOW
    assert abs(read.read_at - METER_CLOCK) < timedelta(seconds=10)  # the meter's own clock
    assert read.clock.meter_offset_s == Decimal(
        str(round((read.read_at - read.collected_at).total_seconds(), 3)))
    assert read.clock.meter_offset_s < -400
    assert handheld.store.visits(ROUTE.route_id)[10].value == str(register.value)
    assert handheld.buffer.verify() == 1


def test_a_probe_on_another_meter_is_refused_naming_the_serial_it_saw(handheld_factory):
    with iec_meter("LGZ-0099999999") as (port, _):
        handheld = handheld_factory(Probe(Protocol.IEC62056_21, port))
        page = handheld.post(CARD.format(10) + "/probe")
    assert page.status == 409
    assert f"The probe is on meter LGZ-0099999999, not {SERIAL}: nothing was saved" in text(
        page.body)
    assert handheld.reads() == [] and handheld.store.visits(ROUTE.route_id) == {}


def test_a_meter_that_does_not_answer_is_a_message_not_a_read(handheld_factory):
    with VirtualCable() as cable:  # a cable with nothing on the other end
        handheld = handheld_factory(Probe(Protocol.IEC62056_21, cable.device_path,
                                          timeout_s=0.3))
        page = handheld.post(CARD.format(10) + "/probe")
    assert page.status == 502
    assert "The meter did not answer" in text(page.body)
    assert handheld.reads() == []


def test_without_a_probe_or_a_register_to_take_the_probe_explains(handheld_factory):
    handheld = handheld_factory(Probe(Protocol.IEC62056_21, None))
    assert handheld.post(CARD.format(10) + "/probe").status == 503
    gas = Route("R-2", "C07", "hh-0001", NOW, (stop(1, meter=SERIAL, register="volume_m3"),))
    with iec_meter() as (port, _):
        handheld = handheld_factory(Probe(Protocol.IEC62056_21, port), route=gas)
        page = handheld.post("/routes/R-2/stops/1/probe")
    assert page.status == 422
    assert "gave no volume_m3" in text(page.body)


def test_a_full_buffer_saves_nothing_and_says_so(handheld_factory):
    handheld = handheld_factory(Probe(Protocol.IEC62056_21, None), budget_bytes=1)
    page = handheld.post(CARD.format(20) + "/manual", {"value": "150"})
    assert page.status == 507
    assert "buffer is full" in text(page.body)
    assert handheld.store.visits(ROUTE.route_id) == {}


def test_unknown_routes_and_stops_are_404(handheld):
    assert handheld.get("/routes/nope").status == 404
    assert handheld.get(CARD.format(99)).status == 404
    assert handheld.post(CARD.format(99) + "/manual", {"value": "1"}).status == 404


def test_cross_site_posts_and_foreign_host_names_are_refused(handheld):
    evil = handheld.post(CARD.format(20) + "/manual", {"value": "150"},
                         Origin="http://evil.example")
    assert evil.status == 403
    rebound = handheld.request("GET", "/", headers={"Host": f"evil.example:{handheld.server.port}"})
    assert rebound.status == 403
    own = f"http://127.0.0.1:{handheld.server.port}"
    assert urlsplit(own).netloc == f"127.0.0.1:{handheld.server.port}"
    assert handheld.post(CARD.format(20) + "/manual", {"value": "150"}, Origin=own).status == 303
    assert len(handheld.reads()) == 1


# --- the command's shell ---------------------------------------------------------------------


def free_port():
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def agent_config(tmp_path):
    generate_key_file(tmp_path / "collector.key")
    path = tmp_path / "edge-agent.toml"
    path.write_text('collector = "hh-0001"\n')
    return load_config(path)


def test_serve_loads_route_files_signs_reads_and_stops_cleanly(tmp_path):
    cfg = agent_config(tmp_path)
    section = HandheldSection(listen_port=free_port(), routes_path=tmp_path / "routes.sqlite")
    route_file = tmp_path / "route.json"
    route_file.write_bytes(encode_route(ROUTE))
    stop_serving = threading.Event()
    serving = threading.Thread(target=route_cli.serve, args=(cfg, section),
                               kwargs={"routes": [route_file], "stop": stop_serving})
    serving.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", section.listen_port)
                connection.request("POST", CARD.format(20) + "/manual", "value=150",
                                   {"Content-Type": "application/x-www-form-urlencoded"})
                assert connection.getresponse().status == 303
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the route page never came up"
                time.sleep(0.05)
    finally:
        stop_serving.set()
        serving.join(15)
    assert not serving.is_alive()
    with EdgeBuffer(cfg.buffer.path, collector="hh-0001") as buffer:
        assert buffer.verify() == 1
    with RouteStore(section.routes_path) as store:
        assert store.progress(ROUTE.route_id) == Progress(1, 3)


def test_the_route_inbox_keeps_good_routes_and_logs_bad_ones(tmp_path, caplog):
    with RouteStore(tmp_path / "routes.sqlite", collector="hh-0001") as store:
        inbox = route_cli.RouteInbox(store)
        inbox(b"{not json")
        inbox(encode_route(ROUTE))
        assert [r.route_id for r in store.routes()] == [ROUTE.route_id]
    assert "route message refused" in caplog.text


def test_a_config_without_a_handheld_section_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(route_cli, "load_config", lambda _path: SimpleNamespace(handheld=None))
    app = typer.Typer()
    app.command()(route_cli.route)
    assert CliRunner().invoke(app, []).exit_code == 2


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("192.168.1.20", False), ("handheld.local", False),
])
def test_loopback_is_recognised(host, loopback):
    assert is_loopback(host) is loopback
