"""Rate files: one YAML file per rate code, validated on load with errors naming file and key.

A rate is data a billing analyst reads and changes, so everything is checked
when the file is read, and a problem is a :class:`RateError` naming the file,
the dotted key path and why: unknown keys, wrong types, money that is not an
exact decimal, tiers that do not increase, versions that overlap, a fee on a
component that does not exist, seasons that do not cover the year, a TOU
schedule that is not 12 × 24 known periods, a file whose name is not its
code. In key paths a version is named by its effective date and a component
by its id when they are readable (``versions.2026-10-15.components.energy
.tiers.1.up_to``), otherwise by position (from 0); list positions inside a
component count from 0, so ``weekday.0.17`` is January, 17:00–18:00.

Numbers are exact: a YAML number becomes the ``Decimal`` written (``0.1`` is
``Decimal("0.1")``, never a binary float, however many digits it has);
a quoted decimal (``"0.1"``) is accepted too. ``.inf``/``.nan`` are refused.
Note YAML 1.1 reads unquoted ``on``/``off``/``yes``/``no`` as true/false:
quote such a period name, or pick another (``offpeak``).

The file, annotated (the sample tables in ``hub/rates/tables`` are complete)::

    code: RES-E1                  # the rate code; the file is RES-E1.yaml
    service: electric             # electric | water | gas
    unit: kWh                     # unit of the use the tiers count
    register: energy_import_kwh   # the service's total register (use × multiplier)
    currency: USD                 # optional, USD by default
    description: Residential electric service
    versions:                     # in date order; each in force until the next
      - effective: 2026-01-01
        ends: 2026-12-31          # optional: last day in force (a gap may follow)
        rounding: {places: 2, mode: half_up, per: line}   # optional; these are the defaults
        components:               # shown on the bill in this order
          - id: customer          # [a-z][a-z0-9_]*, names the bill lines
            type: fixed           # URDB fixedchargefirstmeter / fixedchargeunits
            description: Customer charge
            per: day              # bill | day
            amount: 0.3288        # or by_meter_size: {5/8in: 12.50, 1in: 22.00}
          - id: energy
            type: tou             # priced per period: TOU registers, or intervals
            description: Energy
            periods:              # name → the register it accumulates in, and blocks
              peak: {register: energy_import_kwh_t1, price: 0.2150}
              offpeak: {register: energy_import_kwh_t2, price: 0.0890}
            weekday: [*row, …]    # 12 rows (Jan…Dec) × 24 period names (hour 0…23)
            weekend: [*row, …]    # URDB energyweekdayschedule/energyweekendschedule
            fallback: {price: 0.1190}   # optional: the total register, when TOU registers
                                        # and intervals are both missing
          - id: delivery
            type: tiered          # URDB energyratestructure (one period)
            description: Delivery
            register: energy_import_kwh   # optional: the rate's register by default
            direction: inclining  # optional check: inclining | declining
            scale: days           # tier bounds per bill (default) or per standard_days
            standard_days: 30
            seasons:              # or tiers: […] (all year) or price: 0.05 (one block)
              - name: summer
                months: [6, 7, 8, 9]
                tiers: [{up_to: 500, price: 0.0400}, {price: 0.0600}]
              - name: winter
                months: [10, 11, 12, 1, 2, 3, 4, 5]
                tiers: [{up_to: 700, price: 0.0350}, {price: 0.0500}]
          - id: demand
            type: demand          # URDB flatdemandstructure
            description: Demand
            price: 14.20          # per kW (or tiers by kW, or seasons)
            ratchet: {percent: 80, months: 11}   # URDB lookbackpercent / lookbackrange
          - id: minimum
            type: minimum         # URDB mincharge / minchargeunits
            description: Minimum bill
            amount: 75.00
            per: bill             # bill | day
            of: [customer, energy, demand]
          - id: tax
            type: percentage      # fees and taxes; of may name fees (tax on a fee)
            description: Sales tax 5 %
            percent: 5
            of: [customer, energy, demand, minimum]
          - id: wastewater
            type: wastewater      # water rates: lesser of use and the winter average
            description: Wastewater
            price: 2.15
            winter_months: [12, 1, 2]
            default_average: 12   # per bill period, for accounts without winter history
        options:                  # special rate options an account may carry
          senior:
            description: Senior discount 10 % on energy
            discount: {percent: 10, of: [energy]}
          low_income:
            description: Low-income tiers and 5.00 off the customer charge
            discount: {amount: 5.00, per: bill, of: [customer]}   # a fixed discount: one component
            replace_tiers:        # other blocks for tiered or wastewater components
              delivery: {tiers: [{up_to: 500, price: 0.0200}, {price: 0.0500}]}

Example::

    try:
        rate = load_rate("hub/rates/tables/RES-W1.yaml")
    except RateError as exc:
        print(exc.file, exc.key, exc.why)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from hub.data_files import DataFileError, read_text
from hub.rates.model import (
    COMPONENT_TYPES,
    ID_RE,
    MONTHS,
    OPTION_RE,
    RATE_CODE_RE,
    SERVICES,
    Blocks,
    Component,
    Demand,
    Discount,
    Fixed,
    MinimumBill,
    Percentage,
    Ratchet,
    RateOption,
    RateTable,
    RateVersion,
    Rounding,
    Season,
    Tier,
    Tiered,
    TimeOfUse,
    TouPeriod,
    Wastewater,
)
from protocols.read import REGISTER_RE
from protocols.strict_yaml import UniqueKeyLoader, describe_yaml_error

MAX_FILE_BYTES = 1_000_000
"""A rate file is a few kilobytes; anything this large is not one."""
HOURS = 24


class RateError(DataFileError):
    """A rate file that cannot be loaded.

    ``file`` is the file (or the source name given to :func:`parse_rate`),
    ``key`` the dotted path into it (``versions.2026-10-15.components.energy
    .tiers.1.up_to``; ``(file)`` for an unreadable file, ``(syntax)`` for
    broken YAML, ``(root)`` for the whole document), ``why`` what is wrong,
    said so that a person can fix it.
    """


def load_rate(path: str | Path) -> RateTable:
    """Read and validate the rate file at ``path``; its name must be its code (``RES-E1.yaml``)."""
    name = str(path)
    text = read_text(path, error=RateError, what="a rate file", max_bytes=MAX_FILE_BYTES)
    rate = parse_rate(text, name)
    stem = Path(path).name.removesuffix(".yaml").removesuffix(".yml")
    if rate.code != stem:
        raise RateError(name, "code", f"{rate.code!r} is not the file's name ({stem!r}): "
                                      f"one file per rate code, named {rate.code}.yaml")
    return rate


def parse_rate(text: str, source: str) -> RateTable:
    """Validate rate file ``text``; ``source`` names it in errors (a path, usually)."""
    try:
        data = yaml.load(text, Loader=_RateLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RateError(source, "(syntax)", describe_yaml_error(exc)) from None
    except RecursionError:
        raise RateError(source, "(syntax)", "nested too deeply") from None
    except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
        raise RateError(source, "(syntax)", f"a value YAML cannot build: {exc}") from None
    if not isinstance(data, dict):
        what = "an empty file" if data is None else f"a {type(data).__name__}"
        raise RateError(source, "(root)", "a rate file is a mapping (code, service, unit, "
                                          f"register, description, versions), not {what}")
    return _Builder(source).table(data)


# --- YAML numbers as exact decimals ----------------------------------------------------------


class _RateLoader(UniqueKeyLoader):
    """The strict loader, except that a YAML float becomes the ``Decimal`` written."""


def _yaml_decimal(loader: _RateLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a finite decimal number", node.start_mark)
    return number


_RateLoader.add_constructor("tag:yaml.org,2002:float", _yaml_decimal)


# --- scalar checks ---------------------------------------------------------------------------


def _number(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        raise ValueError(f"{value!r} is a binary float; money and use are exact decimals")
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise ValueError(f"must be a number such as 0.1012, got a {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _non_negative(value: object) -> Decimal:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def _positive(value: object) -> Decimal:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be above 0, got {number}")
    return number


def _percent(value: object) -> Decimal:
    number = _number(value)
    if not 0 < number <= 100:
        raise ValueError(f"a percentage is above 0 and at most 100, got {number}")
    return number


def _pattern(regex: Any, what: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is not {what} (YAML reads unquoted "
                             "on/off/yes/no as true/false: quote it)")
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


def _day(value: object) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{value.isoformat()} is a time; an effective date is a day "
                         "such as 2026-10-15")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date such as 2026-10-15")


def _month(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
        raise ValueError(f"a month is 1 to 12, got {value!r}")
    return value


Money = Annotated[Decimal, BeforeValidator(_non_negative)]
Positive = Annotated[Decimal, BeforeValidator(_positive)]
Percent = Annotated[Decimal, BeforeValidator(_percent)]
Ident = Annotated[str, BeforeValidator(_pattern(ID_RE, "an id (a-z, 0-9, _; a letter first)"))]
OptionName = Annotated[str, BeforeValidator(_pattern(OPTION_RE, "an option name (a-z, 0-9, _)"))]
Register = Annotated[str, BeforeValidator(
    _pattern(REGISTER_RE, "a register name such as energy_import_kwh"))]
Code = Annotated[str, BeforeValidator(_pattern(RATE_CODE_RE, "a rate code such as RES-E1"))]
Day = Annotated[date, BeforeValidator(_day)]
Month = Annotated[int, BeforeValidator(_month)]
Text = Annotated[StrictStr, Field(min_length=1, max_length=200)]


# --- the file's shape ------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TierSpec(_Spec):
    up_to: Positive | None = None
    price: Money


class _SeasonSpec(_Spec):
    name: Ident
    months: list[Month]
    price: Money | None = None
    tiers: list[_TierSpec] | None = None


class _BlocksSpec(_Spec):
    price: Money | None = None
    tiers: list[_TierSpec] | None = None
    seasons: list[_SeasonSpec] | None = None


class _ComponentSpec(_Spec):
    id: Ident
    type: str
    description: Text


class _FixedSpec(_ComponentSpec):
    per: Literal["bill", "day"]
    amount: Money | None = None
    by_meter_size: dict[Annotated[StrictStr, Field(min_length=1, max_length=32)],
                        Money] | None = None


class _TieredSpec(_ComponentSpec, _BlocksSpec):
    register_: Register | None = Field(None, alias="register")
    scale: Literal["bill", "days"] = "bill"
    standard_days: Annotated[StrictInt, Field(ge=1, le=366)] | None = None
    direction: Literal["inclining", "declining"] | None = None


class _PeriodSpec(_BlocksSpec):
    register_: Register = Field(alias="register")


class _TouSpec(_ComponentSpec):
    periods: dict[Ident, _PeriodSpec]
    weekday: list[Any]
    weekend: list[Any]
    register_: Register | None = Field(None, alias="register")
    fallback: _BlocksSpec | None = None


class _RatchetSpec(_Spec):
    percent: Percent
    months: Annotated[StrictInt, Field(ge=1, le=36)]


class _DemandSpec(_ComponentSpec, _BlocksSpec):
    ratchet: _RatchetSpec | None = None


class _MinimumSpec(_ComponentSpec):
    amount: Money
    per: Literal["bill", "day"]
    of: list[Ident]


class _PercentageSpec(_ComponentSpec):
    percent: Percent
    of: list[Ident]


class _WastewaterSpec(_ComponentSpec, _BlocksSpec):
    register_: Register | None = Field(None, alias="register")
    winter_months: list[Month]
    default_average: Money


_COMPONENT_SPECS: Mapping[str, type[_ComponentSpec]] = {
    "fixed": _FixedSpec, "tiered": _TieredSpec, "tou": _TouSpec, "demand": _DemandSpec,
    "minimum": _MinimumSpec, "percentage": _PercentageSpec, "wastewater": _WastewaterSpec}
assert set(_COMPONENT_SPECS) == set(COMPONENT_TYPES)


class _DiscountSpec(_Spec):
    of: list[Ident]
    percent: Percent | None = None
    amount: Positive | None = None
    per: Literal["bill", "day"] | None = None


class _OptionSpec(_Spec):
    description: Text
    discount: _DiscountSpec | None = None
    replace_tiers: dict[Ident, _BlocksSpec] | None = None


class _RoundingSpec(_Spec):
    places: Annotated[StrictInt, Field(ge=0, le=6)] = 2
    mode: Literal["half_up", "half_even", "down", "up"] = "half_up"
    per: Literal["line", "bill"] = "line"


class _VersionSpec(_Spec):
    effective: Day
    ends: Day | None = None
    rounding: _RoundingSpec = Field(default_factory=_RoundingSpec)
    components: list[Any]
    options: dict[OptionName, Any] = Field(default_factory=dict)


class _RateSpec(_Spec):
    code: Code
    service: Literal["electric", "water", "gas"]
    unit: Annotated[StrictStr, Field(min_length=1, max_length=16)]
    register_: Register = Field(alias="register")
    currency: Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    description: Text
    versions: list[Any]


assert set(SERVICES) == {"electric", "water", "gas"}

_REQUIRED = {
    "code": "required: the rate code, e.g. RES-E1 (the file's name)",
    "service": "required: electric, water or gas",
    "unit": "required: the unit of the use the tiers count, e.g. kWh or m3",
    "register": "required: the register whose use this prices, e.g. energy_import_kwh",
    "description": "required: what the bill calls it",
    "versions": "required: the rate's versions, each with an effective date",
    "effective": "required: the day this version takes effect, e.g. 2026-10-15",
    "components": "required: the charges of this version",
    "id": "required: the component's id, e.g. energy (it names the bill lines)",
    "type": f"required: one of {', '.join(COMPONENT_TYPES)}",
    "per": "required: bill or day",
    "price": "required: the price per unit",
    "amount": "required: the amount",
    "of": "required: the components it applies to",
    "percent": "required: the percentage, e.g. 5",
    "periods": "required: the TOU periods, name → {register, price}",
    "weekday": "required: the weekday schedule, 12 rows (Jan…Dec) of 24 period names",
    "weekend": "required: the weekend schedule, 12 rows (Jan…Dec) of 24 period names",
    "months": "required: the months (1–12)",
    "name": "required: the season's name",
    "winter_months": "required: the months whose use makes the winter average, e.g. [12, 1, 2]",
    "default_average": "required: the winter average of a new account (per bill period)",
}
_SHORT_INPUT = (str, int, bool, type(None), Decimal, date)


def _problem(spec: type[_Spec], exc: ValidationError) -> tuple[list[str], str]:
    """``(key path parts, why)`` of the first error pydantic found, in the file's own words."""
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(spec, loc[:-1])
        return loc, f"unknown key; known here: {', '.join(known)}" if known else "unknown key"
    if kind == "missing":
        return loc, _REQUIRED.get(loc[-1] if loc else "", "required")
    why = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if kind != "value_error" and isinstance(value, _SHORT_INPUT) and len(repr(value)) <= 40:
        why = f"{why}, got {value!r}"
    return loc, why


