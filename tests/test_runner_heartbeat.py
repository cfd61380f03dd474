"""Runner heartbeats: a worker of another machine that died is given up in a minute, not hours.

A worker on another host cannot be checked by pid, so these tests play one
by hand: they claim a part or run in its name (``far-away-4242``) and record
its heartbeat at a chosen time, then let a live runner judge it with an
injected ``now``. Nothing sleeps but the tests of the heartbeat thread itself.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hub.api.runner import HEARTBEAT_S, CycleRunner
from hub.api.runs import (
    ABANDONED,
    RUNNER_DEAD_AFTER,
    RunConflict,
    RunLost,
    RunStatus,
    Step,
    beat,
    claim_next,
    claim_part,
    finish_run,
    get_parts,
    get_run,
    heartbeats,
    request_run,
    requeue_parts,
    silent_workers,
)
from hub.store.tables import cycle_runners
from protocols.signing import Signer
from tests.api_fixtures import hub_settings
from tests.sync_harness import wait_until
from tests.test_scale_out import three_routes

FAR = "far-away-4242"
"""A runner of another host: no pid check can tell whether it lives."""
NOW = datetime.now(UTC)


def far_heartbeat(conn, at: datetime) -> None:
    beat(conn, FAR, host="far-away", pid=4242, started_at=at - timedelta(hours=1), now=at)


def test_dead_after_is_several_heartbeats():
    assert RUNNER_DEAD_AFTER.total_seconds() >= 3 * HEARTBEAT_S


def test_a_started_runner_records_its_heartbeat_and_moves_it_on(store, tmp_path):
    runner = CycleRunner(store, hub_settings(tmp_path), worker="here-1", heartbeat_s=0.05)
    before = datetime.now(UTC)
    runner.start()
    try:
        with store.connect() as conn:
            first = heartbeats(conn)["here-1"]
            row = conn.execute(select(cycle_runners)).one()
        assert first >= before and row.started_at >= before
        assert row.pid > 0 and row.host

        def moved_on() -> bool:
            with store.connect() as conn:
                return heartbeats(conn)["here-1"] > first

        wait_until(moved_on, 5, "the heartbeat to move on")
    finally:
        runner.stop()


def test_a_clean_stop_removes_the_runners_row(store, tmp_path):
    runner = CycleRunner(store, hub_settings(tmp_path), worker="here-1", heartbeat_s=0.05)
    runner.start()
    with store.connect() as conn:
        assert set(heartbeats(conn)) == {"here-1"}
    runner.stop()
    with store.connect() as conn:
        assert heartbeats(conn) == {}


@pytest.mark.parametrize(("heartbeat_ago", "claimed_ago", "dead"), [
    (timedelta(seconds=5), timedelta(minutes=10), False),  # the heartbeat says it lives
    (timedelta(minutes=5), timedelta(seconds=5), False),  # so does a claim of its own
    (timedelta(minutes=5), timedelta(minutes=10), True),
    (None, timedelta(seconds=5), False),  # no heartbeat row: its claims alone judge it
    (None, timedelta(minutes=10), True),
    (None, RUNNER_DEAD_AFTER, False),  # exactly that old: not yet
])
def test_a_worker_is_dead_once_its_last_sign_of_life_is_too_old(store, heartbeat_ago,
                                                                 claimed_ago, dead):
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        request_run(conn, "C1", Step.EDITS, requested_by="tests")
        claim_part(conn, FAR, now=NOW - claimed_ago)
        if heartbeat_ago is not None:
            far_heartbeat(conn, NOW - heartbeat_ago)
        assert silent_workers(conn, now=NOW) == ({FAR} if dead else set())


def test_a_part_of_a_dead_remote_runner_is_queued_again_and_finished(store, tmp_path):
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.EDITS, requested_by="tests")
        claim_part(conn, FAR, now=NOW - timedelta(minutes=10))
        far_heartbeat(conn, NOW - RUNNER_DEAD_AFTER - timedelta(seconds=1))  # and then it died
    survivor = CycleRunner(store, hub_settings(tmp_path), worker="survivor")
    assert survivor.requeue_dead(now=NOW) == 1
    with store.connect() as conn:
        assert FAR not in heartbeats(conn)  # its row is swept away with its work
    survivor.run_pending()
    with store.connect() as conn:
        done = get_run(conn, run.id)
        parts = get_parts(conn, run.id)
    assert done.status is RunStatus.DONE, done.error
    assert {(p.worker, p.status) for p in parts} == {("survivor", RunStatus.DONE)}


def test_a_part_of_a_remote_runner_with_a_fresh_heartbeat_is_left_alone(store, tmp_path):
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.EDITS, requested_by="tests")
        held = claim_part(conn, FAR, now=NOW - timedelta(minutes=10))  # a long route
        far_heartbeat(conn, NOW - timedelta(seconds=5))
    assert held is not None
    survivor = CycleRunner(store, hub_settings(tmp_path), worker="survivor")
    assert survivor.requeue_dead(now=NOW) == 0
    with store.connect() as conn:
        part = next(p for p in get_parts(conn, run.id) if p.route == held.route)
    assert (part.worker, part.status) == (FAR, RunStatus.RUNNING)


def test_a_whole_run_of_a_dead_remote_runner_fails_abandoned_and_can_be_asked_again(
        store, tmp_path):
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.RECONCILE, requested_by="tests")
        assert claim_next(conn, FAR, now=NOW - timedelta(minutes=10)) is not None
        far_heartbeat(conn, NOW - timedelta(minutes=2))
    with store.begin() as conn, pytest.raises(RunConflict):
        request_run(conn, "C1", Step.RECONCILE, requested_by="tests")
    survivor = CycleRunner(store, hub_settings(tmp_path), worker="survivor")
    assert survivor.requeue_dead(now=NOW) == 1
    with store.begin() as conn:
        failed = get_run(conn, run.id)
        again = request_run(conn, "C1", Step.RECONCILE, requested_by="tests")
    assert (failed.status, failed.error) == (RunStatus.FAILED, ABANDONED)
    survivor.run_pending()
    with store.connect() as conn:
        assert get_run(conn, again.id).status is RunStatus.DONE


def test_a_run_given_up_is_not_finished_by_its_old_worker_after_all(store, tmp_path):
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.EXPORT, requested_by="tests")
        claim_next(conn, FAR, now=NOW - timedelta(minutes=10))
    CycleRunner(store, hub_settings(tmp_path), worker="survivor").requeue_dead(now=NOW)
    with store.begin() as conn, pytest.raises(RunLost):
        finish_run(conn, run.id, result={"rows": 0}, worker=FAR)  # it was only slow
    with store.connect() as conn:
        assert get_run(conn, run.id).error == ABANDONED


def test_two_runners_giving_a_dead_workers_part_up_at_once_requeue_it_once(store, tmp_path):
    three_routes(store, Signer.generate())
    with store.begin() as conn:
        run = request_run(conn, "C1", Step.BILL, requested_by="tests")
        held = claim_part(conn, FAR, now=NOW - timedelta(minutes=10))
    assert held is not None
    second = CycleRunner(store, hub_settings(tmp_path), worker="second")
    seen: list[int] = []
    late = threading.Thread(target=lambda: seen.append(second.requeue_dead(now=NOW)))
    with store.engine.connect() as first, first.begin():
        assert requeue_parts(first, {FAR}) == 1
        late.start()  # judges FAR dead too, and waits for the first's locks
        late.join(0.5)
        assert late.is_alive()
        again = claim_part(first, "first", now=NOW)  # the part, taken again at once
    late.join(30)
    assert seen == [0]
    assert again is not None and again.route == held.route
    with store.connect() as conn:
        part = next(p for p in get_parts(conn, run.id) if p.route == held.route)
    assert (part.worker, part.status) == ("first", RunStatus.RUNNING)
