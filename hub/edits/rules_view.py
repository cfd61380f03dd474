"""A read's registers as the rules read them: in kilo-units, with a total.

Firmware profiles name each channel after what the meter reports
(``energy_import_wh`` on a meter that counts watt-hours, ``demand_w`` on one
that shows watts), and a DSMR meter has only its two tariff registers
(``energy_import_kwh_t1``, ``_t2``), no total. The rule set names one total
register, TOU registers and a demand register per service, in kWh and kW. So
before the rules run, each read and its history are seen through this view:

- a watt-hour or watt register is also given in kWh or kW (× 0.001, exact);
- a read without the total register but with every TOU register of the
  service gets a total: their sum (what the meter's display would show).

The view is for judging only: what is stored and billed stays what the meter
signed.

Example::

    seen = rules_view(read, rule_set.registers("electric"))
    seen.registers["energy_import_kwh"]   # t1 + t2 on a DSMR meter
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hub.edits.model import MeterRead
from hub.edits.ruleset import Registers

KILO = {"wh": "kwh", "w": "kw"}
"""Unit tokens of a register name that the rules read in thousands."""
THOUSANDTH = Decimal("0.001")
_RENAMED: dict[str, str | None] = {}


def kilo_name(name: str) -> str | None:
    """``energy_import_wh_t1`` → ``energy_import_kwh_t1``; None when nothing is in W or Wh."""
    found = _RENAMED.get(name, "")
    if found != "":
        return found
    tokens = name.split("_")
    renamed = [KILO.get(token, token) for token in tokens]
    result = "_".join(renamed) if renamed != tokens else None
    if len(_RENAMED) < 10_000:
        _RENAMED[name] = result
    return result


def rules_view(read: MeterRead, registers: Registers) -> MeterRead:
    """``read`` with kilo-unit registers and a total added where they were missing."""
    values = read.registers
    added: dict[str, Decimal] = {}
    for name, value in values.items():
        kilo = kilo_name(name)
        if kilo is not None and kilo not in values:
            added[kilo] = value * THOUSANDTH
    total = registers.total
    if total not in values and total not in added and registers.tou:
        parts = [values.get(name, added.get(name)) for name in registers.tou]
        if all(part is not None for part in parts):
            added[total] = sum(parts, Decimal(0))  # type: ignore[arg-type]
    if not added:
        return read
    return dataclasses.replace(read, registers={**values, **added})
