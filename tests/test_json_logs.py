"""``--log-format json``: one JSON object per line on stderr, from every command."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import pytest
from rich.console import Console

from protocols.logs import JsonFormatter, LogFormat, announce, configure_logging
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


def test_a_service_start_line_is_a_json_record_in_json_mode(tmp_path, cli_env):
    """``meterhub serve`` says where it listens; in JSON mode that line is JSON too."""
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    subprocess.run([script("meterhub"), "--db", db, "db", "upgrade"], env=cli_env,
                   capture_output=True, check=True, timeout=60)
    serving = subprocess.Popen(
        [script("meterhub"), "--log-format", "json", "--db", db, "serve",
         "--broker-port", "1", "--no-verifier"],
        env=cli_env, stderr=subprocess.PIPE, text=True)
    try:
        first = serving.stderr.readline()
    finally:
        serving.terminate()
        serving.wait(30)
    entry = json.loads(first)
    assert (entry["level"], entry["logger"]) == ("info", "meterhub")
    assert entry["message"].startswith("meterhub serve: store ")


def journal_stderr(monkeypatch, tmp_path):
    """Make this process's stderr a file that $JOURNAL_STREAM names, as systemd does."""
    import os

    path = tmp_path / "journal"
    stream = path.open("w")
    monkeypatch.setattr(sys, "stderr", stream)
    stat = os.fstat(stream.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    return path, stream


@pytest.mark.parametrize("fmt", [LogFormat.TEXT, LogFormat.JSON])
def test_under_systemd_every_line_carries_its_priority(monkeypatch, tmp_path, root_logger, fmt):
    path, stream = journal_stderr(monkeypatch, tmp_path)
    configure_logging("info", console=Console(file=stream), fmt=fmt)
    logging.getLogger("hub.ingest").info("stored 3 reads")
    logging.getLogger("hub.ingest").warning("refused seq 41")
    try:
        raise ValueError("the store went away")
    except ValueError:
        logging.getLogger("hub.ingest").exception("ingest failed")
    stream.flush()
    lines = path.read_text().splitlines()
    assert lines[0].startswith("<6>") and "stored 3 reads" in lines[0]
    assert lines[1].startswith("<4>") and "refused seq 41" in lines[1]
    assert lines[2].startswith("<3>") and "ingest failed" in lines[2]
    assert all(line.startswith("<3>") for line in lines[2:])  # the traceback's lines too
    if fmt is LogFormat.JSON:
        assert json.loads(lines[1][3:])["message"] == "refused seq 41"


def test_without_the_journal_there_is_no_prefix(monkeypatch, tmp_path, root_logger):
    path, stream = journal_stderr(monkeypatch, tmp_path)
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # some other stream: the journal is elsewhere
    configure_logging("info", console=Console(file=stream))
    logging.getLogger("hub").warning("refused seq 41")
    stream.flush()
    assert path.read_text().split(" ", 1)[1].startswith("WARNING hub: refused seq 41")


def test_announce_passes_the_level_and_prints_at_a_terminal(monkeypatch, tmp_path, root_logger):
    path, stream = journal_stderr(monkeypatch, tmp_path)
    configure_logging("error", console=Console(file=stream), fmt=LogFormat.JSON)
    announce(Console(file=stream), "meterhub serve: store sqlite:///hub.sqlite")
    stream.flush()
    [line] = path.read_text().splitlines()
    assert line.startswith("<6>") and json.loads(line[3:])["level"] == "info"
    terminal = Console(file=(tmp_path / "tty").open("w"), force_terminal=True)
    configure_logging("error", console=terminal, fmt=LogFormat.TEXT)
    announce(terminal, "edge-agent gw-1 running")
    terminal.file.flush()
    assert "edge-agent gw-1 running" in (tmp_path / "tty").read_text()
