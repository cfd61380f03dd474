"""Meters as the API and the pages show them: facts, installations, signed reads, consumption.

A billing clerk asking "why is this bill high?" needs, for one meter, the
account it serves, every read it sent with the evidence that the read is
genuine (collector, seq, hash chain, signature and whether the hub verified
it), and its use cycle by cycle — measured, estimated or overridden. These
queries answer that once, for the JSON API and the HTML pages alike.

Example::

    with store.connect() as conn:
        found = consumption(conn, "SDM630-00001", cycles=13)
    print([(p.cycle, p.kind, p.registers[0].used) for p in found.points])
"""

from __future__ import annotations

import base64
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row, Select, and_, func, select

from hub.api.pagination import PageParams, paged_rows
from hub.edits.usage import is_cumulative, register_delta
from hub.store.tables import (
    accounts,
    billing_reads,
    cycles,
    meter_installations,
    meters,
    reads,
)
from protocols.scalars import format_decimal

Service = Literal["electric", "water", "gas"]
ReadKind = Literal["actual", "estimated", "override"]
VerifyStatus = Literal["pending", "ok", "failed"]
MAX_CYCLES = 60
DEFAULT_CYCLES = 13
DECIMAL_TEXT = "A decimal as text, exactly (never a float)."


class AccountOut(BaseModel):
    id: str
    name: str
    service_address: str
    status: str
    rate_code: str


class InstallationOut(BaseModel):
    account: str
    installed_on: date
    removed_on: date | None = Field(description="Null while the meter is installed there.")


class MeterOut(BaseModel):
    serial: str
    service: str
    model: str | None
    profile: str | None
    multiplier: str = Field(description=DECIMAL_TEXT)
    dials: int
    unit: str
    size: str | None
    account: str | None = Field(description="The account it serves now (null: removed).")
    last_read_at: datetime | None = Field(description="Its latest stored read's meter time.")


class MeterDetail(MeterOut):
    current_account: AccountOut | None
    installations: list[InstallationOut] = Field(description="Newest first.")


class RegisterOut(BaseModel):
    value: str = Field(description=DECIMAL_TEXT)
    unit: str
    obis: str | None


class ReadOut(BaseModel):
    """One stored read, and the evidence that it is what the meter said."""

    collector: str
    seq: int
    meter: str
    read_at: datetime = Field(description="The meter's clock.")
    collected_at: datetime = Field(description="The collector's clock.")
    received_at: datetime
    source: str
    ntp_synced: bool
    meter_offset_s: str | None = Field(description="Meter clock − collector clock, seconds.")
    values: dict[str, RegisterOut]
    flags: list[str]
    key_id: str = Field(description="The collector key that signed it.")
    hash: str = Field(description="SHA-256 of the signed bytes (hex).")
    prev_hash: str = Field(description="The hash of the collector's read before it.")
    signature: str = Field(description="Ed25519 signature of the signed bytes, base64.")
    verify_status: VerifyStatus
    verified_at: datetime | None
    verify_error: str | None


class RegisterUse(BaseModel):
    name: str = Field(description="The register's canonical name (energy_import_kwh, …).")
    value: str = Field(description=DECIMAL_TEXT)
    used: str | None = Field(description="Use since the previous billing read × multiplier "
                             "(across a rollover); null for the first read or a register "
                             "the previous read lacks. " + DECIMAL_TEXT)
    rolled: bool = Field(description="The register rolled over at its dial count.")


class ConsumptionPoint(BaseModel):
    cycle: str
    read_at: datetime
    kind: ReadKind
    method: str | None = Field(description="How an estimate was made.")
    origin: str = Field(description="edits (meterhub made it) or cis (imported history).")
    collector: str | None
    seq: int | None
    multiplier: str = Field(description=DECIMAL_TEXT)
    registers: list[RegisterUse]


class Consumption(BaseModel):
    meter: str
    unit: str
    main_register: str | None = Field(description="The register a chart shows (the cumulative one "
                                 "most reads carry).")
    points: list[ConsumptionPoint] = Field(description="One per cycle, oldest first.")


def _text(value: Any) -> str:
    return format_decimal(Decimal(str(value)))


_CURRENT = and_(meter_installations.c.meter == meters.c.serial,
                meter_installations.c.removed_on.is_(None))


def _listing() -> Select:
    current = (select(meter_installations.c.account).where(_CURRENT)
               .order_by(meter_installations.c.installed_on.desc()).limit(1)
               .correlate(meters).scalar_subquery())
    last_read = (select(func.max(reads.c.read_at)).where(reads.c.meter == meters.c.serial)
                 .correlate(meters).scalar_subquery())
    return select(meters, current.label("account"), last_read.label("last_read_at"))


def _meter_out(row: Row) -> dict[str, Any]:
    return {"serial": row.serial, "service": row.service, "model": row.model,
            "profile": row.profile, "multiplier": _text(row.multiplier), "dials": row.dials,
            "unit": row.unit, "size": row.size, "account": row.account,
            "last_read_at": row.last_read_at}


