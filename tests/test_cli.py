"""The three commands as a person runs them: installed scripts in subprocesses."""

import json
import re
import subprocess

import pytest

from edge_agent.buffer import EdgeBuffer
from edge_agent.keys import generate_key_file, load_signer
from protocols.signing import public_key_pem
from tests.conftest import script
from tests.readings import readings


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("edge-agent", ["signs every read", "keys", "buffer", "run", "status"]),
        ("meterhub", ["verifies", "verify"]),
        ("meter-sim", ["Simulated utility meters", "model"]),
    ],
)
def test_help_explains_the_command(command, words, cli_env):
    result = subprocess.run([script(command), "--help"], env=cli_env, capture_output=True,
                            text=True, check=True)
    for word in words:
        assert word in result.stdout


@pytest.fixture
def gateway(tmp_path):
    """A configured gateway directory with 8 buffered reads, 3 of them acked."""
    signer = generate_key_file(tmp_path / "collector.key")
    (tmp_path / "edge-agent.toml").write_text('collector = "gw-0001"\n')
    with EdgeBuffer(tmp_path / "buffer.sqlite", collector="gw-0001", signer=signer) as buffer:
        buffer.append(readings(8))
        buffer.ack(3)
    return tmp_path


def run(args, cwd, env, check=True):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=check,
                          timeout=60)


def test_status_shows_depth(gateway, cli_env):
    result = run([script("edge-agent"), "status"], gateway, cli_env)
    assert re.search(r"unacked \(depth\)\s*│\s*5\s", result.stdout)
    assert re.search(r"last seq\s*│\s*8\s", result.stdout)
    assert re.search(r"acked through\s*│\s*3\s", result.stdout)


def test_buffer_verify(gateway, cli_env):
    result = run([script("edge-agent"), "buffer", "verify"], gateway, cli_env)
    assert "8 reads verified" in result.stdout


def test_export_then_hub_verify_and_tamper(gateway, cli_env):
    run([script("edge-agent"), "keys", "export-public", "--out", "gw.pub"], gateway, cli_env)
    run([script("edge-agent"), "buffer", "export", "--out", "batch.json", "--from-seq", "1"],
        gateway, cli_env)
    ok = run([script("meterhub"), "verify", "batch.json", "--public-key", "gw.pub"],
             gateway, cli_env)
    assert "verified" in ok.stdout and "1–8" in ok.stdout and "anchored" in ok.stdout

    batch = json.loads((gateway / "batch.json").read_text())
    original = batch["reads"][4]["b"]
    batch["reads"][4]["b"] = original.replace('"value":"101.004"', '"value":"101.005"')
    assert batch["reads"][4]["b"] != original
    (gateway / "tampered.json").write_text(json.dumps(batch))
    bad = run([script("meterhub"), "verify", "tampered.json", "--public-key", "gw.pub"],
              gateway, cli_env, check=False)
    assert bad.returncode == 1
    assert "rejected" in bad.stderr and "seq 5" in bad.stderr


def test_export_defaults_to_unacked_reads(gateway, cli_env):
    result = run([script("edge-agent"), "buffer", "export", "--out", "pending.json"],
                 gateway, cli_env)
    assert "seq 4–8" in result.stdout
    assert json.loads((gateway / "pending.json").read_text())["first_seq"] == 4
    key = load_signer(gateway / "collector.key")
    (gateway / "gw.pub").write_bytes(public_key_pem(key.public_key))
    unanchored = run([script("meterhub"), "verify", "pending.json", "--public-key", "gw.pub"],
                     gateway, cli_env)
    assert "checked from seq 4" in unanchored.stdout


def test_buffer_verify_reports_a_tampered_buffer(gateway, cli_env):
    import sqlite3

    conn = sqlite3.connect(gateway / "buffer.sqlite")
    conn.execute("UPDATE reads SET sig = zeroblob(64) WHERE seq = 6")
    conn.commit()
    conn.close()
    result = run([script("edge-agent"), "buffer", "verify"], gateway, cli_env, check=False)
    assert result.returncode == 1
    assert "SignatureError" in result.stderr and "seq 6" in result.stderr


def test_meter_sim_model_prints_registers(cli_env):
    result = run([script("meter-sim"), "model", "WTR-1", "--service", "water", "--days", "1"],
                 None, cli_env)
    assert "volume_m3" in result.stdout and "WTR-1" in result.stdout


def test_inspection_commands_never_create_a_buffer(tmp_path, cli_env):
    (tmp_path / "edge-agent.toml").write_text('collector = "gw-0001"\n')
    for command in (["status"], ["buffer", "verify"], ["buffer", "export", "--out", "x.json"]):
        result = run([script("edge-agent"), *command], tmp_path, cli_env, check=False)
        assert result.returncode == 1
        assert "no buffer at" in result.stderr
    assert not (tmp_path / "buffer.sqlite").exists()
