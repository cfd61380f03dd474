"""Operator pages: a cycle's dashboard, its missing reads, re-read routes, the exceptions queue.

Logged in with a real session (POST /login) over real HTTP; every POST carries
the CSRF token scraped from the page, as a browser's form would.
"""

from __future__ import annotations

import html
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from hub.store.tables import audit_log, billing_reads
from tests.api_fixtures import csrf_of, logged_in
from tests.test_api_cycles import hub_with_broker, working_cycle
from tests.test_reread import receive_route


def flash_of(page: str) -> str:
    found = re.search(r'data-testid="flash">([^<]*)<', page)
    assert found, "no flash on the page"
    return html.unescape(found.group(1))


def rows(page: str, testid: str) -> list[str]:
    return re.findall(rf'data-testid="{testid}" data-\w+="([^"]+)"', page)


def test_an_operator_works_a_cycle_from_its_dashboard_and_missing_reads(hub_api):
    working_cycle(hub_api.store)
    with logged_in(hub_api, "operator") as http:
        cycles = http.get("/cycles").text
        before = http.get("/cycles/C1").text
        queued = http.post("/cycles/C1/run", data={"csrf": csrf_of(before),
                                                   "step": "reconcile"})
        run_id = int(parse_qs(urlsplit(queued.headers["location"]).query)["queued"][0])
        assert hub_api.wait_run(run_id)["status"] == "done"
        flashed = http.get(queued.headers["location"]).text
        dashboard = http.get("/cycles/C1").text
        busy_free = http.post("/cycles/C1/run", data={"csrf": csrf_of(before), "step": "dance"})
        forged = http.post("/cycles/C1/run", data={"step": "reconcile"})
        unknown = http.get("/cycles/NOPE")
        missing = http.get("/cycles/C1/missing").text
        no_broker = http.post("/cycles/C1/reread", data={"csrf": csrf_of(missing),
                                                         "collector": "hh-01"},
                              follow_redirects=True)
        bad = http.post("/cycles/C1/reread", data={"csrf": csrf_of(missing),
                                                   "collector": "hh 01"}, follow_redirects=True)
        echoed = http.get("/cycles/C1/missing", params={"error": "<script>x</script>"}).text
    assert queued.status_code == 303
    assert rows(cycles, "cycle-row")[0] == "C1"
    assert 'data-testid="no-routes"' in before and 'data-testid="run-reconcile"' in before
    assert flash_of(flashed) == f"Reconcile queued as run {run_id}."
    assert rows(dashboard, "route-row") == ["R1", "R2"]
    assert 'aria-valuenow="80"' in dashboard  # R1: four of five read
    assert 'data-testid="reconciled-at">2' in dashboard  # a time, not "never"
    assert 'href="/cycles/C1/missing"' in dashboard
    for step in ("reconcile", "edits", "bill", "export"):
        assert f'data-testid="run-{step}"' in dashboard
    assert f'data-run="{run_id}"' in dashboard and "operator" in dashboard
    assert busy_free.status_code == 422  # not a step
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert unknown.status_code == 404 and "There is no cycle NOPE" in unknown.text
    assert rows(missing, "missing-row") == ["E-MISSING", "E-DOG"]
    assert 'href="/meters/E-DOG"' in missing and "(dog)" in missing
    assert 'data-testid="send-route"' in missing and '<option value="gw-1">' in missing
    assert "no broker" in flash_of(no_broker.text)
    assert "not a collector id" in flash_of(bad.text)
    assert "<script>" not in echoed and 'data-testid="flash"' not in echoed


def test_sending_a_route_from_the_page_says_where_it_went(store, tmp_path, mosquitto):
    working_cycle(store)
    collector = f"hh-{secrets.token_hex(3)}"
    with hub_with_broker(store, tmp_path, mosquitto.port) as hub:
        assert hub.run_step("C1", "reconcile")["status"] == "done"
        with logged_in(hub, "operator") as http:
            token = csrf_of(http.get("/cycles/C1/missing").text)
            sent = http.post("/cycles/C1/reread", data={"csrf": token, "collector": collector},
                             follow_redirects=True)
    route = receive_route(mosquitto.port, collector)
    assert flash_of(sent.text) == (f"Route {route.route_id} with 1 meter sent to "
                                   f"{collector}.")
    assert [s.meter for s in route.stops] == ["E-MISSING"]


