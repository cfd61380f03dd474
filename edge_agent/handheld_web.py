"""The handheld's route page: what a technician taps through on a route, fully offline.

Served by the agent on the handheld itself (loopback by default) to the
handheld's own browser, so it must work with no network at all: server-rendered
HTML, plain forms, inline CSS, no script and nothing fetched from elsewhere.
Every outcome at a stop — a probe read, a keyed read, a trouble report — is a
signed read appended to the edge buffer *before* the stop is marked done, so
it syncs with everything else and a crash can never leave a stop done without
its read.

The rules a technician must not be able to skip live here, as pure functions
(:func:`check_manual`, the reading builders, :func:`next_stop`) under a thin
HTTP layer:

* a keyed read outside the stop's high/low limits is not kept; the page asks
  for it again, and only the same value keyed twice is kept (flagged
  :data:`CONFIRMED_FLAG`) — a different value within limits is kept as usual;
* a probe read from another meter than the stop's is refused (see
  :mod:`edge_agent.handheld_probe`).

Who may use the page: every read is signed with the handheld's key, so with
an access code (``[handheld] access_code_file``, required off loopback) every
page and form asks for a session first (:mod:`edge_agent.handheld_access`). A GET without
one is sent to ``/login?next=…``, any other request is refused with the login
form, and nothing is buffered. ``POST /login`` compares the typed code in
constant time and sets a random session cookie (HttpOnly, SameSite=Strict,
Path=/, Secure over https) valid for :data:`SESSION_LIFETIME_S`; sessions live
in this process only, so a restart asks for the code again. After
:data:`FREE_FAILURES` wrong codes from one client, it must wait
:data:`FIRST_LOCKOUT_S`, doubling with every further wrong code up to
:data:`MAX_LOCKOUT_S` (:class:`LoginThrottle`); every wrong code is logged with
the client's address, never with what was typed. ``POST /logout`` ends the
session. Without an access code (loopback only) the page is open to the
handheld's own browser. Either way the page answers to its allowed host names
only and refuses cross-site form posts (``Origin`` check).

Example::

    access = AccessControl(load_access_code(Path("handheld.code")))
    app = create_app(store, buffer, Probe.from_config(section), access=access)
    with HandheldServer(app, "127.0.0.1", 8080) as server:
        print(server.url)
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from edge_agent.buffer import BufferFull, EdgeBuffer, EdgeBufferError
from edge_agent.clock import ntp_synced
from edge_agent.handheld_access import SESSION_COOKIE, AccessControl, safe_next, wait_text
from edge_agent.handheld_probe import Probe, ProbeError, ProbeReading, WrongMeter
from edge_agent.route_store import RouteStore, UnknownRoute, Visit
from protocols.errors import ReadError
from protocols.read import ClockQuality, Reading, RegisterValue, Source
from protocols.route_message import Route, RouteStop
from protocols.scalars import format_decimal
from protocols.trouble import Trouble
from protocols.web_server import WebServer

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "handheld"
CONFIRMED_FLAG = "manual_high_low_confirmed"
"""A keyed read outside its high/low limits, keyed again identically: the technician is sure."""
MAX_NOTE = 500
MAX_ENTRY = 32
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_ENTRY_RE = re.compile(r"\d+(?:[.,]\d+)?")


# --- the rules (pure) ------------------------------------------------------------------


class EntryError(ValueError):
    """A keyed value that is not a reading of this meter's dials at all."""


@dataclass(frozen=True)
class Keep:
    """Keep this keyed value, with these flags."""

    value: Decimal
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reenter:
    """Not kept: outside the limits; the same value must be keyed again to keep it."""

    first: str
    """The value keyed, carried (hidden) to the re-entry form."""
    low: Decimal
    high: Decimal


def parse_entry(text: str, stop: RouteStop) -> Decimal:
    """The keyed ``text`` as a register value of ``stop``; :class:`EntryError` when it is not.

    A comma is taken as the decimal point (many phone keypads offer only it). The
    value must fit the meter's dials: a register of N dials shows 0 to 10^N − 1.
    """
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise EntryError("Enter the reading shown on the meter.")
    if len(cleaned) > MAX_ENTRY or not _ENTRY_RE.fullmatch(cleaned):
        raise EntryError(f"“{text.strip()[:MAX_ENTRY]}” is not a reading: digits and one "
                         "decimal point only.")
    value = Decimal(cleaned.replace(",", "."))
    if value >= Decimal(10) ** stop.dials:
        raise EntryError(f"{format_decimal(value)} does not fit this meter's {stop.dials} dials.")
    return value


