"""Transforms and RMIS value checks: every transform, its failures, and params refused up front."""

import math

import pytest

from registry import rmis, transforms
from registry.transforms import TransformError, apply, validate_params


def run(name: str, source_value, **params):
    return apply(name, source_value, validate_params(name, params))


def test_none_passes_the_value_through():
    assert run("none", "B0ABC") == "B0ABC"
    assert run("none", 7) == 7


def test_enum_map_translates_known_codes():
    table = {"sp": "sponsored_product", "sd": "sponsored_display", "onsite_disp": "onsite_display"}
    assert run("enum_map", "sp", table=table) == "sponsored_product"
    assert run("enum_map", "onsite_disp", table=table) == "onsite_display"


def test_enum_map_unknown_code_without_default_fails_with_reason():
    with pytest.raises(TransformError, match=r"'banner' is not in the enum_map table \(sp\).*set a default"):
        run("enum_map", "banner", table={"sp": "sponsored_product"})


def test_enum_map_default_covers_unknown_and_missing_codes():
    assert run("enum_map", "banner", table={"x": "offsite"}, default="onsite") == "onsite"
    assert run("enum_map", None, table={"x": "offsite"}, default="onsite") == "onsite"


def test_enum_map_keys_are_compared_as_text():
    assert run("enum_map", 1, table={1: "video"}) == "video"
    assert run("enum_map", 1.0, table={"1": "video"}) == "video"


@pytest.mark.parametrize(
    ("params", "reason"),
    [({}, "table is required"), ({"table": {}}, "table is empty"), ({"table": ["sp"]}, "table")],
)
def test_enum_map_params_are_checked(params, reason):
    with pytest.raises(TransformError, match=reason):
        validate_params("enum_map", params)


def test_scale_divides_micros_exactly():
    assert run("scale", 1_234_567, divisor=1_000_000) == 1.234567
    assert run("scale", "88769485", divisor=1e6) == 88.769485


def test_scale_factor_has_no_float_noise():
    assert run("scale", 1_234_567, factor=0.01) == 12345.67


def test_scale_refuses_text_that_is_not_a_number():
    with pytest.raises(TransformError, match="'abc' is not a number"):
        run("scale", "abc", divisor=100)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"divisor": 0}, "divisor is 0"),
        ({}, "exactly one of 'factor' or 'divisor'"),
        ({"factor": 2, "divisor": 3}, "exactly one"),
        ({"divisor": "lots"}, "divisor"),
        ({"divsor": 100}, "divsor is not a known parameter"),
    ],
)
def test_scale_params_are_refused_up_front(params, reason):
    with pytest.raises(TransformError, match=reason):
        validate_params("scale", params)


def test_to_utc_reads_local_pacific_time_with_daylight_saving():
    assert run("to_utc", "2026-09-01 01:11:15", format="%Y-%m-%d %H:%M:%S", tz="America/Los_Angeles") == (
        "2026-09-01T08:11:15Z"
    )
    assert run("to_utc", "2026-12-01 01:11:15", format="%Y-%m-%d %H:%M:%S", tz="America/Los_Angeles") == (
        "2026-12-01T09:11:15Z"
    )


def test_to_utc_day_level_dates_start_at_local_midnight():
    assert run("to_utc", "09/01/2026", format="%m/%d/%Y", tz="America/Chicago") == "2026-09-01T05:00:00Z"


def test_to_utc_epochs_and_iso():
    assert run("to_utc", 1788239455962, format="epoch_ms") == "2026-09-01T05:10:55.962Z"
    assert run("to_utc", "1788239455", format="epoch_s") == "2026-09-01T05:10:55Z"
    assert run("to_utc", "2026-09-01T04:26:30-04:00", format="iso") == "2026-09-01T08:26:30Z"
    assert run("to_utc", "2026-09-01T04:26:30", format="iso", tz="America/New_York") == "2026-09-01T08:26:30Z"


