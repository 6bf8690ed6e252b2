"""Per-token generation latency of each federation method against the plain base model, in one invocation.

Issue 4's goals: additive merged at most 1.05x the base model, gated at most 1.25x; additive unmerged and
sequential are reported beside them. Two adapters (r=16, all linear layers) are trained for a few steps on the
demo datasets with the embedded SmolLM2-135M-Instruct, so the deltas are real and non-zero. Configurations are
measured round-robin (each repeat runs every configuration once), so a change in machine load hits all of them.
Run: `PYTHONPATH=. .venv/bin/python bench/federation_latency.py [--repeats 3] [--tokens 48]`.
"""

import argparse
import os
import statistics
import tempfile
import threading
from pathlib import Path


def train_demo_adapters(root: Path) -> None:
    from training.adapters import register_adapter
    from training.config import build_config
    from training.worker import run_training

    for name, dataset, kind in (
        ("amazon_bench", "retailer_amazon_sft", "retailer"),
        ("planning_bench", "task_planning_sft", "task"),
    ):
        config = build_config(
            adapter_type=kind,
            adapter_name=name,
            train_dataset=dataset,
            max_steps=3,
            epochs=None,
            batch_size=2,
            lora_r=16,
            lora_alpha=32,
            target_modules="all-linear",
            save_steps=1000,
        )
        register_adapter(run_training(config, root / "jobs" / name, stop=threading.Event()), config)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rmn-fed-bench-"))
    os.environ["RMN_LORA_HOME"] = str(root / "registry")

    from federation.engine import Activation, GenerationSettings, InferenceEngine
    from federation.run import run_federation
    from services.demo import seed_demo
    from services.federation import compose_federation

    seed_demo()
    train_demo_adapters(root)
    pair = ["amazon_bench", "planning_bench"]
    federations = {
        "additive merged": compose_federation(adapters=pair, method="additive", merged=True),
        "additive unmerged": compose_federation(adapters=pair, method="additive"),
        "gated (top)": compose_federation(adapters=pair, method="gated"),
        "sequential (2 stages)": compose_federation(adapters=pair, method="sequential"),
    }
    base = federations["gated (top)"].base
    prompts = [
        "Map field 'adType' with value 'sp' from Amazon to RMIS.",
        "Plan a $50,000 campaign for snacks on Walmart. Which placements get the budget?",
        "Write a sponsored product headline for a 12-pack of sparkling water.",
        "Map field 'cost_micros' with value '1250000' from Amazon to RMIS.",
    ]
    settings = GenerationSettings(max_new_tokens=args.tokens)
    engine = InferenceEngine(max_models=3)
    plain = InferenceEngine(max_models=1)  # the reference: a plain transformers model that never holds an adapter

    def base_run(prompt: str) -> tuple[float, int]:
        result = plain.generate(base, prompt, settings, Activation())
        return result.latency_ms, result.tokens

    def federation_run(name: str):
        def run(prompt: str) -> tuple[float, int]:
            result = run_federation(federations[name], prompt, settings, engine)
            return result.latency_ms, result.tokens

        return run

    runs = {"base model": base_run, **{name: federation_run(name) for name in federations}}
    for run in runs.values():  # load every model and adapter once: load time is not generation time
        run(prompts[0])
    per_token: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            latency, tokens = map(sum, zip(*(run(p) for p in prompts), strict=True))
            per_token[name].append(latency / tokens)
    reference = statistics.median(per_token["base model"])
    goals = {"additive merged": 1.05, "gated (top)": 1.25}
    print(f"per-token latency, median of {args.repeats} rounds of {len(prompts)} prompts x <= {args.tokens} tokens")
    for name, values in per_token.items():
        value = statistics.median(values)
        goal = (
            f" (goal <= {goals[name]:.2f}x: {'met' if value / reference <= goals[name] else 'NOT met'})"
            if name in goals
            else ""
        )
        print(f"  {name:<22} {value:7.2f} ms/token  {value / reference:5.2f}x base{goal}")


if __name__ == "__main__":
    main()
