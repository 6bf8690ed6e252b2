"""Where the registry lives and the limits that protect it, read from the environment."""

import os
from pathlib import Path

from pydantic import BaseModel, Field

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseModel):
    """Console settings; environment variables override the defaults so tests and deployments differ only there."""

    home: Path = Field(description="Registry root: datasets, mappings, raw sources, adapters, jobs.")
    models_dir: Path = Field(description="Cache of base models converted to safetensors (large; outside the registry).")
    max_upload_mb: int = Field(default=200, ge=1, le=10_240)
    max_line_mb: int = Field(default=8, ge=1, le=1024)
    max_concurrent_jobs: int = Field(default=1, ge=1, le=16, description="Training jobs that may run at once.")
    max_loaded_models: int = Field(default=2, ge=1, le=16, description="Models the inference engine keeps in memory.")
    validation_workers: int = Field(
        default=2, ge=1, le=64, description="Processes that validate one large JSONL file in parts (1: in-process)."
    )
    request_log: bool = Field(
        default=True, description="Log every generation the inference engine serves (Performance Dashboard)."
    )
    cpu_hour_price: float = Field(
        default=0.10, ge=0, le=1000, description="Price of one hour of this machine's CPUs, in USD (cost tracking)."
    )
    gpu_hour_price: float = Field(
        default=1.20, ge=0, le=1000, description="Price of one GPU for one hour, in USD (cost tracking)."
    )

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_line_bytes(self) -> int:
        return self.max_line_mb * 1024 * 1024


def get_settings() -> Settings:
    """Read the settings now, so a changed `RMN_LORA_HOME` takes effect on the next call."""
    return Settings(
        home=Path(os.environ.get("RMN_LORA_HOME") or REPO_ROOT / "datasets").expanduser().resolve(),
        models_dir=Path(os.environ.get("RMN_LORA_MODELS") or REPO_ROOT / ".cache" / "models").expanduser().resolve(),
        max_upload_mb=int(os.environ.get("RMN_LORA_MAX_UPLOAD_MB", 200)),
        max_line_mb=int(os.environ.get("RMN_LORA_MAX_LINE_MB", 8)),
        max_concurrent_jobs=int(os.environ.get("RMN_LORA_MAX_CONCURRENT_JOBS", 1)),
        max_loaded_models=int(os.environ.get("RMN_LORA_MAX_LOADED_MODELS", 2)),
        validation_workers=int(os.environ.get("RMN_LORA_VALIDATION_WORKERS", min(2, os.cpu_count() or 1))),
        request_log=os.environ.get("RMN_LORA_REQUEST_LOG", "1").strip().lower() not in ("0", "false", "no", "off"),
        cpu_hour_price=float(os.environ.get("RMN_LORA_CPU_HOUR_PRICE", 0.10)),
        gpu_hour_price=float(os.environ.get("RMN_LORA_GPU_HOUR_PRICE", 1.20)),
    )
