"""``--log-format json``: one JSON object per line on stderr, from every command."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import pytest

from protocols.logs import JsonFormatter, LogFormat, configure_logging
from tests.conftest import script

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def json_lines(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line, or this fails


def test_meterhub_logs_json_lines_with_the_option(tmp_path, cli_env):
    result = subprocess.run(
        [script("meterhub"), "--log-format", "json", "--db",
         f"sqlite:///{tmp_path / 'never-upgraded.sqlite'}", "collectors", "list"],
        env=cli_env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    [entry] = json_lines(result.stderr)
    assert (entry["level"], entry["logger"]) == ("error", "hub")
    assert "db upgrade" in entry["message"]
    assert TS.match(entry["ts"])


def test_edge_agent_follows_the_environment_variable(tmp_path, cli_env):
    result = subprocess.run(
        [script("edge-agent"), "status", "-c", str(tmp_path / "missing.toml")],
        env={**cli_env, "METERHUB_LOG_FORMAT": "json"}, capture_output=True, text=True,
        timeout=60, check=False)
    assert result.returncode == 2
    [entry] = json_lines(result.stderr)
    assert entry["level"] == "error" and "no such file" in entry["message"]
    assert "\n" in entry["message"]  # a multi-line message stays one line of JSON


def record(message: str = "stored %d reads", exc_info=None, extra=None) -> logging.LogRecord:
    return logging.getLogger("hub.ingest").makeRecord(
        "hub.ingest", logging.WARNING, __file__, 1, message, (3,) if "%d" in message else (),
        exc_info, extra=extra)


def test_extra_fields_become_fields_and_a_traceback_is_text():
    formatter = JsonFormatter()
    plain = json.loads(formatter.format(record(extra={"collector": "gw-1", "seq": 41})))
    assert plain["message"] == "stored 3 reads"
    assert (plain["level"], plain["logger"]) == ("warning", "hub.ingest")
    assert (plain["collector"], plain["seq"]) == ("gw-1", 41)
    assert TS.match(plain["ts"]) and "exc_info" not in plain
    try:
        raise ValueError("the store went away")
    except ValueError:
        failed = record("ingest failed", exc_info=sys.exc_info())
    entry = json.loads(formatter.format(failed))
    assert entry["message"] == "ingest failed"
    assert entry["exc_info"].startswith("Traceback")
    assert "ValueError: the store went away" in entry["exc_info"]


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_format_defaults_to_the_environment_then_text(monkeypatch, root_logger):
    monkeypatch.setenv("METERHUB_LOG_FORMAT", "json")
    configure_logging("info")
    assert isinstance(root_logger.handlers[0].formatter, JsonFormatter)
    configure_logging("info", fmt=LogFormat.TEXT)
    assert not isinstance(root_logger.handlers[0].formatter, JsonFormatter)
    monkeypatch.delenv("METERHUB_LOG_FORMAT")
    configure_logging("info")
    assert not isinstance(root_logger.handlers[0].formatter, JsonFormatter)
