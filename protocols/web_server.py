"""Serve a FastAPI app with uvicorn on a thread, on a socket bound before it starts.

The handheld's route page and the hub's API and pages both run beside other
work (a probe, MQTT ingest) in one process, so uvicorn gets a thread, not
the main loop.

With :class:`TlsFiles` it serves HTTPS. A handheld or a gateway has no
reverse proxy in front of it to do that, and a page or a metrics port that
listens beyond loopback sends an access code, a session cookie or a bearer
token over the link: with TLS they cross it encrypted. The certificate and
key are loaded before the server starts, so a wrong file is an error at start
naming it, and a key others can read is refused like the signing key.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

from protocols.private_files import PrivateFileError, private_mode


class TlsError(ValueError):
    """The certificate or key cannot serve HTTPS; names the file and why."""


@dataclass(frozen=True)
class TlsFiles:
    """A PEM certificate (chain) and its private key (mode 0600) to serve HTTPS with."""

    cert_file: Path
    key_file: Path

    def check(self) -> None:
        """Raise :class:`TlsError` unless the pair loads and the key is its owner's only."""
        try:
            private_mode(self.key_file, what="the TLS key")
        except PrivateFileError as exc:
            raise TlsError(str(exc)) from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"{self.cert_file} with {self.key_file}: not a PEM certificate "
                           f"and its key: {getattr(exc, 'strerror', None) or exc}") from None


class WebServer:
    """A FastAPI app served by uvicorn on a thread, on a socket bound before it starts.

    Binding first makes "port in use" an error at start (``OSError``), not a log
    line on another thread, and lets tests ask for port 0 and read the port back.
    The owner handles signals: uvicorn installs none off the main thread.
    """

    def __init__(self, app: FastAPI, host: str, port: int, *, name: str = "web server",
                 log_level: str = "warning", tls: TlsFiles | None = None) -> None:
        if tls is not None:
            tls.check()  # before binding: a wrong file holds no port
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        self._socket = socket.socket(family, kind, proto)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(address)
        except BaseException:
            self._socket.close()
            raise
        bound = self._socket.getsockname()
        self.host, self.port = str(bound[0]), int(bound[1])
        # log_config=None: uvicorn's lines go through the process's own handlers (JSON logs)
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="off", log_config=None,
            ssl_certfile=str(tls.cert_file) if tls else None,
            ssl_keyfile=str(tls.key_file) if tls else None)
        self.scheme = "https" if tls else "http"
        self.name = name
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={
            "sockets": [self._socket]}, name=name, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"{self.name} did not start on {self.url}")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
