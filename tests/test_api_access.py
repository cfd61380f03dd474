"""Every API route, every role: nobody gets in anonymously, and no role gets past its rank.

The routes and the role each needs are read from the app itself (the
``require`` dependency each declares), so a route added later without a role
check — or with a weaker one than its siblings — fails here, not in
production.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from hub.access.roles import Role
from hub.api.app import API_PREFIX, API_ROUTERS
from hub.api.auth import ADMIN, OPERATOR, VIEWER

NEEDS = {VIEWER: Role.VIEWER, OPERATOR: Role.OPERATOR, ADMIN: Role.ADMIN}
SAMPLE = {"cycle": "C1", "account": "A-E-ONE", "serial": "E-ONE", "collector": "gw-1",
          "code": "RES-E1", "name": "operator"}


def _needed_role(dependant) -> Role | None:
    for sub in dependant.dependencies:
        if sub.call in NEEDS:
            return NEEDS[sub.call]
        found = _needed_role(sub)
        if found is not None:
            return found
    return None


def api_routes() -> list[tuple[str, str, Role | None]]:
    """(method, path, role needed) of every route the app mounts under the API prefix."""
    found = []
    for router in API_ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute), route
            for method in sorted(route.methods - {"HEAD"}):
                found.append((method, API_PREFIX + route.path, _needed_role(route.dependant)))
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::path)?\}",
                  lambda m: SAMPLE.get(m.group(1), "1" if m.group(1).endswith("id") else "x"),
                  path)


def test_every_api_route_declares_the_role_it_needs():
    unguarded = [(method, path) for method, path, role in api_routes() if role is None]
    assert unguarded == []
    assert len(api_routes()) >= 30


def test_no_route_answers_the_anonymous_or_a_role_below_its_own(hub_api):
    ranks = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    with hub_api.client() as anonymous:
        clients = {role: hub_api.client(role.value) for role in ranks}
        try:
            for method, path, needed in api_routes():
                url = concrete(path)
                body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                answer = anonymous.request(method, url, **body)
                assert answer.status_code == 401, (method, url, answer.status_code)
                for role in ranks:
                    answer = clients[role].request(method, url, **body)
                    if role.allows(needed):
                        assert answer.status_code not in (401, 403), (method, url, role)
                    else:
                        assert answer.status_code == 403, (method, url, role, answer.text)
                        assert f"needs {needed.value}" in answer.json()["detail"]
        finally:
            for client in clients.values():
                client.close()
