"""The record pages over real HTTP with a real login (SQLite and PostgreSQL).

A person logs in with the form, reads the pages, and posts their forms with
the CSRF token scraped from the page, as a browser would; a form posted
without it is refused.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html import unescape

import httpx
from sqlalchemy import select

from hub.store.collector_status import record_status
from hub.store.tables import audit_log, collectors, exports
from hub.web.chart import HATCH_ID
from hub.web.render import money
from protocols.mqtt_contract import Status
from tests.api_fixtures import csrf_of, logged_in
from tests.test_api_records import metered_history
from tests.test_billing_store import billed_cycle

SVG = "{http://www.w3.org/2000/svg}"


def rows(html: str, testid: str) -> list[str]:
    return re.findall(rf'<tr[^>]*data-testid="{testid}".*?</tr>', html, re.S)


def flash(html: str) -> str | None:
    found = re.search(r'data-testid="flash">(.*?)</div>', html, re.S)
    return unescape(found.group(1)) if found else None


def test_collector_health_and_an_admin_revokes_with_a_reason(hub_api):
    with httpx.Client(base_url=hub_api.url) as anonymous:  # no session: log in first
        for path in ("/collectors", "/meters", "/meters/E-ONE", "/bills", "/bills/C1/A",
                     "/exports"):
            answer = anonymous.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=/")
        posted = anonymous.post("/collectors/gw-1/revoke", data={"reason": "x"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login")
    billed_cycle(hub_api.store)
    with hub_api.store.begin() as conn:
        record_status(conn, "gw-1", Status("online", "edge 1.2", at=datetime.now(UTC),
                                           buffer_depth=7, acked_through=4))
    with logged_in(hub_api, "operator") as operator:
        seen = operator.get("/collectors").text
        assert operator.post("/collectors/gw-1/revoke", data={
            "reason": "x", "csrf": csrf_of(seen)}).status_code == 403  # not an admin
    [row] = rows(seen, "collector-row")
    assert "gw-1" in row and 'badge online' in row and ">7<" in row and ">4<" in row
    assert 'data-testid="revoke-form"' not in seen
    with logged_in(hub_api, "admin") as admin:
        page = admin.get("/collectors").text
        assert 'data-testid="revoke-form"' in page
        forged = admin.post("/collectors/gw-1/revoke", data={"reason": "stolen"})
        blank = admin.post("/collectors/gw-1/revoke", data={"reason": " ", "csrf": csrf_of(page)})
        done = admin.post("/collectors/gw-1/revoke", data={"reason": "stolen from the pole",
                                                           "csrf": csrf_of(page)})
        again = admin.post("/collectors/gw-1/revoke", data={"reason": "again",
                                                            "csrf": csrf_of(page)})
        after = admin.get(done.headers["location"]).text
        echoed = admin.get("/collectors?done=<script>alert(1)</script>").text
    assert forged.status_code == 403
    assert (blank.status_code, blank.headers["location"]) == (303,
                                                              "/collectors?done=reason-required")
    assert (done.status_code, done.headers["location"]) == (303, "/collectors?done=revoked")
    assert again.headers["location"] == "/collectors?done=already-revoked"
    assert flash(after).startswith("Collector revoked")
    assert "revoked" in rows(after, "collector-row")[0] and "stolen from the pole" in after
    assert flash(echoed) is None and "<script>alert" not in echoed
    with hub_api.store.connect() as conn:
        stored = conn.execute(select(collectors.c.status, collectors.c.revoked_reason)).one()
    assert tuple(stored) == ("revoked", "stolen from the pole")


def test_the_meter_page_charts_use_with_estimates_hatched_and_shows_read_provenance(hub_api):
    metered_history(hub_api.store)
    with logged_in(hub_api, "viewer") as http:
        listing = http.get("/meters", params={"q": "e-r"}).text
        nonsense = http.get("/meters", params={"q": "E <1>"}).text
        page = http.get("/meters/E-ONE").text
        missing = http.get("/meters/E-404")
    assert [re.search(r'data-meter="([^"]+)"', r).group(1)
            for r in rows(listing, "meter-row")] == ["E-ROLL"]
    assert 'href="/meters/E-ROLL"' in listing
    assert rows(nonsense, "meter-row") == [] and "only letters" in flash(nonsense)
    assert missing.status_code == 404 and "E-404" in missing.text

    svg = ET.fromstring(re.search(r"<svg .*?</svg>", page, re.S).group(0))
    assert svg.get("data-testid") == "consumption-chart"
    bars = svg.findall(f".//{SVG}rect[@class]")
    bars = [b for b in bars if b.get("class", "").startswith("chart-bar ")]
    assert [b.get("data-kind") for b in bars] == \
        ["actual", "actual", "actual", "estimated", "override", "actual", "actual"]
    estimated = [b for b in bars if b.get("data-kind") == "estimated"]
    assert estimated[0].get("fill") == f"url(#{HATCH_ID})"
    assert all(b.get("fill") != f"url(#{HATCH_ID})" for b in bars if b not in estimated)
    assert svg.findall(f".//{SVG}circle[@class='override-mark']")
    titles = [t.text for t in svg.iter(f"{SVG}title")]
    assert any("C1 · 300.000 kWh · actual" in (t or "") for t in titles)

    [read] = rows(page, "read-row")
    assert 'id="read-gw-1-1"' in read and "gw-1 · 1" in read and "verified ✓" in read


def test_the_bill_page_shows_each_line_and_the_reads_behind_it(hub_api):
    billed_cycle(hub_api.store)
    with logged_in(hub_api, "viewer") as http:
        listing = http.get("/bills", params={"cycle": "C1"}).text
        page = http.get("/bills/C1/A-E-ONE").text
        bill = http.get("/api/v1/bills/C1/A-E-ONE").json()  # the session works on the API
        missing = http.get("/bills/C1/A-E-HELD")
    assert len(rows(listing, "bill-row")) == 2
    assert 'href="/bills/C1/A-E-ONE"' in listing
    total = re.search(r'data-testid="bill-total">([^<]+)<', page).group(1)
    assert total == money(bill["total"])
    assert len(rows(page, "bill-line")) == len(bill["lines"])
    assert 'href="/meters/E-ONE#read-gw-1-1"' in page
    assert "2500" in page and "2800.000" in page and "300.000" in page  # the determinant
    assert missing.status_code == 404


def test_an_operator_verifies_an_export_from_the_page(hub_api):
    billed_cycle(hub_api.store)
    export_id = hub_api.run_step("C1", "export")["result"]["export_id"]
    on_disk = hub_api.settings.exports_dir / str(export_id) / "C1.csv"
    with logged_in(hub_api, "viewer") as viewer:
        seen = viewer.get("/exports").text
        refused = viewer.post(f"/exports/{export_id}/verify", data={"csrf": csrf_of(seen)})
        download = viewer.get(f"/api/v1/exports/{export_id}/file")
    [row] = rows(seen, "export-row")
    assert 'data-testid="verify-export"' not in row and "not checked yet" in row
    assert f'href="/api/v1/exports/{export_id}/file"' in row and ">C1.csv<" in row
    assert refused.status_code == 403
    assert download.content == on_disk.read_bytes()
    with logged_in(hub_api, "operator") as operator:
        page = operator.get("/exports").text
        assert 'data-testid="verify-export"' in page
        forged = operator.post(f"/exports/{export_id}/verify")
        verified = operator.post(f"/exports/{export_id}/verify", data={"csrf": csrf_of(page)})
        good = operator.get(verified.headers["location"]).text
        on_disk.write_bytes(on_disk.read_bytes() + b"x")
        failed = operator.post(f"/exports/{export_id}/verify", data={"csrf": csrf_of(page)})
        bad = operator.get(failed.headers["location"]).text
    assert forged.status_code == 403
    assert verified.status_code == 303
    assert verified.headers["location"] == f"/exports?done=verified&export={export_id}"
    assert "verified ✓" in flash(good)
    assert re.search(r'data-testid="export-status"[^>]*>verified ✓', good)
    assert "FAILED verification: sha256_mismatch" in flash(bad)
    assert re.search(r'data-testid="export-status">FAILED', bad)
    with hub_api.store.connect() as conn:
        assert conn.execute(select(exports.c.verified_ok)).scalar_one() is False


def test_a_user_name_with_too_many_wrong_passwords_waits_even_with_the_right_one(hub_api):
    operator, viewer = hub_api.login_user("operator"), hub_api.login_user("viewer")
    with httpx.Client(base_url=hub_api.url, timeout=30) as http:
        for _ in range(5):
            wrong = http.post("/login", data={"user": "operator", "password": "not-the-one-1"})
            assert wrong.status_code == 401
        right = http.post("/login", data={"user": "operator", "password": operator})
        other = http.post("/login", data={"user": "viewer", "password": viewer})
    assert right.status_code == 429
    assert "Too many wrong passwords" in right.text
    assert int(right.headers["retry-after"]) > 60
    assert other.status_code == 303  # another name is not held up
    with hub_api.store.connect() as conn:
        actions = [row.action for row in conn.execute(
            select(audit_log.c.action).where(audit_log.c.action.like("login%")))]
    assert actions.count("login.failed") == 5 and "login.throttled" in actions
