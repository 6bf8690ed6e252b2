"""Generators and the demo seed: deterministic, split without leaks, and answers that the mapping computes."""

import random
import re
from collections import Counter

import pandas as pd

from registry import datasets as library
from registry.generators import (
    GENERATED_PLANS,
    MAX_EXAMPLES_PER_FIELD,
    balanced_magnitudes,
    generated_planning_examples,
    held_out,
    planning_examples,
    policy_examples,
    retailer_examples,
)
from registry.mappings import get_mapping, harmonize
from registry.plans import parse_plan
from registry.raw_sources import generate_raw_sources, load_source
from registry.shapes import DatasetKind, prompt_of
from services.demo import seed_demo

SEED_000_NAMES = {"retailer_amazon_sft", "retailer_walmart_sft", "task_planning_sft", "policy_creative_dpo"}


def test_demo_seed_is_idempotent_and_makes_seed_000_datasets(registry):
    names = seed_demo(registry)
    assert SEED_000_NAMES <= set(names)
    assert {"retailer_amazon_eval", "retailer_walmart_eval", "task_planning_eval"} <= set(names)
    hashes = {r.name: (r.version, r.content_hash) for r in library.list_datasets()}
    assert all(library.get_dataset(n).quality_score >= 90 for n in SEED_000_NAMES)
    seed_demo(registry)
    assert {r.name: (r.version, r.content_hash) for r in library.list_datasets()} == hashes


def test_retailer_answers_are_what_the_mapping_computes(registry):
    seed_demo(registry)
    mapping = get_mapping("Amazon")
    rows = load_source(mapping.source_id)
    result = harmonize(mapping, rows)
    by_field = {f.source: f for f in mapping.fields if f.source}
    examples = retailer_examples("Amazon")
    assert len({e["task"] for e in examples}) >= 8
    for example in examples:
        source, raw = re.match(
            r"Map field '(.+)' with value '(.*)' from Amazon to RMIS\.", example["instruction"]
        ).groups()
        field = by_field[source]
        matches = rows.index[rows[source].astype(str) == raw]
        if len(matches):
            answer = result.frame.at[matches[0], field.target]
        else:  # a generated value of a scale field: the mapping computes its answer all the same
            assert field.transform == "scale"
            answer = harmonize(mapping, pd.DataFrame({source: [int(raw)]})).frame.at[0, field.target]
        assert example["output"] == f"{field.target}: {answer}"
    assert any(e["output"] == "placement_type: sponsored_product" for e in examples)


def test_held_out_split_has_no_leaks_and_keeps_enum_values_in_training(registry):
    seed_demo(registry)
    train = {r["instruction"] for r in library.iter_dataset("retailer_amazon_sft")}
    held_out = [r["prompt"] for r in library.iter_dataset("retailer_amazon_eval")]
    assert held_out and not train & set(held_out)
    enum_sources = {f.source for f in get_mapping("Amazon").fields if f.transform == "enum_map"}
    assert not [p for p in held_out if any(f"field '{s}'" in p for s in enum_sources)]
    assert {"placement_type: sponsored_product", "placement_type: video"} <= {
        r["output"] for r in library.iter_dataset("retailer_amazon_sft")
    }


def test_computed_fields_train_on_more_examples_and_the_extra_ones_are_never_held_out(registry):
    seed_demo(registry)
    examples = retailer_examples("Amazon")
    counts = Counter(e["task"] for e in examples)
    assert counts["ts"] > MAX_EXAMPLES_PER_FIELD and counts["cost"] > MAX_EXAMPLES_PER_FIELD  # to_utc, scale
    assert counts["event_id"] == MAX_EXAMPLES_PER_FIELD  # copied
    extra = [e for e in examples if e["task"] == "ts"][MAX_EXAMPLES_PER_FIELD:]
    assert extra and all(e["pinned"] for e in extra)
    held_out = {r["prompt"] for r in library.iter_dataset("retailer_amazon_eval")}
    assert {r["prompt"] for r in library.iter_dataset("retailer_amazon_eval") if r["task"] == "ts"}
    assert not held_out & {e["instruction"] for e in extra}


def _cells(values) -> Counter:
    return Counter((len(str(value)), str(value)[0]) for value in values)


