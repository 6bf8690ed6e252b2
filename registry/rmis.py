"""RMIS, the harmonized target schema every retailer mapping fills, kept as data so pages and checks share it."""

import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

PLACEMENT_TYPES = (
    "sponsored_product",
    "sponsored_display",
    "onsite_display",
    "offsite_display",
    "video",
    "search_banner",
)

FieldType = Literal["string", "integer", "number", "timestamp", "enum", "currency"]

_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class RmisValueError(ValueError):
    """A harmonized value that does not fit its RMIS field; the message names the field and the value."""


class RmisField(BaseModel):
    """One RMIS column: what a mapping must produce for it."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: FieldType
    required: bool
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


FIELDS: tuple[RmisField, ...] = (
    RmisField(
        name="event_id", type="string", required=True, description="Unique id of the reported event or report row."
    ),
    RmisField(name="ts", type="timestamp", required=True, description="When it happened, UTC ISO-8601 ending in Z."),
    RmisField(name="retailer", type="string", required=True, description="Retailer media network, e.g. Amazon."),
    RmisField(name="campaign_id", type="string", required=True, description="Campaign id as the retailer reports it."),
    RmisField(name="ad_group_id", type="string", required=False, description="Ad group / line item id."),
    RmisField(
        name="sku", type="string", required=True, description="Advertised product id (ASIN, item id, TCIN, UPC)."
    ),
    RmisField(
        name="placement_type",
        type="enum",
        required=True,
        description="Where the ad ran.",
        choices=PLACEMENT_TYPES,
    ),
    RmisField(name="impressions", type="integer", required=True, description="Ad impressions.", minimum=0),
    RmisField(name="clicks", type="integer", required=True, description="Ad clicks.", minimum=0),
    RmisField(
        name="cost",
        type="number",
        required=True,
        description="Spend in `currency` units (dollars, not micros).",
        minimum=0,
    ),
    RmisField(name="conversions", type="integer", required=False, description="Attributed orders or units.", minimum=0),
    RmisField(
        name="sales", type="number", required=False, description="Attributed sales in `currency` units.", minimum=0
    ),
    RmisField(name="currency", type="currency", required=True, description="ISO 4217 code, e.g. USD."),
    RmisField(
        name="attribution_window_days",
        type="integer",
        required=False,
        description="Days after the ad in which conversions are credited.",
        minimum=1,
    ),
    RmisField(name="keyword", type="string", required=False, description="Search keyword that triggered the ad."),
    RmisField(name="channel", type="string", required=False, description="onsite, offsite or in_store."),
)

FIELDS_BY_NAME: dict[str, RmisField] = {field.name: field for field in FIELDS}
REQUIRED_FIELDS: tuple[str, ...] = tuple(field.name for field in FIELDS if field.required)


def get_field(name: str) -> RmisField:
    """Look up a field; KeyError for unknown names lets callers word their own message."""
    return FIELDS_BY_NAME[name]


def check_value(field: RmisField, value: Any) -> Any:
    """Return `value` in the field's canonical Python type, or raise RmisValueError saying why it does not fit.

    Lossless conversions are accepted ("12" or 12.0 for an integer) so that a plain rename of a
    CSV column works; anything that would lose information is refused.
    """
    if _is_empty(value):
        if field.required:
            raise RmisValueError(f"{field.name} is required but the value is empty")
        return None
    converted = _CONVERTERS[field.type](field, value)
    if field.minimum is not None and converted < field.minimum:
        raise RmisValueError(f"{field.name} must be at least {field.minimum:g}, got {converted!r}")
    return converted


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _as_string(field: RmisField, value: Any) -> str:
    if isinstance(value, bool):
        raise RmisValueError(f"{field.name} expects text, got the boolean {value!r}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value).strip()
    raise RmisValueError(f"{field.name} expects text, got {type(value).__name__} {value!r}")


def _as_integer(field: RmisField, value: Any) -> int:
    if isinstance(value, bool):
        raise RmisValueError(f"{field.name} expects a whole number, got the boolean {value!r}")
    if isinstance(value, int):
        return value
    number = _as_number(field, value)
    if not number.is_integer():
        raise RmisValueError(f"{field.name} expects a whole number, got {value!r}")
    return int(number)


def _as_number(field: RmisField, value: Any) -> float:
    if isinstance(value, bool):
        raise RmisValueError(f"{field.name} expects a number, got the boolean {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise RmisValueError(f"{field.name} expects a number, got {value!r}") from None
    if not math.isfinite(number):
        raise RmisValueError(f"{field.name} expects a finite number, got {value!r}")
    return number


def _as_timestamp(field: RmisField, value: Any) -> str:
    text = value if isinstance(value, str) else ""
    if _TS_RE.match(text):
        try:
            datetime.fromisoformat(text)
            return text
        except ValueError:
            pass
    raise RmisValueError(
        f"{field.name} expects a UTC timestamp like 2026-09-01T13:45:00Z, got {value!r}; use the to_utc transform"
    )


def _as_enum(field: RmisField, value: Any) -> str:
    if isinstance(value, str) and value in field.choices:
        return value
    raise RmisValueError(f"{field.name} must be one of {', '.join(field.choices)}; got {value!r}")


def _as_currency(field: RmisField, value: Any) -> str:
    if isinstance(value, str) and _CURRENCY_RE.match(value):
        return value
    raise RmisValueError(f"{field.name} expects an ISO 4217 code of three capital letters like USD, got {value!r}")


_CONVERTERS = {
    "string": _as_string,
    "integer": _as_integer,
    "number": _as_number,
    "timestamp": _as_timestamp,
    "enum": _as_enum,
    "currency": _as_currency,
}
