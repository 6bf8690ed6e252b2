"""Batched evaluation against a one-prompt-at-a-time `generate` loop, on the same model and prompts, in one run.

Goal (issue 13): at least 3x the examples per second at batch 8 on CPU, with the same predictions. The batched
side is the console's path (`InferenceEngine.generate_batch`: left padding, greedy, one `generate` per batch);
the reference is plain transformers, one `model.generate` per prompt with the same chat template and greedy
settings. Prompts are the demo Amazon held-out set on the embedded SmolLM2-135M-Instruct. Both sides alternate
for `--repeats` rounds and the best round of each is kept (a shared machine slows some rounds). The defaults
(24 examples, 16 new tokens, 2 rounds) take about 2 minutes on an idle 2-core machine, model load included.
Run: `PYTHONPATH=. .venv/bin/python bench/evaluation_throughput.py [--examples 24] [--batch 8] [--tokens 16]`.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    began = time.perf_counter()
    os.environ["RMN_LORA_HOME"] = str(Path(tempfile.mkdtemp(prefix="rmn-eval-bench-")) / "registry")
    os.environ["RMN_LORA_REQUEST_LOG"] = "0"

    import torch

    from evaluation.data import load_examples
    from federation.engine import Activation, GenerationSettings, InferenceEngine, _chat_text
    from federation.spec import BaseRef
    from services.demo import seed_demo
    from training.base_models import resolve_base_model

    seed_demo()
    examples = load_examples("retailer_amazon_eval", args.examples).examples
    conversations = [e.conversation for e in examples]
    base = BaseRef.from_info(resolve_base_model(None))
    engine = InferenceEngine()
    settings = GenerationSettings(max_new_tokens=args.tokens)
    engine.generate_batch(base, conversations[:2], settings, Activation(), caller="bench")  # load once
    entry, _ = engine._acquire(base, Activation())
    model, tokenizer = entry.model, entry.tokenizer

    def batched() -> list[str]:
        answers: list[str] = []
        for start in range(0, len(conversations), args.batch):
            chunk = conversations[start : start + args.batch]
            answers += [g.response for g in engine.generate_batch(base, chunk, settings, caller="bench")]
        return answers

    def loop() -> list[str]:
        answers = []
        for conversation in conversations:
            inputs = tokenizer(_chat_text(tokenizer, conversation), return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    max_new_tokens=args.tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=tokenizer.pad_token_id,
                )
            answers.append(
                tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
            )
        return answers

    best = {"batched": float("inf"), "loop": float("inf")}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in (("loop", loop), ("batched", batched)):
            started = time.perf_counter()
            outputs[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["loop"], strict=True))
    n = len(conversations)
    print(f"{n} examples, batch {args.batch}, {args.tokens} new tokens max, {torch.get_num_threads()} torch threads")
    print(f"one-prompt loop : {n / best['loop']:.2f} examples/s ({best['loop']:.1f} s)")
    print(f"batched         : {n / best['batched']:.2f} examples/s ({best['batched']:.1f} s)")
    print(f"speed-up        : {best['loop'] / best['batched']:.2f}x (goal >= 3x)")
    print(f"same predictions: {same} of {n}")
    print(f"bench wall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
