"""pytest fixtures for MQTT tests: private Mosquitto brokers that are always cleaned up.

``mosquitto`` is one anonymous broker for the whole session — cheap, for tests
that only publish and subscribe. A test that stops, kills or restarts a broker,
or needs passwords and an ACL, takes ``mosquitto_factory`` instead and gets its
own broker, so it cannot disturb the shared one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulators.private_broker import Mosquitto

MosquittoFactory = Callable[..., Mosquitto]


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A running anonymous broker shared by the session; do not stop or restart it."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """Start brokers of this test's own: ``mosquitto_factory(password_file=…, acl_file=…)``.

    Each call returns a running broker in a fresh directory under ``tmp_path``;
    every broker started is stopped at teardown, even if the test failed.
    """
    started: list[Mosquitto] = []

    def start(password_file: Path | None = None, acl_file: Path | None = None,
              max_inflight: int = 0) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto-{len(started)}",
                           password_file=password_file, acl_file=acl_file,
                           max_inflight=max_inflight)
        started.append(broker)
        return broker.start()

    yield start
    for broker in reversed(started):
        broker.stop()
