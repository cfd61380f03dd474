"""What each cycle step does when a runner takes it: the same library calls as the CLI.

Each step runs in one transaction and returns a JSON-able summary that the
run records; the pages and ``GET /api/v1/runs/{id}`` show it. Edits and
bills run by route (:mod:`hub.api.runs`): each part, in its own
transaction, does one route's share (:func:`execute_part`), and the last
part to finish sums the parts into the run's summary, the same as one
whole-cycle run would give (:func:`combine`).

Which route's part does what, so that the parts together do the whole
cycle once (:func:`route_meters`, :func:`route_accounts`):

- a meter is edited by the route of its first stop in walk order (route,
  then sequence), the one reconciling lists it under first;
- an account is billed, from all of its meters, by the route of its first
  meter in walk order — an account whose meters span routes gets one bill;
- what is on no route of the run (a meter since taken off its route whose
  exceptions the edits must clear, an account whose stale bill must go, an
  exception without an account) falls to the run's first route.

Reconciling
also keeps every meter's result in ``reconciliations`` (replacing the
cycle's previous ones), which the dashboard and the missing-reads list read.
Exporting writes the file and its signed manifest under
``{exports_dir}/{export id}/`` and records them in ``exports``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from hub.api.runs import WHOLE_CYCLE, Part, Run, Step, get_parts
from hub.api.settings import HubSettings
from hub.billing_store import BillingRun, bill_cycle
from hub.edits.store import OPEN, EditsRun, HeldAccount, count_open, held_accounts, run_edits
from hub.export.files import write_export
from hub.export.formats import Format
from hub.export.store import export_rows
from hub.reconcile import Reconciliation
from hub.reconcile_store import reconcile_cycle
from hub.store import Store
from hub.store.tables import (
    billing_reads,
    bills,
    edit_exceptions,
    exports,
    reconciliations,
    route_stops,
    routes,
)

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
    if run.step is Step.EDITS:  # a run queued before runs were split by route
        with store.begin() as conn:
            edits = run_edits(conn, run.cycle, settings.zone, settings.rule_set)
            return _combine_edits(conn, run, [edits_summary(edits)])
    if run.step is Step.BILL:
        with store.begin() as conn:
            return _combine_bills([bill_summary(bill_cycle(conn, run.cycle, settings.rate_book))])
    if run.step is Step.EXPORT:
        return export_cycle(store, settings, run.cycle, Format(run.options.get("format", "csv")),
                            created_by=run.requested_by)
    raise StepRefused(f"unknown step {run.step}")


def execute_part(conn: Connection, settings: HubSettings, part: Part) -> dict[str, Any]:
    """Do ``part``'s route's share of its edits or bill run, in the caller's transaction.

    Its summary, which :func:`combine` sums once every part is done.
    """
    run = part.run
    if run.step is Step.EDITS:
        meters = None if part.route == WHOLE_CYCLE else route_meters(
            conn, run.cycle, part.route, _run_routes(conn, run.id))
        return edits_summary(run_edits(conn, run.cycle, settings.zone, settings.rule_set,
                                       meters=meters))
    if run.step is Step.BILL:
        accounts = None if part.route == WHOLE_CYCLE else route_accounts(
            conn, run.cycle, part.route, _run_routes(conn, run.id))
        return bill_summary(bill_cycle(conn, run.cycle, settings.rate_book, accounts=accounts))
    raise StepRefused(f"the {run.step} step is not split by route")


def combine(conn: Connection, run: Run, parts: Sequence[Part]) -> dict[str, Any]:
    """The run's summary from its parts' (all done), as one whole-cycle run gives it.

    Counts add up; the edits' open exceptions and held accounts are the
    cycle's, counted now that every part has committed; the bill's total is
    summed unrounded, then rounded once.
    """
    results = [p.result or {} for p in parts]
    if run.step is Step.EDITS:
        return _combine_edits(conn, run, results)
    if run.step is Step.BILL:
        return _combine_bills(results)
    raise StepRefused(f"the {run.step} step is not split by route")


def edits_summary(edits: EditsRun) -> dict[str, Any]:
    """What a part's edits did (the cycle-wide counts come in :func:`combine`)."""
    return {
        "meters": edits.meters, "rule_set": edits.rule_set,
        "billing_reads": dict(edits.billing), "opened": edits.opened, "cleared": edits.cleared,
        "findings": [{"rule": rule, "severity": severity, "count": count}
                     for (rule, severity), count in sorted(edits.findings.items())],
    }


