"""Held-out mapping accuracy of a retailer adapter trained on the demo Amazon dataset, against the base model.

Issue 3's quality check: with the embedded SmolLM2-135M-Instruct and at most 10 minutes of training, the
adapter should answer at least 90% of the held-out mapping prompts exactly as the mapping computes them.
Run: `PYTHONPATH=. .venv/bin/python bench/retailer_adapter_quality.py [--epochs 3]` (or `make bench`).
"""

import argparse
import os
import tempfile
import time

from services.demo import seed_demo
from services.training import job_manager, submit_training_job
from training.base_models import resolve_base_model
from training.evaluation import score_generations


def base_accuracy(records: list[dict]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_base_model(None)
    model = AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    return score_generations(model, tokenizer, records).accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=3.0)
    args = parser.parse_args()
    os.environ["RMN_LORA_HOME"] = tempfile.mkdtemp(prefix="rmn-quality-")
    seed_demo()
    from services.datasets import iter_dataset

    records = list(iter_dataset("retailer_amazon_eval"))
    start = time.perf_counter()
    job_id = submit_training_job(
        "retailer", "amazon_quality", "retailer_amazon_sft",
        config={"epochs": args.epochs, "batch_size": 8, "learning_rate": 5e-4, "lora_r": 16, "lora_alpha": 32,
                "max_seq_length": 256, "eval_dataset": "retailer_amazon_eval", "save_steps": 100},
    )
    job = job_manager().wait(job_id)
    minutes = (time.perf_counter() - start) / 60
    if job.status != "completed":
        raise SystemExit(f"training {job.status}: {job.error}")
    adapter = job.final_metrics
    print(f"trained in {minutes:.1f} min ({job.final_metrics.get('train_runtime', 0) / 60:.1f} min in the trainer)")
    print(f"held-out mapping accuracy ({len(records)} prompts): adapter {adapter['eval_accuracy']:.1%} "
          f"vs base model {base_accuracy(records):.1%} (goal: adapter >= 90% within 10 minutes)")


if __name__ == "__main__":
    main()
