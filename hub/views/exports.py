"""Cycle exports as the API and the pages show them: the files, and whether they still verify.

Before a cycle file goes to the CIS an operator wants to know it is still
the file the hub signed. Verification runs the same checks a CIS would
(:func:`hub.export.manifest.verify_export`: key, SHA-256, rows and totals
counted from the file, signature) against the file on disk now, and keeps
the verdict with the export, so the next person sees when it was last
checked and what failed. A failed check is an answer, not an error.

Example::

    with store.begin() as conn:
        result = verify(conn, 3, settings.exports_dir, signer.public_key)
    print(result.ok, result.check, result.detail)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row, select, update

from hub.api.pagination import PageParams, paged_rows
from hub.export.formats import Format
from hub.export.manifest import VerificationError, verify_export
from hub.store.tables import exports

MEDIA_TYPES = {Format.CSV: "text/csv", Format.FIXED: "text/plain",
               Format.JSONL: "application/x-ndjson"}
"""What each cycle-file format is served as (UTF-8 text every one)."""
MANIFEST_MEDIA_TYPE = "application/json"
MISSING_FILE = "missing_file"


class VerificationOut(BaseModel):
    verified_at: datetime | None = Field(description="Null: never verified.")
    ok: bool | None
    detail: str | None = Field(description="What passed, or the checks that failed.")


class ExportOut(BaseModel):
    id: int
    cycle: str
    format: Format
    file_name: str
    manifest_name: str
    rows: int
    sha256: str = Field(description="SHA-256 of the cycle file when it was written (hex).")
    key_id: str = Field(description="The hub key that signed the manifest.")
    created_at: datetime
    created_by: str
    file_available: bool = Field(description="The file and its manifest are still on disk.")
    verification: VerificationOut


class FailedCheck(BaseModel):
    check: str
    detail: str


class VerifyResult(BaseModel):
    export_id: int
    ok: bool
    verified_at: datetime
    check: str | None = Field(description="The first (most specific) check that failed.")
    detail: str = Field(description="What passed, or the first failure's explanation.")
    failures: list[FailedCheck]


@dataclass(frozen=True)
class ExportFiles:
    file: Path
    manifest: Path
    media_type: str


def files_of(row: Row, exports_dir: Path) -> ExportFiles | None:
    """Where an export's files live (``{exports_dir}/{id}/``); None for a name that would
    leave that directory or an export still being written."""
    names = (row.file_name, row.manifest_name)
    if not all(names) or any(Path(n).name != n or n in (".", "..") for n in names):
        return None
    directory = exports_dir / str(row.id)
    return ExportFiles(directory / row.file_name, directory / row.manifest_name,
                       MEDIA_TYPES[Format(row.format)])


def _out(row: Row, exports_dir: Path) -> ExportOut:
    paths = files_of(row, exports_dir)
    return ExportOut(
        id=row.id, cycle=row.cycle, format=Format(row.format), file_name=row.file_name,
        manifest_name=row.manifest_name, rows=row.rows, sha256=row.sha256, key_id=row.key_id,
        created_at=row.created_at, created_by=row.created_by,
        file_available=paths is not None and paths.file.is_file() and paths.manifest.is_file(),
        verification=VerificationOut(verified_at=row.verified_at, ok=row.verified_ok,
                                     detail=row.verify_detail))


def export_page(conn: Connection, params: PageParams, exports_dir: Path, *,
                cycle: str | None = None) -> tuple[list[ExportOut], int]:
    """A page of exports, newest first."""
    query = select(exports)
    if cycle is not None:
        query = query.where(exports.c.cycle == cycle)
    rows, total = paged_rows(conn, query.order_by(exports.c.id.desc()), params)
    return [_out(row, exports_dir) for row in rows], total


def export_row(conn: Connection, export_id: int) -> Row | None:
    return conn.execute(select(exports).where(exports.c.id == export_id)).first()


def export_view(conn: Connection, export_id: int, exports_dir: Path) -> ExportOut | None:
    row = export_row(conn, export_id)
    return _out(row, exports_dir) if row is not None else None


def verify(conn: Connection, export_id: int, exports_dir: Path, public_key: Ed25519PublicKey,
           *, now: datetime | None = None) -> VerifyResult | None:
    """Verify the export's file on disk against its manifest and keep the verdict; None if
    there is no such export."""
    row = export_row(conn, export_id)
    if row is None:
        return None
    now = now or datetime.now(UTC)
    paths = files_of(row, exports_dir)
    failures: list[FailedCheck] = []
    detail = ""
    if paths is None:
        failures.append(FailedCheck(check=MISSING_FILE, detail="the export has no file names "
                                    "on record"))
    else:
        try:
            verified = verify_export(paths.file, paths.manifest, public_key)
        except VerificationError as exc:
            failures.extend(FailedCheck(check=f.check.value, detail=f.detail)
                            for f in exc.failures)
        except OSError as exc:
            failures.append(FailedCheck(check=MISSING_FILE, detail=f"cannot read "
                                        f"{Path(exc.filename or paths.file).name}: "
                                        f"{exc.strerror or exc}"))
        else:
            detail = (f"every check passed: {verified.rows} rows, SHA-256 {verified.sha256}, "
                      f"signed by key {verified.key_id}")
    ok = not failures
    stored = detail if ok else "; ".join(f"{f.check}: {f.detail}" for f in failures)
    conn.execute(update(exports).where(exports.c.id == export_id).values(
        verified_at=now, verified_ok=ok, verify_detail=stored))
    return VerifyResult(export_id=export_id, ok=ok, verified_at=now,
                        check=failures[0].check if failures else None,
                        detail=detail if ok else failures[0].detail, failures=failures)
