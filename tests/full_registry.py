"""A registry with one of everything, made through the real services: two datasets, the demo mappings and raw
sources, a job that really trained a tiny model for 2 steps (so an adapter), a saved federation; with `runs`, also a
finished evaluation, a playground run and a published (unmerged) package. Tests that walk every page use it."""

import json
from pathlib import Path

from tests.tiny_model import build_tiny_model


def build_full_registry(root: Path, *, runs: bool = False) -> Path:
    """Fill `root/registry` (RMN_LORA_HOME and RMN_LORA_MODELS must point at root/registry and root/models)."""
    build_tiny_model(root / "models" / "tiny-llama")
    from services import compose_federation, save_federation, submit_training_job, upload_dataset
    from services.mappings import install_demo_data
    from services.training import job_manager

    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(12)]
    (root / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("alpha_sft", root / "a.jsonl", description="first")
    upload_dataset("beta_sft", root / "a.jsonl", description="second")
    install_demo_data()
    job = submit_training_job(
        "retailer", "mapper", "alpha_sft", {"max_steps": 2, "max_seq_length": 32}, base_model="tiny-llama"
    )
    assert job_manager().wait(job, timeout=300).status == "completed"
    save_federation(compose_federation(retailer_adapter="mapper", name="fed_one"))
    if runs:
        from services.evaluation import run_evaluation, wait_for_evaluation
        from services.models import publish
        from services.playground import GenerationSettings, Target, start_run

        run_id = run_evaluation("mapper@v1", "alpha_sft", limit=2, max_new_tokens=4)
        assert wait_for_evaluation(run_id, timeout=300).status == "completed"
        list(start_run(Target(kind="adapter", ref="mapper", version=1), "hello", GenerationSettings(max_new_tokens=4)))
        publish("mapper@v1", merge=False, name="mapper-lora")
    return root / "registry"
