"""The HTTP API through real HTTP: httpx against uvicorn on a free loopback port, over a temporary registry."""

import io
import json
import zipfile

import pytest
from api_server import api_client

from tests.tiny_model import build_tiny_model

FAST = {
    "max_steps": 4,
    "batch_size": 4,
    "lora_r": 4,
    "lora_alpha": 8,
    "max_seq_length": 64,
    "save_steps": 2,
    "learning_rate": 1e-3,
    "epochs": None,
}


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A base-model folder the console lists (RMN_LORA_MODELS), holding one tiny model."""
    folder = tmp_path / "models"
    build_tiny_model(folder / "tiny-llama")
    monkeypatch.setenv("RMN_LORA_MODELS", str(folder))
    return folder


@pytest.fixture
def client(registry):
    from api.app import create_app

    with api_client(create_app()) as client:
        yield client


def wait_for_job(client, job_id: str, timeout: float = 300) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/experiments/{job_id}").json()
        if body["job"]["status"] in {"completed", "failed", "cancelled", "interrupted"}:
            return body
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_upload_train_download_flow_over_http(client, models_dir, peer_data, tmp_path):
    """Seed endpoints in the order a nightly job uses them: upload the day's file, train, read, download."""
    upload = (peer_data / "identity.json").read_bytes()
    response = client.post(
        "/datasets/upload",
        files={"file": ("identity.json", upload, "application/json")},
        data={"name": "identity", "description": "peer identity set"},
    )
    assert response.status_code == 201, response.text
    record = response.json()
    rows = len(json.loads(upload))
    assert record["name"] == "identity" and record["kind"] == "alpaca" and record["versions"][0]["rows"] == rows

    listed = client.get("/datasets").json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == "identity"
    assert client.get("/datasets/identity").json()["versions"][0]["rows"] == rows
    page = client.get("/datasets/identity/rows", params={"offset": 5, "limit": 3}).json()
    assert page["total"] == rows and len(page["items"]) == 3
    assert page["items"][0]["instruction"] == json.loads(upload)[5]["instruction"]

    models = client.get("/models", params={"kind": "base"}).json()
    tiny = next(m for m in models["items"] if m["id"] == "tiny-llama")
    assert tiny["error"] is None and tiny["architecture"] == "LlamaForCausalLM" and tiny["parameters"] > 0
    assert client.get("/models/tiny-llama").json()["kind"] == "base"

    submitted = client.post(
        "/experiments",
        json={"adapter_name": "identity_tiny", "dataset": "identity", "base_model": "tiny-llama", "config": FAST},
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["job"]["id"]
    assert client.get("/experiments").json()["items"][0]["id"] == job_id
    finished = wait_for_job(client, job_id)
    assert finished["job"]["status"] == "completed", finished["job"]["error"]
    assert finished["progress"]["step"] == 4 and finished["job"]["adapter_version"] == 1
    metrics = client.get(f"/experiments/{job_id}/metrics").json()
    assert metrics["total"] >= 1 and any("loss" in line for line in metrics["items"])
    assert "completed" in client.get(f"/experiments/{job_id}/log").json()

    model = client.get("/models/identity_tiny").json()
    assert model["kind"] == "adapter" and model["details"]["job_id"] == job_id and model["id"] == "identity_tiny@v1"
    assert model["base_model"] == "tiny-llama" and model["details"]["dataset"]["name"] == "identity"
    assert [v["version"] for v in model["versions"]] == [1]
    assert client.get("/models/identity_tiny@v1").json()["version"] == 1
    assert client.get("/models", params={"kind": "adapter"}).json()["items"][0]["id"] == "identity_tiny@v1"
    assert client.get("/models", params={"search": "identity"}).json()["total"] == 1
    assert client.get("/adapters").json()["items"][0]["name"] == "identity_tiny"

    evaluated = client.post(
        "/evaluations",
        json={"target": "identity_tiny@v1", "dataset": "identity", "metrics": ["exact_match", "token_f1"], "limit": 4},
    )
    assert evaluated.status_code == 201, evaluated.text
    run_id = evaluated.json()["id"]
    assert evaluated.json()["total"] == 4 and evaluated.json()["target"].endswith("identity_tiny@v1")
    run = wait_for_evaluation(client, run_id)
    assert run["status"] == "completed", run["error"]
    assert set(run["metrics"]) >= {"exact_match", "token_f1"} and len(run["rows"]) == 4
    assert run["rows"][0]["reference"] == json.loads(upload)[0]["output"].strip()
    listed_runs = client.get("/evaluations", params={"status": "completed"}).json()
    assert listed_runs["total"] == 1 and listed_runs["items"][0]["id"] == run_id
    assert client.get("/evaluations", params={"target": "ghost"}).json()["total"] == 0
    assert "exact_match" in client.get(f"/evaluations/{run_id}/report").text
    assert client.get("/models/identity_tiny").json()["evaluations"][0]["run"] == run_id
    finished_run = client.post(f"/evaluations/{run_id}/cancel")
    assert finished_run.status_code == 409 and "already completed" in finished_run.json()["error"]["message"]

    download = client.get("/datasets/identity/download")
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/x-ndjson")
    assert len(download.content.splitlines()) == rows
    csv = client.get("/datasets/identity/download", params={"format": "csv"})
    header = next(__import__("csv").reader(io.StringIO(csv.text)))
    assert header[:2] == ["instruction", "input"] and csv.headers["content-type"].startswith("text/csv")

    archive = client.get("/adapters/identity_tiny/versions/1/download")
    assert archive.headers["content-type"] == "application/zip"
    folder = tmp_path / "unzipped"
    zipfile.ZipFile(io.BytesIO(archive.content)).extractall(folder)
    _loads_in_plain_peft(models_dir / "tiny-llama", folder / "identity_tiny-v1")


def wait_for_evaluation(client, run_id: str, timeout: float = 300) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/evaluations/{run_id}").json()
        if body["status"] in {"completed", "failed", "cancelled"}:
            return body
        time.sleep(0.5)
    raise AssertionError(f"evaluation {run_id} did not finish in {timeout} s")


def _loads_in_plain_peft(base, adapter_folder) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter_folder)
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and any(torch.count_nonzero(p) > 0 for p in lora_b), "the trained B matrices must not be zero"


