"""Generators: turn registry data into training datasets, each with a held-out evaluation split.

- retailer SFT: a mapping + its raw rows -> "Map field 'adType' with value 'sp' from Amazon to RMIS" ->
  "placement_type: sponsored_product". The mapping computes every answer, so it is also the judge. A scale field's
  training values are balanced over magnitudes (generated where the source is short); held-out ones are the source's.
- planning SFT: uplift priors -> plans (channel, budget split, expected uplift) over the placements with the best
  measured uplift, in `registry.plans`' fixed format, so `judge_plan` scores an answer against the priors' plan;
  each plan opens with its working line (each placement's check, the funded means and their total), which the judge
  ignores. Generated priors tables add training plans: the source has only 32.
- creative policy DPO: catalog products -> a compliant headline (chosen) and one breaking a rule (rejected).
Everything is deterministic: the same registry gives byte-identical datasets.
"""

import hashlib
import random
from collections.abc import Iterable
from typing import Any

import pandas as pd
from pydantic import BaseModel

from registry.datasets import DatasetRecord, generated_origin, write_records
from registry.errors import ConsoleError
from registry.layout import Registry, open_registry
from registry.mappings import FieldMapping, Mapping, get_mapping, harmonize
from registry.plans import NO_CHANNEL, Allocation, Plan, render_plan, working_line
from registry.raw_sources import load_source
from registry.shapes import DatasetKind, prompt_of

EVAL_SHARE = 0.15
MAX_EXAMPLES_PER_FIELD = 60
# Fields whose answer is computed (a time-zone shift, a unit scale) need many more training examples than copied
# ones: they train on up to this many values. The held-out split stays the one of the first MAX_EXAMPLES_PER_FIELD.
COMPUTED_TRANSFORMS = {"to_utc": 480, "scale": 480}
BUDGETS = (5_000, 20_000, 50_000)
# A plan's split by rank: the funded placements (best mean first) get these percent shares of the budget, a tiered
# split media planners use (the lead placement most, each next one less), so the split follows from the priors' order
# without a division a small model cannot do: shares in proportion to the means trained to 0-24% judged pass.
RANK_SHARES = {1: (100,), 2: (60, 40), 3: (50, 30, 20)}
# Generated planning scenarios (see `generated_planning_examples`): how many, the categories they are for (the
# source's own are skipped) and how often each number of funded placements is drawn (0 is the 'none' plan).
GENERATED_PLANS = 460
GENERATED_CATEGORIES = (
    "Frozen",
    "Dairy",
    "Bakery",
    "Produce",
    "Coffee",
    "Pantry",
    "Electronics",
    "Toys",
    "Kitchen",
    "Garden",
    "Sports",
    "Apparel",
    "Office",
    "Automotive",
    "Books",
    "Outdoor",
)
FUNDED_WEIGHTS = {0: 1, 1: 2, 2: 5, 3: 5}
POLICY = (
    "Creative policy: no superlatives or rankings (best, #1), no competitor names, no ALL-CAPS words or '!!', "
    "state the listed price exactly, no false urgency."
)


class GeneratedPair(BaseModel):
    """The train and held-out evaluation datasets a generator wrote."""

    train: DatasetRecord
    evaluation: DatasetRecord | None = None


class NoExamples(ConsoleError):
    """A generator found nothing to learn from (e.g. a raw source with none of the mapping's columns)."""


