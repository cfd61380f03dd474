"""One meter's edits for one cycle: which read it bills on, and what the rules found.

The reconciler says whether a meter was read; this module decides what the
bill will use and runs the rules over it, as a pure function over plain data
(:mod:`hub.edits.store` loads the cases and saves the outcomes):

1. An operator's **override** stands: the edits never replace it.
2. An **actual** read (the reconciler's billing read, never one an operator
   rejected) replaces an earlier estimate: the next actual read trues the
   estimate up.
3. An **estimate** made earlier in the cycle stays, so running the edits
   twice gives the same bill.
4. A meter with no read is **estimated** when the rule set allows it
   (``estimated_missing``, a warning an operator can review), unless an
   operator rejected its read and wants a re-read (``awaiting_reread``), the
   meter has been estimated too often in a row (``estimation_limit``), or
   there is nothing to estimate from (``no_estimate``) — all three hold the
   account out of billing until someone acts.

Every rule of the rule set then runs over the billing read and its history,
as :func:`~hub.edits.rules_view.rules_view` shows them (kilo-units, a total
for a meter with only tariff registers).

Example::

    outcome = evaluate(case, default_rule_set())
    for finding in outcome.findings:
        print(finding.rule, finding.severity, finding.message)
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.edits.estimate import CannotEstimate, EstimationLimit, estimate
from hub.edits.model import EditInput, Finding, MeterFacts, MeterRead, ReadKind, Severity
from hub.edits.rules import run_rules
from hub.edits.rules_view import rules_view
from hub.edits.ruleset import RuleSet
from hub.reconcile import Cycle, Status

NO_ESTIMATE = "no_estimate"


@dataclass(frozen=True, slots=True)
class MeterCase:
    """What the store knows of one meter of the cycle when the edits run."""

    cycle: Cycle
    meter: MeterFacts
    status: Status
    """The reconciler's classification (read, missing, trouble, inactive)."""
    actual: MeterRead | None = None
    """The reconciler's billing read, when the meter was read."""
    kept: MeterRead | None = None
    """This cycle's billing read from an earlier run or an operator (estimate or override)."""
    history: tuple[MeterRead, ...] = ()
    later: MeterRead | None = None
    """The first good read after the window, for interpolating an estimate."""
    rejected: bool = False
    """An operator rejected a read of this meter for this cycle and wants a re-read."""
    trouble: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MeterOutcome:
    meter: str
    billing_read: MeterRead | None
    detail: str
    """Why this read bills (or why none does), in a sentence."""
    findings: tuple[Finding, ...] = ()

    @property
    def blocking(self) -> bool:
        return any(f.blocking for f in self.findings)


def evaluate(case: MeterCase, rule_set: RuleSet) -> MeterOutcome:
    """The billing read of ``case`` and every finding on it."""
    chosen, detail, findings = _billing_read(case, rule_set)
    if chosen is not None:
        registers = rule_set.registers(case.meter.service)
        seen = EditInput(case.cycle, case.meter, rules_view(chosen, registers),
                         tuple(rules_view(read, registers) for read in case.history))
        findings = (*findings, *run_rules(seen, rule_set))
    return MeterOutcome(case.meter.serial, chosen, detail, tuple(findings))


def _billing_read(case: MeterCase, rule_set: RuleSet
                  ) -> tuple[MeterRead | None, str, tuple[Finding, ...]]:
    kept = case.kept
    if kept is not None and kept.kind is ReadKind.OVERRIDE:
        return kept, f"overridden by an operator: {kept.reason}", ()
    if case.actual is not None:
        return case.actual, "actual read chosen by reconciliation", ()
    if kept is not None and kept.kind is ReadKind.ESTIMATED:
        if kept.audit_id is not None:  # an operator's estimate: decided, nothing to review
            return kept, f"estimated by an operator ({kept.method})", ()
        return kept, f"estimated earlier ({kept.method})", _finding(
            case, rule_set, "estimated_missing",
            f"{_why_missing(case).capitalize()}; billed on the estimate made earlier "
            f"({kept.method}).")
    if case.status is Status.INACTIVE:
        return None, "inactive: nothing to bill", ()
    return _when_missing(case, rule_set)


def _when_missing(case: MeterCase, rule_set: RuleSet
                  ) -> tuple[MeterRead | None, str, tuple[Finding, ...]]:
    why = _why_missing(case)
    if case.rejected:
        return None, "awaiting a re-read", _finding(
            case, rule_set, "awaiting_reread",
            f"The read was rejected by an operator; {why}. Waiting for a re-read.")
    settings = rule_set.estimation
    if not settings.auto_estimate_missing:
        return None, "waiting for an operator", _finding(
            case, rule_set, NO_ESTIMATE,
            f"{why.capitalize()}; automatic estimation is off in rule set "
            f"{rule_set.version}: estimate, override or re-read it.")
    try:
        made = estimate(case.meter, case.history, case.cycle.target, settings,
                        later=case.later, cycle=case.cycle.id)
    except EstimationLimit as exc:
        return None, "estimation limit reached", _finding(
            case, rule_set, "estimation_limit",
            f"{why.capitalize()}, and {exc.consecutive} estimates in a row already reach the "
            f"limit of {exc.limit}: an actual read is needed.")
    except CannotEstimate as exc:
        return None, "cannot estimate", _finding(
            case, rule_set, NO_ESTIMATE,
            f"{why.capitalize()}, and it cannot be estimated: {exc.reason}.")
    return made.read, made.explanation, _finding(
        case, rule_set, "estimated_missing",
        f"{why.capitalize()}; estimated by {made.method.value.replace('_', ' ')}: "
        f"{made.explanation}")


def _why_missing(case: MeterCase) -> str:
    if case.trouble:
        return f"no read in the window (trouble: {', '.join(case.trouble)})"
    return "no read in the window"


def _finding(case: MeterCase, rule_set: RuleSet, rule: str, message: str
             ) -> tuple[Finding, ...]:
    meter = case.meter
    try:
        config = rule_set.rule(meter.service, rule_set.meter_class(meter), rule)
    except KeyError:
        return (Finding(rule, Severity.BLOCKING, message),)
    if not config.enabled:
        return ()
    return (Finding(rule, config.severity, message),)