def _combine_edits(conn: Connection, run: Run, results: Iterable[dict[str, Any]]
                   ) -> dict[str, Any]:
    results = list(results)
    billing: dict[str, int] = {}
    findings: dict[tuple[str, str], int] = {}
    for result in results:
        for kind, count in result["billing_reads"].items():
            billing[kind] = billing.get(kind, 0) + count
        for found in result["findings"]:
            key = (found["rule"], found["severity"])
            findings[key] = findings.get(key, 0) + found["count"]
    return {
        "meters": sum(r["meters"] for r in results),
        "rule_set": results[0]["rule_set"] if results else None,
        "billing_reads": billing, "opened": sum(r["opened"] for r in results),
        "cleared": sum(r["cleared"] for r in results),
        "open_exceptions": count_open(conn, run.cycle),
        "findings": [{"rule": rule, "severity": severity, "count": count}
                     for (rule, severity), count in sorted(findings.items())],
        "held": [_held(h) for h in held_accounts(conn, run.cycle)],
    }


def bill_summary(billing: BillingRun) -> dict[str, Any]:
    """What a part's billing did; its total unrounded (:func:`combine` rounds the sum)."""
    return {
        "billed": billing.billed, "total": str(billing.total), "by_rate": dict(billing.by_rate),
        "held": [_held(h) for h in billing.held],
        "skipped": [{"account": s.account, "why": s.why} for s in billing.skipped],
    }


