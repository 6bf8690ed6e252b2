"""What the training stack's background import costs the pages of the same server, as a ratio in one invocation.

A page's first run imports pandas and plotly before it draws. Each round runs that in a fresh interpreter twice:
alone, and while `warm_training_stack()` imports torch, transformers, PEFT and TRL in its (niced) thread. The thread
holds the GIL while it imports, so the ratio says how much slower a page gets while the warm-up runs; it is why only
the pages that submit jobs (Training Jobs, Train Model) start the warm-up.

Run: `PYTHONPATH=. .venv/bin/python bench/warmup_interference.py [--rounds 5]`
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = """
import sys, time
from services import runtime
if sys.argv[1] == "warming":
    runtime.warm_training_stack()
    time.sleep(0.2)  # the thread is importing
start = time.perf_counter()
import pandas, plotly.express  # what a page imports before it draws
print(time.perf_counter() - start, runtime.training_stack_ready())
"""


def page_imports(mode: str, home: str) -> tuple[float, bool]:
    env = {**os.environ, "RMN_LORA_HOME": home, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PAGE, mode], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), out[1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    alone, warming, overlapped = [], [], 0
    with tempfile.TemporaryDirectory() as home:
        for _ in range(args.rounds):
            alone.append(page_imports("alone", home)[0])
            seconds, finished_first = page_imports("warming", home)
            warming.append(seconds)
            overlapped += not finished_first
    load = os.getloadavg()[0]
    print(f"page imports (pandas, plotly.express), median of {args.rounds} (load average {load:.1f})")
    print(
        f"alone: {statistics.median(alone):.2f} s; while the training stack imports: {statistics.median(warming):.2f} s"
    )
    print(
        f"ratio {statistics.median(warming) / statistics.median(alone):.2f}x ({overlapped} of {args.rounds} rounds ended before the stack)"
    )


if __name__ == "__main__":
    main()
