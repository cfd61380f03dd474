"""Meter edits (VEE): is each billing read fit to bill, and what to bill when it is not.

The modules, pure core first:

- :mod:`~hub.edits.model` — the plain data: a read, a meter's facts, a finding;
- :mod:`~hub.edits.usage` — use between reads, rollover at the dial count;
- :mod:`~hub.edits.ruleset` — the versioned YAML thresholds, validated on load;
- :mod:`~hub.edits.rules` — the rules, pure functions over one meter's read,
  history and facts;
- :mod:`~hub.edits.estimate` — interpolation, same period last year, average
  daily use;
- :mod:`~hub.edits.engine` — one meter: which read bills, and every finding;

and the shell around them, over the hub store:

- :mod:`~hub.edits.store` — run a cycle's edits, save billing reads and
  exceptions;
- :mod:`~hub.edits.actions` — an operator's decision on an exception;
- :mod:`~hub.edits.queue` — the exceptions as operators list and read them;
- :mod:`~hub.edits.audit` — the append-only record of every decision.

Example::

    with store.begin() as conn:
        run = run_edits(conn, "C2026-11", UTC, default_rule_set())
    for held in run.held:
        print(held.account, held.rules)
"""
