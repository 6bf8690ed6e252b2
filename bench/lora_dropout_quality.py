"""LoRA dropout 0.05 against 0: held-out quality of the same jobs, seed by seed, and what the dropout costs in speed.

The presets that make several passes train with lora_dropout 0.05; the retailer and planning presets train with 0.
This trains each preset named below on its demo dataset with both values and the same seeds, through the job API
on the embedded SmolLM2-135M-Instruct, and compares on the held-out set: the judged accuracy (exact match for
mappings; channel, split and uplift all right for plans), token F1 and eval loss. "quick demo" is a 30-step run on
the Amazon mappings; "campaign planning" is one pass over 539 plans (it was 6 passes over 79, the overfitting-prone
case dropout is for, when this bench was written).
Speed here is the job's training time and moves with the machine's load: `bench/training_throughput.py --ab dropout`
times it properly. Run: `PYTHONPATH=. .venv/bin/python bench/lora_dropout_quality.py [--presets "quick demo,campaign
planning"] [--seeds 42,7] [--dropouts 0,0.05]`.
"""

import argparse
import os
import statistics
import tempfile

# On a shared 2-core box, spinning OpenMP threads stall each other; must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A completed job with an evaluation dataset would queue its evaluations beside the next job's training.
os.environ["RMN_LORA_AUTO_EVALUATE"] = "0"

from services.demo import seed_demo
from services.training import job_manager, submit_training_job

# Preset -> (adapter type, training set, held-out set): the demo's datasets for the task the preset is for.
TASKS = {
    "quick demo": ("retailer", "retailer_amazon_sft", "retailer_amazon_eval"),
    "campaign planning": ("task", "task_planning_sft", "task_planning_eval"),
    "retailer mapping (fast)": ("retailer", "retailer_amazon_sft", "retailer_amazon_eval"),
}


def train(preset: str, seed: int, dropout: float) -> dict[str, float]:
    adapter_type, dataset, held_out = TASKS[preset]
    config = {"seed": seed, "lora_dropout": dropout, "eval_dataset": held_out, "save_steps": 100_000}
    name = f"dropout_{preset.split()[0]}_{seed}_{str(dropout).replace('.', '_')}"
    job = job_manager().wait(submit_training_job(adapter_type, name, dataset, config=config, preset=preset))
    if job.status != "completed":
        raise SystemExit(f"{name}: training {job.status}: {job.error}")
    metrics = job.final_metrics
    return {
        "accuracy": metrics["eval_accuracy"],
        "token_f1": metrics["eval_token_f1"],
        "eval_loss": metrics["eval_loss"],
        "train_seconds": metrics["train_runtime"],
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="quick demo,campaign planning", help=f"comma-separated, of: {list(TASKS)}")
    parser.add_argument("--seeds", default="42,7")
    parser.add_argument("--dropouts", default="0,0.05", help="two values: the reference first")
    args = parser.parse_args()
    presets = [preset.strip() for preset in args.presets.split(",")]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    reference, other = (float(value) for value in args.dropouts.split(","))
    os.environ["RMN_LORA_HOME"] = tempfile.mkdtemp(prefix="rmn-dropout-")
    seed_demo()
    for preset in presets:
        print(f"{preset!r} on {TASKS[preset][1]}, held out {TASKS[preset][2]}:", flush=True)
        runs: dict[float, list[dict[str, float]]] = {reference: [], other: []}
        for seed in seeds:
            for dropout in (reference, other):
                run = train(preset, seed, dropout)
                runs[dropout].append(run)
                print(
                    f"  seed {seed:>3} dropout {dropout:<5} held-out accuracy {run['accuracy']:6.1%} token F1 "
                    f"{run['token_f1']:.3f} eval loss {run['eval_loss']:.4f} trained in {run['train_seconds']:5.0f} s "
                    f"(load average {run['load']:.2f})",
                    flush=True,
                )
        pairs = list(zip(runs[reference], runs[other], strict=True))
        gap = {key: statistics.mean(b[key] - a[key] for a, b in pairs) for key in ("accuracy", "token_f1", "eval_loss")}
        time_ratio = statistics.median(b["train_seconds"] / a["train_seconds"] for a, b in pairs)
        print(
            f"  dropout {other} - dropout {reference}, mean over {len(seeds)} seeds: accuracy "
            f"{gap['accuracy'] * 100:+.1f} points, token F1 {gap['token_f1']:+.3f}, eval loss "
            f"{gap['eval_loss']:+.4f}; training time {time_ratio:.2f}x (median; same steps and data, under whatever "
            "load there was)",
            flush=True,
        )


if __name__ == "__main__":
    main()
