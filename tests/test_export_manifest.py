"""The signed manifest: a fresh export verifies, a re-export is identical, tampering is caught."""

from __future__ import annotations

import base64
import json
import os
import random
from dataclasses import replace
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from edge_agent.keys import InsecureKeyFileError, generate_key_file, load_signer
from hub import export_cli
from hub.export import files as export_files
from hub.export.files import ExportPathError, write_export
from hub.export.formats import Format, layout_markdown, render
from hub.export.manifest import (
    MANIFEST_TYPE,
    Check,
    Manifest,
    ManifestError,
    VerificationError,
    build_manifest,
    check_export,
    manifest_path_for,
    verify_export,
)
from hub.export_cli import export_app
from protocols.signing import Signer, key_id_for, public_key_pem
from tests.test_export_formats import BILLED, row, sample_rows


@pytest.fixture
def hub_signer(tmp_path):
    """The hub's export key, as the hub keeps it: a 0600 PEM file."""
    path = tmp_path / "keys" / "hub-export.key"
    generate_key_file(path)
    return load_signer(path)


def export(directory, signer, fmt=Format.CSV, rows=None):
    return write_export(directory, "C2026-11", sample_rows() if rows is None else rows, fmt,
                        signer, generated_at=BILLED, software_version="0.1.0")


@pytest.mark.parametrize("fmt", list(Format))
def test_a_fresh_export_verifies(tmp_path, hub_signer, fmt):
    paths = export(tmp_path / "out", hub_signer, fmt)
    verified = verify_export(paths.file, paths.manifest, hub_signer.public_key)
    assert verified.rows == 3
    assert verified.key_id == hub_signer.key_id
    assert verified.totals.amount == {"USD": Decimal("88.78")}
    assert verified.totals.consumption == {"kWh": Decimal("412.500"), "m3": Decimal("13.004")}


def test_files_are_named_for_cycle_and_format_with_the_manifest_beside(tmp_path, hub_signer):
    names = {fmt: export(tmp_path, hub_signer, fmt) for fmt in Format}
    assert names[Format.CSV].file.name == "C2026-11.csv"
    assert names[Format.FIXED].file.name == "C2026-11.txt"
    assert names[Format.JSONL].file.name == "C2026-11.jsonl"
    assert names[Format.CSV].manifest.name == "C2026-11.csv.manifest.json"
    assert manifest_path_for(names[Format.JSONL].file) == names[Format.JSONL].manifest
    for paths in names.values():  # one directory, three formats, no manifest overwritten
        verify_export(paths.file, None, hub_signer.public_key)


@pytest.mark.parametrize("fmt", list(Format))
def test_a_re_export_is_byte_identical(tmp_path, hub_signer, fmt):
    first = export(tmp_path / "a", hub_signer, fmt)
    rows = sample_rows()
    random.Random(7).shuffle(rows)
    second = export(tmp_path / "b", hub_signer, fmt, rows)
    assert first.file.read_bytes() == second.file.read_bytes()
    assert first.manifest.read_bytes() == second.manifest.read_bytes()


def test_a_re_export_overwrites_in_place_with_the_same_bytes(tmp_path, hub_signer):
    first = export(tmp_path / "out", hub_signer)
    data, manifest = first.file.read_bytes(), first.manifest.read_bytes()
    export(tmp_path / "out", hub_signer)
    assert first.file.read_bytes() == data and first.manifest.read_bytes() == manifest
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "C2026-11.csv", "C2026-11.csv.manifest.json"]  # no temporary file left behind


def test_the_file_is_written_before_its_manifest(tmp_path, hub_signer, monkeypatch):
    order = []
    real = export_files.write_atomic

    def recording(path, data, **kwargs):
        order.append(path.name)
        real(path, data, **kwargs)

    monkeypatch.setattr(export_files, "write_atomic", recording)
    export(tmp_path, hub_signer)
    assert order == ["C2026-11.csv", "C2026-11.csv.manifest.json"]


def test_the_manifest_holds_counts_totals_digest_version_and_key(tmp_path, hub_signer):
    paths = export(tmp_path, hub_signer)
    obj = json.loads(paths.manifest.read_text())
    data = paths.file.read_bytes()
    assert obj["type"] == MANIFEST_TYPE and obj["manifest_version"] == 1
    assert obj["cycle"] == "C2026-11" and obj["format"] == "csv"
    assert obj["file"] == "C2026-11.csv" and obj["size"] == len(data)
    assert obj["rows"] == 3 and obj["software_version"] == "0.1.0"
    assert obj["generated_at"] == "2026-12-01T06:00:00.000Z"
    assert obj["key_id"] == hub_signer.key_id
    assert obj["totals"]["amount"] == {"USD": "88.78"}
    assert obj["totals"]["lines"] == 4
    assert obj["totals"]["services"]["water"] == {
        "amount": {"USD": "29.96"}, "consumption": {"m3": "13.004"}, "rows": 1}
    assert len(base64.b64decode(obj["signature"])) == 64


