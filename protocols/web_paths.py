"""Two checks every meterhub web page needs: who can reach a listen address, where a login may lead.

Shared by the hub's operator pages, the handheld's route page and the edge
agent's metrics port, so that each asks the same question the same way.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to listen on) is reachable from this machine only.

    A name other than ``localhost`` counts as reachable from elsewhere: it may
    resolve to anything.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_path(target: str | None, *, default: str = "/",
               refused: frozenset[str] = frozenset()) -> str:
    """``target`` if it is a path on this site (and not one of ``refused``), else ``default``.

    Where a login form sends a person afterwards comes from the URL, so anyone
    can write it: ``https://evil.example/``, ``//evil.example`` and the variants
    browsers normalize into it (``/\\evil.example``, a tab or newline inside
    ``//``) would send them to a look-alike site.
    """
    if (not target or not target.startswith("/") or target.startswith("//")
            or any(c == "\\" or c.isspace() or not c.isprintable() for c in target)):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in refused:
        return default
    return target
