"""The handheld's route store: routes kept as received, visits, progress, re-deliveries."""

import sqlite3
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from edge_agent.route_store import (
    Progress,
    RouteStore,
    RouteStoreError,
    UnknownRoute,
)
from protocols.route_message import Limits, Route, RouteError, RouteStop, encode_route

ISSUED = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def stop(sequence, meter=None):
    return RouteStop(
        sequence=sequence, meter=meter or f"M-{sequence:04d}", account=f"A{sequence}",
        service="electric", address=f"{sequence} Elm St", register="energy_import_kwh",
        unit="kWh", dials=6, limits=Limits(Decimal(100), Decimal(200)),
    )


def make_route(route_id="R-1", *, stops=3, collector="hh-0001", issued=ISSUED):
    return Route(route_id, "C07", collector, issued, tuple(stop(n) for n in range(1, stops + 1)))


@pytest.fixture
def store(tmp_path):
    with RouteStore(tmp_path / "routes.sqlite", collector="hh-0001") as opened:
        yield opened


def test_a_saved_route_reads_back_with_its_exact_payload(store):
    route = make_route()
    payload = encode_route(route).replace(b'"v":1', b'"v": 1')  # another spelling, same route
    assert store.save_payload(payload) == route
    assert store.route("R-1") == route
    assert store.payload("R-1") == payload


def test_the_same_route_id_again_is_a_no_op_and_keeps_the_visits(store):
    assert store.save(make_route()) is True
    store.record_visit("R-1", 1, "read", seq=7, value="150.5")
    assert store.save(make_route(stops=5)) is False  # re-delivered (retained), even changed
    assert len(store.route("R-1").stops) == 3
    assert store.progress("R-1") == Progress(done=1, total=3)


def test_a_new_route_id_replaces_nothing(store):
    store.save(make_route("R-1"))
    store.record_visit("R-1", 2, "trouble", seq=1, trouble="dog", note="big one")
    store.save(make_route("R-2", stops=2, issued=ISSUED.replace(day=21)))
    assert [(s.route_id, s.progress) for s in store.routes()] == [
        ("R-2", Progress(0, 2)), ("R-1", Progress(1, 3))]


def test_a_route_for_another_collector_is_refused(store):
    with pytest.raises(RouteError, match="hh-0002"):
        store.save(make_route(collector="hh-0002"))
    assert store.routes() == []


def test_a_malformed_route_message_is_refused_naming_the_field(store):
    with pytest.raises(RouteError) as caught:
        store.save_payload(encode_route(make_route()).replace(b'"dials":6', b'"dials":0'))
    assert caught.value.field == "stops[0].dials"


def test_progress_counts_stops_done_once_whatever_the_visits(store):
    store.save(make_route())
    store.record_visit("R-1", 1, "trouble", seq=1, trouble="no_access")
    store.record_visit("R-1", 1, "read", seq=2, value="160")  # came back in the afternoon
    store.record_visit("R-1", 3, "read", seq=3, value="170")
    progress = store.progress("R-1")
    assert progress == Progress(done=2, total=3)
    assert (progress.percent, progress.complete) == (66, False)
    store.record_visit("R-1", 2, "trouble", seq=4, trouble="dog")
    assert store.progress("R-1").complete


def test_a_stops_status_is_its_latest_visit_and_history_keeps_all(store):
    store.save(make_route())
    store.record_visit("R-1", 1, "trouble", seq=1, trouble="locked_gate", note="back at 3")
    store.record_visit("R-1", 1, "read", seq=2, value="160.25")
    latest = store.visits("R-1")[1]
    assert (latest.outcome, latest.value, latest.seq, latest.trouble) == ("read", "160.25", 2, None)
    assert [(v.outcome, v.note) for v in store.history("R-1", 1)] == [
        ("trouble", "back at 3"), ("read", "")]


@pytest.mark.parametrize(("route_id", "sequence", "outcome", "fields", "error"), [
    ("R-9", 1, "read", {"value": "1"}, UnknownRoute),
    ("R-1", 4, "read", {"value": "1"}, RouteStoreError),
    ("R-1", 1, "skipped", {"value": "1"}, RouteStoreError),
    ("R-1", 1, "read", {}, RouteStoreError),
    ("R-1", 1, "trouble", {"value": "1"}, RouteStoreError),
])
def test_a_visit_that_cannot_be_right_is_refused(store, route_id, sequence, outcome, fields,
                                                  error):
    store.save(make_route())
    with pytest.raises(error):
        store.record_visit(route_id, sequence, outcome, seq=1, **fields)
    assert store.visits("R-1") == {}


def test_routes_and_visits_survive_reopening(tmp_path):
    path = tmp_path / "routes.sqlite"
    with RouteStore(path) as first:
        first.save(make_route())
        first.record_visit("R-1", 2, "read", seq=9, value="123")
    with RouteStore(path) as again:
        assert again.progress("R-1") == Progress(1, 3)
        assert again.visits("R-1")[2].seq == 9


def test_the_file_is_wal_with_full_sync(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_threads_may_save_and_record_together(store):
    store.save(make_route(stops=40))
    errors = []

    def visit(first):
        try:
            for sequence in range(first, 41, 4):
                store.record_visit("R-1", sequence, "read", seq=sequence, value="150")
                store.save(make_route(f"R-{first}-{sequence}", stops=1))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=visit, args=(n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.progress("R-1") == Progress(40, 40)
    assert len(store.routes()) == 41


def test_an_unknown_route_is_a_key_error_with_a_plain_message(store):
    with pytest.raises(KeyError) as caught:
        store.route("nope")
    assert str(caught.value) == "no route 'nope' has been received"
