"""API: billing cycles — the list, a cycle's dashboard, its meters, and re-read routes.

Real HTTP against the real app (uvicorn on a loopback port) over SQLite and
PostgreSQL; re-read routes go through a real Mosquitto broker.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import insert, select, update

from hub.reread_store import publish_route
from hub.store.tables import accounts, audit_log, bills, route_stops, routes
from protocols.broker_settings import BrokerSettings
from tests.api_fixtures import HubApi, hub_settings, start_hub_api
from tests.test_edits_store import NOW, SCHEDULED, Fleet, bill_history, kwh
from tests.test_reconcile import seed_cycle
from tests.test_reread import receive_route

SPIKES = ["E-SPIKE-1", "E-SPIKE-2", "E-SPIKE-3"]
METERS = ["E-READ", *SPIKES, "E-MISSING", "E-DOG", "E-GONE"]


def working_cycle(store) -> Fleet:
    """C1 as an operator meets it: routes R1 (read, three spikes, missing) and R2 (trouble,
    inactive), all on RES-E1 with six months of bills (~10 kWh a day)."""
    seed_cycle(store, METERS, first=SCHEDULED)
    with store.begin() as conn:
        conn.execute(update(accounts).values(rate_code="RES-E1"))
        conn.execute(update(accounts).where(accounts.c.id == "A-E-GONE")
                     .values(status="closed"))
        conn.execute(insert(routes).values(id="R2", cycle="C1", updated_at=NOW))
        conn.execute(update(route_stops).where(route_stops.c.meter.in_(["E-DOG", "E-GONE"]))
                     .values(route="R2"))
    for meter in METERS:
        bill_history(store, meter, [str(1000 + 300 * n) for n in range(6)])  # last: 2500
    fleet = Fleet(store)
    fleet.send(kwh("E-READ", "2800.000"), *(kwh(m, "9800.000") for m in SPIKES),
               kwh("E-DOG", "2790.000", flags=("trouble_dog",)))
    return fleet


def test_the_cycles_list_counts_what_the_last_reconcile_found(hub_api):
    working_cycle(hub_api.store)
    with hub_api.client("viewer") as http:
        before = http.get("/api/v1/cycles").json()
        assert hub_api.run_step("C1", "reconcile")["status"] == "done"
        assert hub_api.run_step("C1", "edits")["status"] == "done"
        after = http.get("/api/v1/cycles", params={"limit": 2}).json()
        anonymous = httpx_get(hub_api, "/api/v1/cycles")
        too_many = http.get("/api/v1/cycles", params={"limit": 501})
    first = before["items"][0]
    assert (first["id"], first["reconciled_at"], first["totals"]["meters"]) == ("C1", None, 0)
    assert first["totals"]["progress"] == 0
    assert before["total"] == 7  # C1 and the six months of history, P1…P6
    assert [c["id"] for c in after["items"]] == ["C1", "P1"]  # newest scheduled first
    assert (after["total"], after["next_offset"]) == (7, 2)
    c1 = after["items"][0]
    assert c1["reconciled_at"] is not None
    assert c1["totals"] == {"meters": 7, "read": 4, "missing": 1, "trouble": 1,
                            "estimated": 0, "inactive": 1, "progress": 0.6667}
    assert c1["open_exceptions"] > 0
    assert (c1["read_window_start"], c1["scheduled_read_date"]) == ("2026-11-01", "2026-11-03")
    assert anonymous.status_code == 401
    assert too_many.json()["errors"][0]["loc"] == ["query", "limit"]


def test_a_cycle_dashboard_has_routes_runs_exceptions_and_bills(hub_api):
    working_cycle(hub_api.store)
    for step in ("reconcile", "edits", "bill"):
        assert hub_api.run_step("C1", step)["status"] == "done"
    with hub_api.client("viewer") as http:
        cycle = http.get("/api/v1/cycles/C1").json()
        unknown = http.get("/api/v1/cycles/NOPE")
        malformed = http.get("/api/v1/cycles/C1;drop")
    r1, r2 = cycle["routes"]
    assert (r1["route"], r1["meters"], r1["read"], r1["missing"]) == ("R1", 5, 4, 1)
    assert r1["progress"] == 0.8
    assert (r2["route"], r2["trouble"], r2["inactive"], r2["progress"]) == ("R2", 1, 1, 0.0)
    assert cycle["totals"]["meters"] == 7
    assert set(cycle["runs"]) == {"reconcile", "edits", "bill"}
    assert cycle["runs"]["bill"]["status"] == "done"
    assert cycle["runs"]["bill"]["requested_by"] == "token:test-operator"
    severities = cycle["open_by_severity"]
    assert severities["blocking"] >= 3  # each spike holds its account
    assert sum(severities.values()) == cycle["open_exceptions"]
    with hub_api.store.connect() as conn:
        stored = conn.execute(select(bills.c.account, bills.c.total)).all()
    assert cycle["bills"]["count"] == len(stored) > 0
    assert Decimal(cycle["bills"]["total"]) == sum(Decimal(t) for _, t in stored)
    assert cycle["bills"]["currency"] == "USD"
    assert not {"A-E-SPIKE-1", "A-E-SPIKE-2"} & {b["account"] for b in cycle["bills"]["first"]}
    assert unknown.status_code == 404 and unknown.json()["detail"] == "cycle NOPE not found"
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["loc"] == ["path", "cycle"]


def test_a_cycles_meters_filter_by_status_route_and_need_of_a_read(hub_api):
    working_cycle(hub_api.store)
    assert hub_api.run_step("C1", "reconcile")["status"] == "done"
    with hub_api.client("viewer") as http:
        def meters(**params):
            answer = http.get("/api/v1/cycles/C1/meters", params=params)
            assert answer.status_code == 200, answer.text
            return answer.json()

        everything = meters()
        missing = meters(status="missing")
        r2 = meters(route="R2")
        needing = meters(needs_read="true")
        paged = meters(limit=2, offset=2)
        bad = http.get("/api/v1/cycles/C1/meters", params={"status": "lost"})
        unknown = http.get("/api/v1/cycles/NOPE/meters")
    assert [m["meter"] for m in everything["items"]] == METERS  # walk order: R1, then R2
    read = everything["items"][0]
    assert (read["status"], read["collector"], read["seq"]) == ("read", "gw-1", 1)
    assert read["read_at"].startswith("2026-11-03T12:00:00")
    assert [m["meter"] for m in missing["items"]] == ["E-MISSING"]
    assert missing["items"][0]["rule"] == "no read in the window"
    dog = r2["items"][0]
    assert (dog["meter"], dog["status"], dog["trouble"], dog["sequence"]) == (
        "E-DOG", "trouble", ["dog"], 6)
    assert [m["meter"] for m in needing["items"]] == ["E-MISSING"]
    assert [m["meter"] for m in paged["items"]] == METERS[2:4]
    assert (paged["total"], paged["next_offset"]) == (7, 4)
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "status"]
    assert unknown.status_code == 404


@contextmanager
def hub_with_broker(store, tmp_path, port: int) -> Iterator[HubApi]:
    """A hub whose re-read routes go to the broker on ``port``."""
    server = start_hub_api(store, hub_settings(tmp_path, publish_route=lambda route: (
        publish_route(route, BrokerSettings(port=port),
                      client_id=f"meterhub-routes-{secrets.token_hex(4)}"))))
    try:
        yield next(server)
    finally:
        server.close()


def test_a_reread_route_reaches_the_handheld_over_the_broker(store, tmp_path, mosquitto):
    working_cycle(store)
    collector = f"hh-{secrets.token_hex(3)}"  # the session's broker keeps retained routes
    with hub_with_broker(store, tmp_path, mosquitto.port) as hub:
        assert hub.run_step("C1", "edits")["status"] == "done"  # E-MISSING, E-DOG estimated
        with hub.client("operator") as http:
            answer = http.post("/api/v1/cycles/C1/reread", json={"collector": collector})
    assert answer.status_code == 200, answer.text
    sent = answer.json()
    assert (sent["cycle"], sent["collector"]) == ("C1", collector)
    assert [(s["sequence"], s["meter"]) for s in sent["stops"]] == [(1, "E-MISSING"),
                                                                     (2, "E-DOG")]
    stop = sent["stops"][0]  # estimated: only an actual read trues up an estimate
    assert stop["account"] == "A-E-MISSING"
    assert stop["address"] == "5 Main St"
    assert (stop["previous_value"], stop["low"]) == ("2500", "2500")
    assert Decimal(stop["high"]) > Decimal("2800")
    delivered = receive_route(mosquitto.port, collector)
    assert delivered.route_id == sent["route_id"]
    assert [s.meter for s in delivered.stops] == ["E-MISSING", "E-DOG"]
    with store.connect() as conn:
        audit = conn.execute(select(audit_log).where(audit_log.c.action == "reread.send")).one()
    assert (audit.id, audit.actor, audit.cycle) == (sent["audit_id"], "token:test-operator",
                                                    "C1")
    assert audit.reason == f"route {sent['route_id']} with 2 meters to {collector}"


def test_a_reread_route_is_refused_saying_why(hub_api):
    fleet = working_cycle(hub_api.store)
    with hub_api.client("operator") as http:
        no_broker = http.post("/api/v1/cycles/C1/reread", json={"collector": "hh-01"})
        unknown = http.post("/api/v1/cycles/NOPE/reread", json={"collector": "hh-01"})
        bad = http.post("/api/v1/cycles/C1/reread", json={"collector": "hh/01"})
        extra = http.post("/api/v1/cycles/C1/reread", json={"collector": "hh-01", "x": 1})
        fleet.send(kwh("E-MISSING", "2810.000"))
        nothing = http.post("/api/v1/cycles/C1/reread", json={"collector": "hh-01"})
    with hub_api.client("viewer") as http:
        viewer = http.post("/api/v1/cycles/C1/reread", json={"collector": "hh-01"})
    anonymous = httpx_post(hub_api, "/api/v1/cycles/C1/reread", {"collector": "hh-01"})
    assert no_broker.status_code == 503 and "no broker" in no_broker.json()["detail"]
    assert unknown.status_code == 404
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "collector"]
    assert extra.status_code == 422 and extra.json()["errors"][0]["loc"] == ["body", "x"]
    assert nothing.status_code == 409
    assert "no meter of cycle C1 needs a read" in nothing.json()["detail"]
    assert (viewer.status_code, anonymous.status_code) == (403, 401)
    with hub_api.store.connect() as conn:
        actions = conn.execute(select(audit_log.c.action)).scalars().all()
    assert "reread.send" not in actions  # nothing was sent, so nothing is on record as sent
    assert actions.count("http.post") >= 7


def httpx_get(hub_api: HubApi, path: str):
    with hub_api.client() as http:
        return http.get(path)


def httpx_post(hub_api: HubApi, path: str, body: dict):
    with hub_api.client() as http:
        return http.post(path, json=body)
