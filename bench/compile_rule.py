"""torch_compile's auto rule on real jobs: a preset's whole job trained eager and compiled, alternately, on the embedded
SmolLM2-135M-Instruct and the demo data, with what auto decides for it.

Each run is one job through the worker in its own process (a fresh inductor state; the on-disk inductor cache stays
warm after the first compiled run, as on a machine that has compiled once). It prints the job's planned training
work (the figure the auto rule reads, `JobConfig.compiles`), what auto decided, and the training time from the first
step to the last (the compile is in it) and the first steps' share; then the median ratio. The rule is right for a
job when auto picked the faster side. Run: `PYTHONPATH=. .venv/bin/python bench/compile_rule.py [--preset
"retailer mapping (fast)"] [--max-steps N] [--rounds 1] [--threads N]`.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

DATASETS = {
    "quick demo": ("retailer", "retailer_amazon_sft"),
    "retailer mapping (fast)": ("retailer", "retailer_amazon_sft"),
    "campaign planning": ("task", "task_planning_sft"),
}


def child(preset: str, compile_mode: str, max_steps: int | None) -> dict:
    from services.demo import seed_demo
    from training.config import build_config
    from training.worker import run_training

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
    result = run_training(config, home / "job", stop=threading.Event())
    log = (home / "job" / "train.log").read_text(encoding="utf-8")
    decision = next(line for line in log.splitlines() if "Compile is " in line)
    lines = [json.loads(line) for line in (home / "job" / "metrics.jsonl").read_text().splitlines()]
    elapsed = {line["step"]: line["elapsed"] for line in lines if "loss" in line}
    return {
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        "first_3": elapsed.get(3, 0.0),
        "decision": decision[decision.index("Compile is ") :],
        "planned_tflop": float(m.group(1)) if (m := re.search(r"about ([\d.]+) TFLOP", log)) else None,
        "tokens_per_second": result.tokens_per_second,
    }


def run(args: argparse.Namespace, mode: str) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--preset", args.preset]
    command += ["--max-steps", str(args.max_steps)] if args.max_steps else []
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "RMN_LORA_AUTO_EVALUATE": "0",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}),
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{mode} run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="retailer mapping (fast)", choices=tuple(DATASETS))
    parser.add_argument("--max-steps", type=int, help="cut the preset's job to this many steps")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.preset, args.child, args.max_steps)), flush=True)
        return
    auto = run(args, "auto")  # what auto decides, and its time (one side of the comparison already)
    compiled = "Compiling" in auto["decision"]
    print(f"{args.preset}{f', {args.max_steps} steps' if args.max_steps else ''}: {auto['decision']}")
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    runs = [("compiled" if compiled else "eager", auto)]
    runs.append(("eager", run(args, "off")) if compiled else ("compiled", run(args, "on")))
    for _ in range(1, args.rounds):
        runs += [("eager", run(args, "off")), ("compiled", run(args, "on"))]
    for label, result in runs:
        times[label].append(result["train_seconds"])
        print(
            f"  {label:<9} {result['steps']} steps in {result['train_seconds']:6.0f} s (first 3 steps "
            f"{result['first_3']:4.0f} s), {result['tokens_per_second']:6.1f} tok/s, load average "
            f"{os.getloadavg()[0]:.2f} after"
        )
    eager, compiled_time = statistics.median(times["eager"]), statistics.median(times["compiled"])
    faster = "compiled" if compiled_time < eager else "eager"
    print(
        f"whole job: compiled / eager time = {compiled_time / eager:.2f}x ({faster} faster); auto chose "
        f"{'compiled' if compiled else 'eager'}: {'right' if (faster == 'compiled') == compiled else 'wrong'}"
    )


if __name__ == "__main__":
    main()
