"""How one end reaches the MQTT broker: address, credentials and TLS, as validated settings.

The edge agent's ``[sync]`` section and the hub's ``serve`` options both come
down to these settings, so a gateway and the hub are configured the same way.
The password is never written in the config itself: it is read from an
environment variable or from a file only its owner can read, and it never
appears in a repr or a log line.

Example (``edge-agent.toml``)::

    [sync]
    host = "mqtt.utility.example"
    port = 8883
    tls = true
    ca_file = "ca.pem"
    password_file = "mqtt.password"     # mode 0600; the user name is the collector id
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BrokerCredentialError(Exception):
    """The configured password cannot be read, or is readable by others."""


class BrokerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> BrokerSettings:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (TLS client certificate)")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ValueError("ca_file/cert_file need tls = true")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    def password(self) -> str | None:
        """The broker password from the environment or the 0600 file, else ``None``."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise BrokerCredentialError(
                    f"environment variable {self.password_env} (the broker password) is not set"
                )
            return value
        if self.password_file:
            try:
                mode = self.password_file.stat().st_mode
                text = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise BrokerCredentialError(f"{self.password_file}: {exc.strerror}") from None
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise BrokerCredentialError(
                    f"{self.password_file} is readable by others (mode {stat.S_IMODE(mode):o}); "
                    "run: chmod 600 " + str(self.password_file)
                )
            return text.strip()
        return None

    def resolved(self, base: Path) -> BrokerSettings:
        """Relative file paths made relative to ``base`` (the config file's directory)."""
        update = {
            name: base / value
            for name in ("password_file", "ca_file", "cert_file", "key_file")
            if (value := getattr(self, name)) is not None
        }
        return self.model_copy(update=update)

    def apply(self, client: Any, *, default_username: str | None = None) -> None:
        """Set credentials and TLS on a paho ``Client`` before it connects."""
        username = self.username or default_username
        if username:
            client.username_pw_set(username, self.password())
        if self.tls:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file else None
            )
            if self.cert_file and self.key_file:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
            client.tls_set_context(context)
