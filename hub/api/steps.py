"""What each cycle step does when a runner takes it: the same library calls as the CLI.

Each step runs in one transaction and returns a JSON-able summary that the
run records; the pages and ``GET /api/v1/runs/{id}`` show it. Reconciling
also keeps every meter's result in ``reconciliations`` (replacing the
cycle's previous ones), which the dashboard and the missing-reads list read.
Exporting writes the file and its signed manifest under
``{exports_dir}/{export id}/`` and records them in ``exports``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, insert, update

from hub.api.runs import Run, Step
from hub.api.settings import HubSettings
from hub.billing_store import bill_cycle
from hub.edits.store import run_edits
from hub.export.files import write_export
from hub.export.formats import Format
from hub.export.store import export_rows
from hub.reconcile import Reconciliation
from hub.reconcile_store import reconcile_cycle
from hub.store import Store
from hub.store.tables import exports, reconciliations

log = logging.getLogger(__name__)


class StepRefused(Exception):
    """The step cannot run as configured (no export key, say): the run fails saying why."""


def execute(store: Store, settings: HubSettings, run: Run) -> dict[str, Any]:
    """Do ``run``'s step; its summary, or an exception (the run then fails with it)."""
    if run.step is Step.RECONCILE:
        with store.begin() as conn:
            result = reconcile_cycle(conn, run.cycle, settings.zone)
            save_reconciliation(conn, result, run.id)
        return reconcile_summary(result)
    if run.step is Step.EDITS:
        with store.begin() as conn:
            edits = run_edits(conn, run.cycle, settings.zone, settings.rule_set)
        return {
            "meters": edits.meters, "rule_set": edits.rule_set,
            "billing_reads": dict(edits.billing), "opened": edits.opened,
            "cleared": edits.cleared, "open_exceptions": edits.open_exceptions,
            "findings": [{"rule": rule, "severity": severity, "count": count}
                         for (rule, severity), count in sorted(edits.findings.items())],
            "held": [{"account": h.account, "meters": list(h.meters), "rules": list(h.rules),
                      "exceptions": h.exceptions} for h in edits.held],
        }
    if run.step is Step.BILL:
        with store.begin() as conn:
            billing = bill_cycle(conn, run.cycle, settings.rate_book)
        return {
            "billed": billing.billed, "total": str(billing.total.quantize(Decimal("0.01"))),
            "by_rate": dict(billing.by_rate),
            "held": [{"account": h.account, "meters": list(h.meters), "rules": list(h.rules),
                      "exceptions": h.exceptions} for h in billing.held],
            "skipped": [{"account": s.account, "why": s.why} for s in billing.skipped],
        }
    if run.step is Step.EXPORT:
        return export_cycle(store, settings, run.cycle, Format(run.options.get("format", "csv")),
                            created_by=run.requested_by)
    raise StepRefused(f"unknown step {run.step}")


def save_reconciliation(conn: Connection, result: Reconciliation, run_id: int,
                        *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    conn.execute(delete(reconciliations).where(reconciliations.c.cycle == result.cycle))
    rows = [{
        "cycle": result.cycle, "meter": m.meter, "route": m.route, "sequence": m.sequence,
        "account": m.account, "status": m.status.value, "rule": m.rule,
        "collector": m.billing_read.collector if m.billing_read else None,
        "seq": m.billing_read.seq if m.billing_read else None,
        "read_at": m.billing_read.read_at if m.billing_read else None,
        "trouble": list(m.trouble), "run_id": run_id, "reconciled_at": now,
    } for m in result.meters]
    if rows:
        conn.execute(insert(reconciliations), rows)


def reconcile_summary(result: Reconciliation) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for meter in result.meters:
        counts[meter.status.value] = counts.get(meter.status.value, 0) + 1
    return {
        "meters": len(result.meters), "counts": counts,
        "routes": [{"route": r.route, "meters": r.meters, "done": round(r.done, 4),
                    "counts": {s.value: n for s, n in r.counts.items()}}
                   for r in result.routes()],
    }


def export_cycle(store: Store, settings: HubSettings, cycle: str, fmt: Format, *,
                 created_by: str) -> dict[str, Any]:
    """Write ``cycle``'s file and manifest under a new export id, and record them."""
    signer = settings.export_signer
    if signer is None:
        raise StepRefused("the hub has no export key: start `meterhub serve` with --hub-key "
                          "(made by `meterhub keys generate`)")
    with store.begin() as conn:
        rows, generated_at = export_rows(conn, cycle, settings.rate_book)
        export_id = conn.execute(insert(exports).values(
            cycle=cycle, format=fmt.value, file_name="", manifest_name="", sha256="", rows=0,
            key_id=signer.key_id, created_at=datetime.now(UTC), created_by=created_by,
        ).returning(exports.c.id)).scalar_one()
        directory = settings.exports_dir / str(export_id)
        directory.mkdir(parents=True, exist_ok=True)
        paths = write_export(directory, cycle, rows, fmt, signer, generated_at=generated_at)
        conn.execute(update(exports).where(exports.c.id == export_id).values(
            file_name=paths.file.name, manifest_name=paths.manifest.name,
            sha256=paths.signed.sha256, rows=paths.signed.rows,
        ))
    log.info("exported cycle %s as %s: %s (%d rows)", cycle, fmt.value, paths.file,
             paths.signed.rows)
    return {"export_id": int(export_id), "file": paths.file.name, "rows": paths.signed.rows,
            "sha256": paths.signed.sha256, "format": fmt.value}
