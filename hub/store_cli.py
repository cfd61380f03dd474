"""``meterhub db`` and ``meterhub reads``: the store's schema and what it holds."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select

from hub.collectors_cli import open_store
from hub.store.collectors import get_collector
from hub.store.engine import display_url, make_engine
from hub.store.migrate import current_revision, head_revision, upgrade
from hub.store.reads import check_stored_chain, quarantine_reasons
from hub.store.tables import collectors, reads
from hub.verifier import BackgroundVerifier
from protocols.errors import ReadError

db_app = typer.Typer(help="The hub store's schema (Alembic migrations).", no_args_is_help=True)
reads_app = typer.Typer(help="Stored reads: counts, verification, chain checks.",
                        no_args_is_help=True)
out = Console(markup=False)
log = logging.getLogger("hub")


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    """An engine for ``url`` whatever its schema; a URL we cannot use exits 2 with one line."""
    try:
        engine = make_engine(url)
    except ValueError as exc:
        log.error("%s: %s", display_url(url), exc)
        raise typer.Exit(2) from None
    try:
        yield engine
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the hub store to this version's schema (one transaction)."""
    url = ctx.obj["db"]
    with _engine(url) as engine:
        before, after = upgrade(engine)
    if before == after:
        out.print(f"{display_url(url)}: schema {after} is current")
    else:
        out.print(f"{display_url(url)}: schema {before or '(empty)'} → {after}")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """The store's schema revision against this hub's newest."""
    url = ctx.obj["db"]
    with _engine(url) as engine:
        current = current_revision(engine)
    head = head_revision()
    out.print(f"{display_url(url)}: schema {current or '(none)'}; this hub's newest is {head}")
    if current != head:
        raise typer.Exit(1)


@reads_app.command("status")
def reads_status(ctx: typer.Context) -> None:
    """Reads per collector and verification state, and the quarantine by reason."""
    with open_store(ctx) as store, store.connect() as conn:
        rows = conn.execute(
            select(reads.c.collector, reads.c.verify_status, func.count())
            .group_by(reads.c.collector, reads.c.verify_status)
        ).all()
        tips = dict(conn.execute(select(collectors.c.id, collectors.c.last_seq)).all())
        quarantined = quarantine_reasons(conn)
    counts: dict[str, dict[str, int]] = {}
    for collector, status, count in rows:
        counts.setdefault(collector, {})[status] = count
    table = Table(title="stored reads")
    for column in ("collector", "last seq", "pending", "verified", "failed"):
        table.add_column(column, justify="right" if column != "collector" else "left")
    for collector in sorted(tips):
        c = counts.get(collector, {})
        table.add_row(collector, str(tips[collector]), str(c.get("pending", 0)),
                      str(c.get("ok", 0)), str(c.get("failed", 0)))
    out.print(table)
    if quarantined:
        q = Table(title="quarantine")
        q.add_column("reason")
        q.add_column("entries", justify="right")
        for reason, count in sorted(quarantined.items()):
            q.add_row(reason, str(count))
        out.print(q)


@reads_app.command("verify")
def reads_verify(
    ctx: typer.Context,
    processes: Annotated[int | None, typer.Option(help="Worker processes (default: all cores).")]
    = None,
) -> None:
    """Verify every pending read's own signature now (what `serve` does in the background)."""
    with open_store(ctx) as store, BackgroundVerifier(store, processes=processes) as verifier:
        done = verifier.verify_pending()
    out.print(f"{done.verified} reads verified, {done.failed} failed")
    if done.failed:
        raise typer.Exit(1)


@reads_app.command("check-chain")
def reads_check_chain(
    ctx: typer.Context,
    collector: Annotated[str, typer.Option("--collector", help="Collector id.")],
) -> None:
    """Walk a collector's stored reads from seq 1: gap-free and hash-linked."""
    with open_store(ctx) as store, store.connect() as conn:
        get_collector(conn, collector)  # an unknown id is an error, not an empty chain
        try:
            count = check_stored_chain(conn, collector)
        except ReadError as exc:
            log.error("%s", exc)
            raise typer.Exit(1) from None
    out.print(f"{collector}: {count} reads, one unbroken chain from seq 1")
