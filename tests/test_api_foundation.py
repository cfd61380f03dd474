"""The API's common ground: who gets in, error shapes, cycle runs, the request audit."""

from __future__ import annotations

from sqlalchemy import select

from hub.store.tables import audit_log
from tests.test_billing_store import billed_cycle
from tests.test_reconcile import seed_cycle


def test_nobody_gets_in_without_a_token_and_a_bad_token_is_refused(hub_api):
    with hub_api.client() as http:
        answer = http.get("/api/v1/runs/1")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["status"] == 401
        forged = http.get("/api/v1/runs/1", headers={"Authorization": "Bearer mh_forged"})
        assert forged.status_code == 401


def test_a_viewer_cannot_start_a_cycle_step_and_the_attempt_is_audited(hub_api):
    billed_cycle(hub_api.store)
    with hub_api.client("viewer") as http:
        answer = http.post("/api/v1/cycles/C1/runs", json={"step": "edits"})
    assert answer.status_code == 403
    assert "needs operator" in answer.json()["detail"]
    with hub_api.store.connect() as conn:
        last = conn.execute(select(audit_log).order_by(audit_log.c.id.desc())).first()
    assert (last.actor, last.action, last.reason) == ("token:test-viewer", "http.post",
                                                       "/api/v1/cycles/C1/runs")
    assert last.after["status"] == 403


def test_validation_errors_name_the_field(hub_api):
    with hub_api.client("operator") as http:
        answer = http.post("/api/v1/cycles/C1/runs", json={"step": "dance"})
        listing = http.get("/api/v1/cycles/C1/runs", params={"limit": 0})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["body", "step"]
    assert listing.status_code == 422
    assert listing.json()["errors"][0]["loc"] == ["query", "limit"]


def test_an_operator_runs_each_cycle_step_and_reads_its_result(hub_api):
    first = billed_cycle(hub_api.store)
    reconciled = hub_api.run_step("C1", "reconcile")
    assert reconciled["status"] == "done", reconciled["error"]
    assert reconciled["result"]["meters"] == 4
    edits = hub_api.run_step("C1", "edits")
    assert edits["status"] == "done"
    assert [h["account"] for h in edits["result"]["held"]] == ["A-E-HELD"]
    bill = hub_api.run_step("C1", "bill")
    assert bill["status"] == "done"
    assert bill["result"]["billed"] == first.billed
    assert bill["result"]["total"] == f"{first.total:.2f}"
    export = hub_api.run_step("C1", "export", format="jsonl")
    assert export["status"] == "done", export["error"]
    assert export["result"]["rows"] == first.billed
    assert (hub_api.settings.exports_dir / str(export["result"]["export_id"]) /
            export["result"]["file"]).exists()
    with hub_api.client("viewer") as http:
        runs = http.get("/api/v1/cycles/C1/runs", params={"limit": 2}).json()
    assert [r["step"] for r in runs["items"]] == ["export", "bill"]
    assert (runs["total"], runs["next_offset"]) == (4, 2)


def test_a_second_step_of_a_cycle_waits_for_the_first(hub_api):
    billed_cycle(hub_api.store)
    hub_api.runner.stop()  # nothing is taken off the queue now
    with hub_api.client("operator") as http:
        first = http.post("/api/v1/cycles/C1/runs", json={"step": "edits"})
        second = http.post("/api/v1/cycles/C1/runs", json={"step": "bill"})
        unknown = http.post("/api/v1/cycles/NOPE/runs", json={"step": "bill"})
    assert first.status_code == 202
    assert second.status_code == 409
    assert f"run {first.json()['id']}" in second.json()["detail"]
    assert unknown.status_code == 404


def test_a_failing_step_fails_its_run_with_the_reason_and_the_next_one_runs(hub_api):
    seed_cycle(hub_api.store, ["E-ONE"])
    failed = hub_api.run_step("C1", "export")
    assert failed["status"] == "failed"
    assert "no bills" in failed["error"]
    assert hub_api.run_step("C1", "reconcile")["status"] == "done"
