"""``meterhub tokens`` and ``meterhub users``: who may use the API and the operator pages.

A thin layer over :mod:`hub.access.tokens` and :mod:`hub.access.users`, for
the admin at the hub's console — the first admin token has to come from
somewhere, and a locked-out hub must be recoverable without the API.

- ``meterhub tokens create prometheus --role viewer --out prometheus.token``
  makes a token and writes it to a 0600 file (atomically, never over an
  existing file); without ``--out`` the secret is printed once, alone on
  stdout, so ``TOKEN=$(meterhub tokens create …)`` works. The hub keeps
  only its SHA-256: a lost token is revoked and made again, never shown.
- ``meterhub users add alice --role operator`` asks for the password twice.
  Scripts give it in a file (``--password-file``, mode 0600) or in
  ``$METERHUB_USER_PASSWORD`` — never as an option value, which ``ps`` and
  the shell history would show.

Every change is a record in the audit log (``meterhub audit``), made in the
change's own transaction, by ``cli:<login name>``.

Exit codes: 0 done; 1 the change cannot be made (unknown token or user, a
duplicate, a weak password); 2 a file or the store cannot be used.
"""

from __future__ import annotations

import getpass
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edge_agent.files import write_atomic
from hub.access.roles import AccessError, Role
from hub.access.tokens import create_token, list_tokens, revoke_token
from hub.access.users import add_user, disable_user, get_user, list_users, set_password, set_role
from hub.collectors_cli import open_store
from hub.edits.audit import record
from protocols.scalars import format_instant

PASSWORD_ENV = "METERHUB_USER_PASSWORD"  # noqa: S105 - a variable name, not a password
MAX_PASSWORD_FILE = 4096

tokens_app = typer.Typer(help="API tokens for other systems (the CIS, Prometheus, scripts): "
                              "create, list, revoke.", no_args_is_help=True)
users_app = typer.Typer(help="Operator logins for the web pages: add, list, disable, set a "
                             "password or a role.", no_args_is_help=True)
out = Console(markup=False)
err = Console(stderr=True, markup=False)
log = logging.getLogger("hub")

RoleOption = Annotated[Role, typer.Option("--role", case_sensitive=False,
                                          help="viewer, operator or admin.")]
UserArgument = Annotated[str, typer.Argument(help="The user's login name.")]
PasswordFileOption = Annotated[Path | None, typer.Option(
    "--password-file", dir_okay=False,
    help=f"Read the password from this file (mode 0600) instead of asking; or set "
         f"${PASSWORD_ENV}.")]


