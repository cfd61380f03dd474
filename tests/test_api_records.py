"""The records API over real HTTP (SQLite and PostgreSQL): collectors, meters, bills, exports.

Reads arrive the real way (signed, chained, ingested, verified), bills are
computed by the billing step, exports written by the export step, and every
request goes through uvicorn with a real token.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import httpx
from sqlalchemy import select

from hub.api.app import create_app
from hub.edits.model import ReadKind
from hub.store.collector_status import record_status
from hub.store.tables import audit_log, bills, collectors, exports, reads
from protocols.mqtt_contract import Status
from protocols.signing import Signer, public_key_pem
from protocols.web_server import WebServer
from tests.test_billing_store import billed_cycle
from tests.test_edits_store import SCHEDULED, Fleet, bill_history, edits, kwh
from tests.test_reconcile import seed_cycle


def metered_history(store) -> None:
    """E-ONE: six billed cycles (P3 estimated, P2 overridden) and a signed read in C1;
    E-ROLL: a 6-dial register that rolls over between P1 and C1."""
    seed_cycle(store, ["E-ONE", "E-ROLL"], first=SCHEDULED)
    bill_history(store, "E-ONE", ["1000", "1300", "1600", "1900", "2200", "2500"],
                 kinds=[*[ReadKind.ACTUAL] * 3, ReadKind.ESTIMATED, ReadKind.OVERRIDE,
                        ReadKind.ACTUAL])
    bill_history(store, "E-ROLL", ["999500", "999900"])
    Fleet(store).send(kwh("E-ONE", "2800.000"), kwh("E-ROLL", "100.000"))
    edits(store)


def problem_locs(answer) -> list[list]:
    return [e["loc"] for e in answer.json()["errors"]]


# --- collectors ----------------------------------------------------------------------------

def test_collectors_show_their_health_from_the_last_status_message(hub_api):
    billed_cycle(hub_api.store)  # gw-1 sent reads
    with hub_api.store.begin() as conn:
        record_status(conn, "gw-1", Status("online", "edge 1.2", at=datetime.now(UTC),
                                           buffer_depth=7, last_seq=4, acked_through=4))
    with hub_api.client("viewer") as http:
        listing = http.get("/api/v1/collectors").json()
        one = http.get("/api/v1/collectors/gw-1").json()
        revoked_only = http.get("/api/v1/collectors", params={"status": "revoked"}).json()
        missing = http.get("/api/v1/collectors/gw-404")
        bad_status = http.get("/api/v1/collectors", params={"status": "asleep"})
    assert [c["id"] for c in listing["items"]] == ["gw-1"] and listing["total"] == 1
    assert one == listing["items"][0]
    assert (one["status"], one["last_seq"]) == ("active", 4)
    assert one["health"]["online"] is True
    assert (one["health"]["state"], one["health"]["version"]) == ("online", "edge 1.2")
    assert (one["health"]["buffer_depth"], one["health"]["acked_through"]) == (7, 4)
    assert revoked_only["items"] == []
    assert missing.status_code == 404 and "gw-404" in missing.json()["detail"]
    assert bad_status.status_code == 422 and problem_locs(bad_status) == [["query", "status"]]


def test_an_admin_enrols_and_revokes_a_collector_and_both_are_audited(hub_api):
    pem = public_key_pem(Signer.generate().public_key).decode()
    with hub_api.client("admin") as http:
        enrolled = http.post("/api/v1/collectors", json={"id": "gw-9", "public_key": pem})
        again = http.post("/api/v1/collectors", json={"id": "gw-9", "public_key": pem})
        revoked = http.post("/api/v1/collectors/gw-9/revoke", json={"reason": "stolen"})
        twice = http.post("/api/v1/collectors/gw-9/revoke", json={"reason": "stolen"})
        unknown = http.post("/api/v1/collectors/gw-404/revoke", json={"reason": "x"})
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["collector"]["id"] == "gw-9" and body["collector"]["status"] == "active"
    assert body["collector"]["health"]["online"] is False
    assert len(body["broker_password"]) >= 32 and "broker-config" in body["next_step"]
    assert again.status_code == 409 and "already enrolled" in again.json()["detail"]
    assert revoked.status_code == 200
    assert (revoked.json()["status"], revoked.json()["revoked_reason"]) == ("revoked", "stolen")
    assert twice.status_code == 409 and "already revoked" in twice.json()["detail"]
    assert unknown.status_code == 404
    with hub_api.store.connect() as conn:
        stored = conn.execute(select(collectors).where(collectors.c.id == "gw-9")).one()
        trail = conn.execute(select(audit_log).where(audit_log.c.action.like("collector.%"))
                             .order_by(audit_log.c.id)).all()
    assert stored.broker_password_hash.startswith("$7$")
    assert body["broker_password"] not in stored.broker_password_hash  # only its hash is kept
    assert [(t.action, t.actor) for t in trail] == [("collector.enrol", "token:test-admin"),
                                                    ("collector.revoke", "token:test-admin")]
    assert trail[1].reason == "stolen" and trail[1].after["status"] == "revoked"


def test_collector_changes_refuse_bad_input_naming_the_field_and_need_an_admin(hub_api):
    pem = public_key_pem(Signer.generate().public_key).decode()
    with hub_api.client("admin") as http:
        bad_key = http.post("/api/v1/collectors", json={"id": "gw-2", "public_key": "hello"})
        rsa_ish = http.post("/api/v1/collectors", json={"id": "gw-2", "public_key":
                                                         pem.replace("MCow", "MCox")})
        bad_id = http.post("/api/v1/collectors", json={"id": "gw 2", "public_key": pem})
        extra = http.post("/api/v1/collectors", json={"id": "gw-2", "public_key": pem,
                                                      "role": "admin"})
        blank = http.post("/api/v1/collectors/gw-2/revoke", json={"reason": "   "})
    assert bad_key.status_code == 422 and problem_locs(bad_key) == [["body", "public_key"]]
    assert "Ed25519 public key" in bad_key.json()["errors"][0]["msg"]
    assert rsa_ish.status_code == 422 and problem_locs(rsa_ish) == [["body", "public_key"]]
    assert bad_id.status_code == 422 and problem_locs(bad_id) == [["body", "id"]]
    assert "letters, digits" in bad_id.json()["errors"][0]["msg"]
    assert extra.status_code == 422 and problem_locs(extra) == [["body", "role"]]
    assert blank.status_code == 422 and problem_locs(blank) == [["body", "reason"]]
    enrol = {"id": "gw-3", "public_key": pem}
    with hub_api.client() as anonymous:
        for path in ("/collectors", "/collectors/gw-1", "/meters", "/meters/E-ONE",
                     "/meters/E-ONE/reads", "/meters/E-ONE/consumption", "/bills",
                     "/bills/C1/A-E-ONE", "/exports", "/exports/1", "/exports/1/file",
                     "/exports/1/manifest"):
            assert anonymous.get(f"/api/v1{path}").status_code == 401, path
        assert anonymous.post("/api/v1/collectors", json=enrol).status_code == 401
        assert anonymous.post("/api/v1/exports/1/verify").status_code == 401
    with hub_api.client("viewer") as viewer:
        assert viewer.post("/api/v1/collectors", json=enrol).status_code == 403
    with hub_api.client("operator") as operator:
        assert operator.get("/api/v1/collectors").status_code == 200
        assert operator.post("/api/v1/collectors", json=enrol).status_code == 403
        refused = operator.post("/api/v1/collectors/gw-3/revoke", json={"reason": "x"})
    assert refused.status_code == 403 and "needs admin" in refused.json()["detail"]
    with hub_api.store.connect() as conn:
        assert conn.execute(select(collectors.c.id)).scalars().all() == []


# --- meters and reads ----------------------------------------------------------------------

def test_meters_are_listed_searched_and_shown_with_their_installations(hub_api):
    metered_history(hub_api.store)
    with hub_api.client("viewer") as http:
        everything = http.get("/api/v1/meters").json()
        prefix = http.get("/api/v1/meters", params={"q": "e-o"}).json()
        by_account = http.get("/api/v1/meters", params={"account": "A-E-ROLL"}).json()
        water = http.get("/api/v1/meters", params={"service": "water"}).json()
        paged = http.get("/api/v1/meters", params={"limit": 1}).json()
        one = http.get("/api/v1/meters/E-ONE").json()
        missing = http.get("/api/v1/meters/E-404")
        wild = http.get("/api/v1/meters", params={"q": "E%"})
        service = http.get("/api/v1/meters", params={"service": "steam"})
    assert [m["serial"] for m in everything["items"]] == ["E-ONE", "E-ROLL"]
    assert [m["serial"] for m in prefix["items"]] == ["E-ONE"]
    assert [m["serial"] for m in by_account["items"]] == ["E-ROLL"]
    assert water["items"] == [] and water["total"] == 0
    assert (len(paged["items"]), paged["total"], paged["next_offset"]) == (1, 2, 1)
    assert (one["account"], one["multiplier"], one["unit"], one["dials"]) == \
        ("A-E-ONE", "1", "kWh", 6)
    assert one["current_account"]["id"] == "A-E-ONE"
    assert one["installations"] == [{"account": "A-E-ONE", "installed_on": "2020-01-01",
                                     "removed_on": None}]
    assert one["last_read_at"] == "2026-11-03T12:00:00Z"
    assert missing.status_code == 404
    assert wild.status_code == 422 and problem_locs(wild) == [["query", "q"]]
    assert service.status_code == 422 and problem_locs(service) == [["query", "service"]]


def test_a_meters_reads_carry_their_signed_provenance(hub_api):
    metered_history(hub_api.store)
    with hub_api.store.connect() as conn:
        stored = conn.execute(select(reads).where(reads.c.meter == "E-ONE")).one()
    with hub_api.client("viewer") as http:
        found = http.get("/api/v1/meters/E-ONE/reads").json()
        window = http.get("/api/v1/meters/E-ONE/reads", params={
            "from": "2026-11-03T13:00:00+01:00", "to": "2026-11-03T11:00:00Z"}).json()
        later = http.get("/api/v1/meters/E-ONE/reads",
                         params={"from": "2026-11-03T12:00:01Z"}).json()
        naive = http.get("/api/v1/meters/E-ONE/reads", params={"from": "2026-11-03T12:00:00"})
        missing = http.get("/api/v1/meters/E-404/reads")
    [read] = found["items"]
    assert (read["collector"], read["seq"], read["key_id"]) == ("gw-1", 1, stored.key_id)
    assert (read["hash"], read["prev_hash"]) == (stored.hash, stored.prev_hash)
    assert base64.b64decode(read["signature"]) == stored.sig
    assert (read["verify_status"], read["source"], read["meter_offset_s"]) == ("ok", "ami", "1.5")
    assert read["values"] == {"energy_import_kwh": {"value": "2800.000", "unit": "kWh",
                                                    "obis": "1.8.0"}}
    assert read["verified_at"] is not None and read["flags"] == []
    assert [r["seq"] for r in window["items"]] == []  # 12:00Z is neither ≥ 12:00Z+ nor ≤ 11:00Z
    assert later["total"] == 0
    assert naive.status_code == 422 and problem_locs(naive) == [["query", "from"]]
    assert missing.status_code == 404


def test_consumption_per_cycle_flags_estimates_and_overrides_and_rolls_over(hub_api):
    metered_history(hub_api.store)
    with hub_api.client("viewer") as http:
        recent = http.get("/api/v1/meters/E-ONE/consumption", params={"cycles": 4}).json()
        whole = http.get("/api/v1/meters/E-ONE/consumption").json()
        rolled = http.get("/api/v1/meters/E-ROLL/consumption").json()
        too_many = http.get("/api/v1/meters/E-ONE/consumption", params={"cycles": 61})
        none = http.get("/api/v1/meters/E-ONE/consumption", params={"cycles": 0})
        missing = http.get("/api/v1/meters/E-404/consumption")
    assert recent["main_register"] == "energy_import_kwh" and recent["unit"] == "kWh"
    assert [(p["cycle"], p["kind"]) for p in recent["points"]] == [
        ("P3", "estimated"), ("P2", "override"), ("P1", "actual"), ("C1", "actual")]
    assert [p["registers"][0]["used"] for p in recent["points"]] == \
        ["300", "300", "300", "300.000"]  # the oldest shown still has its use
    assert recent["points"][-1]["collector"] == "gw-1" and recent["points"][-1]["seq"] == 1
    assert len(whole["points"]) == 7 and whole["points"][0]["registers"][0]["used"] is None
    first, last = rolled["points"][-2:]
    assert (first["registers"][0]["rolled"], last["registers"][0]) == (False, {
        "name": "energy_import_kwh", "value": "100.000", "used": "200.000", "rolled": True})
    assert too_many.status_code == 422 and problem_locs(too_many) == [["query", "cycles"]]
    assert none.status_code == 422
    assert missing.status_code == 404


# --- bills ---------------------------------------------------------------------------------

def test_bills_are_listed_and_each_line_traces_to_the_signed_reads_it_came_from(hub_api):
    billed_cycle(hub_api.store)
    with hub_api.store.connect() as conn:
        signed = conn.execute(select(reads).where(reads.c.meter == "E-TWO")).one()
    with hub_api.client("viewer") as http:
        listing = http.get("/api/v1/bills", params={"cycle": "C1"}).json()
        one = http.get("/api/v1/bills", params={"account": "A-E-TWO"}).json()
        other_rate = http.get("/api/v1/bills", params={"rate_code": "RES-E2"}).json()
        bad = http.get("/api/v1/bills", params={"cycle": "C 1"})
        bill = http.get("/api/v1/bills/C1/A-E-TWO").json()
        missing = http.get("/api/v1/bills/C1/A-E-HELD")
    with hub_api.store.connect() as conn:
        totals = dict(conn.execute(select(bills.c.account, bills.c.total)).tuples().all())
    assert [b["account"] for b in listing["items"]] == ["A-E-ONE", "A-E-TWO"]
    assert {b["account"]: b["total"] for b in listing["items"]} == totals
    assert all(b["rate_code"] == "RES-E1" and b["line_count"] > 0 for b in listing["items"])
    assert [b["account"] for b in one["items"]] == ["A-E-TWO"] and other_rate["total"] == 0
    assert bad.status_code == 422 and problem_locs(bad) == [["query", "cycle"]]

    assert [line["position"] for line in bill["lines"]] == list(range(1, len(bill["lines"]) + 1))
    assert sum(Decimal(line["amount"]) for line in bill["lines"]) == Decimal(bill["total"])
    assert bill["determinants"]["consumption"] == {"energy_import_kwh": "312.500"}
    assert bill["days"] == 31 and bill["determinants"]["options"] == ["senior"]
    energy = next(line for line in bill["lines"] if line["determinant"] == "energy_import_kwh")
    cited = {(s["collector"], s["seq"]): s for s in energy["sources"]}
    assert (None, None) in cited  # the CIS's history read it was measured from
    current = cited[("gw-1", signed.seq)]
    assert current["signature"] == base64.b64encode(signed.sig).decode()
    assert (current["hash"], current["key_id"], current["verify_status"]) == \
        (signed.hash, signed.key_id, "ok")
    derived = [line for line in bill["lines"] if line["basis"]]
    assert derived and all(("gw-1", signed.seq) in {(s["collector"], s["seq"])
                                                    for s in line["sources"]}
                           for line in derived)
    [measure] = bill["measures"]
    assert (measure["meter"], measure["name"], measure["previous"], measure["current"],
            measure["used"], measure["multiplier"], measure["consumption"]) == \
        ("E-TWO", "energy_import_kwh", "2500", "2812.500", "312.500", "1", "312.500")
    assert missing.status_code == 404  # held: no bill


# --- exports -------------------------------------------------------------------------------

def test_an_export_downloads_verifies_and_a_tampered_file_fails_verification(hub_api):
    billed_cycle(hub_api.store)
    run = hub_api.run_step("C1", "export")
    assert run["status"] == "done", run["error"]
    export_id = run["result"]["export_id"]
    on_disk = hub_api.settings.exports_dir / str(export_id) / "C1.csv"
    with hub_api.client("viewer") as http:
        listing = http.get("/api/v1/exports", params={"cycle": "C1"}).json()
        shown = http.get(f"/api/v1/exports/{export_id}").json()
        download = http.get(f"/api/v1/exports/{export_id}/file")
        manifest = http.get(f"/api/v1/exports/{export_id}/manifest")
        refused = http.post(f"/api/v1/exports/{export_id}/verify")
    assert [e["id"] for e in listing["items"]] == [export_id] and listing["items"][0] == shown
    assert (shown["file_name"], shown["format"], shown["rows"]) == ("C1.csv", "csv", 2)
    assert shown["key_id"] == hub_api.settings.export_signer.key_id
    assert shown["verification"] == {"verified_at": None, "ok": None, "detail": None}
    assert download.status_code == 200
    assert download.content == on_disk.read_bytes()
    assert hashlib.sha256(download.content).hexdigest() == shown["sha256"]
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == 'attachment; filename="C1.csv"'
    assert manifest.json()["sha256"] == shown["sha256"]
    assert manifest.headers["content-type"] == "application/json"
    assert refused.status_code == 403

    with hub_api.client("operator") as http:
        good = http.post(f"/api/v1/exports/{export_id}/verify").json()
        on_disk.write_bytes(on_disk.read_bytes().replace(b"A-E-ONE", b"A-E-0NE"))
        bad = http.post(f"/api/v1/exports/{export_id}/verify").json()
        after = http.get(f"/api/v1/exports/{export_id}").json()
        on_disk.unlink()
        gone = http.get(f"/api/v1/exports/{export_id}/file")
        lost = http.post(f"/api/v1/exports/{export_id}/verify").json()
        unknown = http.post("/api/v1/exports/999/verify")
        zero = http.get("/api/v1/exports/0")
    assert good["ok"] is True and good["failures"] == [] and "2 rows" in good["detail"]
    assert bad["ok"] is False and bad["check"] == "sha256_mismatch"
    assert "SHA-256" in bad["detail"]
    assert after["verification"]["ok"] is False
    assert after["verification"]["verified_at"] == bad["verified_at"]
    assert after["verification"]["detail"].startswith("sha256_mismatch: ")
    assert gone.status_code == 404 and "no longer on disk" in gone.json()["detail"]
    assert (lost["ok"], lost["check"]) == (False, "missing_file")
    assert unknown.status_code == 404
    assert zero.status_code == 422 and problem_locs(zero) == [["path", "export_id"]]
    with hub_api.store.connect() as conn:
        row = conn.execute(select(exports)).one()
    assert (row.verified_ok, row.verify_detail.split(":")[0]) == (False, "missing_file")


def test_each_format_has_its_media_type_and_a_hub_without_a_key_cannot_verify(hub_api):
    billed_cycle(hub_api.store)
    ids = {fmt: hub_api.run_step("C1", "export", format=fmt)["result"]["export_id"]
           for fmt in ("jsonl", "fixed")}
    with hub_api.client("viewer") as http:
        jsonl = http.get(f"/api/v1/exports/{ids['jsonl']}/file")
        fixed = http.get(f"/api/v1/exports/{ids['fixed']}/file")
        newest_first = http.get("/api/v1/exports").json()
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    assert 'filename="C1.jsonl"' in jsonl.headers["content-disposition"]
    assert fixed.headers["content-type"].startswith("text/plain")
    assert [e["format"] for e in newest_first["items"]] == ["fixed", "jsonl"]

    keyless = create_app(hub_api.store, replace(hub_api.settings, export_signer=None))
    with WebServer(keyless, "127.0.0.1", 0, name="keyless hub") as server, httpx.Client(
            base_url=server.url, headers={
                "Authorization": f"Bearer {hub_api.tokens['operator']}"}) as http:
        answer = http.post(f"/api/v1/exports/{ids['jsonl']}/verify")
    assert answer.status_code == 409 and "export key" in answer.json()["detail"]
