"""torch_compile's auto rule on real jobs: a preset's whole job trained eager and compiled on the embedded
SmolLM2-135M-Instruct and the demo data, with what auto decides for it.

Each run is one job through the console's local backend (`training.data_parallel.run_local`: data-parallel where
`JobConfig.processes` says so, as the console trains it) in its own process, so each has a fresh inductor state.
Compiled runs keep inductor's on-disk cache in one folder (`--inductor-cache`): `cold` empties it first (a machine
that never compiled this graph), `compiled` finds it as the last compiled run left it (warm). It prints the job's
planned training work (the figure the auto rule reads, `JobConfig.compiles`), what auto decided, the training time
from the first step to the last (the compile is in it), its first 3 steps, the whole run from start to result
(processes' start and model load included) and the load average; then the median time of each kind against eager.
The rule is right for a job when auto picked the faster side. The runs can be split over several invocations (the
lines are what to compare; the medians cover one invocation). Run: `PYTHONPATH=. .venv/bin/python
bench/compile_rule.py [--preset "retailer mapping (fast)"] [--runs eager,cold,compiled,eager] [--max-steps N]`.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DATASETS = {
    "quick demo": ("retailer", "retailer_amazon_sft"),
    "retailer mapping (fast)": ("retailer", "retailer_amazon_sft"),
    "campaign planning": ("task", "task_planning_sft"),
}
MODES = {"auto": "auto", "eager": "off", "cold": "on", "compiled": "on"}


def child(preset: str, compile_mode: str, max_steps: int | None) -> dict:
    from services.demo import seed_demo
    from training.config import build_config
    from training.data_parallel import run_local

    home = Path(tempfile.mkdtemp(prefix="rmn-compile-rule-"))
    os.environ["RMN_LORA_HOME"] = str(home / "registry")
    seed_demo()
    adapter_type, dataset = DATASETS[preset]
    values = {"max_steps": max_steps, "epochs": None} if max_steps else {}
    config = build_config(
        preset,
        adapter_type=adapter_type,
        adapter_name="compile_rule",
        train_dataset=dataset,
        torch_compile=compile_mode,
        save_steps=1_000_000,
        **values,
    )
    result = run_local(config, home / "job", stop=threading.Event(), resume=False)
    log = (home / "job" / "train.log").read_text(encoding="utf-8")
    decision = next(line for line in log.splitlines() if "Compile is " in line)
    processes = next((line for line in log.splitlines() if "Data parallel is" in line), "")
    lines = [json.loads(line) for line in (home / "job" / "metrics.jsonl").read_text().splitlines()]
    elapsed = {line["step"]: line["elapsed"] for line in lines if "loss" in line}
    efficiency = [line["efficiency"] for line in lines if line.get("efficiency") is not None]
    shutil.rmtree(home, ignore_errors=True)
    return {
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        "first_3": elapsed.get(3, 0.0),
        "decision": decision[decision.index("Compile is ") :],
        "processes": processes[processes.index("Data parallel is ") :] if processes else "",
        "planned_tflop": float(m.group(1)) if (m := re.search(r"about ([\d.]+) TFLOP", log)) else None,
        "tokens_per_second": result.tokens_per_second,
        "efficiency": efficiency[-1] if efficiency else None,
    }


def run(args: argparse.Namespace, mode: str) -> dict:
    cache = Path(args.inductor_cache)
    if mode == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, __file__, "--child", MODES[mode], "--preset", args.preset]
    command += ["--max-steps", str(args.max_steps)] if args.max_steps else []
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "RMN_LORA_AUTO_EVALUATE": "0",
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{mode} run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "wall": time.monotonic() - started}


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="retailer mapping (fast)", choices=tuple(DATASETS))
    parser.add_argument("--max-steps", type=int, help="cut the preset's job to this many steps")
    parser.add_argument("--runs", default="auto,eager,cold,compiled", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument(
        "--inductor-cache", default=str(Path(tempfile.gettempdir()) / "rmn-compile-rule-inductor"), help="its folder"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.preset, args.child, args.max_steps)), flush=True)
        return
    runs = args.runs.split(",")
    if unknown := set(runs) - set(MODES):
        parser.error(f"unknown runs {', '.join(sorted(unknown))}: choose from {', '.join(MODES)}")
    print(f"{args.preset}{f', {args.max_steps} steps' if args.max_steps else ''}; inductor cache {args.inductor_cache}")
    times: dict[str, list[float]] = {}
    for mode in runs:
        load = os.getloadavg()[0]
        result = run(args, mode)
        label = ("compiled" if "Compiling" in result["decision"] else "eager") if mode == "auto" else mode
        times.setdefault(label, []).append(result["train_seconds"])
        efficiency = f"{result['efficiency']:.0%}" if result["efficiency"] is not None else "-"
        print(
            f"  {mode:<8} {result['steps']} steps in {result['train_seconds']:6.1f} s (first 3 steps "
            f"{result['first_3']:5.1f} s; run {result['wall']:6.1f} s), {result['tokens_per_second']:6.1f} tok/s, "
            f"{efficiency} of the peak; load {load:.2f} -> {os.getloadavg()[0]:.2f}\n"
            f"           {result['processes']} | {result['decision']}"
        )
    if "eager" in times:
        eager = statistics.median(times["eager"])
        for label in ("cold", "compiled"):
            if label in times:
                print(f"whole job: {label} / eager training time = {statistics.median(times[label]) / eager:.3f}x")


if __name__ == "__main__":
    main()
