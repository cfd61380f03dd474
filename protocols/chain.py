"""Each collector's reads form a hash chain; this module makes and checks it.

``hash`` = SHA-256 of a read's canonical bytes, as 64 hex digits. Every read's
``prev_hash`` is the hash of the read before it, and the read with ``seq`` 1
points at :data:`GENESIS_HASH` (64 zeros). Because ``prev_hash`` is inside the
signed bytes, a deleted, altered, inserted or reordered read breaks the chain,
and one valid signature at the end of a run of linked reads vouches for every
read before it — which is how the hub authenticates a batch with one signature
check (``signatures="last"``) and verifies the rest in the background.

Example::

    signer = Signer.generate()
    sealed, tip = sign_and_chain(readings, signer=signer, collector="gw-1", after=GENESIS_TIP)
    reads = verify_chain([s.signed for s in sealed], signer.public_key, collector="gw-1")
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.canonical import decode_read, encode_chained
from protocols.errors import (
    ChainError,
    ReadError,
    SeqGapError,
    SeqRegressionError,
    WrongCollectorError,
    WrongKeyError,
)
from protocols.read import Read, Reading
from protocols.signing import Signer, key_id_for, verify_signature

GENESIS_HASH = "0" * 64
"""``prev_hash`` of every collector's read ``seq`` 1."""


def read_hash(data: bytes) -> str:
    """The chain hash of a read's canonical bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedRead:
    """A read as it travels: the exact signed bytes and the signature over them."""

    data: bytes
    sig: bytes

    @property
    def hash(self) -> str:
        return read_hash(self.data)


class SealedRead(NamedTuple):
    """A signed read as its collector holds it, with the seq known without parsing."""

    seq: int
    data: bytes
    sig: bytes

    @property
    def signed(self) -> SignedRead:
        return SignedRead(self.data, self.sig)


@dataclass(frozen=True, slots=True)
class ChainTip:
    """Where a chain ends: the last read's seq and hash (seq 0 before the first read)."""

    seq: int
    hash: str


GENESIS_TIP = ChainTip(0, GENESIS_HASH)

PublicKeys = Mapping[str, Ed25519PublicKey] | Ed25519PublicKey


def sign_and_chain(
    readings: Iterable[Reading], *, signer: Signer, collector: str, after: ChainTip
) -> tuple[list[SealedRead], ChainTip]:
    """Give each reading the next seq and the previous hash, encode it, and sign it.

    Returns the sealed reads and the new tip; nothing is stored here.
    """
    sealed: list[SealedRead] = []
    seq, prev_hash = after.seq, after.hash
    key_id, sign = signer.key_id, signer.sign
    for reading in readings:
        seq += 1
        data = encode_chained(
            reading, collector=collector, seq=seq, prev_hash=prev_hash, key_id=key_id
        )
        sealed.append(SealedRead(seq, data, sign(data)))
        prev_hash = read_hash(data)
    return sealed, ChainTip(seq, prev_hash)


def verify_read(signed: SignedRead, keys: PublicKeys) -> Read:
    """Check one read on its own: canonical form, known key, valid signature."""
    read = decode_read(signed.data)
    _check_signature(signed, read, _key_map(keys))
    return read


def verify_chain(
    reads: Iterable[SignedRead],
    keys: PublicKeys,
    *,
    collector: str | None = None,
    after: ChainTip = GENESIS_TIP,
    signatures: Literal["each", "last"] = "each",
) -> list[Read]:
    """Check that ``reads`` continue the chain ending at ``after``, and their signatures.

    Every read's hash is recomputed from the bytes given, its seq must be the
    next one and its ``prev_hash`` the previous read's hash. ``signatures="each"``
    verifies every signature; ``"last"`` only the last one, which through the
    chain authenticates the others (the hub's cheap batch check — the other
    signatures must still be verified before the reads are relied on).
    Returns the parsed reads; raises the first problem found as a typed
    :class:`~protocols.errors.ReadError` naming collector and seq.
    """
    key_map = _key_map(keys)
    tip = after
    parsed: list[Read] = []
    last: SignedRead | None = None
    for signed in reads:
        read = decode_read(signed.data)
        if collector is None:
            collector = read.collector
        elif read.collector != collector:
            raise WrongCollectorError(
                f"read belongs to collector {read.collector!r}, not {collector!r}",
                collector=collector, seq=read.seq,
            )
        _check_link(read, tip)
        if signatures == "each":
            _check_signature(signed, read, key_map)
        tip = ChainTip(read.seq, signed.hash)
        parsed.append(read)
        last = signed
    if signatures == "last" and last is not None:
        _check_signature(last, parsed[-1], key_map)
    return parsed


def _check_link(read: Read, tip: ChainTip) -> None:
    expected = tip.seq + 1
    where = {"collector": read.collector, "seq": read.seq}
    if read.seq > expected:
        raise SeqGapError(
            f"expected seq {expected}; reads {expected}–{read.seq - 1} are missing", **where
        )
    if read.seq < expected:
        raise SeqRegressionError(f"expected seq {expected}; seq went back to {read.seq}", **where)
    if read.prev_hash != tip.hash:
        raise ChainError(
            f"prev_hash {read.prev_hash[:16]}… does not match the hash of seq {tip.seq} "
            f"({tip.hash[:16]}…): a read before it was altered, removed or reordered",
            **where,
        )


def _check_signature(
    signed: SignedRead, read: Read, key_map: Mapping[str, Ed25519PublicKey]
) -> None:
    public_key = key_map.get(read.key_id)
    if public_key is None:
        known = ", ".join(sorted(key_map)) or "none"
        raise WrongKeyError(
            f"signed with key {read.key_id}, which is not one of this collector's keys ({known})",
            collector=read.collector, seq=read.seq,
        )
    try:
        verify_signature(public_key, signed.data, signed.sig)
    except ReadError as exc:
        raise exc.located(collector=read.collector, seq=read.seq) from None


def _key_map(keys: PublicKeys) -> Mapping[str, Ed25519PublicKey]:
    if isinstance(keys, Ed25519PublicKey):
        return {key_id_for(keys): keys}
    return keys