def check_manual(stop: RouteStop, value: str, confirm: str | None = None) -> Keep | Reenter:
    """Decide what happens to a keyed read: keep it, or ask for it again (high/low check).

    ``value`` is the first entry; ``confirm`` the re-entry after a failed check.
    A re-entry within the limits is kept as an ordinary read; one outside them
    is kept only when it equals the first entry — otherwise it becomes the new
    first entry and is asked for again. Raises :class:`EntryError` for text that
    is no reading.
    """
    first = parse_entry(value, stop)
    limits = stop.limits
    if limits is None or limits.admits(first):
        return Keep(first)
    if confirm is None or not confirm.strip():
        return Reenter(format_decimal(first), limits.low, limits.high)
    again = parse_entry(confirm, stop)
    if limits.admits(again):
        return Keep(again)
    if again == first:
        return Keep(again, (CONFIRMED_FLAG,))
    return Reenter(format_decimal(again), limits.low, limits.high)


def _clock_quality(
    collected_at: datetime, meter_time: datetime | None, ntp: bool
) -> ClockQuality:
    offset = None
    if meter_time is not None:
        offset = Decimal(str(round((meter_time - collected_at).total_seconds(), 3)))
    return ClockQuality(ntp_synced=ntp, meter_offset_s=offset)


def probe_reading(stop: RouteStop, taken: ProbeReading, *, now: datetime, ntp: bool) -> Reading:
    """The signed-read-to-be of a probe read: the meter's clock when it has one."""
    return Reading(
        meter=stop.meter, read_at=taken.meter_time or now, collected_at=now,
        clock=_clock_quality(now, taken.meter_time, ntp), source=Source.HANDHELD_PROBE,
        values={stop.register: taken.value}, flags=taken.flags,
    )


def manual_reading(stop: RouteStop, keep: Keep, *, now: datetime, ntp: bool) -> Reading:
    """A keyed read: the handheld's clock is the only clock there is."""
    return Reading(
        meter=stop.meter, read_at=now, collected_at=now, clock=ClockQuality(ntp_synced=ntp),
        source=Source.HANDHELD_MANUAL,
        values={stop.register: RegisterValue(keep.value, stop.unit, None)}, flags=keep.flags,
    )


def trouble_reading(stop: RouteStop, trouble: Trouble, *, now: datetime, ntp: bool) -> Reading:
    """A trouble report: a read with no register, flagged with its trouble code."""
    return Reading(
        meter=stop.meter, read_at=now, collected_at=now, clock=ClockQuality(ntp_synced=ntp),
        source=Source.HANDHELD_MANUAL, values={}, flags=(trouble.flag,),
    )


def next_stop(route: Route, done: Sequence[int] | set[int], after: int) -> int | None:
    """The next stop to do in walk order after ``after``, wrapping round; ``None``: all done."""
    todo = [stop.sequence for stop in route.stops if stop.sequence not in done]
    later = [sequence for sequence in todo if sequence > after]
    return (later or todo or [None])[0]


# --- the pages --------------------------------------------------------------------------


