"""API: cycle runs — ask for a cycle step, and read how it went."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from hub.api.auth import OPERATOR, VIEWER, Principal
from hub.api.errors import conflict, not_found, problem_responses
from hub.api.pagination import Page, PageParams, page_params, paged_rows
from hub.api.runs import Run, RunConflict, RunStatus, Step, get_run, request_run, run_of
from hub.export.formats import Format
from hub.reconcile_store import UnknownCycle
from hub.store.tables import cycle_runs

router = APIRouter(tags=["runs"])

CycleId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                              description="Cycle id, as imported (e.g. C2026-11).")]


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    cycle: str
    step: Step
    options: dict[str, Any]
    status: RunStatus
    requested_by: str
    requested_at: datetime
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None = Field(description="The step's summary once done.")
    error: str | None = Field(description="Why the step failed, if it did.")

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls.model_validate(run)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: Step
    format: Format | None = Field(None, description="The cycle file's format (export only): "
                                  "csv, fixed or jsonl; default csv.")


@router.post("/cycles/{cycle}/runs", status_code=status.HTTP_202_ACCEPTED,
             responses=problem_responses(404, 409))
def start_run(request: Request, cycle: CycleId, body: RunRequest,
              who: Annotated[Principal, Depends(OPERATOR)]) -> RunOut:
    """Queue a cycle step (reconcile, edits, bill, export); a worker runs it at once."""
    options = {"format": (body.format or Format.CSV).value} if body.step is Step.EXPORT else {}
    if body.format is not None and body.step is not Step.EXPORT:
        raise conflict("format is an option of the export step only")
    try:
        with request.app.state.store.begin() as conn:
            run = request_run(conn, cycle, body.step, requested_by=who.actor, options=options)
    except UnknownCycle:
        raise not_found(f"cycle {cycle}") from None
    except RunConflict as exc:
        raise conflict(str(exc)) from None
    runner = request.app.state.runner
    if runner is not None:
        runner.wake()
    return RunOut.of(run)


@router.get("/cycles/{cycle}/runs", responses=problem_responses())
def list_runs(request: Request, cycle: CycleId, _who: Annotated[Principal, Depends(VIEWER)],
              paging: Annotated[PageParams, Depends(page_params)],
              step: Step | None = None, run_status: Annotated[RunStatus | None, Query(
                  alias="status")] = None) -> Page[RunOut]:
    """The cycle's runs, newest first."""
    query = select(cycle_runs).where(cycle_runs.c.cycle == cycle)
    if step is not None:
        query = query.where(cycle_runs.c.step == step.value)
    if run_status is not None:
        query = query.where(cycle_runs.c.status == run_status.value)
    with request.app.state.store.connect() as conn:
        rows, total = paged_rows(conn, query.order_by(cycle_runs.c.id.desc()), paging)
    return Page[RunOut].of([RunOut.of(run_of(row)) for row in rows], total, paging)


@router.get("/runs/{run_id}", responses=problem_responses(404))
def show_run(request: Request, run_id: Annotated[int, Path(ge=1, le=2**62)],
             _who: Annotated[Principal, Depends(VIEWER)]) -> RunOut:
    """One run: its status, and its result or error once finished."""
    with request.app.state.store.connect() as conn:
        try:
            return RunOut.of(get_run(conn, run_id))
        except LookupError:
            raise not_found(f"run {run_id}") from None
