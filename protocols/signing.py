"""Ed25519 signatures over canonical read bytes, and the key id that names a key.

A ``key_id`` is the first 16 bytes of SHA-256 over the 32-byte raw public key,
as 32 lowercase hex digits. It is derived, never assigned, so an edge and the
hub always agree on it, and it is part of the signed bytes, so a read cannot
be re-attributed to another key without breaking its signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols.errors import SignatureError

SIGNATURE_BYTES = 64


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """The derived name of ``public_key``: 32 hex digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class Signer:
    """A collector's private key with its derived id; the only thing that signs reads."""

    private_key: Ed25519PrivateKey = field(repr=False)
    public_key: Ed25519PublicKey = field(init=False, repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        public_key = self.private_key.public_key()
        object.__setattr__(self, "public_key", public_key)
        object.__setattr__(self, "key_id", key_id_for(public_key))

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def verify_signature(public_key: Ed25519PublicKey, data: bytes, sig: bytes) -> None:
    """Raise :class:`SignatureError` unless ``sig`` is ``public_key``'s signature of ``data``."""
    if len(sig) != SIGNATURE_BYTES:
        raise SignatureError(f"a signature is {SIGNATURE_BYTES} bytes, this one is {len(sig)}")
    try:
        public_key.verify(sig, data)
    except InvalidSignature:
        raise SignatureError("signature does not verify over the received bytes") from None


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM: what a collector hands the hub to be enrolled."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_raw_b64(public_key: Ed25519PublicKey) -> str:
    """The 32 raw bytes in base64: short enough to read out over the phone."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


class PublicKeyError(ValueError):
    """Bytes that are not an Ed25519 public key."""


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """Read a public key from PEM, or from the raw 32 bytes in base64."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, UnsupportedAlgorithm, binascii.Error) as exc:
        raise PublicKeyError(f"not an Ed25519 public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PublicKeyError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key