class PageError(Exception):
    """A request the page answers with a message instead of the page asked for."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def create_app(
    store: RouteStore,
    buffer: EdgeBuffer,
    probe: Probe,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ntp: Callable[[], bool] = ntp_synced,
    allowed_hosts: Sequence[str] | None = None,
    access: AccessControl | None = None,
) -> FastAPI:
    """The route page over ``store`` (routes and visits) and ``buffer`` (signed reads).

    ``access``: the access code and its sessions; ``None``: no login, for a page on
    loopback only. ``allowed_hosts``: host names the page answers to (``None``:
    any, for a page listening beyond loopback). On loopback it should answer to
    loopback names only — a web page the handheld's browser visits must not reach
    it by DNS rebinding. Cross-site form posts are refused either way (``Origin``
    check).
    """
    pages = HandheldPages(store, buffer, probe, clock=clock, ntp=ntp,
                          allowed_hosts=allowed_hosts, access=access)
    app = FastAPI(title="meterhub handheld", docs_url=None, redoc_url=None, openapi_url=None)
    # The last middleware added runs first: host and Origin are checked before the session.
    app.middleware("http")(pages.signed_in)
    app.middleware("http")(pages.same_origin)
    app.add_exception_handler(PageError, pages.page_error)  # type: ignore[arg-type]
    if access is not None:
        app.add_api_route("/login", pages.login_form, methods=["GET"],
                          response_class=HTMLResponse)
        app.add_api_route("/login", pages.log_in, methods=["POST"], response_model=None)
        app.add_api_route("/logout", pages.log_out, methods=["POST"], response_model=None)
    stop_path = "/routes/{route_id}/stops/{sequence}"
    app.add_api_route("/", pages.routes_page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/routes/{route_id}", pages.route_page, methods=["GET"],
                      response_class=HTMLResponse)
    app.add_api_route(stop_path, pages.stop_page, methods=["GET"], response_class=HTMLResponse)
    for action, endpoint in (("probe", pages.probe_read), ("manual", pages.manual_read),
                             ("trouble", pages.trouble_report)):
        app.add_api_route(f"{stop_path}/{action}", endpoint, methods=["POST"],
                          response_model=None)
    return app


class HandheldPages:
    """The endpoints of :func:`create_app`, over one store, buffer and probe."""

    def __init__(
        self, store: RouteStore, buffer: EdgeBuffer, probe: Probe, *,
        clock: Callable[[], datetime], ntp: Callable[[], bool],
        allowed_hosts: Sequence[str] | None, access: AccessControl | None = None,
    ) -> None:
        self.store = store
        self.access = access
        self.buffer = buffer
        self.probe = probe
        self.clock = clock
        self.ntp = ntp
        self.hosts = (None if allowed_hosts is None
                      else {host.strip("[]").lower() for host in allowed_hosts})
        self.templates = Jinja2Templates(directory=TEMPLATES_DIR)
        self.templates.env.filters["decimal"] = format_decimal
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["q"] = lambda text: quote(str(text), safe="")

    # --- guards and plumbing ------------------------------------------------------------

    async def same_origin(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Answer to the allowed host names only, and refuse cross-site form posts."""
        host = request.headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        if self.hosts is not None and name.lower() not in self.hosts:
            return PlainTextResponse(f"this page does not answer to host {host!r}", 403)
        origin = request.headers.get("origin")
        if request.method == "POST" and origin is not None and urlsplit(origin).netloc != host:
            return PlainTextResponse("cross-site form posts are refused", 403)
        return await call_next(request)

    async def signed_in(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """With an access code, let only a session through: GETs go to the login form."""
        access = self.access
        request.state.signed_in = False
        if access is None or request.url.path in _OPEN_PATHS:
            return await call_next(request)
        if access.sessions.valid(request.cookies.get(SESSION_COOKIE)):
            request.state.signed_in = True
            response = await call_next(request)
            response.headers["Cache-Control"] = "no-store"  # no route page after a logout
            return response
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        log.warning("route page: %s %s without a session from %s refused", request.method,
                    request.url.path, _client(request))
        return self.login_page(
            request, next=request.url.path.rsplit("/", 1)[0] or "/", status=401,
            error="Log in first: nothing was saved.")

    async def page_error(self, request: Request, exc: PageError) -> HTMLResponse:
        return self.page(request, "error.html", exc.status, message=str(exc))

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def route_or_404(self, route_id: str) -> Route:
        try:
            return self.store.route(route_id)
        except UnknownRoute as exc:
            raise PageError(404, str(exc)) from None

    def stop_or_404(self, route_id: str, sequence: int) -> tuple[Route, RouteStop]:
        route = self.route_or_404(route_id)
        for stop in route.stops:
            if stop.sequence == sequence:
                return route, stop
        raise PageError(404, f"route {route.route_id} has no stop {sequence}")

    def card(
        self, request: Request, route: Route, stop: RouteStop, *, status: int = 200,
        message: str | None = None, reenter: Reenter | None = None,
        entry_error: str | None = None, saved: Visit | None = None,
    ) -> HTMLResponse:
        """A meter's card, with the outcome of what was just tried on it, if anything."""
        store = self.store
        return self.page(
            request, "stop.html", status, route=route, stop=stop,
            visit=store.visits(route.route_id).get(stop.sequence),
            history=store.history(route.route_id, stop.sequence),
            progress=store.progress(route.route_id), position=route.stops.index(stop) + 1,
            message=message, reenter=reenter, entry_error=entry_error, saved=saved,
            troubles=list(Trouble), probe_available=self.probe.available, max_note=MAX_NOTE,
        )

    def store_outcome(
        self, route: Route, stop: RouteStop, reading: Reading, *, value: str | None = None,
        trouble: Trouble | None = None, note: str = "",
    ) -> RedirectResponse:
        """Sign and buffer ``reading``, then mark the stop; redirect to the next stop to do."""
        try:
            [sealed] = self.buffer.append([reading])
        except BufferFull as exc:
            raise PageError(507, f"The handheld's buffer is full ({exc}); nothing was saved. "
                                 "Connect the handheld so its reads can sync.") from exc
        except (EdgeBufferError, ReadError) as exc:
            log.error("stop %d of %s not saved: %s", stop.sequence, route.route_id, exc)
            raise PageError(500, f"Not saved: {exc}") from exc
        self.store.record_visit(
            route.route_id, stop.sequence, "trouble" if trouble is not None else "read",
            sealed.seq, value=value, trouble=trouble.value if trouble else None, note=note)
        log.info("route %s stop %d (%s): %s saved as seq %d", route.route_id, stop.sequence,
                 stop.meter, value or trouble, sealed.seq)
        target = next_stop(route, set(self.store.visits(route.route_id)), stop.sequence)
        base = f"/routes/{quote(route.route_id, safe='')}"
        url = f"{base}/stops/{target}" if target is not None else base
        return RedirectResponse(f"{url}?saved={stop.sequence}", status_code=303)

    # --- logging in and out -------------------------------------------------------------

    def login_page(
        self, request: Request, *, next: str, status: int = 200, error: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The login form; the code typed is never sent back."""
        return self.templates.TemplateResponse(
            request, "login.html", {"next": safe_next(next), "error": error},
            status_code=status, headers=dict(headers or {}))

    def login_form(self, request: Request, next: str = "/") -> HTMLResponse:
        return self.login_page(request, next=next)

    def log_in(
        self, request: Request, code: Annotated[str, Form(max_length=256)],
        next: Annotated[str, Form(max_length=2048)] = "/",
    ) -> Response:
        """Check the code (throttled per client) and open a session."""
        access = self._access()
        client = _client(request)
        wait = access.throttle.retry_after(client)
        if wait > 0:
            log.warning("route page: login from %s refused: too many wrong access codes "
                        "(%.0f s to wait)", client, wait)
            return self.login_page(
                request, next=next, status=429, headers={"Retry-After": str(math.ceil(wait))},
                error=f"Too many wrong codes: try again in {wait_text(wait)}.")
        if not access.matches(code):
            failures = access.throttle.failed(client)
            log.warning("route page: wrong access code from %s (%d in a row)", client, failures)
            wait = access.throttle.retry_after(client)
            error = "Wrong access code." + (
                f" Too many wrong codes: try again in {wait_text(wait)}." if wait > 0 else "")
            return self.login_page(request, next=next, status=401, error=error)
        access.throttle.succeeded(client)
        access.sessions.close(request.cookies.get(SESSION_COOKIE))
        token = access.sessions.open()
        log.info("route page: session opened for %s", client)
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, token, max_age=int(access.sessions.lifetime_s),
                            path="/", secure=request.url.scheme == "https", httponly=True,
                            samesite="strict")
        return response

    def log_out(self, request: Request) -> RedirectResponse:
        self._access().sessions.close(request.cookies.get(SESSION_COOKIE))
        log.info("route page: session closed for %s", _client(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=request.url.scheme == "https",
                               httponly=True, samesite="strict")
        return response

    def _access(self) -> AccessControl:
        if self.access is None:  # the login routes exist only with an access code
            raise PageError(404, "This handheld has no access code.")
        return self.access

    # --- the endpoints ------------------------------------------------------------------

    def routes_page(self, request: Request) -> HTMLResponse:
        return self.page(request, "routes.html", routes=self.store.routes())

    def route_page(self, request: Request, route_id: str, saved: int | None = None) -> HTMLResponse:
        route = self.route_or_404(route_id)
        visits = self.store.visits(route_id)
        return self.page(request, "route.html", route=route, visits=visits,
                         progress=self.store.progress(route_id), saved=_saved(visits, saved),
                         next_sequence=next_stop(route, set(visits), 0))

    def stop_page(
        self, request: Request, route_id: str, sequence: int, saved: int | None = None
    ) -> HTMLResponse:
        route, stop = self.stop_or_404(route_id, sequence)
        return self.card(request, route, stop, saved=_saved(self.store.visits(route_id), saved))

    def probe_read(self, request: Request, route_id: str, sequence: int) -> Response:
        route, stop = self.stop_or_404(route_id, sequence)
        try:
            taken = self.probe.read(stop)
        except WrongMeter as exc:
            log.warning("route %s stop %d: probe on meter %s, not %s: refused",
                        route_id, sequence, exc.reported, exc.expected)
            return self.card(request, route, stop, status=409, message=str(exc))
        except ProbeError as exc:
            return self.card(request, route, stop, status=_PROBE_STATUS.get(exc.kind, 502),
                             message=str(exc))
        reading = probe_reading(stop, taken, now=self.clock(), ntp=self.ntp())
        return self.store_outcome(route, stop, reading, value=format_decimal(taken.value.value))

    def manual_read(
        self, request: Request, route_id: str, sequence: int,
        value: Annotated[str, Form(max_length=256)],
        confirm: Annotated[str | None, Form(max_length=256)] = None,
    ) -> Response:
        route, stop = self.stop_or_404(route_id, sequence)
        try:
            decision = check_manual(stop, value, confirm)
        except EntryError as exc:
            return self.card(request, route, stop, status=422, entry_error=str(exc))
        if isinstance(decision, Reenter):
            log.info("route %s stop %d: keyed %s outside %s–%s, asked again",
                     route_id, sequence, decision.first, decision.low, decision.high)
            return self.card(request, route, stop, reenter=decision)
        reading = manual_reading(stop, decision, now=self.clock(), ntp=self.ntp())
        return self.store_outcome(route, stop, reading, value=format_decimal(decision.value))

    def trouble_report(
        self, request: Request, route_id: str, sequence: int,
        code: Annotated[str, Form(max_length=64)],
        note: Annotated[str, Form(max_length=4 * MAX_NOTE)] = "",
    ) -> Response:
        route, stop = self.stop_or_404(route_id, sequence)
        try:
            trouble = Trouble(code)
        except ValueError:
            return self.card(request, route, stop, status=422,
                             message=f"“{code}” is not a trouble code.")
        note = note.strip()
        if len(note) > MAX_NOTE:
            return self.card(request, route, stop, status=422,
                             message=f"The note is longer than {MAX_NOTE} characters.")
        reading = trouble_reading(stop, trouble, now=self.clock(), ntp=self.ntp())
        return self.store_outcome(route, stop, reading, trouble=trouble, note=note)


_PROBE_STATUS = {"no_probe": 503, "profile": 422, "register_missing": 422}
_OPEN_PATHS = frozenset({"/login", "/logout"})
"""Reachable without a session: the form, and a logout that may find its session gone."""


def _client(request: Request) -> str:
    """The client's address, for the throttle and the log."""
    return request.client.host if request.client is not None else "unknown"


def _saved(visits: Mapping[int, Visit], sequence: int | None) -> Visit | None:
    """The visit just saved (for the banner after a redirect), if ``sequence`` names one."""
    return None if sequence is None else visits.get(sequence)


def _when(moment: datetime | None) -> str:
    """A time as the technician's handheld shows it: its local zone, to the minute."""
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


# --- serving -----------------------------------------------------------------------------


HandheldServer = WebServer
"""The route page's server (loopback by default: see :func:`protocols.web_paths.is_loopback`)."""
