"""The meter edits' thresholds: a versioned YAML rule set, validated on load.

The rules (:mod:`hub.edits.rules`) are code; *how strict* they are is data,
per service and per meter class, in a file an analyst can read and change
without touching code. A rule set names its ``version`` (so a finding can say
which thresholds judged it), its ``estimation`` settings, the ``alarms``
table (meter flag patterns → severity), and per service the registers the
rules read, every rule's config, and ``classes``: meter sizes (``100A``,
``5/8in`` …) that override some of the service's thresholds. A meter whose
``size`` is not a class of its service gets the service's own thresholds,
the ``default`` class.

Everything is checked when the file is read: unknown keys, unknown rules,
wrong types, bad severities and negative thresholds are a
:class:`RuleSetError` naming the file, the dotted key path and why, so a
typo can never silently switch a rule off. Every rule must be configured for
every service the file names (no hidden defaults in code; only ``estimation``
keys left out take :class:`~hub.edits.model.EstimationSettings`' defaults). A
key written twice in one mapping is an error too. Numbers are exact
``Decimal``: write ``2.0`` or ``"2.0"`` (a YAML number becomes the decimal it
is written as, never a binary float), counts are integers. A meter's demand
capacity is the ``capacity_kw`` parameter of ``demand_over_capacity``, set
per class (``null``: no limit).

Asking a loaded rule set for a service, class or rule it does not have raises
:class:`RuleSetLookupError`, which is both a :class:`RuleSetError` and a
``KeyError``.

Example::

    rule_set = default_rule_set()
    cls = rule_set.meter_class(facts)                   # "200A", or "default"
    config = rule_set.rule("electric", cls, "high_usage")
    config.params["factor"]                             # Decimal("2.0")
    rule_set.registers("water").total                   # "volume_m3"

A rule set file, in short (``hub/edits/rulesets/default.yaml`` is complete)::

    version: "2026.11-1"
    estimation: {max_consecutive: 2, max_wrap_share: 0.1}
    alarms: {"tamper*": blocking, "leak*": warning}
    services:
      water:
        registers: {total: volume_m3}
        rules:
          high_usage: {enabled: true, severity: warning,
                       params: {cycles: 6, min_cycles: 3, factor: 2.0, min_excess: 10}}
          ...                                           # every rule, see RULE_PARAMS
        classes:
          2in: {rules: {high_usage: {params: {min_excess: 150}}}}
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

from hub.data_files import DataFileError, read_text
from hub.edits.model import EstimationMethod, EstimationSettings, MeterFacts, Severity
from hub.edits.usage import is_cumulative
from protocols.read import REGISTER_RE
from protocols.strict_yaml import describe_yaml_error, load_yaml

DEFAULT_CLASS = "default"
"""The class of a meter whose size the rule set does not name: the service's own thresholds."""
DEFAULT_SOURCE = "default"
"""The ``source`` of :func:`default_rule_set` (the file shipped in the package)."""
SERVICES = ("electric", "water", "gas")
MAX_FILE_BYTES = 1_000_000
"""A rule set is a few kilobytes; anything this large is not one."""


@dataclass(frozen=True, slots=True)
class Param:
    """One threshold a rule takes: an integer count or an exact non-negative amount."""

    kind: str
    """``count`` (an integer ≥ ``low``) or ``amount`` (a Decimal in [``low``, ``high``])."""
    low: Decimal = Decimal(0)
    high: Decimal | None = None
    nullable: bool = False
    """``null`` is allowed and means "no limit": the rule passes."""


def _count(low: int = 0) -> Param:
    return Param("count", Decimal(low))


def _amount(low: str = "0", high: str | None = None, *, nullable: bool = False) -> Param:
    return Param("amount", Decimal(low), None if high is None else Decimal(high), nullable)


