import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.buffer import (
    AckError,
    BufferFull,
    CollectorMismatch,
    EdgeBuffer,
    EdgeBufferError,
)
from edge_agent.buffer_schema import SCHEMA_VERSION, SchemaError
from protocols.canonical import decode_read
from protocols.chain import GENESIS_HASH, verify_chain
from protocols.errors import ChainError, WrongKeyError
from protocols.signing import Signer
from tests.readings import reading, readings


@pytest.fixture
def signer():
    return Signer.generate()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "buffer.sqlite"


def open_buffer(path, signer=None, **kwargs):
    return EdgeBuffer(path, collector="gw-0001", signer=signer, **kwargs)


def test_append_signs_chains_and_stores(path, signer):
    with open_buffer(path, signer) as buffer:
        sealed = buffer.append(readings(3))
        assert [s.seq for s in sealed] == [1, 2, 3]
        assert buffer.pending() == sealed
    reads = verify_chain([s.signed for s in sealed], signer.public_key, collector="gw-0001")
    assert reads[0].prev_hash == GENESIS_HASH
    assert reads[2].meter == "SDM630-0001"


def test_the_file_is_wal_with_full_sync(path, signer):
    with open_buffer(path, signer) as buffer:
        assert buffer.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert buffer.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_seq_and_chain_continue_across_restarts(path, signer):
    for _ in range(3):
        with open_buffer(path, signer) as buffer:
            buffer.append(readings(4))
    with open_buffer(path) as buffer:
        sealed = buffer.pending()
        assert [s.seq for s in sealed] == list(range(1, 13))
        assert buffer.verify(signer.public_key) == 12
    assert len(verify_chain([s.signed for s in sealed], signer.public_key)) == 12


def test_a_read_from_the_buffer_verifies_and_a_changed_character_does_not(path, signer):
    from protocols.chain import SignedRead, verify_read
    from protocols.errors import ReadError

    with open_buffer(path, signer) as buffer:
        sealed = buffer.append([reading(7)])[0]
    assert verify_read(sealed.signed, signer.public_key).seq == 1
    text = sealed.data.decode()
    changed = text.replace("SDM630-0001", "SDM630-0002").encode()
    with pytest.raises(ReadError):
        verify_read(SignedRead(changed, sealed.sig), signer.public_key)


def test_pending_respects_limit_and_after_seq(path, signer):
    with open_buffer(path, signer) as buffer:
        buffer.append(readings(10))
        assert [s.seq for s in buffer.pending(limit=3)] == [1, 2, 3]
        assert [s.seq for s in buffer.pending(limit=3, after_seq=5)] == [6, 7, 8]
        buffer.ack(4)
        assert [s.seq for s in buffer.pending(limit=2)] == [5, 6]


def test_ack_is_idempotent_and_monotonic(path, signer):
    with open_buffer(path, signer) as buffer:
        buffer.append(readings(5))
        assert buffer.ack(3) == 3
        assert buffer.ack(3) == 0       # MQTT redelivery
        assert buffer.ack(2) == 0       # an old ack arriving late
        assert buffer.stats().pending == 2
        assert buffer.ack(5) == 2
        assert buffer.pending() == []


def test_ack_beyond_the_tip_is_an_error(path, signer):
    with open_buffer(path, signer) as buffer:
        buffer.append(readings(2))
        with pytest.raises(AckError, match="never made"):
            buffer.ack(3)
        assert buffer.stats().acked_through == 0


def test_prune_deletes_only_acked_reads_past_retention(path, signer):
    now = datetime(2026, 11, 23, tzinfo=UTC)
    clock = [now]
    with open_buffer(path, signer, retention=timedelta(days=7), clock=lambda: clock[0]) as buf:
        buf.append(readings(10))
        buf.ack(4)
        clock[0] = now + timedelta(days=3)
        buf.ack(8)
        assert buf.prune(now + timedelta(days=6)) == 0            # nothing old enough
        assert buf.prune(now + timedelta(days=7, seconds=1)) == 4  # first ack only
        assert buf.stats().held == 6
        assert buf.prune(now + timedelta(days=30)) == 4
        assert [s.seq for s in buf.pending()] == [9, 10]          # unacked stay
        assert buf.verify(signer.public_key) == 2                  # chain from the anchor
        buf.append(readings(1))
        assert buf.tip().seq == 11


def test_budget_full_of_unacked_reads_raises_buffer_full(path, signer):
    with open_buffer(path, signer, budget_bytes=20_000) as buffer:
        with pytest.raises(BufferFull, match="never dropped"):
            for _ in range(100):
                buffer.append(readings(5))
        before = buffer.stats()
        assert before.stored_bytes <= 20_000
        with pytest.raises(BufferFull):
            buffer.append(readings(5))
        after = buffer.stats()
        assert after == before                       # the failed batch left no trace
        assert buffer.verify(signer.public_key) == before.last_seq


def test_acked_reads_make_room_but_unacked_never_do(path, signer):
    with open_buffer(path, signer, budget_bytes=20_000) as buffer:
        with pytest.raises(BufferFull):
            for _ in range(100):
                buffer.append(readings(5))
        full = buffer.stats()
        buffer.ack(10)
        buffer.append(readings(5))                   # fits now, by dropping acked reads
        stats = buffer.stats()
        assert stats.last_seq == full.last_seq + 5
        assert stats.held < full.held + 5
        unacked = [s.seq for s in buffer.pending(limit=10_000)]
        assert unacked == list(range(11, stats.last_seq + 1))
        assert buffer.verify(signer.public_key) == stats.held


