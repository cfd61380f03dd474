"""The collector's signing key on disk: created 0600, refused if anyone else can read it.

A gateway's key is what makes its reads evidence, so the file is written
atomically (a power cut leaves the old key or the new one, never half of one),
readable by its owner only, and optionally encrypted with a passphrase taken
from an environment variable (never from the command line, where ``ps`` would
show it). Loading refuses a key that group or others may read, the way ssh
refuses a private key with loose permissions.

Example::

    signer = generate_key_file(Path("/var/lib/meterhub/collector.key"))
    signer = load_signer(Path("/var/lib/meterhub/collector.key"))
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.files import write_atomic
from protocols.signing import Signer

log = logging.getLogger(__name__)

PASSPHRASE_ENV = "METERHUB_KEY_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
"""Default name of the environment variable holding the key's passphrase."""
KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """A key file that cannot be written or used; names the file and why."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"{path}: {why}")


class InsecureKeyFileError(KeyFileError):
    """The key file can be read by someone other than its owner."""


@dataclass(frozen=True)
class KeyFileInfo:
    """What ``edge-agent keys show`` reports about a key file."""

    path: Path
    mode: int
    encrypted: bool
    key_id: str
    public_key: Ed25519PublicKey


def passphrase_from_env(variable: str = PASSPHRASE_ENV) -> bytes | None:
    """The passphrase in ``variable``, or ``None`` when it is unset or empty."""
    value = os.environ.get(variable, "")
    return value.encode("utf-8") if value else None


def generate_key_file(
    path: Path, *, passphrase: bytes | None = None, overwrite: bool = False
) -> Signer:
    """Create a new Ed25519 key at ``path`` (mode 0600) and return its signer."""
    signer = Signer.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    try:
        write_atomic(path, pem, mode=KEY_FILE_MODE, overwrite=overwrite)
    except FileExistsError:
        raise KeyFileError(
            path, "a key already exists here; use --force to replace it (the hub then "
                  "rejects this collector's reads until the new key is enrolled)"
        ) from None
    log.info("generated collector key %s at %s (encrypted=%s)", signer.key_id, path,
             passphrase is not None)
    return signer


def check_key_permissions(path: Path) -> int:
    """Return the file's mode, or raise :class:`InsecureKeyFileError` if it is too open."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyFileError(path, "no key file here; create one with `edge-agent keys generate`") \
            from None
    if mode & 0o077:
        raise InsecureKeyFileError(
            path,
            f"mode {mode:04o} lets others read the private key; it must be 0600 "
            f"(run: chmod 600 {path}) — refusing to use it",
        )
    return mode


def load_signer(path: Path, *, passphrase: bytes | None = None) -> Signer:
    """Load the key at ``path`` after checking that only its owner can read it."""
    check_key_permissions(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except TypeError as exc:  # cryptography's way of saying encrypted/unencrypted mismatch
        if passphrase is None:
            raise KeyFileError(
                path, f"the key is encrypted; put its passphrase in ${PASSPHRASE_ENV} "
                      "(or the variable your config names)"
            ) from None
        raise KeyFileError(path, f"cannot load key: {exc}") from None
    except ValueError:
        raise KeyFileError(
            path, "not a readable private key, or the passphrase is wrong"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(path, f"expected an Ed25519 key, found {type(key).__name__}")
    return Signer(key)


def key_file_info(path: Path, *, passphrase: bytes | None = None) -> KeyFileInfo:
    mode = check_key_permissions(path)
    encrypted = b"ENCRYPTED" in path.read_bytes()[:64]
    signer = load_signer(path, passphrase=passphrase)
    return KeyFileInfo(path=path, mode=mode, encrypted=encrypted, key_id=signer.key_id,
                       public_key=signer.public_key)
