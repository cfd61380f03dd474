"""The whole re-read loop: the hub's missing meters reach a handheld, its reads close the gap.

Hub store → reconcile → re-read route published through a real Mosquitto →
the handheld's sync client receives it → the technician's page, served for
real and driven in headless Chromium, takes a probe read from a simulated
optical meter, a keyed read and a trouble report → each a signed read synced
back → the hub stores and verifies them → re-reconciliation turns the meters
from ``missing`` into ``read``, ``read`` and ``trouble``.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC

from playwright.sync_api import expect, sync_playwright

from edge_agent.handheld_probe import Probe
from edge_agent.handheld_web import HandheldServer, create_app
from edge_agent.route_store import RouteStore
from hub.reconcile import Status
from hub.reconcile_store import reconcile_cycle
from hub.reread_store import build_from_store, publish_route
from hub.verifier import BackgroundVerifier
from protocols.broker_settings import BrokerSettings
from protocols.channels import Protocol
from protocols.read import Source
from tests.sync_harness import Gateway, hub_thread, wait_until
from tests.test_handheld_browser import CHROMIUM_ARGS
from tests.test_handheld_web import PROFILE, iec_meter
from tests.test_reconcile import seed_cycle

OPTICAL = "LGZ-0056859504"
METERS = [OPTICAL, "M-0002", "M-0003"]


def test_reads_taken_on_the_handheld_close_the_cycles_gap(tmp_path, store, mosquitto):
    seed_cycle(store, METERS)
    handheld = Gateway(tmp_path / "hh", store, collector="hh-01", broker_port=mosquitto.port)
    with store.connect() as conn:
        route, before = build_from_store(conn, "C1", "hh-01", UTC)
    assert [m.status for m in before.meters] == [Status.MISSING] * 3
    publish_route(route, BrokerSettings(port=mosquitto.port))

    routes = RouteStore(tmp_path / "hh" / "routes.sqlite", collector="hh-01")
    with hub_thread(store, mosquitto.port), handheld.sync_thread(on_route=routes.save_payload), \
            handheld.buffer() as buffer, iec_meter(OPTICAL) as (probe_port, _face):
        wait_until(lambda: route.route_id in {r.route_id for r in routes.routes()}, 15,
                   "the retained route to reach the handheld")
        app = create_app(routes, buffer, Probe(Protocol.IEC62056_21, probe_port),
                         allowed_hosts=["127.0.0.1"])
        with HandheldServer(app, "127.0.0.1", 0) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                                 args=CHROMIUM_ARGS)
            try:
                walk_the_route(browser.new_page(), server.url, route.route_id)
            finally:
                browser.close()
            assert routes.progress(route.route_id).done == 3
        wait_until(lambda: handheld.acked() == 3, 20, "the handheld's reads to be acked")
    BackgroundVerifier(store, processes=1).verify_pending()
    with store.connect() as conn:
        after = reconcile_cycle(conn, "C1", UTC)
    by_meter = {m.meter: m for m in after.meters}
    assert by_meter[OPTICAL].status is Status.READ
    assert by_meter[OPTICAL].billing_read.source is Source.HANDHELD_PROBE
    assert by_meter["M-0002"].status is Status.READ
    assert by_meter["M-0002"].billing_read.source is Source.HANDHELD_MANUAL
    assert by_meter["M-0003"].status is Status.TROUBLE
    assert by_meter["M-0003"].trouble == ("dog",)
    assert PROFILE.id == "landis-gyr-zmd310"


def walk_the_route(page, url: str, route_id: str) -> None:
    """What the technician does: probe the first meter, key the second, report the third."""
    page.set_default_timeout(15_000)
    page.goto(url + "/")
    page.get_by_role("link", name=re.compile(route_id)).click()
    expect(page.locator("#progress")).to_have_text(re.compile(r"0 of 3 done"))
    page.get_by_role("link", name="Next to do: stop 1").click()
    expect(page.locator("#meter")).to_have_text(OPTICAL)
    page.locator("#probe").click()
    expect(page.locator("#saved")).to_contain_text("Stop 1 saved")
    expect(page.locator("#meter")).to_have_text("M-0002")
    expect(page.locator(".hazard")).to_contain_text("dog")  # from the CIS's route file
    page.locator("#value").fill("4321.5")
    page.locator("#manual").click()
    expect(page.locator("#saved")).to_contain_text("Stop 2 saved: read 4321.5")
    expect(page.locator("#meter")).to_have_text("M-0003")
    page.locator("#code").select_option("dog")
    page.locator("#note").fill("gate open, dog loose")
    page.locator("#trouble").click()
    expect(page.locator("#progress")).to_contain_text("3 of 3 done")