CHECK_PARAMS: Mapping[str, Mapping[str, Param]] = {
    "high_usage": {"cycles": _count(1), "min_cycles": _count(1), "factor": _amount("1"),
                   "min_excess": _amount()},
    "low_usage": {"cycles": _count(1), "min_cycles": _count(1), "factor": _amount("0", "1"),
                  "min_shortfall": _amount()},
    "high_usage_last_year": {"factor": _amount("1"), "min_excess": _amount()},
    "low_usage_last_year": {"factor": _amount("0", "1"), "min_shortfall": _amount()},
    "zero_consumption": {},
    "inactive_consumption": {"min_use": _amount()},
    "negative_consumption": {},
    "rollover": {},
    "spike": {"factor": _amount("1"), "min_cycles": _count(1), "min_use": _amount()},
    "stuck_register": {"cycles": _count(2)},
    "read_outside_window": {},
    "meter_clock_offset": {"tolerance_s": _amount()},
    "multiplier_change": {},
    "meter_alarm": {},
    "demand_over_capacity": {"capacity_kw": _amount(nullable=True)},
    "tou_sum_mismatch": {"tolerance": _amount(), "tolerance_share": _amount("0", "1")},
    "consecutive_estimates": {},
    "read_on_removed_meter": {},
    "unverified_provenance": {},
}
"""The rules :func:`hub.edits.rules.run_rules` runs, in order, and the parameters each takes."""

OUTCOME_RULES = ("estimated_missing", "estimation_limit", "no_estimate", "awaiting_reread")
"""Findings the edit engine raises itself (not rules run over a read); configured all the same."""

RULE_PARAMS: Mapping[str, Mapping[str, Param]] = {
    **CHECK_PARAMS, **{name: {} for name in OUTCOME_RULES}}
"""Every rule a rule set configures, for every service, and its parameters."""


class RuleSetError(DataFileError):
    """A rule set that cannot be loaded, or a lookup it cannot answer.

    ``file`` is the file (or ``default``), ``key`` the dotted path into it
    (``services.water.classes.5/8in.rules.high_usage.params.factor``;
    ``(file)`` for an unreadable file, ``(syntax)`` for broken YAML),
    ``why`` what is wrong, said so that a person can fix it.
    """


class RuleSetLookupError(RuleSetError, KeyError):
    """A service, class or rule the rule set does not have (also a ``KeyError``)."""


@dataclass(frozen=True)
class RuleConfig:
    """One rule's effective config for a service and meter class."""

    name: str
    enabled: bool
    severity: Severity
    params: Mapping[str, Any]
    """Amounts as ``Decimal``, counts as ``int``, ``None`` for "no limit"."""


@dataclass(frozen=True)
class Registers:
    """Which registers of a service's reads the rules look at."""

    total: str
    """The cumulative register that bills: ``energy_import_kwh``, ``volume_m3``."""
    tou: tuple[str, ...] = ()
    """Time-of-use registers that should add up to ``total``."""
    demand: str | None = None
    """The demand register compared with the meter's capacity (kW)."""


class RuleSet:
    """A validated rule set; build one with :func:`load_rule_set` or :func:`parse_rule_set`.

    ``alarms`` is the alarm table in file order, ``(pattern, severity)``;
    ``cache`` is where modules that derive per-class data from the rule set
    (the rules' run plan) keep it, so it lives and dies with the rule set.
    """

    def __init__(self, version: str, source: str, estimation: EstimationSettings,
                 alarms: tuple[tuple[str, Severity], ...],
                 registers: Mapping[str, Registers],
                 configs: Mapping[tuple[str, str], Mapping[str, RuleConfig]]) -> None:
        self.version = version
        self.source = source
        self.estimation = estimation
        self.alarms = alarms
        self._registers = dict(registers)
        self._configs = dict(configs)
        self._classes: dict[str, frozenset[str]] = {service: frozenset() for service in registers}
        for service, name in configs:
            if name != DEFAULT_CLASS:
                self._classes[service] = self._classes[service] | {name}
        self.cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"RuleSet(version={self.version!r}, source={self.source!r})"

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self._registers)

    def classes(self, service: str) -> tuple[str, ...]:
        """The meter classes ``service`` defines, ``default`` first."""
        return (DEFAULT_CLASS, *sorted(self._known_service(service)))

    def meter_class(self, meter: MeterFacts) -> str:
        """The class whose thresholds apply to ``meter``: its size if the service has it."""
        classes = self._known_service(meter.service)
        return meter.size if meter.size in classes else DEFAULT_CLASS

    def rules_for(self, service: str, meter_class: str) -> Mapping[str, RuleConfig]:
        """Every rule's effective config: the service's, overlaid by the class's overrides."""
        try:
            return self._configs[service, meter_class]
        except KeyError:
            classes = self._known_service(service)
            raise RuleSetLookupError(
                self.source, f"services.{service}.classes.{meter_class}",
                f"no such meter class; {service} has {', '.join(sorted(classes)) or 'none'} "
                f"(or {DEFAULT_CLASS})") from None

    def rule(self, service: str, meter_class: str, name: str) -> RuleConfig:
        """One rule's effective config; :class:`RuleSetLookupError` for an unknown rule."""
        configs = self.rules_for(service, meter_class)
        try:
            return configs[name]
        except KeyError:
            raise RuleSetLookupError(
                self.source, f"services.{service}.rules.{name}",
                f"no such rule; known: {', '.join(configs)}") from None

    def registers(self, service: str) -> Registers:
        self._known_service(service)
        return self._registers[service]

    def _known_service(self, service: str) -> frozenset[str]:
        try:
            return self._classes[service]
        except KeyError:
            raise RuleSetLookupError(
                self.source, f"services.{service}",
                f"no such service in rule set {self.version}; it has "
                f"{', '.join(self._registers)}") from None


