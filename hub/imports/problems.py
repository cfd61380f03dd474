"""What is wrong with a master data file, said where: the errors an import raises.

An import writes all of a file or none of it, so a refusal must tell the
operator everything to fix in one pass: each :class:`Problem` names the file,
the physical line (the header is line 1), the column and the reason. Two
kinds of refusal exist because they call for different fixes: a file that is
not the right file at all (:class:`FileUnusable`: unreadable, not UTF-8,
malformed CSV, wrong header) and a right file with wrong rows
(:class:`ImportRejected`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROW = "(row)"
"""Column of a problem about a whole row (wrong field count, a duplicate key)."""
FILE = "(file)"
"""Column of a problem about the whole file (header, encoding, CSV syntax)."""
NO_LINE = 0
"""Line of a problem that has no line (the file could not be opened)."""


@dataclass(frozen=True, order=True)
class Problem:
    """One reason a file was not imported, where it is: ``file:line`` and the column."""

    file: str
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line == NO_LINE else f"{self.file}:{self.line}"
        return f"{where}: {self.column}: {self.reason}"


class ImportError_(Exception):  # the trailing _ keeps the builtin ImportError unshadowed
    """A master data file that was not imported; nothing of it was written."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems))
        if not self.problems:
            raise ValueError(f"{type(self).__name__} needs at least one problem")
        first = self.problems[0]
        more = len(self.problems) - 1
        super().__init__(f"{first}" + (f" (and {more} more)" if more else ""))


class FileUnusable(ImportError_):
    """The file cannot be read as this kind of file: missing, not UTF-8, bad CSV, wrong header."""


class ImportRejected(ImportError_):
    """The file reads, but rows are invalid or conflict with the store; every problem is listed."""
