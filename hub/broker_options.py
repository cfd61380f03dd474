"""The hub's broker options, shared by every command that talks to the broker.

Options or ``METERHUB_BROKER_*`` variables (a systemd unit keeps them in an
environment file); the password only ever from a 0600 file or a variable,
never an option, since ``ps`` shows options.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from hub.broker_config import HUB_USERNAME_DEFAULT
from protocols.broker_settings import BrokerSettings

log = logging.getLogger("hub")

Host = Annotated[str, typer.Option("--broker-host", envvar="METERHUB_BROKER_HOST")]
Port = Annotated[int | None, typer.Option(
    "--broker-port", envvar="METERHUB_BROKER_PORT", help="Default 1883, or 8883 with --tls.")]
User = Annotated[str, typer.Option("--broker-user", envvar="METERHUB_BROKER_USER")]
PasswordFile = Annotated[Path | None, typer.Option(
    "--broker-password-file", envvar="METERHUB_BROKER_PASSWORD_FILE",
    help="File (mode 0600) holding the hub's broker password.")]
PasswordEnv = Annotated[str | None, typer.Option(
    "--broker-password-env", help="Name of an environment variable holding the password.")]
Tls = Annotated[bool, typer.Option("--tls", envvar="METERHUB_BROKER_TLS")]
CaFile = Annotated[Path | None, typer.Option("--ca-file", envvar="METERHUB_BROKER_CA_FILE")]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_USER = HUB_USERNAME_DEFAULT


def broker_settings(host: str, port: int | None, user: str, password_file: Path | None,
                    password_env: str | None, tls: bool, ca_file: Path | None) -> BrokerSettings:
    """Validated settings, or exit 2 with the reason."""
    try:
        return BrokerSettings(host=host, port=port, username=user, tls=tls, ca_file=ca_file,
                              password_file=password_file, password_env=password_env)
    except ValueError as exc:
        log.error("broker settings: %s", exc)
        raise typer.Exit(2) from None
