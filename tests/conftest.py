import os
import shutil
import sys
from pathlib import Path

import pytest

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
