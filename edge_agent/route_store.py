"""The handheld's routes and what was done at each stop, in SQLite, for a day offline.

A technician walks a route for hours without a link and the handheld's battery
may die on the way, so routes and visits live in a file (WAL,
``synchronous=FULL``), never only in memory. The route is kept as the payload
the hub sent — the exact bytes, so what the page shows can always be traced to
what was received — and decoded on demand. The hub re-sends routes (MQTT
retained messages arrive on every connect), so saving a route it already has
is a no-op: a re-delivery must not wipe the visits already made.

A visit links a stop to the signed read in the edge buffer that recorded it
(its ``seq``); the note a technician types stays here, since the signed read
has no free-text field. A stop may be visited more than once (trouble in the
morning, a read in the afternoon); its status is its latest visit.

Example::

    store = RouteStore("routes.sqlite", collector="hh-0007")
    store.save_payload(payload)                 # from MQTT; RouteError when malformed
    route = store.route("R-2026-11-C07-014")
    store.record_visit(route.route_id, 1, outcome="read", seq=42, value="12345.678")
    store.progress(route.route_id)              # Progress(done=1, total=3)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from protocols.route_message import Route, RouteError, decode_route, encode_route
from protocols.scalars import format_instant, parse_instant

log = logging.getLogger(__name__)

Outcome = Literal["read", "trouble"]
OUTCOMES: tuple[Outcome, ...] = ("read", "trouble")
OPEN_TIMEOUT_S = 30

_SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (
    route_id    TEXT PRIMARY KEY,
    cycle       TEXT NOT NULL,
    collector   TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS visits (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    route_id    TEXT NOT NULL REFERENCES routes (route_id),
    sequence    INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('read', 'trouble')),
    seq         INTEGER NOT NULL,
    value       TEXT,
    trouble     TEXT,
    note        TEXT NOT NULL DEFAULT '',
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_by_stop ON visits (route_id, sequence, id);
"""


class RouteStoreError(Exception):
    """A store operation that cannot be right (an unknown route or stop, a bad outcome)."""


