"""Raw retailer sample sources: a deterministic generator, a catalog, and loading, filtering and export.

Each retailer reports ad events in its own names, units, codes and time zones, which is exactly
what mappings exist to harmonize. The generator is seeded and never reads the clock, so the same
seed writes the same bytes on every machine.
"""

import csv
import io
import json
import random
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel

from registry.activity import log_event
from registry.errors import InvalidFile, NotFound
from registry.layout import Registry, open_registry
from registry.spreadsheet import write_csv
from registry.storage import atomic_write_bytes, locked, validate_name

DEFAULT_SEED = 20260901
FIRST_DAY = date(2026, 9, 1)
DAYS = 61  # 2026-09-01 .. 2026-10-31, before US clocks change on Nov 1


class SourceSpec(BaseModel):
    """What a raw source is, independent of where a registry keeps it."""

    id: str
    title: str
    retailer: str | None = None
    format: Literal["csv", "jsonl"]
    columns: list[str]
    date_column: str | None = None
    date_format: str | None = None
    retailer_column: str | None = None
    type_column: str | None = None
    description: str


class SourceInfo(SourceSpec):
    """A raw source as one registry holds it."""

    path: Path
    rows: int

    @property
    def generated(self) -> bool:
        return self.path.exists()


SPECS: tuple[SourceSpec, ...] = (
    SourceSpec(
        id="retailer_alpha_events",
        title="Retailer Alpha events (CSV)",
        retailer="Amazon",
        format="csv",
        columns=[
            "event_id",
            "timestamp",
            "campaignId",
            "adGroupId",
            "asin",
            "adType",
            "keywordText",
            "impressions",
            "clicks",
            "cost_micros",
            "conv_click_7d",
            "sales_7d",
            "currencyCode",
        ],
        date_column="timestamp",
        date_format="%Y-%m-%d %H:%M:%S",
        type_column="adType",
        description="Amazon Ads style hourly events; local time in America/Los_Angeles, cost in micros.",
    ),
    SourceSpec(
        id="retailer_beta_events",
        title="Retailer Beta events (JSONL)",
        retailer="Walmart",
        format="jsonl",
        columns=[
            "id",
            "event_time",
            "campaign_id",
            "adgroup_id",
            "item_id",
            "placement",
            "imps",
            "clks",
            "spend",
            "attributed_orders",
            "attributed_sales",
            "attribution_days",
            "currency",
        ],
        date_column="event_time",
        date_format="epoch_ms",
        type_column="placement",
        description="Walmart Connect style events; epoch milliseconds, spend as a dollar string.",
    ),
    SourceSpec(
        id="retailer_gamma_events",
        title="Retailer Gamma events (CSV)",
        retailer="Target",
        format="csv",
        columns=[
            "Record ID",
            "Date",
            "Campaign ID",
            "Line Item ID",
            "TCIN",
            "Placement",
            "Impressions",
            "Clicks",
            "Spend",
            "Conversions",
            "Attributed Sales",
        ],
        date_column="Date",
        date_format="%m/%d/%Y",
        type_column="Placement",
        description="Target Roundel style daily report rows; MM/DD/YYYY dates in America/Chicago.",
    ),
    SourceSpec(
        id="retailer_delta_events",
        title="Retailer Delta events (JSONL)",
        retailer="Instacart",
        format="jsonl",
        columns=[
            "event_uuid",
            "occurred_at",
            "campaign_uuid",
            "ad_group_uuid",
            "upc",
            "ad_format",
            "impressions",
            "clicks",
            "spend_cents",
            "attributed_quantities",
            "attributed_sales_cents",
            "currency",
        ],
        date_column="occurred_at",
        date_format="iso",
        type_column="ad_format",
        description="Instacart Ads style events; ISO timestamps with offsets, money in cents.",
    ),
    SourceSpec(
        id="sku_catalog",
        title="SKU catalog (CSV)",
        format="csv",
        columns=["sku", "retailer", "title", "brand", "category", "price"],
        retailer_column="retailer",
        type_column="category",
        description="Products each retailer sells, with its own product id.",
    ),
    SourceSpec(
        id="uplift_priors",
        title="Uplift priors (CSV)",
        format="csv",
        columns=["retailer", "placement_type", "category", "roas_uplift_mean", "ci_low", "ci_high", "n_tests"],
        retailer_column="retailer",
        type_column="placement_type",
        description="ROAS uplift measured in past incrementality tests, with 95% intervals.",
    ),
    SourceSpec(
        id="performance_metrics",
        title="Performance metrics (CSV)",
        format="csv",
        columns=[
            "date",
            "retailer",
            "campaign_id",
            "placement_type",
            "impressions",
            "clicks",
            "spend",
            "conversions",
            "sales",
        ],
        date_column="date",
        date_format="%Y-%m-%d",
        retailer_column="retailer",
        type_column="placement_type",
        description="Daily campaign totals across retailers in RMIS placement names.",
    ),
)
_SPECS_BY_ID = {spec.id: spec for spec in SPECS}
SOURCE_IDS: tuple[str, ...] = tuple(_SPECS_BY_ID)


