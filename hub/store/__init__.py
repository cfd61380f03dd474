"""The hub store: collectors, reads and quarantine in SQLite or PostgreSQL (SQLAlchemy Core).

Example::

    store = Store.open("sqlite:///meterhub.sqlite", upgrade=True)
    with store.begin() as conn:
        add_collector(conn, "gw-0001", public_key)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from hub.store.engine import DEFAULT_URL, display_url, make_engine
from hub.store.migrate import require_current, upgrade


@dataclass
class Store:
    engine: Engine
    url: str

    @classmethod
    def open(cls, url: str = DEFAULT_URL, *, upgrade_schema: bool = False) -> Store:
        """Open ``url``; migrate it first with ``upgrade_schema``, else insist it is current."""
        engine = make_engine(url)
        try:
            if upgrade_schema:
                upgrade(engine)
            else:
                require_current(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def begin(self) -> AbstractContextManager[Connection]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        return self.engine.begin()

    def connect(self) -> AbstractContextManager[Connection]:
        return self.engine.connect()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return display_url(self.url)


__all__ = ["DEFAULT_URL", "Store"]
