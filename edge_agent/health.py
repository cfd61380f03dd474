"""Per-meter health: when each meter last answered, and how it has been failing.

A gateway runs unattended, so the question "which of my meters are not
answering, since when, and how?" must be answerable from the box itself
(``edge-agent status``) and later from the hub. The collector updates a
:class:`HealthBoard` after every poll; the board is written atomically to a
small JSON file a few times a minute, so ``status`` in another process reads a
complete snapshot, never a half-written one.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from edge_agent.files import write_atomic
from protocols.driver import MeterError
from protocols.scalars import format_instant, parse_instant


@dataclass
class MeterHealth:
    serial: str
    protocol: str
    polls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error_kind: str | None = None
    last_error: str | None = None
    failures_by_kind: Counter[str] = field(default_factory=Counter)

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0 and self.last_success is not None


class HealthBoard:
    """Thread-safe health of every meter the collector polls."""

    def __init__(self, meters: dict[str, str]) -> None:
        """``meters`` maps serial → protocol."""
        self._lock = threading.Lock()
        self._meters = {
            serial: MeterHealth(serial, protocol) for serial, protocol in meters.items()
        }

    def success(self, serial: str, at: datetime) -> None:
        with self._lock:
            health = self._meters[serial]
            health.polls += 1
            health.last_attempt = health.last_success = at
            health.consecutive_failures = 0

    def failure(self, serial: str, at: datetime, error: MeterError) -> None:
        with self._lock:
            health = self._meters[serial]
            health.polls += 1
            health.failures += 1
            health.consecutive_failures += 1
            health.last_attempt = at
            health.last_error_kind = error.kind
            health.last_error = str(error)
            health.failures_by_kind[error.kind] += 1

    def snapshot(self) -> list[MeterHealth]:
        with self._lock:
            return [
                MeterHealth(**{**asdict(h), "failures_by_kind": Counter(h.failures_by_kind)})
                for h in self._meters.values()
            ]

    def save(self, path: Path) -> None:
        rows = []
        for health in self.snapshot():
            row = asdict(health)
            for key in ("last_attempt", "last_success"):
                row[key] = format_instant(row[key]) if row[key] else None
            row["failures_by_kind"] = dict(health.failures_by_kind)
            rows.append(row)
        write_atomic(path, json.dumps({"v": 1, "meters": rows}, indent=1).encode())


def load_health(path: Path) -> list[MeterHealth]:
    """The last snapshot an agent saved; raises ``OSError``/``ValueError`` if unreadable."""
    document = json.loads(path.read_text(encoding="utf-8"))
    meters = []
    for row in document["meters"]:
        for key in ("last_attempt", "last_success"):
            row[key] = parse_instant(row[key]) if row[key] else None
        row["failures_by_kind"] = Counter(row["failures_by_kind"])
        meters.append(MeterHealth(**row))
    return meters
