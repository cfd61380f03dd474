"""Broker settings (shared by edge and hub), the edge's [sync] section, and [sync] in its config."""

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from edge_agent.config import ConfigError, load_config
from edge_agent.sync_config import SyncSection
from protocols.batch import MAX_BATCH_READS
from protocols.broker_settings import BrokerCredentialError, BrokerSettings


def secret_file(path, text="s3cret-password\n", mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def self_signed(tmp_path, name="broker.test"):
    """A self-signed certificate and its key, as PEM files: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def paho_client():
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)


def assert_tls_configured(client):
    """paho refuses a second TLS setup: proof that apply() set one."""
    with pytest.raises(ValueError, match="already been configured"):
        client.tls_set_context(ssl.create_default_context())


# --- validation ---------------------------------------------------------------------------


def test_defaults_reach_a_local_plain_broker_without_credentials():
    settings = BrokerSettings()
    assert (settings.host, settings.effective_port, settings.tls) == ("127.0.0.1", 1883, False)
    assert settings.keepalive_s == 30
    assert settings.password() is None


@pytest.mark.parametrize(
    ("options", "port"),
    [({}, 1883), ({"tls": True}, 8883), ({"port": 1884}, 1884),
     ({"tls": True, "port": 443}, 443)],
)
def test_effective_port_follows_tls_unless_given(options, port):
    assert BrokerSettings(**options).effective_port == port


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"password_env": "X", "password_file": "p"}, "not both"),
        ({"tls": True, "cert_file": "c.pem"}, "go together"),
        ({"tls": True, "key_file": "c.key"}, "go together"),
        ({"ca_file": "ca.pem"}, "need tls"),
        ({"cert_file": "c.pem", "key_file": "c.key"}, "need tls"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"port": 65536}, "less than or equal to 65535"),
        ({"keepalive_s": 4}, "greater than or equal to 5"),
        ({"keepalive_s": 3601}, "less than or equal to 3600"),
        ({"passwd": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_reason(options, match):
    with pytest.raises(ValidationError, match=match):
        BrokerSettings(**options)


def test_settings_are_frozen():
    settings = BrokerSettings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.host = "elsewhere"


# --- the password ----------------------------------------------------------------------------


def test_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEST_BROKER_PASSWORD", "from-env")
    assert BrokerSettings(password_env="TEST_BROKER_PASSWORD").password() == "from-env"


def test_an_unset_password_variable_is_named(monkeypatch):
    monkeypatch.delenv("TEST_BROKER_PASSWORD", raising=False)
    with pytest.raises(BrokerCredentialError, match="TEST_BROKER_PASSWORD"):
        BrokerSettings(password_env="TEST_BROKER_PASSWORD").password()


def test_password_from_an_owner_only_file_without_its_newline(tmp_path):
    path = secret_file(tmp_path / "mqtt.password", "  s3cret \n")
    assert BrokerSettings(password_file=path).password() == "s3cret"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644])
def test_a_password_file_others_can_touch_is_refused_with_the_fix(tmp_path, mode):
    path = secret_file(tmp_path / "mqtt.password", mode=mode)
    with pytest.raises(BrokerCredentialError, match=f"mode {mode:o}.*chmod 600"):
        BrokerSettings(password_file=path).password()


def test_a_read_only_owner_file_is_accepted(tmp_path):
    path = secret_file(tmp_path / "mqtt.password", "pw", mode=0o400)
    assert BrokerSettings(password_file=path).password() == "pw"


def test_a_missing_password_file_is_a_credential_error_naming_it(tmp_path):
    path = tmp_path / "absent.password"
    with pytest.raises(BrokerCredentialError, match=r"absent\.password"):
        BrokerSettings(password_file=path).password()


def test_the_password_never_appears_in_the_settings_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_BROKER_PASSWORD", "hunter2-secret")
    settings = BrokerSettings(username="gw", password_env="TEST_BROKER_PASSWORD")
    assert settings.password() == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings) + str(settings)


# --- resolved paths ---------------------------------------------------------------------------


def test_resolved_makes_relative_files_relative_to_the_base(tmp_path):
    settings = BrokerSettings(tls=True, password_file="mqtt.password", ca_file="tls/ca.pem",
                              cert_file="tls/gw.pem", key_file="tls/gw.key")
    resolved = settings.resolved(tmp_path)
    assert resolved.password_file == tmp_path / "mqtt.password"
    assert resolved.ca_file == tmp_path / "tls/ca.pem"
    assert (resolved.cert_file, resolved.key_file) == (tmp_path / "tls/gw.pem",
                                                       tmp_path / "tls/gw.key")
    assert settings.password_file == Path("mqtt.password")


def test_resolved_keeps_absolute_and_absent_files(tmp_path):
    settings = BrokerSettings(password_file="/etc/meterhub/mqtt.password")
    resolved = settings.resolved(tmp_path)
    assert resolved.password_file == Path("/etc/meterhub/mqtt.password")
    assert resolved.ca_file is None and resolved.cert_file is None


# --- apply to a real paho client --------------------------------------------------------------


def test_apply_sets_username_and_password_from_the_file(tmp_path):
    client = paho_client()
    settings = BrokerSettings(username="meterhub",
                              password_file=secret_file(tmp_path / "pw", "hub-pw\n"))
    settings.apply(client)
    assert (client.username, client.password) == ("meterhub", "hub-pw")


def test_apply_falls_back_to_the_default_username(tmp_path):
    client = paho_client()
    BrokerSettings(password_file=secret_file(tmp_path / "pw", "gw-pw")).apply(
        client, default_username="gw-0001")
    assert (client.username, client.password) == ("gw-0001", "gw-pw")


def test_an_explicit_username_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("TEST_BROKER_PASSWORD", "env-pw")
    client = paho_client()
    BrokerSettings(username="other", password_env="TEST_BROKER_PASSWORD").apply(
        client, default_username="gw-0001")
    assert (client.username, client.password) == ("other", "env-pw")


def test_apply_without_a_username_sets_no_credentials():
    client = paho_client()
    BrokerSettings().apply(client)
    assert client.username is None and client.password is None


def test_apply_with_a_username_but_no_password_sends_the_name_only():
    client = paho_client()
    BrokerSettings(username="gw-0001").apply(client)
    assert (client.username, client.password) == ("gw-0001", None)


def test_apply_refuses_a_readable_password_file_before_connecting(tmp_path):
    client = paho_client()
    settings = BrokerSettings(username="gw", password_file=secret_file(tmp_path / "pw",
                                                                        mode=0o644))
    with pytest.raises(BrokerCredentialError, match="readable by others"):
        settings.apply(client)
    assert client.username is None


def test_apply_without_tls_leaves_the_client_plain():
    client = paho_client()
    BrokerSettings().apply(client)
    client.tls_set_context(ssl.create_default_context())  # still possible: none was set


def test_apply_sets_a_tls_context_with_the_system_cas():
    client = paho_client()
    BrokerSettings(tls=True).apply(client)
    assert_tls_configured(client)


def test_apply_sets_a_tls_context_with_the_given_ca_and_client_certificate(tmp_path):
    ca, _ = self_signed(tmp_path, "ca.test")
    cert, key = self_signed(tmp_path, "gw.test")
    client = paho_client()
    BrokerSettings(tls=True, ca_file=ca, cert_file=cert, key_file=key).apply(client)
    assert_tls_configured(client)


def test_apply_with_a_key_that_does_not_match_the_certificate_fails(tmp_path):
    cert, _ = self_signed(tmp_path, "gw.test")
    _, other_key = self_signed(tmp_path, "other.test")
    with pytest.raises(ssl.SSLError):
        BrokerSettings(tls=True, cert_file=cert, key_file=other_key).apply(paho_client())


# --- the [sync] section -----------------------------------------------------------------------


def test_sync_defaults():
    sync = SyncSection()
    assert (sync.batch_size, sync.linger_s, sync.window) == (500, 2.0, 4)
    assert (sync.ack_timeout_s, sync.connect_timeout_s) == (30.0, 15.0)
    assert (sync.backoff_min_s, sync.backoff_max_s, sync.status_interval_s) == (1.0, 120.0, 60.0)
    assert sync.effective_port == 1883


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": MAX_BATCH_READS + 1}, "batch_size"),
        ({"window": 0}, "window"),
        ({"window": 1001}, "window"),
        ({"linger_s": -0.1}, "linger_s"),
        ({"ack_timeout_s": 0}, "ack_timeout_s"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"backoff_min_s": 0}, "backoff_min_s"),
        ({"status_interval_s": 0}, "status_interval_s"),
        ({"backoff_min_s": 10, "backoff_max_s": 5}, "backoff_max_s must not be below"),
        ({"password_env": "X", "password_file": "p"}, "not both"),
        ({"ca_file": "ca.pem"}, "need tls"),
        ({"batchsize": 10}, "batchsize"),
    ],
)
def test_sync_section_refuses_bad_values(options, match):
    with pytest.raises(ValidationError, match=match):
        SyncSection(**options)


def test_sync_section_accepts_its_bounds():
    sync = SyncSection(batch_size=MAX_BATCH_READS, window=1000, linger_s=0,
                       backoff_min_s=5, backoff_max_s=5)
    assert (sync.batch_size, sync.window, sync.linger_s) == (MAX_BATCH_READS, 1000, 0)


def test_sync_section_is_a_broker_settings():
    assert isinstance(SyncSection(tls=True), BrokerSettings)
    assert SyncSection(tls=True).effective_port == 8883


# --- [sync] in edge-agent.toml ----------------------------------------------------------------


def write_config(directory, sync_text):
    path = directory / "edge-agent.toml"
    path.write_text(f'collector = "gw-0001"\n\n[sync]\n{sync_text}')
    return path


def test_a_config_without_sync_only_buffers(tmp_path):
    path = tmp_path / "edge-agent.toml"
    path.write_text('collector = "gw-0001"\n')
    assert load_config(path).sync is None


def test_sync_files_are_relative_to_the_config_file(tmp_path, monkeypatch):
    conf = tmp_path / "etc"
    conf.mkdir()
    write_config(conf, 'host = "mqtt.example"\ntls = true\nca_file = "ca.pem"\n'
                              'password_file = "secrets/mqtt.password"\nbatch_size = 50\n')
    monkeypatch.chdir(tmp_path)
    sync = load_config(Path("etc/edge-agent.toml")).sync
    assert sync is not None
    assert sync.ca_file == conf.resolve() / "ca.pem"
    assert sync.password_file == conf.resolve() / "secrets/mqtt.password"
    assert (sync.host, sync.effective_port, sync.batch_size) == ("mqtt.example", 8883, 50)


def test_sync_password_file_from_the_config_is_read(tmp_path):
    secret_file(tmp_path / "mqtt.password", "gw-secret\n")
    sync = load_config(write_config(tmp_path, 'password_file = "mqtt.password"\n')).sync
    assert sync is not None
    client = paho_client()
    sync.apply(client, default_username="gw-0001")
    assert (client.username, client.password) == ("gw-0001", "gw-secret")


def test_sync_absolute_files_stay_absolute(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "mqtt.password"
    sync = load_config(write_config(tmp_path, f'password_file = "{elsewhere}"\n')).sync
    assert sync is not None and sync.password_file == elsewhere


def test_sync_problems_are_named_by_key_path(tmp_path):
    path = write_config(tmp_path, "batch_size = 0\nwindow = 0\nhots = \"x\"\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = sorted(key for key, _ in info.value.problems)
    assert keys == ["sync.batch_size", "sync.hots", "sync.window"]
    assert "sync.batch_size:" in str(info.value) and str(path) in str(info.value)


def test_a_cross_field_sync_problem_is_named_by_its_section(tmp_path):
    path = write_config(tmp_path, 'password_env = "X"\npassword_file = "p"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [(key, why)] = info.value.problems
    assert key == "sync" and "not both" in why


def test_a_sync_value_of_the_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"sync\.port"):
        load_config(write_config(tmp_path, 'port = "mqtt"\n'))
