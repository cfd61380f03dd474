"""Scale-out on PostgreSQL: several hub workers on one store, and cycle runs split by route.

The ingest test runs the real ``meterhub serve --workers 2`` (a supervisor
and two worker processes) against a private Mosquitto and a fresh
PostgreSQL database, with gateways syncing real signed reads, and kills
one worker mid-ingest. The run tests work edits and bills by route with
real cycle runners: split by route they must give exactly what one
whole-cycle run gives, and two runners sharing a run never work a part twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, insert, select, update

from hub.access.tokens import create_token
from hub.api.runner import CycleRunner
from hub.api.runs import (
    STALE_AFTER,
    RunStatus,
    Step,
    claim_part,
    close_run,
    fail_abandoned,
    finish_part,
    get_parts,
    get_run,
    request_run,
)
from hub.api.settings import HubSettings
from hub.ingest import Ingestor
from hub.store import Store
from hub.store.reads import PENDING
from hub.store.tables import (
    accounts,
    audit_log,
    bill_lines,
    billing_reads,
    bills,
    cycle_run_parts,
    edit_exceptions,
    meter_installations,
    reads,
    route_stops,
    routes,
)
from hub.verifier import BackgroundVerifier
from protocols.batch import encode_batch
from protocols.chain import GENESIS_TIP, ChainTip, read_hash, sign_and_chain
from protocols.mqtt_contract import reads_topic
from protocols.read import Reading
from protocols.signing import Signer
from tests.api_fixtures import hub_settings
from tests.conftest import script
from tests.hub_fixtures import drop_pg, fresh_pg_url
from tests.sync_harness import Gateway, assert_exactly_once, stop_process, wait_until
from tests.test_edits_store import NOW, SCHEDULED, bill_history, kwh
from tests.test_ingest import enrolled
from tests.test_reconcile import seed_cycle

# --- two hub worker processes on a real broker and PostgreSQL --------------------------


@pytest.fixture
def pg_store() -> Iterator[tuple[str, Store]]:
    """A fresh, migrated PostgreSQL store and its URL."""
    url, name = fresh_pg_url()
    try:
        with Store.open(url, upgrade_schema=True) as store:
            yield url, store
    finally:
        drop_pg(name)


def worker_pids(log: Path) -> dict[int, int]:
    """Each worker's latest pid, as the supervisor logged it starting."""
    started = re.findall(r"hub worker (\d+) started: pid (\d+)", log.read_text())
    return {int(index): int(pid) for index, pid in started}


def batches_by_pid(log: Path) -> dict[int, int]:
    """The batches each worker that stopped cleanly says it took, by pid."""
    stopped = re.findall(r"hub worker meterhub-.+-(\d+)-\w+ stopped after (\d+) batches",
                         log.read_text())
    return {int(pid): int(count) for pid, count in stopped}


def connected(log: Path, pid: int) -> bool:
    return re.search(rf"hub worker meterhub-.+-{pid}-\w+ connected", log.read_text()) is not None


