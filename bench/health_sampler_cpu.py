"""CPU used by the health sampler thread, as a share of one core.

Goal (issue 13): under 1% of one core. The process's CPU time while the sampler runs at its default 5 s
interval for `--seconds` is compared with an idle reference of the same length in the same invocation; the
CPU cost of one sample, times the sampling rate, is printed beside it (it does not depend on machine load).
Run: `PYTHONPATH=. .venv/bin/python bench/health_sampler_cpu.py [--seconds 60] [--interval 5]`.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path


def process_cpu_during(seconds: float) -> float:
    started_cpu, started = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return (time.process_time() - started_cpu) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="rmn-health-bench-"))
    os.environ["RMN_LORA_HOME"] = str(home)

    from evaluation.health import HealthSampler, sample

    sample(home)  # import psutil / pynvml once, outside both measurements
    idle = process_cpu_during(args.seconds)
    sampler = HealthSampler(home, interval=args.interval)
    busy = process_cpu_during(args.seconds)
    sampler.stop()
    count = len(sampler.history())
    started = time.process_time()
    for _ in range(50):
        sample(home)
    per_sample_ms = (time.process_time() - started) * 1000 / 50
    print(f"{count} samples at {args.interval:g} s over {args.seconds:g} s")
    print(f"process CPU, idle: {idle:.4%} of one core; with the sampler: {busy:.4%}")
    print(f"sampler's share: {max(0.0, busy - idle):.4%} of one core (goal < 1%)")
    print(f"one sample costs {per_sample_ms:.2f} ms of CPU -> {per_sample_ms / 1000 / args.interval:.4%} of a core")


if __name__ == "__main__":
    main()
