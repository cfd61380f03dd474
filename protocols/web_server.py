"""Serve a FastAPI app with uvicorn on a thread, on a socket bound before it starts.

The handheld's route page and the hub's API and pages both run beside other
work (a probe, MQTT ingest) in one process, so uvicorn gets a thread, not
the main loop.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI


class WebServer:
    """A FastAPI app served by uvicorn on a thread, on a socket bound before it starts.

    Binding first makes "port in use" an error at start (``OSError``), not a log
    line on another thread, and lets tests ask for port 0 and read the port back.
    The owner handles signals: uvicorn installs none off the main thread.
    """

    def __init__(self, app: FastAPI, host: str, port: int, *, name: str = "web server",
                 log_level: str = "warning") -> None:
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
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                                log_config=None)
        self.name = name
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={
            "sockets": [self._socket]}, name=name, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
