"""``meterhub rates``: import a URDB tariff as a rate file, and check a directory of rate files.

A thin layer over :mod:`hub.rates.urdb` and :class:`~hub.rates.book.RateBook`:

``meterhub rates import-urdb tariff.json --code RES-TOU --out rates/`` converts
an OpenEI Utility Rate Database tariff (the API's ``{"items": [...]}`` answer
or one tariff object) into ``rates/RES-TOU.yaml``, validated before it is
written, and prints what it converted. Exit codes: 0 written; 1 the tariff
uses features a rate file cannot express (every one is listed); 2 the file is
unreadable or malformed, the output exists (``--force`` replaces it), or the
options are wrong.

``meterhub rates check [DIR]`` loads a directory of rate files (default: the
sample rates shipped with meterhub) and lists each rate's versions and
components; exit 2 lists every file's problem.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from hub.rates.book import RateBook, RateBookError, default_rate_dir
from hub.rates.model import (
    Blocks,
    Component,
    Demand,
    Fixed,
    MinimumBill,
    RateTable,
    Tier,
    Tiered,
    TimeOfUse,
)
from hub.rates.schema import load_rate
from hub.rates.urdb import UnsupportedTariff, UrdbError, import_urdb, notes, read_tariff

rates_app = typer.Typer(help="Rate tables: import a tariff from the OpenEI Utility Rate "
                             "Database, check a directory of rate files.",
                        no_args_is_help=True)


@rates_app.command("import-urdb")
def import_urdb_command(
    file: Annotated[Path, typer.Argument(
        help="A URDB tariff (JSON): the API's answer {\"items\": [...]} or one tariff.",
        metavar="FILE.json")],
    code: Annotated[str, typer.Option(help="The rate code; the file written is <CODE>.yaml.")],
    out: Annotated[Path, typer.Option(
        help="Directory to write the rate file in.", file_okay=False)] = Path(),
    label: Annotated[str | None, typer.Option(
        help="The tariff's URDB label, when the file holds several.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing <CODE>.yaml.")] = False,
    register: Annotated[list[str] | None, typer.Option(
        help="N=REGISTER: bill URDB period N (from 1) from the meter's TOU register, e.g. "
             "1=energy_import_kwh_t1; name every period or none (default: interval data "
             "only). Repeatable.")] = None,
) -> None:
    """Convert a URDB electric tariff into a rate file, or list why it cannot be."""
    registers = _period_registers(register or [])
    try:
        path = import_urdb(file, code=code, out_dir=out, label=label, overwrite=force,
                           period_registers=registers)
    except UnsupportedTariff as exc:
        typer.echo(f"{exc.file}: cannot import: {len(exc.reasons)} unsupported feature(s):",
                   err=True)
        for where, why in exc.reasons:
            typer.echo(f"  {where}: {why}", err=True)
        raise typer.Exit(1) from None
    except UrdbError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except FileExistsError:
        typer.echo(f"error: {out / f'{code}.yaml'} exists; --force replaces it", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: cannot write {out / f'{code}.yaml'}: {exc.strerror or exc}",
                   err=True)
        raise typer.Exit(2) from None
    rate = load_rate(path)
    typer.echo(f"wrote {path}: rate {rate.code}, {rate.description}")
    for line in describe(rate):
        typer.echo(f"  {line}")
    for note in notes(read_tariff(file, label=label), source=str(file)):
        typer.echo(f"note: {note}")


@rates_app.command("check")
def check_command(
    directory: Annotated[Path | None, typer.Argument(
        help="Directory of rate files, one <RATE-CODE>.yaml each; default: the sample rates "
             "shipped with meterhub.", file_okay=False, show_default=False)] = None,
) -> None:
    """Load every rate file of a directory; list the rates, or every file's problem."""
    where = directory if directory is not None else default_rate_dir()
    try:
        book = RateBook.load(where)
    except RateBookError as exc:
        typer.echo(f"{exc.directory}: {len(exc.errors)} rate file(s) with problems:", err=True)
        for error in exc.errors:
            typer.echo(f"  {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{len(book)} rate(s) in {where}:")
    for rate in book:
        typer.echo(f"{rate.code} ({rate.service}, {rate.unit}, {rate.currency}): "
                   f"{rate.description}")
        for version, first, last in rate.spans():
            components = ", ".join(f"{c.id} {c.type}" for c in version.components)
            options = (f"; options {', '.join(version.options)}" if version.options else "")
            typer.echo(f"  {_span(first, last)}: {components}{options}")


