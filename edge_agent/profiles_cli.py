"""``edge-agent profiles``: list, show and check the firmware profiles a gateway can use.

A thin layer over :class:`firmware_profiles.ProfileLibrary`: everything here
can be done from Python. ``check`` is what a technician runs after dropping a
new YAML file into a profile directory — every problem comes out as one
``file: key: why`` line and the exit code is 1 — and ``check --select`` says
which profile a meter of a given model and firmware would be read with.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from firmware_profiles import (
    Profile,
    ProfileError,
    ProfileLibrary,
    ProfileNotFound,
)
from protocols.channels import Channel, ModbusChannel, ObisChannel

profiles_app = typer.Typer(
    help=(
        "Firmware profiles: the register maps and OBIS lists meters are read with. "
        "List them, show one, or check profile files before a gateway uses them."
    ),
    no_args_is_help=True,
)

ProfileDirs = Annotated[
    list[Path] | None,
    typer.Option(
        "--profile-dir",
        help="Another directory of profile files, searched after the bundled ones "
        "and METERHUB_PROFILE_PATH (repeatable).",
    ),
]
PROTOCOL_FAMILIES = ("modbus", "iec62056_21", "dsmr_p1")


def _console() -> Console:
    """Rich output; tables are not squeezed to 80 columns when output is captured or piped."""
    return Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)


def _library(profile_dir: list[Path] | None) -> ProfileLibrary:
    return ProfileLibrary.load(list(profile_dir or ()))


@profiles_app.command("list")
def list_profiles(
    protocol: Annotated[
        str | None,
        typer.Option("--protocol", help=f"Only this protocol: {', '.join(PROTOCOL_FAMILIES)}."),
    ] = None,
    profile_dir: ProfileDirs = None,
) -> None:
    """Every usable profile: id, model, firmware range, protocol, service, channel count."""
    if protocol is not None and protocol not in PROTOCOL_FAMILIES:
        raise typer.BadParameter(f"{protocol!r} is not one of {', '.join(PROTOCOL_FAMILIES)}",
                                 param_hint="--protocol")
    library = _library(profile_dir)
    profiles = [p for p in library.all() if protocol is None or p.protocol == protocol]
    table = Table(title=f"{len(profiles)} firmware profiles")
    for column in ("id", "manufacturer", "model", "firmware", "protocol", "service"):
        table.add_column(column, no_wrap=True)
    table.add_column("channels", justify="right")
    for profile in profiles:
        table.add_row(profile.id, profile.manufacturer, profile.model, str(profile.firmware),
                      profile.protocol, profile.service, str(len(profile.channels)))
    console = _console()
    console.print(table)
    broken = library.check()
    if broken:
        console.print(f"{len(broken)} profile file(s) or directories have problems: "
                      "run `edge-agent profiles check`", style="yellow", markup=False)


@profiles_app.command("show")
def show_profile(
    profile: Annotated[str, typer.Argument(help="A profile id, or the path of a .yaml file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable dump.")]
    = False,
    profile_dir: ProfileDirs = None,
) -> None:
    """One profile: where it comes from, its settings, and every channel."""
    try:
        found = _library(profile_dir).get(profile)
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(profile_dump(found), indent=2, ensure_ascii=False))
        return
    console = _console()
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    for label, value in _header_rows(found):
        header.add_row(label, value)
    console.print(header)
    console.print(_channel_table(found))


@profiles_app.command("check")
def check_profiles(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Profile files to check (default: every profile the library finds)."),
    ] = None,
    select: Annotated[
        str | None,
        typer.Option("--select", metavar="MODEL",
                     help="Also show which profile a meter of this model would be read with."),
    ] = None,
    firmware: Annotated[
        str | None, typer.Option("--firmware", metavar="VER", help="Firmware for --select.")
    ] = None,
    profile_dir: ProfileDirs = None,
) -> None:
    """Validate profiles; print each problem as `file: key: why`; exit 1 if there is any."""
    if (select is None) != (firmware is None):
        raise typer.BadParameter("--select MODEL and --firmware VER go together",
                                 param_hint="--select/--firmware")
    library = _library(profile_dir)
    if files:
        checked, errors = library.check_files(files)
        count = len(checked)
    else:
        errors = library.check()
        count = len(library)
    for error in errors:
        for line in error.lines():
            typer.echo(line)
    failed = bool(errors)
    if not failed:
        channels = sum(len(p.channels) for p in (checked if files else library.all()))
        typer.echo(f"OK: {_count(count, 'profile')}, {_count(channels, 'channel')}, "
                   "no problems")
    if select is not None and firmware is not None:
        try:
            chosen = library.select(select, firmware)
        except ProfileNotFound as exc:
            typer.echo(f"{select} firmware {firmware}: {exc}")
            failed = True
        else:
            typer.echo(f"{select} firmware {firmware} → {chosen.id} ({chosen.title})")
    if failed:
        raise typer.Exit(1)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _header_rows(profile: Profile) -> list[tuple[str, str]]:
    serial = profile.serial
    rows = [
        ("id", profile.id),
        ("meter", f"{profile.manufacturer} {profile.model}"),
        ("firmware", str(profile.firmware)),
        ("protocol", profile.protocol),
        ("service", profile.service),
        ("serial", f"{serial.baudrate} {serial.bytesize}{serial.parity}{serial.stopbits}"),
    ]
    if profile.extends:
        rows.append(("extends", profile.extends))
    if profile.protocol == "modbus":
        modbus = profile.modbus
        rows.append(("modbus", f"merge={'yes' if modbus.merge else 'no'}, "
                               f"max_block={modbus.max_block}, max_gap={modbus.max_gap}"))
    if profile.protocol == "iec62056_21":
        iec = profile.iec
        rows.append(("iec", f"mode {iec.mode}, {iec.initial_baud}→{iec.max_baud} baud, "
                            f"reaction {iec.reaction_s} s"))
    rows += [("source", profile.source), ("file", str(profile.path))]
    return rows


def _channel_table(profile: Profile) -> Table:
    modbus = profile.protocol == "modbus"
    table = Table(title=f"{len(profile.channels)} channels")
    table.add_column("name", no_wrap=True)
    table.add_column("address" if modbus else "code", no_wrap=True)
    table.add_column("type" if modbus else "group", no_wrap=True)
    for column in ("scale", "unit", "OBIS", "role"):
        table.add_column(column, no_wrap=True)
    for channel in profile.channels:
        where, kind = _where(channel)
        role = channel.role.value
        if channel.flags:
            role += " " + ", ".join(f"{bit}:{name}" for bit, name in sorted(channel.flags.items()))
        table.add_row(channel.name, where, kind, _scale(channel.scale), channel.unit or "—",
                      channel.obis or "—", role)
    return table


def _where(channel: Channel) -> tuple[str, str]:
    if isinstance(channel, ModbusChannel):
        kind = channel.data_type.value
        if channel.count > 1 and channel.word_order.value == "little":
            kind += ", LSW first"
        if channel.byte_order.value == "little":
            kind += ", bytes swapped"
        return f"0x{channel.address:04X} fn {channel.function}", kind
    if isinstance(channel, ObisChannel):
        group = str(channel.group)
        if channel.mbus_channel:
            group += f" (M-Bus {channel.mbus_channel})"
        return channel.code, group
    return "—", "—"


def _scale(scale: Decimal) -> str:
    return "—" if scale == 1 else str(scale)


def profile_dump(profile: Profile) -> dict[str, Any]:
    """A profile as JSON-ready data: every field, decimals and enums as strings."""
    return {
        "id": profile.id,
        "manufacturer": profile.manufacturer,
        "model": profile.model,
        "firmware": {"min": profile.firmware.min, "max": profile.firmware.max},
        "protocol": profile.protocol,
        "service": profile.service,
        "source": profile.source,
        "path": str(profile.path),
        "extends": profile.extends,
        "serial": _plain(vars(profile.serial)),
        "modbus": _plain(vars(profile.modbus)),
        "iec": _plain(vars(profile.iec)),
        "channels": [_channel_dump(channel) for channel in profile.channels],
    }


def _channel_dump(channel: Channel) -> dict[str, Any]:
    data = {key: value for key, value in vars(channel).items() if key != "flags"}
    data["flags"] = {str(bit): name for bit, name in sorted(channel.flags.items())}
    data["kind"] = "modbus" if isinstance(channel, ModbusChannel) else "obis"
    return _plain(data)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, Decimal):
            return str(value)
        return value

    return {key: convert(value) for key, value in data.items()}
