"""The two people the demo scripts: the billing office's operator and the field technician.

The operator works the cycle through the hub's REST API with an operator token —
the same requests the operator pages' buttons send. The technician walks the
handheld's route page over HTTP — opening each stop, holding the probe to the
optical meter, keying what the dials show, reporting a dog — exactly the forms
a person taps through in the handheld's browser.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from demo_processes import DemoFailed
from rich.console import Console


class Operator:
    """The billing office, through ``/api/v1`` with a bearer token."""

    def __init__(self, url: str, token: str, console: Console) -> None:
        self.url = url
        self.console = console
        self.http = httpx.Client(base_url=f"{url}/api/v1", timeout=120,
                                 headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def show(self, method: str, path: str, body: dict[str, Any] | None = None,
             why: str = "") -> None:
        shown = f"{method} /api/v1{path}" + (f" {json.dumps(body)}" if body else "")
        self.console.print(f"[bold magenta]» {shown}[/bold magenta]"
                           + (f"  [dim]({why})[/dim]" if why else ""), highlight=False,
                           soft_wrap=True)

    def get(self, path: str, **params: Any) -> Any:
        answer = self.http.get(path, params=params)
        if answer.status_code != 200:
            raise DemoFailed(f"GET /api/v1{path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged list."""
        found: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = self.get(path, limit=500, offset=offset, **params)
            found += page["items"]
            offset = page["next_offset"]
        return found

    def post(self, path: str, body: dict[str, Any], *, why: str = "", quiet: bool = False,
             ok: tuple[int, ...] = (200, 201, 202)) -> Any:
        if not quiet:
            self.show("POST", path, body, why)
        answer = self.http.post(path, json=body)
        if answer.status_code not in ok:
            raise DemoFailed(f"POST /api/v1{path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def run(self, cycle: str, step: str, *, why: str = "", **options: Any) -> dict[str, Any]:
        """Ask for a cycle step and wait until a runner has done it; its result."""
        run = self.post(f"/cycles/{quote(cycle)}/runs", {"step": step, **options}, why=why)
        deadline = time.monotonic() + 180
        while run["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise DemoFailed(f"the {step} run of {cycle} did not finish in 180 s")
            time.sleep(0.2)
            run = self.get(f"/runs/{run['id']}")
        if run["status"] != "done":
            raise DemoFailed(f"the {step} run of {cycle} failed: {run.get('error')}")
        return run.get("result") or {}


@dataclass(frozen=True)
class Visit:
    sequence: int
    meter: str
    how: str
    value: str
    note: str = ""


class Technician:
    """Walks a route on the handheld's page: probe, key, or report trouble at each stop."""

    def __init__(self, page_url: str) -> None:
        # The page answers to loopback host names only and refuses cross-site posts; a
        # plain client on the handheld itself sends neither another host nor an Origin.
        self.http = httpx.Client(base_url=page_url, timeout=60, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def wait_for_route(self, route_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while route_id not in self.http.get("/").text:
            if time.monotonic() > deadline:
                raise DemoFailed(f"the handheld has not received route {route_id} in "
                                 f"{timeout:.0f} s")
            time.sleep(0.2)

    def walk(self, route_id: str, stops: list[dict[str, Any]], *, probe_meter: str,
             trouble: dict[str, tuple[str, str]], dials: Callable[[str], Decimal],
             progress: Callable[[Visit], None]) -> list[Visit]:
        base = f"/routes/{quote(route_id, safe='')}"
        page = self.http.get(base)
        if page.status_code != 200:
            raise DemoFailed(f"the route page {base}: {page.status_code}")
        visits = []
        for stop in stops:
            sequence, meter = stop["sequence"], stop["meter"]
            stop_url = f"{base}/stops/{sequence}"
            card = self.http.get(stop_url)
            if card.status_code != 200 or meter not in card.text:
                raise DemoFailed(f"stop {sequence} of {route_id}: no card for {meter}")
            if meter in trouble:
                code, note = trouble[meter]
                self._saved(self.http.post(f"{stop_url}/trouble", data={"code": code,
                                                                        "note": note}), stop)
                visit = Visit(sequence, meter, "trouble", code, note)
            elif meter == probe_meter:
                answer = self.http.post(f"{stop_url}/probe")
                self._saved(answer, stop)
                visit = Visit(sequence, meter, "probe", self._value_saved(answer, sequence))
            else:
                value = str(dials(meter))
                answer = self.http.post(f"{stop_url}/manual", data={"value": value})
                how = "keyed"
                if answer.status_code == 200 and 'id="reenter"' in answer.text:
                    # outside the high/low limits: read the dials again and key it again
                    answer = self.http.post(f"{stop_url}/manual",
                                            data={"value": value, "confirm": value})
                    how = "keyed twice (outside limits)"
                self._saved(answer, stop)
                visit = Visit(sequence, meter, how, value)
            visits.append(visit)
            progress(visit)
        return visits

    def _saved(self, answer: httpx.Response, stop: dict[str, Any]) -> None:
        if answer.status_code != 303:
            message = re.search(r'id="(?:message|entry-error)"[^>]*>([^<]*)<', answer.text)
            raise DemoFailed(f"stop {stop['sequence']} ({stop['meter']}) not saved: "
                             f"{answer.status_code} "
                             f"{message.group(1).strip() if message else answer.text[:200]}")

    def _value_saved(self, answer: httpx.Response, sequence: int) -> str:
        """The value the page says it saved (the probe read it, not the technician)."""
        page = self.http.get(answer.headers["location"])
        found = re.search(rf"Stop {sequence} saved:\s+read ([0-9]+(?:\.[0-9]+)?)", page.text)
        return found.group(1) if found else "?"
