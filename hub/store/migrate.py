"""Versioned schema migrations (Alembic), the same scripts for SQLite and PostgreSQL.

``meterhub db upgrade`` brings a database to the newest schema; every other
command refuses a database that is behind (or ahead, written by a newer hub)
instead of failing later on a missing column.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaVersionError(Exception):
    """The database schema is not the one this hub version was written for."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate to ``revision`` in one transaction; return (before, after)."""
    before = current_revision(engine)
    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)
    return before, current_revision(engine)


def require_current(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaVersionError("the database has no meterhub schema; run `meterhub db upgrade`")
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current not in known:
        raise SchemaVersionError(
            f"the database is at schema {current}, unknown to this hub (newest {head}): "
            "it was written by a newer meterhub"
        )
    raise SchemaVersionError(
        f"the database is at schema {current}, this hub needs {head}; run `meterhub db upgrade`"
    )
