"""The ``[handheld]`` section: the agent as a technician's handheld (``edge-agent route``).

A handheld is configured once by the utility and then carried for years by
people who never see the file, so every setting is checked at start: the
probe's protocol is one a handheld probe can speak, and the route page —
where reads are signed with the handheld's key — is never reachable from the
network without a login. Relative paths are relative to the config file, like
the rest of the agent's config.

Example::

    [handheld]
    listen_host = "127.0.0.1"        # its own browser; any other address needs access_code_file
    listen_port = 8080
    access_code_file = "handheld.code"  # mode 0600: the code a technician types once per session
    routes_path = "routes.sqlite"    # routes received over MQTT, and the visits made
    probe_protocol = "iec62056_21"   # or "modbus_rtu"
    probe_port = "/dev/ttyUSB0"      # the optical head's (or RS-485 adapter's) serial device
    probe_baudrate = 300             # optional: override the profile's rate
    probe_timeout_s = 2.0            # optional: response timeout (default: the protocol's)
    probe_echo = true                # the optical head echoes what it sends
    probe_unit_id = 1                # Modbus RTU only
    meter_timezone = "Europe/Vienna" # time zone of the meters' clocks (IEC)
    default_profile = "landis-gyr-zmd310"  # for stops whose route names no profile

The access code is made by ``edge-agent handheld-code generate --out handheld.code``
(:func:`write_access_code_file`): twelve characters from an alphabet without
look-alikes, shown in groups of four (``K7QM-4HXT-9RWP``); case, spaces and
dashes do not matter when it is typed. Like the signing key, a code file that
group or others may read is refused (:func:`load_access_code`). With it, every
page asks for the code once per session, on loopback too; without it the page
is open, which is allowed on loopback only (the handheld's own browser).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from edge_agent.files import write_atomic
from edge_agent.tls_config import TlsSettings
from protocols.private_files import PrivateFileError, read_private_file
from protocols.time_zones import load_zone
from protocols.web_paths import is_loopback

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Digits and capitals a technician cannot confuse: no 0/O, 1/I/L, nor U/V."""
CODE_GROUPS = 3
CODE_GROUP_CHARS = 4
"""Twelve characters of 30: about 59 bits, far beyond guessing at the page's throttle."""
MIN_CODE_CHARS = 10
MAX_CODE_CHARS = 128
CODE_FILE_MODE = 0o600


class HandheldSection(TlsSettings):
    """Where the route page listens, who may use it, where routes are kept, and the probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8080, ge=1, le=65535)
    access_code_file: Path | None = None
    """The code a technician types once per session (mode 0600); required off loopback."""
    routes_path: Path = Path("routes.sqlite")
    probe_protocol: Literal["iec62056_21", "modbus_rtu"] = "iec62056_21"
    probe_port: str | None = None
    """None: manual reads and trouble still work; "read with probe" says why it cannot."""
    probe_baudrate: int | None = Field(default=None, gt=0)
    probe_timeout_s: float | None = Field(default=None, gt=0)
    probe_echo: bool = False
    probe_unit_id: int = Field(default=1, ge=0, le=247)
    meter_timezone: str | None = None
    default_profile: str | None = None

    @field_validator("meter_timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        """Checked at load: a bad zone would otherwise fail the technician's first probe read."""
        if zone is not None:
            load_zone(zone)
        return zone

    @model_validator(mode="after")
    def _authenticated_beyond_loopback(self) -> HandheldSection:
        """Every network entry point is authenticated: off loopback, the page needs a code."""
        if self.access_code_file is None and not is_loopback(self.listen_host):
            raise ValueError(
                f"listen_host {self.listen_host!r} is reachable from the network, where anyone "
                "could record reads signed with this handheld's key: set access_code_file (a "
                "file holding the code technicians type, mode 0600; make one with "
                "`edge-agent handheld-code generate --out FILE`)")
        return self

    def resolved(self, base: Path) -> HandheldSection:
        """Its paths (routes, access code, TLS) made relative to ``base`` (the config's dir)."""
        update: dict[str, Path] = {"routes_path": base / self.routes_path,
                                   **self.tls_resolved(base)}
        if self.access_code_file is not None:
            update["access_code_file"] = base / self.access_code_file
        return self.model_copy(update=update)


# --- the access code --------------------------------------------------------------------


class AccessCodeError(Exception):
    """An access code file that cannot be used; names the file and why, never the code."""


def normalize_code(text: str) -> str:
    """The code as compared: case, spaces and dashes are how people type it, not part of it."""
    return "".join(text.split()).replace("-", "").upper()


def generate_access_code() -> str:
    """A new random code, grouped for reading aloud and typing: ``K7QM-4HXT-9RWP``."""
    return "-".join(
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_CHARS))
        for _ in range(CODE_GROUPS))


def write_access_code_file(path: Path, *, overwrite: bool = False) -> str:
    """Write a new code to ``path`` atomically, mode 0600, and return it (to show once).

    Raises :class:`FileExistsError` when ``path`` exists and ``overwrite`` is false.
    """
    code = generate_access_code()
    write_atomic(path, f"{code}\n".encode("ascii"), mode=CODE_FILE_MODE, overwrite=overwrite)
    return code


def load_access_code(path: Path) -> str:
    """The normalized code in ``path``, refusing a file others can read (like the key)."""
    try:
        data = read_private_file(path, what="the handheld's access code", limit=MAX_CODE_CHARS)
    except PrivateFileError as exc:
        raise AccessCodeError(str(exc)) from None
    try:
        code = normalize_code(data.decode("ascii"))
    except UnicodeDecodeError:
        raise AccessCodeError(f"{path}: the access code must be ASCII text") from None
    if len(data) > MAX_CODE_CHARS or len(code) < MIN_CODE_CHARS or not code.isprintable():
        raise AccessCodeError(
            f"{path}: an access code is one line of {MIN_CODE_CHARS} to {MAX_CODE_CHARS} "
            "characters (dashes and spaces not counted); make one with "
            "`edge-agent handheld-code generate`")
    return code
