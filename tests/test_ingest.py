"""Hub ingest against a real store (SQLite and PostgreSQL): what is stored, refused and acked."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hub.ingest import Ingestor, received
from hub.read_row import read_row
from hub.store import Store
from hub.store.collectors import add_collector, revoke_collector, rotate_key
from hub.store.reads import billable_reads, check_stored_chain, quarantine_reasons, read_count
from hub.store.tables import quarantine, reads
from hub.verifier import BackgroundVerifier
from protocols.batch import encode_batch
from protocols.chain import GENESIS_TIP, ChainTip, SealedRead, read_hash, sign_and_chain
from protocols.mqtt_contract import Ack, Rejection, reads_topic
from protocols.signing import Signer
from tests.readings import readings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- helpers (also used by the store and sync tests) -------------------------------------


def enrolled(store: Store, collector: str, signer: Signer | None = None) -> Signer:
    signer = signer or Signer.generate()
    with store.begin() as conn:
        add_collector(conn, collector, signer.public_key)
    return signer


def sealed_reads(signer: Signer, collector: str, count: int,
                 after: ChainTip = GENESIS_TIP) -> list[SealedRead]:
    sealed, _ = sign_and_chain(readings(count), signer=signer, collector=collector, after=after)
    return sealed


def stored_row(sealed: SealedRead) -> dict:
    return read_row(sealed.data, sealed.sig, received_at=NOW)


def tip_of(sealed: list[SealedRead]) -> ChainTip:
    return ChainTip(sealed[-1].seq, read_hash(sealed[-1].data))


def altered(read: SealedRead, old: bytes = b'"value":"', new: bytes = b'"value":"9') -> SealedRead:
    """The same read with one register value changed and its old signature kept."""
    assert old in read.data
    return read._replace(data=read.data.replace(old, new, 1))


def stored_data(store: Store, collector: str) -> dict[int, bytes]:
    with store.connect() as conn:
        rows = conn.execute(select(reads.c.seq, reads.c.data)
                            .where(reads.c.collector == collector)).all()
    return {seq: data for seq, data in rows}


@pytest.fixture
def ingestor(store):
    return Ingestor(store, clock=lambda: NOW)


@pytest.fixture
def gw1(store):
    signer = enrolled(store, "gw-1")
    return signer, sealed_reads(signer, "gw-1", 30)


def send(ingestor: Ingestor, sealed: list[SealedRead], collector: str = "gw-1",
         topic_collector: str | None = None):
    return ingestor.ingest(reads_topic(topic_collector or collector),
                           encode_batch(collector, sealed))


# --- what is stored ------------------------------------------------------------------------


def test_a_batch_is_stored_with_every_field_and_acked_through_its_last_seq(store, ingestor, gw1):
    _, sealed = gw1
    outcome = send(ingestor, sealed[:10])
    assert outcome.ack == Ack(10, ())
    assert (outcome.stored, outcome.refusal) == (10, None)
    with store.connect() as conn:
        row = conn.execute(select(reads).where(reads.c.seq == 3)).one()
        assert check_stored_chain(conn, "gw-1") == 10
    assert row.data == sealed[2].data and row.sig == sealed[2].sig
    assert row.hash == read_hash(sealed[2].data)
    assert row.meter == "SDM630-0001" and row.source == "ami"
    assert row.values["energy_import_kwh"] == {"obis": "1.8.0", "unit": "kWh", "value": "101.002"}
    assert row.read_at.tzinfo is not None and row.received_at == NOW
    assert row.verify_status == "pending"


def test_the_next_batch_links_to_the_last_stored_read(store, ingestor, gw1):
    _, sealed = gw1
    send(ingestor, sealed[:10])
    assert send(ingestor, sealed[10:25]).ack == Ack(25, ())
    with store.connect() as conn:
        assert check_stored_chain(conn, "gw-1") == 25


def test_a_redelivered_batch_changes_nothing_and_is_recorded_as_replayed(store, ingestor, gw1):
    _, sealed = gw1
    send(ingestor, sealed[:10])
    again = send(ingestor, sealed[:10])
    assert again.ack == Ack(10, (Rejection(1, 10, "replayed"),))
    assert (again.stored, again.duplicates) == (0, 10)
    with store.connect() as conn:
        assert read_count(conn) == 10
        assert quarantine_reasons(conn) == {"replayed": 1}


def test_a_batch_overlapping_what_is_stored_adds_only_the_new_reads(store, ingestor, gw1):
    _, sealed = gw1
    send(ingestor, sealed[:10])
    outcome = send(ingestor, sealed[4:15])
    assert (outcome.ack, outcome.stored, outcome.duplicates) == (Ack(15, ()), 5, 6)
    with store.connect() as conn:
        assert check_stored_chain(conn, "gw-1") == 15
        assert quarantine_reasons(conn) == {}


def test_a_seq_gap_acks_only_the_contiguous_part_and_quarantines_nothing(store, ingestor, gw1):
    _, sealed = gw1
    send(ingestor, sealed[:10])
    early = send(ingestor, sealed[20:30])
    assert early.ack == Ack(10, (Rejection(21, 30, "seq_gap"),))
    assert send(ingestor, sealed[10:20]).ack == Ack(20, ())
    assert send(ingestor, sealed[20:30]).ack == Ack(30, ())
    with store.connect() as conn:
        assert check_stored_chain(conn, "gw-1") == 30
        assert quarantine_reasons(conn) == {}


# --- several messages, one commit ----------------------------------------------------------


def message(sealed: list[SealedRead], collector: str = "gw-1", topic_collector: str | None = None):
    return received(reads_topic(topic_collector or collector), encode_batch(collector, sealed),
                    received_at=NOW)


def test_a_group_stores_what_each_batch_would_alone_in_one_commit(store, ingestor, gw1):
    """Out of order, two collectors, a malformed and a tampered batch: each gets its own
    outcome, the gap is closed by its predecessor later in the same group, and the chains
    come out whole."""
    _, sealed = gw1
    signer2 = enrolled(store, "gw-2")
    other = sealed_reads(signer2, "gw-2", 10)
    bad = [*sealed[20:29], altered(sealed[29])]
    group = [message(other[5:], "gw-2"), message(sealed[10:20]), message(sealed[:10]),
             received(reads_topic("gw-1"), b"{not json", received_at=NOW),
             message(other[:5], "gw-2"), message(bad)]
    outcomes = ingestor.ingest_group(group)
    assert [o.ack for o in outcomes] == [
        Ack(10, ()),  # gw-2's second batch came first: a gap in the group, retried after it
        Ack(20, ()),  # gw-1's second batch, likewise
        Ack(10, ()),
        Ack(20, ()),  # the malformed batch, alone: acks the stored tip
        Ack(5, ()),
        Ack(20, (Rejection(21, 30, "bad_signature"),)),
    ]
    assert [o.stored for o in outcomes] == [5, 10, 10, 0, 5, 0]
    with store.connect() as conn:
        assert check_stored_chain(conn, "gw-1") == 20
        assert check_stored_chain(conn, "gw-2") == 10
        assert quarantine_reasons(conn) == {"malformed_batch": 1, "bad_signature": 1}


def test_a_group_whose_transaction_fails_is_ingested_message_by_message(
        store, ingestor, gw1, monkeypatch):
    """One message that breaks the store's transaction must not cost the others theirs."""
    _, sealed = gw1
    signer2 = enrolled(store, "gw-2")
    other = sealed_reads(signer2, "gw-2", 5)
    real = Ingestor._store_in

    def failing_for_gw2(self, conn, topic, *args, **kwargs):
        if "gw-2" in topic:
            raise RuntimeError("the store broke on this one")
        return real(self, conn, topic, *args, **kwargs)

    monkeypatch.setattr(Ingestor, "_store_in", failing_for_gw2)
    outcomes = ingestor.ingest_group([message(sealed[:10]), message(other, "gw-2")])
    assert outcomes[0].ack == Ack(10, ()) and outcomes[1] is None  # None: not acked
    with store.connect() as conn:
        assert check_stored_chain(conn, "gw-1") == 10
        assert read_count(conn, "gw-2") == 0