class FilterChoices(BaseModel):
    """What the filters of one loaded source can offer."""

    date_min: date | None = None
    date_max: date | None = None
    retailers: list[str] = []
    types: list[str] = []


def list_sources(registry: Registry | None = None) -> list[SourceInfo]:
    registry = registry or open_registry()
    return [_info(spec, registry) for spec in SPECS]


def get_source(source_id: str, registry: Registry | None = None) -> SourceInfo:
    """Resolve a source id from user input; only catalog ids are accepted, so no path can be smuggled in."""
    validate_name(source_id, "source id")
    if source_id not in _SPECS_BY_ID:
        raise NotFound(f"There is no raw source {source_id!r}; choose one of {', '.join(_SPECS_BY_ID)}.")
    return _info(_SPECS_BY_ID[source_id], registry or open_registry())


def load_source(source_id: str, registry: Registry | None = None) -> pd.DataFrame:
    """The source as a DataFrame with nullable dtypes, so empty cells are None and ints stay ints."""
    source = get_source(source_id, registry)
    if not source.generated:
        raise NotFound(
            f"{source.title} has not been generated yet. Run `make demo`, or click 'Generate sample sources' "
            "in the Data Browser."
        )
    if source.format == "csv":
        try:
            return pd.read_csv(source.path, dtype_backend="numpy_nullable", keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise InvalidFile(
                f"{source.path.name} is not readable CSV ({error}); regenerate the sample sources."
            ) from None
    records = []
    with open(source.path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise InvalidFile(
                    f"{source.path.name} is not valid JSON here; regenerate the sample sources.", line=number
                ) from None
    return pd.DataFrame(records, columns=source.columns, dtype=object).convert_dtypes()


def filter_choices(df: pd.DataFrame, source: SourceSpec) -> FilterChoices:
    choices = FilterChoices()
    if source.date_column and source.date_column in df:
        days = _row_dates(df[source.date_column], source.date_format).dropna()
        if not days.empty:
            choices.date_min, choices.date_max = days.min(), days.max()
    if source.retailer_column and source.retailer_column in df:
        choices.retailers = sorted(df[source.retailer_column].dropna().astype(str).unique())
    elif source.retailer:
        choices.retailers = [source.retailer]
    if source.type_column and source.type_column in df:
        choices.types = sorted(df[source.type_column].dropna().astype(str).unique())
    return choices


def filter_source(
    df: pd.DataFrame,
    source: SourceSpec,
    date_from: date | None = None,
    date_to: date | None = None,
    retailers: list[str] | None = None,
    types: list[str] | None = None,
) -> pd.DataFrame:
    """Rows within the date range (inclusive, in the source's own calendar) and the chosen retailers and types."""
    keep = pd.Series(True, index=df.index)
    if (date_from or date_to) and source.date_column:
        days = _row_dates(df[source.date_column], source.date_format)
        if date_from:
            keep &= days.notna() & (days >= date_from)
        if date_to:
            keep &= days.notna() & (days <= date_to)
    if retailers:
        if source.retailer_column:
            keep &= df[source.retailer_column].astype(str).isin(retailers).fillna(False)
        elif source.retailer not in retailers:
            keep &= False
    if types and source.type_column:
        keep &= df[source.type_column].astype(str).isin(types).fillna(False)
    return df[keep.astype(bool)]


def export_frame(df: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return write_csv([str(c) for c in df.columns], df.astype(object).where(df.notna(), None).to_dict("records"))
    if fmt == "jsonl":
        return df.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
    raise InvalidFile(f"Export format {fmt!r} is not supported; choose csv or jsonl.")


def generate_raw_sources(registry: Registry, seed: int = DEFAULT_SEED) -> list[SourceInfo]:
    """Write every sample source; files that already hold the same bytes are left untouched."""
    world = _World(seed)
    builders = {
        "retailer_alpha_events": world.alpha_events,
        "retailer_beta_events": world.beta_events,
        "retailer_gamma_events": world.gamma_events,
        "retailer_delta_events": world.delta_events,
        "sku_catalog": world.sku_catalog,
        "uplift_priors": world.uplift_priors,
        "performance_metrics": world.performance_metrics,
    }
    written = []
    with locked(registry.locks, "raw_sources"):
        for spec in SPECS:
            rows = builders[spec.id](random.Random(f"{seed}:{spec.id}"))
            data = _csv_bytes(spec.columns, rows) if spec.format == "csv" else _jsonl_bytes(rows)
            path = registry.raw / f"{spec.id}.{spec.format}"
            if not path.exists() or path.read_bytes() != data:
                atomic_write_bytes(path, data)
                written.append(spec.id)
    if written:
        log_event("raw_sources.generated", f"Generated raw sources: {', '.join(written)}", registry, seed=seed)
    return list_sources(registry)


def _info(spec: SourceSpec, registry: Registry) -> SourceInfo:
    path = registry.raw / f"{spec.id}.{spec.format}"
    rows = 0
    if path.exists():
        with open(path, "rb") as handle:
            rows = sum(1 for line in handle if line.strip()) - (1 if spec.format == "csv" else 0)
    return SourceInfo(**spec.model_dump(), path=path, rows=max(rows, 0))


def _row_dates(values: pd.Series, fmt: str | None) -> pd.Series:
    """Calendar day of each row as the source writes it (epochs in UTC); unparseable rows become NaT."""
    if fmt == "epoch_ms":
        parsed = pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit="ms", utc=True)
    elif fmt == "iso":
        parsed = pd.to_datetime(values.astype(str).str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    else:
        parsed = pd.to_datetime(values.astype(str), format=fmt, errors="coerce")
    return parsed.dt.date.astype(object).where(parsed.notna(), None)


def _csv_bytes(columns: list[str], rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return buffer.getvalue().encode("utf-8")


def _jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


# ---- the simulated world every source is drawn from -------------------------------------------

_CATEGORIES: dict[str, tuple[list[str], list[str], tuple[float, float]]] = {
    "Snacks": (
        ["Crunchwell", "Harvest Lane", "Nibbl"],
        ["Sea Salt Kettle Chips", "Protein Bar Variety Pack", "Trail Mix", "Rice Crackers"],
        (2.5, 13.0),
    ),
    "Beverages": (
        ["Brookside", "Fizzara", "Peak Brew"],
        ["Sparkling Water 12-Pack", "Cold Brew Coffee", "Electrolyte Drink", "Green Tea"],
        (4.0, 19.0),
    ),
    "Personal Care": (
        ["Puraleaf", "Dermaly", "Clean Ridge"],
        ["Body Wash", "Fluoride Toothpaste", "Deodorant", "Shampoo"],
        (3.5, 15.0),
    ),
    "Household": (
        ["Brightmop", "Evergood", "Tidyhome"],
        ["Laundry Detergent Pods", "Paper Towels 6-Roll", "Dish Soap", "Trash Bags"],
        (5.0, 25.0),
    ),
    "Baby": (["Little Sprout", "Nestlings"], ["Diapers Size 3", "Baby Wipes", "Infant Formula"], (9.0, 40.0)),
    "Pet": (["Pawsome", "Tailwise"], ["Grain-Free Dog Food", "Clumping Cat Litter", "Dental Chews"], (7.0, 50.0)),
    "Health": (
        ["Vitalis", "Remedia"],
        ["Multivitamin Gummies", "Allergy Relief Tablets", "Pain Reliever"],
        (6.0, 23.0),
    ),
    "Beauty": (["Lumiere", "Glowhaus"], ["Vitamin C Serum", "Matte Lipstick", "SPF 50 Sunscreen"], (8.0, 35.0)),
}

# Impressions per row, click-through rate, and how the placement is priced (per click or per mille).
_PROFILES: dict[str, tuple[tuple[int, int], tuple[float, float], str, tuple[float, float]]] = {
    "sponsored_product": ((150, 4000), (0.004, 0.02), "cpc", (0.45, 2.40)),
    "search_banner": ((300, 6000), (0.003, 0.012), "cpc", (0.60, 2.80)),
    "sponsored_display": ((800, 15000), (0.002, 0.008), "cpm", (2.5, 9.0)),
    "onsite_display": ((1500, 25000), (0.002, 0.006), "cpm", (3.0, 10.0)),
    "offsite_display": ((3000, 40000), (0.002, 0.005), "cpm", (2.0, 7.0)),
    "video": ((500, 9000), (0.002, 0.007), "cpm", (12.0, 28.0)),
}

# Each retailer's own placement codes and the RMIS placement they stand for.
_ALPHA_TYPES = {"sp": "sponsored_product", "sd": "sponsored_display", "onsite_disp": "onsite_display", "video": "video"}
_BETA_TYPES = {
    "search_in_grid": "sponsored_product",
    "buy_box": "sponsored_product",
    "carousel": "sponsored_product",
    "search_brand_amplifier": "search_banner",
    "display_onsite": "onsite_display",
    "display_offsite": "offsite_display",
    "video": "video",
}
_GAMMA_TYPES = {
    "Sponsored Product": "sponsored_product",
    "Onsite Display": "onsite_display",
    "Offsite Display": "offsite_display",
    "Video": "video",
    "Search Banner": "search_banner",
}
_DELTA_TYPES = {"featured_product": "sponsored_product", "display_banner": "onsite_display", "shoppable_video": "video"}
_RETAILERS = {"Amazon": _ALPHA_TYPES, "Walmart": _BETA_TYPES, "Target": _GAMMA_TYPES, "Instacart": _DELTA_TYPES}
_ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


class _Campaign(BaseModel):
    id: str | int
    ad_groups: list[str | int]
    codes: list[str]  # the retailer's placement codes this campaign buys
    categories: list[str]


class _World:
    """Products, prices and campaigns shared by every source, so ids agree across files."""

    def __init__(self, seed: int):
        rng = random.Random(f"{seed}:world")
        self.products: list[tuple[str, str, str, float]] = []  # title, brand, category, list price
        for category, (brands, names, (low, high)) in _CATEGORIES.items():
            for brand in brands:
                for name in names:
                    price = round(rng.uniform(low, high)) - 0.01
                    self.products.append((f"{brand} {name}", brand, category, max(price, 1.99)))
        taken: set[str] = set()
        self.skus: dict[str, list[str]] = {retailer: [] for retailer in _RETAILERS}
        self.prices: dict[tuple[str, str], float] = {}
        for index in range(len(self.products)):
            for retailer in _RETAILERS:
                sku = self._new_sku(rng, retailer, taken)
                self.skus[retailer].append(sku)
                self.prices[(retailer, sku)] = round(self.products[index][3] * rng.uniform(0.93, 1.07), 2)
        self.campaigns = {retailer: self._campaigns(rng, retailer) for retailer in _RETAILERS}

    @staticmethod
    def _new_sku(rng: random.Random, retailer: str, taken: set[str]) -> str:
        while True:
            if retailer == "Amazon":
                sku = "B0" + "".join(rng.choice(_ALNUM) for _ in range(8))
            elif retailer == "Walmart":
                sku = str(rng.randint(100_000_000, 999_999_999))
            elif retailer == "Target":
                sku = str(rng.randint(10_000_000, 99_999_999))
            else:
                sku = str(rng.randint(100_000_000_000, 999_999_999_999))
            if sku not in taken:
                taken.add(sku)
                return sku

    @staticmethod
    def _new_id(rng: random.Random, retailer: str) -> str | int:
        """Campaign and ad group ids in each retailer's own style."""
        if retailer == "Amazon":
            return rng.randint(100_000_000_000_000, 999_999_999_999_999)
        if retailer == "Walmart":
            return rng.randint(100_000, 999_999)
        if retailer == "Target":
            return f"RDL-{rng.randint(10_000, 99_999)}"
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def _campaigns(self, rng: random.Random, retailer: str) -> list[_Campaign]:
        """Six campaigns: two always-on ones buying the retailer's main placement(s), four on one placement each."""
        codes = list(_RETAILERS[retailer])
        main = 3 if retailer == "Walmart" else 1  # Walmart's sponsored products span three placement codes
        return [
            _Campaign(
                id=self._new_id(rng, retailer),
                ad_groups=[self._new_id(rng, retailer) for _ in range(rng.randint(2, 3))],
                codes=codes[:main] if index < 2 else [codes[main + (index - 2) % (len(codes) - main)]],
                categories=rng.sample(list(_CATEGORIES), 2),
            )
            for index in range(6)
        ]

    def _pick(self, rng: random.Random, retailer: str) -> tuple[_Campaign, Any, str, str, int]:
        """A campaign, one of its ad groups, an advertised product (sku), a placement code, and the product index."""
        campaign = rng.choice(self.campaigns[retailer])
        index = rng.choice([i for i, product in enumerate(self.products) if product[2] in campaign.categories])
        return campaign, rng.choice(campaign.ad_groups), self.skus[retailer][index], rng.choice(campaign.codes), index

    @staticmethod
    def _metrics(rng: random.Random, placement: str, price: float, scale: float = 1.0) -> dict[str, Any]:
        (low, high), (ctr_low, ctr_high), pricing, (rate_low, rate_high) = _PROFILES[placement]
        impressions = int(rng.randint(low, high) * scale)
        clicks = round(impressions * rng.uniform(ctr_low, ctr_high))
        rate = rng.uniform(rate_low, rate_high)
        cost = clicks * rate if pricing == "cpc" else impressions / 1000 * rate
        conversions = round(clicks * rng.uniform(0.04, 0.14))
        sales = round(conversions * price * rng.uniform(1.0, 1.6), 2)
        return {"impressions": impressions, "clicks": clicks, "cost": cost, "conversions": conversions, "sales": sales}

    @staticmethod
    def _moment(rng: random.Random, zone: str) -> datetime:
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
        return local + timedelta(seconds=rng.randrange(86_400), milliseconds=rng.randrange(1000))

    def _keyword(self, rng: random.Random, index: int) -> str:
        """What a shopper typed: the product, the brand and product, or just the category."""
        title, brand, category, _ = self.products[index]
        return rng.choice([title.removeprefix(brand).strip(), title, category]).lower()

    @staticmethod
    def _uuid(rng: random.Random) -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def alpha_events(self, rng: random.Random) -> list[dict[str, Any]]:
        rows = []
        for _ in range(480):
            campaign, ad_group, sku, code, index = self._pick(rng, "Amazon")
            m = self._metrics(rng, _ALPHA_TYPES[code], self.prices[("Amazon", sku)])
            late = rng.random() < 0.03  # attribution not settled yet: conversions and sales still empty
            rows.append(
                {
                    "event_id": self._uuid(rng),
                    "timestamp": self._moment(rng, "America/Los_Angeles").strftime("%Y-%m-%d %H:%M:%S"),
                    "campaignId": campaign.id,
                    "adGroupId": ad_group,
                    "asin": sku,
                    "adType": code,
                    "keywordText": self._keyword(rng, index) if code == "sp" else None,
                    "impressions": m["impressions"],
                    "clicks": m["clicks"],
                    "cost_micros": round(m["cost"] * 1_000_000),
                    "conv_click_7d": None if late else m["conversions"],
                    "sales_7d": None if late else m["sales"],
                    "currencyCode": "USD",
                }
            )
        return sorted(rows, key=lambda row: (row["timestamp"], row["event_id"]))

    def beta_events(self, rng: random.Random) -> list[dict[str, Any]]:
        rows = []
        for _ in range(420):
            campaign, ad_group, sku, code, _ = self._pick(rng, "Walmart")
            m = self._metrics(rng, _BETA_TYPES[code], self.prices[("Walmart", sku)])
            row = {
                "id": f"wmc_{rng.getrandbits(48):012x}",
                "event_time": round(self._moment(rng, "America/Chicago").timestamp() * 1000),
                "campaign_id": campaign.id,
                "adgroup_id": ad_group,
                "item_id": sku,
                "placement": code,
                "imps": m["impressions"],
                "clks": m["clicks"],
                "spend": f"{m['cost']:.2f}",
                "attributed_orders": m["conversions"],
                "attributed_sales": None if rng.random() < 0.02 else m["sales"],
                "attribution_days": 14,
                "currency": "USD",
            }
            if rng.random() < 0.03:  # some exports drop the ad group of auto campaigns
                del row["adgroup_id"]
            rows.append(row)
        return sorted(rows, key=lambda row: (row["event_time"], row["id"]))

    def gamma_events(self, rng: random.Random) -> list[dict[str, Any]]:
        rows = []
        for offset in range(DAYS):
            day = FIRST_DAY + timedelta(days=offset)
            for _ in range(6):
                campaign, line_item, sku, code, _ = self._pick(rng, "Target")
                m = self._metrics(rng, _GAMMA_TYPES[code], self.prices[("Target", sku)], scale=4.0)
                rows.append(
                    {
                        "Record ID": f"RND-{len(rows) + 1:06d}",
                        "Date": day.strftime("%m/%d/%Y"),
                        "Campaign ID": campaign.id,
                        "Line Item ID": line_item,
                        "TCIN": sku,
                        "Placement": code,
                        "Impressions": m["impressions"],
                        "Clicks": m["clicks"],
                        "Spend": f"{m['cost']:.2f}",
                        "Conversions": m["conversions"],
                        "Attributed Sales": None if rng.random() < 0.02 else f"{m['sales']:.2f}",
                    }
                )
        return rows

    def delta_events(self, rng: random.Random) -> list[dict[str, Any]]:
        rows = []
        for _ in range(320):
            campaign, ad_group, sku, code, _ = self._pick(rng, "Instacart")
            m = self._metrics(rng, _DELTA_TYPES[code], self.prices[("Instacart", sku)])
            row = {
                "event_uuid": self._uuid(rng),
                "occurred_at": self._moment(rng, "America/New_York").replace(microsecond=0).isoformat(),
                "campaign_uuid": campaign.id,
                "ad_group_uuid": ad_group,
                "upc": sku,
                "ad_format": code,
                "impressions": m["impressions"],
                "clicks": m["clicks"],
                "spend_cents": round(m["cost"] * 100),
                "attributed_quantities": m["conversions"],
                "attributed_sales_cents": round(m["sales"] * 100),
                "currency": "USD",
            }
            if rng.random() < 0.03:
                row["ad_group_uuid"] = None
            rows.append(row)
        return sorted(rows, key=lambda row: (row["occurred_at"], row["event_uuid"]))

    def sku_catalog(self, rng: random.Random) -> list[dict[str, Any]]:
        rows = []
        for retailer, skus in self.skus.items():
            for sku, (title, brand, category, _) in zip(skus, self.products, strict=True):
                unbranded = rng.random() < 0.02  # marketplace listings sometimes lack a brand
                rows.append(
                    {
                        "sku": sku,
                        "retailer": retailer,
                        "title": title,
                        "brand": None if unbranded else brand,
                        "category": category,
                        "price": f"{self.prices[(retailer, sku)]:.2f}",
                    }
                )
        return rows

    def uplift_priors(self, rng: random.Random) -> list[dict[str, Any]]:
        base = {
            "sponsored_product": 0.28,
            "search_banner": 0.22,
            "sponsored_display": 0.17,
            "onsite_display": 0.14,
            "offsite_display": 0.10,
            "video": 0.12,
        }
        rows = []
        for retailer, codes in _RETAILERS.items():
            placements = sorted(set(codes.values()), key=list(base).index)
            for placement in placements:
                for category in _CATEGORIES:
                    n_tests = rng.choice([1, 2]) if rng.random() < 0.05 else rng.randint(3, 60)
                    mean = max(0.01, base[placement] + rng.gauss(0, 0.05))
                    half = 1.96 * rng.uniform(0.2, 0.45) / n_tests**0.5
                    rows.append(
                        {
                            "retailer": retailer,
                            "placement_type": placement,
                            "category": category,
                            "roas_uplift_mean": f"{mean:.3f}",
                            "ci_low": f"{mean - half:.3f}" if n_tests >= 3 else None,  # too few tests for an interval
                            "ci_high": f"{mean + half:.3f}" if n_tests >= 3 else None,
                            "n_tests": n_tests,
                        }
                    )
        return rows

    def performance_metrics(self, rng: random.Random) -> list[dict[str, Any]]:
        rows = []
        for offset in range(DAYS):
            day = FIRST_DAY + timedelta(days=offset)
            weekend = 1.15 if day.weekday() >= 5 else 1.0
            for retailer, codes in _RETAILERS.items():
                flighted = self.campaigns[retailer][2 + (offset // 14) % 4]  # two-week bursts beside an always-on one
                for campaign in (self.campaigns[retailer][0], flighted):
                    placement = codes[campaign.codes[0]]
                    m = self._metrics(rng, placement, rng.uniform(5, 30), scale=12.0 * weekend)
                    rows.append(
                        {
                            "date": day.isoformat(),
                            "retailer": retailer,
                            "campaign_id": campaign.id,
                            "placement_type": placement,
                            "impressions": m["impressions"],
                            "clicks": m["clicks"],
                            "spend": f"{m['cost']:.2f}",
                            "conversions": m["conversions"],
                            "sales": None if rng.random() < 0.01 else f"{m['sales']:.2f}",
                        }
                    )
        return rows
