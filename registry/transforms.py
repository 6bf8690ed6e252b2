"""Field transforms: small pure functions `(value, params) -> value`, with their params validated up front.

Every transform has a pydantic params model, so a mapping with bad params is refused when it is
loaded or saved, never half-way through a run. Every transform also accepts `default`: the
target value to use when the source value is missing or empty.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

Scalar = str | int | float | bool
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class TransformError(ValueError):
    """A transform that cannot be applied to a value, or params that make no sense; the message says why."""


class Params(BaseModel):
    """Params every transform shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Scalar | None = None


class NoneParams(Params):
    """Pass the value through unchanged (a rename)."""


class EnumMapParams(Params):
    """Translate retailer codes to target values; `default` also covers codes missing from the table."""

    table: dict[str, Scalar]

    @field_validator("table", mode="before")
    @classmethod
    def _keys_as_text(cls, table: Any) -> Any:
        if isinstance(table, dict):
            if not table:
                raise ValueError("the table is empty; list at least one 'source value: target value' pair")
            return {str(key): value for key, value in table.items()}
        return table


class ScaleParams(Params):
    """Multiply by `factor` or divide by `divisor` (exactly one), e.g. cost_micros / 1,000,000."""

    factor: float | None = None
    divisor: float | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "ScaleParams":
        if (self.factor is None) == (self.divisor is None):
            raise ValueError("give exactly one of 'factor' or 'divisor', e.g. divisor: 1000000")
        if self.divisor == 0:
            raise ValueError("divisor is 0; dividing by zero is undefined")
        for name, number in (("factor", self.factor), ("divisor", self.divisor)):
            if number is not None and not math.isfinite(number):
                raise ValueError(f"{name} must be a finite number")
        return self


class ToUtcParams(Params):
    """Parse a timestamp in `format` ("iso", "epoch_ms", "epoch_s" or a strptime format) read in zone `tz`."""

    format: str = "iso"
    tz: str = "UTC"

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        if fmt not in ("iso", "epoch_ms", "epoch_s") and "%" not in fmt:
            raise ValueError(
                f"format {fmt!r} is not 'iso', 'epoch_ms', 'epoch_s' or a strptime format like '%Y-%m-%d %H:%M:%S'"
            )
        return fmt

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{tz!r} is not a known IANA time zone; use a name like America/Los_Angeles") from None
        return tz


class CastParams(Params):
    """Convert to int, float, str or bool, refusing anything lossy."""

    to: Literal["int", "float", "str", "bool"]


class ConstantParams(Params):
    """Always produce `value`; the source is not read."""

    value: Scalar


def is_missing(value: Any) -> bool:
    """None, NaN and blank text all mean 'the source gave nothing'."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def none(value: Any, params: NoneParams) -> Any:
    return value


def enum_map(value: Any, params: EnumMapParams) -> Any:
    key = _text(value)
    if key in params.table:
        return params.table[key]
    if params.default is not None:
        return params.default
    known = ", ".join(list(params.table)[:8])
    raise TransformError(f"{key!r} is not in the enum_map table ({known}); add it or set a default")


def scale(value: Any, params: ScaleParams) -> float:
    number = _decimal(value)
    if params.factor is not None:
        result = number * Decimal(repr(params.factor))
    else:
        result = number / Decimal(repr(params.divisor))
    return float(result)


def to_utc(value: Any, params: ToUtcParams) -> str:
    if params.format in ("epoch_ms", "epoch_s"):
        moment = _from_epoch(value, params.format)
    else:
        text = _text(value)
        try:
            moment = datetime.fromisoformat(text) if params.format == "iso" else datetime.strptime(text, params.format)
        except ValueError:
            expected = "an ISO-8601 timestamp" if params.format == "iso" else f"format {params.format!r}"
            raise TransformError(f"{text!r} does not match {expected}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(params.tz))
    moment = moment.astimezone(UTC)
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{moment.microsecond // 1000:03d}" if moment.microsecond else "")
        + "Z"
    )


def cast(value: Any, params: CastParams) -> Scalar:
    if params.to == "str":
        return _text(value)
    if params.to == "bool":
        return _bool(value)
    number = _decimal(value)
    if params.to == "float":
        return float(number)
    if number != number.to_integral_value():
        raise TransformError(f"{value!r} is not a whole number")
    return int(number)


def constant(value: Any, params: ConstantParams) -> Scalar:
    return params.value


@dataclass(frozen=True)
class Transform:
    """A transform's function, its params model and a one-line help text for the editor."""

    name: str
    function: Callable[[Any, Any], Any]
    params: type[Params]
    help: str


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("none", none, NoneParams, "Copy the value as is (a rename)."),
        Transform(
            "enum_map", enum_map, EnumMapParams, "Translate codes: {table: {sp: sponsored_product}, default: ...}."
        ),
        Transform("scale", scale, ScaleParams, "Multiply or divide: {divisor: 1000000} or {factor: 0.01}."),
        Transform(
            "to_utc", to_utc, ToUtcParams, "Timestamp to UTC: {format: '%Y-%m-%d %H:%M:%S', tz: America/Chicago}."
        ),
        Transform("cast", cast, CastParams, "Change type: {to: int | float | str | bool}."),
        Transform("constant", constant, ConstantParams, "Always the same value: {value: USD}."),
    )
}


def validate_params(transform: str, params: dict[str, Any] | None) -> Params:
    """Check a transform name and its params; TransformError says what to fix."""
    if transform not in TRANSFORMS:
        raise TransformError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    try:
        return TRANSFORMS[transform].params.model_validate(params or {})
    except ValidationError as error:
        raise TransformError(f"{transform} params: {explain(error)}") from None


def apply(transform: str, value: Any, params: Params) -> Any:
    """Run one transform on one value, using `params.default` when the source value is missing."""
    if transform != "constant" and is_missing(value):
        return params.default
    return TRANSFORMS[transform].function(value, params)


def explain(error: ValidationError) -> str:
    """Turn pydantic's report into one readable sentence per problem."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "is not a known parameter"
        elif item["type"] == "missing":
            message = "is required"
        parts.append(f"{where} {message}" if where else message)
    return "; ".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TransformError(f"{value!r} is a boolean, not a number")
    try:
        number = Decimal(
            value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else value
        )
    except (InvalidOperation, TypeError, ValueError):
        raise TransformError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise TransformError(f"{value!r} is not a finite number")
    return number


def _from_epoch(value: Any, fmt: str) -> datetime:
    number = _decimal(value)
    try:
        return EPOCH + timedelta(milliseconds=float(number) if fmt == "epoch_ms" else float(number) * 1000)
    except OverflowError:
        raise TransformError(f"{value!r} is out of range for {fmt}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TransformError(f"{value!r} is not a yes/no value (true/false, yes/no, 1/0)")
