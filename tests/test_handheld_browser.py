"""A technician's route walked in a real headless Chromium, against the real page and probe.

The page is served by uvicorn on a loopback port as on a handheld; the probe
is a simulated Landis+Gyr optical meter on a pty cable. The browser must be
Debian's Chromium: this test fails (it never skips) when it is missing, since
the page is only known to work in a browser that actually ran it.
"""

import re
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect, sync_playwright

from edge_agent.buffer import EdgeBuffer
from edge_agent.handheld_probe import Probe
from edge_agent.handheld_web import CONFIRMED_FLAG, HandheldServer, create_app
from edge_agent.route_store import Progress, RouteStore
from firmware_profiles import get_profile
from protocols.canonical import decode_read
from protocols.channels import Protocol
from protocols.read import Source
from protocols.route_message import Limits, PreviousRead, Route, RouteStop
from protocols.signing import Signer
from simulators.faceplate import Faceplate
from simulators.iec_meter import IecMeterSimulator
from simulators.meter_model import MeterSpec, Service
from simulators.serial_link import VirtualCable

PROFILE = get_profile("landis-gyr-zmd310")
OPTICAL = "LGZ-0056859504"
START = Decimal("12345.678")
ISSUED = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


def stop(sequence, meter, low, high, **extra):
    return RouteStop(
        sequence=sequence, meter=meter, account=f"ACC-{sequence}", service="electric",
        address=f"{sequence} Orchard Road", register="energy_import_kwh", unit="kWh", dials=6,
        previous=PreviousRead(Decimal(low) + 10, ISSUED - timedelta(days=31)),
        limits=Limits(Decimal(low), Decimal(high)), profile="landis-gyr-zmd310", **extra,
    )


ROUTE = Route("R-2026-11-C07-014", "C07", "hh-0001", ISSUED, (
    stop(1, OPTICAL, "12000", "13000", location_notes="meter room, key 7"),
    stop(2, "M-0002", "400", "480"),
    stop(3, "M-0003", "900", "990", hazards="Dog"),
))


@pytest.fixture
def walk(tmp_path):
    """The route page with a route loaded and an optical meter on the probe."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required for the browser test (apt install chromium)"
    face = Faceplate(MeterSpec(OPTICAL, Service.ELECTRIC, start_value=START))
    store = RouteStore(tmp_path / "routes.sqlite", collector="hh-0001")
    store.save(ROUTE)
    buffer = EdgeBuffer(tmp_path / "buffer.sqlite", collector="hh-0001", signer=Signer.generate())
    with VirtualCable() as cable, IecMeterSimulator(
        cable.meter_path, face, PROFILE.obis_channels, settings=PROFILE.iec
    ):
        probe = Probe(Protocol.IEC62056_21, cable.device_path)
        app = create_app(store, buffer, probe, allowed_hosts=["127.0.0.1"])
        with HandheldServer(app, "127.0.0.1", 0) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.set_default_timeout(15_000)
            try:
                yield server.url, page, store, buffer
            finally:
                browser.close()
    store.close()
    buffer.close()


def test_a_technician_walks_the_route_in_the_browser(walk):
    url, page, store, buffer = walk
    page.goto(url + "/")
    expect(page.get_by_text("0 of 3")).to_be_visible()
    page.get_by_role("link", name=re.compile(ROUTE.route_id)).click()
    expect(page.locator("#progress")).to_have_text(re.compile(r"0 of 3 done"))
    page.get_by_role("link", name="Next to do: stop 1").click()

    # Stop 1: the optical meter, read with the probe.
    expect(page.locator("#meter")).to_have_text(OPTICAL)
    expect(page.get_by_text("meter room, key 7")).to_be_visible()
    page.locator("#probe").click()
    expect(page.locator("#saved")).to_contain_text("Stop 1 saved: read 12345.")
    expect(page.locator("#progress")).to_contain_text("1 of 3 done")

    # Stop 2: a keyed read outside 400–480 is asked again, then kept when keyed the same.
    expect(page.locator("#meter")).to_have_text("M-0002")
    page.locator("#value").fill("4810")
    page.locator("#manual").click()
    expect(page.locator("#reenter")).to_contain_text("outside the expected range 400 – 480")
    expect(page.locator("#progress")).to_contain_text("1 of 3 done")
    page.locator("#confirm").fill("4810")
    page.locator("#manual").click()
    expect(page.locator("#saved")).to_contain_text("Stop 2 saved: read 4810")
    expect(page.locator("#progress")).to_contain_text("2 of 3 done")

    # Stop 3: the dog; a trouble code with a note.
    expect(page.locator("#meter")).to_have_text("M-0003")
    expect(page.locator(".hazard")).to_contain_text("Dog")
    page.locator("#code").select_option("dog")
    page.locator("#note").fill("loose in the yard, owner away")
    page.locator("#trouble").click()

    # Back on the route: done.
    expect(page.locator("#progress")).to_contain_text("3 of 3 done")
    expect(page.get_by_text("Route complete")).to_be_visible()
    expect(page.locator("#stop-2")).to_contain_text("read 4810")
    expect(page.locator("#stop-3")).to_contain_text("trouble: dog")
    page.goto(url + "/")
    expect(page.get_by_text("3 of 3")).to_be_visible()

    assert store.progress(ROUTE.route_id) == Progress(3, 3)
    assert store.visits(ROUTE.route_id)[3].note == "loose in the yard, owner away"
    assert buffer.verify() == 3
    probe_read, manual, trouble = (decode_read(s.data) for s in buffer.reads())
    assert (probe_read.meter, probe_read.source, probe_read.flags) == (
        OPTICAL, Source.HANDHELD_PROBE, ())
    assert START <= probe_read.values["energy_import_kwh"].value < START + 1
    assert (manual.meter, manual.source, manual.flags) == (
        "M-0002", Source.HANDHELD_MANUAL, (CONFIRMED_FLAG,))
    assert manual.values["energy_import_kwh"].value == Decimal(4810)
    assert (trouble.meter, trouble.source, trouble.flags, dict(trouble.values)) == (
        "M-0003", Source.HANDHELD_MANUAL, ("trouble_dog",), {})
