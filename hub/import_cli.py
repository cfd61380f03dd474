"""``meterhub import``: load the CIS's files: accounts, meters, cycles, routes, read history.

A thin layer over :func:`hub.imports.import_file`: it prints what changed
per table, or every problem of a refused file as a table the operator can
work through. Exit codes: 0 imported (or nothing to change), 1 the file has
row problems and nothing was written, 2 the file cannot be used at all
(missing, not UTF-8, not CSV, wrong header) or the store cannot be opened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hub.collectors_cli import open_store
from hub.imports import FileUnusable, ImportRejected, ImportSummary, Kind, import_file
from hub.imports.problems import NO_LINE, Problem

import_app = typer.Typer(
    help="Import master data from the CIS (CSV): accounts, then meters, cycles, routes and "
         "the billed-read history. Each file is imported whole or not at all; see "
         "docs/master-data.md.",
    no_args_is_help=True,
)
out = Console(markup=False)
log = logging.getLogger("hub")

FileArgument = Annotated[Path, typer.Argument(help="The CIS export (UTF-8 CSV with a header).",
                                              show_default=False)]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Check the file and count what "
                                            "would change; write nothing.")]


@import_app.command("accounts")
def import_accounts(ctx: typer.Context, file: FileArgument, dry_run: DryRunOption = False) -> None:
    """Accounts: id, name, service address, status, rate code and rate options."""
    _run(ctx, Kind.ACCOUNTS, file, dry_run)


@import_app.command("meters")
def import_meters(ctx: typer.Context, file: FileArgument, dry_run: DryRunOption = False) -> None:
    """Meters and their installations on accounts (after accounts); exchanges are kept."""
    _run(ctx, Kind.METERS, file, dry_run)


@import_app.command("cycles")
def import_cycles(ctx: typer.Context, file: FileArgument, dry_run: DryRunOption = False) -> None:
    """Billing cycles: read window, scheduled read date and bill period."""
    _run(ctx, Kind.CYCLES, file, dry_run)


@import_app.command("routes")
def import_routes(ctx: typer.Context, file: FileArgument, dry_run: DryRunOption = False) -> None:
    """Routes in walk order (after cycles and meters); each listed route is replaced whole."""
    _run(ctx, Kind.ROUTES, file, dry_run)


@import_app.command("history")
def import_history(ctx: typer.Context, file: FileArgument, dry_run: DryRunOption = False) -> None:
    """Billed reads of past cycles (after cycles and meters), a row per register."""
    _run(ctx, Kind.HISTORY, file, dry_run)


def _run(ctx: typer.Context, kind: Kind, file: Path, dry_run: bool) -> None:
    try:
        with open_store(ctx) as store:
            summary = import_file(store, kind, file, dry_run=dry_run)
    except FileUnusable as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        raise typer.Exit(2) from None
    except ImportRejected as exc:
        out.print(f"{file}: {len(exc.problems)} problem(s); nothing was imported",
                  soft_wrap=True)
        out.print(_problem_table(exc.problems))
        log.error("%s: %d problem(s); nothing was imported", file, len(exc.problems))
        raise typer.Exit(1) from None
    out.print(_headline(summary), soft_wrap=True)
    out.print(_summary_table(summary))


def _headline(summary: ImportSummary) -> str:
    if summary.dry_run:
        return f"{summary.file}: dry run, nothing written"
    if summary.writes:
        return f"{summary.file}: imported"
    return f"{summary.file}: already up to date, nothing written"


def _summary_table(summary: ImportSummary) -> Table:
    table = Table()
    table.add_column("table")
    for column in ("added", "changed", "unchanged", "removed"):
        table.add_column(column, justify="right")
    for name, counts in summary.counts.items():
        table.add_row(name, str(counts.added), str(counts.changed), str(counts.unchanged),
                      str(counts.removed))
    return table


def _problem_table(problems: tuple[Problem, ...]) -> Table:
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("line", justify="right")
    table.add_column("column")
    table.add_column("reason", overflow="fold")
    for problem in problems:
        line = "" if problem.line == NO_LINE else str(problem.line)
        table.add_row(problem.file, line, problem.column, problem.reason)
    return table
