"""Inference and router training never touch torch's global generator, which a running training job draws from.

A playground prompt or a gated compose during training must not change the adapter that training produces.
"""

import threading

ROWS = [
    {"instruction": f"Map field 'adType' with value '{code}' from {retailer} to RMIS.", "input": "", "output": answer}
    for code, answer in [("sp", "placement_type: sponsored_product"), ("sd", "placement_type: sponsored_display")]
    for retailer in ["Amazon", "Walmart", "Target", "Instacart"]
]


def train_once(base, registry, job_dir):
    """A short job whose every step draws dropout masks from the global generator."""
    from safetensors.torch import load_file

    from training.config import build_config
    from training.worker import run_training

    config = build_config(
        adapter_name="rng_probe",
        base_model=str(base),
        train_dataset="rng_sft",
        max_steps=24,
        batch_size=4,
        learning_rate=3e-3,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.3,
        save_steps=1000,
        max_seq_length=96,
        warmup_ratio=0.0,
        seed=11,
    )
    result = run_training(config, job_dir, stop=threading.Event())
    assert result.status == "completed"
    return load_file(result.adapter_path / "adapter_model.safetensors")


def test_sampled_generations_and_router_training_during_a_job_leave_its_adapter_unchanged(
    tiny_base, registry, tmp_path
):
    import torch

    from federation.engine import GenerationSettings, InferenceEngine
    from federation.router import train_router
    from federation.spec import BaseRef
    from registry.datasets import write_records
    from registry.shapes import DatasetKind
    from training.base_models import resolve_base_model

    write_records("rng_sft", ROWS * 2, DatasetKind.ALPACA, origin="test", registry=registry)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = train_once(tiny_base, registry, tmp_path / "alone")

        engine = InferenceEngine(max_models=1)
        base = BaseRef.from_info(resolve_base_model(str(tiny_base)))
        sampling = GenerationSettings(max_new_tokens=6, temperature=0.9, top_p=0.9, seed=5)
        engine.generate(base, "warm up", sampling)  # the model load happens before training starts
        done, rounds = threading.Event(), []

        def interfere() -> None:
            while not done.is_set():
                engine.generate(base, "Plan a campaign for snacks.", sampling)
                train_router([["map this field", "map that field"], ["plan a campaign", "plan a budget"]])
                rounds.append(1)

        worker = threading.Thread(target=interfere, daemon=True)
        worker.start()
        try:
            beside = train_once(tiny_base, registry, tmp_path / "beside")
        finally:
            done.set()
            worker.join()
    finally:
        torch.set_num_threads(threads)

    assert rounds, "nothing ran beside the job, so the test proved nothing"
    assert alone.keys() == beside.keys()
    for name, weight in alone.items():
        assert torch.equal(weight, beside[name]), f"{name} differs: inference reseeded the job's generator"


def test_a_seeded_sampled_answer_repeats_and_another_seed_changes_it(tiny_base, registry):
    from federation.engine import GenerationSettings, InferenceEngine
    from federation.spec import BaseRef
    from training.base_models import resolve_base_model

    engine = InferenceEngine(max_models=1)
    base = BaseRef.from_info(resolve_base_model(str(tiny_base)))
    answers = {
        seed: [
            engine.generate(
                base, "Tell me about", GenerationSettings(max_new_tokens=12, temperature=1.5, seed=seed)
            ).response
            for _ in range(2)
        ]
        for seed in (1, 2, 3)
    }
    assert all(first == second for first, second in answers.values())
    assert len({first for first, _ in answers.values()}) > 1
