"""The MQTT contract v1: topic names, the hub's ack and the collector's status, both ways."""

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.mqtt_contract import (
    PLAIN_READS_SUBSCRIPTION,
    SHARED_READS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    TOPIC_KINDS,
    Ack,
    ContractError,
    Rejection,
    Status,
    ack_topic,
    decode_ack,
    decode_status,
    encode_ack,
    encode_status,
    parse_topic,
    reads_topic,
    routes_topic,
    status_topic,
    topic,
)
from protocols.scalars import normalize_instant
from tests.readings import collectors, instants

# --- topics ---------------------------------------------------------------------


def test_each_topic_helper_names_its_kind_under_the_v1_root():
    assert reads_topic("gw-0001") == "meterhub/v1/gw-0001/reads"
    assert ack_topic("gw-0001") == "meterhub/v1/gw-0001/ack"
    assert status_topic("gw-0001") == "meterhub/v1/gw-0001/status"
    assert routes_topic("gw-0001") == "meterhub/v1/gw-0001/routes"


def test_subscriptions_match_every_collectors_topic_of_their_kind():
    assert SHARED_READS_SUBSCRIPTION == "$share/meterhub/meterhub/v1/+/reads"
    assert PLAIN_READS_SUBSCRIPTION == "meterhub/v1/+/reads"
    assert STATUS_SUBSCRIPTION == "meterhub/v1/+/status"


@pytest.mark.parametrize("bad", ["", "gw/1", "gw+1", "gw#", "gw 1", "-gw", "g" * 65])
def test_topic_refuses_a_collector_id_that_is_not_one_topic_level(bad):
    with pytest.raises(ValueError, match="not a collector id"):
        topic(bad, "reads")


@given(collectors, st.sampled_from(TOPIC_KINDS))
def test_parse_topic_inverts_topic(collector, kind):
    assert parse_topic(topic(collector, kind)) == (collector, kind)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("meterhub/v2/gw-1/reads", "is not meterhub/v1"),
        ("meterhub/v1/gw-1/acks", "is not meterhub/v1"),
        ("meterhub/v1/gw-1/reads/extra", "is not meterhub/v1"),
        ("meterhub/v1/reads", "is not meterhub/v1"),
        ("/meterhub/v1/gw-1/reads", "is not meterhub/v1"),
        ("meterhub/v1/+/reads", "no valid collector"),
        ("meterhub/v1//reads", "no valid collector"),
        ("meterhub/v1/gw 1/status", "no valid collector"),
    ],
)
def test_parse_topic_refuses_what_is_not_a_contract_topic(name, match):
    with pytest.raises(ContractError, match=match):
        parse_topic(name)


@given(st.text(max_size=40) | st.from_regex(
    r"(meterhub|\$share)/(v1|v2|)/[A-Za-z0-9._+# -]{0,4}(/[a-z]{0,3})?"
    r"/(reads|ack|status|routes|acks)",
    fullmatch=True,
))
def test_parse_topic_raises_only_contract_errors_and_parses_only_what_topic_makes(name):
    try:
        collector, kind = parse_topic(name)
    except ContractError:
        return
    assert topic(collector, kind) == name


# --- the ack ----------------------------------------------------------------------

seqs = st.integers(min_value=1, max_value=2**63 - 1)


@st.composite
def rejections(draw):
    seq = draw(seqs)
    last = draw(st.integers(min_value=seq, max_value=2**63 - 1))
    reason = draw(st.text(min_size=1, max_size=20))
    return Rejection(seq, last, reason)


acks = st.builds(Ack, through_seq=st.integers(min_value=0, max_value=2**63 - 1),
                 rejected=st.lists(rejections(), max_size=4).map(tuple))


@given(acks)
def test_ack_round_trips(ack):
    assert decode_ack(encode_ack(ack)) == ack


def test_ack_wire_form_omits_last_seq_for_a_single_read():
    payload = encode_ack(Ack(120, (Rejection(121, 140, "seq_gap"), Rejection(141, 141, "x"))))
    assert json.loads(payload) == {
        "through_seq": 120,
        "rejected": [{"seq": 121, "last_seq": 140, "reason": "seq_gap"},
                     {"seq": 141, "reason": "x"}],
    }