def test_the_signed_bytes_are_sorted_compact_json_of_all_but_the_signature(hub_signer):
    data = render(sample_rows(), Format.CSV)
    manifest = build_manifest(cycle="C2026-11", fmt="csv", file_name="C2026-11.csv",
                              data=data, rows=sample_rows(), signer=hub_signer,
                              generated_at=BILLED, software_version="0.1.0")
    obj = json.loads(manifest.to_json())
    del obj["signature"]
    assert manifest.signed_bytes() == json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    hub_signer.public_key.verify(base64.b64decode(manifest.signature), manifest.signed_bytes())


def test_the_software_version_defaults_to_the_installed_package(tmp_path, hub_signer):
    paths = write_export(tmp_path, "C2026-11", sample_rows(), "csv", hub_signer,
                         generated_at=BILLED)
    assert paths.signed.software_version not in ("", None)


def test_a_manifest_reads_back_as_it_was_signed(tmp_path, hub_signer):
    paths = export(tmp_path, hub_signer, Format.JSONL)
    assert Manifest.from_json(paths.manifest.read_bytes()) == paths.signed


def verification_error(paths, public_key):
    with pytest.raises(VerificationError) as caught:
        verify_export(paths.file, paths.manifest, public_key)
    return caught.value


@pytest.mark.parametrize("fmt", list(Format))
def test_tampering_one_byte_of_the_file_fails_the_sha256_check(tmp_path, hub_signer, fmt):
    paths = export(tmp_path, hub_signer, fmt)
    data = bytearray(paths.file.read_bytes())
    position = data.index(b"58.82") + 1
    data[position] = ord("9")  # 58.82 -> 59.82
    paths.file.write_bytes(bytes(data))
    error = verification_error(paths, hub_signer.public_key)
    assert error.check is Check.SHA256_MISMATCH
    assert not error.failed(Check.BAD_SIGNATURE)  # the manifest itself is still genuine


def test_tampering_the_manifest_row_count_fails_the_row_count_check(tmp_path, hub_signer):
    paths = export(tmp_path, hub_signer)
    obj = json.loads(paths.manifest.read_text())
    obj["rows"] = 4
    paths.manifest.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    error = verification_error(paths, hub_signer.public_key)
    assert error.check is Check.ROW_COUNT_MISMATCH
    assert error.failed(Check.BAD_SIGNATURE)  # and the hub never signed that


def test_tampering_the_signature_fails_the_signature_check(tmp_path, hub_signer):
    paths = export(tmp_path, hub_signer)
    obj = json.loads(paths.manifest.read_text())
    signature = bytearray(base64.b64decode(obj["signature"]))
    signature[10] ^= 0x01
    obj["signature"] = base64.b64encode(bytes(signature)).decode()
    paths.manifest.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    error = verification_error(paths, hub_signer.public_key)
    assert error.check is Check.BAD_SIGNATURE
    assert [f.check for f in error.failures] == [Check.BAD_SIGNATURE]


def test_another_hubs_key_fails_the_key_check(tmp_path, hub_signer):
    paths = export(tmp_path, hub_signer)
    other = Signer.generate()
    error = verification_error(paths, other.public_key)
    assert error.check is Check.WRONG_KEY
    assert key_id_for(other.public_key) in error.detail and hub_signer.key_id in error.detail


def test_a_manifest_the_hub_signed_with_other_totals_fails_the_totals_check(hub_signer):
    rows = sample_rows()
    data = render(rows, Format.CSV)
    other = [rows[0], rows[1], replace(rows[2], lines=rows[1].lines, total=rows[1].total)]
    manifest = build_manifest(cycle="C2026-11", fmt="csv", file_name="C2026-11.csv",
                              data=data, rows=other, signer=hub_signer, generated_at=BILLED)
    with pytest.raises(VerificationError) as caught:
        check_export(data, manifest.to_json(), hub_signer.public_key)
    assert [f.check for f in caught.value.failures] == [Check.TOTALS_MISMATCH]


def test_a_manifest_that_is_not_json_is_malformed(tmp_path, hub_signer):
    paths = export(tmp_path, hub_signer)
    paths.manifest.write_bytes(b"{not json")
    assert verification_error(paths, hub_signer.public_key).check is Check.MALFORMED_MANIFEST