def test_to_utc_value_not_matching_the_format_fails():
    with pytest.raises(TransformError, match=r"'2026/09/01' does not match format '%Y-%m-%d'"):
        run("to_utc", "2026/09/01", format="%Y-%m-%d")
    with pytest.raises(TransformError, match="not a number"):
        run("to_utc", "yesterday", format="epoch_ms")


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "tz 'Mars/Olympus_Mons' is not a known IANA time zone"),
        ({"format": "yyyy-mm-dd"}, "is not 'iso', 'epoch_ms', 'epoch_s' or a strptime format"),
    ],
)
def test_to_utc_params_are_refused_up_front(params, reason):
    with pytest.raises(TransformError, match=reason):
        validate_params("to_utc", params)


def test_cast_int_accepts_whole_numbers_in_any_spelling():
    assert run("cast", "12.0", to="int") == 12
    assert run("cast", 12.0, to="int") == 12
    assert run("cast", " 7 ", to="int") == 7


@pytest.mark.parametrize(("value", "reason"), [("abc", "'abc' is not a number"), ("12.5", "not a whole number")])
def test_cast_int_refuses_lossy_values(value, reason):
    with pytest.raises(TransformError, match=reason):
        run("cast", value, to="int")


def test_cast_float_str_and_bool():
    assert run("cast", "12.30", to="float") == 12.3
    assert run("cast", 71702725, to="str") == "71702725"
    assert run("cast", 71702725.0, to="str") == "71702725"
    assert run("cast", "Yes", to="bool") is True
    assert run("cast", 0, to="bool") is False
    with pytest.raises(TransformError, match="not a yes/no value"):
        run("cast", "maybe", to="bool")


def test_cast_needs_a_known_type():
    with pytest.raises(TransformError, match="to"):
        validate_params("cast", {"to": "decimal"})


def test_constant_ignores_the_source_and_needs_a_value():
    assert run("constant", "anything", value="Amazon") == "Amazon"
    assert run("constant", None, value=7) == 7
    with pytest.raises(TransformError, match="value is required"):
        validate_params("constant", {})


@pytest.mark.parametrize("missing", [None, "", "   ", math.nan])
def test_default_fills_missing_values_for_any_transform(missing):
    assert run("none", missing, default=0) == 0
    assert run("scale", missing, divisor=100, default=0.0) == 0.0
    assert run("none", missing) is None


def test_unknown_transform_is_refused():
    with pytest.raises(TransformError, match="unknown transform 'scael'; choose one of none, enum_map"):
        validate_params("scael", {})


def test_every_transform_has_help_and_a_params_model():
    assert set(transforms.TRANSFORMS) == {"none", "enum_map", "scale", "to_utc", "cast", "constant"}
    assert all(t.help and issubclass(t.params, transforms.Params) for t in transforms.TRANSFORMS.values())


def test_rmis_required_fields_match_the_product_brief():
    assert rmis.REQUIRED_FIELDS == (
        "event_id",
        "ts",
        "retailer",
        "campaign_id",
        "sku",
        "placement_type",
        "impressions",
        "clicks",
        "cost",
        "currency",
    )
    assert rmis.get_field("placement_type").choices == rmis.PLACEMENT_TYPES


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("impressions", "12", 12),
        ("impressions", 12.0, 12),
        ("cost", "3.5", 3.5),
        ("campaign_id", 538853847883534, "538853847883534"),
        ("ts", "2026-09-01T08:11:15Z", "2026-09-01T08:11:15Z"),
        ("placement_type", "video", "video"),
        ("currency", "USD", "USD"),
        ("conversions", None, None),
    ],
)
def test_rmis_accepts_lossless_values(name, value, expected):
    assert rmis.check_value(rmis.get_field(name), value) == expected


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("sku", None, "sku is required but the value is empty"),
        ("impressions", 12.5, "whole number"),
        ("impressions", -3, "at least 0"),
        ("cost", "free", "expects a number"),
        ("ts", "2026-09-01 08:11:15", "UTC timestamp"),
        ("placement_type", "banner", "must be one of sponsored_product"),
        ("currency", "usd", "ISO 4217"),
        ("campaign_id", True, "boolean"),
    ],
)
def test_rmis_refuses_values_that_do_not_fit(name, value, reason):
    with pytest.raises(rmis.RmisValueError, match=reason):
        rmis.check_value(rmis.get_field(name), value)