def test_two_workers_store_every_read_once_and_a_killed_worker_loses_nothing(
        tmp_path, pg_store, mosquitto_factory, cli_env):
    url, store = pg_store
    broker = mosquitto_factory()
    gateways = [Gateway(tmp_path / f"edge-{n}", store, collector=f"edge-{n}",
                        broker_port=broker.port, batch_size=100, ack_timeout_s=2.0)
                for n in range(1, 5)]
    totals = {g.collector: g.append(4000) for g in gateways}
    log = tmp_path / "hub.log"
    with open(log, "ab") as stderr:
        hub = subprocess.Popen(
            [script("meterhub"), "--log-level", "info", "--db", url, "serve", "--workers", "2",
             "--broker-port", str(broker.port), "--verifier-processes", "1",
             "--http-port", "0", "--timezone", "UTC"],
            env=cli_env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_until(lambda: len(worker_pids(log)) == 2
                   and all(connected(log, pid) for pid in worker_pids(log).values()), 30,
                   "both workers to connect")
        first = worker_pids(log)
        with ExitStack() as syncing:
            for gateway in gateways:
                syncing.enter_context(gateway.sync_thread())
            wait_until(lambda: sum(g.acked() for g in gateways) > 3000, 60,
                       "ingest to be under way")
            os.kill(first[1], signal.SIGKILL)
            wait_until(lambda: worker_pids(log)[1] != first[1]
                       and connected(log, worker_pids(log)[1]), 30,
                       "the supervisor to restart worker 1")
            totals = {g.collector: g.append(4000) for g in gateways}  # for the new worker 1
            wait_until(lambda: all(g.acked() == totals[g.collector] for g in gateways), 90,
                       "every read to be acked")
        with store.connect() as conn:
            wait_until(lambda: conn.execute(select(func.count()).select_from(reads).where(
                reads.c.verify_status == PENDING)).scalar_one() == 0, 30,
                "worker 0's verifier to check every read")
        three_routes(store, Signer.generate())  # and the workers' runners share a cycle run
        with store.begin() as conn:
            run = request_run(conn, "C1", Step.EDITS, requested_by="tests")
        with store.connect() as conn:
            wait_until(lambda: get_run(conn, run.id).status is RunStatus.DONE, 30,
                       "the workers' cycle runners to work the run")
            parts = get_parts(conn, run.id)
        ingested = scraped(log, store, "meterhub_reads_ingested_total")
        batches = scraped(log, store, "meterhub_batches_total", outcome="stored")
    finally:
        stop_process(hub)
    text = log.read_text()
    # worker 0's /metrics sums every worker's counts, the killed worker 1's included: alone
    # it would show about half (a kill between a commit and its count may lose one batch)
    everything = sum(totals.values())
    assert everything - 100 <= ingested <= everything, (ingested, everything)
    assert batches >= everything / 100 - 1
    assert hub.returncode == 0, text[-3000:]
    assert "hub worker 1 (pid" in text and "was killed by SIGKILL" in text
    for gateway in gateways:
        assert_exactly_once(store, gateway, totals[gateway.collector])
    with store.connect() as conn:
        stored = conn.execute(select(reads.c.collector, func.count(), func.max(reads.c.seq),
                                     func.count(reads.c.seq.distinct()))
                              .where(reads.c.collector.in_(totals))
                              .group_by(reads.c.collector)).all()
    assert {c: (n, top, distinct) for c, n, top, distinct in stored} == {
        c: (t, t, t) for c, t in totals.items()}
    taken = batches_by_pid(log)
    last = worker_pids(log)
    assert taken[last[0]] > 0 and taken[last[1]] > 0, taken  # the broker shared the batches
    assert text.count("INFO meterhub: meterhub serve worker 0: API and operator pages on") == 1
    assert text.count("API and operator pages on") == 1  # worker 0's, once
    assert {p.worker for p in parts} <= {f"{socket.gethostname()}-{pid}" for pid in last.values()}
    for pid in last.values():  # the supervisor stopped its workers on SIGTERM
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status").read_text()


def scraped(log: Path, store: Store, name: str, **labels: str) -> float:
    """``name``'s value on worker 0's /metrics, scraped with a viewer token as Prometheus does."""
    found = re.search(r"API and operator pages on (http://\S+)", log.read_text())
    assert found, "worker 0 did not say where it serves"
    with store.begin() as conn:
        token = create_token(conn, "prometheus", "viewer", created_by="tests").secret
    answer = httpx.get(f"{found.group(1)}/metrics", timeout=30,
                       headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                     if labels else "")
    for line in answer.text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{wanted} is not on /metrics:\n{answer.text[:3000]}")


def test_workers_are_refused_on_sqlite_saying_why(tmp_path, cli_env):
    answer = subprocess.run(
        [script("meterhub"), "--db", f"sqlite:///{tmp_path / 'hub.sqlite'}", "serve",
         "--workers", "2"], env=cli_env, capture_output=True, text=True, timeout=60,
        check=False)
    assert answer.returncode == 2
    assert "SQLite has one writer" in answer.stderr and "PostgreSQL" in answer.stderr


# --- a cycle whose runs split into three routes ---------------------------------------

METERS = {"R1": ["E-1", "E-2", "E-3"], "R2": ["E-4", "E-5", "E-6"], "R3": ["E-7", "E-8", "E-9"]}
"""E-2 spikes, E-3 is missing, E-5 reports trouble, E-9 a tamper alarm; E-6 is a second
meter of E-1's account, so account A-E-1 spans routes R1 and R2."""


class Collector:
    """gw-1 sending signed reads through ingest and the verifier, with a given key."""

    def __init__(self, store: Store, signer: Signer) -> None:
        self.store = store
        self.signer = enrolled(store, "gw-1", signer)
        self.tip = GENESIS_TIP

    def send(self, *readings: Reading) -> None:
        sealed, _ = sign_and_chain(list(readings), signer=self.signer, collector="gw-1",
                                   after=self.tip)
        Ingestor(self.store, clock=lambda: NOW).ingest(reads_topic("gw-1"),
                                                       encode_batch("gw-1", sealed))
        self.tip = ChainTip(sealed[-1].seq, read_hash(sealed[-1].data))
        BackgroundVerifier(self.store, processes=1, clock=lambda: NOW).verify_pending()


def three_routes(store: Store, signer: Signer) -> None:
    serials = [m for route in METERS.values() for m in route]
    seed_cycle(store, serials, first=SCHEDULED)
    with store.begin() as conn:
        conn.execute(update(accounts).values(rate_code="RES-E1"))
        conn.execute(insert(routes), [{"id": r, "cycle": "C1", "updated_at": NOW}
                                      for r in ("R2", "R3")])
        for route, its in METERS.items():
            conn.execute(update(route_stops).where(route_stops.c.meter.in_(its))
                         .values(route=route))
        conn.execute(update(meter_installations).where(meter_installations.c.meter == "E-6")
                     .values(account="A-E-1"))
    for meter in serials:
        bill_history(store, meter, [str(1000 + 300 * n) for n in range(6)])  # last: 2500
    Collector(store, signer).send(
        *(kwh(m, "2800.000") for m in ("E-1", "E-4", "E-6", "E-7", "E-8")),
        kwh("E-2", "9800.000"), kwh("E-5", "2790.000", flags=("trouble_dog",)),
        kwh("E-9", "2795.000", flags=("tamper_terminal_cover",)))


def work(store: Store, settings: HubSettings, step: Step, **options: Any) -> dict[str, Any]:
    """Ask for ``step`` of C1 and work it with a runner; the finished run's result."""
    with store.begin() as conn:
        run = request_run(conn, "C1", step, requested_by="tests", options=options)
    CycleRunner(store, settings, worker="runner").run_pending()
    with store.connect() as conn:
        done = get_run(conn, run.id)
    assert done.status is RunStatus.DONE, done.error
    assert done.result is not None
    return done.result


def cycle_story(store: Store, settings: HubSettings, **options: Any) -> list[dict[str, Any]]:
    """Edits and bills; then E-9 is taken off its route and E-7 moves to a new account
    (A-E-7's bill must go); then edits and bills again."""
    results = [work(store, settings, Step.EDITS, **options),
               work(store, settings, Step.BILL, **options)]
    with store.begin() as conn:
        conn.execute(delete(route_stops).where(route_stops.c.meter == "E-9"))
        conn.execute(insert(accounts).values(
            id="A-NEW", name="x", service_address="7 New St", status="active",
            rate_code="RES-E1", rate_options=[], updated_at=NOW))
        conn.execute(update(meter_installations).where(meter_installations.c.meter == "E-7")
                     .values(account="A-NEW"))
    results += [work(store, settings, Step.EDITS, **options),
                work(store, settings, Step.BILL, **options)]
    return results


def outcome(store: Store) -> dict[str, Any]:
    """What the runs left in the store, without times and row ids."""
    def rows(query: Any, *skip: str) -> list[str]:
        return sorted(json.dumps({k: v for k, v in row._mapping.items() if k not in skip},
                                 default=str, sort_keys=True) for row in conn.execute(query))

    with store.connect() as conn:
        return {
            "billing_reads": rows(select(billing_reads).where(billing_reads.c.cycle == "C1"),
                                  "updated_at"),
            "exceptions": rows(select(edit_exceptions), "id", "opened_at", "resolved_at"),
            "audit": rows(select(audit_log.c.actor, audit_log.c.action, audit_log.c.meter,
                                 audit_log.c.reason)),
            "bills": rows(select(bills), "computed_at"),
            "bill_lines": rows(select(bill_lines)),
        }


@pytest.fixture
def twin_store(store_url, tmp_path) -> Iterator[Store]:
    """A second empty store of the ``store`` fixture's kind."""
    if store_url.startswith("sqlite"):
        with Store.open(f"sqlite:///{tmp_path / 'twin.sqlite'}", upgrade_schema=True) as twin:
            yield twin
        return
    url, name = fresh_pg_url()
    try:
        with Store.open(url, upgrade_schema=True) as twin:
            yield twin
    finally:
        drop_pg(name)


def test_a_run_split_by_route_gives_what_one_whole_cycle_run_gives(store, twin_store,
                                                                   tmp_path):
    signer = Signer.generate()
    settings = hub_settings(tmp_path)
    three_routes(store, signer)
    three_routes(twin_store, signer)
    whole = cycle_story(store, settings, by_route=False)
    parted = cycle_story(twin_store, settings)
    assert parted == whole
    assert outcome(twin_store) == outcome(store)
    with twin_store.connect() as conn:
        split = conn.execute(select(cycle_run_parts.c.run_id, func.count())
                             .group_by(cycle_run_parts.c.run_id)).all()
    with store.connect() as conn:
        one = conn.execute(select(cycle_run_parts.c.route).distinct()).scalars().all()
    assert [n for _, n in split] == [3, 3, 3, 3] and one == ["*"]
    edits, bill, edits_again, bill_again = parted
    assert edits["meters"] == 9 and edits_again["meters"] == 8
    assert {h["account"] for h in edits["held"]} >= {"A-E-2", "A-E-9"}
    assert "A-E-9" not in {h["account"] for h in edits_again["held"]}  # off its route: cleared
    assert edits_again["cleared"] > 0
    with twin_store.connect() as conn:
        a_e_1 = conn.execute(select(bills.c.determinants).where(bills.c.account == "A-E-1")
                             ).scalar_one()
    assert {s["meter"] for s in a_e_1["sources"]["energy_import_kwh"]} == {"E-1", "E-6"}
    assert bill["billed"] == bill_again["billed"] - 1  # A-E-9, no longer held, is billed
    with twin_store.connect() as conn:
        billed = set(conn.execute(select(bills.c.account)).scalars())
    assert "A-NEW" in billed and "A-E-7" not in billed


# --- runners sharing a run's parts -------------------------------------------------------


def test_two_runners_sharing_a_run_never_work_a_part_twice(pg_store, tmp_path):
    _, store = pg_store  # PostgreSQL: SQLite would let one writer at a time claim
    settings = hub_settings(tmp_path)
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.EDITS, requested_by="tests")
    runners = [CycleRunner(store, settings, worker=f"runner-{n}") for n in (1, 2)]
    threads = [threading.Thread(target=r.run_pending) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with store.connect() as conn:
        done = get_run(conn, run.id)
        parts = get_parts(conn, run.id)
        audits = Counter(conn.execute(select(audit_log.c.action, audit_log.c.meter)).all())
        exceptions = Counter(conn.execute(select(edit_exceptions.c.meter, edit_exceptions.c.rule,
                                                 edit_exceptions.c.read_ref)).all())
    assert done.status is RunStatus.DONE, done.error
    assert done.result is not None and done.result["meters"] == 9
    assert sorted(p.route for p in parts) == ["R1", "R2", "R3"]
    assert {p.status for p in parts} == {RunStatus.DONE}
    by_worker = Counter(p.worker for p in parts)
    assert set(by_worker) <= {"runner-1", "runner-2"} and sum(by_worker.values()) == 3
    assert sum(r.parts_done for r in runners) == 3
    assert audits[("estimate", "E-3")] == 1  # the missing meter estimated once
    assert max(audits.values()) == 1 and max(exceptions.values()) == 1


def test_concurrent_claims_take_different_parts_without_waiting(pg_store):
    _, store = pg_store
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.BILL, requested_by="tests")
    with store.engine.connect() as one, store.engine.connect() as two, one.begin():
        first = claim_part(one, "runner-1")  # its rows stay locked until this commits
        with two.begin():
            second = claim_part(two, "runner-2")
    assert first is not None and second is not None
    assert (first.route, second.route) == ("R1", "R2")
    with store.connect() as conn:
        assert get_run(conn, run.id).status is RunStatus.RUNNING


