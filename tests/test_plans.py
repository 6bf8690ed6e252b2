"""The planning judge on hand-written plans (right, nearly right, wrong), and the generator's plans under it."""

import pytest

from registry import datasets as library
from registry.generators import GENERATED_PLANS, planning_examples
from registry.plans import judge_plan, parse_plan, working_line
from services.demo import seed_demo
from training.evaluation import accuracy_by_task, criteria_rates, judge

REFERENCE = (
    "Channel: onsite_display\n"
    "Budget: onsite_display 50% ($10,000), sponsored_display 35% ($7,000), video 15% ($3,000)\n"
    "Expected ROAS uplift: +0.18 (+0.09 to +0.28)"
)
ALL = {"channel": True, "split": True, "uplift": True}


@pytest.mark.parametrize(
    "prediction",
    [
        REFERENCE,
        # the same plan with other spacing, case, a trailing full stop and the placements in another order
        "channel: onsite_display.\nBUDGET: video 15% ($3,000), onsite_display 50% ($10,000), "
        "sponsored_display 35% ($7,000)\nexpected roas uplift: 0.18 (0.09 to 0.28)\n",
        # shares within 5 points, a narrower range that still holds the stated uplift, inside the priors' interval
        "Channel: onsite_display\nBudget: onsite_display 55% ($11,000), sponsored_display 30% ($6,000), "
        "video 15% ($3,000)\nExpected ROAS uplift: +0.19 (+0.12 to +0.25)",
    ],
)
def test_right_plans_pass(prediction):
    verdict = judge_plan(prediction, REFERENCE)
    assert verdict.passed and verdict.criteria() == ALL


@pytest.mark.parametrize(
    ("prediction", "failed"),
    [
        # the second-best placement recommended; split and uplift right
        (REFERENCE.replace("Channel: onsite_display", "Channel: sponsored_display"), {"channel"}),
        # one share 10 points off (and the dollars with it)
        (
            REFERENCE.replace(
                "50% ($10,000), sponsored_display 35% ($7,000)", "60% ($12,000), sponsored_display 25% ($5,000)"
            ),
            {"split"},
        ),
        # shares right but a dollar amount a digit off
        (REFERENCE.replace("($7,000)", "($70,000)"), {"split"}),
        # a placement missing: shares no longer cover the plan
        (REFERENCE.replace(", video 15% ($3,000)", ""), {"split"}),
        # a placement the priors do not fund
        (REFERENCE.replace("video 15%", "search 15%"), {"split"}),
        # shares that do not add up to 100%
        (REFERENCE.replace("video 15%", "video 25%"), {"split"}),
        # an uplift range wider than the priors' interval
        (REFERENCE.replace("(+0.09 to +0.28)", "(+0.05 to +0.28)"), {"uplift"}),
        # a stated uplift outside its own range
        (REFERENCE.replace("+0.18 (", "+0.30 ("), {"uplift"}),
        # the decimal point one place off
        (REFERENCE.replace("+0.18 (+0.09 to +0.28)", "+1.8 (+0.9 to +2.8)"), {"uplift"}),
    ],
)
def test_nearly_right_plans_fail_the_criterion_they_break(prediction, failed):
    verdict = judge_plan(prediction, REFERENCE)
    assert not verdict.passed and verdict.parsed
    assert {name for name, ok in verdict.criteria().items() if not ok} == failed


@pytest.mark.parametrize(
    "prediction",
    [
        "",
        "Put most of the budget on onsite display and some on video.",
        # the old free-text answer: a plan a reader can follow but no checkable uplift line
        "Allocate: onsite_display 50% ($10,000), sponsored_display 35% ($7,000), video 15% ($3,000). "
        "Basis: ROAS uplift priors onsite_display +0.23, sponsored_display +0.16, video +0.08.",
        "Channel: onsite_display\nBudget: onsite_display 50% ($10,000)",  # cut off before the uplift line
    ],
)
def test_wrong_or_unreadable_plans_fail_every_criterion(prediction):
    verdict = judge_plan(prediction, REFERENCE)
    assert not verdict.passed and not verdict.parsed
    assert not any(verdict.criteria().values())


WORKING = (
    "$20,000, top 3 with a lower bound above 0: sponsored_product -0.17 no, onsite_display +0.14 yes +0.23, "
    "sponsored_display +0.04 yes +0.16, video +0.02 yes +0.08 (funded: 3)"
)


@pytest.mark.parametrize(
    ("prediction", "failed"),
    [
        # the generator's answer: the working line, then the plan
        (f"{WORKING}\n{REFERENCE}", set()),
        # a working line with a wrong count: the working is not judged, the plan is right
        (f"{WORKING.replace('(funded: 3)', '(funded: 2)')}\n{REFERENCE}", set()),
        # a right working line but a split that does not follow it
        (f"{WORKING}\n{REFERENCE.replace('video 15%', 'video 25%')}", {"split"}),
        # the working line ends the answer: no plan to judge
        (WORKING, {"channel", "split", "uplift"}),
    ],
)
def test_the_working_line_is_not_judged_only_the_plan_after_it(prediction, failed):
    verdict = judge_plan(prediction, f"{WORKING}\n{REFERENCE}")
    assert {name for name, ok in verdict.criteria().items() if not ok} == failed
    assert verdict.criteria() == judge_plan(prediction, REFERENCE).criteria()


