"""Master data import: the CIS's accounts, meters, cycles, routes and billed-read history files.

One call per file, whole or nothing: the file is read (:mod:`.csv_file`),
every row parsed (:mod:`.rows`), checked against the store and turned into
a plan (:mod:`.apply`), and written in one transaction only if no problem
was found anywhere. A refusal lists every problem with file, line and
column. Importing the same file again writes nothing.

Example::

    store = Store.open("sqlite:///meterhub.sqlite", upgrade_schema=True)
    for kind in ("accounts", "meters", "cycles", "routes"):  # each refers to earlier ones
        summary = import_file(store, kind, f"demo/master_data/{kind}.csv")
        print(summary.counts)  # {'accounts': Counts(added=60, changed=0, unchanged=0, ...)}
    import_file(store, Kind.HISTORY, "history.csv")  # billed reads of past cycles, for the edits
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hub.imports.apply import PLANNERS, Counts, Plan
from hub.imports.csv_file import read_csv
from hub.imports.problems import FileUnusable, ImportError_, ImportRejected, Problem
from hub.imports.rows import COLUMNS, Kind, parse_records
from hub.store import Store


@dataclass(frozen=True)
class ImportSummary:
    """What one import did (or, for a dry run, would do), per table."""

    kind: Kind
    file: str
    counts: dict[str, Counts]
    dry_run: bool = False

    @property
    def writes(self) -> int:
        """Rows added, changed or removed; 0 for a file that matches the store."""
        return sum(counts.writes for counts in self.counts.values())


def import_file(store: Store, kind: Kind | str, path: Path | str, *, dry_run: bool = False,
                now: datetime | None = None) -> ImportSummary:
    """Import one CIS file of ``kind`` into ``store`` in one transaction.

    ``dry_run`` checks and counts everything and writes nothing. ``now`` is
    the ``updated_at`` of every row added or changed (default: the current
    time, UTC).

    Raises :class:`FileUnusable` (the file cannot be read as a ``kind``
    file) or :class:`ImportRejected` (with every row problem); either way
    nothing is written.
    """
    kind = Kind(kind)
    table = read_csv(path, COLUMNS[kind])
    parsed = parse_records(kind, table.records, file=table.file)
    file, unmapped = table.file, table.problems
    del table  # its records, the bulk of a large history file, are done with
    with store.begin() as conn:
        plan = PLANNERS[kind](conn, parsed.rows, file=file)
        problems = [*unmapped, *parsed.problems, *plan.problems]
        if problems:
            raise ImportRejected(problems)
        if not dry_run:
            plan.write(conn, now or datetime.now(UTC))
    return ImportSummary(kind, file, plan.counts, dry_run)


__all__ = [
    "COLUMNS",
    "Counts",
    "FileUnusable",
    "ImportError_",
    "ImportRejected",
    "ImportSummary",
    "Kind",
    "Plan",
    "Problem",
    "import_file",
]
