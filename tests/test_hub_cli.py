"""``meterhub`` as the hub operator runs it: the installed script against a SQLite store."""

import base64
import re
import sqlite3
import stat
import subprocess

import pytest

from hub.broker_config import mosquitto_password_hash
from hub.ingest import Ingestor
from hub.store import Store
from hub.store.collectors import add_collector, find_collector, revoke_collector
from hub.store.migrate import head_revision
from protocols.batch import encode_batch
from protocols.chain import GENESIS_TIP, sign_and_chain
from protocols.mqtt_contract import reads_topic
from protocols.signing import Signer, public_key_pem
from tests.conftest import script
from tests.readings import readings


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'hub.sqlite'}"


@pytest.fixture
def hub(tmp_path, url, cli_env):
    """Run ``meterhub --db URL …`` in ``tmp_path``; returns the completed process."""

    def run(*args, check=True, db=True):
        command = [script("meterhub"), *(["--db", url] if db else []), *args]
        result = subprocess.run(command, cwd=tmp_path, env=cli_env, capture_output=True,
                                text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    return run


def public_key_file(path, signer=None):
    signer = signer or Signer.generate()
    path.write_bytes(public_key_pem(signer.public_key))
    return signer


def enroll(url, *collectors, passwords=None):
    """Enrol collectors through the library (upgrading the store); returns their signers."""
    signers = {collector: Signer.generate() for collector in collectors}
    with Store.open(url, upgrade_schema=True) as store, store.begin() as conn:
        for collector, signer in signers.items():
            password = (passwords or {}).get(collector)
            add_collector(conn, collector, signer.public_key, broker_password_hash=(
                mosquitto_password_hash(password) if password else None))
    return signers


def store_reads(url, collector, signer, count):
    sealed, _ = sign_and_chain(readings(count), signer=signer, collector=collector,
                               after=GENESIS_TIP)
    with Store.open(url) as store:
        outcome = Ingestor(store).ingest(reads_topic(collector), encode_batch(collector, sealed))
    assert outcome.stored == count


def stored_password_hash(url, collector):
    with Store.open(url) as store, store.connect() as conn:
        return find_collector(conn, collector).broker_password_hash


def hash_matches(password, encoded):
    """Whether ``encoded`` (``$7$iterations$salt$key``) is the Mosquitto hash of ``password``."""
    _, kind, iterations, salt, _ = encoded.split("$")
    assert kind == "7"
    return mosquitto_password_hash(password, salt=base64.b64decode(salt),
                                   iterations=int(iterations)) == encoded


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def row_of(table_text, collector):
    [line] = [line for line in table_text.splitlines() if f" {collector} " in line]
    return line


# --- the schema -------------------------------------------------------------------------------


def test_db_status_exits_1_until_db_upgrade_makes_the_schema_current(hub):
    before = hub("db", "status", check=False)
    assert before.returncode == 1
    assert "schema (none)" in before.stdout

    upgraded = hub("db", "upgrade")
    assert f"(empty) → {head_revision()}" in upgraded.stdout

    after = hub("db", "status")
    assert f"schema {head_revision()}; this hub's newest is {head_revision()}" in after.stdout


def test_db_upgrade_of_a_current_store_changes_nothing(hub, url):
    enroll(url)
    result = hub("db", "upgrade")
    assert f"schema {head_revision()} is current" in result.stdout


@pytest.mark.parametrize("command", [["collectors", "list"], ["reads", "status"]])
def test_a_store_never_upgraded_exits_2_saying_to_upgrade(hub, command):
    result = hub(*command, check=False)
    assert result.returncode == 2
    assert "no meterhub schema; run `meterhub db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_status_with_an_unsupported_url_exits_2_with_one_line(hub):
    result = hub("--db", "mysql://hub@localhost/meterhub", "db", "status", check=False, db=False)
    assert result.returncode == 2
    assert "unsupported database" in result.stderr and "Traceback" not in result.stderr


# --- collectors -------------------------------------------------------------------------------


def test_add_then_list_shows_the_active_collector_with_its_key(hub, tmp_path, url, cli_env):
    hub("db", "upgrade")
    signer = public_key_file(tmp_path / "gw.pub")
    added = hub("collectors", "add", "--id", "gw-0001", "--public-key", "gw.pub")
    assert f"enrolled gw-0001 with key {signer.key_id}" in added.stdout

    cli_env["METERHUB_DB"] = url  # the store from the environment, as a systemd unit sets it
    listed = hub("collectors", "list", db=False)
    assert "1 collectors" in listed.stdout
    row = row_of(listed.stdout, "gw-0001")
    assert "active" in row and signer.key_id in row and "never" in row


def test_adding_a_collector_twice_exits_1_saying_it_is_enrolled(hub, tmp_path, url):
    enroll(url, "gw-0001")
    public_key_file(tmp_path / "gw.pub")
    result = hub("collectors", "add", "--id", "gw-0001", "--public-key", "gw.pub", check=False)
    assert result.returncode == 1
    assert "collector gw-0001 is already enrolled" in result.stderr
    assert "collectors rotate" in result.stderr


def test_adding_an_id_that_is_no_topic_level_exits_1(hub, tmp_path, url):
    enroll(url)
    public_key_file(tmp_path / "gw.pub")
    result = hub("collectors", "add", "--id", "gw/0001", "--public-key", "gw.pub", check=False)
    assert result.returncode == 1
    assert "'gw/0001' is not a collector id" in result.stderr


def test_adding_with_a_file_that_is_no_public_key_exits_2(hub, tmp_path, url):
    enroll(url)
    (tmp_path / "gw.pub").write_text("not a key\n")
    result = hub("collectors", "add", "--id", "gw-0001", "--public-key", "gw.pub", check=False)
    assert result.returncode == 2
    assert "gw.pub" in result.stderr


def test_add_writes_the_broker_password_file_owner_only_matching_the_stored_hash(
        hub, tmp_path, url):
    enroll(url)
    public_key_file(tmp_path / "gw.pub")
    result = hub("collectors", "add", "--id", "gw-0001", "--public-key", "gw.pub",
                 "--broker-password-file", "secrets/gw.password")
    password_file = tmp_path / "secrets" / "gw.password"
    assert "written to secrets/gw.password (mode 0600)" in result.stdout
    assert mode(password_file) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 32 and password not in result.stdout
    assert hash_matches(password, stored_password_hash(url, "gw-0001"))


def test_add_without_a_password_file_prints_the_password_once(hub, tmp_path, url):
    enroll(url)
    public_key_file(tmp_path / "gw.pub")
    result = hub("collectors", "add", "--id", "gw-0001", "--public-key", "gw.pub")
    [password] = re.findall(r"shown once; put it in the gateway's password_file\): (\S+)",
                            result.stdout)
    assert hash_matches(password, stored_password_hash(url, "gw-0001"))


def test_collectors_password_replaces_the_stored_hash(hub, tmp_path, url):
    enroll(url, "gw-0001", passwords={"gw-0001": "old-password"})
    hub("collectors", "password", "--id", "gw-0001", "--broker-password-file", "new.password")
    new = (tmp_path / "new.password").read_text().strip()
    assert mode(tmp_path / "new.password") == 0o600
    stored = stored_password_hash(url, "gw-0001")
    assert hash_matches(new, stored) and not hash_matches("old-password", stored)


def test_revoke_shows_revoked_in_the_list(hub, url):
    enroll(url, "gw-0001", "gw-0002")
    revoked = hub("collectors", "revoke", "--id", "gw-0001", "--reason", "stolen")
    assert "revoked gw-0001 at" in revoked.stdout
    listed = hub("collectors", "list")
    assert re.search(r"revoked \d{4}-\d\d-\d\d \d\d:\d\dZ", row_of(listed.stdout, "gw-0001"))
    assert "active" in row_of(listed.stdout, "gw-0002")


def test_revoking_twice_exits_1(hub, url):
    enroll(url, "gw-0001")
    with Store.open(url) as store, store.begin() as conn:
        revoke_collector(conn, "gw-0001", reason="stolen")
    result = hub("collectors", "revoke", "--id", "gw-0001", "--reason", "again", check=False)
    assert result.returncode == 1
    assert "already revoked" in result.stderr


def test_rotate_from_seq_0_is_a_usage_error(hub, tmp_path, url):
    enroll(url, "gw-0001")
    public_key_file(tmp_path / "new.pub")
    result = hub("collectors", "rotate", "--id", "gw-0001", "--public-key", "new.pub",
                 "--from-seq", "0", check=False)
    assert result.returncode == 2
    assert "--from-seq" in result.stderr


def test_rotate_at_or_below_the_last_stored_seq_exits_1(hub, tmp_path, url):
    signer = enroll(url, "gw-0001")["gw-0001"]
    store_reads(url, "gw-0001", signer, 3)
    public_key_file(tmp_path / "new.pub")
    result = hub("collectors", "rotate", "--id", "gw-0001", "--public-key", "new.pub",
                 "--from-seq", "3", check=False)
    assert result.returncode == 1
    assert "from_seq 3 is not after seq 3" in result.stderr


def test_rotate_after_the_last_stored_seq_adds_the_key(hub, tmp_path, url):
    old = enroll(url, "gw-0001")["gw-0001"]
    store_reads(url, "gw-0001", old, 3)
    new = public_key_file(tmp_path / "new.pub")
    result = hub("collectors", "rotate", "--id", "gw-0001", "--public-key", "new.pub",
                 "--from-seq", "4")
    assert f"gw-0001: key {new.key_id} from seq 4; 2 keys on record" in result.stdout
    with Store.open(url) as store, store.connect() as conn:
        collector = find_collector(conn, "gw-0001")
    assert collector.key_for(old.key_id, 3) is not None
    assert collector.key_for(old.key_id, 4) is None
    assert collector.key_for(new.key_id, 4) is not None


# --- broker-config ----------------------------------------------------------------------------


def test_broker_config_lets_in_the_hub_and_each_active_collector_only(hub, tmp_path, url):
    passwords = {"gw-a": "gw-a-password", "gw-b": "gw-b-password", "gw-c": "gw-c-password"}
    enroll(url, "gw-a", "gw-b", "gw-c", passwords=passwords)
    with Store.open(url) as store, store.begin() as conn:
        revoke_collector(conn, "gw-b", reason="decommissioned")

    result = hub("broker-config", "--out", "mosquitto", "--hub-password-file", "hub.password")
    assert "(3 accounts)" in result.stdout and "(2 collectors)" in result.stdout
    passwd, acl = tmp_path / "mosquitto" / "passwd", (tmp_path / "mosquitto" / "acl").read_text()

    assert mode(passwd) == 0o600
    lines = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert sorted(lines) == ["gw-a", "gw-c", "meterhub"]
    assert hash_matches("gw-a-password", lines["gw-a"])
    assert hash_matches("gw-c-password", lines["gw-c"])
    assert mode(tmp_path / "hub.password") == 0o600
    assert hash_matches((tmp_path / "hub.password").read_text().strip(), lines["meterhub"])

    for collector in ("gw-a", "gw-c"):
        assert (f"user {collector}\n"
                f"topic write meterhub/v1/{collector}/reads\n"
                f"topic write meterhub/v1/{collector}/status\n"
                f"topic read meterhub/v1/{collector}/ack\n"
                f"topic read meterhub/v1/{collector}/routes\n") in acl
    assert "gw-b" not in acl
    assert "user meterhub\ntopic read meterhub/v1/+/reads\n" in acl


def test_broker_config_keeps_an_existing_hub_password(hub, tmp_path, url):
    enroll(url, "gw-a", passwords={"gw-a": "gw-a-password"})
    (tmp_path / "hub.password").write_text("the-hub-password\n")
    (tmp_path / "hub.password").chmod(0o600)
    result = hub("broker-config", "--out", "mosquitto", "--hub-password-file", "hub.password")
    assert "was made" not in result.stdout
    line = (tmp_path / "mosquitto" / "passwd").read_text().splitlines()[-1]
    assert line.startswith("meterhub:")
    assert hash_matches("the-hub-password", line.split(":", 1)[1])


# --- stored reads -----------------------------------------------------------------------------


@pytest.fixture
def three_reads(url):
    """gw-0001 enrolled with 3 stored reads, pending verification."""
    signer = enroll(url, "gw-0001", "gw-0002")["gw-0001"]
    store_reads(url, "gw-0001", signer, 3)
    return url


def db_file(url):
    return url.removeprefix("sqlite:///")


def test_reads_status_counts_pending_reads_per_collector(hub, three_reads):
    result = hub("reads", "status")
    assert re.search(r"gw-0001\s*│\s*3\s*│\s*3\s*│\s*0\s*│\s*0", result.stdout)
    assert re.search(r"gw-0002\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*0", result.stdout)


def test_reads_verify_checks_every_pending_signature(hub, three_reads):
    result = hub("reads", "verify", "--processes", "1")
    assert "3 reads verified, 0 failed" in result.stdout
    assert re.search(r"gw-0001\s*│\s*3\s*│\s*0\s*│\s*3\s*│\s*0",
                     hub("reads", "status").stdout)


def test_reads_verify_exits_1_and_quarantines_a_bad_signature(hub, three_reads):
    with sqlite3.connect(db_file(three_reads)) as conn:
        conn.execute("UPDATE reads SET sig = zeroblob(64) WHERE seq = 2")
    result = hub("reads", "verify", "--processes", "1", check=False)
    assert result.returncode == 1
    assert "2 reads verified, 1 failed" in result.stdout
    assert "seq 2" in result.stderr


def test_reads_check_chain_walks_an_unbroken_chain(hub, three_reads):
    result = hub("reads", "check-chain", "--collector", "gw-0001")
    assert "gw-0001: 3 reads, one unbroken chain from seq 1" in result.stdout


def test_reads_check_chain_exits_1_at_a_missing_read(hub, three_reads):
    with sqlite3.connect(db_file(three_reads)) as conn:
        conn.execute("DELETE FROM reads WHERE seq = 2")
    result = hub("reads", "check-chain", "--collector", "gw-0001", check=False)
    assert result.returncode == 1
    assert "jump from seq 1 to 3" in result.stderr


def test_reads_check_chain_exits_1_when_the_newest_reads_are_missing(hub, three_reads):
    with sqlite3.connect(db_file(three_reads)) as conn:
        conn.execute("DELETE FROM reads WHERE seq = 3")
    result = hub("reads", "check-chain", "--collector", "gw-0001", check=False)
    assert result.returncode == 1
