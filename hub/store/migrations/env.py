"""Alembic's entry point for the hub schema; run through :mod:`hub.store.migrate`.

The caller hands over an open connection in ``config.attributes["connection"]``
so the migration runs in the caller's transaction and logging setup.
"""

from __future__ import annotations

from alembic import context

from hub.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run hub migrations through `meterhub db upgrade` (hub.store.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
