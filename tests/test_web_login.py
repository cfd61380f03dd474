"""The operator login form sends a person only to a page of the hub, whatever ``next`` says."""

from __future__ import annotations

import httpx
import pytest

from protocols.web_paths import local_path

LOOK_ALIKES = ["https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example",
               "/\n/evil.example", "\\\\evil.example", "javascript:alert(1)", "/login", ""]


@pytest.mark.parametrize("target", LOOK_ALIKES)
def test_a_look_alike_target_falls_back(target):
    assert local_path(target, default="/cycles", refused=frozenset({"/login"})) == "/cycles"


@pytest.mark.parametrize("target", ["/cycles/C1", "/exceptions?cycle=C1&status=open", "/"])
def test_a_local_target_is_kept(target):
    assert local_path(target, default="/cycles") == target


@pytest.mark.parametrize("target", ["/\t/evil.example", "//evil.example", "/exceptions"])
def test_the_hub_login_redirects_only_to_its_own_pages(hub_api, target):
    with httpx.Client(base_url=hub_api.url, timeout=30) as http:
        answer = http.post("/login", data={"user": "operator", "next": target,
                                           "password": hub_api.login_user("operator")})
    assert answer.status_code == 303
    assert answer.headers["location"] == ("/exceptions" if target == "/exceptions"
                                          else "/cycles")
