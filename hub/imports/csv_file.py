"""Reading a CIS export: UTF-8 CSV with a known header, each record tagged with its line.

Problems are reported by physical line number, so an operator can open the
file in an editor and go there; a record whose quoted field spans lines is
reported at the line it starts on. A file that is not the expected file at
all (unreadable, not UTF-8, broken CSV quoting, a header with unknown or
missing columns) raises :class:`FileUnusable`: its rows would mean nothing.
A record with the wrong number of fields is a row problem instead, reported
with the rest so one pass over the file finds them all.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hub.imports.problems import FILE, NO_LINE, ROW, FileUnusable, Problem

ENCODING = "utf-8-sig"
"""UTF-8, with the byte order mark spreadsheet programs put first tolerated (and dropped)."""


@dataclass(frozen=True)
class Record:
    """One CSV record: the physical line it starts on, and its fields by column name."""

    line: int
    fields: Mapping[str, str]


@dataclass(frozen=True)
class CsvTable:
    """A file's records in order, and the records that could not be mapped to the header."""

    file: str
    records: tuple[Record, ...]
    problems: tuple[Problem, ...]


def read_csv(path: Path | str, columns: Collection[str]) -> CsvTable:
    """Read ``path``, whose header must hold exactly ``columns`` (in any order).

    Field values are stripped of surrounding whitespace; records that are
    empty or hold only empty fields (spreadsheets write ``,,,,`` lines) are
    skipped.

    Raises :class:`FileUnusable` when the file cannot be read, is not UTF-8,
    breaks CSV quoting, or has another header.
    """
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FileUnusable([Problem(file, NO_LINE, FILE, f"cannot read: {exc.strerror or exc}")]
                           ) from exc
    try:
        text = data.decode(ENCODING)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileUnusable([Problem(file, line, FILE, f"not UTF-8 text (byte {exc.start}: "
                                    f"{exc.reason}); export the file as UTF-8 CSV")]) from exc
    # newline="" hands the csv module each line with its own ending, as it requires
    return _read(file, csv.reader(io.StringIO(text, newline=""), strict=True), columns)


class _Reader(Protocol):
    """What this module uses of a ``csv.reader`` (whose class the csv module does not export)."""

    line_num: int

    def __next__(self) -> list[str]: ...


def _read(file: str, reader: _Reader, columns: Collection[str]) -> CsvTable:
    rows = _numbered(file, reader)
    header_line, header = next(rows, (1, []))
    names = [name.strip() for name in header]
    _check_header(file, header_line, names, columns)
    records, problems = [], []
    for line, values in rows:
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(names):
            problems.append(Problem(file, line, ROW, f"has {len(values)} fields; the header has "
                                    f"{len(names)}"))
            continue
        records.append(Record(line, {name: value.strip()
                                     for name, value in zip(names, values, strict=True)}))
    return CsvTable(file, tuple(records), tuple(problems))


def _numbered(file: str, reader: _Reader) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, its fields); the csv module only counts lines read so far."""
    line_num = 0
    while True:
        start = line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileUnusable([Problem(file, start, FILE, f"not valid CSV: {exc}")]) from exc
        line_num = reader.line_num
        yield start, values


def _check_header(file: str, line: int, names: list[str], columns: Collection[str]) -> None:
    expected = ", ".join(columns)
    if not any(names):
        raise FileUnusable([Problem(file, line, FILE, f"no header; expected: {expected}")])
    reasons = []
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        reasons.append(f"column(s) named twice: {', '.join(twice)}")
    unknown = [name for name in dict.fromkeys(names) if name not in columns]
    if unknown:
        reasons.append(f"unknown column(s): {', '.join(unknown)}")
    missing = [name for name in columns if name not in names]
    if missing:
        reasons.append(f"missing column(s): {', '.join(missing)}")
    if reasons:
        raise FileUnusable([Problem(file, line, FILE, f"{'; '.join(reasons)} (expected exactly: "
                                    f"{expected})")])
