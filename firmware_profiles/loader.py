"""From profile files to :class:`~firmware_profiles.profile.Profile` objects, every problem named.

Two steps, so that a broken file still tells everything that is wrong with it:

1. :func:`read_source` parses one file into a :class:`ProfileSource`: the part
   of its top level that validated, plus ``(key, why)`` for the rest (YAML
   syntax with its line, unknown keys, wrong types, id ≠ file name …).
2. :class:`Resolver` turns sources into profiles: it follows ``extends``
   (unknown base, cycle), merges a variant onto its base, validates each
   channel against the protocol (address or code, unit, flags, scale) and
   the channels against each other (overlapping registers, a data set read
   twice, two clocks), and raises :class:`ProfileValidationError` listing all
   problems of the file.

A firmware variant lists only what differs from the profile it ``extends``:
scalar keys it gives replace the base's, ``serial``/``modbus``/``iec`` keys
are merged key by key, ``remove`` drops base channels by name and
``channels`` replace or add channels by name (a replaced channel is replaced
whole). ``id``, ``firmware`` and ``source`` belong to each file and are never
inherited; ``protocol`` is inherited and may not change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from firmware_profiles.errors import ProfileValidationError
from firmware_profiles.profile import Profile
from firmware_profiles.schema import (
    CHANNEL_SPECS,
    ChannelSpec,
    HeaderSpec,
    ModbusChannelSpec,
    ObisChannelSpec,
    problems_from,
)
from firmware_profiles.versions import FirmwareRange
from protocols.channels import (
    ByteOrder,
    Channel,
    DataType,
    IecSettings,
    ModbusChannel,
    ModbusSettings,
    ObisChannel,
    Role,
    SerialSettings,
)
from protocols.read import OBIS_RE, REGISTER_RE
from protocols.strict_yaml import describe_yaml_error, load_yaml

PROFILE_SUFFIXES = (".yaml", ".yml")
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
MAX_FILE_BYTES = 1_000_000
"""A register map is a few kilobytes; anything this large is not a profile."""

SERIAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "modbus": {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1},
    "iec62056_21": {"baudrate": 300, "bytesize": 7, "parity": "E", "stopbits": 1},
    "dsmr_p1": {"baudrate": 115200, "bytesize": 8, "parity": "N", "stopbits": 1},
}
"""Line settings when a profile gives none: each protocol's standard framing."""

_INHERITED = ("manufacturer", "model", "protocol", "service")
_SECTIONS = ("serial", "modbus", "iec")
_SINGLE_ROLES = (Role.CLOCK, Role.CLOCK_DATE, Role.CLOCK_TIME, Role.IDENTITY)
_FATAL = ("(file)", "(syntax)", "(root)")
"""Problems after which nothing else in the file can be checked."""

Problems = list[tuple[str, str]]


@dataclass
class ProfileSource:
    """One profile file as written: what of its top level validated, and its own problems.

    ``id`` is the file name without suffix (which the file's ``id`` must equal),
    so every file has a key even when its ``id`` is missing or wrong.
    """

    path: Path
    id: str
    header: HeaderSpec = field(default_factory=HeaderSpec)
    problems: Problems = field(default_factory=list)

    @property
    def extends(self) -> str | None:
        return self.header.extends


