"""What the tests of a job split over processes (Ray workers, local data-parallel processes) share: one small
mapping set and setting, and how far the split run's adapter lands from the same job trained in one process."""

import json
import threading
import time
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model

ROWS = [
    {"instruction": f"Map field 'adType' with value '{code}' from {retailer} to RMIS.", "input": "", "output": answer}
    for code, answer in [("sp", "placement_type: sponsored_product"), ("sd", "placement_type: sponsored_display")]
    for retailer in ("Amazon", "Walmart", "Target", "Instacart")
]
SETTINGS = {
    "batch_size": 4,
    "lora_r": 4,
    "lora_alpha": 8,
    "max_seq_length": 64,
    "learning_rate": 1e-3,
    "epochs": None,
    "lora_dropout": 0.0,
    "warmup_ratio": 0.0,
    "seed": 7,
    # fp32 wherever the CPU could compute bf16: the split run must match one process to float rounding, and under bf16
    # autocast each rank rounds its half-batch gradients to bf16 before they are summed (B matrices 5e-3 to 2e-2 apart
    # after 40 steps on an AVX512-BF16 host, before and after the CPU training changes of issue 18).
    "precision": "fp32",
}


def mapping_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny base model (tiny-llama) and the mapping set `map_sft` in the active registry; returns the model's folder."""
    from services import upload_dataset

    base = build_tiny_model(tmp_path / "models" / "tiny-llama")
    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path / "models"))
    source = tmp_path / "map.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 2))
    upload_dataset("map_sft", source)
    return base


def lora_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def gaps_from_one_process(adapter: Path, steps: int, folder: Path) -> dict[str, float]:
    """Train the same job in this process and return, per LoRA B matrix (zero at init), the split run's distance
    from it relative to its size: 0 for the same training, about 1 for an untrained adapter."""
    from training.config import build_config
    from training.worker import run_training

    config = build_config(
        adapter_name="local",
        base_model="tiny-llama",
        train_dataset="map_sft",
        max_steps=steps,
        save_steps=1000,
        **SETTINGS,
    )
    one = lora_weights(run_training(config, folder, stop=threading.Event()).adapter_path)
    split = lora_weights(adapter)
    assert split.keys() == one.keys()
    gaps = {}
    for key, value in one.items():
        if "lora_B" in key:
            assert value.norm() > 1e-3, "training must move B away from zero"
            gaps[key] = float((split[key] - value).norm() / value.norm())
    return gaps


def cancel_then_resume_to_the_end(manager, job_id: str, steps: int, base: Path, limit: float) -> tuple:
    """Cancel the job once it has trained 2 steps, check it kept a checkpoint mid-run, resume it and wait until it
    completes; the adapter loads with PEFT and the metrics hold one line per step (one writer, and the resume trims
    the lines after its checkpoint). Returns the job, its folder and its metrics lines."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from services.training import cancel_job, get_job_status

    deadline = time.monotonic() + limit
    while manager.progress(job_id).step < 2:
        assert manager.get(job_id).status in {"queued", "running"}, manager.get(job_id).error
        assert time.monotonic() < deadline, "the job did not start training"
        time.sleep(0.2)
    cancel_job(job_id)
    job = manager.wait(job_id, timeout=limit)
    assert job.status == "cancelled", job.error
    checkpoint = manager.latest_checkpoint(job_id)
    assert checkpoint is not None and 2 <= int(checkpoint.name.split("-")[1]) < steps

    manager.resume(job_id)
    job = manager.wait(job_id, timeout=limit)
    assert job.status == "completed", job.error
    status = get_job_status(job_id)
    assert status["step"] == steps and status["progress"] == 1.0
    folder = manager.folder(job_id)
    lines = [line for line in folder.metrics() if "loss" in line]
    assert [line["step"] for line in lines] == list(range(1, steps + 1)), "one line per step: one writer, resume trims"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), Path(job.adapter_path))
    assert any("lora_B" in name for name, _ in model.named_parameters())
    return job, folder, lines
