"""``meterhub serve`` and ``meterhub broker-config``: the hub on the broker, and the broker's door.

Broker settings come from options or ``METERHUB_BROKER_*`` variables, so a
systemd unit can hold them in an environment file; the password itself only
ever from a 0600 file or a variable, never an option (``ps`` shows options).

``--workers N`` (PostgreSQL only) makes ``serve`` a supervisor of N worker
processes, each this same command with ``--worker-index``: see
:mod:`hub.workers` for who does what and how failures are handled.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hub import broker_options as options
from hub import http_options as http
from hub.api.app import create_app
from hub.api.runner import CycleRunner
from hub.broker_config import (
    HUB_USERNAME_DEFAULT,
    BrokerAccount,
    mosquitto_password_hash,
    write_broker_config,
)
from hub.collectors_cli import broker_password, open_store, save_password
from hub.gc_tuning import tune_garbage_collector
from hub.metrics import HubMetrics, metrics_route
from hub.reread_store import publish_route
from hub.serve import IngestWorker
from hub.store.collectors import active_broker_accounts
from hub.workers import (
    METRICS_DIR_ENV,
    Supervisor,
    WorkersRefused,
    check_store,
    shared_metrics_dir,
    watch_supervisor,
    worker_command,
)
from protocols.broker_settings import BrokerCredentialError
from protocols.logs import announce
from protocols.mqtt_contract import SHARED_READS_SUBSCRIPTION
from protocols.web_server import WebServer

out = Console(markup=False)
err = Console(stderr=True, markup=False)
log = logging.getLogger("hub")

SUPERVISOR_OPTIONS = frozenset({"workers", "worker_index", "supervisor_pid"})
"""The options a supervisor does not pass on to its workers (each gets its own index)."""


def serve(
    ctx: typer.Context,
    broker_host: options.Host = options.DEFAULT_HOST,
    broker_port: options.Port = None,
    broker_user: options.User = options.DEFAULT_USER,
    broker_password_file: options.PasswordFile = None,
    broker_password_env: options.PasswordEnv = None,
    tls: options.Tls = False,
    ca_file: options.CaFile = None,
    subscription: Annotated[str, typer.Option(
        envvar="METERHUB_SUBSCRIPTION", help="The reads subscription; meterhub/v1/+/reads on a "
        "broker without shared subscriptions.")] = SHARED_READS_SUBSCRIPTION,
    verifier_processes: Annotated[int | None, typer.Option(
        min=1, help="Processes checking stored reads' signatures (default: all cores).")] = None,
    no_verifier: Annotated[bool, typer.Option(
        "--no-verifier", help="Ingest only; another worker runs the background verifier.")]
        = False,
    http_host: http.HttpHost = "127.0.0.1",
    http_port: http.HttpPort = None,
    exports_dir: http.ExportsDir = Path("exports"),
    hub_key: http.HubKey = None,
    rules: http.RuleSetOption = None,
    rates: http.RatesOption = None,
    timezone: http.ZoneOption = "UTC",
    secure_cookies: http.SecureCookies = False,
    offline_after_s: http.OfflineAfter = 3600.0,
    workers: Annotated[int, typer.Option(
        "--workers", envvar="METERHUB_WORKERS", min=1,
        help="Worker processes sharing ingest and cycle runs (PostgreSQL only); worker 0 also "
             "serves HTTP and verifies. A worker that dies is restarted.")] = 1,
    run_cycles: Annotated[bool, typer.Option(
        "--run-cycles", envvar="METERHUB_RUN_CYCLES",
        help="Work queued cycle runs without --http-port (another hub serves the API); give "
             "it that hub's --timezone, --rules and --rates.")] = False,
    worker_index: Annotated[int | None, typer.Option(
        "--worker-index", min=0, hidden=True, help="Set by --workers: this worker's number.")]
        = None,
    supervisor_pid: Annotated[int | None, typer.Option(
        "--supervisor-pid", min=1, hidden=True, help="Set by --workers: stop when it is gone.")]
        = None,
) -> None:
    """Ingest collectors' reads from the broker into the store, and verify them in the background.

    With --http-port it also serves the REST API (/api/v1, documented at /api/v1/docs), the
    operator pages and /metrics, and works the cycle steps operators ask for there.
    Runs until SIGTERM or Ctrl-C. Add workers (--workers N here, or more hubs on other
    machines) to share ingest and cycle runs: the broker gives each batch to one of them.
    """
    broker = options.broker_settings(broker_host, broker_port, broker_user,
                                     broker_password_file, broker_password_env, tls, ca_file)
    settings = None
    if http_port is not None or run_cycles:
        settings = http.hub_settings(
            timezone=timezone, rules=rules, rates=rates, exports_dir=exports_dir,
            hub_key=hub_key, secure_cookies=secure_cookies, offline_after_s=offline_after_s,
            publish_route=lambda route: publish_route(
                route, broker, client_id=f"meterhub-routes-{os.getpid()}"))
    if workers > 1 and worker_index is None:
        raise typer.Exit(_supervise(ctx, workers))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if supervisor_pid is not None:
        watch_supervisor(supervisor_pid, stop)
    first = worker_index in (None, 0)  # the API and the verifier run once: in worker 0
    name = "meterhub serve" if worker_index is None else f"meterhub serve worker {worker_index}"
    with open_store(ctx) as store:
        metrics = HubMetrics(store, offline_after_s=offline_after_s)
        try:
            worker = IngestWorker(store, broker, subscription=subscription,
                                  verifier_processes=verifier_processes,
                                  verify=not no_verifier and first, metrics=metrics)
        except BrokerCredentialError as exc:
            log.error("%s", exc)
            raise typer.Exit(2) from None
        announce(err, f"{name}: store {store}, broker {broker.host}:{broker.effective_port}")
        tune_garbage_collector()
        with ExitStack() as running:
            if settings is not None:
                runner = CycleRunner(store, settings).start()
                running.callback(runner.stop)
            if settings is not None and http_port is not None and first:
                app = create_app(store, settings, runner=runner,
                                 metrics=metrics_route(metrics))
                try:
                    server = WebServer(app, http_host, http_port, name="hub API").start()
                except OSError as exc:
                    log.error("cannot serve HTTP on %s:%s: %s", http_host, http_port, exc)
                    raise typer.Exit(2) from None
                running.callback(server.stop)
                announce(err, f"{name}: API and operator pages on {server.url} "
                              f"(API docs {server.url}/api/v1/docs)")
            worker.run(stop)


def _supervise(ctx: typer.Context, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM or Ctrl-C; the exit code."""
    try:
        check_store(ctx.obj["db"], workers)
    except WorkersRefused as exc:
        log.error("%s", exc)
        return 2
    with open_store(ctx) as store:  # the store must answer and be current before any worker
        where = str(store)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with shared_metrics_dir() as metrics_dir:
        supervisor = Supervisor(lambda i: worker_command(ctx, i, skip=SUPERVISOR_OPTIONS),
                                workers, env={**os.environ, METRICS_DIR_ENV: metrics_dir})
        announce(err, f"meterhub serve: {workers} workers on store {where} (pid "
                      f"{os.getpid()} supervises them)")
        return supervisor.run(stop)


