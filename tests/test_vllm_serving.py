"""Deploy to a real vLLM server: runs wherever vLLM is importable (a GPU machine) and skips everywhere else.

vLLM's attention kernels need a supported head size, so the tiny model here has 64-dimensional heads.
"""

import importlib.util
import os
import subprocess
import sys
import time

import httpx
import pytest
from api_server import free_port

from tests.tiny_model import build_tiny_model, train_tiny_adapter

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="real vLLM: the vllm package is not importable here (it needs a CUDA GPU machine: pip install vllm "
    "there and this test runs). The same deploy / chat client is tested here against this console's own "
    "OpenAI-compatible server (test_openai_api.py, test_serving_pages.py, test_remote_evaluation.py).",
)

PROMPTS = [f"Map field 'adType' with value 'sp' from {r} to RMIS." for r in ("Amazon", "Walmart", "Target")]
ANSWER = "placement_type: sponsored_product"


def test_deploy_an_adapter_to_vllm_and_get_the_same_greedy_answer(registry, tmp_path, monkeypatch):
    from registry.datasets import write_records
    from registry.shapes import DatasetKind
    from services.deploy import ServingEndpoint, complete_on_endpoint, deploy_adapter, save_endpoint
    from services.federation import GenerationSettings
    from services.serving import stream_completion

    base = build_tiny_model(tmp_path / "models" / "tiny-vllm", hidden_size=256)
    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path / "models"))
    write_records(
        "map_sft",
        [{"instruction": p, "input": "", "output": ANSWER} for p in PROMPTS] * 8,
        DatasetKind.ALPACA,
        origin="test",
        registry=registry,
    )
    train_tiny_adapter("mapper", "map_sft", "tiny-vllm", tmp_path / "job", steps=120, rank=8, registry=registry)

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(base),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--enable-lora",
            "--max-lora-rank",
            "8",
            "--max-model-len",
            "512",
        ],
        env={**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"},
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "vLLM did not start"
            time.sleep(2)
        save_endpoint(ServingEndpoint(name="vllm", url=f"http://127.0.0.1:{port}", engine="vllm"))
        deploy_adapter("mapper", endpoint="vllm", lora_name="mapper-prod")
        settings = GenerationSettings(max_new_tokens=16)
        remote = complete_on_endpoint("vllm", "mapper-prod", PROMPTS[0], settings)
        local = "".join(stream_completion("mapper", PROMPTS[0], settings)).strip()
        assert remote.text.strip() == local
    finally:
        server.terminate()
        server.wait(timeout=60)
