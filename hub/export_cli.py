"""``meterhub export``: check a cycle file against its signed manifest; show the file layout.

``meterhub export verify exports/C2026-11.csv --public-key hub-export.pub``
recomputes the file's SHA-256, counts its rows and totals again from the file
itself and checks the hub's Ed25519 signature on the manifest (by default the
``.manifest.json`` beside the file). Exit status: 0 verified, 1 a check failed
(each failed check is logged by name), 2 an input could not be read.
``meterhub export layout`` prints the fixed-width record layout; ``--markdown``
prints it as the README's table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hub.export.formats import fixed_width_layout, layout_markdown
from hub.export.manifest import (
    Check,
    Manifest,
    VerificationError,
    manifest_path_for,
    verify_export,
)
from hub.export.rows import money_text
from protocols.scalars import format_decimal, format_instant
from protocols.signing import PublicKeyError, load_public_key

export_app = typer.Typer(help="Check CIS cycle files: verify a file against its signed "
                              "manifest; show the fixed-width layout.",
                         no_args_is_help=True)
out = Console(markup=False)
log = logging.getLogger("hub")

VERIFIED, INPUT_UNREADABLE, FAILED = 0, 2, 1


@export_app.command("verify")
def verify_command(
    file: Annotated[Path, typer.Argument(help="The cycle file (CSV, fixed-width or JSON "
                                              "Lines).", dir_okay=False)],
    public_key: Annotated[Path, typer.Option(
        "--public-key", help="The hub's export public key (PEM or raw base64).")],
    manifest: Annotated[Path | None, typer.Option(
        help="The file's manifest; default: FILE.manifest.json beside it.")] = None,
) -> None:
    """Verify a cycle file: SHA-256, rows and totals against the manifest, hub signature."""
    try:
        key = load_public_key(public_key.read_bytes())
    except OSError as exc:
        log.error("cannot read the public key %s: %s", public_key, exc.strerror or exc)
        raise typer.Exit(INPUT_UNREADABLE) from None
    except PublicKeyError as exc:
        log.error("%s: %s", public_key, exc)
        raise typer.Exit(INPUT_UNREADABLE) from None
    manifest_path = manifest or manifest_path_for(file)
    try:
        verified = verify_export(file, manifest_path, key)
    except OSError as exc:
        log.error("cannot read %s: %s", exc.filename or file, exc.strerror or exc)
        raise typer.Exit(INPUT_UNREADABLE) from None
    except VerificationError as exc:
        out.print(report_table(file, manifest_path, exc.manifest, exc))
        for failure in exc.failures:
            log.error("export verification failed, %s: %s", failure.check.value,
                      failure.detail)
        raise typer.Exit(FAILED) from None
    out.print(report_table(file, manifest_path, verified.manifest, None))
    out.print(f"verified: {file.name} holds {verified.rows} rows, signed by hub key "
              f"{verified.key_id}", markup=False, highlight=False)


def report_table(file: Path, manifest_path: Path, manifest: Manifest | None,
                 error: VerificationError | None) -> Table:
    """What was checked and how it went, one line per fact."""
    verdict = "verified" if error is None else f"FAILED ({error.check.value})"
    table = Table(title=Text(f"{file.name}: {verdict}"), show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")

    def add(name: str, value: str) -> None:
        table.add_row(Text(name), Text(value))

    def status(*checks: Check) -> str:
        failed = [f.check.value for f in (error.failures if error else ()) if f.check in checks]
        return "ok" if not failed else f"FAILED: {', '.join(failed)} (details in the log)"

    add("file", str(file))
    add("manifest", str(manifest_path))
    if manifest is None:
        add("manifest check", status(Check.MALFORMED_MANIFEST))
        return table
    add("cycle", manifest.cycle)
    add("format", manifest.format.value)
    add("rows", f"{manifest.rows} "
        f"({status(Check.ROW_COUNT_MISMATCH, Check.MALFORMED_FILE)})")
    add("sha256", f"{manifest.sha256} ({status(Check.SHA256_MISMATCH)})")
    add("totals", status(Check.TOTALS_MISMATCH, Check.MALFORMED_FILE))
    add("signature", status(Check.BAD_SIGNATURE))
    add("key id", f"{manifest.key_id} ({status(Check.WRONG_KEY)})")
    add("generated at", format_instant(manifest.generated_at))
    add("software", f"meterhub {manifest.software_version}")
    totals = manifest.totals
    for currency, amount in totals.amount.items():
        add(f"amount {currency}", money_text(amount))
    for unit, consumption in totals.consumption.items():
        add(f"consumption {unit}", format_decimal(consumption))
    for name, service in totals.services.items():
        parts = [f"{service.rows} row{'' if service.rows == 1 else 's'}"]
        parts += [f"{money_text(v)} {k}" for k, v in service.amount.items()]
        parts += [f"{format_decimal(v)} {k}" for k, v in service.consumption.items()]
        add(f"service {name}", ", ".join(parts))
    add("bill lines", str(totals.lines))
    return table


@export_app.command("layout")
def layout_command(
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the README's Markdown table instead.")] = False,
) -> None:
    """The fixed-width cycle file's record layout: every field's position, width and form."""
    if markdown:
        typer.echo(layout_markdown(), nl=False)
        return
    table = Table(title="fixed-width cycle file layout")
    for column in ("record", "field", "start", "end", "width", "form", "justified", "padding",
                   "description"):
        table.add_column(column, justify="right" if column in ("start", "end", "width")
                         else "left")
    for f in fixed_width_layout():
        table.add_row(*(Text(value) for value in (
            f.record, f.name, str(f.start), str(f.end), str(f.width),
            f.picture.replace("`", ""), f.justify, f.padding, f.description)))
    out.print(table)