def load_rule_set(path: str | Path) -> RuleSet:
    """Read and validate the rule set file at ``path``."""
    text = read_text(path, error=RuleSetError, what="a rule set", max_bytes=MAX_FILE_BYTES)
    return parse_rule_set(text, str(path))


_DEFAULT: list[RuleSet] = []


def default_rule_set() -> RuleSet:
    """The rule set shipped with meterhub (``hub/edits/rulesets/default.yaml``), loaded once."""
    if not _DEFAULT:
        text = (importlib.resources.files("hub.edits") / "rulesets" / "default.yaml"
                ).read_text(encoding="utf-8")
        _DEFAULT.append(parse_rule_set(text, DEFAULT_SOURCE))
    return _DEFAULT[0]


def parse_rule_set(text: str, source: str) -> RuleSet:
    """Validate rule set ``text``; ``source`` names it in errors (a path, or ``default``)."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise RuleSetError(source, "(syntax)", describe_yaml_error(exc)) from None
    except RecursionError:
        raise RuleSetError(source, "(syntax)", "nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise RuleSetError(source, "(syntax)", f"a value YAML cannot build: {exc}") from None
    if not isinstance(data, dict):
        what = "an empty file" if data is None else f"a {type(data).__name__}"
        raise RuleSetError(source, "(root)",
                           f"a rule set is a mapping (version, estimation, alarms, services), "
                           f"not {what}")
    try:
        spec = _RuleSetSpec.model_validate(data)
    except ValidationError as exc:
        key, why = _first_problem(exc)
        raise RuleSetError(source, key, why) from None
    return _build(spec, source)


# --- the file's shape ------------------------------------------------------------------------


def _exact_amount(value: object) -> Decimal:
    """A threshold from YAML: an integer, a YAML number (as written) or a decimal string."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = Decimal(repr(value))  # the shortest decimal that is this float: 0.1 → 0.1
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    elif isinstance(value, Decimal):
        number = value
    else:
        raise ValueError(f"must be a number such as 2.0 or \"2.0\", got a {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _in_range(param: Param) -> Callable[[object], Any]:
    def check(value: object) -> Any:
        if value is None and param.nullable:
            return None
        if param.kind == "count":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"must be a whole number, got {value!r}")
            number: Decimal | int = value
        else:
            number = _exact_amount(value)
        if number < param.low:
            if param.low == 0:
                raise ValueError(f"must not be negative, got {value!r}")
            raise ValueError(f"must be at least {param.low}, got {value!r}")
        if param.high is not None and number > param.high:
            raise ValueError(f"must be at most {param.high}, got {value!r}")
        return number

    return check


def _register_name(value: object) -> str:
    if not isinstance(value, str) or not REGISTER_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a register name (lowercase letters, digits, _)")
    return value


def _cumulative(value: str) -> str:
    if not is_cumulative(value):
        raise ValueError(f"{value!r} is not a cumulative register (energy_… or volume…)")
    return value


def _class_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a class is a meter size such as \"200A\" or \"5/8in\", got {value!r}")
    if value == DEFAULT_CLASS:
        raise ValueError(f"{DEFAULT_CLASS!r} is the service's own rules: configure it there")
    return value