def _known_keys(spec: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys the mapping at ``loc`` (inside a ``spec`` document) may have."""
    model: Any = spec
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        if part in fields:
            model = _inner_model(fields[part].annotation)
        # a list position or a mapping key: the same model holds its items
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [info.alias or name for name, info in model.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    """The model a field holds, through ``X | None``, ``list[X]`` and ``dict[K, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(getattr(annotation, "__args__", ())):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


# --- building the table ----------------------------------------------------------------------


class _Builder:
    """Turns the validated shapes into model objects, checking what spans several keys."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: list[str], why: str) -> RateError:
        return RateError(self.source, ".".join(path) or "(root)", why)

    def validate(self, spec: type[_Spec], data: object, path: list[str]) -> Any:
        if not isinstance(data, dict):
            raise self.error(path, f"must be a mapping, got {_kind(data)}")
        try:
            return spec.model_validate(data)
        except ValidationError as exc:
            loc, why = _problem(spec, exc)
            raise self.error(path + loc, why) from None

    def table(self, data: dict[str, Any]) -> RateTable:
        spec: _RateSpec = self.validate(_RateSpec, data, [])
        if not spec.versions:
            raise self.error(["versions"], "a rate has at least one version")
        versions = []
        for index, raw in enumerate(spec.versions):
            path = ["versions", _version_label(raw, index)]
            versions.append(self.version(raw, path, spec.register_))
        self.check_dates(versions, spec.versions)
        self.check_dependencies(versions, spec.versions)
        return RateTable(spec.code, spec.service, spec.unit, spec.description, tuple(versions),
                         spec.register_, spec.currency)

    def check_dates(self, versions: list[RateVersion], raws: list[Any]) -> None:
        seen: dict[date, int] = {}
        for index, version in enumerate(versions):
            path = ["versions", _version_label(raws[index], index)]
            if version.effective in seen:
                raise self.error([*path, "effective"],
                                 f"{version.effective} is the effective date of version "
                                 f"{seen[version.effective]} too: one version per date")
            seen[version.effective] = index
            if version.ends is not None and version.ends < version.effective:
                raise self.error([*path, "ends"], f"{version.ends} is before the version "
                                                  f"takes effect ({version.effective})")
            if index:
                before = versions[index - 1]
                if version.effective < before.effective:
                    raise self.error([*path, "effective"],
                                     f"{version.effective} comes before the previous "
                                     f"version's {before.effective}: list versions in date "
                                     "order")
                if before.ends is not None and before.ends >= version.effective:
                    previous = ["versions", _version_label(raws[index - 1], index - 1)]
                    raise self.error([*previous, "ends"],
                                     f"{before.ends} overlaps the next version, in force "
                                     f"from {version.effective}")

    def check_dependencies(self, versions: list[RateVersion], raws: list[Any]) -> None:
        """No chain of fees, taxes and minimums may come back to where it started.

        Checked per version (naming the component) and over all versions
        together, since a bill spanning a rate change computes each
        component id once, in one order.
        """
        union: dict[str, set[str]] = {}
        for index, version in enumerate(versions):
            graph = {c.id: set(c.depends_on) for c in version.components}
            cycle = _cycle(graph)
            if cycle:
                path = ["versions", _version_label(raws[index], index), "components",
                        cycle[0], "of"]
                raise self.error(path, f"{' → '.join(cycle)}: a chain of components that "
                                       "comes back to itself")
            for key, deps in graph.items():
                union.setdefault(key, set()).update(deps)
        cycle = _cycle(union)
        if cycle:
            raise self.error(["versions"], f"{' → '.join(cycle)}: across versions these "
                                           "components depend on each other in a circle")

    def version(self, raw: object, path: list[str], register: str) -> RateVersion:
        spec: _VersionSpec = self.validate(_VersionSpec, raw, path)
        if not spec.components:
            raise self.error([*path, "components"], "a version has at least one component")
        raw_components = spec.components
        ids: dict[str, int] = {}
        components: list[Component] = []
        for index, raw_component in enumerate(raw_components):
            where = [*path, "components", _component_label(raw_component, index)]
            component = self.component(raw_component, where, register)
            if component.id in ids:
                raise self.error([*where, "id"], f"{component.id!r} is the id of component "
                                                 f"{ids[component.id]} too: ids are unique")
            ids[component.id] = index
            components.append(component)
        by_id = {c.id: c for c in components}
        for component in components:
            if isinstance(component, Percentage | MinimumBill):
                where = [*path, "components", component.id, "of"]
                self.check_refs(component.of, by_id, where, component.id)
        options = {}
        for name, raw_option in spec.options.items():
            options[name] = self.option(name, raw_option, [*path, "options", name], by_id)
        rounding = Rounding(spec.rounding.places, spec.rounding.mode, spec.rounding.per)
        return RateVersion(spec.effective, tuple(components), MappingProxyType(options),
                           rounding, spec.ends)

    def check_refs(self, refs: tuple[str, ...], by_id: Mapping[str, Component],
                   path: list[str], own: str | None) -> None:
        if not refs:
            raise self.error(path, "name at least one component")
        seen: set[str] = set()
        for index, ref in enumerate(refs):
            if ref == own:
                raise self.error([*path, str(index)], f"{ref!r} cannot apply to itself")
            if ref not in by_id:
                raise self.error([*path, str(index)],
                                 f"{ref!r} is not a component of this version; it has "
                                 f"{', '.join(by_id)}")
            if ref in seen:
                raise self.error([*path, str(index)], f"{ref!r} is named twice")
            seen.add(ref)

    def component(self, raw: object, path: list[str], register: str) -> Component:
        if not isinstance(raw, dict):
            raise self.error(path, f"a component is a mapping (id, type, description, …), "
                                   f"not {_kind(raw)}")
        kind = raw.get("type")
        if kind is None:
            raise self.error([*path, "type"], _REQUIRED["type"])
        if not isinstance(kind, str) or kind not in _COMPONENT_SPECS:
            raise self.error([*path, "type"], f"{kind!r} is not a component type; one of "
                                              f"{', '.join(_COMPONENT_SPECS)}")
        spec = self.validate(_COMPONENT_SPECS[kind], raw, path)
        build = getattr(self, f"build_{kind}")
        return build(spec, path, register)

    def build_fixed(self, spec: _FixedSpec, path: list[str], register: str) -> Fixed:
        if (spec.amount is None) == (spec.by_meter_size is None):
            raise self.error(path, "give amount or by_meter_size (one of the two)")
        if spec.by_meter_size is not None and not spec.by_meter_size:
            raise self.error([*path, "by_meter_size"], "name at least one meter size")
        sizes = MappingProxyType(dict(spec.by_meter_size or {}))
        return Fixed(spec.id, spec.description, spec.per, spec.amount, sizes)

    def build_tiered(self, spec: _TieredSpec, path: list[str], register: str) -> Tiered:
        blocks = self.blocks(spec, path)
        if spec.scale == "days" and spec.standard_days is None:
            raise self.error([*path, "standard_days"], "required with scale: days: the days "
                                                       "the tier bounds are written for")
        if spec.scale == "bill" and spec.standard_days is not None:
            raise self.error([*path, "standard_days"], "only with scale: days")
        self.check_direction(blocks, spec.direction, path)
        return Tiered(spec.id, spec.description, spec.register_ or register, blocks, spec.scale,
                      spec.standard_days, spec.direction)

    def build_tou(self, spec: _TouSpec, path: list[str], register: str) -> TimeOfUse:
        if not spec.periods:
            raise self.error([*path, "periods"], "name at least one period")
        periods = []
        registers: dict[str, str] = {}
        for name, period in spec.periods.items():
            where = [*path, "periods", name]
            if period.register_ in registers:
                raise self.error([*where, "register"],
                                 f"{period.register_} is period {registers[period.register_]}'s "
                                 "register too: each period has its own")
            registers[period.register_] = name
            periods.append(TouPeriod(name, period.register_, self.blocks(period, where)))
        names = tuple(spec.periods)
        weekday = self.schedule(spec.weekday, [*path, "weekday"], names)
        weekend = self.schedule(spec.weekend, [*path, "weekend"], names)
        fallback = None
        if spec.fallback is not None:
            fallback = self.blocks(spec.fallback, [*path, "fallback"])
        return TimeOfUse(spec.id, spec.description, tuple(periods), weekday, weekend,
                         spec.register_ or register, fallback)

    def schedule(self, rows: list[Any], path: list[str],
                 names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        if len(rows) != 12:
            raise self.error(path, f"{len(rows)} rows; a schedule has one row per month "
                                   "(12, January first)")
        built = []
        for month, row in enumerate(rows):
            if not isinstance(row, list):
                raise self.error([*path, str(month)],
                                 f"a row is a list of 24 period names, not {_kind(row)}")
            if len(row) != HOURS:
                raise self.error([*path, str(month)], f"{len(row)} hours; a row has 24 "
                                                      "(hour 0 to hour 23)")
            for hour, name in enumerate(row):
                if isinstance(name, bool):
                    raise self.error([*path, str(month), str(hour)],
                                     f"{str(name).lower()} is not a period (YAML reads "
                                     "unquoted on/off/yes/no as true/false: quote it)")
                if name not in names:
                    raise self.error([*path, str(month), str(hour)],
                                     f"{name!r} is not a period; the periods are "
                                     f"{', '.join(names)}")
            built.append(tuple(row))
        return tuple(built)

    def build_demand(self, spec: _DemandSpec, path: list[str], register: str) -> Demand:
        ratchet = None
        if spec.ratchet is not None:
            ratchet = Ratchet(spec.ratchet.percent, spec.ratchet.months)
        return Demand(spec.id, spec.description, self.blocks(spec, path), ratchet)

    def build_minimum(self, spec: _MinimumSpec, path: list[str], register: str) -> MinimumBill:
        return MinimumBill(spec.id, spec.description, spec.amount, spec.per, tuple(spec.of))

    def build_percentage(self, spec: _PercentageSpec, path: list[str],
                         register: str) -> Percentage:
        return Percentage(spec.id, spec.description, spec.percent, tuple(spec.of))

    def build_wastewater(self, spec: _WastewaterSpec, path: list[str],
                         register: str) -> Wastewater:
        months = self.months(spec.winter_months, [*path, "winter_months"])
        if len(months) == 12:
            raise self.error([*path, "winter_months"], "every month is a winter month: the "
                                                       "average would never apply")
        return Wastewater(spec.id, spec.description, spec.register_ or register,
                          self.blocks(spec, path), months, spec.default_average)

    def months(self, months: list[int], path: list[str]) -> tuple[int, ...]:
        if not months:
            raise self.error(path, "name at least one month")
        seen: set[int] = set()
        for index, month in enumerate(months):
            if month in seen:
                raise self.error([*path, str(index)], f"month {month} is named twice")
            seen.add(month)
        return tuple(months)

    def blocks(self, spec: _BlocksSpec | _SeasonSpec, path: list[str]) -> Blocks:
        """``price``, ``tiers`` or ``seasons``: exactly one, as :class:`Blocks`."""
        given = [key for key in ("price", "tiers", "seasons")
                 if getattr(spec, key, None) is not None]
        if len(given) != 1:
            keys = "price or tiers" if isinstance(spec, _SeasonSpec) else (
                "price, tiers or seasons")
            if not given:
                raise self.error(path, f"no price: give {keys} (one of them)")
            raise self.error([*path, given[1]], f"{' and '.join(given)} both given: "
                                                f"price with one of {keys}")
        if spec.price is not None:
            return Blocks(tiers=(Tier(None, spec.price),))
        if spec.tiers is not None:
            return Blocks(tiers=self.tiers(spec.tiers, [*path, "tiers"]))
        assert isinstance(spec, _BlocksSpec) and spec.seasons is not None
        return Blocks(seasons=self.seasons(spec.seasons, [*path, "seasons"]))

    def tiers(self, specs: list[_TierSpec], path: list[str]) -> tuple[Tier, ...]:
        if not specs:
            raise self.error(path, "name at least one tier")
        tiers = []
        previous: Decimal | None = None
        for index, tier in enumerate(specs):
            where = [*path, str(index)]
            last = index == len(specs) - 1
            if last and tier.up_to is not None:
                raise self.error([*where, "up_to"], f"the last tier has no upper bound: use "
                                                    f"above {tier.up_to} would have no price")
            if not last and tier.up_to is None:
                raise self.error([*where, "up_to"], "required: every tier but the last ends "
                                                    "somewhere")
            if tier.up_to is not None and previous is not None and tier.up_to <= previous:
                raise self.error([*where, "up_to"], f"{tier.up_to} is not above the previous "
                                                    f"tier's {previous}: tiers increase")
            previous = tier.up_to
            tiers.append(Tier(tier.up_to, tier.price))
        return tuple(tiers)

    def seasons(self, specs: list[_SeasonSpec], path: list[str]) -> tuple[Season, ...]:
        if not specs:
            raise self.error(path, "name at least one season")
        owner: dict[int, str] = {}
        names: set[str] = set()
        seasons = []
        for index, spec in enumerate(specs):
            where = [*path, str(index)]
            if spec.name in names:
                raise self.error([*where, "name"], f"season {spec.name!r} is named twice")
            names.add(spec.name)
            months = self.months(spec.months, [*where, "months"])
            for position, month in enumerate(months):
                if month in owner:
                    raise self.error([*where, "months", str(position)],
                                     f"month {month} is in season {owner[month]!r} too: "
                                     "each month is in one season")
                owner[month] = spec.name
            blocks = self.blocks(spec, where)
            seasons.append(Season(spec.name, months, blocks.tiers))
        missing = [str(month) for month in MONTHS if month not in owner]
        if missing:
            raise self.error(path, f"month(s) {', '.join(missing)} in no season: seasons "
                                   "cover the 12 months exactly once")
        return tuple(seasons)

    def check_direction(self, blocks: Blocks, direction: str | None, path: list[str]) -> None:
        if direction is None:
            return
        groups = [([*path, "tiers"], blocks.tiers)] if blocks.tiers else [
            ([*path, "seasons", str(index), "tiers"], season.tiers)
            for index, season in enumerate(blocks.seasons)]
        for where, tiers in groups:
            for index in range(1, len(tiers)):
                before, price = tiers[index - 1].price, tiers[index].price
                if (direction == "inclining" and price < before) or (
                        direction == "declining" and price > before):
                    word = "below" if direction == "inclining" else "above"
                    raise self.error([*where, str(index), "price"],
                                     f"{price} is {word} the previous tier's {before}, but "
                                     f"the blocks are {direction}")

    def option(self, name: str, raw: object, path: list[str],
               by_id: Mapping[str, Component]) -> RateOption:
        spec: _OptionSpec = self.validate(_OptionSpec, raw, path)
        if name in by_id:
            raise self.error(path, f"{name!r} is a component id too: option lines would share "
                                   "its codes")
        if spec.discount is None and not spec.replace_tiers:
            raise self.error(path, "an option gives a discount or replace_tiers (or both)")
        discount = None
        if spec.discount is not None:
            discount = self.discount(spec.discount, [*path, "discount"], by_id)
        replaced = {}
        for target, blocks_spec in (spec.replace_tiers or {}).items():
            where = [*path, "replace_tiers", target]
            component = by_id.get(target)
            if not isinstance(component, Tiered | Wastewater):
                what = "not a component of this version" if component is None else (
                    f"a {component.type} component")
                raise self.error(where, f"{target!r} is {what}; replace_tiers applies to "
                                        "tiered and wastewater components")
            blocks = self.blocks(blocks_spec, where)
            if isinstance(component, Tiered):
                self.check_direction(blocks, component.direction, where)
            replaced[target] = blocks
        return RateOption(name, spec.description, discount, MappingProxyType(replaced))

    def discount(self, spec: _DiscountSpec, path: list[str],
                 by_id: Mapping[str, Component]) -> Discount:
        if (spec.percent is None) == (spec.amount is None):
            raise self.error(path, "give percent or amount (one of the two)")
        self.check_refs(tuple(spec.of), by_id, [*path, "of"], None)
        for index, ref in enumerate(spec.of):
            if isinstance(by_id[ref], Percentage | MinimumBill):
                raise self.error([*path, "of", str(index)],
                                 f"{ref!r} is a {by_id[ref].type}: discounts apply to "
                                 "charges, and fees, taxes and minimums follow them")
        if spec.amount is not None:
            if len(spec.of) != 1:
                raise self.error([*path, "of"], "a fixed discount applies to one component")
            if spec.per is None:
                raise self.error([*path, "per"], "required with amount: bill or day")
            return Discount(tuple(spec.of), amount=spec.amount, per=spec.per)
        if spec.per is not None:
            raise self.error([*path, "per"], "only with amount (a percent applies to the "
                                             "charges as they are)")
        return Discount(tuple(spec.of), percent=spec.percent)


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{value!r}" if len(repr(value)) <= 40 else f"a {type(value).__name__}"


def _version_label(raw: object, index: int) -> str:
    """A version's name in key paths: its effective date when readable, else its position."""
    if isinstance(raw, dict):
        effective = raw.get("effective")
        if isinstance(effective, date) and not isinstance(effective, datetime):
            return effective.isoformat()
        if isinstance(effective, str):
            try:
                return date.fromisoformat(effective).isoformat()
            except ValueError:
                pass
    return str(index)


def _component_label(raw: object, index: int) -> str:
    """A component's name in key paths: its id when it is one, else its position."""
    if isinstance(raw, dict):
        ident = raw.get("id")
        if isinstance(ident, str) and ID_RE.fullmatch(ident):
            return ident
    return str(index)


def _cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """A dependency cycle in ``graph`` as ``[a, b, …, a]``, or ``[]``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
