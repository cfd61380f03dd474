"""The rate book: every rate file of a directory, loaded and checked together.

A utility's rates are a directory of ``<CODE>.yaml`` files (one per rate
code). Loading the book reads them all and reports every file's problem at
once (:class:`RateBookError`), so an analyst fixes a directory in one pass
rather than one file per run.

Example::

    book = RateBook.load(default_rate_dir())
    rate = book.rate("RES-W1")
    version = rate.version_on(date(2026, 10, 20))
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from hub.rates.model import RateTable
from hub.rates.schema import RateError, load_rate

SUFFIX = ".yaml"


class RateBookError(ValueError):
    """Rate files that cannot be loaded: ``errors`` lists every one, file by file."""

    def __init__(self, directory: str, errors: list[RateError]) -> None:
        self.directory = directory
        self.errors = tuple(errors)
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(f"{directory}: {len(self.errors)} rate file(s) with problems:\n{lines}")


class UnknownRateError(KeyError):
    """A rate code the book does not have; the message lists the codes it has."""

    def __init__(self, code: str, known: tuple[str, ...]) -> None:
        super().__init__(code)
        self.code = code
        self.known = known

    def __str__(self) -> str:
        return (f"no rate {self.code!r} in the rate book; it has "
                f"{', '.join(self.known) or 'no rates'}")


class RateBook:
    """Rate tables by code; build one with :meth:`RateBook.load` (or from tables, in tests)."""

    def __init__(self, rates: Mapping[str, RateTable], source: str = "") -> None:
        self._rates = MappingProxyType(dict(sorted(rates.items())))
        self.source = source

    def __repr__(self) -> str:
        return f"RateBook({self.source!r}, codes={list(self._rates)})"

    def __iter__(self) -> Iterator[RateTable]:
        return iter(self._rates.values())

    def __len__(self) -> int:
        return len(self._rates)

    def __contains__(self, code: object) -> bool:
        return code in self._rates

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._rates)

    def rate(self, code: str) -> RateTable:
        """The table of rate ``code``; :class:`UnknownRateError` (a ``KeyError``) if none."""
        try:
            return self._rates[code]
        except KeyError:
            raise UnknownRateError(code, self.codes) from None

    @classmethod
    def load(cls, directory: str | Path) -> RateBook:
        """Every ``*.yaml`` of ``directory``; all files' errors in one :class:`RateBookError`."""
        where = Path(directory)
        if not where.is_dir():
            raise RateBookError(str(where), [RateError(str(where), "(file)",
                                                       "not a directory of rate files")])
        rates: dict[str, RateTable] = {}
        errors: list[RateError] = []
        for path in sorted(where.glob(f"*{SUFFIX}")):
            try:
                rate = load_rate(path)
            except RateError as error:
                errors.append(error)
                continue
            rates[rate.code] = rate
        if errors:
            raise RateBookError(str(where), errors)
        if not rates:
            raise RateBookError(str(where), [RateError(str(where), "(file)",
                                                       f"no rate files (*{SUFFIX}) in it")])
        return cls(rates, str(where))


def default_rate_dir() -> Path:
    """The sample rate tables shipped with meterhub (``hub/rates/tables``)."""
    return Path(str(importlib.resources.files("hub.rates") / "tables"))