def _pattern(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a flag pattern such as \"tamper*\", got {value!r}")
    return value


RegisterName = Annotated[str, BeforeValidator(_register_name)]
CumulativeRegister = Annotated[str, BeforeValidator(_cumulative), BeforeValidator(_register_name)]
ClassName = Annotated[str, BeforeValidator(_class_name)]
FlagPattern = Annotated[str, BeforeValidator(_pattern)]
Amount = Annotated[Decimal, BeforeValidator(_exact_amount)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _EstimationSpec(_Spec):
    methods: Annotated[tuple[EstimationMethod, ...], Field(min_length=1)] | None = None
    history_cycles: Annotated[StrictInt, Field(ge=1)] | None = None
    min_history_cycles: Annotated[StrictInt, Field(ge=0)] | None = None
    max_consecutive: Annotated[StrictInt, Field(ge=0)] | None = None
    auto_estimate_missing: StrictBool | None = None
    last_year_tolerance_days: Annotated[StrictInt, Field(ge=0, le=182)] | None = None
    max_wrap_share: Annotated[Amount, Field(ge=0, le=1)] | None = None
    extra: dict[StrictStr, Any] | None = None


class _RegistersSpec(_Spec):
    total: CumulativeRegister
    tou: tuple[CumulativeRegister, ...] = ()
    demand: RegisterName | None = None


def _params_model(rule: str, params: Mapping[str, Param], partial: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, param in params.items():
        kind: Any = Any if param.nullable else (int if param.kind == "count" else Decimal)
        annotation = Annotated[kind, BeforeValidator(_in_range(param))]
        fields[name] = (annotation, None) if partial else (annotation, ...)
    return create_model(f"{rule}_params{'_override' * partial}", __base__=_Spec, **fields)


def _rule_model(rule: str, params: Mapping[str, Param], partial: bool) -> type[BaseModel]:
    params_model = _params_model(rule, params, partial)
    if partial:
        return create_model(f"{rule}_override", __base__=_Spec,
                            enabled=(StrictBool | None, None),
                            severity=(Severity | None, None),
                            params=(params_model | None, None))
    params_field: Any = (params_model, ...) if params else (params_model, params_model())
    return create_model(rule, __base__=_Spec, enabled=(StrictBool, ...),
                        severity=(Severity, ...), params=params_field)


_ServiceRules = create_model(
    "rules", __base__=_Spec,
    **{name: (_rule_model(name, params, False), ...) for name, params in RULE_PARAMS.items()})
_ClassRules = create_model(
    "class_rules", __base__=_Spec,
    **{name: (_rule_model(name, params, True) | None, None)
       for name, params in RULE_PARAMS.items()})


class _ClassSpec(_Spec):
    rules: _ClassRules = Field(default_factory=_ClassRules)  # type: ignore[valid-type]


class _ServiceSpec(_Spec):
    registers: _RegistersSpec
    rules: _ServiceRules  # type: ignore[valid-type]
    classes: dict[ClassName, _ClassSpec] = Field(default_factory=dict)


class _ServicesSpec(_Spec):
    electric: _ServiceSpec | None = None
    water: _ServiceSpec | None = None
    gas: _ServiceSpec | None = None


class _RuleSetSpec(_Spec):
    version: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    estimation: _EstimationSpec = Field(default_factory=_EstimationSpec)
    alarms: dict[FlagPattern, Severity] = Field(default_factory=dict)
    services: _ServicesSpec


_UNKNOWN = {
    ("services",): f"unknown service; a rule set configures {', '.join(SERVICES)}",
}
_REQUIRED = {
    "version": "required: the rule set's version, e.g. \"2026.11-1\"",
    "services": "required: the services it configures (electric, water, gas)",
    "registers": "required: the registers the rules read, e.g. {total: volume_m3}",
    "total": "required: the cumulative register that bills, e.g. energy_import_kwh",
    "rules": "required: every rule's config (enabled, severity, params)",
    "enabled": "required: true or false",
    "severity": "required: info, warning or blocking",
    "params": "required: this rule's thresholds",
}
_SHORT_INPUT = (str, int, float, bool, type(None), Decimal)


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    """``(key path, why)`` of the first error pydantic found, in the file's own words."""
    errors = exc.errors(include_url=False)
    # A misspelt key is also a missing one: name the misspelling, it is the one to fix.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    key = ".".join(loc) or "(root)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return key, _unknown_key(loc)
    if kind == "missing":
        if len(loc) == 4 and loc[0] == "services" and loc[2] == "rules":
            return key, "required: every rule is configured for every service"
        if len(loc) >= 2 and loc[-2] == "params" and loc[-3] in RULE_PARAMS:
            return key, f"required: {loc[-3]} takes {', '.join(RULE_PARAMS[loc[-3]])}"
        return key, _REQUIRED.get(loc[-1], "required")
    why = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if (kind != "value_error" and isinstance(value, _SHORT_INPUT)
            and len(repr(value)) <= 40):
        why = f"{why}, got {value!r}"
        if kind == "string_type" and isinstance(value, float):
            why = f"{why} — quote it: \"{value!r}\""
    return key, why


def _unknown_key(loc: list[str]) -> str:
    parent = tuple(loc[:-1])
    if parent in _UNKNOWN:
        return _UNKNOWN[parent]
    if len(parent) >= 3 and parent[-1] == "rules":
        return f"unknown rule; known rules: {', '.join(RULE_PARAMS)}"
    if len(parent) >= 3 and parent[-1] == "params" and parent[-2] in RULE_PARAMS:
        takes = ", ".join(RULE_PARAMS[parent[-2]]) or "no parameters"
        return f"unknown parameter; {parent[-2]} takes {takes}"
    return "unknown key"


# --- building the rule set -------------------------------------------------------------------


def _build(spec: _RuleSetSpec, source: str) -> RuleSet:
    registers: dict[str, Registers] = {}
    configs: dict[tuple[str, str], Mapping[str, RuleConfig]] = {}
    for service in SERVICES:
        service_spec: _ServiceSpec | None = getattr(spec.services, service)
        if service_spec is None:
            continue
        registers[service] = Registers(service_spec.registers.total,
                                       tuple(service_spec.registers.tou),
                                       service_spec.registers.demand)
        base = {name: getattr(service_spec.rules, name).model_dump() for name in RULE_PARAMS}
        configs[service, DEFAULT_CLASS] = _configs(base, source, f"services.{service}.rules")
        for name, class_spec in service_spec.classes.items():
            merged = {rule: {**entry, "params": dict(entry["params"])}
                      for rule, entry in base.items()}
            for rule, override in class_spec.rules.model_dump(exclude_unset=True).items():
                for field, value in override.items():
                    if field == "params":
                        merged[rule]["params"].update(value)
                    else:
                        merged[rule][field] = value
            configs[service, name] = _configs(
                merged, source, f"services.{service}.classes.{name}.rules")
    if not registers:
        raise RuleSetError(source, "services",
                           f"configure at least one service ({', '.join(SERVICES)})")
    methods = spec.estimation.model_dump(exclude_none=True)
    if "methods" in methods and len(set(methods["methods"])) != len(methods["methods"]):
        raise RuleSetError(source, "estimation.methods", "a method is named twice")
    if "methods" in methods:
        methods["methods"] = tuple(methods["methods"])
    estimation = EstimationSettings(**methods)
    if estimation.min_history_cycles > estimation.history_cycles:
        raise RuleSetError(source, "estimation.min_history_cycles",
                           f"{estimation.min_history_cycles} is more than history_cycles "
                           f"({estimation.history_cycles})")
    return RuleSet(spec.version, source, estimation, tuple(spec.alarms.items()), registers,
                   configs)


def _configs(entries: Mapping[str, Mapping[str, Any]], source: str,
             where: str) -> Mapping[str, RuleConfig]:
    built = {}
    for name, entry in entries.items():
        params = entry["params"]
        if "min_cycles" in params and "cycles" in params and params["min_cycles"] > params[
                "cycles"]:
            raise RuleSetError(source, f"{where}.{name}.params.min_cycles",
                               f"{params['min_cycles']} is more than cycles ({params['cycles']})"
                               " once the class overrides apply")
        built[name] = RuleConfig(name, entry["enabled"], Severity(entry["severity"]),
                                 MappingProxyType(dict(params)))
    return MappingProxyType(built)
