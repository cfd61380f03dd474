"""API: tokens, users and rates — the admin's routes, and who else may (not) use them."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import select

from hub.rates.book import default_rate_dir
from hub.store.tables import api_tokens, audit_log
from tests.api_fixtures import HubApi, hub_settings, start_hub_api
from tests.test_billing_store import billed_cycle

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def admin_api(store, tmp_path) -> Iterator[HubApi]:
    """The hub API with a rates directory of its own, which PUT /rates may change."""
    rates = tmp_path / "rates"
    shutil.copytree(default_rate_dir(), rates)
    yield from start_hub_api(store, dataclasses.replace(hub_settings(tmp_path), rates_dir=rates))


def assert_admin_only(api: HubApi, method: str, path: str, **request: object) -> None:
    """Anonymous → 401; viewer and operator → 403."""
    with api.client() as http:
        assert http.request(method, path, **request).status_code == 401, path
    for role in ("viewer", "operator"):
        with api.client(role) as http:
            answer = http.request(method, path, **request)
        assert answer.status_code == 403, (role, path, answer.text)


def audit_actions(api: HubApi) -> list[tuple[str, str]]:
    with api.store.connect() as conn:
        return [(r.actor, r.action) for r in conn.execute(
            select(audit_log.c.actor, audit_log.c.action)
            .where(audit_log.c.action.not_like("http.%")).order_by(audit_log.c.id))]


def test_an_admin_makes_lists_and_revokes_tokens(admin_api):
    with admin_api.client("admin") as http:
        made = http.post("/api/v1/tokens", json={"name": "cis-export", "role": "viewer",
                                                  "expires_days": 30})
        assert made.status_code == 201, made.text
        token, secret = made.json()["token"], made.json()["secret"]
        listed = http.get("/api/v1/tokens", params={"limit": 10})
        with admin_api.client() as cis:
            auth = {"Authorization": f"Bearer {secret}"}
            assert cis.get("/api/v1/rates", headers=auth).status_code == 200
            revoked = http.post(f"/api/v1/tokens/{token['id']}/revoke")
            assert cis.get("/api/v1/rates", headers=auth).status_code == 401
        again = http.post(f"/api/v1/tokens/{token['id']}/revoke")
        unknown = http.post("/api/v1/tokens/tok-00000000/revoke")
        bad_role = http.post("/api/v1/tokens", json={"name": "x", "role": "root"})
        extra = http.post("/api/v1/tokens", json={"name": "x", "role": "viewer", "hash": "x"})
        blank = http.post("/api/v1/tokens", json={"name": "   ", "role": "viewer"})
    assert (token["name"], token["role"]) == ("cis-export", "viewer")
    assert token["expires_at"] is not None and secret.startswith("mh_")
    page = listed.json()
    assert page["total"] == 4  # the fixture's three and this one
    assert "cis-export" in {t["name"] for t in page["items"]}
    with admin_api.store.connect() as conn:
        hashes = [row.token_hash for row in conn.execute(select(api_tokens.c.token_hash))]
    assert not any(h in listed.text for h in hashes) and secret not in listed.text
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (again.status_code, unknown.status_code) == (409, 404)
    assert bad_role.status_code == extra.status_code == blank.status_code == 422
    assert bad_role.json()["errors"][0]["loc"] == ["body", "role"]
    assert ("token:test-admin", "token.create") in audit_actions(admin_api)
    assert ("token:test-admin", "token.revoke") in audit_actions(admin_api)
    for method, path, request in (
        ("GET", "/api/v1/tokens", {}),
        ("POST", "/api/v1/tokens", {"json": {"name": "x", "role": "admin"}}),
        ("POST", f"/api/v1/tokens/{token['id']}/revoke", {}),
    ):
        assert_admin_only(admin_api, method, path, **request)


def test_an_admin_adds_disables_and_promotes_users(admin_api):
    alice = {"name": "alice", "role": "operator", "password": "correct-horse-alice"}
    with admin_api.client("admin") as http:
        added = http.post("/api/v1/users", json=alice)
        duplicate = http.post("/api/v1/users", json=alice)
        weak = http.post("/api/v1/users", json={**alice, "name": "bob", "password": "short"})
        bad_name = http.post("/api/v1/users", json={**alice, "name": "bob smith"})
        promoted = http.post("/api/v1/users/alice/role", json={"role": "admin"})
        bad_role = http.post("/api/v1/users/alice/role", json={"role": "root"})
        disabled = http.post("/api/v1/users/alice/disable")
        again = http.post("/api/v1/users/alice/disable")
        unknown = http.post("/api/v1/users/nobody/disable")
        listed = http.get("/api/v1/users")
    assert added.status_code == 201, added.text
    assert added.json()["role"] == "operator" and "password" not in added.text
    assert duplicate.status_code == 409
    assert weak.status_code == bad_name.status_code == bad_role.status_code == 422
    assert weak.json()["errors"][0]["loc"] == ["body", "password"]
    assert promoted.json()["role"] == "admin"
    assert disabled.json()["disabled_at"] is not None
    assert (again.status_code, unknown.status_code) == (409, 404)
    users = {u["name"]: u for u in listed.json()["items"]}
    assert users["alice"]["disabled_at"] is not None and "password_hash" not in listed.text
    with admin_api.client() as browser:
        login = browser.post("/login", data={"user": "alice", "password": alice["password"]})
    assert "meterhub_session" not in login.cookies  # disabled: no session
    assert {"user.add", "user.role", "user.disable"} <= {a for _, a in audit_actions(admin_api)}
    for method, path, request in (
        ("GET", "/api/v1/users", {}),
        ("POST", "/api/v1/users", {"json": {**alice, "name": "carol"}}),
        ("POST", "/api/v1/users/alice/disable", {}),
        ("POST", "/api/v1/users/alice/role", {"json": {"role": "viewer"}}),
    ):
        assert_admin_only(admin_api, method, path, **request)


def test_viewers_read_rates_and_admins_alone_replace_them(admin_api):
    with admin_api.client("viewer") as http:
        listed = http.get("/api/v1/rates")
        shown = http.get("/api/v1/rates/RES-E1")
        missing = http.get("/api/v1/rates/NOPE")
    with admin_api.client() as http:
        assert http.get("/api/v1/rates").status_code == 401
        assert http.get("/api/v1/rates/RES-E1").status_code == 401
    codes = {r["code"]: r for r in listed.json()["items"]}
    assert {"RES-E1", "RES-W1", "COM-E2"} <= set(codes)
    assert codes["RES-E1"]["versions"] == ["2026-01-01", "2026-10-15"]
    rate = shown.json()
    assert rate["register"] == "energy_import_kwh"
    assert rate["yaml"] == (admin_api.settings.rates_dir / "RES-E1.yaml").read_text()
    assert [c["id"] for c in rate["versions"][0]["components"]] == [
        "customer", "energy", "delivery"]
    assert rate["versions"][0]["ends"] == "2026-10-14"
    assert missing.status_code == 404
    assert_admin_only(admin_api, "PUT", "/api/v1/rates/RES-E1", content=rate["yaml"],
                      headers=YAML)


def test_a_rate_with_an_error_is_refused_naming_the_key(admin_api):
    text = (admin_api.settings.rates_dir / "RES-E1.yaml").read_text()
    broken = text.replace("amount: 0.3452", "amount: -1", 1)
    with admin_api.client("admin") as http:
        refused = http.put("/api/v1/rates/RES-E1", content=broken, headers=YAML)
        syntax = http.put("/api/v1/rates/RES-E1", content="code: [", headers=YAML)
        renamed = http.put("/api/v1/rates/RES-E2", content=text, headers=YAML)
        as_json = http.put("/api/v1/rates/RES-E1", content=text,
                           headers={"Content-Type": "application/json"})
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["errors"]
    assert problem["loc"] == ["body", "versions", "2026-10-15", "components", "customer",
                              "amount"]
    assert "RES-E1.yaml" in refused.json()["detail"]
    assert syntax.status_code == 422 and syntax.json()["errors"][0]["loc"] == ["body"]
    assert renamed.status_code == 422 and renamed.json()["errors"][0]["loc"] == ["body", "code"]
    assert as_json.status_code == 415
    assert (admin_api.settings.rates_dir / "RES-E1.yaml").read_text() == text  # unchanged
    assert not (admin_api.settings.rates_dir / "RES-E2.yaml").exists()


def test_a_replaced_rate_prices_the_next_bill_step(admin_api):
    billed_cycle(admin_api.store)
    before = admin_api.run_step("C1", "bill")
    assert before["status"] == "done", before["error"]
    path = admin_api.settings.rates_dir / "RES-E1.yaml"
    dearer = path.read_text().replace("amount: 0.3288", "amount: 1.3288").replace(
        "amount: 0.3452", "amount: 1.3452")
    with admin_api.client("admin") as http:
        replaced = http.put("/api/v1/rates/RES-E1", content=dearer,
                            headers={"Content-Type": "text/plain; charset=utf-8"})
    assert replaced.status_code == 200, replaced.text
    assert path.read_text() == dearer
    after = admin_api.run_step("C1", "bill")
    assert after["status"] == "done", after["error"]
    # a unit more per day on the customer charge, on each bill
    billed = before["result"]["billed"]
    assert after["result"]["billed"] == billed >= 1
    assert Decimal(after["result"]["total"]) - Decimal(before["result"]["total"]) >= billed * 28
    assert ("token:test-admin", "rate.update") in audit_actions(admin_api)