def broker_config(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for passwd and acl.")],
    hub_user: Annotated[str, typer.Option(help="The hub's broker account.")] =
        HUB_USERNAME_DEFAULT,
    hub_password_file: Annotated[Path, typer.Option(
        help="The hub's broker password (mode 0600); made when missing.")] =
        Path("meterhub-broker.password"),
) -> None:
    """Write Mosquitto's password file and ACL: each active collector on its own topics only.

    Point mosquitto.conf's password_file and acl_file at them and reload Mosquitto (SIGHUP).
    A revoked collector loses its account at the next run.
    """
    secret, new = broker_password(hub_password_file)
    if new:
        save_password(hub_password_file, secret)

    with open_store(ctx) as store, store.connect() as conn:
        collectors = active_broker_accounts(conn)
    accounts = [BrokerAccount(hub_user, mosquitto_password_hash(secret))]
    accounts += [BrokerAccount(collector, hashed) for collector, hashed in collectors]
    passwd, acl = write_broker_config(out_dir, accounts=accounts,
                                      collectors=[c for c, _ in collectors],
                                      hub_username=hub_user)
    out.print(f"wrote {passwd} ({len(accounts)} accounts) and {acl} "
              f"({len(collectors)} collectors)")
    if new:
        out.print(f"the hub's broker password was made and written to {hub_password_file}")