def test_balanced_magnitudes_untie_the_leading_digit_from_the_decimal_point():
    # As in the demo costs: the first values are two-digit dollars, the 9-digit micros all start with 1.
    raws = [digit * 10_000_000 + 7919 * i for digit in range(1, 7) for i in range(MAX_EXAMPLES_PER_FIELD // 6)]
    raws += [100_000_000 + 104_729 * i for i in range(300)] + [3_000_000 + i for i in range(10)]
    extra = balanced_magnitudes(raws, 540, random.Random(1))
    cells = _cells(raws[:MAX_EXAMPLES_PER_FIELD] + extra)
    assert set(cells) == {(length, digit) for length in (7, 8, 9) for digit in "123456789"}
    assert set(cells.values()) == {20}  # 540 over 27 cells: no digit count outweighs another after any digit
    assert not set(extra) & set(raws[:MAX_EXAMPLES_PER_FIELD]) and len(set(extra)) == len(extra)
    assert [raw for raw in extra if raw in raws] == [raw for raw in raws[MAX_EXAMPLES_PER_FIELD:] if raw in extra]
    assert sum(1 for raw in extra if raw in raws) == 20 + 10  # the source's own first: 20 of (9, '1'), all of (7, '3')
    assert extra == balanced_magnitudes(raws, 540, random.Random(1))


def test_balanced_magnitudes_keep_a_field_of_other_numbers_in_row_order():
    raws = [12.5 * i for i in range(1, 200)]
    assert balanced_magnitudes(raws, 120, random.Random(1)) == raws[MAX_EXAMPLES_PER_FIELD:120]


def test_demo_cost_trains_on_every_magnitude_after_every_digit_and_holds_out_only_source_values(registry):
    seed_demo(registry)
    costs = [
        int(re.search(r"value '(\d+)'", r["instruction"]).group(1))
        for r in library.iter_dataset("retailer_amazon_sft")
        if r["task"] == "cost"
    ]
    cells = _cells(costs)
    assert len(cells) == 27 and max(cells.values()) - min(cells.values()) <= 4
    source = set(load_source("retailer_alpha_events")["cost_micros"].dropna().astype("int64"))
    held_out = [r for r in library.iter_dataset("retailer_amazon_eval") if r["task"] == "cost"]
    assert held_out and all(int(re.search(r"value '(\d+)'", r["prompt"]).group(1)) in source for r in held_out)
    assert sum(1 for cost in costs if cost not in source) > 100  # generated where the source is short


def test_planning_splits_budget_over_placements_with_positive_uplift(registry):

    generate_raw_sources(registry)
    priors = load_source("uplift_priors")
    priors["ci_low"] = pd.to_numeric(priors["ci_low"])
    positive = set(
        priors.loc[priors["ci_low"] > 0, ["retailer", "category", "placement_type"]].itertuples(index=False, name=None)
    )
    examples = planning_examples()
    assert len(examples) == priors.groupby(["retailer", "category"]).ngroups * 3
    for example in examples:
        retailer, category = re.search(r"campaign for (.+) on (\w+)\.", example["instruction"]).group(2, 1)
        shares = re.findall(r"(\w+) (\d+)% \(\$", example["output"])
        if shares:
            assert sum(int(share) for _, share in shares) == 100
            assert all((retailer, category, placement) in positive for placement, _ in shares)


PRIOR_LINE = re.compile(r"^(\w+): ([+-]\d\.\d\d) \(([+-]\d\.\d\d|<NA>) to ([+-]\d\.\d\d|<NA>)\)$", re.M)


def assert_derived_from_its_priors(example: dict) -> int:
    """The prompt lists the priors (best mean first); the working line restates the budget and how many placements it
    funds (2 below $10,000, else 3), checks each placement in the prompt's order by its lower bound until that many
    are funded, and says how many, which sets the split by rank; the channel is the first funded, and both ends of
    the uplift range are read off their lines. Returns how many placements are funded."""
    shown = [
        (name, float(mean), None if low == "<NA>" else float(low), None if high == "<NA>" else float(high))
        for name, mean, low, high in PRIOR_LINE.findall(example["input"])
    ]
    assert shown and [mean for _, mean, _, _ in shown] == sorted((mean for _, mean, _, _ in shown), reverse=True)
    plan = parse_plan(example["output"])
    budget = re.search(r"^Plan a (\$[\d,]+) campaign", example["instruction"]).group(1)
    limit = 2 if budget == "$5,000" else 3  # the budgets below $10,000 fund at most 2
    funded, checks = [], []
    for name, mean, low, high in shown:
        if len(funded) == limit:
            break
        above = low is not None and low > 0
        funded += [(name, mean, low, high)] if above else []
        checks.append((name, "<NA>" if low is None else f"{low:+.2f}", f"{mean:+.2f}" if above else ""))
    working, _ = example["output"].split("\n", 1)
    assert working.startswith(f"{budget}, top {limit} with a lower bound above 0: ")
    assert re.findall(r"(\w+) ([+-]\d\.\d\d|<NA>) (?:yes ([+-]\d\.\d\d)|no)", working) == checks
    if not funded:
        assert plan.channel == "none" and working.endswith("(funded: none)")
        return 0
    assert working.endswith(f"(funded: {len(funded)})")
    assert plan.channel == funded[0][0] and [a.placement for a in plan.split] == [row[0] for row in funded]
    assert [a.share for a in plan.split] == {1: [100], 2: [60, 40], 3: [50, 30, 20]}[len(funded)]
    assert [a.dollars for a in plan.split] == [plan.budget * a.share / 100 for a in plan.split]
    assert plan.budget == int(budget[1:].replace(",", ""))
    assert plan.uplift_low == min(row[2] for row in funded) and plan.uplift_high == max(row[3] for row in funded)
    assert min(row[1] for row in funded) <= plan.uplift <= max(row[1] for row in funded)
    return len(funded)


def test_plans_are_derived_from_the_priors_their_prompt_shows(registry):
    generate_raw_sources(registry)
    examples = planning_examples()
    for example in examples:
        assert_derived_from_its_priors(example)
    assert sum(parse_plan(e["output"]).channel == "none" for e in examples) < len(examples) // 4


def test_generated_plans_follow_the_rule_for_every_budget_and_never_a_source_group(registry):
    """The generated scenarios: the source's retailers with their own placements, categories the source lacks (so
    never a held-out plan's priors), every budget with the 'none' plan and 1, 2 and 3 funded placements, the filter
    and the cut both exercised, and each answer what the rule makes of the priors its prompt shows."""
    generate_raw_sources(registry)
    priors = load_source("uplift_priors")
    placements = {r: set(g["placement_type"]) for r, g in priors.groupby("retailer")}
    generated = generated_planning_examples()
    assert len(generated) == GENERATED_PLANS and all(e["pinned"] for e in generated)
    assert generated == generated_planning_examples()  # deterministic
    kinds, skipped_best, cut = set(), 0, 0
    for example in generated:
        budget, category, retailer = re.search(
            r"^Plan a \$([\d,]+) campaign for (.+) on (\w+)\.", example["instruction"]
        ).groups()
        assert category not in set(priors["category"])
        shown = PRIOR_LINE.findall(example["input"])
        assert {name for name, *_ in shown} == placements[retailer]
        kinds.add((budget, assert_derived_from_its_priors(example)))
        above_zero = [low != "<NA>" and float(low) > 0 for _, _, low, _ in shown]
        skipped_best += not above_zero[0]
        cut += sum(above_zero) > (2 if budget == "5,000" else 3)
    assert kinds == {("5,000", n) for n in range(3)} | {(b, n) for b in ("20,000", "50,000") for n in range(4)}
    assert skipped_best > len(generated) // 10 and cut > len(generated) // 20


def test_generated_plans_all_train_and_the_held_out_plans_are_the_sources(registry):
    seed_demo(registry)
    source = planning_examples()
    expected = [e for e in source if held_out(e["instruction"])]
    evaluation = list(library.iter_dataset("task_planning_eval"))
    assert [(r["prompt"], r["reference"]) for r in evaluation] == [
        (prompt_of(e, DatasetKind.ALPACA), e["output"]) for e in expected
    ]
    assert library.get_dataset("task_planning_sft").rows == len(source) - len(expected) + GENERATED_PLANS


def test_held_out_plans_are_prompted_with_their_priors(registry):
    seed_demo(registry)
    train = {r["instruction"] for r in library.iter_dataset("task_planning_sft")}
    held_out = list(library.iter_dataset("task_planning_eval"))
    assert held_out and all("\n\nROAS uplift priors (mean, interval):\n" in r["prompt"] for r in held_out)
    assert not train & {r["prompt"].split("\n\n")[0] for r in held_out}


def test_policy_pairs_break_exactly_the_rule_they_name(registry):
    generate_raw_sources(registry)
    retailers = {"Amazon", "Walmart", "Target", "Instacart"}
    for pair in policy_examples():
        price = re.search(r"listed at (\$[\d.]+)", pair["prompt"]).group(1)
        assert price in pair["chosen"] and pair["chosen"] != pair["rejected"]
        assert "!" not in pair["chosen"] and not re.search(r"\b(best|#1)\b", pair["chosen"], re.I)
        rule = pair["violation"]
        if rule == "competitor":
            own = re.search(r" on (\w+)\. ", pair["prompt"]).group(1)
            assert any(r in pair["rejected"] for r in retailers - {own})
        if rule == "wrong_price":
            assert price not in pair["rejected"]
        if rule == "all_caps":
            assert "!!" in pair["rejected"]


def test_a_generated_dataset_says_which_adapter_type_it_trains_and_an_upload_does_not(registry, peer_data, tmp_path):
    """The training form opened with adapter type "retailer" beside task_planning_sft, and kept, trained a "retailer"
    adapter on planning data: the form had no way to know what a dataset is for. Its generator knows."""
    seed_demo(registry)
    purposes = {record.name: record.purpose for record in library.list_datasets()}
    assert purposes["retailer_amazon_sft"] == purposes["retailer_walmart_eval"] == "retailer"
    assert purposes["task_planning_sft"] == purposes["task_planning_eval"] == "task"
    assert purposes["policy_creative_dpo"] == "policy"
    peer = tmp_path / "task_planning_copy.json"  # named like a generated set, but an upload says nothing of its use
    peer.write_text((peer_data / "alpaca_en_demo.json").read_text())
    assert library.import_dataset("task_planning_copy", peer).purpose is None
