"""The partition proxy on real sockets: it forwards, drops while partitioned, heals and cuts.

The far end is a real echo server that also records, per connection, whether it
ended with a clean close or a reset, so each test can tell what each side saw.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.tcp_proxy import TcpProxy

TIMEOUT = 3.0          # for what must happen
NEGATIVE_WAIT = 0.5    # for what must not


@dataclass
class ServerSide:
    """One connection as the echo server saw it."""

    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    ended: threading.Event = field(default_factory=threading.Event)
    how: str = ""   # "eof" or "reset", once ended


class EchoServer:
    """Echoes every byte back on a background thread per connection; can also push bytes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)   # so the accept loop notices stop()
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[ServerSide] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(TIMEOUT)
        self._listener.close()
        for side in self.connections:
            side.sock.close()

    def push(self, data: bytes) -> None:
        """Send ``data`` to every open connection, unprompted (the broker→client direction)."""
        for side in self.connections:
            if not side.ended.is_set():
                side.sock.sendall(data)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            side = ServerSide(sock)
            self.connections.append(side)
            threading.Thread(target=self._echo, args=(side,), daemon=True).start()

    @staticmethod
    def _echo(side: ServerSide) -> None:
        try:
            while data := side.sock.recv(65536):
                side.received += data
                side.sock.sendall(data)
            side.how = "eof"
        except ConnectionResetError:
            side.how = "reset"
        except OSError:
            side.how = "closed"
        side.ended.set()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.stop()


@pytest.fixture
def proxy(echo) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port).start() as running:
        yield running


@pytest.fixture
def dial(proxy) -> Iterator[Callable[[], socket.socket]]:
    """``dial()``: a client socket connected through the proxy, closed at teardown."""
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        opened.append(socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT))
        return opened[-1]

    yield connect
    for sock in opened:
        sock.close()


def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll ``condition`` until true or ``timeout``: for state with no event to wait on."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def assert_echoes(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    assert recv_exactly(sock, len(data)) == data


def assert_silent(sock: socket.socket) -> None:
    """Nothing arrives within the negative wait, and the connection is still open."""
    sock.settimeout(NEGATIVE_WAIT)
    try:
        with pytest.raises(TimeoutError):
            sock.recv(1)
    finally:
        sock.settimeout(TIMEOUT)


def assert_reset(sock: socket.socket) -> None:
    """The connection was reset (RST), not closed cleanly (FIN)."""
    with pytest.raises(ConnectionResetError):
        sock.recv(1)


def server_side(echo: EchoServer, index: int) -> ServerSide:
    assert eventually(lambda: len(echo.connections) > index), "the echo server saw no connection"
    return echo.connections[index]


def test_forwards_both_ways_and_counts_open_connections(proxy, echo, dial):
    first, second = dial(), dial()
    assert_echoes(first, b"hello")
    assert_echoes(second, b"x" * 200_000)   # more than one chunk
    assert proxy.connections == 2
    first.close()
    assert server_side(echo, 0).ended.wait(TIMEOUT)
    assert server_side(echo, 0).how == "eof"   # a clean close is passed on as a clean close
    assert eventually(lambda: proxy.connections == 1)


def test_partition_drops_bytes_in_both_directions_but_keeps_connections_open(proxy, echo,
                                                                             dial):
    client = dial()
    assert_echoes(client, b"before")
    server = server_side(echo, 0)
    proxy.partition()
    client.sendall(b"client to server")
    echo.push(b"server to client")
    assert_silent(client)
    assert bytes(server.received) == b"before"
    assert not server.ended.is_set()
    assert proxy.connections == 1


def test_partition_accepts_new_connections_but_they_reach_nothing(proxy, echo, dial):
    assert_echoes(dial(), b"control")
    proxy.partition()
    client = dial()
    client.sendall(b"hello?")
    assert_silent(client)
    assert len(echo.connections) == 1   # the target never saw the second connection
    assert proxy.connections == 2


def test_a_close_during_a_partition_is_not_passed_on_until_heal_resets_the_other_side(
        proxy, echo, dial):
    client = dial()
    assert_echoes(client, b"hello")
    server = server_side(echo, 0)
    proxy.partition()
    client.close()
    assert not server.ended.wait(NEGATIVE_WAIT)   # only a keepalive could notice now
    proxy.heal()
    assert server.ended.wait(TIMEOUT)
    assert server.how == "reset"


def test_heal_resets_connections_that_lost_bytes_and_new_ones_work(proxy, echo, dial):
    survivor_of_loss = dial()
    assert_echoes(survivor_of_loss, b"before")
    proxy.partition()
    survivor_of_loss.sendall(b"dropped")
    opened_during = dial()
    assert_silent(survivor_of_loss)
    proxy.heal()
    assert_reset(survivor_of_loss)   # its stream has a hole: it can never be healed
    assert_reset(opened_during)      # its connection never reached the target
    assert server_side(echo, 0).ended.wait(TIMEOUT)
    assert_echoes(dial(), b"after")
    assert proxy.connections == 1


def test_an_idle_connection_carries_on_across_a_partition(proxy, dial):
    client = dial()
    assert_echoes(client, b"before")
    proxy.partition()
    assert_silent(client)
    proxy.heal()
    assert_echoes(client, b"after")


def test_cut_resets_every_connection_at_once_and_new_ones_work(proxy, echo, dial):
    clients = [dial(), dial()]
    for client in clients:
        assert_echoes(client, b"hello")
    proxy.cut()
    assert proxy.connections == 0
    for client in clients:
        assert_reset(client)
    for index in range(2):
        assert server_side(echo, index).ended.wait(TIMEOUT)
        assert server_side(echo, index).how == "reset"
    assert_echoes(dial(), b"after the cut")


def test_a_target_that_refuses_resets_the_client():
    # Bound and never listening: connections are refused, and no other process (a parallel
    # test worker) can take the port meanwhile, as it could a port merely closed.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        refusing_port = placeholder.getsockname()[1]
        with TcpProxy("127.0.0.1", refusing_port).start() as proxy, \
                socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as client:
            assert_reset(client)
            assert proxy.connections == 0


def test_stop_closes_the_listener_and_every_connection(echo):
    proxy = TcpProxy("127.0.0.1", echo.port).start()
    client = socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT)
    with contextlib.closing(client):
        assert_echoes(client, b"hello")
        proxy.stop()
        assert_reset(client)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT)
    proxy.stop()   # idempotent