def _combine_bills(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    results = list(results)
    by_rate: dict[str, int] = {}
    for result in results:
        for rate, count in result["by_rate"].items():
            by_rate[rate] = by_rate.get(rate, 0) + count
    total = sum((Decimal(r["total"]) for r in results), Decimal(0))
    return {
        "billed": sum(r["billed"] for r in results),
        "total": str(total.quantize(Decimal("0.01"))), "by_rate": by_rate,
        "held": sorted((h for r in results for h in r["held"]), key=lambda h: h["account"]),
        "skipped": sorted((s for r in results for s in r["skipped"]),
                          key=lambda s: s["account"]),
    }


def _held(held: HeldAccount) -> dict[str, Any]:
    return {"account": held.account, "meters": list(held.meters), "rules": list(held.rules),
            "exceptions": held.exceptions}


# --- which route's part does what ------------------------------------------------

def first_stops(conn: Connection, cycle: str, meters: Any) -> dict[str, tuple[str, int]]:
    """Each of ``meters`` (a query of meter ids) on ``cycle``'s routes: its first stop in
    walk order, (route, sequence), over all of the cycle's routes."""
    first: dict[str, tuple[str, int]] = {}
    for meter, route, sequence in conn.execute(
            select(route_stops.c.meter, route_stops.c.route, route_stops.c.sequence)
            .join(routes, routes.c.id == route_stops.c.route)
            .where((routes.c.cycle == cycle) & route_stops.c.meter.in_(meters))):
        if meter not in first or (route, sequence) < first[meter]:
            first[meter] = (route, sequence)
    return first


def route_meters(conn: Connection, cycle: str, route: str, run_routes: Collection[str]
                 ) -> set[str]:
    """The meters whose edits ``route``'s part of a run over ``run_routes`` does.

    What is read is ``route``'s share (the stops of its meters, wherever they
    are), so a part costs its route's size, not the cycle's; the run's first
    route also looks for what is on no route of the run.
    """
    lead = min(run_routes)
    candidates = select(route_stops.c.meter).where(route_stops.c.route == route)
    if route == lead:
        candidates = candidates.union(_off_run_routes(cycle, run_routes))
    mine = {meter for meter, (on, _) in first_stops(conn, cycle, candidates).items()
            if (on if on in run_routes else lead) == route}
    if route == lead:  # meters off every route whose open exceptions the edits must clear
        mine |= set(conn.execute(select(edit_exceptions.c.meter).where(
            (edit_exceptions.c.cycle == cycle)
            & ~edit_exceptions.c.meter.in_(_on_cycle_routes(cycle))).distinct()).scalars())
    return mine


def route_accounts(conn: Connection, cycle: str, route: str, run_routes: Collection[str]
                   ) -> set[str]:
    """The accounts whose bills ``route``'s part of a run over ``run_routes`` computes.

    Every account the cycle's billing touches — with billing reads, held by an
    open blocking exception (one without an account is held as ``""``, as
    :func:`~hub.edits.store.held_accounts` lists it), or with a bill to
    replace — belongs to the route of its first meter in walk order, or to
    the run's first route if none of its meters is on a route of the run.
    """
    lead = min(run_routes)
    reads, held = billing_reads.c, edit_exceptions.c
    holding = (held.cycle == cycle) & (held.status == OPEN) & (held.severity == "blocking")
    held_account = func.coalesce(held.account, "")
    here: Any = select(route_stops.c.meter).where(route_stops.c.route == route)
    if route == lead:
        here = here.union(_off_run_routes(cycle, run_routes),
                          select(reads.meter).where((reads.cycle == cycle)
                                                    & ~reads.meter.in_(_on_cycle_routes(cycle))),
                          select(held.meter).where(holding
                                                   & ~held.meter.in_(_on_cycle_routes(cycle))))
    candidates = set(conn.execute(select(reads.account).where(
        (reads.cycle == cycle) & reads.account.is_not(None) & reads.meter.in_(here))
        .union(select(held_account).where(holding & held.meter.in_(here)))).scalars())
    meters_of: dict[str, set[str]] = {account: set() for account in candidates}
    for account, meter in conn.execute(
            select(reads.account, reads.meter).where(
                (reads.cycle == cycle) & reads.account.in_(candidates))
            .union(select(held_account, held.meter).where(
                holding & held_account.in_(candidates)))):
        meters_of[account].add(meter)
    first = first_stops(conn, cycle, {m for its in meters_of.values() for m in its})

    def owner(meters: set[str]) -> str:
        stops = [first[m] for m in meters if m in first]
        on = min(stops)[0] if stops else lead
        return on if on in run_routes else lead

    mine = {account for account, meters in meters_of.items() if owner(meters) == route}
    if route == lead:  # a bill whose account the cycle no longer bills or holds: it goes
        mine |= set(conn.execute(select(bills.c.account).where(
            (bills.c.cycle == cycle)
            & ~bills.c.account.in_(select(reads.account).where(
                (reads.cycle == cycle) & reads.account.is_not(None)))
            & ~bills.c.account.in_(select(held_account).where(holding)))).scalars())
    return mine


def _on_cycle_routes(cycle: str) -> Any:
    return (select(route_stops.c.meter).join(routes, routes.c.id == route_stops.c.route)
            .where(routes.c.cycle == cycle))


def _off_run_routes(cycle: str, run_routes: Collection[str]) -> Any:
    """Meters on a route of ``cycle`` that the run has no part for (imported since)."""
    return _on_cycle_routes(cycle).where(~route_stops.c.route.in_(list(run_routes)))


def _run_routes(conn: Connection, run_id: int) -> set[str]:
    return {p.route for p in get_parts(conn, run_id)}


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