# --- what is refused -----------------------------------------------------------------------


def test_one_altered_read_refuses_the_batch_and_keeps_nothing_of_it(store, ingestor, gw1):
    _, sealed = gw1
    batch = sealed[:10]
    batch[4] = altered(batch[4])
    outcome = send(ingestor, batch)
    assert outcome.ack == Ack(0, (Rejection(1, 10, "broken_chain"),))
    assert "signature of seq 5" in outcome.refusal.detail
    with store.connect() as conn:
        assert read_count(conn) == 0
        assert quarantine_reasons(conn) == {"broken_chain": 1}
        raw = conn.execute(select(quarantine.c.raw)).scalar_one()
    assert raw == encode_batch("gw-1", batch)


def test_an_altered_last_read_fails_the_batch_signature(store, ingestor, gw1):
    _, sealed = gw1
    batch = sealed[:10]
    batch[-1] = altered(batch[-1])
    assert send(ingestor, batch).ack == Ack(0, (Rejection(1, 10, "bad_signature"),))
    assert stored_data(store, "gw-1") == {}


def test_a_chain_recomputed_around_an_altered_read_fails_its_last_signature(store, ingestor, gw1):
    signer, sealed = gw1
    forger = Signer.generate()
    forged, _ = sign_and_chain(readings(10)[3:], signer=forger, collector="gw-1",
                               after=tip_of(sealed[:3]))
    # the forger claims the genuine key: the bytes name it, the signatures cannot be its own
    forged = [f._replace(data=f.data.replace(forger.key_id.encode(), signer.key_id.encode()))
              for f in forged]
    relinked, prev = [], read_hash(sealed[2].data)
    for f in forged:
        body = json.loads(f.data)
        body["prev_hash"] = prev
        data = json.dumps(body, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()
        relinked.append(f._replace(data=data))
        prev = read_hash(data)
    outcome = send(ingestor, sealed[:3] + relinked)
    assert outcome.ack == Ack(0, (Rejection(1, 10, "bad_signature"),))
    with store.connect() as conn:
        assert read_count(conn) == 0


def test_a_reordered_batch_keeps_the_authenticated_prefix_and_refuses_the_rest(
        store, ingestor, gw1):
    _, sealed = gw1
    batch = sealed[:6]
    batch[2], batch[3] = batch[3], batch[2]
    outcome = send(ingestor, batch)
    assert outcome.ack == Ack(2, (Rejection(3, 6, "seq_regression"),))
    assert sorted(stored_data(store, "gw-1")) == [1, 2]
    assert send(ingestor, sealed[2:6]).ack == Ack(6, ())  # the genuine resend goes through


def test_reads_signed_with_a_key_the_hub_never_enrolled_are_refused(store, ingestor):
    enrolled(store, "gw-1")
    stranger = sealed_reads(Signer.generate(), "gw-1", 5)
    assert send(ingestor, stranger).ack == Ack(0, (Rejection(1, 5, "wrong_key"),))
    with store.connect() as conn:
        assert read_count(conn) == 0 and quarantine_reasons(conn) == {"wrong_key": 1}


def test_an_unknown_collector_is_refused_and_quarantined(store, ingestor):
    sealed = sealed_reads(Signer.generate(), "gw-9", 3)
    outcome = send(ingestor, sealed, collector="gw-9")
    assert outcome.collector == "gw-9"
    assert outcome.ack == Ack(0, (Rejection(1, 3, "unknown_collector"),))
    with store.connect() as conn:
        assert quarantine_reasons(conn) == {"unknown_collector": 1}


def test_a_revoked_collector_stores_nothing_more(store, ingestor, gw1):
    _, sealed = gw1
    send(ingestor, sealed[:5])
    with store.begin() as conn:
        revoke_collector(conn, "gw-1", reason="gateway stolen")
    assert send(ingestor, sealed[5:10]).ack == Ack(5, (Rejection(6, 10, "revoked_key"),))
    assert sorted(stored_data(store, "gw-1")) == [1, 2, 3, 4, 5]


def test_a_batch_on_another_collectors_topic_is_refused(store, ingestor, gw1):
    _, sealed = gw1
    enrolled(store, "gw-2")
    outcome = send(ingestor, sealed[:5], collector="gw-1", topic_collector="gw-2")
    assert outcome.collector == "gw-2"
    assert outcome.ack == Ack(0, (Rejection(1, 5, "wrong_topic"),))
    with store.connect() as conn:
        assert read_count(conn) == 0 and quarantine_reasons(conn) == {"wrong_topic": 1}


def test_reads_of_another_collector_under_a_rewritten_header_are_refused(store, ingestor, gw1):
    _, sealed = gw1
    enrolled(store, "gw-2")
    payload = json.loads(encode_batch("gw-1", sealed[:5]))
    payload["collector"] = "gw-2"
    outcome = ingestor.ingest(reads_topic("gw-2"), json.dumps(payload).encode())
    assert outcome.ack == Ack(0, (Rejection(1, 5, "wrong_collector"),))


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"v":1}', "é".encode("latin-1")])
def test_a_malformed_batch_is_quarantined_and_acks_the_stored_tip(store, ingestor, gw1,
                                                                   payload):
    _, sealed = gw1
    send(ingestor, sealed[:3])
    outcome = ingestor.ingest(reads_topic("gw-1"), payload)
    assert outcome.ack == Ack(3, ())
    assert outcome.refusal.reason == "malformed_batch"
    with store.connect() as conn:
        assert quarantine_reasons(conn) == {"malformed_batch": 1}


