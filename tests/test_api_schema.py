"""Schemathesis against the hub's own OpenAPI document: no request, however odd, is a 500.

The hub runs for real (uvicorn on a loopback port, SQLite, a billed cycle
with exports), and every operation gets generated requests as an admin, so
the mutating routes are exercised past their role checks. Responses must
also match the schemas the document declares.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.api.app import create_app
from hub.store import Store
from tests.api_fixtures import hub_settings, start_hub_api
from tests.test_billing_store import billed_cycle


@pytest.fixture(scope="module")
def live_hub():
    with tempfile.TemporaryDirectory(prefix="meterhub-schema-") as work:
        tmp = Path(work)
        with Store.open(f"sqlite:///{tmp / 'hub.sqlite'}", upgrade_schema=True) as store:
            billed_cycle(store)
            server = start_hub_api(store, hub_settings(tmp))
            hub = next(server)
            hub.run_step("C1", "export")
            try:
                yield hub
            finally:
                server.close()


# The document the app serves, made at collection time (it needs no store), so each
# operation is its own test; the requests go to the live hub.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
"""No 500, and every answer is one the document declares, in the declared shape."""

schema = schemathesis.openapi.from_dict(create_app(None, None).openapi())  # type: ignore[arg-type]


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_request_makes_the_api_fail(case, live_hub):
    case.call_and_validate(base_url=live_hub.url,
                           headers={"Authorization": f"Bearer {live_hub.tokens['admin']}"},
                           checks=CHECKS)
