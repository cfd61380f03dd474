"""The polling collector: every configured meter read on its interval, forever.

Lanes keep the wire rules: the meters of one serial bus share one lane, so an
RS-485 line carries one transaction at a time (Modbus RTU allows no other);
TCP meters are spread over ``tcp_lanes`` lanes that run in parallel, with the
unit ids behind one TCP address kept in one lane (they sit behind one
gateway). A lane polls whichever of its meters is due next.

A failed poll is retried with exponential backoff and jitter; a meter that
keeps failing costs its own lane time, never another lane's. Each failure is a
typed :class:`~protocols.driver.MeterError` — logged with its kind and counted
in the meter's health — and never stops the collector. Each success becomes
one :class:`~protocols.read.Reading` per sample (a P1 port with a gas meter
gives two), flagged by the gateway's plausibility checks, and goes to the sink
(the buffer writer, which signs and chains it).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from edge_agent.clock import ntp_synced
from edge_agent.drivers import LaneLinks
from edge_agent.health import HealthBoard
from edge_agent.meter_config import CollectionSection
from edge_agent.meter_plan import MeterPlan
from edge_agent.plausibility import Limits, RegisterMemory, plausibility_flags
from protocols.channels import Protocol
from protocols.driver import MeterDriver, MeterError, MeterSample
from protocols.errors import ReadError
from protocols.read import METER_RE, ClockQuality, Reading, RegisterValue

if TYPE_CHECKING:
    from edge_agent.metrics import EdgeMetrics

log = logging.getLogger(__name__)

KEEP_OPEN = frozenset({Protocol.MODBUS_TCP, Protocol.MODBUS_RTU})
"""Connections held between polls. Optical and P1 ports are released after each read:
a probe session ends with the readout, and an unread P1 port only fills with old telegrams."""
Sink = Callable[[list[Reading]], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _MeterState:
    plan: MeterPlan
    due: float
    limits: Limits
    memory: RegisterMemory = field(default_factory=RegisterMemory)
    sub_memories: dict[str, RegisterMemory] = field(default_factory=dict)
    driver: MeterDriver | None = None

    def memory_for(self, sample: MeterSample, serial: str) -> RegisterMemory:
        """The meter's own register memory, or its M-Bus sub-meter's."""
        if sample.mbus_channel == 0:
            return self.memory
        return self.sub_memories.setdefault(serial, RegisterMemory())


class Collector:
    """Polls ``plans`` until stopped; see the module docstring."""

    def __init__(
        self,
        plans: Sequence[MeterPlan],
        *,
        collection: CollectionSection,
        sink: Sink,
        health: HealthBoard | None = None,
        clock: Callable[[], datetime] = utc_now,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.collection = collection
        self.sink = sink
        self.health = health or HealthBoard({p.serial: p.protocol.value for p in plans})
        self.metrics = metrics
        if metrics is not None:
            metrics.watch_meters(p.serial for p in plans)
        self._clock = clock
        self._random = random.Random()  # noqa: S311 - jitter, not security
        self.lanes = _lanes(plans, collection.tcp_lanes)

    def run(self, stop: threading.Event) -> None:
        """Poll on every lane until ``stop`` is set; return once every lane has let go."""
        threads = [
            threading.Thread(target=self._run_lane, args=(name, plans, stop),
                             name=f"lane {name}", daemon=True)
            for name, plans in self.lanes.items()
        ]
        log.info("collector: %d meters on %d lanes",
                 sum(len(p) for p in self.lanes.values()), len(threads))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _run_lane(self, name: str, plans: list[MeterPlan], stop: threading.Event) -> None:
        start = time.monotonic()
        # Spread the first polls over a second so a restart does not hit every meter at once.
        states = [
            _MeterState(plan, start + index / max(len(plans), 1), self._limits(plan))
            for index, plan in enumerate(plans)
        ]
        links = LaneLinks()
        try:
            while not stop.is_set():
                state = min(states, key=lambda s: s.due)
                wait = state.due - time.monotonic()
                if wait > 0:
                    stop.wait(min(wait, 1.0))
                    continue
                self.poll(state, links, stop)
                now = time.monotonic()
                state.due += state.plan.interval_s
                if state.due < now:  # overran: skip the missed slots rather than burst
                    state.due = now + state.plan.interval_s
        finally:
            for state in states:
                _close(state)
            links.close()
            log.debug("lane %s stopped", name)

    def _limits(self, plan: MeterPlan) -> Limits:
        meter = plan.config
        return Limits(dials=meter.dials, max_use_per_hour=meter.max_use_per_hour,
                      stuck_after_s=meter.stuck_after_s,
                      clock_tolerance_s=self.collection.clock_tolerance_s)

    def poll(self, state: _MeterState, links: LaneLinks, stop: threading.Event) -> bool:
        """One poll of one meter with retries; True when it produced reads."""
        plan = state.plan
        attempts = self.collection.retries + 1
        for attempt in range(1, attempts + 1):
            collected_at = self._clock()
            try:
                if state.driver is None:
                    driver = links.driver(plan)
                    driver.connect()
                    state.driver = driver
                samples = state.driver.read(plan.profile.channels)
            except MeterError as exc:
                _close(state)
                log.warning("meter %s: poll attempt %d/%d failed [%s] %s",
                            plan.serial, attempt, attempts, exc.kind, exc)
                if attempt == attempts:
                    self.health.failure(plan.serial, collected_at, exc)
                    if self.metrics is not None:
                        self.metrics.poll_failed(plan.serial, exc)
                    return False
                backoff = self.collection.retry_backoff_s * 2 ** (attempt - 1)
                if stop.wait(backoff * (1 + self._random.random() / 4)):
                    return False
                continue
            if plan.protocol not in KEEP_OPEN:
                _close(state)
            readings = self._readings(state, samples, collected_at)
            if readings:
                self.sink(readings)
            self.health.success(plan.serial, collected_at)
            if self.metrics is not None:
                self.metrics.poll_succeeded(plan.serial)
            return True
        return False

    def _readings(
        self, state: _MeterState, samples: list[MeterSample], collected_at: datetime
    ) -> list[Reading]:
        readings = []
        for sample in samples:
            try:
                readings.append(self._reading(state, sample, collected_at))
            except (ReadError, ValueError) as exc:
                log.error("meter %s: sample of M-Bus channel %d cannot become a read: %s",
                          state.plan.serial, sample.mbus_channel, exc)
        return readings

    def _reading(
        self, state: _MeterState, sample: MeterSample, collected_at: datetime
    ) -> Reading:
        serial = _sample_serial(state.plan, sample)
        offset = None
        if sample.meter_time is not None and sample.mbus_channel == 0:
            seconds = (sample.meter_time - collected_at).total_seconds()
            offset = Decimal(str(round(seconds, 3)))
        values = {
            name: RegisterValue(value.value, value.unit, value.obis)
            for name, value in sample.values.items()
        }
        flags = plausibility_flags(
            state.memory_for(sample, serial), {n: (v.value, v.unit) for n, v in values.items()},
            collected_at, offset, state.limits,
        )
        return Reading(
            meter=serial,
            read_at=sample.meter_time or collected_at,
            collected_at=collected_at,
            clock=ClockQuality(ntp_synced=ntp_synced(), meter_offset_s=offset),
            source=self.collection.source,
            values=values,
            flags=(*sample.flags, *flags),
        )


def _sample_serial(plan: MeterPlan, sample: MeterSample) -> str:
    """The meter a sample belongs to: the configured one, or its M-Bus sub-meter."""
    if sample.mbus_channel == 0:
        return plan.serial
    configured = plan.config.submeters.get(sample.mbus_channel)
    if configured:
        return configured
    if sample.identity and METER_RE.fullmatch(sample.identity):
        return sample.identity
    return f"{plan.serial}-mbus{sample.mbus_channel}"


def _close(state: _MeterState) -> None:
    if state.driver is not None:
        try:
            state.driver.close()
        except MeterError as exc:
            log.debug("closing %s: %s", state.plan.serial, exc)
        state.driver = None


def _lanes(plans: Sequence[MeterPlan], tcp_lanes: int) -> dict[str, list[MeterPlan]]:
    """Serial buses one lane each; TCP addresses dealt round-robin onto ``tcp_lanes`` lanes."""
    by_address: dict[str, list[MeterPlan]] = defaultdict(list)
    for plan in plans:
        by_address[plan.lane].append(plan)
    lanes: dict[str, list[MeterPlan]] = {}
    tcp_groups = [group for key, group in by_address.items() if key.startswith("tcp:")]
    for key, group in by_address.items():
        if not key.startswith("tcp:"):
            lanes[key] = group
    for index, group in enumerate(tcp_groups):
        lanes.setdefault(f"tcp-{index % tcp_lanes}", []).extend(group)
    return lanes
