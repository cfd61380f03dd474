"""``meterhub exceptions`` and ``meterhub audit``: work the meter-edit exceptions queue.

``meterhub cycle edits C2026-11`` opens exceptions; here an operator lists
them, looks at one with its billing read and history of decisions, and
resolves it: ``accept``, ``reject`` (the meter goes on the next re-read
route), ``estimate`` or ``override`` with values — always with a reason,
always on the audit log. ``meterhub exceptions held C2026-11`` lists the
accounts still held out of billing.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hub.collectors_cli import open_store
from hub.cycle_cli import RuleSetOption, ZoneOption, load_rules, zone
from hub.edits.actions import Action, ResolveError, resolve
from hub.edits.audit import SYSTEM_ACTOR, entries
from hub.edits.model import EstimationMethod
from hub.edits.queue import SEVERITIES, STATUSES, get_exception, list_exceptions
from hub.edits.store import held_accounts
from protocols.scalars import ScalarError, format_instant, parse_decimal

exceptions_app = typer.Typer(help="The meter-edit exceptions queue: list, show, resolve, held.",
                             no_args_is_help=True)
out = Console(markup=False)
log = logging.getLogger("hub")


def default_operator() -> str:
    """Who is deciding: $METERHUB_OPERATOR, else the login name."""
    return os.environ.get("METERHUB_OPERATOR") or getpass.getuser()


@exceptions_app.command("list")
def list_command(
    ctx: typer.Context,
    cycle: Annotated[str | None, typer.Option(help="Only this cycle.")] = None,
    status: Annotated[str, typer.Option(
        help=f"{', '.join(STATUSES)} or all.")] = "open",
    severity: Annotated[str | None, typer.Option(help=", ".join(SEVERITIES))] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule (e.g. spike).")] = None,
    meter: Annotated[str | None, typer.Option(help="Only this meter.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one per exception.")]
        = False,
) -> None:
    """Exceptions, most severe first: what the edits found and what is still open."""
    if status != "all" and status not in STATUSES:
        raise typer.BadParameter(f"--status must be one of {', '.join(STATUSES)} or all")
    if severity is not None and severity not in SEVERITIES:
        raise typer.BadParameter(f"--severity must be one of {', '.join(SEVERITIES)}")
    with open_store(ctx) as store, store.connect() as conn:
        items = list_exceptions(conn, cycle=cycle, status=None if status == "all" else status,
                                severity=severity, rule=rule, meter=meter, limit=limit)
    if as_json:
        for item in items:
            print(json.dumps({**vars(item), "opened_at": format_instant(item.opened_at),
                              "resolved_at": _when(item.resolved_at)}))
        return
    table = Table(title=f"{len(items)} exception(s)" + (f" in {cycle}" if cycle else ""))
    for column in ("id", "cycle", "meter", "account", "rule", "severity", "status", "finding"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(str(item.id), item.cycle, item.meter, item.account or "—", item.rule,
                      item.severity, item.status, item.message)
    out.print(table)


@exceptions_app.command("show")
def show_command(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="Exception id (from `list`).")],
) -> None:
    """One exception: the finding, the billing read it is about, every decision on record."""
    with open_store(ctx) as store, store.connect() as conn:
        detail = get_exception(conn, exception_id)
    if detail is None:
        log.error("no exception %s", exception_id)
        raise typer.Exit(1)
    item = detail.item
    table = Table(title=f"exception {item.id}", show_header=False)
    for name, value in (("cycle", item.cycle), ("meter", item.meter),
                        ("account", item.account or "—"), ("rule", item.rule),
                        ("severity", item.severity), ("status", item.status),
                        ("finding", item.message), ("about", item.read_ref),
                        ("rule set", item.rule_set), ("opened", format_instant(item.opened_at)),
                        ("resolved", f"{_when(item.resolved_at)} by {item.resolved_by}"
                         if item.resolved_at else "—")):
        table.add_row(name, value)
    read = detail.billing_read
    if read is None:
        table.add_row("billing read", "none")
    else:
        table.add_row("billing read", f"{read['kind']} at {format_instant(read['read_at'])}: "
                      + ", ".join(f"{k} {v}" for k, v in read["registers"].items()))
        table.add_row("because", read["detail"])
    out.print(table)
    trail = Table(title="audit trail")
    for column in ("id", "when", "who", "action", "reason"):
        trail.add_column(column, overflow="fold")
    for entry in detail.trail:
        trail.add_row(str(entry.id), format_instant(entry.at), entry.actor, entry.action,
                      entry.reason or "")
    out.print(trail)


@exceptions_app.command("resolve")
def resolve_command(
    ctx: typer.Context,
    exception_ids: Annotated[list[int], typer.Argument(help="Exception id(s).")],
    action: Annotated[Action, typer.Option(
        help="accept: the read stands; reject: re-read the meter; estimate: bill an "
             "estimate; override: bill --value(s).")],
    reason: Annotated[str, typer.Option(
        help="Why (required; on the audit log, read by auditors and customer service).")],
    by: Annotated[str | None, typer.Option(
        help="Who decides (default: $METERHUB_OPERATOR or the login name).")] = None,
    value: Annotated[list[str] | None, typer.Option(
        help="register=value to bill, with --action override (repeat per register).")] = None,
    method: Annotated[EstimationMethod | None, typer.Option(
        help="Estimation method, with --action estimate (default: the rule set's order).")]
        = None,
    rules: RuleSetOption = None,
    timezone: ZoneOption = "UTC",
) -> None:
    """Decide on exception(s): each decision is one transaction and one audit record."""
    values = _values(value or [])
    rule_set = load_rules(rules)
    actor = by or default_operator()
    failed = False
    with open_store(ctx) as store:
        for exception_id in exception_ids:
            try:
                with store.begin() as conn:
                    done = resolve(conn, exception_id, action, actor=actor, reason=reason,
                                   rule_set=rule_set, zone=zone(timezone), values=values,
                                   method=method)
            except ResolveError as exc:
                log.error("exception %s: %s", exception_id, exc)
                failed = True
                continue
            closed = ", ".join(str(i) for i in done.closed)
            out.print(f"exception {exception_id}: {action.value} by {actor} "
                      f"(audit {done.audit_id}; closed {closed})")
            if action is Action.REJECT:
                out.print("  the meter shows as missing now: it goes on the next "
                          "`meterhub cycle reread`")
    if failed:
        raise typer.Exit(1)


@exceptions_app.command("held")
def held_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id.")],
) -> None:
    """Accounts held out of billing: an open blocking exception on one of their meters."""
    with open_store(ctx) as store, store.connect() as conn:
        held = held_accounts(conn, cycle)
    print_held(cycle, held)


def print_held(cycle: str, held: list[Any]) -> None:
    if not held:
        out.print(f"cycle {cycle}: no account held")
        return
    table = Table(title=f"cycle {cycle}: {len(held)} account(s) held out of billing")
    for column in ("account", "meters", "blocking rules", "exceptions"):
        table.add_column(column)
    for account in held:
        table.add_row(account.account or "—", ", ".join(account.meters),
                      ", ".join(account.rules), str(account.exceptions))
    out.print(table)


def audit_command(
    ctx: typer.Context,
    cycle: Annotated[str | None, typer.Option(help="Only this cycle.")] = None,
    meter: Annotated[str | None, typer.Option(help="Only this meter.")] = None,
    exception: Annotated[int | None, typer.Option(help="Only this exception.")] = None,
    by: Annotated[str | None, typer.Option(
        help=f"Only what this person did (the edits themselves act as '{SYSTEM_ACTOR}').")]
        = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines with before/after.")]
        = False,
) -> None:
    """The audit log: every decision on exceptions and billing reads, oldest first."""
    with open_store(ctx) as store, store.connect() as conn:
        log_entries = entries(conn, cycle=cycle, meter=meter, exception_id=exception, actor=by)
    if as_json:
        for entry in log_entries:
            print(json.dumps({**vars(entry), "at": format_instant(entry.at)}, default=str))
        return
    table = Table(title=f"audit log: {len(log_entries)} action(s)")
    for column in ("id", "when", "who", "action", "cycle", "meter", "exception", "reason"):
        table.add_column(column, overflow="fold")
    for entry in log_entries:
        table.add_row(str(entry.id), format_instant(entry.at), entry.actor, entry.action,
                      entry.cycle or "", entry.meter or "",
                      str(entry.exception_id) if entry.exception_id else "", entry.reason or "")
    out.print(table)


def _values(pairs: list[str]) -> dict[str, Decimal] | None:
    values: dict[str, Decimal] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        try:
            if not sep or not name.strip():
                raise ScalarError("expected register=value")
            values[name.strip()] = parse_decimal(text.strip())
        except ScalarError as exc:
            raise typer.BadParameter(f"--value {pair!r}: {exc} (e.g. energy_import_kwh=10412.5)"
                                     ) from None
    return values or None


def _when(value: Any) -> str:
    return format_instant(value) if value is not None else ""
