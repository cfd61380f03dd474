import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """The installed console script ``name`` of the environment running the tests."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed; run `make test`, which installs the project"
    return found


@pytest.fixture
def cli_env(tmp_path):
    """Environment for CLI subprocesses: no inherited meterhub settings, no colour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    return env


class HandClock:
    """Wall time a test moves by hand: a simulated meter's clock that stands still until told."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def start_meter_sim_fleet(work: Path, fleet: dict, output: Path, *options: str,
                          timeout: float = 30) -> subprocess.Popen:
    """``meter-sim fleet`` on ``fleet``, returned once it has written ``output``."""
    (work / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    sim = subprocess.Popen([script("meter-sim"), "fleet", "-c", work / "fleet.yaml", *options],
                           stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not (output.exists() and output.stat().st_size):
        if sim.poll() is not None or time.monotonic() > deadline:
            sim.kill()
            pytest.fail(f"meter-sim fleet did not write {output.name} (exit {sim.poll()})")
        time.sleep(0.1)
    return sim


# Fixtures shared across modules: hub stores on SQLite and PostgreSQL, private brokers.
from tests.api_fixtures import hub_api  # noqa: E402, F401
from tests.hub_fixtures import store, store_url  # noqa: E402, F401
from tests.mqtt_fixtures import mosquitto, mosquitto_factory  # noqa: E402, F401
