"""The hub's web application: the REST API, the operator pages, health and ``/metrics``.

- ``/api/v1/…``: the REST API (bearer token or session), documented at
  ``/api/v1/openapi.json`` and browsable at ``/api/v1/docs``;
- ``/login``, ``/cycles``, ``/exceptions``, …: the operator pages (session);
- ``/healthz``: unauthenticated liveness (says nothing but "ok");
- ``/metrics``: Prometheus text, for a viewer token (see :mod:`hub.metrics`).

Example::

    app = create_app(store, settings, runner=CycleRunner(store, settings).start())
    with WebServer(app, "127.0.0.1", 8080, name="hub API") as server:
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.api.audit import install_request_audit
from hub.api.auth import LoginRequired, principal_of
from hub.api.errors import install_error_handlers
from hub.api.routes import (
    admin,
    bills,
    collectors,
    cycles,
    exceptions,
    exports,
    meters,
    runs,
)
from hub.api.runner import CycleRunner
from hub.api.settings import HubSettings
from hub.export.manifest import installed_version
from hub.store import Store
from hub.web import login
from hub.web.pages import bills as bill_pages
from hub.web.pages import collectors as collector_pages
from hub.web.pages import cycles as cycle_pages
from hub.web.pages import exceptions as exception_pages
from hub.web.pages import exports as export_pages
from hub.web.pages import meters as meter_pages
from hub.web.render import NAV, templates
from hub.web.throttle import LoginThrottle

API_PREFIX = "/api/v1"
API_ROUTERS: tuple[APIRouter, ...] = (
    collectors.router, meters.router, cycles.router, runs.router, exceptions.router,
    bills.router, exports.router, admin.router,
)
PAGE_ROUTERS: tuple[APIRouter, ...] = (
    login.router, cycle_pages.router, exception_pages.router, meter_pages.router,
    bill_pages.router, export_pages.router, collector_pages.router,
)

MetricsRoute = Callable[..., Response]
"""The ``/metrics`` endpoint (:func:`hub.metrics.metrics_route`)."""


def create_app(store: Store, settings: HubSettings, *, runner: CycleRunner | None = None,
               metrics: MetricsRoute | None = None) -> FastAPI:
    app = FastAPI(
        title="meterhub hub API", version=installed_version(),
        description=(
            "Collectors, meters and their signed reads, billing cycles (reconcile, meter "
            "edits, bills, CIS export), the exceptions queue, bills and exports.\n\n"
            "Authenticate with `Authorization: Bearer <token>` (tokens are made with "
            "`meterhub tokens create`). Roles: **viewer** reads; **operator** also runs cycle "
            "steps, resolves exceptions and sends re-read routes; **admin** also manages "
            "collectors, tokens, users and rates. Errors are RFC 9457 problem details."),
        openapi_url=f"{API_PREFIX}/openapi.json", docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.runner = runner
    app.state.login_throttle = LoginThrottle()
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    for router in PAGE_ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    _install_page_errors(app)
    install_request_audit(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    if metrics is not None:
        app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return app


def _install_page_errors(app: FastAPI) -> None:
    """Pages answer errors with a page (or the login form), the API with problem JSON."""
    api_handler = app.exception_handlers[StarletteHTTPException]

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(API_PREFIX) or request.url.path == "/metrics":
            return await api_handler(request, exc)
        who = await run_in_threadpool(principal_of, request, request.app.state.store)
        message = exc.detail if isinstance(exc.detail, str) else "Something went wrong."
        return templates.TemplateResponse(request, "error.html", {
            "who": who, "csrf": who.csrf if who else "", "nav": NAV,
            "path": request.url.path, "title": f"{exc.status_code}", "message": message,
        }, status_code=exc.status_code, headers=getattr(exc, "headers", None))

