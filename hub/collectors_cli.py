"""``meterhub collectors``: enrol, list, revoke and rotate the collectors the hub trusts.

Enrolment also makes the collector's broker password: a long random secret
whose Mosquitto hash alone is stored at the hub. The secret itself is
written once to a file (mode 0600) for the gateway, or printed once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_agent.files import write_atomic
from hub.broker_config import mosquitto_password_hash, new_broker_password
from hub.store import Store
from hub.store.collectors import (
    CollectorError,
    add_collector,
    list_collectors,
    revoke_collector,
    rotate_key,
    set_broker_password_hash,
)
from hub.store.engine import display_url
from hub.store.migrate import SchemaVersionError
from protocols.broker_settings import BrokerCredentialError, BrokerSettings
from protocols.signing import PublicKeyError, load_public_key

collectors_app = typer.Typer(help="Enrol, list, revoke and rotate collectors.",
                             no_args_is_help=True)
out = Console(markup=False)
log = logging.getLogger("hub")

IdOption = Annotated[str, typer.Option("--id", help="Collector id (its broker user name).")]
PasswordFileOption = Annotated[Path | None, typer.Option(
    "--broker-password-file",
    help="Where the collector's broker password goes (mode 0600); an existing file's password "
         "is used instead of a new one. Without it the new password is printed once.",
)]


@contextmanager
def open_store(ctx: typer.Context, *, upgrade: bool = False) -> Iterator[Store]:
    """The store named by ``--db``; a problem a person can fix exits 2 with one line."""
    url: str = ctx.obj["db"]
    try:
        store = Store.open(url, upgrade_schema=upgrade)
    except (SchemaVersionError, ValueError) as exc:
        log.error("%s: %s", display_url(url), exc)
        raise typer.Exit(2) from None
    try:
        yield store
    except CollectorError as exc:
        log.error("%s", exc)
        raise typer.Exit(1) from None
    finally:
        store.close()


def broker_password(path: Path | None) -> tuple[str, bool]:
    """(password, newly made): from ``path`` if it exists (and is 0600), else a new one.

    A new password is not written here: see :func:`save_password`, which the
    commands call inside the transaction that stores its hash, so a failed
    command leaves no stray secret behind.
    """
    if path is not None and path.exists():
        try:
            secret = BrokerSettings(password_file=path).password()
        except BrokerCredentialError as exc:
            log.error("%s", exc)
            raise typer.Exit(2) from None
        if not secret:
            log.error("%s is empty", path)
            raise typer.Exit(2)
        return secret, False
    return new_broker_password(), True


def save_password(path: Path, secret: str) -> None:
    write_atomic(path, (secret + "\n").encode("ascii"), mode=0o600, overwrite=False)


def _public_key(path: Path) -> Ed25519PublicKey:
    try:
        return load_public_key(path.read_bytes())
    except (OSError, PublicKeyError) as exc:
        log.error("%s: %s", path, exc)
        raise typer.Exit(2) from None


@collectors_app.command("add")
def add(
    ctx: typer.Context,
    collector_id: IdOption,
    public_key: Annotated[Path, typer.Option("--public-key", help="The collector's public key "
                                             "(`edge-agent keys export-public`).")],
    password_file: PasswordFileOption = None,
) -> None:
    """Enrol a collector with its public key, and make its broker password."""
    key = _public_key(public_key)
    password, new = broker_password(password_file)
    with open_store(ctx) as store, store.begin() as conn:
        collector = add_collector(conn, collector_id, key,
                                  broker_password_hash=mosquitto_password_hash(password))
        if new and password_file is not None:
            save_password(password_file, password)
    out.print(f"enrolled {collector.id} with key {collector.key_id}")
    if password_file is None:
        out.print(f"broker password (shown once; put it in the gateway's password_file): "
                  f"{password}")
    elif new:
        out.print(f"broker password written to {password_file} (mode 0600)")
    out.print("run `meterhub broker-config` to let it connect")


@collectors_app.command("password")
def password(ctx: typer.Context, collector_id: IdOption,
             password_file: PasswordFileOption = None) -> None:
    """Give a collector a new broker password (the old one stops at the next broker-config)."""
    secret, new = broker_password(password_file)
    with open_store(ctx) as store, store.begin() as conn:
        set_broker_password_hash(conn, collector_id, mosquitto_password_hash(secret))
        if new and password_file is not None:
            save_password(password_file, secret)
    if password_file is None:
        out.print(f"new broker password for {collector_id} (shown once): {secret}")
    out.print("run `meterhub broker-config` to apply it")


@collectors_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every collector: status, key, chain tip, last batch."""
    with open_store(ctx) as store, store.connect() as conn:
        collectors = list_collectors(conn)
    table = Table(title=f"{len(collectors)} collectors")
    for column in ("id", "status", "key id", "keys", "last seq", "last batch"):
        table.add_column(column)
    for c in collectors:
        table.add_row(
            c.id, c.status if c.active else Text.assemble(
                (c.status, "red"), f" {c.revoked_at:%Y-%m-%d %H:%M}Z"),
            c.key_id, str(len(c.keys)), str(c.last_seq),
            f"{c.last_received_at:%Y-%m-%d %H:%M:%S}Z" if c.last_received_at else "never",
        )
    out.print(table)


@collectors_app.command("revoke")
def revoke(
    ctx: typer.Context, collector_id: IdOption,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")],
) -> None:
    """Refuse everything the collector sends from now on (its stored reads stay)."""
    with open_store(ctx) as store, store.begin() as conn:
        collector = revoke_collector(conn, collector_id, reason=reason)
    out.print(f"revoked {collector.id} at {collector.revoked_at:%Y-%m-%d %H:%M:%S}Z; "
              "run `meterhub broker-config` to drop its broker account")


@collectors_app.command("rotate")
def rotate(
    ctx: typer.Context, collector_id: IdOption,
    public_key: Annotated[Path, typer.Option("--public-key", help="The new public key.")],
    from_seq: Annotated[int, typer.Option("--from-seq", min=1, help="First seq signed with "
                                          "the new key (the edge's buffer records it).")],
) -> None:
    """Switch a collector to a new key from a given seq on; older reads stay verifiable."""
    key = _public_key(public_key)
    with open_store(ctx) as store, store.begin() as conn:
        collector = rotate_key(conn, collector_id, key, from_seq=from_seq)
    out.print(f"{collector.id}: key {collector.key_id} from seq {from_seq}; "
              f"{len(collector.keys)} keys on record")