def cli_actor() -> str:
    """How the audit log names a change made here: ``cli:`` and the OS login name."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no $USER and no passwd entry (a bare container)
        return f"cli:uid-{os.getuid()}"


@contextmanager
def _access_errors() -> Iterator[None]:
    try:
        yield
    except AccessError as exc:
        log.error("%s", exc)
        raise typer.Exit(1) from None


def _when(value: datetime | None, never: str = "") -> str:
    return format_instant(value) if value is not None else never


# --- tokens -------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what uses it (cis-export, prometheus).")],
    role: RoleOption,
    expires_days: Annotated[int | None, typer.Option(
        "--expires-days", min=1, max=36500, help="Stop working after this many days "
                                                 "(default: until revoked).")] = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", dir_okay=False, help="Write the token to this new file (mode 0600) instead "
                                      "of printing it.")] = None,
) -> None:
    """Make an API token; it is shown (or written) once and never again."""
    if out_file is not None and out_file.exists():
        log.error("%s exists; a token file is never overwritten (revoke the old token and "
                  "choose another file)", out_file)
        raise typer.Exit(2)
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=expires_days) if expires_days else None
    with open_store(ctx) as store, _access_errors(), store.begin() as conn:
        made = create_token(conn, name, role, created_by=cli_actor(), expires_at=expires_at,
                            now=now)
        record(conn, actor=cli_actor(), action="token.create", reason=name, after={
            "token": made.token.id, "name": name, "role": made.token.role.value,
            "expires_at": _when(expires_at) or None})
        if out_file is not None:
            try:  # inside the transaction: no file, no token
                write_atomic(out_file, (made.secret + "\n").encode("ascii"), mode=0o600,
                             overwrite=False)
            except OSError as exc:
                log.error("cannot write %s: %s", out_file, exc.strerror or exc)
                raise typer.Exit(2) from None
    token = made.token
    summary = (f"token {token.id} ({token.name}, {token.role.value}"
               f"{', expires ' + _when(token.expires_at) if token.expires_at else ''})")
    if out_file is None:
        err.print(f"made {summary}; shown once, keep it now:")
        print(made.secret)  # alone on stdout, for TOKEN=$(meterhub tokens create …)
    else:
        err.print(f"made {summary}; written to {out_file} (mode 0600)")


@tokens_app.command("list")
def tokens_list(ctx: typer.Context) -> None:
    """Every token: its role, when it was made and last used, expiry and revocation."""
    with open_store(ctx) as store, store.connect() as conn:
        tokens = list_tokens(conn)
    table = Table(title=f"{len(tokens)} API tokens")
    for column in ("id", "name", "role", "created", "by", "last used", "expires", "revoked"):
        table.add_column(column, no_wrap=column != "name")
    now = datetime.now(UTC)
    for token in tokens:
        expired = token.expires_at is not None and token.expires_at <= now
        table.add_row(token.id, token.name, token.role.value, _when(token.created_at),
                      token.created_by, _when(token.last_used_at, "never"),
                      _when(token.expires_at, "never") + (" (expired)" if expired else ""),
                      _when(token.revoked_at),
                      style="dim" if token.revoked_at or expired else "")
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="The token's id (tok-…, from `tokens list`).")],
) -> None:
    """Stop a token from working, at once, in every hub worker."""
    with open_store(ctx) as store, _access_errors(), store.begin() as conn:
        token = revoke_token(conn, token_id)
        record(conn, actor=cli_actor(), action="token.revoke", reason=token.name,
               before={"token": token.id, "revoked_at": None},
               after={"token": token.id, "revoked_at": _when(token.revoked_at)})
    out.print(f"revoked token {token.id} ({token.name}, {token.role.value})")


# --- users --------------------------------------------------------------------------------


def read_password(password_file: Path | None, *, prompt: str) -> str:
    """The password from ``password_file``, ``$METERHUB_USER_PASSWORD`` or a prompt (twice)."""
    if password_file is not None:
        try:
            mode = password_file.stat().st_mode
            if stat.S_IMODE(mode) & 0o077:
                log.error("%s is readable by others (mode %o); run: chmod 600 %s",
                          password_file, stat.S_IMODE(mode), password_file)
                raise typer.Exit(2)
            with password_file.open("rb") as handle:
                data = handle.read(MAX_PASSWORD_FILE + 1)
            if len(data) > MAX_PASSWORD_FILE:
                log.error("%s is too large to hold a password", password_file)
                raise typer.Exit(2)
            return data.decode("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            log.error("cannot read the password from %s: %s", password_file,
                      getattr(exc, "strerror", None) or exc)
            raise typer.Exit(2) from None
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=True, err=True)


@users_app.command("add")
def users_add(ctx: typer.Context, name: UserArgument, role: RoleOption,
              password_file: PasswordFileOption = None) -> None:
    """Add an operator login (at least 12 characters of password)."""
    password = read_password(password_file, prompt=f"password for {name}")
    with open_store(ctx) as store, _access_errors(), store.begin() as conn:
        user = add_user(conn, name, role, password)
        record(conn, actor=cli_actor(), action="user.add", reason=name,
               after={"user": user.name, "role": user.role.value})
    out.print(f"added user {user.name} ({user.role.value})")


@users_app.command("list")
def users_list(ctx: typer.Context) -> None:
    """Every login: role, when it was added, whether it is disabled."""
    with open_store(ctx) as store, store.connect() as conn:
        users = list_users(conn)
    table = Table(title=f"{len(users)} users")
    for column in ("name", "role", "created", "disabled"):
        table.add_column(column, no_wrap=True)
    for user in users:
        table.add_row(user.name, user.role.value, _when(user.created_at),
                      _when(user.disabled_at), style="dim" if user.disabled_at else "")
    out.print(table)


@users_app.command("disable")
def users_disable(ctx: typer.Context, name: UserArgument) -> None:
    """Stop a login from working; its sessions end at once."""
    with open_store(ctx) as store, _access_errors(), store.begin() as conn:
        user = disable_user(conn, name)
        record(conn, actor=cli_actor(), action="user.disable", reason=name,
               before={"user": name, "disabled_at": None},
               after={"user": name, "disabled_at": _when(user.disabled_at)})
    out.print(f"disabled user {user.name}; its sessions have ended")


@users_app.command("password")
def users_password(ctx: typer.Context, name: UserArgument,
                   password_file: PasswordFileOption = None) -> None:
    """Set a new password; the user's sessions end (log in again)."""
    with open_store(ctx) as store, _access_errors():
        with store.connect() as conn:
            get_user(conn, name)  # an unknown name fails before anyone types a password
        password = read_password(password_file, prompt=f"new password for {name}")
        with store.begin() as conn:
            set_password(conn, name, password)
            record(conn, actor=cli_actor(), action="user.password", reason=name,
                   after={"user": name})
    out.print(f"password of {name} changed; its sessions have ended")


@users_app.command("role")
def users_role(ctx: typer.Context, name: UserArgument,
               role: Annotated[Role, typer.Argument(case_sensitive=False,
                                                    help="viewer, operator or admin.")]) -> None:
    """Give a user another role (from its next request on)."""
    with open_store(ctx) as store, _access_errors(), store.begin() as conn:
        before = get_user(conn, name)
        user = set_role(conn, name, role)
        record(conn, actor=cli_actor(), action="user.role", reason=name,
               before={"user": name, "role": before.role.value},
               after={"user": name, "role": user.role.value})
    out.print(f"{user.name} is now {user.role.value}")
