import re
import stat
import subprocess

import pytest

from edge_agent.keys import (
    InsecureKeyFileError,
    KeyFileError,
    generate_key_file,
    key_file_info,
    load_signer,
)
from tests.conftest import script


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_key_is_owner_only_and_loads(tmp_path):
    path = tmp_path / "keys" / "collector.key"
    signer = generate_key_file(path)
    assert mode(path) == 0o600
    assert load_signer(path).key_id == signer.key_id
    assert b"PRIVATE KEY" in path.read_bytes()
    assert not list(path.parent.glob(".*tmp"))  # no temporary file left behind


def test_key_is_not_overwritten_without_force(tmp_path):
    path = tmp_path / "collector.key"
    first = generate_key_file(path)
    with pytest.raises(KeyFileError, match="already exists"):
        generate_key_file(path)
    assert load_signer(path).key_id == first.key_id
    second = generate_key_file(path, overwrite=True)
    assert load_signer(path).key_id == second.key_id != first.key_id
    assert mode(path) == 0o600


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660])
def test_a_key_others_can_read_is_refused(tmp_path, loose):
    path = tmp_path / "collector.key"
    generate_key_file(path)
    path.chmod(loose)
    with pytest.raises(InsecureKeyFileError, match="chmod 600"):
        load_signer(path)


def test_encrypted_key_needs_its_passphrase(tmp_path):
    path = tmp_path / "collector.key"
    signer = generate_key_file(path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert load_signer(path, passphrase=b"correct horse").key_id == signer.key_id
    with pytest.raises(KeyFileError, match="encrypted"):
        load_signer(path)
    with pytest.raises(KeyFileError, match="passphrase is wrong"):
        load_signer(path, passphrase=b"wrong")
    info = key_file_info(path, passphrase=b"correct horse")
    assert info.encrypted and info.key_id == signer.key_id


def test_missing_key_says_how_to_make_one(tmp_path):
    with pytest.raises(KeyFileError, match="keys generate"):
        load_signer(tmp_path / "nope.key")


def test_cli_generate_writes_a_0600_key(tmp_path, cli_env):
    result = subprocess.run([script("edge-agent"), "keys", "generate"], cwd=tmp_path,
                            env=cli_env, capture_output=True, text=True, check=True)
    key = tmp_path / "collector.key"
    assert mode(key) == 0o600
    key_id = load_signer(key).key_id
    assert key_id in result.stdout


def test_cli_encrypts_with_passphrase_from_environment(tmp_path, cli_env):
    env = {**cli_env, "GW_PASS": "s3cret-pass"}
    subprocess.run([script("edge-agent"), "keys", "generate", "--key", "k.pem",
                    "--passphrase-env", "GW_PASS"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    assert b"ENCRYPTED" in (tmp_path / "k.pem").read_bytes()
    shown = subprocess.run([script("edge-agent"), "keys", "show", "--key", "k.pem",
                            "--passphrase-env", "GW_PASS"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)
    assert re.search(r"encrypted\s+yes", shown.stdout)
    assert "s3cret-pass" not in shown.stdout + shown.stderr


def test_cli_export_public_prints_pem_matching_the_key(tmp_path, cli_env):
    signer = generate_key_file(tmp_path / "collector.key")
    result = subprocess.run([script("edge-agent"), "keys", "export-public"], cwd=tmp_path,
                            env=cli_env, capture_output=True, text=True, check=True)
    from protocols.signing import key_id_for, load_public_key

    assert result.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id_for(load_public_key(result.stdout.encode())) == signer.key_id
    assert "PRIVATE" not in result.stdout


def test_agent_refuses_to_start_with_a_world_readable_key(tmp_path, cli_env):
    generate_key_file(tmp_path / "collector.key")
    (tmp_path / "collector.key").chmod(0o644)
    (tmp_path / "edge-agent.toml").write_text('collector = "gw-0001"\n')
    result = subprocess.run([script("edge-agent"), "run"], cwd=tmp_path, env=cli_env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "0644" in result.stderr and "refusing" in result.stderr
    assert not (tmp_path / "buffer.sqlite").exists()  # nothing was started


def test_cli_keys_follow_the_configs_key_section(tmp_path, cli_env):
    """``-c`` uses the key the agent signs with: [key] path (relative to the config) and
    passphrase_env; --key still wins."""
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "edge-agent.toml"
    config.write_text('collector = "gw-0001"\n\n[key]\npath = "keys/gw.key"\n'
                      'passphrase_env = "GW_PASS"\n')
    env = {**cli_env, "GW_PASS": "s3cret-pass"}
    made = subprocess.run([script("edge-agent"), "keys", "generate", "-c", str(config)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    key = tmp_path / "etc" / "keys" / "gw.key"
    assert mode(key) == 0o600 and b"ENCRYPTED" in key.read_bytes()
    assert not (tmp_path / "collector.key").exists()
    key_id = load_signer(key, passphrase=b"s3cret-pass").key_id
    assert key_id in made.stdout
    shown = subprocess.run([script("edge-agent"), "keys", "show", "-c", str(config)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert key_id in shown.stdout and str(key) in shown.stdout.replace("\n", "")
    other = generate_key_file(tmp_path / "other.key")
    shown = subprocess.run([script("edge-agent"), "keys", "show", "-c", str(config),
                            "--key", "other.key", "--passphrase-env", "NONE_SET"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert other.key_id in shown.stdout


def test_cli_keys_name_a_broken_config(tmp_path, cli_env):
    config = tmp_path / "edge-agent.toml"
    config.write_text('collector = "gw-0001"\n\n[key]\npaht = "k.pem"\n')
    result = subprocess.run([script("edge-agent"), "keys", "show", "-c", str(config)],
                            cwd=tmp_path, env=cli_env, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "key.paht" in result.stderr