@pytest.mark.parametrize("change", [
    {"rows": "3"}, {"rows": 3.0}, {"extra": 1}, {"sha256": "ABC"}, {"format": "xml"},
    {"signature": "not base64!"}, {"generated_at": "2026-12-01T06:00:00Z"},
])
def test_a_manifest_with_a_bad_field_is_malformed(tmp_path, hub_signer, change):
    paths = export(tmp_path, hub_signer)
    text = paths.manifest.read_text()
    obj = json.loads(text)
    obj.update(change)
    body = json.dumps(obj, indent=2, sort_keys=True)
    if change == {"rows": 3.0}:
        body = body.replace('"rows": 3', '"rows": 3.0')
    paths.manifest.write_text(body)
    with pytest.raises(ManifestError):
        Manifest.from_json(paths.manifest.read_bytes())
    assert verification_error(paths, hub_signer.public_key).check is Check.MALFORMED_MANIFEST


def test_money_written_another_way_is_not_canonical(tmp_path, hub_signer):
    paths = export(tmp_path, hub_signer)
    text = paths.manifest.read_text().replace('"USD": "88.78"', '"USD": "88.780"')
    with pytest.raises(ManifestError):
        Manifest.from_json(text.encode())


def test_an_unsafe_cycle_id_cannot_name_a_file(tmp_path, hub_signer):
    with pytest.raises(ExportPathError):
        write_export(tmp_path, "../C1", [], Format.CSV, hub_signer, generated_at=BILLED)


def test_a_world_readable_hub_key_is_refused(tmp_path):
    key = tmp_path / "hub-export.key"
    generate_key_file(key)
    os.chmod(key, 0o644)
    with pytest.raises(InsecureKeyFileError):
        load_signer(key)


def test_an_empty_cycle_exports_and_verifies(tmp_path, hub_signer):
    for fmt in Format:
        paths = write_export(tmp_path, "C2026-11", [], fmt, hub_signer, generated_at=BILLED)
        assert verify_export(paths.file, paths.manifest, hub_signer.public_key).rows == 0


def test_rows_of_another_cycle_write_nothing(tmp_path, hub_signer):
    with pytest.raises(ValueError, match="cycle"):
        write_export(tmp_path / "out", "C2026-12", [row()], Format.CSV, hub_signer,
                     generated_at=BILLED)
    assert not (tmp_path / "out").exists()


# --- the CLI -----------------------------------------------------------------------------------

@pytest.fixture
def public_key_file(tmp_path, hub_signer):
    path = tmp_path / "hub-export.pub"
    path.write_bytes(public_key_pem(hub_signer.public_key))
    return path


def run(*args):
    return CliRunner().invoke(export_app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_cli_verify_prints_the_checks_and_exits_zero(tmp_path, hub_signer, public_key_file):
    paths = export(tmp_path / "out", hub_signer)
    result = run("verify", paths.file, "--public-key", public_key_file)
    assert result.exit_code == 0, result.output
    assert "C2026-11.csv: verified" in result.output
    assert hub_signer.key_id in result.output and "88.78" in result.output


def test_cli_verify_exits_one_naming_the_failed_check(tmp_path, hub_signer, public_key_file,
                                                      caplog):
    paths = export(tmp_path / "out", hub_signer, Format.FIXED)
    data = paths.file.read_bytes()
    paths.file.write_bytes(data.replace(b"A-1001", b"A-1007"))
    result = run("verify", paths.file, "--manifest", paths.manifest, "--public-key",
                 public_key_file)
    assert result.exit_code == 1
    assert "FAILED (sha256_mismatch)" in result.output
    assert "export verification failed, sha256_mismatch" in caplog.text


def test_cli_verify_with_another_key_exits_one(tmp_path, hub_signer):
    paths = export(tmp_path / "out", hub_signer)
    other = tmp_path / "other.pub"
    other.write_bytes(public_key_pem(Signer.generate().public_key))
    result = run("verify", paths.file, "--public-key", other)
    assert result.exit_code == 1 and "wrong_key" in result.output


def test_cli_verify_exits_two_when_an_input_is_missing(tmp_path, hub_signer, public_key_file,
                                                     caplog):
    paths = export(tmp_path / "out", hub_signer)
    paths.manifest.unlink()
    result = run("verify", paths.file, "--public-key", public_key_file)
    assert result.exit_code == 2
    assert "cannot read" in caplog.text and paths.manifest.name in caplog.text


def test_cli_verify_exits_two_for_a_key_that_is_not_a_key(tmp_path, hub_signer):
    paths = export(tmp_path / "out", hub_signer)
    junk = tmp_path / "junk.pub"
    junk.write_text("hello")
    assert run("verify", paths.file, "--public-key", junk).exit_code == 2


def test_cli_layout_markdown_is_the_generated_table():
    result = run("layout", "--markdown")
    assert result.exit_code == 0 and result.output == layout_markdown()


def test_cli_layout_prints_every_record_type(monkeypatch):
    # the console is the module's own, made at import: wide enough whatever ran before
    monkeypatch.setattr(export_cli.out, "width", 200)
    result = run("layout")
    assert result.exit_code == 0
    assert "consumption_total" in result.output and "row_number" in result.output
