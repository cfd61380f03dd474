"""The whole re-read loop: the hub's missing meters reach a handheld, its reads close the gap.

Hub store → reconcile → re-read route published through a real Mosquitto →
the handheld's sync client receives it → the technician's page (served for
real, driven over HTTP) takes a probe read from a simulated optical meter, a
keyed read and a trouble report → each a signed read synced back → the hub
stores and verifies them → re-reconciliation turns the meters from
``missing`` into ``read``, ``read`` and ``trouble``.
"""

from __future__ import annotations

from datetime import UTC

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
from tests.test_handheld_web import PROFILE, Handheld, iec_meter
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
        with HandheldServer(app, "127.0.0.1", 0) as server:
            page = Handheld(server, routes, buffer)
            card = f"/routes/{route.route_id}/stops/{{}}"
            assert page.post(card.format(1) + "/probe").status == 303
            assert page.post(card.format(2) + "/manual", {"value": "4321.5"}).status == 303
            assert page.post(card.format(3) + "/trouble",
                             {"code": "dog", "note": "gate open, dog loose"}).status == 303
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
