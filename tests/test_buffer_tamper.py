"""Tampering with any stored byte of the buffer is caught by verification."""

import itertools
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.buffer import EdgeBuffer
from protocols.errors import ChainError, ReadError, SeqGapError
from protocols.signing import Signer
from tests.readings import readings

READS = 12


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A closed buffer file (WAL checkpointed) of 12 reads, and the key that signed them."""
    signer = Signer.generate()
    path = tmp_path_factory.mktemp("pristine") / "buffer.sqlite"
    with EdgeBuffer(path, collector="gw-0001", signer=signer) as buffer:
        buffer.append(readings(READS))
    return path, signer


@pytest.fixture(autouse=True, scope="module")
def scratch():
    """Copies live here; removed when the module's tests are done."""
    with tempfile.TemporaryDirectory() as directory:
        _scratch[:] = [Path(directory)]
        yield


_scratch: list[Path] = []
_copies = itertools.count()


def tampered_copy(pristine_path: Path, statement: str, params=()) -> Path:
    target = _scratch[0] / f"copy-{next(_copies)}.sqlite"
    shutil.copy(pristine_path, target)
    conn = sqlite3.connect(target)
    conn.execute(statement, params)
    conn.commit()
    conn.close()
    return target


def verify(path: Path, signer: Signer) -> int:
    with EdgeBuffer(path, collector="gw-0001") as buffer:
        return buffer.verify(signer.public_key)


def test_the_untouched_copy_verifies(pristine):
    path, signer = pristine
    assert verify(tampered_copy(path, "SELECT 1"), signer) == READS


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    column=st.sampled_from(["data", "sig"]),
    seq=st.integers(1, READS),
    position=st.integers(0, 10_000),
    mask=st.integers(1, 255),
)
def test_any_changed_byte_of_a_read_or_signature_is_detected(pristine, column, seq, position,
                                                            mask):
    path, signer = pristine
    conn = sqlite3.connect(path)
    row = conn.execute(f"SELECT {column} FROM reads WHERE seq = ?", [seq]).fetchone()
    value = bytearray(row[0])
    conn.close()
    value[position % len(value)] ^= mask
    copy = tampered_copy(path, f"UPDATE reads SET {column} = ? WHERE seq = ?", [bytes(value), seq])
    with pytest.raises(ReadError):
        verify(copy, signer)


def test_a_deleted_read_is_a_seq_gap(pristine):
    path, signer = pristine
    with pytest.raises(SeqGapError):
        verify(tampered_copy(path, "DELETE FROM reads WHERE seq = 5"), signer)


def test_deleted_newest_reads_are_detected(pristine):
    path, signer = pristine
    with pytest.raises(ChainError, match="tip"):
        verify(tampered_copy(path, "DELETE FROM reads WHERE seq >= 10"), signer)


def test_deleted_oldest_reads_are_detected(pristine):
    path, signer = pristine
    with pytest.raises(SeqGapError):
        verify(tampered_copy(path, "DELETE FROM reads WHERE seq <= 2"), signer)


def test_swapped_reads_are_detected(pristine):
    path, signer = pristine
    copy = tampered_copy(path, "UPDATE reads SET seq = -seq WHERE seq IN (3, 4)")
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE reads SET seq = 4 WHERE seq = -3")
    conn.execute("UPDATE reads SET seq = 3 WHERE seq = -4")
    conn.commit()
    conn.close()
    with pytest.raises(ReadError):
        verify(copy, signer)


def test_a_substituted_key_table_does_not_fool_verification_with_the_real_key(pristine):
    path, signer = pristine
    impostor = Signer.generate()
    from protocols.signing import public_key_pem

    copy = tampered_copy(path, "UPDATE keys SET public_key = ?",
                         [public_key_pem(impostor.public_key).decode()])
    with pytest.raises(ReadError):
        verify(copy, impostor)
    assert verify(copy, signer) == READS  # the reads themselves are intact
