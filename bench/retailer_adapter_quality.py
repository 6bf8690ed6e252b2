"""Held-out mapping accuracy of a retailer adapter trained on the demo Amazon dataset, against the base model.

Issue 3's quality check: with the embedded SmolLM2-135M-Instruct and at most 10 minutes of training, the
adapter should answer at least 90% of the held-out mapping prompts exactly as the mapping computes them.
Training uses the "retailer mapping (fast)" preset through the job API; the base model is scored on the same
prompts with its own chat template (its default system prompt included), in the same invocation.
Run: `PYTHONPATH=. .venv/bin/python bench/retailer_adapter_quality.py [--epochs 1.0]` (or `make bench`).
"""

import argparse
import os
import tempfile

# On a shared 2-core box, spinning OpenMP threads stall each other (4x slower here); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from services.demo import seed_demo
from services.training import job_manager, submit_training_job
from training.base_models import resolve_base_model
from training.config import PRESETS
from training.evaluation import score_generations

PRESET = "retailer mapping (fast)"


def base_accuracy(records: list[dict]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_base_model(None)
    model = AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    return score_generations(model, tokenizer, records).accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=PRESETS[PRESET]["epochs"])
    args = parser.parse_args()
    os.environ["RMN_LORA_HOME"] = tempfile.mkdtemp(prefix="rmn-quality-")
    seed_demo()
    from services.datasets import iter_dataset

    records = list(iter_dataset("retailer_amazon_eval"))
    base = base_accuracy(records)
    settings = {**PRESETS[PRESET], "epochs": args.epochs, "eval_dataset": "retailer_amazon_eval", "save_steps": 1000}
    job = job_manager().wait(submit_training_job("retailer", "amazon_quality", "retailer_amazon_sft", config=settings))
    if job.status != "completed":
        raise SystemExit(f"training {job.status}: {job.error}")
    metrics = job.final_metrics
    minutes = metrics["train_runtime"] / 60
    shown = {k: v for k, v in settings.items() if k not in ("eval_dataset", "save_steps") and v is not None}
    print(f"preset {PRESET!r}: {shown}")
    print(f"trained in {minutes:.1f} min (trainer runtime; goal <= 10)")
    print(f"held-out mapping accuracy ({len(records)} prompts): adapter {metrics['eval_accuracy']:.1%} vs base model "
          f"{base:.1%} = +{(metrics['eval_accuracy'] - base) * 100:.1f} points (goal: adapter >= 90%)")


if __name__ == "__main__":
    main()