def _period_registers(given: list[str]) -> dict[int, str]:
    registers: dict[int, str] = {}
    for item in given:
        number, sep, name = item.partition("=")
        if not sep or not number.strip().isdigit() or not name.strip():
            raise typer.BadParameter(f"{item!r} is not N=REGISTER (e.g. 1=energy_import_kwh_t1)",
                                     param_hint="--register")
        if int(number) in registers:
            raise typer.BadParameter(f"period {int(number)} is named twice",
                                     param_hint="--register")
        registers[int(number)] = name.strip()
    return registers


def _span(first: date, last: date | None) -> str:
    return f"{first} … {last}" if last is not None else f"{first} …"


# --- what a rate holds, in words ----------------------------------------------------------------


def describe(rate: RateTable) -> list[str]:
    """One line per component of each version, in words (what ``import-urdb`` prints)."""
    lines = []
    for version, first, last in rate.spans():
        lines.append(f"in force {_span(first, last)}")
        for component in version.components:
            lines.append(f"{component.id}: {_component(component)}")
    return lines


def _component(component: Component) -> str:
    if isinstance(component, Fixed):
        return f"fixed charge {component.amount} per {component.per}"
    if isinstance(component, Tiered):
        days = "day" if component.standard_days == 1 else f"{component.standard_days} days"
        scale = (f" (tier bounds per {days}, scaled to the bill)" if component.scale == "days"
                 else "")
        return f"tiered energy on {component.register}: {_blocks(component.blocks, 'kWh')}{scale}"
    if isinstance(component, TimeOfUse):
        periods = "; ".join(f"{p.name} {_blocks(p.blocks, 'kWh')}" for p in component.periods)
        registers = ", ".join(p.register for p in component.periods)
        fallback = ("no fallback price" if component.fallback is None else
                    f"else {_blocks(component.fallback, 'kWh')} on {component.register}")
        return (f"time-of-use energy, {len(component.periods)} period(s): {periods}; weekday "
                f"and weekend schedules 12 × 24; billed from interval data or the registers "
                f"{registers}; {fallback}")
    if isinstance(component, Demand):
        ratchet = ""
        if component.ratchet is not None:
            ratchet = (f"; ratchet {component.ratchet.percent} % of the highest demand of the "
                       f"last {component.ratchet.months} months")
        return f"demand {_blocks(component.blocks, 'kW')} per kW{ratchet}"
    if isinstance(component, MinimumBill):
        return (f"minimum charge {component.amount} per {component.per} over "
                f"{', '.join(component.of)}")
    return component.type


def _blocks(blocks: Blocks, unit: str) -> str:
    if blocks.seasonal:
        return "; ".join(f"{season.name} (months {', '.join(map(str, season.months))}) "
                         f"{_tiers(season.tiers, unit)}" for season in blocks.seasons)
    return _tiers(blocks.tiers, unit)


def _tiers(tiers: tuple[Tier, ...], unit: str) -> str:
    if len(tiers) == 1:
        return f"at {tiers[0].price}"
    parts = []
    lower = "0"
    for tier in tiers:
        if tier.up_to is None:
            parts.append(f"over {lower} {unit} at {tier.price}")
        else:
            parts.append(f"{lower}–{tier.up_to} {unit} at {tier.price}")
            lower = str(tier.up_to)
    return ", ".join(parts)
