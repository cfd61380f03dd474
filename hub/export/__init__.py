"""CIS export: a billing cycle's file for the utility's CIS, its signed manifest, Green Button.

The modules, pure core first:

- :mod:`~hub.export.rows` — the plain data: one row per account-meter, its
  bill lines, checked once at construction;
- :mod:`~hub.export.formats` — CSV, fixed-width and JSON Lines bytes, and the
  readers that turn them back into rows; the fixed-width layout as data;
- :mod:`~hub.export.manifest` — the manifest (rows, totals, SHA-256, software
  version) signed with the hub's Ed25519 key, and its verification;
- :mod:`~hub.export.green_button` — an account's usage and bill summary as a
  Green Button (NAESB ESPI) Atom feed;

and the shell that writes to disk:

- :mod:`~hub.export.files` — the cycle file and its manifest, written
  atomically, byte-identical on re-export.

Example::

    paths = write_export(Path("exports"), "C2026-11", rows, Format.CSV, hub_signer,
                         generated_at=bills_computed_at)
    verified = verify_export(paths.file, paths.manifest, hub_signer.public_key)
"""

from hub.export.files import ExportPaths, write_export
from hub.export.formats import (
    ExportParseError,
    FieldWidthError,
    Format,
    count_rows,
    fixed_width_layout,
    layout_markdown,
    parse,
    render,
)
from hub.export.green_button import (
    BillSummary,
    GreenButtonError,
    IntervalUsage,
    green_button_xml,
)
from hub.export.manifest import (
    Check,
    Manifest,
    ManifestError,
    VerificationError,
    VerifiedExport,
    build_manifest,
    manifest_path_for,
    verify_export,
)
from hub.export.rows import ExportError, ExportLine, ExportRow, ExportRowError

__all__ = [
    "BillSummary",
    "Check",
    "ExportError",
    "ExportLine",
    "ExportParseError",
    "ExportPaths",
    "ExportRow",
    "ExportRowError",
    "FieldWidthError",
    "Format",
    "GreenButtonError",
    "IntervalUsage",
    "Manifest",
    "ManifestError",
    "VerificationError",
    "VerifiedExport",
    "build_manifest",
    "count_rows",
    "fixed_width_layout",
    "green_button_xml",
    "layout_markdown",
    "manifest_path_for",
    "parse",
    "render",
    "verify_export",
    "write_export",
]
