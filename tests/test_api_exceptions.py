"""API: the exceptions queue — list, read one, decide (accept, reject, estimate, override).

Real HTTP against the real app over SQLite and PostgreSQL; the cycle's reads
arrive signed through ingest, and the steps run on the real cycle runner.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from hub.store.tables import audit_log, bills
from tests.test_api_cycles import SPIKES, working_cycle

ORDER = {"blocking": 0, "warning": 1, "info": 2}


def edited_cycle(hub_api) -> None:
    working_cycle(hub_api.store)
    for step in ("reconcile", "edits"):
        assert hub_api.run_step("C1", step)["status"] == "done"


def open_ids(http, **filters) -> list[int]:
    answer = http.get("/api/v1/exceptions", params={"cycle": "C1", "status": "open", **filters,
                                                    "limit": 500})
    assert answer.status_code == 200, answer.text
    return [e["id"] for e in answer.json()["items"]]


def test_the_queue_lists_most_severe_first_filters_and_pages_and_shows_one(hub_api):
    edited_cycle(hub_api)
    with hub_api.client("viewer") as http:
        everything = http.get("/api/v1/exceptions", params={"cycle": "C1"}).json()
        spikes = http.get("/api/v1/exceptions", params={"rule": "spike"}).json()
        one = http.get("/api/v1/exceptions", params={"meter": "E-SPIKE-2", "severity":
                                                     "blocking", "status": "open"}).json()
        paged = http.get("/api/v1/exceptions", params={"limit": 2, "offset": 1}).json()
        by_account = http.get("/api/v1/exceptions", params={"account": "A-E-MISSING"}).json()
        bad_status = http.get("/api/v1/exceptions", params={"status": "closed"})
        bad_rule = http.get("/api/v1/exceptions", params={"rule": "Spike!"})
        [spike] = open_ids(http, meter="E-SPIKE-1", rule="spike")
        found = http.get(f"/api/v1/exceptions/{spike}").json()
        missing = http.get("/api/v1/exceptions/999999")
        zero = http.get("/api/v1/exceptions/0")
    with hub_api.client() as http:
        anonymous = http.get(f"/api/v1/exceptions/{spike}")
    items = everything["items"]
    assert everything["total"] == len(items) > len(SPIKES)
    assert [e["severity"] for e in items] == sorted((e["severity"] for e in items),
                                                    key=ORDER.__getitem__)
    assert {e["meter"] for e in spikes["items"]} == set(SPIKES)
    assert all(e["rule"] == "spike" and e["open"] for e in spikes["items"])
    assert one["total"] == len(one["items"]) >= 1
    assert {(e["meter"], e["severity"]) for e in one["items"]} == {("E-SPIKE-2", "blocking")}
    assert [e["id"] for e in paged["items"]] == [e["id"] for e in items[1:3]]
    assert (paged["total"], paged["next_offset"]) == (everything["total"], 3)
    assert {e["rule"] for e in by_account["items"]} == {"estimated_missing"}
    assert bad_status.status_code == 422
    assert bad_status.json()["errors"][0]["loc"] == ["query", "status"]
    assert bad_rule.json()["errors"][0]["loc"] == ["query", "rule"]
    exception = found["exception"]
    assert (exception["meter"], exception["rule"], exception["status"]) == (
        "E-SPIKE-1", "spike", "open")
    assert exception["read_ref"] == "read:gw-1:2"
    read = found["billing_read"]
    assert (read["kind"], read["collector"], read["seq"]) == ("actual", "gw-1", 2)
    assert read["registers"] == {"energy_import_kwh": "9800.000"}
    assert found["trail"] == []
    assert missing.status_code == 404 and missing.json()["detail"] == "exception 999999 not found"
    assert zero.status_code == 422 and zero.json()["errors"][0]["loc"] == [
        "path", "exception_id"]
    assert anonymous.status_code == 401


def test_accepting_releases_the_held_account_and_the_next_bill_bills_it(hub_api):
    edited_cycle(hub_api)
    assert hub_api.run_step("C1", "bill")["status"] == "done"
    with hub_api.client("operator") as http:
        blocking = open_ids(http, meter="E-SPIKE-1", severity="blocking")
        answers = [http.post(f"/api/v1/exceptions/{i}/resolve", json={
            "action": "accept", "reason": "pool filled; customer confirmed"})
            for i in blocking]
        again = http.post(f"/api/v1/exceptions/{blocking[0]}/resolve",
                          json={"action": "accept", "reason": "twice"})
        detail = http.get(f"/api/v1/exceptions/{blocking[0]}").json()
    with hub_api.client("viewer") as http:
        viewer = http.post(f"/api/v1/exceptions/{blocking[1 % len(blocking)]}/resolve",
                           json={"action": "accept", "reason": "x"})
    with hub_api.client() as http:
        anonymous = http.post(f"/api/v1/exceptions/{blocking[0]}/resolve",
                              json={"action": "accept", "reason": "x"})
    assert [a.status_code for a in answers] == [200] * len(blocking), answers[0].text
    done = answers[0].json()
    assert (done["action"], done["closed"], done["exception"]["status"]) == (
        "accept", [blocking[0]], "accepted")
    assert done["exception"]["resolved_by"] == "token:test-operator"
    assert done["billing_read"]["registers"] == {"energy_import_kwh": "9800.000"}
    assert again.status_code == 409 and "already accepted" in again.json()["detail"]
    assert (viewer.status_code, anonymous.status_code) == (403, 401)
    assert [(e["action"], e["actor"], e["reason"]) for e in detail["trail"]] == [
        ("accept", "token:test-operator", "pool filled; customer confirmed")]
    assert hub_api.run_step("C1", "bill")["status"] == "done"
    with hub_api.store.connect() as conn:
        billed = set(conn.execute(select(bills.c.account)).scalars())
        records = conn.execute(select(audit_log).where(
            audit_log.c.reason.like("/api/v1/exceptions/%"))).all()
        decision = conn.execute(select(audit_log).where(
            audit_log.c.id == done["audit_id"])).one()
    assert "A-E-SPIKE-1" in billed and "A-E-SPIKE-2" not in billed
    assert (decision.action, decision.exception_id, decision.actor) == (
        "accept", blocking[0], "token:test-operator")
    assert {(r.action, r.after["status"]) for r in records} == {
        ("http.post", 200), ("http.post", 409), ("http.post", 403), ("http.post", 401)}


def test_reject_estimate_and_override_do_what_the_edits_say(hub_api):
    edited_cycle(hub_api)
    with hub_api.client("operator") as http:
        reject, estimate, override = (open_ids(http, meter=m, rule="spike")[0] for m in SPIKES)
        rejected = http.post(f"/api/v1/exceptions/{reject}/resolve", json={
            "action": "reject", "reason": "implausible on a flat"}).json()
        estimated = http.post(f"/api/v1/exceptions/{estimate}/resolve", json={
            "action": "estimate", "reason": "meter to be exchanged",
            "method": "average_daily_usage"}).json()
        overridden = http.post(f"/api/v1/exceptions/{override}/resolve", json={
            "action": "override", "reason": "photo of the dial: 2 800",
            "values": {"energy_import_kwh": "2800"}}).json()
        left_on_spike_1 = open_ids(http, meter="E-SPIKE-1")
    assert rejected["billing_read"] is None  # the meter waits for a re-read
    assert len(rejected["closed"]) > 1 and reject in rejected["closed"]
    assert left_on_spike_1 == []
    read = estimated["billing_read"]
    assert (read["kind"], read["method"], read["reason"]) == (
        "estimated", "average_daily_usage", "meter to be exchanged")
    assert Decimal("2700") < Decimal(read["registers"]["energy_import_kwh"]) < Decimal("2900")
    read = overridden["billing_read"]
    assert (read["kind"], read["registers"], read["audit_id"]) == (
        "override", {"energy_import_kwh": "2800"}, overridden["audit_id"])
    assert hub_api.run_step("C1", "reconcile")["status"] == "done"
    with hub_api.client("viewer") as http:
        needing = http.get("/api/v1/cycles/C1/meters", params={"needs_read": "true"}).json()
    assert "E-SPIKE-1" in {m["meter"] for m in needing["items"]}


def test_a_decision_that_cannot_be_made_is_refused_precisely(hub_api):
    edited_cycle(hub_api)
    with hub_api.client("operator") as http:
        [spike] = open_ids(http, meter="E-SPIKE-1", rule="spike")
        [estimate] = open_ids(http, meter="E-MISSING")

        def refused(exception_id: int, body: dict):
            answer = http.post(f"/api/v1/exceptions/{exception_id}/resolve", json=body)
            assert answer.status_code == 422, answer.text
            return answer.json()

        blank = refused(spike, {"action": "accept", "reason": "   "})
        long = refused(spike, {"action": "accept", "reason": "x" * 1001})
        control = refused(spike, {"action": "accept", "reason": "ok\x00"})
        values = refused(spike, {"action": "accept", "reason": "ok",
                                 "values": {"energy_import_kwh": "1"}})
        method = refused(spike, {"action": "reject", "reason": "ok",
                                 "method": "interpolation"})
        bare = refused(spike, {"action": "override", "reason": "ok"})
        not_decimal = refused(spike, {"action": "override", "reason": "ok",
                                      "values": {"energy_import_kwh": "1e3"}})
        negative = refused(spike, {"action": "override", "reason": "ok",
                                   "values": {"energy_import_kwh": "-5"}})
        action = refused(spike, {"action": "ignore", "reason": "ok"})
        extra = refused(spike, {"action": "accept", "reason": "ok", "by": "someone"})
        domain = refused(estimate, {"action": "reject", "reason": "wrong"})
        unknown = http.post("/api/v1/exceptions/999999/resolve",
                            json={"action": "accept", "reason": "ok"})
        still = open_ids(http, meter="E-SPIKE-1", rule="spike")
    assert blank["errors"][0]["loc"] == ["body", "reason"]
    assert long["errors"][0]["loc"] == control["errors"][0]["loc"] == ["body", "reason"]
    assert values["errors"][0]["loc"] == ["body", "values"]
    assert "override only" in values["errors"][0]["msg"]
    assert method["errors"][0]["loc"] == ["body", "method"]
    assert bare["errors"][0]["loc"] == ["body", "values"]
    assert not_decimal["errors"][0]["loc"] == ["body", "values", "energy_import_kwh"]
    assert "cannot be negative" in negative["detail"]
    assert action["errors"][0]["loc"] == ["body", "action"]
    assert extra["errors"][0]["loc"] == ["body", "by"]
    assert domain["errors"][0]["loc"] == ["body", "action"]
    assert "estimated billing read" in domain["detail"]
    assert unknown.status_code == 404
    assert still == [spike]  # nothing refused changed anything
