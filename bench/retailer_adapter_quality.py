"""Held-out mapping accuracy of a retailer adapter trained on the demo Amazon dataset, against the base model.

The quality check: with the embedded SmolLM2-135M-Instruct and at most 10 minutes of training, the adapter should
answer at least 95% of the held-out mapping prompts exactly as the mapping computes them, on every seed.
Training uses the "retailer mapping (fast)" preset through the job API; the base model is scored on the same
prompts with its own chat template (its default system prompt included), in the same invocation.
Run: `PYTHONPATH=. .venv/bin/python bench/retailer_adapter_quality.py [--epochs 1.2] [--seeds 42,7,11]
[--set data_parallel=on --set max_steps=300 ...]` (or `make bench`); `--set` overrides one preset setting (checked by
the job config like any form's value); with several seeds it trains once per seed and prints the spread. Every run ends with a table of
held-out accuracy per RMIS field (base model and each seed), so the field that decides a run is visible; each seed's
wrong answers are printed beside their references (from the job log), so what it gets wrong can be read.
"""

import argparse
import json
import os
import tempfile

# On a shared 2-core box, spinning OpenMP threads stall each other (4x slower here); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A completed job with an evaluation dataset would queue its evaluations beside the next seed's training.
os.environ["RMN_LORA_AUTO_EVALUATE"] = "0"

from services.demo import seed_demo
from services.training import job_manager, submit_training_job
from training.base_models import resolve_base_model
from training.config import PRESETS
from training.evaluation import GenerationScore, score_generations
from training.worker import HELD_OUT_MISS

PRESET = "retailer mapping (fast)"
FIELD_PREFIX = "eval_accuracy_"  # the job's held-out accuracy of one field (training.worker)


def base_score(records: list[dict]) -> GenerationScore:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_base_model(None)
    model = AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    return score_generations(model, tokenizer, records)


def train_and_score(settings: dict, seed: int) -> tuple[float, float, dict[str, float], list[str]]:
    """Held-out accuracy, trainer minutes, accuracy per field and the logged wrong answers of one training run of
    the preset with `seed`."""
    config = {**settings, "seed": seed}
    job = job_manager().wait(
        submit_training_job("retailer", f"amazon_quality_{seed}", "retailer_amazon_sft", config=config)
    )
    if job.status != "completed":
        raise SystemExit(f"training {job.status}: {job.error}")
    metrics = job.final_metrics
    fields = {key.removeprefix(FIELD_PREFIX): value for key, value in metrics.items() if key.startswith(FIELD_PREFIX)}
    log = job_manager().log_text(job.id).splitlines()
    misses = [line.split(HELD_OUT_MISS, 1)[1].strip() for line in log if HELD_OUT_MISS in line]
    return metrics["eval_accuracy"], metrics["train_runtime"] / 60, fields, misses


def field_table(records: list[dict], base: dict[str, float], runs: dict[int, dict[str, float]]) -> str:
    """Fields as rows, the base model and each seed as columns, the weakest field of each seed marked with *."""
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record["task"])] = counts.get(str(record["task"]), 0) + 1
    header = f"{'field':<18}{'prompts':>8}{'base':>8}" + "".join(f"{f'seed {seed}':>10}" for seed in runs)
    lines = [header, "-" * len(header)]
    weakest = {seed: min(fields, key=fields.get) for seed, fields in runs.items() if fields}
    for field in sorted(counts):
        cells = "".join(
            f"{fields.get(field, float('nan')):>9.1%}{'*' if weakest.get(seed) == field else ' '}"
            for seed, fields in runs.items()
        )
        lines.append(f"{field:<18}{counts[field]:>8}{base.get(field, float('nan')):>8.1%}{cells}")
    return "\n".join(lines)


def override(item: str) -> tuple[str, object]:
    """`KEY=VALUE` as a setting: the value as JSON where it is (300, 5e-4, null), else as the text (on, cosine)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"--set {item!r}: write KEY=VALUE, e.g. data_parallel=on")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=PRESETS[PRESET]["epochs"])
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds, e.g. 42,7,11: one run each")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one preset setting, e.g. data_parallel=on, max_steps=300, torch_compile=off (repeatable)",
    )
    args = parser.parse_args()
    overrides = dict(override(item) for item in args.set)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    os.environ["RMN_LORA_HOME"] = tempfile.mkdtemp(prefix="rmn-quality-")
    seed_demo()
    from registry.datasets import iter_dataset

    records = list(iter_dataset("retailer_amazon_eval"))
    base_run = base_score(records)
    base = base_run.accuracy
    settings = {
        **PRESETS[PRESET],
        "epochs": args.epochs,
        **overrides,
        "eval_dataset": "retailer_amazon_eval",
        "save_steps": 1000,
    }
    shown = {k: v for k, v in settings.items() if k not in ("eval_dataset", "save_steps") and v is not None}
    print(f"preset {PRESET!r}: {shown}")
    print(f"held-out mapping prompts: {len(records)}; base model accuracy {base:.1%}")
    runs = []
    fields_by_seed = {}
    for seed in seeds:
        accuracy, minutes, fields_by_seed[seed], misses = train_and_score(settings, seed)
        runs.append((accuracy, minutes))
        print(
            f"seed {seed}: trained in {minutes:.1f} min (trainer runtime; goal <= 10), adapter {accuracy:.1%} vs "
            f"base {base:.1%} = +{(accuracy - base) * 100:.1f} points (goal: adapter >= 95%); by field: "
            + ", ".join(f"{field} {value:.1%}" for field, value in sorted(fields_by_seed[seed].items())),
            flush=True,
        )
        for miss in misses:
            print(f"  seed {seed} answered {miss}", flush=True)
    if len(runs) > 1:
        accuracies = [accuracy for accuracy, _ in runs]
        print(
            f"over {len(runs)} seeds: adapter accuracy min {min(accuracies):.1%}, mean "
            f"{sum(accuracies) / len(accuracies):.1%}, max {max(accuracies):.1%}; "
            f"longest training {max(minutes for _, minutes in runs):.1f} min"
        )
    print("held-out accuracy per field (* = the seed's weakest field):")
    print(field_table(records, base_run.by_task, fields_by_seed))


if __name__ == "__main__":
    main()