def meter_page(conn: Connection, params: PageParams, *, service: str | None = None,
               account: str | None = None, q: str | None = None
               ) -> tuple[list[MeterOut], int]:
    """A page of meters by serial; ``q`` is a serial prefix (any case), ``account`` any
    account the meter was ever installed at."""
    query = _listing()
    if service is not None:
        query = query.where(meters.c.service == service)
    if account is not None:
        query = query.where(meters.c.serial.in_(select(meter_installations.c.meter).where(
            meter_installations.c.account == account)))
    if q:
        query = query.where(func.lower(meters.c.serial).startswith(q.lower(), autoescape=True))
    rows, total = paged_rows(conn, query.order_by(meters.c.serial), params)
    return [MeterOut(**_meter_out(row)) for row in rows], total


def meter_detail(conn: Connection, serial: str) -> MeterDetail | None:
    row = conn.execute(_listing().where(meters.c.serial == serial)).first()
    if row is None:
        return None
    installed = conn.execute(select(meter_installations).where(
        meter_installations.c.meter == serial).order_by(
        meter_installations.c.installed_on.desc())).all()
    current = None
    if row.account is not None:
        found = conn.execute(select(accounts).where(accounts.c.id == row.account)).first()
        if found is not None:
            current = AccountOut(id=found.id, name=found.name,
                                 service_address=found.service_address, status=found.status,
                                 rate_code=found.rate_code)
    return MeterDetail(**_meter_out(row), current_account=current, installations=[
        InstallationOut(account=i.account, installed_on=i.installed_on, removed_on=i.removed_on)
        for i in installed])


def meter_exists(conn: Connection, serial: str) -> bool:
    return conn.execute(select(meters.c.serial).where(meters.c.serial == serial)).first() \
        is not None


def read_out(row: Row) -> ReadOut:
    values = {}
    for name, register in (row.values or {}).items():
        if isinstance(register, dict):
            values[name] = RegisterOut(value=str(register.get("value")),
                                       unit=str(register.get("unit")), obis=register.get("obis"))
    return ReadOut(
        collector=row.collector, seq=row.seq, meter=row.meter, read_at=row.read_at,
        collected_at=row.collected_at, received_at=row.received_at, source=row.source,
        ntp_synced=row.ntp_synced, meter_offset_s=row.meter_offset_s, values=values,
        flags=[str(f) for f in row.flags or ()], key_id=row.key_id, hash=row.hash,
        prev_hash=row.prev_hash, signature=base64.b64encode(row.sig).decode("ascii"),
        verify_status=row.verify_status, verified_at=row.verified_at,
        verify_error=row.verify_error)


def read_page(conn: Connection, serial: str, params: PageParams, *,
              start: datetime | None = None, end: datetime | None = None
              ) -> tuple[list[ReadOut], int]:
    """A page of the meter's stored reads, newest first, ``start`` ≤ read_at ≤ ``end``."""
    query = select(reads).where(reads.c.meter == serial)
    if start is not None:
        query = query.where(reads.c.read_at >= start)
    if end is not None:
        query = query.where(reads.c.read_at <= end)
    query = query.order_by(reads.c.read_at.desc(), reads.c.collector, reads.c.seq.desc())
    rows, total = paged_rows(conn, query, params)
    return [read_out(row) for row in rows], total


def consumption(conn: Connection, serial: str, *, cycles_back: int = DEFAULT_CYCLES
                ) -> Consumption | None:
    """The meter's billing reads of its last ``cycles_back`` cycles and the use each measured.

    One read more than shown is fetched, so the oldest shown still has its
    use; the use runs the way billing reads it (rollover at the dial count,
    times the multiplier), so these figures are the ones its bills priced.
    """
    meter = conn.execute(select(meters.c.unit, meters.c.dials).where(
        meters.c.serial == serial)).first()
    if meter is None:
        return None
    rows = conn.execute(
        select(billing_reads).join(cycles, cycles.c.id == billing_reads.c.cycle)
        .where(billing_reads.c.meter == serial)
        .order_by(billing_reads.c.read_at.desc(), cycles.c.scheduled_read_date.desc(),
                  billing_reads.c.cycle.desc())
        .limit(cycles_back + 1)).all()
    rows.reverse()
    points: list[ConsumptionPoint] = []
    previous: dict[str, Decimal] | None = None
    for n, row in enumerate(rows):
        values = {name: Decimal(str(v)) for name, v in row.registers.items()}
        multiplier = Decimal(row.multiplier)
        uses = []
        for name, value in sorted(values.items()):
            used: Decimal | None = None
            rolled = False
            if previous is not None and is_cumulative(name) and name in previous:
                delta = register_delta(previous[name], value, meter.dials)
                used, rolled = delta.used * multiplier, delta.rolled
            uses.append(RegisterUse(name=name, value=format_decimal(value),
                                    used=format_decimal(used) if used is not None else None,
                                    rolled=rolled))
        previous = values
        if n == 0 and len(rows) > cycles_back:
            continue  # only the previous read of the oldest one shown
        points.append(ConsumptionPoint(
            cycle=row.cycle, read_at=row.read_at, kind=row.kind, method=row.method,
            origin=row.origin, collector=row.collector, seq=row.seq,
            multiplier=format_decimal(multiplier), registers=uses))
    return Consumption(meter=serial, unit=meter.unit, main_register=main_register(points),
                       points=points)


def main_register(points: list[ConsumptionPoint]) -> str | None:
    """The cumulative register most points carry; the shortest name (the total, not a
    tariff's) breaks a tie."""
    counts = Counter(u.name for p in points for u in p.registers if is_cumulative(u.name))
    if not counts:
        return None
    return min(counts, key=lambda name: (-counts[name], len(name), name))
