"""Write a cycle file and its signed manifest to disk, atomically and reproducibly.

Both files go through :func:`edge_agent.files.write_atomic` (temporary name
beside the target, fsync, rename), the cycle file first and its manifest last:
a manifest never names a half-written file, and a crash between the two leaves
a file whose old manifest no longer verifies — detected, never silently
wrong. Exporting the same rows again overwrites both with identical bytes.

File names come from the cycle id and the format, ``C2026-11.csv`` beside
``C2026-11.csv.manifest.json``, so one directory holds a cycle's CSV,
fixed-width and JSON Lines files without one manifest replacing another.

Example::

    paths = write_export(Path("exports"), "C2026-11", rows, Format.CSV, hub_signer,
                         generated_at=bills_computed_at)
    print(paths.file, paths.signed.rows, paths.signed.sha256)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_agent.files import write_atomic
from hub.export.formats import Format, render
from hub.export.manifest import Manifest, build_manifest, manifest_path_for
from hub.export.rows import ExportError, ExportRow
from hub.imports.rows import CYCLE_ID_RE
from protocols.signing import Signer

log = logging.getLogger(__name__)

CYCLE_FILE_RE = CYCLE_ID_RE
"""A cycle id that is safe as a file name: no separators, no leading dot (import holds every
cycle id to this shape, so any imported cycle can be exported)."""


class ExportPathError(ExportError, ValueError):
    """A cycle id that cannot name a file."""


@dataclass(frozen=True)
class ExportPaths:
    """Where an export was written, and the manifest that was signed for it."""

    file: Path
    manifest: Path
    signed: Manifest


def export_file_name(cycle: str, fmt: Format | str) -> str:
    """``C2026-11.csv``, ``C2026-11.txt`` (fixed-width) or ``C2026-11.jsonl``."""
    if not CYCLE_FILE_RE.fullmatch(cycle):
        raise ExportPathError(f"cycle id {cycle!r} cannot name an export file (letters, "
                              "digits, '.', '_' and '-', at most 64, not starting with '.')")
    return f"{cycle}.{Format(fmt).extension}"


def write_export(directory: Path, cycle: str, rows: Iterable[ExportRow], fmt: Format | str,
                 signer: Signer, *, generated_at: datetime,
                 software_version: str | None = None) -> ExportPaths:
    """Render ``rows`` as ``cycle``'s file in ``fmt``, sign its manifest, write both.

    ``generated_at`` must come from the data (when the bills were computed), not
    the wall clock: it is in the manifest, so it decides whether a re-export is
    byte-identical.
    """
    fmt = Format(fmt)
    rows = list(rows)
    file = directory / export_file_name(cycle, fmt)
    data = render(rows, fmt, cycle=cycle, generated_at=generated_at)
    manifest = build_manifest(cycle=cycle, fmt=fmt, file_name=file.name, data=data, rows=rows,
                              signer=signer, generated_at=generated_at,
                              software_version=software_version)
    manifest_file = manifest_path_for(file)
    write_atomic(file, data)
    write_atomic(manifest_file, manifest.to_json())
    log.info("exported cycle %s: %s (%d rows, sha256 %s), manifest %s signed by key %s",
             cycle, file, manifest.rows, manifest.sha256, manifest_file, manifest.key_id)
    return ExportPaths(file, manifest_file, manifest)
