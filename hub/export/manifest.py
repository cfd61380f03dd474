"""The signed manifest beside a cycle file, and the check that file and manifest agree.

A CIS must be able to tell that the file it imports is the one the hub wrote:
whole, unaltered, and from this hub. The manifest says what the file holds —
its SHA-256 and size, how many account-meters, the money per currency and the
consumption per unit (also per service) — and the hub signs it with its
Ed25519 key (:class:`~protocols.signing.Signer`). The signed bytes are the
manifest's fields except ``signature``, as sorted-key compact UTF-8 JSON; the
manifest file on disk is the same fields, indented for people, plus the
signature. Nothing in it reads a clock: ``generated_at`` comes from the caller
(the time the bills were computed), so a re-export is byte-identical.

:func:`verify_export` trusts nothing in the manifest until it has checked it:
the key id, the file's SHA-256 and size, the rows and totals counted again from
the file itself, and the signature. Every failing check is reported, the most
specific first, as a :class:`VerificationError` whose :attr:`~VerificationError.check`
names it.

Example::

    manifest = build_manifest(cycle="C2026-11", fmt=Format.CSV, file_name="C2026-11.csv",
                              data=data, rows=rows, signer=hub_signer,
                              generated_at=bills_computed_at)
    verified = verify_export(Path("C2026-11.csv"), Path("C2026-11.csv.manifest.json"),
                             hub_public_key)
    print(verified.rows, verified.manifest.totals.amount)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.metadata
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.export.formats import ExportParseError, Format, parse
from hub.export.rows import ExportError, ExportRow, exact_sum, money_text
from protocols.errors import SignatureError
from protocols.scalars import (
    ScalarError,
    format_decimal,
    format_instant,
    normalize_instant,
    parse_decimal,
    parse_instant,
)
from protocols.signing import Signer, key_id_for, verify_signature

MANIFEST_TYPE = "meterhub-cycle-export"
"""Names what the signed bytes are, so a hub signature over a manifest means nothing else."""
MANIFEST_VERSION = 1
UNKNOWN_VERSION = "unknown"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{32}")
_MONEY_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]{2}")
_FIELDS = ("cycle", "file", "format", "generated_at", "key_id", "manifest_version", "rows",
           "sha256", "signature", "size", "software_version", "totals", "type")


class ManifestError(ExportError, ValueError):
    """A manifest that is not well-formed: not JSON, a missing, extra or mistyped field."""


def installed_version() -> str:
    """meterhub's installed version, or ``unknown`` when it runs from a bare source tree."""
    try:
        return importlib.metadata.version("meterhub")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


# --- totals --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceTotals:
    """One service's share of a cycle file (``electric``, ``water``, ``gas``)."""

    rows: int
    amount: Mapping[str, Decimal]
    """Money per currency."""
    consumption: Mapping[str, Decimal]
    """Billed consumption per unit; rows without consumption add nothing."""


@dataclass(frozen=True)
class Totals:
    """What a cycle file adds up to; compared by value (``412.5`` equals ``412.500``)."""

    lines: int
    """Bill lines over all rows."""
    amount: Mapping[str, Decimal]
    consumption: Mapping[str, Decimal]
    services: Mapping[str, ServiceTotals]

    @classmethod
    def of(cls, rows: Iterable[ExportRow]) -> Totals:
        rows = list(rows)
        by_service: dict[str, list[ExportRow]] = defaultdict(list)
        for row in rows:
            by_service[row.service].append(row)
        return cls(
            lines=sum(len(row.lines) for row in rows),
            amount=_amounts(rows), consumption=_consumption(rows),
            services={service: ServiceTotals(len(group), _amounts(group), _consumption(group))
                      for service, group in sorted(by_service.items())})

    def to_json(self) -> dict[str, Any]:
        def texts(amount: Mapping[str, Decimal], consumption: Mapping[str, Decimal]
                  ) -> dict[str, Any]:
            return {"amount": {k: money_text(v) for k, v in amount.items()},
                    "consumption": {k: format_decimal(v) for k, v in consumption.items()}}

        return {**texts(self.amount, self.consumption), "lines": self.lines,
                "services": {name: {**texts(s.amount, s.consumption), "rows": s.rows}
                             for name, s in self.services.items()}}

    @classmethod
    def from_json(cls, obj: object) -> Totals:
        totals = _object(obj, ("amount", "consumption", "lines", "services"), "totals")
        services = totals["services"]
        if not isinstance(services, dict):
            raise ManifestError("totals.services must be an object")
        return cls(
            lines=_count(totals["lines"], "totals.lines"),
            amount=_decimals(totals["amount"], "totals.amount", money=True),
            consumption=_decimals(totals["consumption"], "totals.consumption"),
            services={name: _service(value, f"totals.services.{name}")
                      for name, value in services.items()})


def _amounts(rows: Iterable[ExportRow]) -> dict[str, Decimal]:
    by_currency: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        by_currency[row.currency].append(row.total)
    return {currency: exact_sum(values) for currency, values in sorted(by_currency.items())}


