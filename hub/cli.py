"""``meterhub``: the hub operator's command. A thin layer over the ``hub`` library."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hub.access_cli import tokens_app, users_app
from hub.collectors_cli import collectors_app
from hub.cycle_cli import cycle_app
from hub.exceptions_cli import audit_command, exceptions_app
from hub.export_cli import export_app
from hub.import_cli import import_app
from hub.keys_cli import keys_app
from hub.rates_cli import rates_app
from hub.serve_cli import broker_config, serve
from hub.store.engine import DEFAULT_URL
from hub.store_cli import db_app, reads_app
from hub.verify_file import verify_batch_file
from protocols.chain import ChainTip
from protocols.errors import ReadError
from protocols.logs import LOG_FORMAT_ENV, LogFormat, configure_logging
from protocols.scalars import format_instant
from protocols.signing import PublicKeyError, load_public_key

app = typer.Typer(
    name="meterhub",
    help=(
        "meterhub hub: verifies and stores the signed reads collectors send, reconciles each "
        "billing cycle's routes, runs meter edits, computes bills and exports cycle files to "
        "the utility's CIS."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(markup=False)
err = Console(stderr=True, markup=False)
log = logging.getLogger("hub")


@app.callback()
def main(
    ctx: typer.Context,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", envvar=LOG_FORMAT_ENV, case_sensitive=False,
        help="text (for people and the journal) or json (one object per line, for a log "
             "shipper).")] = LogFormat.TEXT,
    db: Annotated[str, typer.Option(
        "--db", envvar="METERHUB_DB", show_default=True,
        help="Hub store: sqlite:///path or postgresql+psycopg://user@host/db.",
    )] = DEFAULT_URL,
) -> None:
    configure_logging(log_level, err, log_format)
    ctx.obj = {"db": db}


app.add_typer(collectors_app, name="collectors")
app.add_typer(db_app, name="db")
app.add_typer(reads_app, name="reads")
app.add_typer(cycle_app, name="cycle")
app.add_typer(import_app, name="import")
app.add_typer(exceptions_app, name="exceptions")
app.add_typer(export_app, name="export")
app.add_typer(keys_app, name="keys")
app.add_typer(rates_app, name="rates")
app.add_typer(tokens_app, name="tokens")
app.add_typer(users_app, name="users")
app.command("audit")(audit_command)
app.command("serve")(serve)
app.command("broker-config")(broker_config)


@app.command("verify")
def verify(
    batch_file: Annotated[Path, typer.Argument(help="Batch file from `edge-agent buffer export`.",
                                               exists=True, dir_okay=False)],
    public_key: Annotated[Path, typer.Option("--public-key", help="The collector's enrolled "
                                             "public key (PEM or raw base64).", exists=True)],
    after_seq: Annotated[int | None, typer.Option(help="Seq of the last read the hub already "
                                                  "holds from this collector.")] = None,
    after_hash: Annotated[str | None, typer.Option(help="Hash of that read.")] = None,
) -> None:
    """Verify a batch file: canonical bytes, every signature, one unbroken hash chain."""
    if (after_seq is None) != (after_hash is None):
        raise typer.BadParameter("--after-seq and --after-hash go together")
    try:
        key = load_public_key(public_key.read_bytes())
    except PublicKeyError as exc:
        log.error("%s: %s", public_key, exc)
        raise typer.Exit(2) from None
    after = ChainTip(after_seq, after_hash) if after_seq is not None and after_hash else None
    try:
        result = verify_batch_file(batch_file, key, after=after)
    except ReadError as exc:
        log.error("rejected %s: %s (%s): %s", batch_file, type(exc).__name__, exc.reason, exc)
        raise typer.Exit(1) from None
    table = Table(title=f"{batch_file.name}: verified", show_header=False)
    table.add_row("collector", result.collector)
    table.add_row("reads", str(result.reads))
    table.add_row("seq", f"{result.first_seq}–{result.last_seq}")
    table.add_row("chain", "anchored" if result.anchored else
                  f"checked from seq {result.first_seq} (earlier reads not in the file)")
    table.add_row("meters", str(result.meters))
    table.add_row("read times", f"{format_instant(result.first_read_at)} … "
                                f"{format_instant(result.last_read_at)}")
    out.print(table)
