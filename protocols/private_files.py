"""Secret files (keys, tokens, codes) are used only while their owner alone may read them.

A token or key that group or others can read is no longer a secret, so every
such file is refused until it is ``chmod 600``: the edge's metrics token and
access code, and the TLS key of the agent's web ports.
"""

from __future__ import annotations

import stat
from pathlib import Path


class PrivateFileError(Exception):
    """A secret file that cannot be read, or others may read; names the file, never its text."""


def private_mode(path: Path, *, what: str) -> int:
    """The mode of the secret ``path``; :class:`PrivateFileError` if it is missing or too open."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise PrivateFileError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise PrivateFileError(f"{path}: mode {mode:04o} lets others read {what}; it must be "
                               f"0600 (run: chmod 600 {path})")
    return mode


def read_private_file(path: Path, *, what: str, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of the secret ``path`` (a longer file shows as too long)."""
    private_mode(path, what=what)
    try:
        with path.open("rb") as handle:
            return handle.read(limit + 1)
    except OSError as exc:
        raise PrivateFileError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
