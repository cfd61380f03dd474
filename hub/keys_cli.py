"""``meterhub keys``: the hub's own Ed25519 key, which signs the cycle files' manifests.

The CIS trusts a cycle file because its manifest is signed with this key and
checks out against the public half it was given (``meterhub export verify``).
The key file is the same kind a collector's is (PEM, mode 0600, optionally
encrypted with a passphrase from an environment variable), made by the same
code (:mod:`edge_agent.keys`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge_agent.keys import (
    PASSPHRASE_ENV,
    KeyFileError,
    generate_key_file,
    load_signer,
    passphrase_from_env,
)
from protocols.signing import Signer, public_key_pem

keys_app = typer.Typer(help="The hub's signing key for cycle-file manifests: create it, "
                            "export its public half for the CIS.", no_args_is_help=True)
out = Console(markup=False)
log = logging.getLogger("hub")

HubKeyOption = Annotated[Path, typer.Option(
    "--key", envvar="METERHUB_KEY", help="The hub's private key file (PEM, mode 0600).")]
PassphraseEnv = Annotated[str, typer.Option(
    "--passphrase-env", help="Environment variable holding the key's passphrase, if any.")]


def load_hub_signer(key: Path, passphrase_env: str = PASSPHRASE_ENV) -> Signer:
    """The hub's signer; a missing, unreadable or world-readable key exits 2 saying why."""
    try:
        return load_signer(key, passphrase=passphrase_from_env(passphrase_env))
    except KeyFileError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None


@keys_app.command("generate")
def generate(
    key: HubKeyOption = Path("hub.key"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
    passphrase_env: PassphraseEnv = PASSPHRASE_ENV,
) -> None:
    """Create the hub's signing key, readable by its owner only (mode 0600)."""
    try:
        signer = generate_key_file(key, passphrase=passphrase_from_env(passphrase_env),
                                   overwrite=force)
    except KeyFileError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    out.print(f"wrote {key} (mode 0600), key_id {signer.key_id}")
    out.print("give the CIS its public half: meterhub keys export-public", style="dim")


@keys_app.command("export-public")
def export_public(
    key: HubKeyOption = Path("hub.key"),
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Write here instead of standard output.")] = None,
    passphrase_env: PassphraseEnv = PASSPHRASE_ENV,
) -> None:
    """Print the hub's public key (PEM): what `meterhub export verify` checks against."""
    pem = public_key_pem(load_hub_signer(key, passphrase_env).public_key)
    if out_file is None:
        sys.stdout.write(pem.decode("ascii"))
    else:
        out_file.write_bytes(pem)
