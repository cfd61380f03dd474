"""``tls_cert_file`` and ``tls_key_file``: HTTPS for the agent's own web ports.

The handheld's route page and the metrics port may listen beyond loopback,
where what they are sent (an access code, a session cookie, a bearer token)
crosses the network; nothing sits in front of a gateway to encrypt it, so the
agent serves HTTPS itself when both files are given (see
:class:`protocols.web_server.TlsFiles`). Relative paths are relative to the
config file.

Example::

    [metrics]
    listen_host = "0.0.0.0"
    token_file = "metrics.token"
    tls_cert_file = "gateway.crt"   # PEM, the chain if there is one
    tls_key_file = "gateway.key"    # PEM, mode 0600
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, model_validator

from protocols.web_server import TlsFiles


class TlsSettings(BaseModel):
    """The two keys, for a config section to inherit."""

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file (HTTPS), or neither")
        return self

    @property
    def tls(self) -> TlsFiles | None:
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return TlsFiles(self.tls_cert_file, self.tls_key_file)

    def tls_resolved(self, base: Path) -> dict[str, Path]:
        """The TLS paths made relative to ``base``, for ``model_copy(update=…)``."""
        return {name: base / path for name, path in
                (("tls_cert_file", self.tls_cert_file), ("tls_key_file", self.tls_key_file))
                if path is not None}
