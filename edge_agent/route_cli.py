"""``edge-agent route``: the agent as a technician's handheld, with its route page.

Starts what ``edge-agent run`` starts for signing (the key, refused when
others can read it; the buffer, its chain checked), then: the route store,
the MQTT sync (when ``[sync]`` is configured) which also brings the hub's
routes, and the route page on ``[handheld] listen_host:listen_port`` for the
handheld's own browser — until SIGTERM or Ctrl-C. Without ``[sync]`` reads
stay buffered (``edge-agent buffer export`` carries them), and routes can be
loaded from files with ``--load-route``, for offline work and demos.

The page has no login, so it listens on loopback only unless ``--allow-remote``
says otherwise.
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
from edge_agent.handheld_config import HandheldSection
from edge_agent.handheld_probe import Probe
from edge_agent.handheld_web import LOOPBACK_NAMES, HandheldServer, create_app, is_loopback
from edge_agent.keys import KeyFileError
from edge_agent.metrics import MetricsError
from edge_agent.route_store import RouteStore
from edge_agent.sync import SyncClient
from protocols.broker_settings import BrokerCredentialError
from protocols.errors import ReadError
from protocols.route_message import RouteError

err = Console(stderr=True)
log = logging.getLogger("edge_agent")

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
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Allow a listen_host other than loopback (the page has no login).",
    )] = False,
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
    if not is_loopback(section.listen_host):
        if not allow_remote:
            log.error("[handheld] listen_host %s is not loopback; the route page has no login, "
                      "so this needs --allow-remote", section.listen_host)
            raise typer.Exit(2)
        err.print(f"[bold red]warning[/bold red]: the route page listens on "
                  f"{section.listen_host} and has NO LOGIN: anyone who reaches this port can "
                  "record reads signed with this handheld's key")
    try:
        serve(cfg, section, routes=load_route or [], remote=allow_remote)
    except (ConfigError, KeyFileError, SchemaError, BrokerCredentialError, MetricsError) as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    except (EdgeBufferError, ReadError, OSError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        raise typer.Exit(1) from None


def serve(
    cfg: AgentConfig, section: HandheldSection, *, routes: list[Path], remote: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Start the handheld and serve until ``stop`` is set (by SIGTERM/SIGINT when not given)."""
    agent = Agent.start(cfg)
    try:
        with RouteStore(section.routes_path, collector=cfg.collector) as store:
            for path in routes:
                store.save_payload(path.read_bytes())
            probe = Probe.from_config(
                section, profile_dirs=[Path(d) for d in cfg.collection.profile_dirs])
            app = create_app(store, agent.buffer, probe,
                             allowed_hosts=None if remote else LOOPBACK_NAMES)
            _run(agent, store, app, section, stop)
    finally:
        agent.close()


def _run(agent: Agent, store: RouteStore, app: FastAPI, section: HandheldSection,
         stop: threading.Event | None) -> None:
    """Serve the page and sync until ``stop``; housekeeping of the buffer as ``run`` does."""
    if stop is None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    cfg = agent.config
    syncing = None
    with HandheldServer(app, section.listen_host, section.listen_port) as server:
        if cfg.sync is not None:
            client = SyncClient(agent.buffer, cfg.sync, version=__version__,
                                on_route=RouteInbox(store))
            syncing = threading.Thread(target=client.run, args=(stop,), name="sync")
            syncing.start()
        else:
            log.warning("no [sync] section: reads stay in the buffer until exported")
        err.print(f"edge-agent {cfg.collector} handheld: route page at {server.url} "
                  f"(key {agent.signer.key_id})")
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
