"""Judged pass rate of a planning adapter trained on the demo plans with the "campaign planning" preset.

The quality check: with the embedded SmolLM2-135M-Instruct and at most 10 minutes of training, the adapter should
pass at least 80% of the held-out plans under `registry.plans.judge_plan` (channel, split and uplift all right).
Training goes through the job API, which judges the held-out plans itself; this prints each seed's training
minutes, pass rate, each criterion's rate and the logged misses beside their references, so what fails (which
placements are funded, the split, the uplift) can be read. Run: `PYTHONPATH=. .venv/bin/python
bench/planning_adapter_quality.py [--seeds 42] [--set max_steps=40 --set max_seq_length=448 ...]`; `--set` overrides
one preset setting (checked by the job config like any form's value).
"""

import argparse
import os
import tempfile

# On a shared 2-core box, spinning OpenMP threads stall each other; must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A completed job with an evaluation dataset would queue its evaluations beside the next seed's training.
os.environ["RMN_LORA_AUTO_EVALUATE"] = "0"

from bench.retailer_adapter_quality import override
from services.demo import seed_demo
from services.training import job_manager, submit_training_job
from training.config import PRESETS
from training.worker import HELD_OUT_MISS

PRESET = "campaign planning"
CRITERION_PREFIX = "eval_plan_"  # the job's pass rate of one plan criterion (training.worker)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds, e.g. 42,7: one run each")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one preset setting, e.g. max_steps=40, max_seq_length=448 (repeatable)",
    )
    args = parser.parse_args()
    overrides = dict(override(item) for item in args.set)
    os.environ["RMN_LORA_HOME"] = tempfile.mkdtemp(prefix="rmn-planning-")
    seed_demo()
    settings = {**PRESETS[PRESET], **overrides, "eval_dataset": "task_planning_eval", "save_steps": 1000}
    shown = {k: v for k, v in settings.items() if k not in ("eval_dataset", "save_steps") and v is not None}
    print(f"preset {PRESET!r}: {shown}", flush=True)
    planned = f"{settings['max_steps']} steps" if settings.get("max_steps") else f"{settings['epochs']} passes"
    rates = []
    for seed in (int(seed) for seed in args.seeds.split(",")):
        job = job_manager().wait(
            submit_training_job(
                "task", f"planning_quality_{seed}", "task_planning_sft", config={**settings, "seed": seed}
            )
        )
        if job.status != "completed":
            raise SystemExit(f"training {job.status}: {job.error}")
        metrics = job.final_metrics
        rates.append(metrics["eval_accuracy"])
        criteria = ", ".join(
            f"{key.removeprefix(CRITERION_PREFIX)} {value:.1%}"
            for key, value in sorted(metrics.items())
            if key.startswith(CRITERION_PREFIX)
        )
        print(
            f"seed {seed}: {planned} trained in "
            f"{metrics['train_runtime'] / 60:.1f} min (goal <= 10), judged pass {metrics['eval_accuracy']:.1%} of "
            f"{metrics['eval_prompts']:.0f} held-out plans (goal >= 80%); {criteria}; token F1 "
            f"{metrics['eval_token_f1']:.3f}; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        for line in job_manager().log_text(job.id).splitlines():
            if HELD_OUT_MISS in line:
                print(f"  seed {seed} answered {line.split(HELD_OUT_MISS, 1)[1].strip()}", flush=True)
    if len(rates) > 1:
        print(f"over {len(rates)} seeds: judged pass min {min(rates):.1%}, max {max(rates):.1%}")


if __name__ == "__main__":
    main()