def test_an_operator_resolves_exceptions_from_the_queue_and_the_detail_page(hub_api):
    working_cycle(hub_api.store)
    for step in ("reconcile", "edits"):
        assert hub_api.run_step("C1", step)["status"] == "done"
    with logged_in(hub_api, "operator") as http:
        queue = http.get("/exceptions", params={"cycle": "C1", "rule": "spike"}).text
        token = csrf_of(queue)
        first, second, third = (int(i) for i in rows(queue, "exception-row"))
        back = html.unescape(re.search(r'name="back" value="([^"]+)"', queue).group(1))
        accepted = http.post(f"/exceptions/{first}/resolve", data={
            "csrf": token, "action": "accept", "reason": "customer confirmed", "back": back})
        after = http.get(accepted.headers["location"]).text
        blank = http.post(f"/exceptions/{second}/resolve", data={
            "csrf": token, "action": "accept", "reason": "  ", "back": back})
        twice = http.post(f"/exceptions/{first}/resolve", data={
            "csrf": token, "action": "reject", "reason": "again", "back": back},
            follow_redirects=True)
        detail = http.get(f"/exceptions/{third}").text
        overridden = http.post(f"/exceptions/{third}/resolve", data={
            "csrf": token, "action": "override", "reason": "photo of the dial",
            "register": "energy_import_kwh", "value": "2800.5", "back": f"/exceptions/{third}"},
            follow_redirects=True)
        no_csrf = http.post(f"/exceptions/{second}/resolve", data={
            "action": "accept", "reason": "ok"})
        elsewhere = http.post(f"/exceptions/{second}/resolve", data={
            "csrf": token, "action": "estimate", "reason": "history", "back": "//evil.example"})
    assert accepted.status_code == 303
    target = urlsplit(accepted.headers["location"])
    assert target.path == "/exceptions"
    assert parse_qs(target.query) == {"cycle": ["C1"], "status": ["open"], "rule": ["spike"],
                                      "offset": ["0"], "done": ["accepted"], "id": [str(first)]}
    assert flash_of(after) == f"Exception {first} accepted: the read stands."
    assert str(first) not in rows(after, "exception-row")
    assert blank.status_code == 422 and "Not done" in flash_of(blank.text)
    assert "reason" in flash_of(blank.text)
    assert "already decided" in flash_of(twice.text)
    assert 'data-testid="override-form"' in detail and 'value="9800.000"' in detail
    assert flash_of(overridden.text) == (f"Exception {third} overridden: the meter bills on "
                                         "the values given.")
    assert no_csrf.status_code == 403
    assert elsewhere.status_code == 303
    assert elsewhere.headers["location"].startswith(f"/exceptions/{second}?")
    with hub_api.store.connect() as conn:
        read = conn.execute(select(billing_reads.c.kind, billing_reads.c.registers).where(
            (billing_reads.c.meter == "E-SPIKE-3") & (billing_reads.c.cycle == "C1"))).one()
        decided = conn.execute(select(audit_log.c.actor, audit_log.c.action).where(
            audit_log.c.exception_id.is_not(None))).all()
    assert read == ("override", {"energy_import_kwh": "2800.5"})
    assert set(decided) == {("operator", "accept"), ("operator", "override"),
                            ("operator", "estimate")}


def test_a_viewer_sees_no_buttons_and_cannot_post(hub_api):
    working_cycle(hub_api.store)
    for step in ("reconcile", "edits"):
        assert hub_api.run_step("C1", step)["status"] == "done"
    with httpx.Client(base_url=hub_api.url) as anonymous:
        bounced = anonymous.get("/cycles/C1")
    with logged_in(hub_api, "viewer") as http:
        dashboard = http.get("/cycles/C1").text
        missing = http.get("/cycles/C1/missing").text
        queue = http.get("/exceptions").text
        some = rows(queue, "exception-row")[0]
        detail = http.get(f"/exceptions/{some}").text
        token = csrf_of(dashboard)  # the logout form's
        posts = [http.post("/cycles/C1/run", data={"csrf": token, "step": "edits"}),
                 http.post("/cycles/C1/reread", data={"csrf": token, "collector": "hh-01"}),
                 http.post(f"/exceptions/{some}/resolve", data={
                     "csrf": token, "action": "accept", "reason": "ok"})]
    assert bounced.status_code == 303
    assert bounced.headers["location"] == "/login?next=/cycles/C1"
    assert rows(dashboard, "route-row") == ["R1", "R2"]
    assert 'data-testid="cycle-actions"' not in dashboard
    assert dashboard.count("<button") == 1  # Log out
    assert rows(missing, "missing-row") and 'data-testid="send-route"' not in missing
    assert rows(queue, "exception-row") and 'data-testid="resolve-form"' not in queue
    assert 'data-testid="override-form"' not in detail
    assert [p.status_code for p in posts] == [403, 403, 403]
