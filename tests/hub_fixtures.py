"""Hub store fixtures: every hub test runs on a SQLite file and on a fresh PostgreSQL database.

PostgreSQL is the server on 127.0.0.1:5432 (``.ci/run`` starts it); each test
gets a database of its own, created from template0 and dropped afterwards, so
no test sees another's rows or depends on what a previous run left behind.
``METERHUB_TEST_PG`` names another server (a libpq connection string).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from hub.store import Store

PG_ADMIN = os.environ.get("METERHUB_TEST_PG", "host=127.0.0.1 port=5432 dbname=test")


def _pg_params() -> dict[str, str]:
    return dict(part.split("=", 1) for part in PG_ADMIN.split())


def fresh_pg_url() -> tuple[str, str]:
    """(SQLAlchemy URL, database name) of a new, empty PostgreSQL database."""
    name = f"meterhub_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    params = _pg_params()
    user = params.get("user", "")
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}", name


def drop_pg(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> Iterator[str]:
    """An empty hub store URL, once per database kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.sqlite'}"
        return
    url, name = fresh_pg_url()
    try:
        yield url
    finally:
        drop_pg(name)


@pytest.fixture
def store(store_url) -> Iterator[Store]:
    """A migrated hub store, once on SQLite and once on PostgreSQL."""
    with Store.open(store_url, upgrade_schema=True) as opened:
        yield opened