def read_source(path: Path) -> ProfileSource:
    """Read and parse ``path``; problems (unreadable, YAML syntax, bad keys) are recorded."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return ProfileSource(path, path.stem, problems=[
                ("(file)", f"{size} bytes is too large for a profile (at most {MAX_FILE_BYTES})")
            ])
        data = path.read_bytes()
    except OSError as exc:
        return ProfileSource(path, path.stem, problems=[("(file)", exc.strerror or str(exc))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ProfileSource(path, path.stem, problems=[
            ("(file)", f"not UTF-8 text (byte {exc.start})")
        ])
    return parse_source(text, path)


def parse_source(text: str, path: Path) -> ProfileSource:
    """Parse profile ``text`` that claims to come from ``path`` (the path gives the id)."""
    path = Path(path)
    source = ProfileSource(path, path.stem)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        source.problems.append(("(syntax)", describe_yaml_error(exc)))
        return source
    except RecursionError:
        source.problems.append(("(syntax)", "nested too deeply"))
        return source
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML builds dates and numbers with datetime/int: 2021-02-30 is a ValueError.
        source.problems.append(("(syntax)", f"a value YAML cannot build: {exc}"))
        return source
    if not isinstance(data, dict):
        what = "an empty file" if data is None else f"a {type(data).__name__}"
        source.problems.append(
            ("(root)", f"a profile is a mapping of keys (id, model, channels …), not {what}")
        )
        return source
    source.header, source.problems = _validate_header(data)
    source.problems.extend(_file_rules(source, data))
    return source




def _validate_header(data: dict[Any, Any]) -> tuple[HeaderSpec, Problems]:
    """Validate the top level; on errors keep the keys that were fine, to check further."""
    try:
        return HeaderSpec.model_validate(data), []
    except ValidationError as exc:
        problems = problems_from(exc)
        bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
        rest = {key: value for key, value in data.items() if key not in bad}
        try:
            return HeaderSpec.model_validate(rest), problems
        except ValidationError:
            return HeaderSpec(), problems


def _file_rules(source: ProfileSource, data: dict[Any, Any]) -> Problems:
    """Rules each file obeys on its own: id = file name; firmware and source present."""
    header, problems = source.header, []
    if header.id is None:
        if "id" not in data:
            problems.append(("id", f"required: the profile id, here {source.path.stem!r}"))
    elif not ID_RE.fullmatch(header.id):
        problems.append(("id", f"{header.id!r} is not a profile id (lowercase letters, "
                               "digits and -, at most 64)"))
    elif header.id != source.path.stem:
        problems.append(("id", f"{header.id!r} must equal the file name "
                               f"{source.path.stem!r} (without {source.path.suffix})"))
    if "firmware" not in data:
        problems.append(("firmware", "required: the firmware range this map is for, "
                                     "e.g. {min: \"1.0\", max: null}"))
    elif header.firmware is not None:
        firmware = FirmwareRange(header.firmware.min, header.firmware.max)
        if firmware.is_empty():
            problems.append(("firmware", f"min {firmware.min!r} is above max {firmware.max!r}: "
                                         "no firmware would match"))
    if "source" not in data:
        problems.append(("source", "required: where the register map comes from "
                                   "(document title, version, URL)"))
    if header.remove and header.extends is None:
        problems.append(("remove", "only a firmware variant (with extends) removes channels"))
    for index, name in enumerate(header.remove or ()):
        if isinstance(header.channels, dict) and name in header.channels:
            problems.append((f"remove.{index}", f"{name!r} is also under channels: "
                                                "list it in one place"))
    return problems


class Resolver:
    """Builds profiles from a set of sources, resolving ``extends`` within the set.

    Results are memoized: each profile (or its error) is built once, and a
    variant reuses its base's merged channels.
    """

    def __init__(self, sources: Mapping[str, ProfileSource]) -> None:
        self.sources = dict(sources)
        self._built: dict[str, Profile | ProfileValidationError] = {}
        self._specs: dict[str, dict[str, ChannelSpec]] = {}

    def build(self, profile_id: str) -> Profile:
        """The profile ``profile_id``, or :class:`ProfileValidationError` for its file."""
        if profile_id not in self._built:
            try:
                self._built[profile_id] = self._build(self.sources[profile_id])
            except ProfileValidationError as exc:
                self._built[profile_id] = exc
        result = self._built[profile_id]
        if isinstance(result, ProfileValidationError):
            raise result
        return result

    def build_all(self) -> tuple[dict[str, Profile], dict[str, ProfileValidationError]]:
        """Every source built: profiles by id, and errors by id."""
        profiles, errors = {}, {}
        for profile_id in sorted(self.sources):
            try:
                profiles[profile_id] = self.build(profile_id)
            except ProfileValidationError as exc:
                errors[profile_id] = exc
        return profiles, errors

    def _build(self, source: ProfileSource) -> Profile:
        if any(key in _FATAL for key, _ in source.problems):
            raise ProfileValidationError(source.path, source.problems)
        problems = list(source.problems)
        chain, chain_problems = self._chain(source)
        problems.extend(chain_problems)
        base = chain[-2] if len(chain) > 1 else None
        base_ok = True
        if base is not None and not chain_problems:
            try:
                self.build(base.id)
            except ProfileValidationError:
                base_ok = False
                problems.append(("extends", f"base profile {base.id} is invalid: "
                                            f"fix {base.path} first"))
        merged = _merge_headers(chain)
        protocol = self._protocol(source, chain, problems)
        problems.extend(_required(source, merged, chain_problems))
        problems.extend(_section_rules(source, merged, protocol))
        own_specs, spec_problems = self._own_specs(source, protocol)
        problems.extend(spec_problems)

        inherits = base is not None and base_ok and not chain_problems
        specs: dict[str, ChannelSpec] = (
            dict(self._specs.get(base.id, {})) if inherits and base else {})
        for index, name in enumerate(source.header.remove or ()):
            if inherits and name not in specs:
                problems.append((f"remove.{index}", f"{name!r} is not a channel of {base.id}"))
            specs.pop(name, None)
        specs.update(own_specs)
        self._specs[source.id] = specs

        channels = [_channel(name, spec, merged.get("modbus", {})) for name, spec in specs.items()]
        for channel in channels:
            problems.extend((f"channels.{channel.name}.{key}", why)
                            for key, why in _channel_rules(channel, protocol))
        problems.extend(_cross_checks(channels))
        if not specs and (inherits or base is None) and not any(
                key.startswith("channels") for key, _ in problems):
            problems.append(("channels", "required: a profile reads at least one channel"))
        if problems:
            raise ProfileValidationError(source.path, problems)
        assert protocol is not None
        header = source.header
        return Profile(
            id=source.id,
            manufacturer=merged["manufacturer"],
            model=merged["model"],
            firmware=FirmwareRange(header.firmware.min, header.firmware.max)
            if header.firmware else FirmwareRange(),
            protocol=protocol,
            service=merged["service"],
            source=header.source or "",
            path=source.path,
            serial=SerialSettings(**{**SERIAL_DEFAULTS[protocol], **merged.get("serial", {})}),
            modbus=ModbusSettings(**{key: value for key, value in merged.get("modbus", {}).items()
                                     if key in ("merge", "max_block", "max_gap")}),
            iec=IecSettings(**merged.get("iec", {})),
            channels=tuple(channels),
            extends=source.extends,
        )

    def _chain(self, source: ProfileSource) -> tuple[list[ProfileSource], Problems]:
        """``[root base, …, source]`` following ``extends``, or the problem that stops it."""
        chain = [source]
        seen = [source.id]
        current = source
        while current.extends is not None:
            parent_id = current.extends
            if parent_id in seen:
                cycle = " → ".join([*seen[seen.index(parent_id):], parent_id])
                return [source], [("extends", f"cycle: {cycle}")]
            if parent_id not in self.sources:
                if current is source:
                    return [source], [("extends", f"no profile {parent_id!r} to extend"
                                                  f"{_close_hint(parent_id, self.sources)}")]
                return [source], [("extends", f"base profile {current.id} extends unknown "
                                              f"profile {parent_id!r}")]
            current = self.sources[parent_id]
            seen.append(parent_id)
            chain.insert(0, current)
        return chain, []

    def _protocol(self, source: ProfileSource, chain: list[ProfileSource],
                  problems: Problems) -> str | None:
        inherited = None
        for ancestor in chain[:-1]:
            inherited = ancestor.header.protocol or inherited
        own = source.header.protocol
        if own is not None and inherited is not None and own != inherited:
            problems.append(("protocol", f"{own} differs from {chain[-2].id}'s {inherited}: "
                                         "a firmware variant keeps its base's protocol"))
        return inherited or own

    def _own_specs(self, source: ProfileSource,
                   protocol: str | None) -> tuple[dict[str, ChannelSpec], Problems]:
        """This file's channels validated against ``protocol``; only sound ones are kept."""
        specs: dict[str, ChannelSpec] = {}
        problems: Problems = []
        for name, raw in (source.header.channels or {}).items():
            key = f"channels.{name}"
            if not isinstance(name, str):
                problems.append((key, "a channel name is a string, e.g. energy_import_kwh"))
                continue
            name_ok = bool(REGISTER_RE.fullmatch(name))
            if not name_ok:
                problems.append((key, f"{name!r} is not a canonical register name (a lowercase "
                                      "letter, then lowercase letters, digits or _; at most 64)"))
            if protocol is None:
                continue
            try:
                spec = CHANNEL_SPECS[protocol].model_validate(raw)
            except ValidationError as exc:
                problems.extend(problems_from(exc, key, protocol=protocol))
                continue
            if name_ok:
                specs[name] = spec
        return specs, problems