def test_ack_without_rejected_or_last_seq_decodes_with_defaults():
    assert decode_ack(b'{"through_seq":7}') == Ack(7, ())
    assert decode_ack(b'{"through_seq":7,"rejected":[{"seq":9,"reason":"r"}]}') == \
        Ack(7, (Rejection(9, 9, "r"),))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "through_seq"),
        ({"through_seq": -1}, "through_seq"),
        ({"through_seq": True}, "through_seq"),
        ({"through_seq": 1.0}, "through_seq"),
        ({"through_seq": "1"}, "through_seq"),
        ({"through_seq": 1, "rejected": {}}, "rejected"),
        ({"through_seq": 1, "rejected": [5]}, "rejected[0]"),
        ({"through_seq": 1, "rejected": [{"seq": 0, "reason": "r"}]}, "rejected[0]"),
        ({"through_seq": 1, "rejected": [{"seq": 5, "last_seq": 4, "reason": "r"}]},
         "rejected[0]"),
        ({"through_seq": 1, "rejected": [{"seq": 5, "last_seq": None, "reason": "r"}]},
         "rejected[0]"),
        ({"through_seq": 1, "rejected": [{"seq": True, "reason": "r"}]}, "rejected[0]"),
        ({"through_seq": 1, "rejected": [{"seq": 5}]}, "rejected[0]"),
        ({"through_seq": 1, "rejected": [{"seq": 5, "reason": ""}]}, "rejected[0]"),
        ({"through_seq": 1, "rejected": [{"seq": 2, "reason": "r"}, {"seq": 5, "reason": 3}]},
         "rejected[1]"),
    ],
)
def test_malformed_acks_name_the_field(payload, field):
    with pytest.raises(ContractError) as info:
        decode_ack(json.dumps(payload).encode())
    assert info.value.field == field


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe\x00", b"[1]", b'"ack"', b"null", b"{"])
def test_an_ack_that_is_not_a_json_object_is_a_contract_error(payload):
    with pytest.raises(ContractError, match="ack is not"):
        decode_ack(payload)


def test_rejection_covers_its_seq_range_inclusive():
    rejection = Rejection(10, 12, "seq_gap")
    assert [seq for seq in range(8, 15) if rejection.covers(seq)] == [10, 11, 12]


def test_only_gaps_is_true_only_when_every_rejection_is_a_seq_gap():
    assert Ack(3).only_gaps
    assert Ack(3, (Rejection(4, 9, "seq_gap"), Rejection(10, 10, "seq_gap"))).only_gaps
    assert not Ack(3, (Rejection(4, 9, "seq_gap"), Rejection(10, 10, "bad_signature"))).only_gaps


# --- the status ---------------------------------------------------------------------

counts = st.none() | st.integers(min_value=0, max_value=2**63 - 1)
statuses = st.builds(
    Status,
    state=st.sampled_from(["online", "offline"]),
    version=st.text(max_size=20),
    at=st.none() | instants.map(normalize_instant),
    buffer_depth=counts,
    last_seq=counts,
    acked_through=counts,
)


@given(statuses)
def test_status_round_trips(status):
    assert decode_status(encode_status(status)) == status


def test_status_wire_form_has_a_utc_millisecond_time_and_omits_absent_counts():
    status = Status("online", "0.1.0", datetime(2026, 11, 23, 6, 0, 1, 250_000, tzinfo=UTC),
                    buffer_depth=12)
    assert json.loads(encode_status(status)) == {
        "state": "online", "version": "0.1.0", "at": "2026-11-23T06:00:01.250Z",
        "buffer_depth": 12,
    }


def test_offline_last_will_needs_only_state_and_version():
    assert decode_status(b'{"state":"offline","version":"1.2"}') == Status("offline", "1.2")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"version": "1"}, "state"),
        ({"state": "sleeping", "version": "1"}, "state"),
        ({"state": "online"}, "version"),
        ({"state": "online", "version": 1}, "version"),
        ({"state": "online", "version": "1", "buffer_depth": -1}, "buffer_depth"),
        ({"state": "online", "version": "1", "last_seq": True}, "last_seq"),
        ({"state": "online", "version": "1", "acked_through": "3"}, "acked_through"),
        ({"state": "online", "version": "1", "at": "yesterday"}, "at"),
    ],
)
def test_malformed_status_names_the_field(payload, field):
    with pytest.raises(ContractError) as info:
        decode_status(json.dumps(payload).encode())
    assert info.value.field == field


def test_status_time_without_a_zone_is_refused():
    with pytest.raises(ContractError):
        decode_status(b'{"state":"online","version":"1","at":"2026-11-23T06:00:00"}')


def test_status_time_in_another_zone_is_sent_as_the_same_instant():
    at = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert decode_status(encode_status(Status("online", "1", at))).at == at


# --- fuzz: only ContractError ever escapes -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["through_seq", "rejected", "seq", "last_seq", "reason", "state",
                         "version", "at", "buffer_depth", "last_seq", "acked_through"]),
        children, max_size=6),
    max_leaves=15,
)


@pytest.mark.parametrize("decode", [decode_ack, decode_status])
@given(payload=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_contract_errors(decode, payload):
    with contextlib.suppress(ContractError):
        decode(payload)


@pytest.mark.parametrize("decode", [decode_ack, decode_status])
@given(value=json_values)
def test_arbitrary_json_raises_only_contract_errors(decode, value):
    with contextlib.suppress(ContractError):
        decode(json.dumps(value).encode())


@pytest.mark.parametrize("decode", [decode_ack, decode_status])
def test_an_overlong_integer_is_a_contract_error(decode):
    with pytest.raises(ContractError):
        decode(b'{"through_seq":' + b"1" * 5000 + b"}")


@pytest.mark.parametrize("decode", [decode_ack, decode_status])
def test_deeply_nested_json_is_a_contract_error(decode):
    with pytest.raises(ContractError):
        decode(b"[" * 100_000 + b"]" * 100_000)
