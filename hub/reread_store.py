"""Build a cycle's re-read route from the store, and hand it to a handheld over MQTT.

The route is published retained at QoS 1 on the handheld's routes topic: a
handheld that is offline when the operator sends it gets it the moment it
connects, and a newer route for the same handheld replaces the older one.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Container
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Connection, select

from hub.reconcile import Reconciliation
from hub.reconcile_store import cycle_meters, load_cycle, reconcile_loaded
from hub.reread import (
    NEEDS_A_READ,
    REGISTER_BY_SERVICE,
    HistoryRead,
    StopDetails,
    build_reread_route,
)
from hub.store.reads import billable_reads
from hub.store.tables import (
    accounts,
    billing_reads,
    meter_installations,
    meters,
    route_stops,
    routes,
)
from protocols.broker_settings import BrokerSettings
from protocols.mqtt_contract import routes_topic
from protocols.route_message import Route, encode_route
from protocols.scalars import ScalarError, parse_decimal

log = logging.getLogger(__name__)

HISTORY_DAYS = 120
"""How far back a meter's reads are looked at for its previous read and its daily use."""
PUBLISH_TIMEOUT_S = 15


class PublishError(Exception):
    """The broker refused the hub or did not confirm the route."""


def build_from_store(conn: Connection, cycle_id: str, collector: str, zone: tzinfo,
                     *, now: datetime | None = None) -> tuple[Route, Reconciliation]:
    """Reconcile ``cycle_id`` and make the re-read route of its missing meters."""
    now = now or datetime.now(UTC)
    cycle = load_cycle(conn, cycle_id, zone)
    result = reconcile_loaded(conn, cycle)
    missing = {m.meter: m.account for m in result.meters if m.status in NEEDS_A_READ}
    window_start = datetime.combine(cycle.window_start, time(), zone)
    route = build_reread_route(
        result, _details(conn, cycle_id, missing), _history(conn, cycle_id, missing, window_start),
        scheduled=cycle.target, collector=collector, issued_at=now,
        route_id=f"{cycle_id}-reread-{collector}-{now:%Y%m%dT%H%M%SZ}",
    )
    return route, result


def _details(conn: Connection, cycle_id: str,
             missing: dict[str, str | None]) -> dict[str, StopDetails]:
    """Master data of the ``missing`` meters (meter → the account reconciliation found)."""
    rows = conn.execute(
        select(route_stops, meters.c.service, meters.c.unit, meters.c.dials, meters.c.profile)
        .join(routes, routes.c.id == route_stops.c.route)
        .join(meters, meters.c.serial == route_stops.c.meter)
        .where(routes.c.cycle == cycle_id)
    ).all()
    on_routes = cycle_meters(cycle_id)
    addresses = dict(conn.execute(
        select(accounts.c.id, accounts.c.service_address).distinct()
        .join(meter_installations, meter_installations.c.account == accounts.c.id)
        .join(on_routes, on_routes.c.meter == meter_installations.c.meter)
    ).all())
    details = {}
    for r in rows:
        if r.meter not in missing:
            continue
        account = missing[r.meter] or ""
        address = addresses.get(account, "")
        details[r.meter] = StopDetails(
            account=account, address=address, service=r.service, unit=r.unit, dials=r.dials,
            profile=r.profile, location_notes=r.location_notes, hazards=r.hazards,
            latitude=_decimal(r.latitude), longitude=_decimal(r.longitude))
    return details


def _history(conn: Connection, cycle_id: str, missing: Container[str],
             before: datetime) -> dict[str, list[HistoryRead]]:
    """What the cycle's ``missing`` meters read in the days before its window.

    Verified reads, and the billing reads of earlier cycles (the CIS's
    history or meterhub's own), oldest first.
    """
    candidates = billable_reads.subquery()
    on_routes = cycle_meters(cycle_id)
    history: dict[str, list[HistoryRead]] = defaultdict(list)
    rows = conn.execute(
        select(candidates.c.meter, candidates.c.read_at, candidates.c["values"])
        .join(on_routes, on_routes.c.meter == candidates.c.meter)
        .where((candidates.c.read_at < before.astimezone(UTC))
               & (candidates.c.read_at >= before.astimezone(UTC) - timedelta(days=HISTORY_DAYS)))
        .order_by(candidates.c.meter, candidates.c.read_at)
    ).all()
    for meter, read_at, values in rows:
        if meter not in missing:
            continue
        for register in set(REGISTER_BY_SERVICE.values()):
            value = _decimal((values.get(register) or {}).get("value"))
            if value is not None:
                history[meter].append(HistoryRead(read_at, value))
                break
    billed = conn.execute(
        select(billing_reads.c.meter, billing_reads.c.read_at, billing_reads.c.registers)
        .join(on_routes, on_routes.c.meter == billing_reads.c.meter)
        .where((billing_reads.c.cycle != cycle_id)
               & (billing_reads.c.read_at < before.astimezone(UTC))
               & (billing_reads.c.read_at >= before.astimezone(UTC)
                  - timedelta(days=HISTORY_DAYS)))
    ).all()
    for meter, read_at, registers in billed:
        if meter not in missing:
            continue
        for register in set(REGISTER_BY_SERVICE.values()):
            value = _decimal(registers.get(register))
            if value is not None:
                history[meter].append(HistoryRead(read_at, value))
                break
    for reads_of_meter in history.values():
        reads_of_meter.sort(key=lambda r: r.read_at)
    return history


def _decimal(text: object) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        return parse_decimal(text)
    except ScalarError:
        return None


def publish_route(route: Route, broker: BrokerSettings, *,
                  client_id: str = "meterhub-routes") -> None:
    """Publish ``route`` retained at QoS 1 to its collector's routes topic, and confirm."""
    answered = threading.Event()
    refused: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311)
    broker.apply(client, default_username="meterhub")

    def on_connect(_client: mqtt.Client, _userdata: object, _flags: object,
                   reason: ReasonCode, _properties: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.effective_port, keepalive=broker.keepalive_s)
    except OSError as exc:
        raise PublishError(f"cannot reach broker {broker.host}:{broker.effective_port}: "
                           f"{exc}") from None
    client.loop_start()
    try:
        if not answered.wait(PUBLISH_TIMEOUT_S) or refused:
            raise PublishError(f"broker refused the hub: {refused[0] if refused else 'no answer'}")
        info = client.publish(routes_topic(route.collector), encode_route(route), qos=1,
                              retain=True)
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise PublishError(f"broker did not confirm the route within {PUBLISH_TIMEOUT_S} s")
    finally:
        client.disconnect()
        client.loop_stop()
    log.info("route %s (%d stops) published to %s", route.route_id, len(route.stops),
             routes_topic(route.collector))
