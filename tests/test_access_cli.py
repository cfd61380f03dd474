"""``meterhub tokens`` and ``meterhub users`` as the admin runs them, against a SQLite store.

The main flows run the installed script (a subprocess each); the refusals run
the same typer app in-process, which is much faster and takes the same path.
"""

from __future__ import annotations

import getpass
import logging
import stat
import subprocess

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from hub import access_cli
from hub.cli import app
from hub.store import Store
from hub.store.tables import api_tokens, audit_log
from tests.api_fixtures import HubApi, hub_settings, start_hub_api
from tests.conftest import script


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Store.open(url, upgrade_schema=True).close()
    return url


@pytest.fixture
def meterhub(tmp_path, url, cli_env):
    """Run the installed ``meterhub --db URL …``; returns the completed process."""

    def run(*args, expect=0, env=None, stdin=None):
        result = subprocess.run([script("meterhub"), "--db", url, *args], cwd=tmp_path,
                                env={**cli_env, **(env or {})}, input=stdin,
                                capture_output=True, text=True, timeout=60, check=False,
                                start_new_session=True)  # no terminal: prompts read stdin
        assert result.returncode == expect, (args, result.stdout, result.stderr)
        return result

    return run


@pytest.fixture
def in_process(tmp_path, url, monkeypatch):
    """The same command in this process (``configure_logging`` restored afterwards)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METERHUB_USER_PASSWORD", raising=False)
    monkeypatch.setattr(access_cli, "out", Console(width=200))  # tables not cut at 80

    def run(*args, expect=0, env=None, stdin=None):
        result = CliRunner().invoke(app, ["--db", url, *args], env=env, input=stdin)
        assert result.exit_code == expect, (args, result.output, result.exception)
        return result

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def hub_on(url: str, tmp_path):
    """A live hub API on the CLI's store, for as long as the caller iterates."""
    with Store.open(url) as store:
        yield from start_hub_api(store, hub_settings(tmp_path))


def bearer(hub: HubApi, secret: str) -> int:
    return httpx.get(f"{hub.url}/api/v1/rates", headers={"Authorization": f"Bearer {secret}"},
                     timeout=30).status_code


def audit_trail(url: str) -> list[tuple[str, str]]:
    with Store.open(url) as store, store.connect() as conn:
        return [(r.actor, r.action) for r in conn.execute(
            select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.id))]


def test_tokens_are_shown_once_listed_without_secrets_and_revoked_for_good(
        meterhub, in_process, tmp_path, url):
    printed = meterhub("tokens", "create", "ci", "--role", "viewer").stdout.strip()
    meterhub("tokens", "create", "prometheus", "--role", "viewer", "--expires-days", "30",
             "--out", "prometheus.token")
    written = (tmp_path / "prometheus.token").read_text().strip()
    listing = in_process("tokens", "list").output
    with Store.open(url) as store, store.connect() as conn:
        rows = {r.name: r for r in conn.execute(select(api_tokens))}
    api = hub_on(url, tmp_path)
    hub = next(api)
    try:
        assert bearer(hub, printed) == bearer(hub, written) == 200
        meterhub("tokens", "revoke", rows["ci"].id)
        assert bearer(hub, printed) == 401
        assert bearer(hub, written) == 200
    finally:
        api.close()
    assert printed.startswith("mh_") and len(printed.splitlines()) == 1
    assert stat.S_IMODE((tmp_path / "prometheus.token").stat().st_mode) == 0o600
    assert {"ci", "prometheus"} <= set(listing.split()) and "never" in listing
    for row in rows.values():
        assert row.token_hash not in listing
    assert printed not in listing and written not in listing
    assert rows["prometheus"].expires_at is not None and rows["ci"].expires_at is None
    actor = f"cli:{getpass.getuser()}"
    assert audit_trail(url) == [(actor, "token.create"), (actor, "token.create"),
                                (actor, "token.revoke")]


def test_a_user_added_from_the_environment_changes_its_password_at_a_prompt(
        meterhub, in_process, tmp_path, url):
    meterhub("users", "add", "alice", "--role", "operator",
             env={"METERHUB_USER_PASSWORD": "correct-horse-alice"})
    meterhub("users", "password", "alice", stdin="battery-staple-alice\nbattery-staple-alice\n")
    listing = in_process("users", "list").output
    assert "alice" in listing and "operator" in listing and "horse" not in listing
    api = hub_on(url, tmp_path)
    hub = next(api)
    try:
        with httpx.Client(base_url=hub.url) as http:
            def logs_in(password: str) -> bool:
                http.cookies.clear()
                http.post("/login", data={"user": "alice", "password": password})
                return "meterhub_session" in http.cookies

            assert logs_in("battery-staple-alice")
            assert not logs_in("correct-horse-alice")
    finally:
        api.close()


def test_refusals_exit_1_or_2_and_change_nothing(in_process, tmp_path, url):
    (tmp_path / "taken.token").write_text("something\n")
    in_process("tokens", "create", "x", "--role", "viewer", "--out", "taken.token", expect=2)
    in_process("tokens", "create", "x", "--role", "root", expect=2)
    in_process("tokens", "revoke", "tok-00000000", expect=1)
    password_file = tmp_path / "bob.password"
    password_file.write_text("correct-horse-bob\n")
    password_file.chmod(0o644)
    in_process("users", "add", "bob", "--role", "viewer", "--password-file", "bob.password",
               expect=2)  # others could read it
    in_process("users", "add", "carol", "--role", "viewer", stdin="too-short\ntoo-short\n",
               expect=1)
    in_process("users", "add", "carol", "--role", "viewer",
               stdin="correct-horse-carol\nbattery-staple-carol\n", expect=1)  # no match
    in_process("users", "disable", "nobody", expect=1)
    assert (tmp_path / "taken.token").read_text() == "something\n"
    assert audit_trail(url) == []


def test_roles_and_disabling_are_audited(in_process, tmp_path, url):
    password_file = tmp_path / "bob.password"
    password_file.write_text("correct-horse-bob\n")
    password_file.chmod(0o600)
    in_process("users", "add", "bob", "--role", "viewer", "--password-file", "bob.password")
    in_process("users", "role", "bob", "admin")
    in_process("users", "disable", "bob")
    in_process("users", "disable", "bob", expect=1)
    listing = in_process("users", "list").output
    [bob] = [line for line in listing.splitlines() if " bob " in line]
    assert "admin" in bob and bob.count(":") >= 4  # created and disabled times
    actor = f"cli:{getpass.getuser()}"
    assert audit_trail(url) == [(actor, "user.add"), (actor, "user.role"),
                                (actor, "user.disable")]
