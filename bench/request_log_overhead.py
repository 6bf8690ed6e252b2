"""Generation latency with the inference request log on against off, in one invocation.

Goal (issue 13): logging makes a generation at most 1% slower. The same prompts are generated round-robin with
`RMN_LORA_REQUEST_LOG` on and off (the setting is read per request), on the embedded SmolLM2-135M-Instruct, and
the median latency of each side is compared; the log's own cost (building and queueing a record) is also timed
directly, since on a loaded machine the round-robin difference is mostly noise. The defaults (4 rounds of 4
prompts per side, 16 new tokens) take about 1-2 minutes on an idle 2-core machine, model load included.
Run: `PYTHONPATH=. .venv/bin/python bench/request_log_overhead.py [--rounds 4] [--tokens 16]`.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    began = time.perf_counter()
    os.environ["RMN_LORA_HOME"] = str(Path(tempfile.mkdtemp(prefix="rmn-log-bench-")) / "registry")

    from federation.engine import Activation, GenerationSettings, InferenceEngine, _log
    from federation.request_log import request_log
    from federation.spec import BaseRef
    from training.base_models import resolve_base_model

    base = BaseRef.from_info(resolve_base_model(None))
    engine = InferenceEngine()
    settings = GenerationSettings(max_new_tokens=args.tokens)
    prompts = [f"Map field 'clicks' with value '{n}' from Amazon to RMIS." for n in range(4)]
    engine.generate(base, prompts[0], settings, caller="bench")  # load once
    latencies: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for state in ("off", "on"):
            os.environ["RMN_LORA_REQUEST_LOG"] = "1" if state == "on" else "0"
            for prompt in prompts:
                started = time.perf_counter()
                engine.generate(base, prompt, settings, caller="bench")
                latencies[state].append((time.perf_counter() - started) * 1000)
    os.environ["RMN_LORA_REQUEST_LOG"] = "1"
    request_log().flush()
    records = sum(1 for _ in request_log().records())
    calls = 2000
    started = time.perf_counter()
    for _ in range(calls):
        _log(base.id, Activation(), "bench", 40, 24, 12.0, 300.0, None)
    per_record_ms = (time.perf_counter() - started) * 1000 / calls
    request_log().flush()
    on, off = statistics.median(latencies["on"]), statistics.median(latencies["off"])
    print(f"{len(latencies['on'])} generations per side, {args.tokens} new tokens max; {records} records logged")
    print(f"median latency, log off: {off:.1f} ms; log on: {on:.1f} ms; ratio {on / off:.4f} (goal <= 1.01)")
    print(
        f"cost of logging one request in the generating thread: {per_record_ms * 1000:.1f} us "
        f"= {per_record_ms / off:.5%} of a median generation"
    )
    print(f"bench wall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
