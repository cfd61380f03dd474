"""An operator works a cycle in a real headless Chromium, against the real hub.

The hub serves its pages on a loopback port over a real store; the re-read
route goes through a real Mosquitto to the handheld's topic. The operator
logs in, reconciles the cycle and sees the meter that was not read, sends
it out on a re-read route, runs the edits and accepts the spike that holds
an account, bills the cycle, opens a bill, exports the cycle file, downloads
it and verifies it. Each page's screenshot is kept under
``test-artifacts/operator-walkthrough/`` (``$METERHUB_TEST_ARTIFACTS``) for
people to look at. The browser must be Debian's Chromium: this test fails
(never skips) when it is missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import update

from hub.reread_store import publish_route
from hub.store.tables import accounts
from protocols.broker_settings import BrokerSettings
from tests.api_fixtures import hub_settings, start_hub_api
from tests.test_edits_store import SCHEDULED, Fleet, bill_history, kwh
from tests.test_reconcile import seed_cycle
from tests.test_reread import receive_route

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-gpu", "--no-first-run", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("METERHUB_TEST_ARTIFACTS", ROOT / "test-artifacts")) \
    / "operator-walkthrough"
METERS = ["E-ONE", "E-TWO", "E-SPIKE", "E-GONE"]


def working_cycle(store) -> None:
    """C1 on RES-E1: three meters read (E-SPIKE far above its history), E-GONE not read."""
    seed_cycle(store, METERS, first=SCHEDULED)
    with store.begin() as conn:
        conn.execute(update(accounts).values(rate_code="RES-E1"))
    for meter in METERS:
        bill_history(store, meter, [str(1000 + 300 * n) for n in range(6)])  # last: 2500
    Fleet(store).send(kwh("E-ONE", "2800.000"), kwh("E-TWO", "2812.500"),
                      kwh("E-SPIKE", "9800.000"))


@pytest.fixture
def operator_at_the_hub(store, tmp_path, mosquitto):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required for the browser test (apt install chromium)"
    working_cycle(store)
    broker = BrokerSettings(port=mosquitto.port)
    settings = hub_settings(tmp_path, publish_route=lambda route: publish_route(
        route, broker, client_id="walkthrough-hub"))
    hub_server = start_hub_api(store, settings)
    hub = next(hub_server)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(20_000)
            try:
                yield hub, page, mosquitto
            finally:
                browser.close()
    finally:
        hub_server.close()


def snap(page: Page, name: str, db: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{db}-{name}.png", full_page=True)


def run_from_dashboard(page: Page, button: str) -> None:
    """Click a step's button on the dashboard and wait until the run shows done."""
    page.get_by_role("button", name=button).click()
    page.wait_for_url(re.compile(r"queued=\d+"))
    for _ in range(200):
        page.reload()
        latest = page.get_by_test_id("run-row").first
        if re.search(r"\b(done|failed)\b", latest.inner_text()):
            break
        page.wait_for_timeout(100)
    expect(page.get_by_test_id("run-row").first).to_contain_text("done")


def test_an_operator_works_a_cycle_from_the_browser(operator_at_the_hub, store_url):
    hub, page, broker = operator_at_the_hub
    db = "postgresql" if store_url.startswith("postgresql") else "sqlite"

    # Log in (the dashboard sends an anonymous visitor to the login form first).
    page.goto(f"{hub.url}/cycles/C1")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    snap(page, "01-login", db)
    page.get_by_label("User").fill("operator")
    page.get_by_label("Password").fill(hub.login_user("operator"))
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/cycles/C1$"))

    # Reconcile: one meter of route R1 has no read.
    run_from_dashboard(page, "Reconcile")
    expect(page.get_by_test_id("route-row")).to_contain_text("R1")
    snap(page, "02-dashboard", db)

    # The missing reads, and a re-read route to the handheld.
    page.get_by_role("link", name=re.compile("missing", re.IGNORECASE)).first.click()
    expect(page.get_by_test_id("missing-row")).to_have_count(1)
    expect(page.get_by_test_id("missing-row")).to_contain_text("E-GONE")
    page.get_by_label(re.compile("handheld|collector", re.IGNORECASE)).fill("hh-01")
    page.get_by_test_id("send-route").click()
    expect(page.get_by_test_id("flash")).to_contain_text("hh-01")
    snap(page, "03-missing-reads", db)
    route = receive_route(broker.port, "hh-01")
    assert [stop.meter for stop in route.stops] == ["E-GONE"]

    # The edits hold E-SPIKE's account; the operator accepts the spike with a reason.
    page.goto(f"{hub.url}/cycles/C1")
    run_from_dashboard(page, "Run edits")
    page.goto(f"{hub.url}/exceptions?cycle=C1&severity=blocking")
    row = page.get_by_test_id("exception-row").filter(has_text="E-SPIKE").first
    expect(row).to_be_visible()
    snap(page, "04-exceptions", db)
    while page.get_by_test_id("exception-row").filter(has_text="E-SPIKE").count():
        row = page.get_by_test_id("exception-row").filter(has_text="E-SPIKE").first
        row.get_by_role("textbox").fill("pool filled after the summer; customer confirmed")
        row.get_by_role("button", name=re.compile("^accept", re.IGNORECASE)).click()
        expect(page.get_by_test_id("flash")).to_be_visible()

    # Bill the cycle and open a bill.
    page.goto(f"{hub.url}/cycles/C1")
    run_from_dashboard(page, "Bill")
    page.goto(f"{hub.url}/bills/C1/A-E-SPIKE")
    expect(page.get_by_test_id("bill-total")).to_have_text(re.compile(r"\d"))
    expect(page.get_by_test_id("bill-line").first).to_be_visible()
    snap(page, "05-bill", db)

    # Export the cycle file, download it and verify it against its manifest.
    page.goto(f"{hub.url}/cycles/C1")
    run_from_dashboard(page, re.compile("^Export"))
    page.goto(f"{hub.url}/exports")
    export_row = page.get_by_test_id("export-row").first
    with page.expect_download() as download_info:
        export_row.get_by_role("link", name=re.compile(r"C1\.csv")).click()
    downloaded = Path(download_info.value.path())
    on_disk = next(hub.settings.exports_dir.glob("*/C1.csv"))
    assert hashlib.sha256(downloaded.read_bytes()).digest() == \
        hashlib.sha256(on_disk.read_bytes()).digest()
    export_row.get_by_test_id("verify-export").click()
    expect(page.get_by_test_id("export-status").first).to_contain_text(
        re.compile("verified", re.IGNORECASE))
    snap(page, "06-exports", db)

    # Collector health and the meter page with its chart, for the record.
    page.goto(f"{hub.url}/meters/E-SPIKE")
    expect(page.get_by_test_id("consumption-chart")).to_be_visible()
    snap(page, "07-meter", db)
    page.goto(f"{hub.url}/collectors")
    expect(page.get_by_test_id("collector-row").first).to_contain_text("gw-1")
    snap(page, "08-collectors", db)
