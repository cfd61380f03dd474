import pytest

from protocols.canonical import decode_read, encode_read
from protocols.chain import (
    GENESIS_HASH,
    GENESIS_TIP,
    ChainTip,
    SignedRead,
    read_hash,
    sign_and_chain,
    verify_chain,
    verify_read,
)
from protocols.errors import (
    ChainError,
    MalformedReadError,
    ReadError,
    SeqGapError,
    SeqRegressionError,
    SignatureError,
    WrongCollectorError,
    WrongKeyError,
)
from protocols.signing import Signer, key_id_for
from tests.readings import readings


@pytest.fixture
def signer():
    return Signer.generate()


def chain(signer, count=5, collector="gw-0001", after=GENESIS_TIP):
    sealed, tip = sign_and_chain(readings(count), signer=signer, collector=collector, after=after)
    return [s.signed for s in sealed], tip


def test_a_chain_verifies_and_links_to_genesis(signer):
    signed, tip = chain(signer)
    reads = verify_chain(signed, signer.public_key, collector="gw-0001")
    assert [r.seq for r in reads] == [1, 2, 3, 4, 5]
    assert reads[0].prev_hash == GENESIS_HASH == "0" * 64
    assert all(reads[i].prev_hash == signed[i - 1].hash for i in range(1, 5))
    assert tip == ChainTip(5, read_hash(signed[-1].data))
    assert all(r.key_id == signer.key_id == key_id_for(signer.public_key) for r in reads)


def test_a_chain_continues_from_a_tip(signer):
    first, tip = chain(signer, 3)
    second, _ = chain(signer, 3, after=tip)
    assert [r.seq for r in verify_chain(second, signer.public_key, after=tip)] == [4, 5, 6]
    assert len(verify_chain(first + second, signer.public_key)) == 6


def test_bad_signature(signer):
    signed, _ = chain(signer)
    forged = SignedRead(signed[2].data, bytes(64))
    with pytest.raises(SignatureError) as info:
        verify_chain([*signed[:2], forged, *signed[3:]], signer.public_key)
    assert type(info.value) is SignatureError
    assert info.value.seq == 3 and info.value.collector == "gw-0001"


def test_wrong_key(signer):
    signed, _ = chain(signer)
    other = Signer.generate()
    with pytest.raises(WrongKeyError) as info:
        verify_chain(signed, other.public_key)
    assert signer.key_id in str(info.value)


def test_broken_chain(signer):
    """A validly signed read whose prev_hash does not match: the chain is broken."""
    signed, _ = chain(signer, 3)
    wrong_tip = ChainTip(3, "f" * 64)
    rogue, _ = chain(signer, 1, after=wrong_tip)
    with pytest.raises(ChainError) as info:
        verify_chain(signed + rogue, signer.public_key)
    assert type(info.value) is ChainError
    assert info.value.seq == 4


def test_reordered_reads_break_the_chain(signer):
    signed, _ = chain(signer)
    with pytest.raises(ChainError):
        verify_chain([signed[0], signed[2], signed[1], *signed[3:]], signer.public_key)


def test_seq_gap(signer):
    signed, _ = chain(signer)
    with pytest.raises(SeqGapError) as info:
        verify_chain([*signed[:2], *signed[3:]], signer.public_key)
    assert info.value.seq == 4
    assert "3–3 are missing" in str(info.value)


def test_repeated_read_is_a_seq_regression(signer):
    signed, _ = chain(signer)
    with pytest.raises(SeqRegressionError):
        verify_chain([*signed[:3], signed[2], *signed[3:]], signer.public_key)


def test_read_of_another_collector(signer):
    mine, tip = chain(signer, 2)
    theirs, _ = chain(signer, 1, collector="gw-9999", after=tip)
    with pytest.raises(WrongCollectorError):
        verify_chain(mine + theirs, signer.public_key, collector="gw-0001")


def test_one_character_change_fails_with_a_typed_error(signer):
    signed, _ = chain(signer, 1)
    text = signed[0].data.decode()
    altered = text.replace('"value":"101.000"', '"value":"101.001"').encode()
    assert altered != signed[0].data
    with pytest.raises(SignatureError):
        verify_chain([SignedRead(altered, signed[0].sig)], signer.public_key)


def test_every_single_byte_change_is_detected(signer):
    signed, _ = chain(signer, 2)
    data = signed[1].data
    for index in range(len(data)):
        altered = bytearray(data)
        altered[index] ^= 0x01
        with pytest.raises(ReadError):
            verify_chain([signed[0], SignedRead(bytes(altered), signed[1].sig)],
                         signer.public_key)


def test_last_signature_mode_checks_chain_and_final_signature(signer):
    signed, _ = chain(signer)
    assert len(verify_chain(signed, signer.public_key, signatures="last")) == 5
    forged_last = [*signed[:-1], SignedRead(signed[-1].data, bytes(64))]
    with pytest.raises(SignatureError):
        verify_chain(forged_last, signer.public_key, signatures="last")
    # An inner read's bytes are covered by the chain: changing them breaks a link.
    inner = bytearray(signed[1].data)
    inner[-5] ^= 0x01
    with pytest.raises(ReadError):
        verify_chain([signed[0], SignedRead(bytes(inner), signed[1].sig), *signed[2:]],
                     signer.public_key, signatures="last")


def test_verify_read_alone(signer):
    signed, _ = chain(signer, 1)
    assert verify_read(signed[0], signer.public_key) == decode_read(signed[0].data)
    with pytest.raises(WrongKeyError):
        verify_read(signed[0], {})


def test_key_rotation_inside_a_chain(signer):
    first, tip = chain(signer, 2)
    new_signer = Signer.generate()
    second, _ = chain(new_signer, 2, after=tip)
    keys = {signer.key_id: signer.public_key, new_signer.key_id: new_signer.public_key}
    assert len(verify_chain(first + second, keys)) == 4
    with pytest.raises(WrongKeyError):
        verify_chain(first + second, signer.public_key)


def test_signature_is_over_the_exact_bytes(signer):
    signed, _ = chain(signer, 1)
    assert encode_read(decode_read(signed[0].data)) == signed[0].data
    with pytest.raises(MalformedReadError):
        verify_chain([SignedRead(signed[0].data + b" ", signed[0].sig)], signer.public_key)
