"""The demo retailer adapter against the base model on the held-out Amazon set, through the console's evaluations.

Issue 13's check: an evaluation run of the demo adapter (`amazon_demo`, "retailer mapping (fast)" preset, embedded
SmolLM2-135M-Instruct) on `retailer_amazon_eval` reproduces the held-out figure its training job computed, and the
comparison with the base model's run on the same examples gives the significance of the gap (exact McNemar on
exact match, paired bootstrap on token F1 and ROUGE-L). Without `--registry`, the adapter is trained here through
the job API with "evaluate the base model first" on, so both runs come from the training hooks (base run queued
with the job, adapter run queued when it completes); with `--registry PATH` holding `amazon_demo` (e.g. a console
registry after "Train the demo adapters"), the completed runs its job's hooks made are reused, else two runs are
submitted through `services.run_evaluation`.
Run: `PYTHONPATH=. .venv/bin/python bench/demo_adapter_evaluation.py [--registry PATH] [--adapter amazon_demo]`.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

# On a shared 2-core box, spinning OpenMP threads stall each other; must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TRAINING_PREFIX = "eval_accuracy_"  # the job's held-out accuracy of one RMIS field (training.worker)
LIMIT = 200  # what training's held-out figure scores (training.worker.MAX_EVAL_PROMPTS) and the hooks use


def train(adapter: str) -> tuple[dict[str, float], list[str]]:
    """Train the demo retailer adapter with the base model evaluated first; its metrics and its two run ids."""
    from services.demo import DEMO_ADAPTERS
    from services.evaluation import list_evaluations
    from services.training import job_manager, submit_training_job

    adapter_type, dataset, held_out, preset = DEMO_ADAPTERS["amazon_demo"]
    config = {**preset, "save_steps": 1000, "eval_dataset": held_out, "evaluate_base_first": True}
    started = time.perf_counter()
    job_id = submit_training_job(adapter_type, adapter, dataset, config=config)
    job = job_manager().wait(job_id)
    if job.status != "completed":
        raise SystemExit(f"training {job.status}: {job.error}")
    print(
        f"trained {adapter} in {(time.perf_counter() - started) / 60:.1f} min wall "
        f"({job.final_metrics['train_runtime'] / 60:.1f} min trainer runtime) beside the base model's evaluation"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = {run.config.role: run.id for run in list_evaluations() if run.config.job_id == job_id}
        if len(runs) == 2:
            return job.final_metrics, [runs["base"], runs["adapter"]]
        time.sleep(1)
    raise SystemExit(f"the job's evaluations were not queued: {job_manager().log_text(job_id)[-2000:]}")


def evaluate(adapter: str) -> tuple[dict[str, float], list[str]]:
    """An adapter already in the registry: its training metrics, and the base / adapter runs its job's hooks made
    (completed ones are reused) or new ones on its held-out set."""
    from services.evaluation import list_evaluations, run_evaluation
    from services.training import get_adapter

    record = get_adapter(adapter)
    if not record.eval_dataset:
        raise SystemExit(f"{record.label} was trained without an evaluation dataset: nothing to reproduce.")
    hooked = {
        run.config.role: run.id
        for run in list_evaluations()
        if record.job_id and run.config.job_id == record.job_id and run.status == "completed"
    }
    if {"base", "adapter"} <= set(hooked):
        print(f"reusing the runs of job {record.job_id}")
        return record.metrics, [hooked["base"], hooked["adapter"]]
    held_out = record.eval_dataset["name"]
    return record.metrics, [
        run_evaluation(record.base_model["path"], held_out, limit=LIMIT),
        run_evaluation(f"{record.name}@v{record.version}", held_out, limit=LIMIT),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", type=Path, help="a registry that holds the adapter (default: a new one)")
    parser.add_argument("--adapter", default="amazon_demo")
    args = parser.parse_args()
    os.environ["RMN_LORA_HOME"] = str(args.registry or tempfile.mkdtemp(prefix="rmn-demo-eval-"))

    from services.demo import seed_demo
    from services.evaluation import adapter_before_after, compare_evaluations, format_p, wait_for_evaluation
    from services.training import get_adapter

    started = time.perf_counter()
    if args.registry is None:
        seed_demo()
        training, run_ids = train(args.adapter)
    else:
        training, run_ids = evaluate(args.adapter)
    runs = [wait_for_evaluation(run_id) for run_id in run_ids]
    for run in runs:
        if run.status != "completed":
            raise SystemExit(f"{run.id} {run.status}: {run.error}")
    base, tuned = runs
    print(f"registry {os.environ['RMN_LORA_HOME']}; runs {base.id} (base), {tuned.id} (adapter)")
    print(
        f"held-out set {tuned.config.source.get('name')}: {tuned.total} examples; "
        f"evaluation time base {base.seconds:.0f} s, adapter {tuned.seconds:.0f} s"
    )
    trained_accuracy = training.get("eval_accuracy")
    print(
        f"exact match: base {base.metrics['exact_match']:.1%}, adapter {tuned.metrics['exact_match']:.1%}; "
        f"training-time held-out accuracy {trained_accuracy:.1%} -> "
        + ("reproduced" if abs(tuned.metrics["exact_match"] - trained_accuracy) < 1e-9 else "NOT reproduced")
    )
    print(f"token F1: base {base.metrics['token_f1']:.3f}, adapter {tuned.metrics['token_f1']:.3f}")
    fields = tuned.metrics.get("field_accuracy") or {}
    base_fields = base.metrics.get("field_accuracy") or {}
    print(f"{'RMIS field':<18}{'examples':>9}{'base':>8}{'adapter':>9}{'training':>10}")
    for field, value in sorted(fields.items()):
        at_training = training.get(f"{TRAINING_PREFIX}{field}")
        print(
            f"{field:<18}{value['examples']:>9}{base_fields.get(field, {}).get('accuracy', float('nan')):>8.1%}"
            f"{value['accuracy']:>9.1%}{at_training if at_training is not None else float('nan'):>10.1%}"
        )
    comparison = compare_evaluations(run_ids)
    test = comparison.tests[0]
    print(
        f"McNemar (exact) on exact match: {test.mcnemar.b} examples right only with the adapter, {test.mcnemar.c} "
        f"only with the base; {format_p(test.mcnemar.p_value)} (p = {test.mcnemar.p_value:.3g})"
    )
    for metric, interval in test.bootstrap.items():
        print(
            f"paired bootstrap {metric}: {interval.mean_difference:+.3f}, 95% interval "
            f"[{interval.low:+.3f}, {interval.high:+.3f}]"
        )
    print(f"examples whose outcome changed: {len(comparison.changed)}")
    record = get_adapter(args.adapter)
    summary = adapter_before_after(record.name, record.version)
    print(f"adapter lineage: {summary.text if summary else 'no before/after yet'}")
    print(
        f"cost: base ${base.cost:.4f}, adapter ${tuned.cost:.4f}; whole bench {(time.perf_counter() - started) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