@pytest.mark.parametrize("topic", ["meterhub/v1/gw-1/ack", "meterhub/v2/gw-1/reads", "reads"])
def test_a_message_off_the_reads_topics_is_quarantined_and_acked_to_nobody(store, ingestor,
                                                                            topic):
    outcome = ingestor.ingest(topic, b"{}")
    assert (outcome.collector, outcome.ack, outcome.refusal.reason) == (None, None,
                                                                        "wrong_topic")
    with store.connect() as conn:
        assert quarantine_reasons(conn) == {"wrong_topic": 1}


def test_a_forked_chain_conflicting_with_stored_reads_is_refused(store, ingestor, gw1):
    signer, sealed = gw1
    send(ingestor, sealed[:10])
    fork = sealed_reads(signer, "gw-1", 12)  # same key, same seqs, other readings' times
    fork = [f._replace(data=f.data.replace(b'"SDM630-0001"', b'"SDM630-0002"'))
            for f in fork]
    outcome = send(ingestor, fork)
    assert outcome.ack == Ack(10, (Rejection(1, 12, "conflict"),))
    assert stored_data(store, "gw-1") == {s.seq: s.data for s in sealed[:10]}


def test_after_a_rotation_only_the_new_key_signs_new_seqs(store, ingestor, gw1):
    _, sealed = gw1
    send(ingestor, sealed[:10])
    new = Signer.generate()
    with store.begin() as conn:
        rotate_key(conn, "gw-1", new.public_key, from_seq=11)
    stale = sealed[10:15]  # still signed with the old key
    assert send(ingestor, stale).ack == Ack(10, (Rejection(11, 15, "wrong_key"),))
    fresh = sealed_reads(new, "gw-1", 5, after=tip_of(sealed[:10]))
    assert send(ingestor, fresh).ack == Ack(15, ())
    verifier = BackgroundVerifier(store, processes=1)
    assert verifier.verify_pending().verified == 15  # old reads verify against the old key


