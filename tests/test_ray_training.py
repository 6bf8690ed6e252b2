"""Training on a real local Ray cluster (started here on loopback with 2 CPUs): a Ray Train TorchTrainer with
2 DDP workers (gloo) runs the same TRL trainer into the same job folder; cancel and resume work as locally."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from api_server import free_port

from tests.split_training import SETTINGS, cancel_then_resume_to_the_end, gaps_from_one_process, mapping_setup

# Ray replaces a loopback address by the machine's interface address unless clusters are "disabled" (its
# single-machine mode): the test cluster, its workers and this driver then talk over 127.0.0.1 only.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOOPBACK_ONLY)
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """`ray start --head --block` on 127.0.0.1 with 2 CPUs, in its own process group, stopped at the end."""
    port = free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    temp = tmp_path_factory.mktemp("ray")
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        env={**os.environ, **LOOPBACK_ONLY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300  # generous: ray start launches several processes
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert head.poll() is None, head.stderr.read().decode()
        assert time.monotonic() < deadline, "the Ray head did not start"
        time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    ray.shutdown()
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()


@pytest.fixture
def setup(registry, tmp_path, monkeypatch):
    return mapping_setup(tmp_path, monkeypatch)


def test_a_two_worker_ray_job_cancels_resumes_and_trains_like_one_local_process(
    setup, ray_cluster, monkeypatch, tmp_path
):
    """One job, as a user runs it: start on 2 workers, cancel mid-run, resume, finish; then compare with a local
    1-process run with the same global batch and seed."""

    from services.training import job_manager, submit_training_job

    steps = 40
    monkeypatch.setenv("RMN_LORA_TRAINING_BACKEND", ray_cluster)
    manager = job_manager()
    job_id = submit_training_job(
        "retailer",
        "on_ray",
        "map_sft",
        base_model="tiny-llama",
        config={**SETTINGS, "max_steps": steps, "save_steps": 1000, "workers": 2},
    )
    job, folder, _ = cancel_then_resume_to_the_end(manager, job_id, steps, setup, limit=600)
    assert ray.util.get_node_ip_address() == "127.0.0.1", "the driver must reach the cluster over loopback"
    log = folder.log_text()
    assert log.count("Ray: 2 worker(s)") == 2 and "2 examples each per step (global batch 4)" in log

    adapter = Path(job.adapter_path)

    # Same seed, same global batch, but not the same arithmetic: DDP averages two half-batch gradients where one
    # process averages over the whole batch (per-token means weigh the halves differently), and the run was
    # cancelled and resumed. The trained B matrices (zero at init) must agree to within 25% of their size, i.e.
    # far closer to the local run than to an untrained adapter (100%).
    gaps = gaps_from_one_process(adapter, steps, tmp_path / "local-job")
    print(f"Ray vs local LoRA B relative gaps: max {max(gaps.values()):.3f}, mean {sum(gaps.values()) / len(gaps):.3f}")
    assert max(gaps.values()) <= 0.25, gaps


def test_the_local_backend_refuses_several_workers(setup):
    from services.errors import JobError
    from services.training import submit_training_job

    with pytest.raises(JobError, match="need the Ray backend"):
        submit_training_job(
            "retailer", "x", "map_sft", base_model="tiny-llama", config={**SETTINGS, "max_steps": 2, "workers": 2}
        )


def test_an_unreachable_cluster_fails_the_job_with_the_reason(setup, monkeypatch, refused_port):
    from services.training import job_manager, submit_training_job

    monkeypatch.setenv("RMN_LORA_TRAINING_BACKEND", f"127.0.0.1:{refused_port}")
    job_id = submit_training_job(
        "retailer", "x", "map_sft", base_model="tiny-llama", config={**SETTINGS, "max_steps": 2}
    )
    job = job_manager().wait(job_id, timeout=300)
    assert job.status == "failed" and "Could not connect to the Ray cluster" in job.error