def test_a_failed_part_fails_its_run_naming_the_route_and_the_others_still_run(store):
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.BILL, requested_by="tests")
    outcomes = {"R1": None, "R2": "the rate table is broken", "R3": None}
    for _ in outcomes:
        with store.begin() as conn:
            part = claim_part(conn, "runner")
            assert part is not None
            every = finish_part(conn, part, result={"billed": 0} if outcomes[part.route] is None
                                else None, error=outcomes[part.route])
        assert (every is None) == (part.route != "R3")  # the last one closes the run
    with store.begin() as conn:
        closed = close_run(conn, get_run(conn, run.id), every or [], lambda *_: {})
    assert closed.status is RunStatus.FAILED
    assert closed.error == ("1 of 3 routes failed: route R2: the rate table is broken; "
                            "the other routes' work stands")


def test_a_dead_runners_part_is_queued_again_and_finished(store, tmp_path):
    three_routes(store, Signer.generate())
    dead = subprocess.Popen(["true"])
    dead.wait()
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.EDITS, requested_by="tests")
        claim_part(conn, f"{socket.gethostname()}-{dead.pid}")  # and then it died
    runner = CycleRunner(store, hub_settings(tmp_path), worker="survivor")
    assert runner.requeue_dead() == 1
    runner.run_pending()
    with store.connect() as conn:
        assert get_run(conn, run.id).status is RunStatus.DONE
        assert {p.worker for p in get_parts(conn, run.id)} == {"survivor"}


def test_a_part_stale_for_hours_is_failed_and_closes_its_run(store):
    three_routes(store, Signer.generate())
    long_ago = datetime.now(UTC) - STALE_AFTER - timedelta(minutes=1)
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.BILL, requested_by="tests")
        for _ in range(3):
            claim_part(conn, "elsewhere-1", now=long_ago)
    with store.begin() as conn:
        assert fail_abandoned(conn) == 3
    with store.connect() as conn:
        failed = get_run(conn, run.id)
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None and failed.error.startswith("3 of 3 routes failed")


def test_a_cycle_without_routes_runs_as_one_whole_part(store):
    seed_cycle(store, ["E-1"], first=SCHEDULED)
    with store.begin() as conn:
        conn.execute(delete(route_stops))
        conn.execute(delete(routes))
        run = request_run(conn, "C1", Step.EDITS, requested_by="tests")
        assert [p.route for p in get_parts(conn, run.id)] == ["*"]


def test_reconcile_and_export_are_not_split(store):
    seed_cycle(store, ["E-1"], first=SCHEDULED)
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.RECONCILE, requested_by="tests")
        assert get_parts(conn, run.id) == []
