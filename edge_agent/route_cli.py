"""``edge-agent route``: the agent as a technician's handheld, with its route page.

Starts what ``edge-agent run`` starts for signing (the key, refused when
others can read it; the buffer, its chain checked), then: the route store,
the MQTT sync (when ``[sync]`` is configured) which also brings the hub's
routes, and the route page on ``[handheld] listen_host:listen_port`` for the
handheld's own browser — until SIGTERM or Ctrl-C. Without ``[sync]`` reads
stay buffered (``edge-agent buffer export`` carries them), and routes can be
loaded from files with ``--load-route``, for offline work and demos.

With ``[handheld] access_code_file`` every page asks for that code once per
session; without it the page is open, which the config allows on loopback
only. ``edge-agent handheld-code generate --out FILE`` makes the code file
(mode 0600) and prints the code once.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from fastapi import FastAPI
from rich.console import Console

from edge_agent import __version__
from edge_agent.agent import Agent
from edge_agent.buffer import EdgeBufferError
from edge_agent.buffer_schema import SchemaError
from edge_agent.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, AgentConfig, ConfigError, load_config
from edge_agent.handheld_access import AccessControl
from edge_agent.handheld_config import (
    AccessCodeError,
    HandheldSection,
    load_access_code,
    write_access_code_file,
)
from edge_agent.handheld_probe import Probe
from edge_agent.handheld_web import LOOPBACK_NAMES, HandheldServer, create_app
from edge_agent.keys import KeyFileError
from edge_agent.metrics import MetricsError
from edge_agent.route_store import RouteStore
from edge_agent.sync import SyncClient
from protocols.broker_settings import BrokerCredentialError
from protocols.errors import ReadError
from protocols.logs import announce
from protocols.route_message import RouteError
from protocols.web_paths import is_loopback
from protocols.web_server import TlsError

out = Console(highlight=False, markup=False)
err = Console(stderr=True, markup=False)
log = logging.getLogger("edge_agent")

code_app = typer.Typer(
    help="The access code of the handheld's route page: make the file it is read from.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="Agent configuration file (TOML)."),
]


class RouteInbox:
    """The sync client's ``on_route``: decode, keep, and log — a bad route never stops sync."""

    def __init__(self, store: RouteStore) -> None:
        self.store = store

    def __call__(self, payload: bytes) -> None:
        try:
            route = self.store.save_payload(payload)
        except RouteError as exc:
            log.error("route message refused: %s", exc)
            return
        log.info("route %s: %d stops on this handheld", route.route_id, len(route.stops))


def route(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    load_route: Annotated[list[Path] | None, typer.Option(
        "--load-route", help="Load a route message file (JSON) before serving; repeatable.",
    )] = None,
) -> None:
    """Run as a handheld: receive routes, serve the route page, sign every read taken."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    section: HandheldSection | None = cfg.handheld
    if section is None:
        log.error("%s has no [handheld] section: `edge-agent route` needs one", config)
        raise typer.Exit(2)
    try:
        serve(cfg, section, routes=load_route or [])
    except (ConfigError, KeyFileError, SchemaError, BrokerCredentialError, MetricsError,
            AccessCodeError, TlsError) as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    except (EdgeBufferError, ReadError, OSError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        raise typer.Exit(1) from None


def access_control(section: HandheldSection) -> AccessControl | None:
    """The page's access code as configured; ``None`` (no login) on loopback only."""
    if section.access_code_file is None:
        if not is_loopback(section.listen_host):  # config validation, again
            raise AccessCodeError(f"the route page on {section.listen_host} needs "
                                  "[handheld] access_code_file")
        return None
    return AccessControl(load_access_code(section.access_code_file))


def serve(
    cfg: AgentConfig, section: HandheldSection, *, routes: list[Path],
    stop: threading.Event | None = None,
) -> None:
    """Start the handheld and serve until ``stop`` is set (by SIGTERM/SIGINT when not given)."""
    access = access_control(section)  # before the agent: a bad code or TLS file starts nothing
    if section.tls is not None:
        section.tls.check()
    agent = Agent.start(cfg)
    try:
        with RouteStore(section.routes_path, collector=cfg.collector) as store:
            for path in routes:
                store.save_payload(path.read_bytes())
            probe = Probe.from_config(
                section, profile_dirs=[Path(d) for d in cfg.collection.profile_dirs])
            loopback = is_loopback(section.listen_host)
            app = create_app(store, agent.buffer, probe, access=access,
                             allowed_hosts=LOOPBACK_NAMES if loopback else None)
            _run(agent, store, app, section, stop, login=access is not None)
    finally:
        agent.close()


def _run(agent: Agent, store: RouteStore, app: FastAPI, section: HandheldSection,
         stop: threading.Event | None, *, login: bool) -> None:
    """Serve the page and sync until ``stop``; housekeeping of the buffer as ``run`` does."""
    if stop is None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    cfg = agent.config
    syncing = None
    with HandheldServer(app, section.listen_host, section.listen_port,
                        tls=section.tls) as server:
        if cfg.sync is not None:
            client = SyncClient(agent.buffer, cfg.sync, version=__version__,
                                on_route=RouteInbox(store))
            syncing = threading.Thread(target=client.run, args=(stop,), name="sync")
            syncing.start()
        else:
            log.warning("no [sync] section: reads stay in the buffer until exported")
        access = "access code required" if login else "loopback, no access code"
        announce(err, f"edge-agent {cfg.collector} handheld: route page at {server.url} "
                      f"({access}; key {agent.signer.key_id})")
        interval = cfg.agent.housekeeping_interval_s
        try:
            while not stop.is_set():
                agent.housekeeping()
                stop.wait(interval)
        finally:
            stop.set()
            if syncing is not None:
                syncing.join()
    log.info("handheld %s stopped", cfg.collector)


@code_app.command("generate")
def code_generate(
    out_file: Annotated[Path, typer.Option(
        "--out", help="File to write (mode 0600): the access_code_file of the handheld's config.",
    )],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing code (the old one works until the next start).",
    )] = False,
) -> None:
    """Make a new access code for the route page, write it (mode 0600) and print it once."""
    try:
        code = write_access_code_file(out_file, overwrite=force)
    except FileExistsError:
        log.error("%s exists: use --force to replace it", out_file)
        raise typer.Exit(2) from None
    except OSError as exc:
        log.error("%s: cannot write the access code: %s", out_file, exc.strerror or exc)
        raise typer.Exit(1) from None
    out.print(f"wrote {out_file} (mode 0600)")
    out.print(f"access code: {code}")
    out.print("give it to the technicians (case and dashes do not matter); set [handheld] "
              "access_code_file and restart `edge-agent route`", style="dim", markup=False)
