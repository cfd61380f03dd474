"""A TCP proxy between an MQTT client and its broker that a test can partition, heal and cut.

Put it between the edge agent and Mosquitto to make the network failures the
edge must survive, on real sockets:

- :meth:`TcpProxy.partition` is a cable pulled between two routers: connections
  stay open, bytes are dropped in both directions, a close on one side is not
  passed on, and new connections are accepted but go nowhere. Only keepalive
  timeouts notice — the client's, and the broker's (which then sends the will).
- :meth:`TcpProxy.heal` forwards again. A connection that lost bytes, lost one
  side, or was opened during the partition is reset: TCP never delivers a stream
  with a hole in it, and a peer that forgot the connection answers with a reset.
  A connection that was idle throughout carries on as if nothing happened.
- :meth:`TcpProxy.cut` resets every current connection at once (both sides get
  an RST), like a router reboot or a NAT table flush.

All forwarding runs on one asyncio loop in a background thread, and every
control call runs on that loop too: once ``partition()`` returns, no further
byte is forwarded. Example::

    with TcpProxy(broker.host, broker.port).start() as proxy:
        agent = start_agent(broker_port=proxy.port)
        proxy.partition()
        ...
        proxy.heal()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

CHUNK = 65536
CONTROL_TIMEOUT = 5.0
T = TypeVar("T")


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close abortively: SO_LINGER 0 makes the kernel send RST instead of FIN."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its upstream connection (None if opened while partitioned)."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter | None) -> None:
        self.client = client
        self.upstream = upstream
        # True once the stream has a hole or lost a side: it can never be healed.
        self.broken = upstream is None

    def other(self, writer: asyncio.StreamWriter) -> asyncio.StreamWriter | None:
        return self.upstream if writer is self.client else self.client

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)


class TcpProxy:
    """Listens on ``127.0.0.1:port`` (chosen at construction) and forwards to the target."""

    host = "127.0.0.1"

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._listener = socket.create_server((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._partitioned = False

    # --- control, from the test's thread -------------------------------------------

    def start(self) -> TcpProxy:
        """Start forwarding on a background thread; returns once connections are accepted."""
        if self._loop is not None:
            raise RuntimeError("TcpProxy already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"tcp-proxy-{self.port}")
        self._thread.start()
        self._run(self._serve())
        return self

    def stop(self) -> None:
        """Reset every connection, stop listening and end the thread. Idempotent."""
        loop, self._loop = self._loop, None
        if loop is None:
            self._listener.close()
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(CONTROL_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(CONTROL_TIMEOUT)
        loop.close()

    def partition(self) -> None:
        """Forward nothing, in either direction, on old and new connections, until :meth:`heal`."""
        self._call(self._set_partitioned)

    def heal(self) -> None:
        """Forward again; reset the connections the partition broke (see the module docstring)."""
        self._call(self._heal)

    def cut(self) -> None:
        """Reset every current connection at once; new connections work as before."""
        self._call(self._reset_all)

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    @property
    def connections(self) -> int:
        """Connections currently open through the proxy.

        A connection whose one side went away during a partition still counts
        until its other side goes too, or until :meth:`heal` resets it.
        """
        return self._call(lambda: len(self._links))

    def _call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the proxy's loop, between two forwarded chunks; its result."""
        async def call() -> T:
            return function()
        return self._run(call())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("TcpProxy is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_TIMEOUT)

    # --- on the loop -------------------------------------------------------------

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._listener)

    def _set_partitioned(self) -> None:
        self._partitioned = True

    def _heal(self) -> None:
        for link in [link for link in self._links if link.broken]:
            self._links.discard(link)
            link.reset()
        self._partitioned = False

    def _reset_all(self) -> None:
        for link in list(self._links):
            self._links.discard(link)
            link.reset()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=CONTROL_TIMEOUT)

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward_connection(client_reader, client_writer)
        finally:
            self._handlers.discard(task)

    async def _forward_connection(self, client_reader: asyncio.StreamReader,
                                  client_writer: asyncio.StreamWriter) -> None:
        upstream_reader: asyncio.StreamReader | None = None
        upstream_writer: asyncio.StreamWriter | None = None
        if not self._partitioned:   # during a partition the SYN would never arrive
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    self.target_host, self.target_port)
            except OSError:
                _reset(client_writer)   # the client sees the refusal the target gave us
                return
        link = _Link(client_writer, upstream_writer)
        self._links.add(link)
        pumps = [self._pump(link, client_reader, link.upstream)]
        if upstream_reader is not None:
            pumps.append(self._pump(link, upstream_reader, client_writer))
        try:
            await asyncio.gather(*pumps)
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter | None) -> None:
        """Copy one direction until its source ends, dropping what arrives while partitioned."""
        try:
            while data := await reader.read(CHUNK):
                if self._partitioned or link.broken or writer is None:
                    link.broken = True
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:   # ConnectionResetError and friends: this side is gone
            pass
        self._source_ended(link, writer)

    def _source_ended(self, link: _Link, destination: asyncio.StreamWriter | None) -> None:
        source = link.other(destination) if destination is not None else link.client
        if source is not None:
            source.close()
        if self._partitioned or link.broken:
            # Across a pulled cable the other side hears nothing; it stays open until
            # its own keepalive gives up, or until heal() resets it.
            link.broken = True
            return
        if destination is not None:
            destination.close()   # a normal close, passed on as FIN

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "partitioned" if self._partitioned else "forwarding"
        target = f"{self.target_host}:{self.target_port}"
        return f"TcpProxy({self.host}:{self.port} -> {target}, {state})"