# --- the background verifier ------------------------------------------------------------


def test_a_bad_signature_inside_an_intact_chain_is_caught_and_never_billable(store, ingestor,
                                                                             gw1):
    signer, sealed = gw1
    batch = sealed[:10]
    batch[3] = batch[3]._replace(sig=signer.sign(b"some other bytes"))
    assert send(ingestor, batch).ack == Ack(10, ())  # the chain and last signature hold
    with store.connect() as conn:
        assert conn.execute(billable_reads).all() == []  # nothing verified yet
    done = BackgroundVerifier(store, processes=1, clock=lambda: NOW).verify_pending()
    assert (done.verified, done.failed) == (9, 1)
    with store.connect() as conn:
        billable = [row.seq for row in conn.execute(billable_reads).all()]
        failed = conn.execute(select(reads.c.verify_status, reads.c.verify_error)
                              .where(reads.c.seq == 4)).one()
        entry = conn.execute(select(quarantine)).one()
    assert billable == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert failed.verify_status == "failed" and "bad_signature" in failed.verify_error
    assert (entry.reason, entry.first_seq, entry.raw) == ("bad_signature", 4, batch[3].data)
    again = BackgroundVerifier(store, processes=1).verify_pending()
    assert again.checked == 0


def test_the_verifier_spreads_work_over_processes(store, ingestor, gw1):
    _, sealed = gw1
    send(ingestor, sealed)
    with BackgroundVerifier(store, processes=2, chunk=7) as verifier:
        done = verifier.verify_pending()
    assert (done.verified, done.failed) == (30, 0)
    with store.connect() as conn:
        assert len(conn.execute(billable_reads).all()) == 30


# --- property: nothing but the genuine bytes is ever stored -------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_mutation_of_a_batch_ever_stores_bytes_the_collector_did_not_sign(tmp_path_factory,
                                                                             data):
    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('p') / 'hub.sqlite'}",
                       upgrade_schema=True)
    try:
        signer = enrolled(store, "gw-1")
        sealed = sealed_reads(signer, "gw-1", 6)
        envelope = json.loads(encode_batch("gw-1", sealed))
        index = data.draw(st.integers(0, 5), label="read")
        entry = envelope["reads"][index]
        if data.draw(st.booleans(), label="mutate signature"):
            sig = bytearray(base64.b64decode(entry["sig"]))
            sig[data.draw(st.integers(0, 63))] ^= 1 << data.draw(st.integers(0, 7))
            entry["sig"] = base64.b64encode(bytes(sig)).decode()
        else:
            text = entry["b"]
            at = data.draw(st.integers(0, len(text) - 1), label="at")
            char = data.draw(st.characters(codec="utf-8"), label="char")
            entry["b"] = text[:at] + char + text[at + 1:]
        Ingestor(store).ingest(reads_topic("gw-1"), json.dumps(envelope).encode())
        BackgroundVerifier(store, processes=1).verify_pending()
        genuine = {s.seq: s.data for s in sealed}
        for seq, stored in stored_data(store, "gw-1").items():
            assert stored == genuine[seq]
        with store.connect() as conn:
            for row in conn.execute(billable_reads).all():
                assert (row.data, row.sig) == (sealed[row.seq - 1].data, sealed[row.seq - 1].sig)
    finally:
        store.close()