def _close_hint(name: str, known: Iterable[str]) -> str:
    close = get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _merge_headers(chain: list[ProfileSource]) -> dict[str, Any]:
    """Inherited keys from base to variant: scalars replaced, sections merged key by key."""
    merged: dict[str, Any] = {}
    for source in chain:
        for name in _INHERITED:
            value = getattr(source.header, name)
            if value is not None:
                merged[name] = value
        for name in _SECTIONS:
            section = getattr(source.header, name)
            if section is not None:
                merged.setdefault(name, {}).update(section.model_dump(exclude_none=True))
    return merged


def _required(source: ProfileSource, merged: dict[str, Any], chain_problems: Problems) -> Problems:
    if chain_problems:
        return []
    why = "required" + (" (neither this file nor its base gives it)" if source.extends else "")
    return [
        (name, why)
        for name in _INHERITED
        if name not in merged and not any(key == name for key, _ in source.problems)
    ]


def _section_rules(source: ProfileSource, merged: dict[str, Any],
                   protocol: str | None) -> Problems:
    problems = []
    if source.header.modbus is not None and protocol not in (None, "modbus"):
        problems.append(("modbus", f"only for protocol modbus, not {protocol}"))
    if source.header.iec is not None and protocol not in (None, "iec62056_21"):
        problems.append(("iec", f"only for protocol iec62056_21, not {protocol}"))
    iec = merged.get("iec", {})
    if iec.get("initial_baud", 300) > iec.get("max_baud", 9600):
        problems.append(("iec.max_baud", f"{iec.get('max_baud', 9600)} is below initial_baud "
                                         f"{iec.get('initial_baud', 300)}"))
    return problems