def _consumption(rows: Iterable[ExportRow]) -> dict[str, Decimal]:
    by_unit: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        if row.consumption is not None:
            by_unit[row.unit].append(row.consumption)
    return {unit: exact_sum(values) for unit, values in sorted(by_unit.items())}


def _service(obj: object, where: str) -> ServiceTotals:
    service = _object(obj, ("amount", "consumption", "rows"), where)
    return ServiceTotals(rows=_count(service["rows"], f"{where}.rows"),
                         amount=_decimals(service["amount"], f"{where}.amount", money=True),
                         consumption=_decimals(service["consumption"], f"{where}.consumption"))


# --- strict reading of manifest JSON ---------------------------------------------------------

def _object(obj: object, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where} must be a JSON object")
    missing = sorted(set(keys) - set(obj))
    extra = sorted(set(obj) - set(keys))
    if missing or extra:
        raise ManifestError(f"{where}: missing {missing or 'nothing'}, unknown {extra or 'none'}")
    return obj


def _count(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestError(f"{where} must be a non-negative integer, got {value!r}")
    return value


def _string(value: object, where: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise ManifestError(f"{where}: {value!r} is not a valid value")
    return value


def _decimals(obj: object, where: str, *, money: bool = False) -> dict[str, Decimal]:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where} must be an object")
    out = {}
    for key, text in obj.items():
        if money and not (isinstance(text, str) and _MONEY_RE.fullmatch(text)):
            raise ManifestError(f"{where}.{key}: {text!r} is not money with two places")
        try:
            out[key] = parse_decimal(text)
        except ScalarError as exc:
            raise ManifestError(f"{where}.{key}: {exc}") from None
    return out


def _strict_json(data: bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in items}) != len(items):
            raise ManifestError("a key appears twice")
        return dict(items)

    def no_float(text: str) -> Any:
        raise ManifestError(f"{text}: numbers in a manifest are integers; decimals are strings")

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_float=no_float,
                          parse_constant=no_float)
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"not JSON: {exc}") from None


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


