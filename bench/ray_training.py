"""Training throughput on Ray: 2 DDP workers against 1 worker, same job, same global batch, in one invocation.

For the record (issue 16): on a 2-core machine no speed-up is expected, since the two workers share the cores
the single worker used. A local Ray head (2 CPUs, loopback only) is started here and stopped at the end;
each configuration runs the console's Ray backend on the embedded SmolLM2-135M-Instruct and the demo Amazon
mapping dataset, and reports the trainer's own tokens/s (steps only) and the wall time including worker start.
Run: `PYTHONPATH=. .venv/bin/python bench/ray_training.py [--steps 8] [--batch 4]`.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault(
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"
)  # keep Ray on 127.0.0.1 (see tests/test_ray_training.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_head(temp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return head, f"127.0.0.1:{port}"
        if time.monotonic() > deadline or head.poll() is not None:
            raise SystemExit("the Ray head did not start")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rmn-ray-bench-"))
    os.environ["RMN_LORA_HOME"] = str(root / "registry")

    from services.demo import seed_demo
    from training.config import build_config
    from training.ray_backend import run_on_ray

    seed_demo()
    head, address = start_head(root / "ray")
    rows = []
    try:
        for workers in (1, 2, 1, 2):
            config = build_config(
                adapter_name=f"bench_{workers}",
                train_dataset="retailer_amazon_sft",
                max_steps=args.steps,
                epochs=None,
                batch_size=args.batch,
                max_seq_length=256,
                save_steps=1000,
                workers=workers,
            )
            started = time.perf_counter()
            result = run_on_ray(
                config, root / "jobs" / f"{workers}-{len(rows)}", stop=threading.Event(), resume=False, address=address
            )
            rows.append((workers, result.tokens_per_second, result.train_seconds, time.perf_counter() - started))
    finally:
        import ray

        ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=120)

    print(f"{args.steps} steps, global batch {args.batch}, embedded model, 2 CPUs")
    for workers, tokens_per_second, train_seconds, wall in rows:
        print(f"{workers} worker(s): {tokens_per_second:8.1f} tokens/s in training, {train_seconds:6.1f} s training, "
              f"{wall:6.1f} s wall (with worker start)")  # fmt: skip
    best = {w: max(t for x, t, _, _ in rows if x == w) for w in (1, 2)}
    print(f"2 workers / 1 worker (best runs): {best[2] / best[1]:.2f}x tokens/s")


if __name__ == "__main__":
    main()