def test_bad_input_is_a_json_4xx_and_changes_nothing(client, models_dir, tmp_path):
    from registry.layout import open_registry
    from tests.conftest import snapshot

    before = snapshot(open_registry().root)

    bad = client.post(
        "/datasets/upload",
        files={"file": ("broken.jsonl", b'{"instruction": "a", "output": "b"}\n{not json\n', "application/json")},
        data={"name": "broken"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "InvalidFile"
    assert "Line 2" in bad.json()["error"]["message"]
    escape = client.post("/datasets/upload", files={"file": ("x.jsonl", b"{}\n")}, data={"name": "../etc"})
    assert escape.status_code == 400 and escape.json()["error"]["type"] == "InvalidName"

    missing = client.get("/datasets/nope")
    assert missing.status_code == 404 and "Upload it" in missing.json()["error"]["message"]
    assert client.get("/datasets/nope/download").status_code == 404
    assert client.get("/models/nope").status_code == 404
    assert client.get("/experiments/job_nope").status_code == 404
    assert client.get("/federations/fed_nope").status_code == 404
    assert client.get("/mappings/Nobody").status_code == 404
    assert client.get("/evaluations/eval_20260101_000000_abcdef").status_code == 404
    assert client.post("/evaluations/../cancel").status_code == 404
    no_eval_data = client.post("/evaluations", json={"target": "tiny-llama", "dataset": "nope"})
    assert no_eval_data.status_code == 404, no_eval_data.text
    assert client.post("/evaluations", json={"dataset": "x", "limit": 0}).status_code == 422

    no_data = client.post("/experiments", json={"adapter_name": "x", "dataset": "nope", "base_model": "tiny-llama"})
    assert no_data.status_code == 404, no_data.text
    bad_config = client.post(
        "/experiments", json={"adapter_name": "x", "dataset": "nope", "config": {"lora_r": -1, "batch_sz": 4}}
    )
    assert bad_config.status_code == 400 and bad_config.json()["error"]["type"] == "InvalidConfig"
    assert "batch sz is not a setting" in bad_config.json()["error"]["message"]
    assert client.post("/experiments", json={"dataset": "x"}).status_code == 422
    invalid_page = client.get("/datasets", params={"limit": 0})
    assert invalid_page.status_code == 422 and "limit" in invalid_page.json()["error"]["message"]
    assert client.get("/nowhere").json()["error"]["type"] == "NotFound"
    unknown_federation = client.post("/federations", json={"name": "f", "adapters": ["ghost"]})
    assert unknown_federation.status_code == 404, unknown_federation.text

    assert client.get("/experiments").json()["total"] == 0
    assert client.get("/evaluations").json()["total"] == 0
    assert snapshot(open_registry().root) == before


def test_cancelling_a_finished_job_is_a_conflict(client, models_dir, tmp_path):
    from services import upload_dataset

    source = tmp_path / "map.jsonl"
    source.write_text(
        "".join(json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}) + "\n" for i in range(8))
    )
    upload_dataset("mini", source)
    job_id = client.post(
        "/experiments", json={"adapter_name": "mini", "dataset": "mini", "base_model": "tiny-llama", "config": FAST}
    ).json()["job"]["id"]
    assert wait_for_job(client, job_id)["job"]["status"] == "completed"
    conflict = client.post(f"/experiments/{job_id}/cancel")
    assert conflict.status_code == 409 and "already completed" in conflict.json()["error"]["message"]
    assert client.post(f"/experiments/{job_id}/resume").status_code == 409


