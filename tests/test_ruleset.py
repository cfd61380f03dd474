"""Rule sets: the shipped one loads, class overrides overlay, and a broken file says where."""

from __future__ import annotations

from decimal import Decimal
from importlib.resources import files
from types import MappingProxyType

import pytest
import yaml

from hub.edits.model import EstimationMethod, MeterFacts, Severity
from hub.edits.ruleset import (
    DEFAULT_CLASS,
    OUTCOME_RULES,
    RULE_PARAMS,
    Registers,
    RuleSetError,
    RuleSetLookupError,
    default_rule_set,
    load_rule_set,
    parse_rule_set,
)

DEFAULT_TEXT = (files("hub.edits") / "rulesets" / "default.yaml").read_text(encoding="utf-8")


def default_data() -> dict:
    return yaml.safe_load(DEFAULT_TEXT)


def parse(data: dict, source: str = "rules.yaml"):
    return parse_rule_set(yaml.safe_dump(data, sort_keys=False), source)


def error_of(data: dict | str) -> RuleSetError:
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(RuleSetError) as raised:
        parse_rule_set(text, "rules.yaml")
    return raised.value


def facts(service: str, size: str | None) -> MeterFacts:
    return MeterFacts("M-1", service, 6, Decimal(1), "kWh", size=size)


# --- the shipped rule set -------------------------------------------------------------------------


def test_the_default_rule_set_loads_with_every_rule_for_every_service_and_class():
    rule_set = default_rule_set()
    assert rule_set.version == "2026.11-1" and rule_set.source == "default"
    assert rule_set.services == ("electric", "water", "gas")
    for service in rule_set.services:
        for cls in rule_set.classes(service):
            assert set(rule_set.rules_for(service, cls)) == set(RULE_PARAMS)
    for name in OUTCOME_RULES:
        assert rule_set.rule("water", DEFAULT_CLASS, name).enabled


def test_the_default_outcome_severities():
    rule_set = default_rule_set()
    assert rule_set.rule("gas", "G16", "estimated_missing").severity is Severity.WARNING
    assert rule_set.rule("gas", "G16", "estimation_limit").severity is Severity.BLOCKING
    assert rule_set.rule("gas", "G16", "awaiting_reread").severity is Severity.BLOCKING


def test_the_estimation_block_becomes_estimation_settings():
    settings = default_rule_set().estimation
    assert settings.methods == (EstimationMethod.INTERPOLATION,
                                EstimationMethod.SAME_PERIOD_LAST_YEAR,
                                EstimationMethod.AVERAGE_DAILY_USAGE)
    assert settings.max_consecutive == 2 and settings.history_cycles == 6
    assert settings.max_wrap_share == Decimal("0.1")
    assert settings.last_year_tolerance_days == 20


def test_registers_per_service():
    rule_set = default_rule_set()
    assert rule_set.registers("electric") == Registers(
        "energy_import_kwh", ("energy_import_kwh_t1", "energy_import_kwh_t2"), "demand_kw")
    assert rule_set.registers("gas") == Registers("volume_m3")


def test_amounts_are_exact_decimals_and_counts_are_integers():
    params = default_rule_set().rule("electric", DEFAULT_CLASS, "high_usage").params
    assert params["factor"] == Decimal("2.0") and isinstance(params["factor"], Decimal)
    assert params["cycles"] == 6 and isinstance(params["cycles"], int)
    tolerance = default_rule_set().rule("electric", DEFAULT_CLASS, "tou_sum_mismatch").params
    assert tolerance["tolerance"] == Decimal("0.1")  # a YAML 0.1, not 0.1000000000000000055…
    assert isinstance(params, MappingProxyType)


def test_a_class_override_overlays_the_service_defaults():
    rule_set = default_rule_set()
    base = rule_set.rule("water", DEFAULT_CLASS, "high_usage")
    big = rule_set.rule("water", "2in", "high_usage")
    assert big.params["min_excess"] == Decimal(150)
    assert big.params["factor"] == base.params["factor"] == Decimal("2.0")
    assert big.params["cycles"] == base.params["cycles"]
    assert big.severity is base.severity and big.enabled


def test_a_class_override_may_set_enabled_and_severity_alone():
    data = default_data()
    data["services"]["electric"]["classes"]["CT"]["rules"]["zero_consumption"] = {
        "enabled": False}
    data["services"]["electric"]["classes"]["CT"]["rules"]["rollover"] = {"severity": "warning"}
    rule_set = parse(data)
    assert not rule_set.rule("electric", "CT", "zero_consumption").enabled
    assert rule_set.rule("electric", "CT", "rollover").severity is Severity.WARNING
    assert rule_set.rule("electric", "200A", "rollover").severity is Severity.INFO