def test_working_line_checks_each_placement_in_order_until_the_budget_funds_enough():
    candidates = [
        ("sponsored_product", 0.26, -0.17),
        ("onsite_display", 0.23, 0.14),
        ("sponsored_display", 0.16, 0.04),
        ("video", 0.08, 0.02),
        ("search_banner", 0.05, 0.01),
    ]
    assert working_line(20_000, 3, candidates) == WORKING
    assert working_line(5_000, 2, candidates) == (
        "$5,000, top 2 with a lower bound above 0: sponsored_product -0.17 no, onsite_display +0.14 yes +0.23, "
        "sponsored_display +0.04 yes +0.16 (funded: 2)"
    )
    assert working_line(5_000, 2, [("video", 0.10, None), ("search_banner", 0.05, 0.0)]) == (
        "$5,000, top 2 with a lower bound above 0: video <NA> no, search_banner +0.00 no (funded: none)"
    )
    assert parse_plan(f"{working_line(5_000, 2, candidates)}\n{REFERENCE}") == parse_plan(REFERENCE)


def test_a_plan_with_no_funded_placement_is_judged_too():
    reference = (
        "Channel: none\nBudget: none (no placement has a measured uplift above zero: run a test first)\n"
        "Expected ROAS uplift: unknown"
    )
    assert judge_plan(reference, reference).passed
    assert not judge_plan(REFERENCE, reference).passed


def test_judge_picks_the_plan_judge_for_plans_and_exact_match_otherwise():
    near = REFERENCE.replace("55%", "50%").replace("(+0.09 to +0.28)", "(+0.10 to +0.27)")
    assert judge(near, REFERENCE).passed and judge(near, REFERENCE).criteria == ALL
    assert judge("cost: 1.25", "cost: 1.25").passed and judge("cost: 1.25", "cost: 1.25").criteria == {}
    assert not judge("cost: 12.5", "cost: 1.25").passed
    verdicts = [judge(REFERENCE, REFERENCE), judge("Channel: video", REFERENCE), judge("x", "y")]
    assert criteria_rates([v.criteria for v in verdicts]) == {"channel": 0.5, "split": 0.5, "uplift": 0.5}
    records = [{"task": "cost"}, {"task": "cost"}, {"task": "ts"}]
    assert accuracy_by_task(records, verdicts) == {"cost": 0.5, "ts": 0.0}
    assert accuracy_by_task([{"task": "planning"}] * 3, verdicts) == {}


def test_generated_plans_pass_their_judge_and_the_held_out_split_keeps_its_size(registry):
    seed_demo(registry)
    examples = planning_examples()
    assert len(examples) == 96
    for example in examples:
        plan = parse_plan(example["output"])
        assert plan is not None and plan.split and plan.channel == plan.split[0].placement
        assert plan.uplift_low <= plan.uplift <= plan.uplift_high
        assert judge_plan(example["output"], example["output"]).passed
    held_out = list(library.iter_dataset("task_planning_eval"))
    assert len(held_out) == 17 and library.get_dataset("task_planning_sft").rows == 79 + GENERATED_PLANS
    assert all(judge(r["reference"], r["reference"]).criteria == ALL for r in held_out)


def test_planning_adapter_trains_with_its_preset_and_is_judged_on_the_held_out_plans(registry, tmp_path):
    """A short run of the "campaign planning" preset on a tiny model: the held-out figure is the judged pass rate."""
    from tiny_model import build_tiny_model

    from services.training import job_manager, submit_training_job
    from training.adapters import get_adapter
    from training.jobs import JobStatus

    seed_demo(registry)
    corpus = [f"{e['instruction']} {e['output']}" for e in planning_examples()[:24]]
    base = build_tiny_model(tmp_path / "tiny-planner", corpus=corpus)
    job_id = submit_training_job(
        "task",
        "planner_tiny",
        "task_planning_sft",
        preset="campaign planning",
        config={"epochs": None, "max_steps": 4, "eval_dataset": "task_planning_eval", "save_steps": 100},
        base_model=str(base),
    )
    job = job_manager().wait(job_id, timeout=600)
    assert job.status == JobStatus.COMPLETED, job.error
    config = job.config
    assert (config.learning_rate, config.loraplus_lr_ratio, config.batch_size, config.max_seq_length) == (
        5e-4,
        12,
        8,
        384,
    )
    metrics = get_adapter("planner_tiny").metrics
    assert metrics["eval_prompts"] == 17
    rates = [metrics[f"eval_plan_{name}"] for name in ("channel", "split", "uplift")]
    assert all(0.0 <= rate <= 1.0 for rate in rates) and metrics["eval_accuracy"] <= min(rates)
    assert not any(key.startswith("eval_accuracy_") for key in metrics)  # one task: no per-field breakdown
    log = job_manager().log_text(job_id)
    assert "Held-out generation on 17 prompts: judged pass rate" in log and "channel" in log
