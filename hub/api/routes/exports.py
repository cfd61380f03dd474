"""API: cycle exports — list them, download the file and its manifest, verify them again."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse

from hub.api.auth import OPERATOR, VIEWER, Principal
from hub.api.errors import conflict, not_found, problem_responses
from hub.api.pagination import Page, PageParams, page_params
from hub.api.routes.meters import KEY_PATTERN
from hub.views.exports import (
    MANIFEST_MEDIA_TYPE,
    MEDIA_TYPES,
    ExportOut,
    VerifyResult,
    export_page,
    export_row,
    export_view,
    files_of,
    verify,
)

router = APIRouter(tags=["exports"])

ExportId = Annotated[int, Path(ge=1, le=2**62, description="The export's id.")]
_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}


def _exports_dir(request: Request) -> FilePath:
    return request.app.state.settings.exports_dir


@router.get("/exports", responses=problem_responses())
def list_exports(
    request: Request, _who: Annotated[Principal, Depends(VIEWER)],
    paging: Annotated[PageParams, Depends(page_params)],
    cycle: Annotated[str | None, Query(min_length=1, max_length=64, pattern=KEY_PATTERN,
                                       description="Only this cycle's exports.")] = None,
) -> Page[ExportOut]:
    """Cycle exports, newest first, with their last verification."""
    with request.app.state.store.connect() as conn:
        items, total = export_page(conn, paging, _exports_dir(request), cycle=cycle)
    return Page[ExportOut].of(items, total, paging)


@router.get("/exports/{export_id}", responses=problem_responses(404))
def show_export(request: Request, export_id: ExportId,
                _who: Annotated[Principal, Depends(VIEWER)]) -> ExportOut:
    """One export: its file, rows, SHA-256, signing key and last verification."""
    with request.app.state.store.connect() as conn:
        found = export_view(conn, export_id, _exports_dir(request))
    if found is None:
        raise not_found(f"export {export_id}")
    return found


def _file(request: Request, export_id: int, *, manifest: bool) -> FileResponse:
    with request.app.state.store.connect() as conn:
        row = export_row(conn, export_id)
    if row is None:
        raise not_found(f"export {export_id}")
    paths = files_of(row, _exports_dir(request))
    path = None if paths is None else paths.manifest if manifest else paths.file
    if paths is None or path is None or not path.is_file():
        raise not_found(f"the {'manifest' if manifest else 'file'} of export {export_id} "
                        "(it is no longer on disk)")
    return FileResponse(path, media_type=MANIFEST_MEDIA_TYPE if manifest else paths.media_type,
                        filename=path.name, content_disposition_type="attachment")


@router.get("/exports/{export_id}/file", response_class=FileResponse, responses={
    200: {"description": "The cycle file, as an attachment.",
          "content": {media: _BINARY for media in MEDIA_TYPES.values()}},
    **problem_responses(404)})
def download_file(request: Request, export_id: ExportId,
                  _who: Annotated[Principal, Depends(VIEWER)]) -> FileResponse:
    """The cycle file exactly as written (CSV, fixed-width text or JSON Lines)."""
    return _file(request, export_id, manifest=False)


@router.get("/exports/{export_id}/manifest", response_class=FileResponse, responses={
    200: {"description": "The signed manifest, as an attachment.",
          "content": {MANIFEST_MEDIA_TYPE: {"schema": {"type": "object"}}}},
    **problem_responses(404)})
def download_manifest(request: Request, export_id: ExportId,
                      _who: Annotated[Principal, Depends(VIEWER)]) -> FileResponse:
    """The signed manifest beside the cycle file (its SHA-256, rows, totals, signature)."""
    return _file(request, export_id, manifest=True)


@router.post("/exports/{export_id}/verify", responses=problem_responses(404, 409))
def verify_one(request: Request, export_id: ExportId,
               _who: Annotated[Principal, Depends(OPERATOR)]) -> VerifyResult:
    """Check the file on disk against its manifest with the hub's key, now, and keep the
    verdict. A file that fails is an answer (``ok: false`` and what failed), not an error."""
    signer = request.app.state.settings.export_signer
    if signer is None:
        raise conflict("the hub has no export key to verify with: start `meterhub serve` "
                       "with --hub-key")
    with request.app.state.store.begin() as conn:
        result = verify(conn, export_id, _exports_dir(request), signer.public_key)
    if result is None:
        raise not_found(f"export {export_id}")
    return result