def test_a_class_can_lift_a_limit_with_null():
    data = default_data()
    data["services"]["electric"]["rules"]["demand_over_capacity"]["params"]["capacity_kw"] = 30
    data["services"]["electric"]["classes"]["CT"]["rules"]["demand_over_capacity"] = {
        "params": {"capacity_kw": None}}
    rule_set = parse(data)
    assert rule_set.rule("electric", DEFAULT_CLASS, "demand_over_capacity").params[
        "capacity_kw"] == 30
    assert rule_set.rule("electric", "CT", "demand_over_capacity").params["capacity_kw"] is None


def test_the_meter_class_is_its_size_when_the_service_defines_it():
    rule_set = default_rule_set()
    assert rule_set.meter_class(facts("electric", "200A")) == "200A"
    assert rule_set.meter_class(facts("electric", "5/8in")) == DEFAULT_CLASS  # a water size
    assert rule_set.meter_class(facts("water", "5/8in")) == "5/8in"
    assert rule_set.meter_class(facts("gas", None)) == DEFAULT_CLASS


def test_rules_for_is_cached_per_service_and_class():
    rule_set = default_rule_set()
    assert rule_set.rules_for("water", "1in") is rule_set.rules_for("water", "1in")


# --- lookups the rule set cannot answer -----------------------------------------------------------


def test_an_unknown_service_names_the_known_ones():
    with pytest.raises(RuleSetLookupError) as raised:
        default_rule_set().rules_for("steam", DEFAULT_CLASS)
    error = raised.value
    assert isinstance(error, KeyError)
    assert error.key == "services.steam"
    assert str(error) == ("default: services.steam: no such service in rule set 2026.11-1; "
                          "it has electric, water, gas")
    with pytest.raises(KeyError):
        default_rule_set().meter_class(facts("steam", None))


def test_an_unknown_rule_or_class_is_a_key_error():
    rule_set = default_rule_set()
    with pytest.raises(KeyError, match="no such rule"):
        rule_set.rule("water", DEFAULT_CLASS, "no_such_rule")
    with pytest.raises(KeyError, match="no such meter class; water has 1in, 2in, 3/4in, 5/8in"):
        rule_set.rules_for("water", "200A")


# --- errors in a file -----------------------------------------------------------------------------


def test_an_error_names_file_key_and_why():
    data = default_data()
    data["colour"] = "blue"
    error = error_of(data)
    assert (error.file, error.key, error.why) == ("rules.yaml", "colour", "unknown key")
    assert str(error) == "rules.yaml: colour: unknown key"


def test_an_unknown_rule_name():
    data = default_data()
    data["services"]["water"]["rules"]["zero_use"] = {"enabled": True, "severity": "info"}
    error = error_of(data)
    assert error.key == "services.water.rules.zero_use"
    assert error.why.startswith("unknown rule; known rules: high_usage, low_usage")


def test_an_unknown_rule_name_in_a_class():
    data = default_data()
    data["services"]["water"]["classes"]["5/8in"]["rules"]["hihg_usage"] = {"enabled": False}
    assert error_of(data).key == "services.water.classes.5/8in.rules.hihg_usage"


def test_a_bad_severity():
    data = default_data()
    data["services"]["gas"]["rules"]["spike"]["severity"] = "critical"
    error = error_of(data)
    assert error.key == "services.gas.rules.spike.severity"
    assert error.why == "Input should be 'info', 'warning' or 'blocking', got 'critical'"


def test_a_negative_factor():
    data = default_data()
    data["services"]["water"]["classes"]["5/8in"]["rules"]["low_usage"] = {
        "params": {"factor": -0.5}}
    error = error_of(data)
    assert error.key == "services.water.classes.5/8in.rules.low_usage.params.factor"
    assert error.why == "must not be negative, got -0.5"


def test_a_negative_floor():
    data = default_data()
    data["services"]["electric"]["rules"]["high_usage"]["params"]["min_excess"] = -1
    error = error_of(data)
    assert error.key == "services.electric.rules.high_usage.params.min_excess"
    assert error.why == "must not be negative, got -1"


