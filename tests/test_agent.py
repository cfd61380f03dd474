import logging
import signal
import sqlite3
import subprocess
import time

import pytest

from edge_agent.agent import Agent
from edge_agent.buffer import BufferFull
from edge_agent.config import load_config
from edge_agent.keys import generate_key_file
from protocols.errors import ChainError, MalformedReadError, SignatureError
from tests.conftest import script
from tests.readings import readings


@pytest.fixture
def gateway(tmp_path):
    generate_key_file(tmp_path / "collector.key")
    (tmp_path / "edge-agent.toml").write_text(
        'collector = "gw-0001"\n[buffer]\nbudget_mb = 0.02\nmin_free_mb = 0\n'
        '[agent]\nhousekeeping_interval_s = 0.2\n'
    )
    return tmp_path


def test_run_starts_and_stops_cleanly_on_sigterm(gateway, cli_env):
    agent = subprocess.Popen([script("edge-agent"), "--log-level", "info", "run"], cwd=gateway,
                             env=cli_env, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    agent.send_signal(signal.SIGTERM)
    _, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 0
    assert "agent gw-0001 started" in stderr and "stopping" in stderr
    assert (gateway / "buffer.sqlite").exists()


@pytest.mark.parametrize("problem, said", [
    ("missing", "mqtt.password: No such file"),
    ("readable", "is readable by others"),
])
def test_run_refuses_to_start_without_a_usable_broker_password(gateway, cli_env, problem, said):
    """Not a gateway that polls forever and never syncs: it exits 2 and systemd says why."""
    with (gateway / "edge-agent.toml").open("a") as config:
        config.write('[sync]\nport = 1\npassword_file = "mqtt.password"\n')
    if problem == "readable":
        (gateway / "mqtt.password").write_text("secret\n")
        (gateway / "mqtt.password").chmod(0o644)
    agent = subprocess.run([script("edge-agent"), "run"], cwd=gateway, env=cli_env,
                           capture_output=True, text=True, timeout=30, check=False)
    assert agent.returncode == 2
    assert said in agent.stderr
    assert not (gateway / "buffer.sqlite").exists()  # refused before anything was opened


def test_housekeeping_raises_the_alarm_near_the_budget(gateway, caplog):
    agent = Agent.start(load_config(gateway / "edge-agent.toml"))
    try:
        with pytest.raises(BufferFull):
            for _ in range(100):
                agent.buffer.append(readings(3))
        with caplog.at_level(logging.INFO):
            agent.housekeeping()
        assert any("ALARM buffer at" in r.message for r in caplog.records)
    finally:
        agent.close()


@pytest.mark.parametrize(
    ("alteration", "error"),
    [
        ("UPDATE reads SET data = CAST(data || ' ' AS BLOB) WHERE seq = 2", ChainError),
        ("UPDATE reads SET data = data || ' ' WHERE seq = 2", MalformedReadError),  # now text
        ("UPDATE reads SET sig = zeroblob(64) WHERE seq = 2", SignatureError),
    ],
)
def test_start_refuses_a_buffer_altered_behind_its_back(gateway, alteration, error):
    agent = Agent.start(load_config(gateway / "edge-agent.toml"))
    agent.buffer.append(readings(2))
    agent.close()
    conn = sqlite3.connect(gateway / "buffer.sqlite")
    conn.execute(alteration)
    conn.commit()
    conn.close()
    with pytest.raises(error):
        Agent.start(load_config(gateway / "edge-agent.toml"))