def _channel(name: str, spec: ChannelSpec, defaults: dict[str, Any]) -> Channel:
    """The driver's channel for ``spec``, with the ``modbus:`` section's defaults applied."""
    common: dict[str, Any] = {
        "name": name,
        "unit": spec.unit or "",
        "scale": spec.scale if spec.scale is not None else Decimal(1),
        "role": spec.role,
        "flags": spec.flags or {},
    }
    if isinstance(spec, ModbusChannelSpec):
        return ModbusChannel(
            **common,
            obis=spec.obis,
            address=spec.address,
            function=spec.function or defaults.get("function", 3),
            data_type=spec.type or defaults.get("data_type", DataType.UINT16),
            byte_order=spec.byte_order or defaults.get("byte_order", ByteOrder.BIG),
            word_order=spec.word_order or defaults.get("word_order", ByteOrder.BIG),
        )
    assert isinstance(spec, ObisChannelSpec)
    obis = spec.obis or (spec.code if OBIS_RE.fullmatch(spec.code) else None)
    return ObisChannel(**common, obis=obis, code=spec.code, group=spec.group,
                       mbus_channel=spec.mbus_channel)


def _channel_rules(channel: Channel, protocol: str | None) -> Problems:
    """What one channel must satisfy on its own, as ``(key within the channel, why)``."""
    problems: Problems = []
    role = channel.role
    if role is Role.VALUE and not channel.unit:
        problems.append(("unit", "required for a value channel (kWh, m3, V …)"))
    if role is Role.STATUS and not channel.flags:
        problems.append(("flags", "a status channel names its bits, e.g. flags: {0: tamper}"))
    if role is not Role.STATUS and channel.flags:
        problems.append(("flags", f"only a status channel has flags, this one is {role.value}"))
    if channel.scale == 0:
        problems.append(("scale", "must not be 0"))
    elif role is not Role.VALUE and channel.scale != 1:
        problems.append(("scale", f"only value channels are scaled, this one is {role.value}"))
    width = 64
    if isinstance(channel, ModbusChannel):
        width = 16 * channel.count
        if channel.end > 0x10000:
            problems.append(("address", f"{channel.data_type.value} at 0x{channel.address:04X} "
                                        "runs past register 65535"))
        if role in (Role.CLOCK, Role.CLOCK_DATE, Role.CLOCK_TIME):
            problems.append(("role", "Modbus registers carry numbers; a meter clock cannot be "
                                     "read from one here"))
        if role is Role.STATUS and channel.data_type.is_float:
            problems.append(("type", f"a status word is an integer, not {channel.data_type}"))
    elif isinstance(channel, ObisChannel) and protocol == "iec62056_21" and channel.mbus_channel:
        problems.append(("mbus_channel", "only dsmr_p1 telegrams carry M-Bus sub-meters"))
    problems.extend((f"flags.{bit}", f"bit {bit} is outside 0..{width - 1}")
                    for bit in channel.flags if not 0 <= bit < width)
    return problems


