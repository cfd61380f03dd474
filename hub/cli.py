"""``meterhub``: the hub operator's command. A thin layer over the ``hub`` library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hub.verify_file import verify_batch_file
from protocols.chain import ChainTip
from protocols.errors import ReadError
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
out = Console()
err = Console(stderr=True)
log = logging.getLogger("hub")


@app.callback()
def main(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
) -> None:
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
        err.print(f"[red]error:[/red] {public_key}: {exc}", highlight=False)
        raise typer.Exit(2) from None
    after = ChainTip(after_seq, after_hash) if after_seq is not None and after_hash else None
    try:
        result = verify_batch_file(batch_file, key, after=after)
    except ReadError as exc:
        log.error("%s rejected: %s: %s", batch_file, type(exc).__name__, exc)
        err.print(f"[red]rejected[/red] {batch_file}: [bold]{type(exc).__name__}[/bold] "
                  f"({exc.reason}): {exc}", highlight=False)
        raise typer.Exit(1) from None
    table = Table(title=f"{batch_file.name}: verified", show_header=False)
    table.add_row("collector", result.collector)
    table.add_row("reads", str(result.reads))
    table.add_row("seq", f"{result.first_seq}–{result.last_seq}")
    table.add_row("chain", "anchored" if result.anchored else
                  f"checked from seq {result.first_seq} (earlier reads not in the file)")
    table.add_row("meters", str(result.meters))
    table.add_row("read times", f"{result.first_read_at.isoformat()} … "
                                f"{result.last_read_at.isoformat()}")
    out.print(table)
