"""Open the hub's database: a SQLite file by default, PostgreSQL by URL.

SQLite needs three settings to be a safe hub store: WAL (readers never block
the writer), ``synchronous=FULL`` (a committed batch survives a power cut;
the edge deletes reads once acked, so an ack must never outlive its data)
and ``BEGIN IMMEDIATE`` for every transaction, so two workers sharing the
file queue for the write lock at the start instead of failing halfway
through. PostgreSQL needs nothing special: ingest locks the collector's row.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

DEFAULT_URL = "sqlite:///meterhub.sqlite"
SQLITE_BUSY_TIMEOUT_S = 60


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://…``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
                               json_serializer=compact_json)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ValueError(f"use postgresql+psycopg:// (psycopg 3), not {parsed.drivername}")
        return create_engine(parsed, pool_pre_ping=True, json_serializer=compact_json)
    raise ValueError(f"unsupported database {parsed.drivername!r}: use sqlite or postgresql")


def compact_json(value: Any) -> str:
    """JSON columns as compact UTF-8 text: no padding spaces in every stored row."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def display_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions begin in _sqlite_begin_immediate
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