def _cross_checks(channels: list[Channel]) -> Problems:
    """Rules between channels: no shared registers, no data set twice, one clock each."""
    problems: Problems = []
    modbus = [c for c in channels if isinstance(c, ModbusChannel)]
    for index, later in enumerate(modbus):
        for earlier in modbus[:index]:
            if (earlier.function == later.function and earlier.address < later.end
                    and later.address < earlier.end):
                problems.append((f"channels.{later.name}.address",
                                 f"registers {_span(later)} overlap channels.{earlier.name} "
                                 f"({_span(earlier)}, function {earlier.function})"))
    seen: dict[tuple[str, int, int], str] = {}
    for channel in channels:
        if isinstance(channel, ObisChannel):
            data_set = (channel.code, channel.group, channel.mbus_channel)
            if data_set in seen:
                problems.append((f"channels.{channel.name}.code",
                                 f"channels.{seen[data_set]} already reads {channel.code} "
                                 f"group {channel.group}"))
            seen.setdefault(data_set, channel.name)
    by_role: dict[tuple[Role, int], str] = {}
    for channel in channels:
        sub = getattr(channel, "mbus_channel", 0)
        if channel.role in _SINGLE_ROLES:
            if (channel.role, sub) in by_role:
                problems.append((f"channels.{channel.name}.role",
                                 f"a second {channel.role.value} channel: "
                                 f"channels.{by_role[channel.role, sub]} is one already"))
            by_role.setdefault((channel.role, sub), channel.name)
    for (role, sub), name in by_role.items():
        partner = {Role.CLOCK_DATE: Role.CLOCK_TIME, Role.CLOCK_TIME: Role.CLOCK_DATE}.get(role)
        if partner is not None and (partner, sub) not in by_role:
            problems.append((f"channels.{name}.role",
                             f"{role.value} needs a {partner.value} channel to make a time"))
        if role is Role.CLOCK and any((r, sub) in by_role for r in (Role.CLOCK_DATE,
                                                                    Role.CLOCK_TIME)):
            problems.append((f"channels.{name}.role",
                             "both a clock and a clock_date/clock_time pair: keep one"))
    return problems


def _span(channel: ModbusChannel) -> str:
    if channel.count == 1:
        return f"0x{channel.address:04X}"
    return f"0x{channel.address:04X}–0x{channel.end - 1:04X}"


def load_sources(paths: Iterable[Path]) -> dict[str, ProfileSource]:
    """Read each file; a later file with the same id (file name) replaces an earlier one."""
    return {source.id: source for source in map(read_source, paths)}


def profile_files(directory: Path) -> list[Path]:
    """The profile files of ``directory`` (``*.yaml``, ``*.yml``), sorted by name."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.suffix in PROFILE_SUFFIXES and p.is_file())
