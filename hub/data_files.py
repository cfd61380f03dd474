"""The hub's own data files (rule sets, rate tables, URDB tariffs): read with care, faulted well.

Each kind of file has its own error class, but every one says the same three
things — which file, where in it (a dotted key path, or ``(file)`` when the
file itself cannot be read), and why, in words a person can act on — and
every one is read the same way: bounded in size, decoded as UTF-8, an OS
error turned into that file's problem.

Example::

    class RateError(DataFileError): ...
    text = read_text(path, error=RateError, what="a rate file", max_bytes=1_000_000)
"""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """A data file that cannot be loaded: ``file``, ``key`` (where in it) and ``why``."""

    def __init__(self, file: str, key: str, why: str) -> None:
        super().__init__(f"{file}: {key}: {why}")
        self.file = file
        self.key = key
        self.why = why

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.why}"


def read_text(path: str | Path, *, error: type[DataFileError], what: str, max_bytes: int,
              encoding: str = "utf-8") -> str:
    """The text of ``path``, or ``error(path, "(file)", why)`` if it is too big or unreadable.

    ``what`` names the kind of file in the too-large message (``a rule set``).
    """
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise error(name, "(file)", f"{size} bytes is too large for {what} "
                                        f"(at most {max_bytes})")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(name, "(file)", exc.strerror or str(exc)) from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise error(name, "(file)", f"not UTF-8 text (byte {exc.start})") from None
