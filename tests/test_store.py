"""The hub store: migrations give the declared schema, and the collector registry's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from hub.store import Store
from hub.store.collectors import (
    CollectorError,
    add_collector,
    find_collector,
    get_collector,
    list_collectors,
    revoke_collector,
    rotate_key,
)
from hub.store.engine import make_engine
from hub.store.migrate import (
    SchemaVersionError,
    current_revision,
    head_revision,
    require_current,
    upgrade,
)
from hub.store.reads import insert_reads
from hub.store.tables import metadata, quarantine
from hub.store.types import UtcDateTime, sqlite_utc_text
from protocols.chain import GENESIS_HASH
from protocols.signing import Signer


def test_migrating_an_empty_database_gives_exactly_the_declared_tables(store_url):
    engine = make_engine(store_url)
    try:
        assert upgrade(engine) == (None, head_revision())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert upgrade(engine) == (head_revision(), head_revision())  # idempotent
    finally:
        engine.dispose()


def test_a_store_that_was_never_migrated_is_refused_with_the_fix(store_url):
    with pytest.raises(SchemaVersionError, match="meterhub db upgrade"):
        Store.open(store_url)


def test_a_store_from_a_newer_hub_is_refused(store):
    with store.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaVersionError, match="newer meterhub"):
        require_current(store.engine)
    assert current_revision(store.engine) == "9999"


def test_times_come_back_aware_utc_whatever_zone_went_in(store):
    cet = timezone(timedelta(hours=1))
    with store.begin() as conn:
        conn.execute(insert(quarantine).values(
            topic="t", reason="r", detail="d", raw=b"x",
            received_at=datetime(2026, 11, 23, 7, 0, tzinfo=cet)))
        got = conn.execute(select(quarantine.c.received_at)).scalar_one()
    assert got == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_a_naive_time_is_refused_rather_than_guessed(store):
    with pytest.raises(Exception, match="naive datetime"), store.begin() as conn:
        conn.execute(insert(quarantine).values(
            topic="t", reason="r", detail="d", raw=b"x", received_at=datetime(2026, 1, 1)))


def test_an_enrolled_collector_starts_at_the_genesis_of_its_chain(store):
    signer = Signer.generate()
    with store.begin() as conn:
        collector = add_collector(conn, "gw-1", signer.public_key)
    assert (collector.last_seq, collector.last_hash) == (0, GENESIS_HASH)
    assert collector.key_id == signer.key_id and collector.active
    assert collector.key_for(signer.key_id, 1) is not None
    assert collector.key_for(Signer.generate().key_id, 1) is None


def test_a_collector_cannot_be_enrolled_twice_or_under_a_bad_id(store):
    with store.begin() as conn:
        add_collector(conn, "gw-1", Signer.generate().public_key)
    with pytest.raises(CollectorError, match="already enrolled"), store.begin() as conn:
        add_collector(conn, "gw-1", Signer.generate().public_key)
    with pytest.raises(CollectorError, match="not a collector id"), store.begin() as conn:
        add_collector(conn, "gw/1", Signer.generate().public_key)


def test_rotation_keeps_the_old_key_for_the_seqs_it_signed(store):
    old, new = Signer.generate(), Signer.generate()
    with store.begin() as conn:
        add_collector(conn, "gw-1", old.public_key)
        rotated = rotate_key(conn, "gw-1", new.public_key, from_seq=101)
    assert rotated.key_id == new.key_id
    assert rotated.key_for(old.key_id, 100) is not None
    assert rotated.key_for(old.key_id, 101) is None
    assert rotated.key_for(new.key_id, 101) is not None
    assert rotated.key_for(new.key_id, 100) is None


def test_a_key_replaced_before_it_signed_anything_stored_covers_no_seq(store):
    leaked, new = Signer.generate(), Signer.generate()
    with store.begin() as conn:
        add_collector(conn, "gw-1", leaked.public_key)
        rotated = rotate_key(conn, "gw-1", new.public_key, from_seq=1)
    assert all(rotated.key_for(leaked.key_id, seq) is None for seq in (1, 2, 10**6))
    assert rotated.key_for(new.key_id, 1) is not None


def test_a_second_rotation_closes_every_key_reaching_its_seq(store):
    a, b, c = Signer.generate(), Signer.generate(), Signer.generate()
    with store.begin() as conn:
        add_collector(conn, "gw-1", a.public_key)
        rotate_key(conn, "gw-1", b.public_key, from_seq=100)
        rotated = rotate_key(conn, "gw-1", c.public_key, from_seq=50)
    assert rotated.key_for(a.key_id, 49) is not None
    assert rotated.key_for(a.key_id, 60) is None and rotated.key_for(b.key_id, 150) is None
    assert rotated.key_for(c.key_id, 60) is not None


def test_rotation_cannot_reassign_stored_seqs_or_reuse_a_key(store):
    old = Signer.generate()
    with store.begin() as conn:
        add_collector(conn, "gw-1", old.public_key)
        conn.exec_driver_sql("UPDATE collectors SET last_seq = 50")
    with pytest.raises(CollectorError, match="not after seq 50"), store.begin() as conn:
        rotate_key(conn, "gw-1", Signer.generate().public_key, from_seq=50)
    with pytest.raises(CollectorError, match="already used"), store.begin() as conn:
        rotate_key(conn, "gw-1", old.public_key, from_seq=51)


def test_revocation_is_recorded_once_and_rotation_refused_after(store):
    with store.begin() as conn:
        add_collector(conn, "gw-1", Signer.generate().public_key)
        revoked = revoke_collector(conn, "gw-1", reason="stolen gateway")
    assert not revoked.active and revoked.revoked_at is not None
    with pytest.raises(CollectorError, match="already revoked"), store.begin() as conn:
        revoke_collector(conn, "gw-1", reason="again")
    with pytest.raises(CollectorError, match="revoked"), store.begin() as conn:
        rotate_key(conn, "gw-1", Signer.generate().public_key, from_seq=1)


def test_unknown_collectors_are_named_in_the_error(store):
    with store.connect() as conn:
        assert find_collector(conn, "gw-x") is None
        assert list_collectors(conn) == []
        with pytest.raises(CollectorError, match="gw-x is not enrolled"):
            get_collector(conn, "gw-x")


def test_a_seq_is_stored_once_per_collector(store):
    from tests.test_ingest import enrolled, sealed_reads, stored_row

    signer = enrolled(store, "gw-1")
    read = sealed_reads(signer, "gw-1", 1)[0]
    with store.begin() as conn:
        conn.execute(insert(metadata.tables["reads"]), [stored_row(read)])
    with pytest.raises(IntegrityError), store.begin() as conn:
        conn.execute(insert(metadata.tables["reads"]), [stored_row(read)])


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.timezones()))
def test_the_fast_sqlite_time_text_is_what_sqlalchemy_writes_and_reads(value):
    dialect = sqlite.dialect()
    slow = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert sqlite_utc_text(value) == slow(value)
    back = UtcDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert back(sqlite_utc_text(value)) == value.astimezone(UTC)  # aware, UTC, same instant


def test_ingest_binding_stores_what_the_orm_free_insert_would(store):
    from tests.test_ingest import enrolled, sealed_reads, stored_row

    signer = enrolled(store, "gw-1")
    row = stored_row(sealed_reads(signer, "gw-1", 1)[0])
    with store.begin() as conn:
        insert_reads(conn, [row])
        got = conn.execute(select(metadata.tables["reads"])).one()._mapping
    for name, value in row.items():
        assert got[name] == value, name
