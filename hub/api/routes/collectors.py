"""API: collectors — who may send reads, whether they are talking, enrolment and revocation."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.api.auth import ADMIN, VIEWER, Principal
from hub.api.errors import conflict, not_found, problem_responses
from hub.api.pagination import Page, PageParams, page_params
from hub.store.collectors import CollectorError
from hub.views.collectors import (
    REASON_PATTERN,
    AlreadyRevoked,
    CollectorOut,
    CollectorState,
    EnrolledCollector,
    collector_page,
    collector_view,
    enrol_collector,
    revoke,
)
from protocols.read import COLLECTOR_RE
from protocols.signing import PublicKeyError, load_public_key, public_key_pem

router = APIRouter(tags=["collectors"])

COLLECTOR_PATTERN = f"^{COLLECTOR_RE.pattern}$"
CollectorId = Annotated[str, Path(min_length=1, max_length=64, pattern=COLLECTOR_PATTERN,
                                  description="Collector id (its broker user name).")]
PUBLIC_KEY_PATTERN = (
    r"^(?:-----BEGIN PUBLIC KEY-----\r?\nMCowBQYDK2VwAyEA[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
    r"\r?\n-----END PUBLIC KEY-----(?:\r?\n)?|[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$")
"""An Ed25519 public key exactly as `edge-agent keys export-public` writes it (PEM:
SubjectPublicKeyInfo, whose base64 always starts ``MCowBQYDK2VwAyEA``), or its raw 32
bytes in base64 — so the OpenAPI document says precisely which keys are accepted."""


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, json_schema_extra={"pattern": COLLECTOR_PATTERN},
                    description="Letters, digits, '.', '_' and '-'; its broker user name.",
                    examples=["gw-0001"])
    public_key: str = Field(json_schema_extra={"pattern": PUBLIC_KEY_PATTERN, "minLength": 44,
                                               "maxLength": 128},
                            description="The collector's Ed25519 public key: PEM text as "
                            "`edge-agent keys export-public` prints it (or the raw 32 bytes "
                            "in base64).")

    @field_validator("id")
    @classmethod
    def collector_id(cls, value: str) -> str:
        if not COLLECTOR_RE.fullmatch(value):
            raise ValueError("a collector id is letters, digits, '.', '_' and '-', starting "
                             "with a letter or digit, at most 64 characters")
        return value

    @field_validator("public_key")
    @classmethod
    def ed25519(cls, value: str) -> str:
        """The key in canonical PEM; a precise message if it is no Ed25519 public key."""
        if len(value) > 128:
            raise ValueError(f"not an Ed25519 public key: {len(value)} characters is longer "
                             "than any (PEM is about 113)")
        try:
            key = load_public_key(value.encode("utf-8"))
        except PublicKeyError as exc:
            raise ValueError(str(exc)) from None
        if not re.fullmatch(PUBLIC_KEY_PATTERN, value):
            raise ValueError("write the key exactly as `edge-agent keys export-public` prints "
                             "it (PEM, one base64 line) or as 32 raw bytes in base64, with "
                             "nothing around it")
        return public_key_pem(key).decode("ascii")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=500, json_schema_extra={"pattern": REASON_PATTERN},
                        description="Why (kept in the audit log): one line, not blank.")

    @field_validator("reason")
    @classmethod
    def one_line(cls, value: str) -> str:
        if not re.fullmatch(REASON_PATTERN, value):
            raise ValueError("a reason is one line of text, not blank, without control "
                             "characters")
        return value.strip()


def _offline_after(request: Request) -> float:
    return request.app.state.settings.collector_offline_after_s


@router.get("/collectors", responses=problem_responses())
def list_collectors(request: Request, _who: Annotated[Principal, Depends(VIEWER)],
                    paging: Annotated[PageParams, Depends(page_params)],
                    collector_status: Annotated[CollectorState | None, Query(
                        alias="status", description="Only active or revoked ones.")] = None,
                    ) -> Page[CollectorOut]:
    """Every enrolled collector by id, with its health from its last status message."""
    with request.app.state.store.connect() as conn:
        items, total = collector_page(conn, paging, now=datetime.now(UTC),
                                      offline_after_s=_offline_after(request),
                                      status=collector_status)
    return Page[CollectorOut].of(items, total, paging)


@router.get("/collectors/{collector_id}", responses=problem_responses(404))
def show_collector(request: Request, collector_id: CollectorId,
                   _who: Annotated[Principal, Depends(VIEWER)]) -> CollectorOut:
    """One collector: its key, chain tip and health."""
    with request.app.state.store.connect() as conn:
        found = collector_view(conn, collector_id, now=datetime.now(UTC),
                               offline_after_s=_offline_after(request))
    if found is None:
        raise not_found(f"collector {collector_id}")
    return found


@router.post("/collectors", status_code=status.HTTP_201_CREATED,
             responses=problem_responses(409))
def enrol(request: Request, body: EnrolRequest, who: Annotated[Principal, Depends(ADMIN)]
          ) -> EnrolledCollector:
    """Enrol a collector with its public key; answers its broker password, once.

    Only the password's hash is kept. Run `meterhub broker-config` (and reload
    the broker) so the collector can log in with it.
    """
    key = load_public_key(body.public_key.encode("ascii"))
    try:
        with request.app.state.store.begin() as conn:
            return enrol_collector(conn, body.id, key, actor=who.actor, now=datetime.now(UTC),
                                   offline_after_s=_offline_after(request))
    except CollectorError as exc:
        raise conflict(str(exc)) from None


@router.post("/collectors/{collector_id}/revoke", responses=problem_responses(404, 409))
def revoke_one(request: Request, collector_id: CollectorId, body: RevokeRequest,
               who: Annotated[Principal, Depends(ADMIN)]) -> CollectorOut:
    """Refuse everything the collector sends from now on; its stored reads stay as evidence."""
    try:
        with request.app.state.store.begin() as conn:
            found = revoke(conn, collector_id, reason=body.reason, actor=who.actor,
                           now=datetime.now(UTC), offline_after_s=_offline_after(request))
    except AlreadyRevoked as exc:
        raise conflict(str(exc)) from None
    if found is None:
        raise not_found(f"collector {collector_id}")
    return found
