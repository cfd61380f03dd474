"""API: meters — their facts and installations, their signed reads, their use cycle by cycle.

A serial may hold ``/`` (``protocols.read.METER_RE``), so the routes take
the rest of the path as the serial; the reads and consumption routes are
declared first, so ``/meters/X/reads`` is meter X's reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime

from hub.api.auth import VIEWER, Principal
from hub.api.errors import not_found, problem_responses
from hub.api.pagination import Page, PageParams, page_params
from hub.views.meters import (
    DEFAULT_CYCLES,
    MAX_CYCLES,
    Consumption,
    MeterDetail,
    MeterOut,
    ReadOut,
    Service,
    consumption,
    meter_detail,
    meter_exists,
    meter_page,
    read_page,
)
from protocols.read import METER_RE

router = APIRouter(tags=["meters"])

KEY_PATTERN = f"^{METER_RE.pattern}$"
"""Serials, account and cycle ids as the CIS import admits them."""
Serial = Annotated[str, Path(min_length=1, max_length=64, pattern=KEY_PATTERN,
                             description="The meter's serial (it may contain '/').")]


def clamp_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; an instant beyond year 1…9999 in UTC is the nearest one inside."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


@router.get("/meters", responses=problem_responses())
def list_meters(
    request: Request, _who: Annotated[Principal, Depends(VIEWER)],
    paging: Annotated[PageParams, Depends(page_params)],
    service: Service | None = None,
    account: Annotated[str | None, Query(min_length=1, max_length=64, pattern=KEY_PATTERN,
                                         description="Meters ever installed at this account.")
                       ] = None,
    q: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._:/-]*$",
                                   description="A serial prefix (any case).")] = None,
) -> Page[MeterOut]:
    """Meters by serial, with the account each serves now and its latest read's time."""
    with request.app.state.store.connect() as conn:
        items, total = meter_page(conn, paging, service=service, account=account, q=q)
    return Page[MeterOut].of(items, total, paging)


@router.get("/meters/{serial:path}/reads", responses=problem_responses(404))
def list_reads(
    request: Request, serial: Serial, _who: Annotated[Principal, Depends(VIEWER)],
    paging: Annotated[PageParams, Depends(page_params)],
    start: Annotated[AwareDatetime | None, Query(
        alias="from", description="Reads at or after this instant (with its zone).")] = None,
    end: Annotated[AwareDatetime | None, Query(
        alias="to", description="Reads at or before this instant (with its zone).")] = None,
) -> Page[ReadOut]:
    """The meter's stored reads, newest first, each with its signed provenance: the
    collector and seq, the key, the hash chain link, the signature and the hub's verdict."""
    with request.app.state.store.connect() as conn:
        if not meter_exists(conn, serial):
            raise not_found(f"meter {serial}")
        items, total = read_page(conn, serial, paging, start=clamp_utc(start),
                                 end=clamp_utc(end))
    return Page[ReadOut].of(items, total, paging)


@router.get("/meters/{serial:path}/consumption", responses=problem_responses(404))
def show_consumption(
    request: Request, serial: Serial, _who: Annotated[Principal, Depends(VIEWER)],
    cycles: Annotated[int, Query(ge=1, le=MAX_CYCLES, description="How many of the latest "
                                 "cycles.")] = DEFAULT_CYCLES,
) -> Consumption:
    """The meter's billing read of each of its last cycles, oldest first — actual, estimated
    or overridden — and the use each measured since the one before (as billed)."""
    with request.app.state.store.connect() as conn:
        found = consumption(conn, serial, cycles_back=cycles)
    if found is None:
        raise not_found(f"meter {serial}")
    return found


@router.get("/meters/{serial:path}", responses=problem_responses(404))
def show_meter(request: Request, serial: Serial, _who: Annotated[Principal, Depends(VIEWER)]
               ) -> MeterDetail:
    """One meter: its facts, the account it serves, and where it was installed."""
    with request.app.state.store.connect() as conn:
        found = meter_detail(conn, serial)
    if found is None:
        raise not_found(f"meter {serial}")
    return found
