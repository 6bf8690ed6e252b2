"""What the tests of a job split over processes (Ray workers, local data-parallel processes) share: one small
mapping set and setting, and how far the split run's adapter lands from the same job trained in one process."""

import json
import threading
from pathlib import Path

import pytest
from tiny_model import build_tiny_model

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
