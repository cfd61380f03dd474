import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.batch import decode_batch, encode_batch
from protocols.chain import GENESIS_TIP, sign_and_chain, verify_chain
from protocols.errors import BatchError
from protocols.signing import Signer
from tests.readings import readings


@pytest.fixture(scope="module")
def sealed():
    signer = Signer.generate()
    reads, _ = sign_and_chain(readings(4), signer=signer, collector="gw-0001", after=GENESIS_TIP)
    return signer, reads


def test_batch_round_trip_keeps_the_signed_bytes(sealed):
    signer, reads = sealed
    batch = decode_batch(encode_batch("gw-0001", reads))
    assert (batch.collector, batch.first_seq, batch.last_seq) == ("gw-0001", 1, 4)
    assert [r.data for r in batch.reads] == [r.data for r in reads]
    assert [r.sig for r in batch.reads] == [r.sig for r in reads]
    assert len(verify_chain(batch.reads, signer.public_key)) == 4


def test_batch_payload_follows_the_mqtt_contract(sealed):
    _, reads = sealed
    payload = json.loads(encode_batch("gw-0001", reads))
    assert set(payload) == {"v", "collector", "first_seq", "last_seq", "reads"}
    assert payload["v"] == 1
    assert set(payload["reads"][0]) == {"b", "sig"}
    assert len(base64.b64decode(payload["reads"][0]["sig"])) == 64


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p: p.__setitem__("v", 2), "version"),
        (lambda p: p.__setitem__("collector", "gw/1"), "collector"),
        (lambda p: p.__setitem__("last_seq", 9), "claims"),
        (lambda p: p.__setitem__("reads", []), "non-empty"),
        (lambda p: p["reads"][0].__setitem__("sig", "***"), "decode"),
        (lambda p: p["reads"][0].__setitem__("x", 1), "each read"),
        (lambda p: p.pop("first_seq"), "missing"),
    ],
)
def test_malformed_batches_are_rejected_with_a_reason(sealed, change, match):
    payload = json.loads(encode_batch("gw-0001", sealed[1]))
    change(payload)
    with pytest.raises(BatchError, match=match):
        decode_batch(json.dumps(payload).encode())


def test_oversized_batch_is_refused(sealed):
    with pytest.raises(BatchError, match="limit"):
        decode_batch(encode_batch("gw-0001", sealed[1]), max_reads=3)


@given(st.binary(max_size=200))
def test_arbitrary_payloads_raise_only_batch_errors(payload):
    with contextlib.suppress(BatchError):
        decode_batch(payload)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["v", "collector", "first_seq", "last_seq", "reads",
                                       "b", "sig"]), children, max_size=5),
    max_leaves=12,
))
def test_arbitrary_json_raises_only_batch_errors(value):
    with contextlib.suppress(BatchError):
        decode_batch(json.dumps(value).encode())
