"""``meterhub serve``'s options for the API and operator pages, and what they load at start.

Rates, rule set, time zone and export key are loaded once when the hub
starts, so a broken rate table or a world-readable key stops the service at
start, naming the file — not at the first click of an operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.api.settings import HubSettings, RoutePublisher
from hub.cycle_cli import RatesOption, RuleSetOption, ZoneOption, load_book, load_rules, zone
from hub.keys_cli import load_hub_signer
from hub.rates.book import default_rate_dir

HttpHost = Annotated[str, typer.Option(
    "--http-host", envvar="METERHUB_HTTP_HOST",
    help="Address for the API and operator pages; 0.0.0.0 behind a TLS reverse proxy.")]
HttpPort = Annotated[int | None, typer.Option(
    "--http-port", envvar="METERHUB_HTTP_PORT", min=0, max=65535,
    help="Serve the REST API, the operator pages and /metrics on this port (off without it).")]
ExportsDir = Annotated[Path, typer.Option(
    "--exports-dir", envvar="METERHUB_EXPORTS_DIR", file_okay=False,
    help="Where cycle files exported from the pages and API are written.")]
HubKey = Annotated[Path | None, typer.Option(
    "--hub-key", envvar="METERHUB_KEY", exists=True, dir_okay=False,
    help="The hub's signing key (mode 0600) for cycle-file manifests; exports are refused "
         "without it.")]
SecureCookies = Annotated[bool, typer.Option(
    "--secure-cookies", envvar="METERHUB_SECURE_COOKIES",
    help="Mark the login cookie Secure: set it when the pages are served over HTTPS.")]
OfflineAfter = Annotated[float, typer.Option(
    "--collector-offline-after", envvar="METERHUB_COLLECTOR_OFFLINE_AFTER", min=1,
    help="Seconds without a status message after which a collector shows offline.")]

__all__ = ["RatesOption", "RuleSetOption", "ZoneOption"]


def hub_settings(*, timezone: str, rules: Path | None, rates: Path | None, exports_dir: Path,
                 hub_key: Path | None, secure_cookies: bool, offline_after_s: float,
                 publish_route: RoutePublisher | None) -> HubSettings:
    """The settings the API needs, loaded and checked now (exit 2 naming a bad file)."""
    rates_dir = rates if rates is not None else default_rate_dir()
    return HubSettings(
        zone=zone(timezone), rule_set=load_rules(rules), rate_book=load_book(rates_dir),
        rates_dir=rates_dir, exports_dir=exports_dir,
        export_signer=load_hub_signer(hub_key) if hub_key is not None else None,
        publish_route=publish_route, secure_cookies=secure_cookies,
        collector_offline_after_s=offline_after_s,
    )