def test_lists_are_paginated_and_mappings_readable(client):
    from services import datasets
    from services.mappings import install_demo_data

    install_demo_data()
    everything = client.get("/mappings").json()
    assert everything["total"] == 4
    first, second = (client.get("/mappings", params={"offset": i, "limit": 2}).json() for i in (0, 2))
    assert [m["retailer"] for m in first["items"] + second["items"]] == [m["retailer"] for m in everything["items"]]
    retailer = everything["items"][0]["retailer"]
    assert client.get(f"/mappings/{retailer}").json()["retailer"] == retailer
    assert client.get(f"/mappings/{retailer}/yaml").text.startswith(("retailer", "#", "source"))
    assert client.get("/federations").json() == {"items": [], "total": 0, "offset": 0, "limit": 50}
    assert client.get("/datasets", params={"limit": 501}).status_code == 422
    assert datasets.list_datasets() == []


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    for path in [
        "/datasets",
        "/datasets/upload",
        "/datasets/{name}/download",
        "/models",
        "/models/{model_id}",
        "/experiments",
        "/experiments/{job_id}",
        "/evaluations",
        "/evaluations/{run_id}",
        "/adapters",
        "/federations",
        "/mappings",
    ]:
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_access_policy_is_loopback_by_default_and_pluggable(registry):
    """The default refuses a caller that is not this machine; a token policy plugs in without touching routes."""
    from fastapi import Header, HTTPException
    from fastapi.testclient import TestClient

    from api.app import create_app

    remote = TestClient(create_app(), client=("203.0.113.9", 50000))
    refused = remote.get("/datasets")
    assert refused.status_code == 401 and "203.0.113.9 is another machine" in refused.json()["error"]["message"]

    def token_policy(authorization: str | None = Header(default=None)) -> None:
        if authorization != "Bearer s3cret":
            raise HTTPException(status_code=401, detail="Send Authorization: Bearer <token>.")

    with api_client(create_app(access=token_policy)) as client:
        assert client.get("/datasets").status_code == 401
        assert client.get("/datasets", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_policy_that_sets_the_acting_user_gets_the_consoles_roles(registry):
    """The acting user set by an async policy reaches the services (sync routes run in worker threads), so a
    viewer token can read but its upload is a 403 that changes nothing."""
    from api.app import create_app
    from registry.access import Actor, Role, acting_as

    async def viewer_token():
        with acting_as(Actor(username="reader", role=Role.VIEWER)):
            yield

    with api_client(create_app(access=viewer_token)) as client:
        assert client.get("/datasets").status_code == 200
        refused = client.post("/datasets/upload", files={"file": ("a.jsonl", b'{"text": "x"}\n')}, data={"name": "a"})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "Forbidden"
        assert "reader may not datasets.upload" in refused.json()["error"]["message"]
        assert client.get("/datasets").json()["total"] == 0


def test_the_server_refuses_to_bind_beyond_loopback():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "api", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 2 and "no admin account yet" in result.stderr