def held_out(key: str, share: float = EVAL_SHARE) -> bool:
    """A stable split: the same example lands on the same side on every machine and every run."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def mapping_prompt(source_field: str, value: Any, retailer: str) -> str:
    return f"Map field '{source_field}' with value '{value}' from {retailer} to RMIS."


def mapping_answer(target: str, value: Any) -> str:
    return f"{target}: {value}"


def retailer_examples(
    retailer: str, registry: Registry | None = None, source_id: str | None = None
) -> list[dict[str, Any]]:
    """One example per distinct (field, raw value) of the raw source (the mapping's own by default), answers
    computed by the mapping itself.

    `pinned` examples are never held out: enum-mapped values, which are few and must each be seen in training, and
    the extra examples of computed fields past MAX_EXAMPLES_PER_FIELD (for a scale field, chosen by
    `balanced_magnitudes`, which may add generated values).
    """
    registry = registry or open_registry()
    mapping = get_mapping(retailer, registry=registry)
    rows = load_source(source_id or mapping.source_id, registry=registry)
    result = harmonize(mapping, rows)
    examples: list[dict[str, Any]] = []
    for field in mapping.fields:
        if field.transform == "constant" or field.source not in rows.columns:
            continue
        limit = COMPUTED_TRANSFORMS.get(field.transform, MAX_EXAMPLES_PER_FIELD)
        answers: dict[str, tuple[Any, Any]] = {}  # raw value as text -> (raw value, the mapping's answer)
        for index, raw in rows[field.source].items():
            if not pd.isna(raw) and str(raw) not in answers and not result.failed.at[index, field.target]:
                answers[str(raw)] = (raw, result.frame.at[index, field.target])
        chosen = list(answers.values())[:limit]
        if field.transform == "scale":
            raws = [raw for raw, _ in answers.values()]
            extra = balanced_magnitudes(raws, limit, random.Random(f"{mapping.retailer}:{field.source}"))
            generated = [raw for raw in extra if str(raw) not in answers]
            answers |= _answers(mapping, field, generated)
            chosen = chosen[:MAX_EXAMPLES_PER_FIELD] + [answers[str(raw)] for raw in extra if str(raw) in answers]
        examples += [
            {
                "instruction": mapping_prompt(field.source, raw, mapping.retailer),
                "input": "",
                "output": mapping_answer(field.target, answer),
                "task": field.target,
                "pinned": field.transform == "enum_map" or position >= MAX_EXAMPLES_PER_FIELD,
            }
            for position, (raw, answer) in enumerate(chosen)
        ]
    return examples


def _magnitude(raw: Any) -> tuple[int, str]:
    """A positive whole number's digit count and leading digit: where a scale puts its decimal point, and what a
    small model guesses it from when its examples tie the two together."""
    text = str(raw)
    return (len(text), text[0]) if text.isdigit() and text[0] != "0" else (0, "")


def balanced_magnitudes(raws: list[Any], limit: int, rng: random.Random) -> list[Any]:
    """The training values of a scale field after its first MAX_EXAMPLES_PER_FIELD: up to `limit` in all, spread
    evenly over every (digit count, leading digit) the field's whole numbers span, so that no leading digit tells
    where the decimal point goes. Real costs do: in the demo Amazon source nearly every 9-digit micros value starts
    with 1 (over $100), and a model trained on the values as they came put the point of held-out $10-$19 costs one
    place right (`124.41074` for `12.441074`) on every seed. Digit counts in the source's proportions instead (three
    quarters 8-digit, as are the held-out costs) taught no counting: seed 42 put every fresh 7- and 9-digit cost's
    point after two digits, and missed the held-out 9-digit one (93.1% held out). Cells the source leaves short are
    filled with
    generated values (never one of the source's, drawn from `rng`); a field with other than positive whole numbers
    keeps the source's values in row order."""
    magnitudes = [_magnitude(raw) for raw in raws]
    if (0, "") in magnitudes:
        return raws[MAX_EXAMPLES_PER_FIELD:limit]
    lengths = range(min(magnitudes)[0], max(magnitudes)[0] + 1)
    cells = [(length, digit) for length in lengths for digit in "123456789"]
    quota = {cell: limit // len(cells) + (i < limit % len(cells)) for i, cell in enumerate(cells)}
    for magnitude in magnitudes[:MAX_EXAMPLES_PER_FIELD]:
        quota[magnitude] -= 1
    extra = []
    for raw, magnitude in zip(raws[MAX_EXAMPLES_PER_FIELD:], magnitudes[MAX_EXAMPLES_PER_FIELD:], strict=True):
        if quota[magnitude] > 0:
            quota[magnitude] -= 1
            extra.append(raw)
    taken = {int(raw) for raw in raws}
    for (length, digit), missing in quota.items():
        low = int(digit) * 10 ** (length - 1)
        for _ in range(20 * missing):  # a one-digit cell holds a single value: stop trying rather than loop
            if missing <= 0:
                break
            value = low + rng.randrange(10 ** (length - 1))
            if value not in taken:
                taken.add(value)
                extra.append(value)
                missing -= 1
    return extra


def _answers(mapping: Mapping, field: FieldMapping, raws: list[Any]) -> dict[str, tuple[Any, Any]]:
    """Raw values of `field` (as text) -> the value and the mapping's answer; values the mapping fails on are left
    out."""
    result = harmonize(mapping, pd.DataFrame({field.source: pd.Series(raws, dtype=object)}))
    return {
        str(raw): (raw, result.frame.at[index, field.target])
        for index, raw in enumerate(raws)
        if not result.failed.at[index, field.target]
    }


def planning_examples(registry: Registry | None = None) -> list[dict[str, Any]]:
    """Split a budget over the placements whose uplift interval is above zero, best first.

    The prompt shows the priors the plan is made from (every placement of the retailer and category, best mean
    first), so the plan is derived from what the prompt shows rather than recalled per retailer and category.
    """
    priors = load_source("uplift_priors", registry=registry)
    for column in ("roas_uplift_mean", "ci_low", "ci_high"):
        priors[column] = pd.to_numeric(priors[column]).round(2)  # as the prompt shows them
    return [
        _planning_example(str(retailer), str(category), group, budget)
        for (retailer, category), group in priors.groupby(["retailer", "category"], sort=True)
        for budget in BUDGETS
    ]


def generated_planning_examples(registry: Registry | None = None, count: int = GENERATED_PLANS) -> list[dict[str, Any]]:
    """`count` more training plans from generated priors, for the rule to be learnt from more than the source's 96.

    The source has one priors table per (retailer, category): 32, a plan per budget each, 79 of them to train on. A
    small model shown those a few times each still funds the wrong placements and gets the split wrong, so these
    scenarios add priors drawn like the source's: a retailer's own placements, each mean drawn around that
    placement's mean over the source with its spread (so the splits are as varied as the source's), intervals around
    them, for categories the source does not have (so never a held-out plan's priors). How many placements
    have a lower bound above zero is chosen first, so every budget comes with the 'none' case and 1, 2 or 3 funded
    placements (weighted towards the splits, which need the arithmetic), sometimes with more above zero than the
    budget funds. The answers are made by the same rule as the source's plans. Deterministic; never held out.
    """
    priors = load_source("uplift_priors", registry=registry)
    placements = {
        str(retailer): sorted(group["placement_type"].unique())
        for retailer, group in priors.groupby("retailer", sort=True)
    }
    means = pd.to_numeric(priors["roas_uplift_mean"]).groupby(priors["placement_type"])
    spread = {
        str(name): (float(mean), float(sd)) for name, mean, sd in zip(means.mean().index, means.mean(), means.std())
    }
    categories = [c for c in GENERATED_CATEGORIES if c not in set(priors["category"])]
    rng = random.Random("planning")
    examples = []
    for index in range(count):
        budget = BUDGETS[index % len(BUDGETS)]
        retailer = rng.choice(sorted(placements))
        names = placements[retailer]
        limit = _funded_limit(budget)
        counts = [n for n in range(min(limit, len(names)) + 1)]
        funded = rng.choices(counts, weights=[FUNDED_WEIGHTS[n] for n in counts])[0]
        above_zero = funded if funded < limit else rng.randint(funded, len(names))
        positive = set(rng.sample(names, above_zero))
        rows = []
        for name in names:
            mean = min(40, max(2, round(100 * rng.gauss(*spread[name]))))  # hundredths, as the prompt shows them
            half = rng.randint(1, mean - 1) if name in positive else rng.randint(mean + 1, mean + 30)
            rows.append((name, mean / 100, (mean - half) / 100, (mean + half) / 100))
        table = pd.DataFrame(rows, columns=["placement_type", "roas_uplift_mean", "ci_low", "ci_high"])
        for column in ("roas_uplift_mean", "ci_low", "ci_high"):
            table[column] = table[column].astype("Float64")
        examples.append({**_planning_example(retailer, rng.choice(categories), table, budget), "pinned": True})
    return examples


def _funded_limit(budget: int) -> int:
    """How many placements a budget funds at most: 2 below $10,000, else 3."""
    return 2 if budget < 10_000 else 3


def _planning_example(retailer: str, category: str, priors: pd.DataFrame, budget: int) -> dict[str, Any]:
    """The plan for one priors table (one row a placement, values as the prompt shows them) and budget."""
    shown = priors.sort_values(["roas_uplift_mean", "placement_type"], ascending=[False, True])
    limit = _funded_limit(budget)
    return {
        "instruction": f"Plan a ${budget:,} campaign for {category} on {retailer}. Which placements get the budget?",
        "input": priors_text(shown),
        "output": _plan(shown, budget, limit),
        "task": "planning",
        "retailer": retailer,
    }


def priors_text(priors: pd.DataFrame) -> str:
    """The priors a plan is made from, one placement a line: mean ROAS uplift and its interval."""
    lines = [
        f"{row.placement_type}: {row.roas_uplift_mean:+.2f} ({row.ci_low:+.2f} to {row.ci_high:+.2f})"
        for row in priors.itertuples()
    ]
    return "ROAS uplift priors (mean, interval):\n" + "\n".join(lines)


def _plan(shown: pd.DataFrame, budget: int, limit: int) -> str:
    """The working line (`registry.plans.working_line`), then the plan the priors give: the first `limit` of the
    `shown` placements (best mean first) with a lower bound above zero, their shares by rank (`RANK_SHARES`); the
    expected uplift is the share-weighted mean, and its range runs from the lowest to the highest bound of the funded
    placements' intervals (the mix's uplift lies within it, and both ends are read off the priors the prompt shows)."""
    top = shown[shown["ci_low"] > 0].head(limit)
    candidates = [
        (row.placement_type, float(row.roas_uplift_mean), None if pd.isna(row.ci_low) else float(row.ci_low))
        for row in shown.itertuples()
    ]
    working = working_line(budget, limit, candidates)
    if top.empty:
        return f"{working}\n" + render_plan(
            Plan(channel=NO_CHANNEL, split=[], uplift=None, uplift_low=None, uplift_high=None)
        )
    shares = RANK_SHARES[len(top)]
    split = [
        Allocation(placement=row.placement_type, share=share, dollars=budget * share // 100)
        for row, share in zip(top.itertuples(), shares, strict=True)
    ]
    mean = sum(share * value for share, value in zip(shares, top["roas_uplift_mean"], strict=True)) / 100
    return f"{working}\n" + render_plan(
        Plan(
            channel=split[0].placement,
            split=split,
            uplift=round(mean, 2),
            uplift_low=round(float(top["ci_low"].min()), 2),
            uplift_high=round(float(top["ci_high"].max()), 2),
        )
    )


_VIOLATIONS = {
    "superlative": "The #1 {short}: best {category} deal ever at ${price}",
    "competitor": "{short} at ${price}, cheaper than {competitor}",
    "all_caps": "{short_upper} NOW ${price}!!",
    "wrong_price": "{short}, now only ${wrong_price}",
    "urgency": "Last chance! {short} at ${price} disappears tonight",
}
_COMPLIANT = (
    "{short} by {brand}, ${price} at {retailer}",
    "{brand} {short}: ${price}, delivered by {retailer}",
    "Try {short} from {brand} for ${price}",
)


def policy_examples(registry: Registry | None = None) -> list[dict[str, Any]]:
    """Preference pairs: the same product, a headline that follows the policy and one that breaks one rule."""
    catalog = load_source("sku_catalog", registry=registry)
    rng = random.Random(7)
    retailers = sorted(catalog["retailer"].unique())
    examples = []
    for row in catalog.sort_values(["retailer", "sku"]).itertuples():
        price = f"{float(row.price):.2f}"
        short = str(row.title).removeprefix(f"{row.brand} ")
        values = {
            "short": short,
            "short_upper": short.upper(),
            "brand": row.brand,
            "category": str(row.category).lower(),
            "price": price,
            "wrong_price": f"{float(row.price) * 0.5:.2f}",
            "retailer": row.retailer,
            "competitor": rng.choice([r for r in retailers if r != row.retailer]),
        }
        violation = rng.choice(sorted(_VIOLATIONS))
        examples.append(
            {
                "prompt": f"Write a sponsored product headline for {row.title} by {row.brand}, listed at ${price} "
                f"on {row.retailer}. {POLICY}",
                "chosen": rng.choice(_COMPLIANT).format(**values),
                "rejected": _VIOLATIONS[violation].format(**values),
                "violation": violation,
            }
        )
    return examples


def generate_retailer_dataset(
    retailer: str,
    registry: Registry | None = None,
    *,
    source_id: str | None = None,
    eval_share: float = EVAL_SHARE,
) -> GeneratedPair:
    """The SFT dataset `retailer_<slug>_sft` and its held-out split `retailer_<slug>_eval` (`eval_share` of the
    examples that may be held out) from a raw source, the mapping's own by default."""
    registry = registry or open_registry()
    mapping = get_mapping(retailer, registry=registry)
    if not 0 < eval_share < 1:
        raise NoExamples(f"The held-out share must be between 0 and 1 (exclusive), not {eval_share}.")
    source = source_id or mapping.source_id
    examples = retailer_examples(retailer, registry, source)
    if not examples:
        raise NoExamples(
            f"{source} has no values the {mapping.retailer} mapping can map (none of its source columns, or every "
            "value fails). Pick the mapping's own source or fix the mapping."
        )
    slug = mapping.retailer.lower()
    return _write_split(
        examples,
        f"retailer_{slug}",
        DatasetKind.ALPACA,
        f"Field mappings for {mapping.retailer} -> RMIS from {source}, computed by mapping v{mapping.version}; "
        "scale fields train on every magnitude evenly, with generated values where the source has too few.",
        generated_origin("retailer_sft", f"{mapping.retailer} mapping v{mapping.version}, {source}"),
        registry,
        share=eval_share,
    )


def generate_planning_dataset(registry: Registry | None = None) -> GeneratedPair:
    """The source's plans, split into `task_planning_sft` and its held-out `task_planning_eval`; the generated
    scenarios all go to training."""
    return _write_split(
        planning_examples(registry) + generated_planning_examples(registry),
        "task_planning",
        DatasetKind.ALPACA,
        "Campaign budget plans from uplift priors.",
        generated_origin("planning_sft", "uplift_priors"),
        registry or open_registry(),
    )


def generate_policy_dataset(registry: Registry | None = None) -> GeneratedPair:
    return _write_split(
        policy_examples(registry),
        "policy_creative",
        DatasetKind.DPO,
        "Creative-compliance preference pairs over the SKU catalog.",
        generated_origin("policy_dpo", "sku_catalog"),
        registry or open_registry(),
        with_eval=False,
    )


def _write_split(
    examples: Iterable[dict[str, Any]],
    stem: str,
    kind: DatasetKind,
    description: str,
    origin: str,
    registry: Registry,
    with_eval: bool = True,
    share: float = EVAL_SHARE,
) -> GeneratedPair:
    examples = list(examples)
    suffix = "dpo" if kind is DatasetKind.DPO else "sft"
    if not with_eval:
        return GeneratedPair(
            train=write_records(
                f"{stem}_{suffix}", examples, kind, description=description, origin=origin, registry=registry
            )
        )
    is_eval = [held_out(e["instruction"], share) and not e.get("pinned", False) for e in examples]
    examples = [{k: v for k, v in e.items() if k != "pinned"} for e in examples]
    train = [e for e, evaluated in zip(examples, is_eval, strict=True) if not evaluated]
    evaluation = [
        {
            "prompt": prompt_of(e, DatasetKind.ALPACA),
            "reference": e["output"],
            **{k: v for k, v in e.items() if k not in ("instruction", "input", "output")},
        }
        for e, evaluated in zip(examples, is_eval, strict=True)
        if evaluated
    ]
    return GeneratedPair(
        train=write_records(f"{stem}_{suffix}", train, kind, description=description, origin=origin, registry=registry),
        evaluation=write_records(
            f"{stem}_eval",
            evaluation,
            DatasetKind.EVALUATION,
            description=f"Held-out split. {description}",
            origin=origin,
            registry=registry,
        ),
    )
