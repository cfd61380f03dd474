"""A live hub API for tests: the real app on uvicorn on a loopback port, with a token per role.

``hub_api`` runs on the ``store`` fixture (SQLite and PostgreSQL). Requests go
over a real TCP socket with httpx; the cycle runner is the real one, polling
fast. Each role has an API token; page tests log in as the web user of
that name (password ``correct-horse-<role>``), made on first use.

Example::

    def test_a_viewer_reads_runs(hub_api):
        with hub_api.client("viewer") as http:
            assert http.get("/api/v1/runs/1").status_code == 404
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hub.access.roles import Role
from hub.access.tokens import create_token
from hub.access.users import add_user
from hub.api.app import create_app
from hub.api.runner import CycleRunner
from hub.api.settings import HubSettings, RoutePublisher
from hub.edits.ruleset import default_rule_set
from hub.rates.book import RateBook, default_rate_dir
from hub.store import Store
from hub.store.tables import web_users
from protocols.signing import Signer
from protocols.web_server import WebServer

ROLES = ("viewer", "operator", "admin")


def password_of(role: str) -> str:
    return f"correct-horse-{role}"


@dataclass
class HubApi:
    url: str
    store: Store
    settings: HubSettings
    runner: CycleRunner
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client with ``role``'s bearer token (none: anonymous)."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def login_user(self, role: str) -> str:
        """Make the web user named ``role`` (if not yet made); its password.

        Made on demand: a scrypt hash takes 0.1 s, and most API tests log nobody in.
        """
        with self.store.begin() as conn:
            if conn.execute(select(web_users.c.name).where(web_users.c.name == role)).first() \
                    is None:
                add_user(conn, role, Role(role), password_of(role))
        return password_of(role)

    def wait_run(self, run_id: int, timeout_s: float = 60) -> dict[str, Any]:
        """The run once done or failed (asserting it finished in time)."""
        deadline = time.monotonic() + timeout_s
        with self.client("viewer") as http:
            while True:
                run = http.get(f"/api/v1/runs/{run_id}").json()
                if run["status"] in ("done", "failed"):
                    return run
                assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
                time.sleep(0.05)

    def run_step(self, cycle: str, step: str, **options: Any) -> dict[str, Any]:
        """Ask for ``step`` of ``cycle`` as an operator and wait for its end."""
        with self.client("operator") as http:
            answer = http.post(f"/api/v1/cycles/{cycle}/runs", json={"step": step, **options})
        assert answer.status_code == 202, answer.text
        return self.wait_run(answer.json()["id"])


@contextmanager
def logged_in(hub: HubApi, role: str) -> Iterator[httpx.Client]:
    """A client holding ``role``'s session cookie, as a browser has after the login form."""
    with httpx.Client(base_url=hub.url, timeout=30) as http:
        answer = http.post("/login", data={"user": role, "password": hub.login_user(role)})
        assert answer.status_code == 303, answer.text
        yield http


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on ``page``, as a browser would post it."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def hub_settings(tmp_path: Path, *, publish_route: RoutePublisher | None = None,
                 signer: Signer | None = None) -> HubSettings:
    rates_dir = tmp_path / "rates"  # a copy: admin tests write rate tables
    if not rates_dir.exists():
        shutil.copytree(default_rate_dir(), rates_dir)
    return HubSettings(
        zone=UTC, rule_set=default_rule_set(), rate_book=RateBook.load(rates_dir),
        rates_dir=rates_dir, exports_dir=tmp_path / "exports",
        export_signer=signer or Signer.generate(), publish_route=publish_route,
    )


def start_hub_api(store: Store, settings: HubSettings) -> Iterator[HubApi]:
    """Serve the hub app on a free loopback port until the generator is closed."""
    runner = CycleRunner(store, settings, worker="test-runner", poll_s=0.2).start()
    app = create_app(store, settings, runner=runner)
    tokens = {}
    with store.begin() as conn:
        for role in ROLES:
            tokens[role] = create_token(conn, f"test-{role}", Role(role),
                                        created_by="tests").secret
    server = WebServer(app, "127.0.0.1", 0, name="hub API").start()
    try:
        yield HubApi(server.url, store, settings, runner, tokens)
    finally:
        server.stop()
        runner.stop()


@pytest.fixture
def hub_api(store, tmp_path) -> Iterator[HubApi]:
    """The hub API over the ``store`` fixture (SQLite, then PostgreSQL)."""
    yield from start_hub_api(store, hub_settings(tmp_path))
