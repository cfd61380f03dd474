"""The last status message each collector sent: online or offline, its buffer depth.

Collectors publish their status retained (birth ``online`` with buffer depth
on connect and on every sync; last will ``offline``), so a hub that starts
late still learns every collector's state from the broker at once. A status
older than the one stored (by the collector's own ``at``) is ignored, so a
retained message redelivered after a newer one cannot roll health back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.store.tables import collector_status
from protocols.mqtt_contract import Status


@dataclass(frozen=True)
class CollectorHealth:
    collector: str
    state: str
    version: str
    reported_at: datetime | None
    received_at: datetime
    buffer_depth: int | None
    last_seq: int | None
    acked_through: int | None

    def online(self, now: datetime, offline_after_s: float) -> bool:
        """Online by its last word, and that word recent enough to still believe."""
        return self.state == "online" and (now - self.received_at).total_seconds() \
            <= offline_after_s


def record_status(conn: Connection, collector: str, status: Status, *,
                  now: datetime | None = None) -> bool:
    """Keep ``status`` as ``collector``'s latest unless a newer one is stored; True if kept."""
    now = now or datetime.now(UTC)
    values = {"state": status.state, "version": status.version[:64], "reported_at": status.at,
              "received_at": now, "buffer_depth": status.buffer_depth,
              "last_seq": status.last_seq, "acked_through": status.acked_through}
    stored = conn.execute(select(collector_status.c.reported_at).where(
        collector_status.c.collector == collector).with_for_update()).first()
    if stored is None:
        try:
            with conn.begin_nested():  # two workers may both see the first status
                conn.execute(insert(collector_status).values(collector=collector, **values))
            return True
        except IntegrityError:
            stored = conn.execute(select(collector_status.c.reported_at).where(
                collector_status.c.collector == collector).with_for_update()).one()
    if stored.reported_at is not None and status.at is not None and status.at < stored.reported_at:
        return False
    conn.execute(update(collector_status).where(collector_status.c.collector == collector)
                 .values(**values))
    return True


def collector_health(conn: Connection) -> dict[str, CollectorHealth]:
    return {row.collector: CollectorHealth(**row._asdict())
            for row in conn.execute(select(collector_status))}