# --- the manifest ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest:
    """What a cycle file holds, signed by the hub that wrote it."""

    cycle: str
    format: Format
    file: str
    """The cycle file's name (no directory)."""
    size: int
    """The file's length in bytes."""
    sha256: str
    rows: int
    """Account-meters in the file."""
    totals: Totals
    generated_at: datetime
    software_version: str
    key_id: str
    """The hub key's derived id (:func:`~protocols.signing.key_id_for`)."""
    signature: str
    """Base64 Ed25519 signature over :meth:`signed_bytes`."""

    def unsigned(self) -> dict[str, Any]:
        """Every field but ``signature``, as JSON values."""
        return {"cycle": self.cycle, "file": self.file, "format": self.format.value,
                "generated_at": format_instant(self.generated_at), "key_id": self.key_id,
                "manifest_version": MANIFEST_VERSION, "rows": self.rows,
                "sha256": self.sha256, "size": self.size,
                "software_version": self.software_version, "totals": self.totals.to_json(),
                "type": MANIFEST_TYPE}

    def signed_bytes(self) -> bytes:
        """The bytes the hub signs: :meth:`unsigned` as sorted-key compact UTF-8 JSON."""
        return _canonical(self.unsigned())

    def to_json(self) -> bytes:
        """The manifest file: every field, signature included, indented, sorted keys."""
        text = json.dumps({**self.unsigned(), "signature": self.signature}, sort_keys=True,
                          indent=2, ensure_ascii=False)
        return (text + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Read a manifest file strictly; :class:`ManifestError` names what is wrong."""
        obj = _object(_strict_json(data), _FIELDS, "manifest")
        if obj["type"] != MANIFEST_TYPE or obj["manifest_version"] != MANIFEST_VERSION:
            raise ManifestError(f"not a {MANIFEST_TYPE} manifest, version {MANIFEST_VERSION}")
        try:
            fmt = Format(obj["format"])
            generated_at = parse_instant(obj["generated_at"])
        except (ValueError, ScalarError) as exc:
            raise ManifestError(f"manifest: {exc}") from None
        signature = _string(obj["signature"], "signature")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise ManifestError("signature is not base64") from None
        if len(raw) != 64:
            raise ManifestError(f"signature is {len(raw)} bytes, an Ed25519 signature is 64")
        manifest = cls(
            cycle=_string(obj["cycle"], "cycle"), format=fmt, file=_string(obj["file"], "file"),
            size=_count(obj["size"], "size"), sha256=_string(obj["sha256"], "sha256", _SHA256_RE),
            rows=_count(obj["rows"], "rows"), totals=Totals.from_json(obj["totals"]),
            generated_at=generated_at,
            software_version=_string(obj["software_version"], "software_version"),
            key_id=_string(obj["key_id"], "key_id", _KEY_ID_RE), signature=signature)
        unsigned = {key: value for key, value in obj.items() if key != "signature"}
        if manifest.unsigned() != unsigned:
            raise ManifestError("the manifest is not in canonical form (a number or time "
                                "written another way than meterhub writes it)")
        return manifest


def build_manifest(*, cycle: str, fmt: Format | str, file_name: str, data: bytes,
                   rows: Iterable[ExportRow], signer: Signer, generated_at: datetime,
                   software_version: str | None = None) -> Manifest:
    """The signed manifest of ``data``, the bytes rendered from ``rows``."""
    rows = list(rows)
    unsigned = Manifest(
        cycle=cycle, format=Format(fmt), file=file_name, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), rows=len(rows), totals=Totals.of(rows),
        generated_at=normalize_instant(generated_at),
        software_version=software_version or installed_version(), key_id=signer.key_id,
        signature="")
    signature = signer.sign(unsigned.signed_bytes())
    return replace(unsigned, signature=base64.b64encode(signature).decode("ascii"))


# --- verification ----------------------------------------------------------------------------

class Check(StrEnum):
    """One thing verification checks; declared most specific first (the reported order)."""

    MALFORMED_MANIFEST = "malformed_manifest"
    WRONG_KEY = "wrong_key"
    SHA256_MISMATCH = "sha256_mismatch"
    MALFORMED_FILE = "malformed_file"
    ROW_COUNT_MISMATCH = "row_count_mismatch"
    TOTALS_MISMATCH = "totals_mismatch"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True)
class Failure:
    check: Check
    detail: str


class VerificationError(ExportError):
    """A cycle file and manifest that do not verify; :attr:`check` is the first failure."""

    def __init__(self, failures: Iterable[Failure], manifest: Manifest | None = None) -> None:
        order = list(Check)
        self.failures = tuple(sorted(failures, key=lambda f: order.index(f.check)))
        self.check = self.failures[0].check
        self.detail = self.failures[0].detail
        self.manifest = manifest
        super().__init__("; ".join(f"{f.check}: {f.detail}" for f in self.failures))

    def failed(self, check: Check) -> bool:
        return any(f.check is check for f in self.failures)


@dataclass(frozen=True)
class VerifiedExport:
    """A cycle file whose manifest verified: every check passed."""

    file: Path | None
    manifest: Manifest

    @property
    def rows(self) -> int:
        return self.manifest.rows

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    @property
    def key_id(self) -> str:
        return self.manifest.key_id

    @property
    def totals(self) -> Totals:
        return self.manifest.totals


def check_export(data: bytes, manifest_data: bytes, public_key: Ed25519PublicKey) -> Manifest:
    """Verify cycle-file bytes against manifest bytes; the pure core of :func:`verify_export`."""
    try:
        manifest = Manifest.from_json(manifest_data)
    except ManifestError as exc:
        raise VerificationError([Failure(Check.MALFORMED_MANIFEST, str(exc))]) from None
    failures = []
    key_id = key_id_for(public_key)
    if key_id != manifest.key_id:
        failures.append(Failure(Check.WRONG_KEY, f"the manifest is signed by key "
                                f"{manifest.key_id}, the key given is {key_id}"))
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.sha256 or len(data) != manifest.size:
        failures.append(Failure(Check.SHA256_MISMATCH, f"the file is {len(data)} bytes with "
                                f"SHA-256 {digest}; the manifest says {manifest.size} bytes, "
                                f"{manifest.sha256}"))
    try:
        rows = parse(data, manifest.format)
    except ExportParseError as exc:
        failures.append(Failure(Check.MALFORMED_FILE, str(exc)))
    else:
        if len(rows) != manifest.rows:
            failures.append(Failure(Check.ROW_COUNT_MISMATCH, f"the file holds {len(rows)} "
                                    f"rows, the manifest says {manifest.rows}"))
        totals = Totals.of(rows)
        if totals != manifest.totals:
            failures.append(Failure(Check.TOTALS_MISMATCH, f"the file adds up to "
                                    f"{_compact(totals)}, the manifest says "
                                    f"{_compact(manifest.totals)}"))
    try:
        verify_signature(public_key, manifest.signed_bytes(), base64.b64decode(manifest.signature))
    except SignatureError as exc:
        failures.append(Failure(Check.BAD_SIGNATURE, str(exc)))
    if failures:
        raise VerificationError(failures, manifest)
    return manifest


def _compact(totals: Totals) -> str:
    return _canonical(totals.to_json()).decode("utf-8")


def manifest_path_for(file: Path) -> Path:
    """Where a cycle file's manifest lives: beside it, ``C2026-11.csv.manifest.json``."""
    return file.with_name(f"{file.name}.manifest.json")


def verify_export(file_path: Path, manifest_path: Path | None,
                  public_key: Ed25519PublicKey) -> VerifiedExport:
    """Verify a cycle file on disk against its manifest (default: beside it).

    Raises :class:`VerificationError` if any check fails, and ``OSError`` if a
    file cannot be read.
    """
    manifest_path = manifest_path or manifest_path_for(file_path)
    data = file_path.read_bytes()
    manifest_data = manifest_path.read_bytes()
    return VerifiedExport(file_path, check_export(data, manifest_data, public_key))
