"""The generated password file and ACL, checked as text and against a real Mosquitto 2.0 broker.

The broker tests are the ones that matter: each denial is proven by ordering —
a message that must be dropped is sent before a positive control on the same
subscription, so once the control has arrived the dropped one would already
be there had the broker let it through. Run against a broker without the ACL,
every denial test here fails.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from hub.broker_config import (
    HUB_USERNAME_DEFAULT,
    TOPIC_PREFIX,
    BrokerAccount,
    mosquitto_password_hash,
    render_acl,
    render_password_file,
    write_broker_config,
)
from simulators.private_broker import Mosquitto
from tests.mqtt_fixtures import mosquitto_factory  # noqa: F401

TIMEOUT = 3.0            # for anything that must happen
NEGATIVE_WAIT = 1.5      # for what must not, after its positive control has arrived
HUB = HUB_USERNAME_DEFAULT
PASSWORDS = {HUB: "hub-secret-0001", "gw-a": "gw-a-secret-0001", "gw-b": "gw-b-secret-0001"}
NOT_AUTHORIZED = {"Not authorized", "Bad user name or password"}


def topic(collector: str, kind: str) -> str:
    return f"{TOPIC_PREFIX}/{collector}/{kind}"


SHARED_READS = f"$share/meterhub/{TOPIC_PREFIX}/+/reads"


# --- the hash -----------------------------------------------------------------


def test_password_hash_is_pbkdf2_sha512_in_mosquitto_7_format():
    salt = bytes(range(12))
    encoded = mosquitto_password_hash("s3cret", salt=salt)
    empty, kind, iterations, salt_b64, key_b64 = encoded.split("$")
    assert (empty, kind, iterations) == ("", "7", "101")
    assert base64.b64decode(salt_b64, validate=True) == salt
    assert base64.b64decode(key_b64, validate=True) == hashlib.pbkdf2_hmac(
        "sha512", b"s3cret", salt, 101, 64)


def test_password_hash_matches_one_made_by_mosquitto_passwd_2_0():
    # `mosquitto_passwd -b` 2.0.11 made this line for user alice, password "secret".
    made_by_mosquitto = ("$7$101$RDtqYqGmIuZJ5i2k$LGUMiKHxmYVtK3jLM48633QwK41ufN7oF7ua9cwBN05g"
                         "zhmQkpbH5zwrDc/sGKaY09xni39+mkeyS0kGV2A1CQ==")
    salt = base64.b64decode("RDtqYqGmIuZJ5i2k")
    assert mosquitto_password_hash("secret", salt=salt) == made_by_mosquitto


def test_password_hash_encodes_utf8_and_the_iteration_count():
    salt = b"\xff" * 12
    encoded = mosquitto_password_hash("zählerstand", salt=salt, iterations=1000)
    assert encoded.split("$")[2] == "1000"
    key = hashlib.pbkdf2_hmac("sha512", "zählerstand".encode(), salt, 1000, 64)
    assert encoded.endswith("$" + base64.b64encode(key).decode())


def test_password_hash_salts_randomly():
    assert mosquitto_password_hash("same") != mosquitto_password_hash("same")


@pytest.mark.parametrize(("password", "salt", "iterations"), [
    ("", None, 101),               # an empty secret is no secret
    ("a\x00b", None, 101),         # the broker would stop reading at the NUL
    ("ok", bytes(16), 101),        # Mosquitto 2.0 drops any salt but 12 bytes
    ("ok", None, 0),
])
def test_password_hash_refuses_what_the_broker_could_never_match(password, salt, iterations):
    with pytest.raises(ValueError):
        mosquitto_password_hash(password, salt=salt, iterations=iterations)


# --- the password file -----------------------------------------------------------


def test_password_file_has_one_sorted_line_per_account():
    accounts = [BrokerAccount("gw-b", "$7$101$b$B"), BrokerAccount("gw-a", "$7$101$a$A")]
    assert render_password_file(accounts) == "gw-a:$7$101$a$A\ngw-b:$7$101$b$B\n"


@pytest.mark.parametrize("username", ["gw:a", "gw-a\nmeterhub", "gw-a\r", "", " gw-a"])
def test_password_file_refuses_usernames_mosquitto_would_split_or_trim(username):
    with pytest.raises(ValueError, match="username"):
        render_password_file([BrokerAccount(username, "$7$101$a$A")])


def test_password_file_refuses_a_hash_spanning_lines():
    with pytest.raises(ValueError, match="gw-a"):
        render_password_file([BrokerAccount("gw-a", "$7$101$a$A\nmeterhub:x")])


def test_password_file_refuses_a_username_twice():
    with pytest.raises(ValueError, match="gw-a"):
        render_password_file([BrokerAccount("gw-a", "$7$1$a$A"), BrokerAccount("gw-a", "$7$1$b$B")])


# --- the ACL -----------------------------------------------------------------------


def acl_rules(text: str) -> dict[str, list[str]]:
    """``{username: [rule, …]}`` from an acl_file; rules before any ``user`` go under ``""``."""
    rules: dict[str, list[str]] = {"": []}
    user = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            user = line.removeprefix("user ")
            rules[user] = []
        else:
            rules[user].append(line)
    return rules


def test_acl_gives_the_hub_every_collectors_reads_and_status_and_their_acks_and_routes():
    rules = acl_rules(render_acl(["gw-a"], "meterhub"))
    assert rules["meterhub"] == [
        "topic read meterhub/v1/+/reads",
        "topic read meterhub/v1/+/status",
        "topic write meterhub/v1/+/ack",
        "topic write meterhub/v1/+/routes",
    ]


def test_acl_confines_each_collector_to_its_own_topics():
    rules = acl_rules(render_acl(["gw-b", "gw-a"], "meterhub"))
    assert list(rules) == ["", "meterhub", "gw-a", "gw-b"]   # collectors sorted: stable diffs
    assert rules["gw-a"] == [
        "topic write meterhub/v1/gw-a/reads",
        "topic write meterhub/v1/gw-a/status",
        "topic read meterhub/v1/gw-a/ack",
        "topic read meterhub/v1/gw-a/routes",
    ]


def test_acl_grants_anonymous_clients_nothing_and_has_no_patterns():
    text = render_acl(["gw-a"], "meterhub")
    assert acl_rules(text)[""] == []
    assert not any(line.startswith("pattern") for line in text.splitlines())


def test_acl_says_it_is_generated_and_not_to_be_edited():
    header = render_acl([], "meterhub").splitlines()[0]
    assert header.startswith("# Generated by `meterhub broker-config`")
    assert "Do not edit by hand" in header


def test_acl_uses_the_given_prefix():
    rules = acl_rules(render_acl(["gw-a"], "hub", prefix="utility/v2"))
    assert "topic write utility/v2/gw-a/reads" in rules["gw-a"]


@pytest.mark.parametrize("bad", ["gw/a", "gw+", "#", "gw a", "", "-gw", "x" * 65])
def test_acl_refuses_an_invalid_collector_id_and_names_it(bad):
    with pytest.raises(ValueError, match="invalid collector id") as caught:
        render_acl(["gw-a", bad], "meterhub")
    assert repr(bad) in str(caught.value)


def test_acl_refuses_a_hub_username_that_is_also_a_collector():
    # Mosquitto would merge both `user` blocks: that collector would get the hub's rights.
    with pytest.raises(ValueError, match="also a collector"):
        render_acl(["gw-a", "meterhub"], "meterhub")


@pytest.mark.parametrize(("collectors", "hub", "prefix"), [
    (["gw-a", "gw-a"], "meterhub", TOPIC_PREFIX),
    (["gw-a"], "hub user", TOPIC_PREFIX),
    (["gw-a"], "meterhub", "meterhub/+"),
    (["gw-a"], "meterhub", "meterhub//v1"),
    (["gw-a"], "meterhub", "$SYS/v1"),
])
def test_acl_refuses_what_would_widen_or_break_the_rules(collectors, hub, prefix):
    with pytest.raises(ValueError):
        render_acl(collectors, hub, prefix)


# --- writing both files ---------------------------------------------------------------


def accounts_for(passwords: dict[str, str]) -> list[BrokerAccount]:
    return [BrokerAccount(user, mosquitto_password_hash(pw)) for user, pw in passwords.items()]


def test_write_broker_config_writes_both_files_with_a_private_password_file(tmp_path):
    passwd, acl = write_broker_config(tmp_path / "broker", accounts=accounts_for(PASSWORDS),
                                      collectors=["gw-a", "gw-b"], hub_username=HUB)
    assert (passwd, acl) == (tmp_path / "broker" / "passwd", tmp_path / "broker" / "acl")
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert passwd.read_text().splitlines()[0].startswith("gw-a:$7$101$")
    assert acl.read_text() == render_acl(["gw-a", "gw-b"], HUB)
    assert sorted(p.name for p in passwd.parent.iterdir()) == ["acl", "passwd"]  # no temp left


def test_write_broker_config_writes_nothing_when_anything_is_invalid(tmp_path):
    out = tmp_path / "broker"
    write_broker_config(out, accounts=accounts_for(PASSWORDS), collectors=["gw-a"],
                        hub_username=HUB)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match="gw/b"):
        write_broker_config(out, accounts=accounts_for(PASSWORDS), collectors=["gw-a", "gw/b"],
                            hub_username=HUB)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- against the real broker ---------------------------------------------------------------


class Refused(Exception):
    """The broker answered CONNECT with a failure reason code."""

    def __init__(self, reason: ReasonCode) -> None:
        super().__init__(f"CONNECT refused: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Peer:
    """One MQTT v5 client on its own network thread: what it received, what the broker acked.

    Every wait is bounded and event-driven; nothing here sleeps.
    """

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self._changed = threading.Condition()
        self.received: list[Received] = []
        self._acks: dict[int, list[ReasonCode]] = {}
        client.on_message = self._on_message
        client.on_publish = self._on_ack
        client.on_subscribe = self._on_ack

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.received.append(Received(message.topic, message.payload, message.retain))
            self._changed.notify_all()

    def _on_ack(self, client: mqtt.Client, userdata: object, mid: int,
                reasons: ReasonCode | list[ReasonCode], properties: object) -> None:
        with self._changed:
            self._acks[mid] = reasons if isinstance(reasons, list) else [reasons]
            self._changed.notify_all()

    def _wait_ack(self, mid: int) -> list[ReasonCode]:
        with self._changed:
            assert self._changed.wait_for(lambda: mid in self._acks, TIMEOUT), f"no ack for {mid}"
            return self._acks.pop(mid)

    def subscribe(self, *filters: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK (Mosquitto 2.0 grants every filter)."""
        for topic_filter in filters:
            result, mid = self.client.subscribe(topic_filter, qos=1)
            assert result == mqtt.MQTT_ERR_SUCCESS
            assert not any(reason.is_failure for reason in self._wait_ack(mid))

    def publish(self, topic_name: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1; the PUBACK's reason code, once the broker has routed the message."""
        info = self.client.publish(topic_name, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(info.mid)[0]

    def got(self, payload: bytes, timeout: float = TIMEOUT) -> Received | None:
        """The message carrying ``payload`` once it has arrived, or None after ``timeout``."""
        def find() -> Received | None:
            return next((m for m in self.received if m.payload == payload), None)
        with self._changed:
            self._changed.wait_for(find, timeout)
            return find()

    def drop_connection(self) -> None:
        """End the TCP connection without DISCONNECT, as a crashed collector would."""
        sock = self.client.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)   # the network thread sees EOF and, not reconnecting, ends
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(broker: Mosquitto, username: str | None, password: str | None = None, *,
            will: str | None = None) -> Peer:
    """A connected :class:`Peer`; raises :class:`Refused` if the broker refuses the login."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         reconnect_on_failure=False)
    if username is not None:
        client.username_pw_set(username, password)
    if will is not None:
        client.will_set(will, b"offline", qos=1, retain=True)
    answered = threading.Event()
    reasons: list[ReasonCode] = []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode,
                   properties: object) -> None:
        reasons.append(reason)
        answered.set()

    client.on_connect = on_connect
    peer = Peer(client)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    if not answered.wait(TIMEOUT):
        peer.close()
        raise AssertionError(f"no CONNACK for {username!r}:\n{broker.log_tail()}")
    if reasons[0].is_failure:
        peer.close()
        raise Refused(reasons[0])
    return peer


@pytest.fixture
def broker(tmp_path, mosquitto_factory) -> Mosquitto:  # noqa: F811
    """A private broker running the generated files for the hub, gw-a and gw-b."""
    passwd, acl = write_broker_config(tmp_path / "broker-config",
                                      accounts=accounts_for(PASSWORDS),
                                      collectors=["gw-a", "gw-b"], hub_username=HUB)
    return mosquitto_factory(password_file=passwd, acl_file=acl)


@pytest.fixture
def login(broker) -> Iterator[Callable[..., Peer]]:
    """``login("gw-a")``: a connected peer with its own password, closed at teardown."""
    peers: list[Peer] = []

    def login_as(username: str, **options: str) -> Peer:
        peers.append(connect(broker, username, PASSWORDS[username], **options))
        return peers[-1]

    yield login_as
    for peer in peers:
        peer.close()


def assert_dropped(observer: Peer, dropped: bytes, control: bytes) -> None:
    """``control``, sent after ``dropped`` on the same subscription, came; ``dropped`` did not."""
    assert observer.got(control), "positive control never arrived: the test proves nothing"
    assert observer.got(dropped, timeout=NEGATIVE_WAIT) is None, f"{dropped!r} was delivered"


def test_hub_shared_subscription_receives_a_collectors_batch(login):
    hub, gw_a = login(HUB), login("gw-a")
    hub.subscribe(SHARED_READS)
    batch = b'{"v":1,"collector":"gw-a","first_seq":1,"last_seq":1,"reads":[]}'
    assert gw_a.publish(topic("gw-a", "reads"), batch) == "Success"
    assert hub.got(batch) == Received(topic("gw-a", "reads"), batch, retain=False)


def test_collector_cannot_publish_reads_as_another_collector(login):
    hub, gw_a = login(HUB), login("gw-a")
    hub.subscribe(SHARED_READS)
    assert gw_a.publish(topic("gw-b", "reads"), b"forged batch") == "Not authorized"
    gw_a.publish(topic("gw-a", "reads"), b"own batch")
    assert_dropped(hub, b"forged batch", control=b"own batch")


@pytest.mark.parametrize(("kind", "observer_name", "owner_name", "filters"), [
    ("status", HUB, "gw-b", [f"{TOPIC_PREFIX}/+/status"]),
    ("ack", "gw-b", HUB, [topic("gw-b", "ack")]),         # a forged ack would make gw-b
    ("routes", "gw-b", HUB, [topic("gw-b", "routes")]),   # delete reads the hub never stored
])
def test_collector_cannot_publish_on_another_collectors_topic(login, kind, observer_name,
                                                              owner_name, filters):
    gw_a, observer = login("gw-a"), login(observer_name)
    owner = observer if owner_name == observer_name else login(owner_name)
    observer.subscribe(*filters)
    assert gw_a.publish(topic("gw-b", kind), b"forged") == "Not authorized"
    assert owner.publish(topic("gw-b", kind), b"genuine") == "Success"
    assert_dropped(observer, b"forged", control=b"genuine")


@pytest.mark.parametrize("kind", ["ack", "routes"])
def test_collector_cannot_receive_another_collectors_acks_or_routes(login, kind):
    hub, gw_a, gw_b = login(HUB), login("gw-a"), login("gw-b")
    gw_a.subscribe(topic("gw-b", kind), f"{TOPIC_PREFIX}/+/{kind}")
    gw_b.subscribe(topic("gw-b", kind))
    hub.publish(topic("gw-b", kind), b"for gw-b")
    hub.publish(topic("gw-a", kind), b"for gw-a")
    assert gw_b.got(b"for gw-b"), "gw-b never got its own message: the test proves nothing"
    assert_dropped(gw_a, b"for gw-b", control=b"for gw-a")


def test_collector_cannot_read_another_collectors_reads_even_through_a_shared_subscription(login):
    hub, gw_a, gw_b = login(HUB), login("gw-a"), login("gw-b")
    hub.subscribe(SHARED_READS)
    gw_a.subscribe(f"{TOPIC_PREFIX}/+/reads", f"$share/snoop/{TOPIC_PREFIX}/+/reads", "#")
    gw_b.publish(topic("gw-b", "reads"), b"gw-b batch")
    assert hub.got(b"gw-b batch"), "the hub never got the batch: the test proves nothing"
    assert gw_a.got(b"gw-b batch", timeout=NEGATIVE_WAIT) is None


def test_hub_reads_a_collectors_retained_status(login):
    gw_a = login("gw-a")
    assert not gw_a.publish(topic("gw-a", "status"), b"online", retain=True).is_failure
    hub = login(HUB)
    hub.subscribe(f"{TOPIC_PREFIX}/+/status")
    assert hub.got(b"online") == Received(topic("gw-a", "status"), b"online", retain=True)


def test_collectors_last_will_reaches_the_hub_only_on_its_own_status_topic(login):
    hub = login(HUB)
    hub.subscribe(f"{TOPIC_PREFIX}/+/status")
    # Mosquitto 2.0 accepts any will topic at CONNECT and checks it when publishing the will.
    forger = login("gw-a", will=topic("gw-b", "status"))
    honest = login("gw-a", will=topic("gw-a", "status"))
    forger.drop_connection()
    honest.drop_connection()
    arrived = hub.got(b"offline")
    assert arrived == Received(topic("gw-a", "status"), b"offline", retain=False)
    hub.received.remove(arrived)
    assert hub.got(b"offline", timeout=NEGATIVE_WAIT) is None   # gw-b's forged will


@pytest.mark.parametrize(("username", "password"), [
    ("gw-a", "gw-b-secret-0001"),    # another collector's password
    ("gw-c", "gw-a-secret-0001"),    # not enrolled
    (None, None),                    # anonymous
])
def test_broker_refuses_a_bad_login_at_connect(broker, username, password):
    with pytest.raises(Refused) as refused:
        connect(broker, username, password)
    assert str(refused.value.reason) in NOT_AUTHORIZED


def test_every_account_in_the_password_file_can_log_in(login):
    for username in PASSWORDS:
        assert login(username).client.is_connected()