class UnknownRoute(RouteStoreError, KeyError):
    """No route with this id has been received."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown route"


@dataclass(frozen=True)
class Progress:
    """How far a route is: stops with a read or a trouble report, of all its stops."""

    done: int
    total: int

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else 100 * self.done // self.total


@dataclass(frozen=True)
class RouteSummary:
    """A route as the list of routes shows it."""

    route_id: str
    cycle: str
    issued_at: datetime
    progress: Progress


@dataclass(frozen=True)
class Visit:
    """What was recorded at a stop: a read (``value``) or a trouble code, and a note."""

    route_id: str
    sequence: int
    outcome: Outcome
    seq: int
    """The buffer seq of the signed read that carries this visit."""
    value: str | None
    trouble: str | None
    note: str
    recorded_at: datetime


class RouteStore:
    """Routes received by one handheld and its visits; safe to share between threads.

    The MQTT thread saves routes while the web server's threads record visits,
    so every operation takes one lock around one connection.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        collector: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``collector``: when given, a route addressed to another collector is refused."""
        self.path = Path(path)
        self.collector = collector
        self._clock = clock
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.path, timeout=OPEN_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")  # a visit survives a dead battery
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.executescript(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RouteStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- routes ------------------------------------------------------------------------

    def save_payload(self, payload: bytes) -> Route:
        """Decode a route message and save it; :class:`RouteError` when it is malformed.

        This is the ``on_route`` callback of the sync client.
        """
        route = decode_route(payload)
        self.save(route, payload=payload)
        return route

    def save(self, route: Route, *, payload: bytes | None = None) -> bool:
        """Keep ``route`` (with the bytes it came as); ``False`` when its id is already kept.

        A re-delivered route changes nothing, even if its content differs: the
        visits made refer to the stops as first received. The hub issues a new
        route id for a changed route.
        """
        if self.collector is not None and route.collector != self.collector:
            raise RouteError(
                f"route {route.route_id} is for collector {route.collector}, "
                f"this handheld is {self.collector}", field="collector",
            )
        data = encode_route(route) if payload is None else bytes(payload)
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO routes (route_id, cycle, collector, issued_at, received_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (route_id) DO NOTHING",
                (route.route_id, route.cycle, route.collector, format_instant(route.issued_at),
                 format_instant(self._clock()), data),
            )
            if cursor.rowcount == 0:
                kept = self._payload(route.route_id)
                if kept != data:
                    log.warning("route %s received again with other content; the first kept",
                                route.route_id)
                return False
        log.info("route %s (cycle %s) received: %d stops", route.route_id, route.cycle,
                 len(route.stops))
        return True

    def payload(self, route_id: str) -> bytes:
        """The route message exactly as it was received."""
        with self._lock:
            return self._payload(route_id)

    def route(self, route_id: str) -> Route:
        """The route with this id; :class:`UnknownRoute` when none was received."""
        return decode_route(self.payload(route_id))

    def routes(self) -> list[RouteSummary]:
        """Every route kept, newest issued first, with its progress."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT route_id, cycle, issued_at FROM routes ORDER BY issued_at DESC, route_id"
            ).fetchall()
            return [RouteSummary(route_id, cycle, parse_instant(issued_at),
                                 self._progress(route_id))
                    for route_id, cycle, issued_at in rows]

    # --- visits ------------------------------------------------------------------------

    def record_visit(
        self,
        route_id: str,
        sequence: int,
        outcome: Outcome,
        seq: int,
        value: str | None = None,
        trouble: str | None = None,
        note: str = "",
    ) -> Visit:
        """Record that the stop was read (``value``) or reported in trouble (``trouble``).

        ``seq`` is the buffer seq of the signed read already appended for it:
        the read is made durable first, so a crash between the two leaves a
        signed read and a stop still "to do", never a stop marked done
        without its read.
        """
        if outcome not in OUTCOMES:
            raise RouteStoreError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        if (outcome == "read") != (value is not None) or (outcome == "trouble") != bool(trouble):
            raise RouteStoreError("a read carries a value, a trouble visit a trouble code")
        route = self.route(route_id)
        if sequence not in {stop.sequence for stop in route.stops}:
            raise RouteStoreError(f"route {route_id} has no stop {sequence}")
        visit = Visit(route_id, sequence, outcome, seq, value, trouble, note, self._clock())
        with self._lock:
            self._conn.execute(
                "INSERT INTO visits (route_id, sequence, outcome, seq, value, trouble, note, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (route_id, sequence, outcome, seq, value, trouble, note,
                 format_instant(visit.recorded_at)),
            )
        return visit

    def visits(self, route_id: str) -> dict[int, Visit]:
        """Each visited stop's latest visit, by sequence."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT route_id, sequence, outcome, seq, value, trouble, note, recorded_at "
                "FROM visits WHERE id IN (SELECT max(id) FROM visits WHERE route_id = ? "
                "GROUP BY sequence)", (route_id,),
            ).fetchall()
        return {row[1]: _visit(row) for row in rows}

    def history(self, route_id: str, sequence: int) -> list[Visit]:
        """Every visit to one stop, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT route_id, sequence, outcome, seq, value, trouble, note, recorded_at "
                "FROM visits WHERE route_id = ? AND sequence = ? ORDER BY id",
                (route_id, sequence),
            ).fetchall()
        return [_visit(row) for row in rows]

    def progress(self, route_id: str) -> Progress:
        """Stops done (read or trouble) of all stops of the route."""
        with self._lock:
            self._payload(route_id)
            return self._progress(route_id)

    # --- inside the lock ---------------------------------------------------------------

    def _payload(self, route_id: str) -> bytes:
        row = self._conn.execute(
            "SELECT payload FROM routes WHERE route_id = ?", (route_id,)
        ).fetchone()
        if row is None:
            raise UnknownRoute(f"no route {route_id!r} has been received")
        return bytes(row[0])

    def _progress(self, route_id: str) -> Progress:
        route = decode_route(self._payload(route_id))
        sequences = {stop.sequence for stop in route.stops}
        visited = {row[0] for row in self._conn.execute(
            "SELECT DISTINCT sequence FROM visits WHERE route_id = ?", (route_id,))}
        return Progress(done=len(sequences & visited), total=len(sequences))


def _visit(row: tuple[object, ...]) -> Visit:
    route_id, sequence, outcome, seq, value, trouble, note, recorded_at = row
    return Visit(str(route_id), int(sequence), outcome, int(seq),  # type: ignore[arg-type]
                 None if value is None else str(value), None if trouble is None else str(trouble),
                 str(note), parse_instant(recorded_at))
