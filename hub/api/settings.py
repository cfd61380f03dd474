"""What the API and the pages need besides the store: where rates, rules and exports live.

Loaded once when ``meterhub serve`` starts, so a broken rate table or rule
set stops the hub at start with the file and key named, not at the first
request an operator makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

from hub.edits.ruleset import RuleSet
from hub.rates.book import RateBook
from protocols.route_message import Route
from protocols.signing import Signer

RoutePublisher = Callable[[Route], None]
"""Hands a re-read route to its handheld (over MQTT); raises PublishError when it cannot."""


@dataclass(frozen=True)
class HubSettings:
    zone: tzinfo
    rule_set: RuleSet
    rate_book: RateBook
    rates_dir: Path
    exports_dir: Path
    export_signer: Signer | None = None
    """The hub's export key: without it the export step is refused (409), not faked."""
    publish_route: RoutePublisher | None = None
    """Without a broker, a re-read route cannot be sent (503)."""
    secure_cookies: bool = False
    """Mark the session cookie Secure: set it when the pages are served over HTTPS."""
    collector_offline_after_s: float = 3600.0
    """A collector whose last status is this old counts as offline even if it said online."""