def test_a_nearly_full_disk_refuses_appends(path, signer):
    with open_buffer(path, signer, min_free_bytes=10**18) as buffer, \
            pytest.raises(BufferFull, match="free"):
        buffer.append(readings(1))


def test_stats_report_depth_and_oldest_unacked(path, signer):
    with open_buffer(path, signer) as buffer:
        assert buffer.stats().oldest_unacked_at is None
        buffer.append(readings(3))
        buffer.ack(1)
        stats = buffer.stats()
        assert (stats.last_seq, stats.acked_through, stats.pending, stats.held) == (3, 1, 2, 3)
        assert stats.oldest_unacked_at == reading(1).collected_at
        assert stats.stored_bytes > 3 * 400


def test_a_buffer_belongs_to_one_collector(path, signer):
    open_buffer(path, signer).close()
    with pytest.raises(CollectorMismatch, match="gw-0001"):
        EdgeBuffer(path, collector="gw-0002", signer=signer)


def test_appending_without_a_signer_is_refused(path):
    with open_buffer(path) as buffer, pytest.raises(EdgeBufferError, match="signing key"):
        buffer.append(readings(1))


def test_appending_something_other_than_readings_is_refused(path, signer):
    with open_buffer(path, signer) as buffer, pytest.raises(TypeError):
        buffer.append([{"meter": "x"}])


def test_schema_is_migrated_and_versioned(path, signer):
    open_buffer(path, signer).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "reads", "chain", "acks", "keys"} <= tables
    conn.close()
    open_buffer(path, signer).close()               # reopening migrates nothing twice


def test_a_newer_schema_is_left_untouched(path, signer):
    with open_buffer(path, signer) as buffer:
        buffer.append(readings(2))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="upgrade the agent"):
        open_buffer(path, signer)


def test_key_rotation_is_recorded_and_verifiable(path, signer):
    with open_buffer(path, signer) as buffer:
        buffer.append(readings(2))
    rotated = Signer.generate()
    with open_buffer(path, rotated) as buffer:
        buffer.append(readings(2))
        assert set(buffer.public_keys()) == {signer.key_id, rotated.key_id}
        assert buffer.verify() == 4
        with pytest.raises(WrongKeyError, match="not one of this collector's keys"):
            buffer.verify(signer.public_key)


def test_check_tip_detects_a_removed_newest_read(path, signer):
    with open_buffer(path, signer) as buffer:
        buffer.append(readings(3))
        buffer.check_tip()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM reads WHERE seq = 3")
    conn.commit()
    conn.close()
    with open_buffer(path) as buffer, pytest.raises(ChainError, match="altered outside"):
        buffer.check_tip()


def test_threads_appending_and_acking_keep_one_gap_free_chain(path, signer):
    with open_buffer(path, signer) as buffer:
        errors = []

        def appender():
            try:
                for _ in range(20):
                    buffer.append(readings(5))
            except Exception as exc:  # noqa: BLE001 - surfaced by the assert below
                errors.append(exc)

        def acker():
            for _ in range(50):
                pending = buffer.pending(limit=7)
                if pending:
                    buffer.ack(pending[-1].seq)

        threads = [threading.Thread(target=appender) for _ in range(3)]
        threads.append(threading.Thread(target=acker))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert buffer.tip().seq == 300
        assert buffer.verify(signer.public_key) == 300


def test_two_processes_appending_share_one_chain(path, signer, tmp_path):
    from cryptography.hazmat.primitives import serialization

    key_path = tmp_path / "k.pem"
    key_path.write_bytes(signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_path.chmod(0o600)
    code = (
        "import sys; from pathlib import Path\n"
        "from edge_agent.buffer import EdgeBuffer\n"
        "from edge_agent.keys import load_signer\n"
        "from tests.readings import readings\n"
        "b = EdgeBuffer(sys.argv[1], collector='gw-0001', signer=load_signer(Path(sys.argv[2])))\n"
        "for _ in range(30): b.append(readings(10))\n"
    )
    repo = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(key_path)], cwd=repo)
             for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    with open_buffer(path) as buffer:
        assert buffer.tip().seq == 600
        assert buffer.verify(signer.public_key) == 600


def test_decoded_reads_keep_what_the_meter_said(path, signer):
    with open_buffer(path, signer) as buffer:
        sealed = buffer.append([reading(0, flags=("tamper",))])
    read = decode_read(sealed[0].data)
    assert str(read.values["energy_export_kwh"].value) == "0.000"
    assert read.flags == ("tamper",)
    assert read.collector == "gw-0001"


OPEN_AND_APPEND = (
    "import sys, time\n"
    "from edge_agent.buffer import EdgeBuffer\n"
    "from protocols.signing import Signer\n"
    "from tests.readings import readings\n"
    "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all open at the same instant\n"
    "EdgeBuffer(sys.argv[1], collector='gw-0001', signer=Signer.generate()).append(readings(2))\n"
)


@pytest.mark.slow
def test_many_processes_opening_a_new_buffer_at_once_all_succeed(tmp_path):
    """Creating the file and switching it to WAL races; every opener must still get in."""
    repo = Path(__file__).resolve().parents[1]
    for round_ in range(3):
        path = tmp_path / f"round-{round_}" / "buffer.sqlite"
        start_at = str(time.time() + 1.5)
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_APPEND, str(path), start_at],
                                  cwd=repo, stderr=subprocess.PIPE, text=True) for _ in range(8)]
        failures = [err for p in procs if (err := p.communicate(timeout=120)[1]) and p.returncode]
        assert not failures, failures[0][-800:]
        with open_buffer(path) as buffer:
            assert buffer.verify() == 16
