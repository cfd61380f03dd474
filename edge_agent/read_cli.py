"""``edge-agent read``: one read of one meter, printed as a table — a technician's probe test."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edge_agent.one_shot import read_once, resolve_profile
from protocols.channels import Protocol
from protocols.driver import MeterError, MeterSample
from protocols.scalars import format_decimal, format_instant

out = Console(markup=False)
log = logging.getLogger("edge_agent")


def read(
    protocol: Annotated[Protocol, typer.Option("--protocol", "-p", help="Wire protocol.")],
    port: Annotated[str, typer.Option(
        "--port", help="Serial device (/dev/ttyUSB0) or host:port for Modbus TCP.")],
    profile: Annotated[str | None, typer.Option(
        "--profile", help="Firmware profile id (see `edge-agent profiles list`).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Meter model, to select the profile with --firmware.")] = None,
    firmware: Annotated[str | None, typer.Option("--firmware", help="Firmware version.")] = None,
    unit_id: Annotated[int, typer.Option("--unit-id", help="Modbus unit id.")] = 1,
    address: Annotated[str, typer.Option(
        "--address", help="IEC 62056-21 device address (empty: any meter).")] = "",
    baudrate: Annotated[int | None, typer.Option(
        "--baudrate", help="Override the profile's baud rate (serial only).")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Response timeout in seconds (default: the protocol's).")] = None,
    echo: Annotated[bool, typer.Option(
        "--echo", help="The optical head echoes what it sends; cancel the echo.")] = False,
    timezone: Annotated[str | None, typer.Option(
        "--timezone", help="Time zone of the meter's clock (IEC, P1).")] = None,
    profile_dir: Annotated[list[Path] | None, typer.Option(
        "--profile-dir", help="Extra directory of profile YAML files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Read one meter once and print what it said; nothing is signed or buffered."""
    try:
        chosen = resolve_profile(profile, model, firmware, profile_dir or [])
        samples = read_once(
            protocol, port, chosen, unit_id=unit_id, address=address, baudrate=baudrate,
            timeout_s=timeout, echo=echo, timezone=timezone,
        )
    except MeterError as exc:
        log.error("read failed [%s]: %s", exc.kind, exc)
        raise typer.Exit(1) from None
    except ValueError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(json.dumps([_sample_json(sample) for sample in samples]))
        return
    for sample in samples:
        out.print(_sample_table(chosen.id, port, sample))


def _sample_json(sample: MeterSample) -> dict[str, object]:
    return {
        "mbus_channel": sample.mbus_channel,
        "identity": sample.identity,
        "meter_time": format_instant(sample.meter_time) if sample.meter_time else None,
        "flags": list(sample.flags),
        "values": {
            name: {"value": format_decimal(v.value), "unit": v.unit, "obis": v.obis}
            for name, v in sample.values.items()
        },
    }


def _sample_table(profile_id: str, port: str, sample: MeterSample) -> Table:
    title = f"{profile_id} on {port}"
    if sample.mbus_channel:
        title += f" — M-Bus channel {sample.mbus_channel}"
    caption = [
        f"meter time {format_instant(sample.meter_time) if sample.meter_time else 'none'}",
        f"identity {sample.identity or 'not reported'}",
        f"flags {', '.join(sample.flags) or 'none'}",
    ]
    table = Table(title=title, caption=" · ".join(caption))
    table.add_column("register")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("OBIS")
    for name, value in sample.values.items():
        table.add_row(name, format_decimal(value.value), value.unit, value.obis or "")
    return table
