"""Mixed-task quality of federations of the two demo adapters, against each adapter alone and the base model.

Issue 4's quality check: on a mixed evaluation set (held-out retailer mapping prompts + held-out planning
prompts) the gated federation of the retailer and planning adapters should score within 5 points of each
adapter on that adapter's own task; additive and the base model are reported beside it. Adapters are trained
here with the embedded SmolLM2-135M-Instruct (or reused from `--registry`, a registry that already holds
`amazon_demo` and `planning_demo`). Every answer goes through the federation code path the console uses.
Mapping answers are judged by exact match (the mapping computes the reference); plans by the plan judge
(`registry.plans`): the pass rate, and beside it the rate of each criterion (channel, split, uplift).
Run: `PYTHONPATH=. .venv/bin/python bench/federation_quality.py [--registry PATH] [--limit 40] [--only additive]`.
"""

import argparse
import os
import tempfile
import time
from itertools import islice
from pathlib import Path

# The demo jobs' automatic evaluations would run beside the next adapter's training and this bench's scoring.
os.environ["RMN_LORA_AUTO_EVALUATE"] = "0"

# Judged accuracy, token F1 and (for plans) each criterion's pass rate of one candidate on one task.
Scores = tuple[float, float, dict[str, float]]


def train_missing() -> None:
    """Train the demo adapters the registry lacks, through the console's own job queue."""
    from services.demo import submit_demo_adapters
    from services.training import job_manager

    for job_id in submit_demo_adapters():
        started = time.perf_counter()
        job = job_manager().wait(job_id)
        if job.status != "completed":
            raise SystemExit(f"training {job.config.adapter_name} ended {job.status}: {job.error}")
        print(
            f"trained {job.config.adapter_name} in {(time.perf_counter() - started) / 60:.1f} min "
            f"(held-out judged accuracy during training {job.final_metrics.get('eval_accuracy', float('nan')):.1%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--limit", type=int, default=40, help="held-out prompts per task")
    parser.add_argument(
        "--only",
        help="comma-separated words: run only the rows whose label holds one (e.g. 'additive' or 'gated,alone'); "
        "the base model and every candidate by default",
    )
    args = parser.parse_args()
    os.environ["RMN_LORA_HOME"] = str(args.registry or tempfile.mkdtemp(prefix="rmn-fed-quality-"))

    from federation.engine import GenerationSettings, InferenceEngine
    from federation.evaluate import evaluate_federation
    from registry.datasets import iter_dataset
    from services.demo import DEMO_ADAPTERS, seed_demo
    from services.federation import compose_federation
    from training.base_models import resolve_base_model

    seed_demo()
    train_missing()
    tasks = {
        name: list(islice(iter_dataset(evaluation), args.limit))
        for name, (_, _, evaluation, _) in DEMO_ADAPTERS.items()
    }
    mixed = [record for records in tasks.values() for record in records]
    names = list(DEMO_ADAPTERS)
    candidates = {
        "amazon_demo alone": compose_federation(adapters=[names[0]]),
        "planning_demo alone": compose_federation(adapters=[names[1]]),
        "gated": compose_federation(retailer_adapter=names[0], task_adapter=names[1], method="gated"),
        "additive (cat, exact)": compose_federation(retailer_adapter=names[0], task_adapter=names[1]),
    }
    base = candidates["gated"].base
    if base.fingerprint != resolve_base_model(None).fingerprint:
        raise SystemExit("the demo adapters were not trained on the embedded base model")
    engine = InferenceEngine(max_models=2)
    settings = GenerationSettings(max_new_tokens=160)  # the longest plan (working line included) is ~130 tokens
    print(
        f"mixed set: {len(mixed)} prompts ({', '.join(f'{len(r)} {n}' for n, r in tasks.items())}); "
        f"router held-out accuracy {candidates['gated'].router.holdout_accuracy:.1%}"
    )
    table: dict[str, dict[str, Scores]] = {}
    rows = [("base model", None), *candidates.items()]
    if args.only:
        rows = [(label, f) for label, f in rows if any(word.strip() in label for word in args.only.split(","))]
    for label, federation in rows:
        scores = {}
        for task, records in tasks.items():
            if federation is None:
                scores[task] = base_scores(engine, base, records, settings)
            else:
                score = evaluate_federation(federation, records, settings, engine)
                scores[task] = (score.accuracy or 0.0, score.token_f1 or 0.0, score.criteria)
        table[label] = scores
        print(f"  {label:<24} " + "  ".join(describe(task, s) for task, s in scores.items()), flush=True)
    if not {"gated", *(f"{task} alone" for task in names)} <= set(table):
        return
    gaps = {task: table[f"{task} alone"][task][0] - table["gated"][task][0] for task in names}
    verdict = "met" if all(gap <= 0.05 for gap in gaps.values()) else "NOT met"
    print(
        "gated vs each adapter on its own task: "
        + ", ".join(f"{t} {g * 100:+.1f} points behind" for t, g in gaps.items())
        + f" (goal: within 5 points: {verdict})"
    )


def describe(task: str, scores: Scores) -> str:
    accuracy, f1, criteria = scores
    if not criteria:
        return f"{task} exact {accuracy:6.1%} F1 {f1:.3f}"
    return f"{task} judged pass {accuracy:6.1%} (" + ", ".join(f"{n} {r:.0%}" for n, r in criteria.items()) + ")"


def base_scores(engine, base, records, settings) -> Scores:
    """Judged accuracy, token F1 and plan criteria of the plain base model (no adapter) on `records`."""
    from federation.engine import Activation
    from training.evaluation import criteria_rates, judge, token_f1

    answers = [engine.generate(base, r["prompt"], settings, Activation()).response for r in records]
    references = [str(r["reference"]).strip() for r in records]
    verdicts = [judge(a, ref) for a, ref in zip(answers, references, strict=True)]
    f1 = sum(token_f1(a, ref) for a, ref in zip(answers, references, strict=True))
    if not records:
        return 0.0, 0.0, {}
    return (
        sum(v.passed for v in verdicts) / len(records),
        f1 / len(records),
        criteria_rates([v.criteria for v in verdicts]),
    )


if __name__ == "__main__":
    main()