def test_a_high_usage_factor_below_one():
    data = default_data()
    data["services"]["electric"]["rules"]["high_usage"]["params"]["factor"] = 0.9
    assert error_of(data).why == "must be at least 1, got 0.9"


def test_a_wrong_type():
    data = default_data()
    data["services"]["electric"]["rules"]["stuck_register"]["params"]["cycles"] = "three"
    error = error_of(data)
    assert error.key == "services.electric.rules.stuck_register.params.cycles"
    assert error.why == "must be a whole number, got 'three'"


def test_enabled_must_be_a_boolean():
    data = default_data()
    data["services"]["electric"]["rules"]["rollover"]["enabled"] = "yes please"
    error = error_of(data)
    assert error.key == "services.electric.rules.rollover.enabled"
    assert "valid boolean" in error.why


def test_a_yaml_syntax_error_gives_the_line():
    error = error_of('version: "1"\nservices:\n  water: [unclosed\n')
    assert error.key == "(syntax)"
    assert error.why.startswith("line 4, column 1:")


def test_a_key_written_twice():
    error = error_of('version: "1"\nversion: "2"\n')
    assert error.key == "(syntax)"
    assert error.why.startswith("line 2, column 1: found duplicate key 'version'")


def test_missing_service_registers():
    data = default_data()
    del data["services"]["gas"]["registers"]
    error = error_of(data)
    assert error.key == "services.gas.registers"
    assert error.why.startswith("required: the registers the rules read")


def test_a_total_register_must_be_cumulative():
    data = default_data()
    data["services"]["electric"]["registers"]["total"] = "demand_kw"
    error = error_of(data)
    assert error.key == "services.electric.registers.total"
    assert "not a cumulative register" in error.why


def test_every_rule_must_be_configured_for_every_service():
    data = default_data()
    del data["services"]["water"]["rules"]["rollover"]
    error = error_of(data)
    assert error.key == "services.water.rules.rollover"
    assert error.why == "required: every rule is configured for every service"


def test_a_misspelt_parameter_is_named():
    data = default_data()
    params = data["services"]["electric"]["rules"]["meter_clock_offset"]["params"]
    params["tolerance"] = params.pop("tolerance_s")
    error = error_of(data)
    assert error.key == "services.electric.rules.meter_clock_offset.params.tolerance"
    assert error.why == "unknown parameter; meter_clock_offset takes tolerance_s"


def test_an_unknown_service():
    data = default_data()
    data["services"]["steam"] = data["services"]["gas"]
    error = error_of(data)
    assert error.key == "services.steam"
    assert error.why == "unknown service; a rule set configures electric, water, gas"


def test_min_cycles_above_cycles_once_a_class_applies():
    data = default_data()
    data["services"]["electric"]["classes"]["100A"]["rules"]["low_usage"] = {
        "params": {"cycles": 2}}
    error = error_of(data)
    assert error.key == "services.electric.classes.100A.rules.low_usage.params.min_cycles"
    assert error.why.startswith("3 is more than cycles (2)")


def test_a_class_named_default_is_refused():
    data = default_data()
    data["services"]["water"]["classes"]["default"] = {}
    error = error_of(data)
    assert error.key == "services.water.classes.default"


def test_an_unquoted_version_number():
    data = default_data()
    data["version"] = 2026.11
    assert error_of(data).why.endswith('quote it: "2026.11"')


def test_an_unknown_estimation_method():
    data = default_data()
    data["estimation"]["methods"] = ["guess"]
    error = error_of(data)
    assert error.key == "estimation.methods.0"


def test_an_empty_file():
    error = error_of("")
    assert error.key == "(root)" and "not an empty file" in error.why


def test_a_service_may_be_left_out():
    data = default_data()
    del data["services"]["gas"]
    rule_set = parse(data)
    assert rule_set.services == ("electric", "water")


# --- files --------------------------------------------------------------------------------------


def test_load_rule_set_reads_a_file(tmp_path):
    path = tmp_path / "utility.yaml"
    data = default_data()
    data["version"] = "utility-7"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    rule_set = load_rule_set(path)
    assert rule_set.version == "utility-7" and rule_set.source == str(path)


def test_load_rule_set_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: [\n", encoding="utf-8")
    with pytest.raises(RuleSetError, match=r"broken\.yaml: \(syntax\): line 2"):
        load_rule_set(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(RuleSetError) as raised:
        load_rule_set(tmp_path / "none.yaml")
    assert raised.value.key == "(file)" and "No such file" in raised.value.why
