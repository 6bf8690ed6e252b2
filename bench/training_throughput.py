"""Training speed of our worker against plain and tuned TRL runs, its efficiency, and QLoRA's memory.

Issue 3's goals: our SFT path (length-grouped batches, a bf16 base and autocast where the CPU computes bf16
natively, no default system prompt, the LM head projected on answer positions only) trains at >= 1.2x the
tokens/s of a plain `SFTTrainer` + `LoraConfig` script (no packing, fp32) with the same model, data and
hyperparameters, and never below 0.95x; a 4-bit QLoRA job peaks at no more than half the memory of the same
job in full precision. Issue 18's goals: at least 1.2x (never below 0.95x) the faster of two tuned TRL runs
(bf16 where native, no activation checkpointing, and TRL's packed padding-free batches or length-grouped
ones); useful FLOP/s at >= 60% of the matmul peak measured in the same run in the dtype training computes in
(bf16 where the CPU has AVX512-BF16 or AMX; elsewhere bf16 matmuls are emulated, slower than fp32, and every run
trains in fp32, so the like-for-like peak is fp32's); a 4-bit load peaking at
<= 1.5x the loaded 4-bit model and <= 0.6x the full-precision load (1.7B shape); 2 QLoRA steps of a 7B-shape
model under 12 GB for the whole process.

Every speed run trains with the same LoRA hyperparameters (r 16, alpha 32); lora_dropout is 0.0, the default of PEFT's
LoraConfig and of our JobConfig and what the presets that train data-parallel use, unless `--lora-dropout P` sets
another value for every run (the presets that make several passes use 0.05: quote both).
Speed: tokens/s = supervised tokens (labels != -100, i.e. answer tokens, the same set in both runs since
the examples are the same) fed to the optimizer steps after the first few, over the wall time of those
steps. Input tokens/s (non-padding tokens in the batches) and examples/s are printed too. The plain script
runs without activation checkpointing, which TRL's SFTConfig turns on by default: that reference is the
stricter plain one; `--trl-defaults` also runs the script with TRL's default. Efficiency: useful FLOPs
(`training/flops.py`: decoder on non-padding tokens, LM head on answer tokens, frozen base) of the timed
steps over their wall time, against fp32 and bf16 matmul peaks measured in the same process just before: the
best single 1024x1024 matrix multiply over 2 s with the run's threads (a momentary figure: on a shared machine the
training that follows may not get every core for long, so the share is a floor there).
Memory: peak RSS of the whole process (psutil, sampled every 20 ms) while `trainer.train()` runs, model
loaded; and the same minus the baseline, the process RSS after importing torch, transformers, PEFT, TRL and
bitsandbytes (the fixed cost no quantization can touch, most of the peak on the 135M model). Both memory runs
use the "qlora low memory" preset's batch size (2) and activation checkpointing, without gradient
accumulation, so weights rather than activations decide the difference. `--memory-model 1.7b` adds the
same comparison on a Llama of SmolLM2-1.7B's shape (hidden 2048, 24 layers, MLP 8192, 32 heads, tied
embeddings, vocab 49152) with random weights, built offline as an fp32 safetensors folder with the embedded
model's tokenizer in a temp folder and trained as a local base model through the worker (2 steps, batch 2,
128 tokens), where the weights dominate, with the load goals. `--memory-model 7b` trains 2 QLoRA steps on a
Llama of Llama-2-7B's shape (bf16 shards, 13.8 GB of disk in a temp folder) and reports the whole-process peak.
Memory runs run one at a time; the 1.7B full-precision one needs about 8 GB free. `--memory-only` skips
the speed runs.
`--ab threads|dropout|compile` times only our run under two settings, alternating in one invocation (1 against
2 threads; lora_dropout 0 against 0.05; eager against torch.compile of the decoder layers, whose compile falls in the
untimed first steps and is printed apart, in one process or, `compile-processes`, in 2 single-thread processes; one
process of 2 threads against 2 single-thread processes training data-parallel, DDP over gloo on loopback with the
batch split between them, whose figures are the sum of both and whose peak is the sum of both processes'
single-thread peaks; fp32 against a bf16 base under bf16 autocast, both as
data_parallel trains, in 2 single-thread processes), and prints the median ratio; `--overrides JSON` sets
JobConfig values for both sides. `--ab local-processes` trains whole `--steps`-step jobs through the console's local
backend (`training.data_parallel.run_local`) with data_parallel off and on, alternating, and compares the whole
job's wall time (processes' start and model load included) and the job's own tokens/s and efficiency (the job card's
figures, summed over its processes). The speed comparison also runs ours as data_parallel trains it (one
single-thread process per core, the batch split) and compares it with the tuned TRL run and ours in one process.
Both runs of ours train as torch_compile's auto trains the jobs long enough to repay compiling (the preset jobs,
`JobConfig.compiles`; bench/compile_rule.py times whole jobs both ways): decoder layers compiled where a C++ compiler
exists; the compile falls in the untimed first steps, whose time is printed.
Every run is its own subprocess, with OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads stall each other on
a shared 2-core machine). Run:
`PYTHONPATH=. .venv/bin/python bench/training_throughput.py [--steps 16] [--lora-dropout 0.05] [--trl-defaults] [--tiny]
[--memory-model 1.7b|7b] [--memory-only | --speed-only] [--model-cache DIR] [--ab threads|dropout|compile|compile-processes|processes|precision|local-processes --rounds N
[--overrides JSON]]`.
"""

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WARMUP_STEPS = 3
DATASET = "retailer_amazon_sft"
# lora_dropout is 0.0 unless `--lora-dropout` says otherwise: the default of both PEFT's LoraConfig and our JobConfig,
# and what the presets that train data-parallel use; every run (plain, tuned TRL, ours) takes the same value.
HYPER = {
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "learning_rate": 2e-4,
    "batch_size": 8,
    "max_seq_length": 256,
    "seed": 42,
}
# Both memory runs use the "qlora low memory" preset's batch size and activation checkpointing.
MEMORY = {"batch_size": 2, "gradient_checkpointing": True}
# Random-weight Llamas built offline for the memory runs, on top of the embedded SmolLM2-135M's config (so its
# tokenizer fits): SmolLM2-1.7B's shape (its config.json on the Hub), stored in fp32 as that model's users load
# it, and Llama-2-7B's shape (hidden 4096, 32 layers, MLP 11008, untied embeddings) in bf16, as 7B checkpoints
# ship, with the embedded tokenizer's vocabulary (6.9B parameters, 13.8 GB).
LARGE_SHAPES = {
    "1.7b": {
        "hidden_size": 2048,
        "num_hidden_layers": 24,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "head_dim": 64,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "rope_parameters": {"rope_theta": 130000.0, "rope_type": "default"},
    },
    "7b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "head_dim": 128,
        "vocab_size": 49152,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    },
}
LARGE_DTYPES = {"1.7b": "float32", "7b": "bfloat16"}
LARGE_RUN = {"max_seq_length": 128}
LARGE_STEPS = 2
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")


class BatchCounter:
    """Wraps a data collator and records, per batch, its answer tokens and its sequences' unpadded lengths (a packed
    row holds several sequences: their position ids restart at 0)."""

    def __init__(self, collator: Any):
        self.collator = collator
        self.batches: list[tuple[int, list[int]]] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        from training.flops import answer_tokens, sequence_lengths

        batch = self.collator(features)
        self.batches.append((answer_tokens(batch), sequence_lengths(batch)))
        return batch


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and the process's CPU time at the end of every optimizer step."""

        def __init__(self) -> None:
            self.ends: list[float] = []
            self.cpu: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.ends:
                self.ends.append(time.perf_counter())
                self.cpu.append(time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepTimer()


def prepare(home: Path, tiny: bool) -> str:
    """Seed the demo registry in `home` and return the base model reference (empty for the embedded model)."""
    os.environ["RMN_LORA_HOME"] = str(home)
    from services.demo import seed_demo

    seed_demo()
    if not tiny:
        return ""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_model import build_tiny_model

    return str(build_tiny_model(home / "tiny-model", hidden_size=128, layers=4))


def build_large_model(folder: Path, size: str) -> Path:
    """Save a random-weight Llama of LARGE_SHAPES[size] to `folder`, one safetensors shard per layer.

    Tensors are made one layer at a time from the meta-device model's names and shapes, so building needs
    about one layer's memory rather than the model's; the tokenizer is the embedded model's.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.base_models import resolve_base_model

    source = resolve_base_model(None).path
    config_file = source / "config.json"
    values = {**json.loads(config_file.read_text(encoding="utf-8")), **LARGE_SHAPES[size], "dtype": LARGE_DTYPES[size]}
    dtype = getattr(torch, LARGE_DTYPES[size])
    config = LlamaConfig(**{key: value for key, value in values.items() if not key.startswith("_")})
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
        tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
        shapes = {name: tensor.shape for name, tensor in model.state_dict().items() if name not in tied}
    folder.mkdir(parents=True)
    groups: dict[str, list[str]] = {}
    for name in shapes:
        parts = name.split(".")
        groups.setdefault(f"layer-{int(parts[2]):02d}" if parts[1] == "layers" else "other", []).append(name)
    generator = torch.Generator().manual_seed(0)
    weight_map = {}
    for group, names in groups.items():
        shard = f"model-{group}.safetensors"
        tensors = {
            name: torch.ones(shapes[name], dtype=dtype)
            if name.endswith("norm.weight")
            else (torch.randn(shapes[name], generator=generator) * config.initializer_range).to(dtype)
            for name in names
        }
        save_file(tensors, folder / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, shard))
        del tensors
    total = dtype.itemsize * sum(shape.numel() for shape in shapes.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    config.save_pretrained(folder)  # last: a cached build without config.json was interrupted
    return folder


def bench_config(base: str, steps: int, **overrides: Any) -> Any:
    """The bench's job: the shared hyperparameters on the bench dataset for `steps` steps, no checkpoint, no warm-up."""
    from training.config import build_config

    return build_config(
        adapter_name="bench",
        train_dataset=DATASET,
        base_model=base or None,
        max_steps=steps,
        epochs=None,
        save_steps=10 * steps,
        warmup_ratio=0.0,
        **{**HYPER, **overrides},
    )


def our_trainer(base: str, steps: int, job_dir: Path, **overrides: Any) -> Any:
    from training.worker import build_trainer, preflight

    trainer, _ = build_trainer(preflight(bench_config(base, steps, logging_steps=steps, **overrides)), job_dir)
    return trainer


def plain_trainer(base: str, steps: int, job_dir: Path, checkpointing: bool) -> Any:
    """What a plain PEFT + TRL script does: default SFTConfig apart from the shared hyperparameters, fp32."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset
    from training.base_models import resolve_base_model
    from training.formatting import format_records, iter_canonical, resolve_dataset

    path = resolve_base_model(base or None).path
    source = resolve_dataset(DATASET)
    examples = format_records(iter_canonical(source), source.kind, "sft").examples
    args = SFTConfig(
        output_dir=str(job_dir),
        per_device_train_batch_size=HYPER["batch_size"],
        learning_rate=HYPER["learning_rate"],
        max_steps=steps,
        max_length=HYPER["max_seq_length"],
        seed=HYPER["seed"],
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=steps,
        disable_tqdm=True,
        gradient_checkpointing=checkpointing,
    )
    lora = LoraConfig(
        r=HYPER["lora_r"],
        lora_alpha=HYPER["lora_alpha"],
        lora_dropout=HYPER["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=lora,
    )


def tuned_trainer(base: str, steps: int, job_dir: Path, packed: bool) -> Any:
    """What a user who knows TRL would run: bf16 where the CPU computes it natively, no activation checkpointing
    (a 135M model fits), SDPA attention, loss on the completion only (TRL's default for prompt-completion data),
    and batches without padding work: packed padding-free rows (TRL's best-fit-decreasing packing; without a
    varlen attention kernel, as on CPU, SDPA attends over the whole packed row under a block mask) or, the CPU
    alternative, length-grouped batches. Same model, data and hyperparameters."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset
    from training.base_models import resolve_base_model
    from training.formatting import format_records, iter_canonical, resolve_dataset
    from training.worker import native_bf16

    bf16 = native_bf16("cpu")
    path = resolve_base_model(base or None).path
    source = resolve_dataset(DATASET)
    examples = format_records(iter_canonical(source), source.kind, "sft").examples
    args = SFTConfig(
        output_dir=str(job_dir),
        per_device_train_batch_size=HYPER["batch_size"],
        learning_rate=HYPER["learning_rate"],
        max_steps=steps,
        max_length=HYPER["max_seq_length"],
        seed=HYPER["seed"],
        bf16=bf16,
        use_cpu=True,
        packing=packed,
        packing_strategy="bfd",
        train_sampling_strategy="random" if packed else "group_by_length",
        gradient_checkpointing=False,
        save_strategy="no",
        report_to="none",
        logging_steps=steps,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=HYPER["lora_r"],
        lora_alpha=HYPER["lora_alpha"],
        lora_dropout=HYPER["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=lora,
    )


def speed_child(kind: str, base: str, steps: int, work: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    import torch

    from training.flops import matmul_peak, model_cost

    if kind == "ours":
        trainer = our_trainer(base, steps, work / "job", **overrides)
    elif kind.startswith("tuned-"):
        trainer = tuned_trainer(base, steps, work / "job", packed=kind == "tuned-packed")
    else:
        trainer = plain_trainer(base, steps, work / "job", checkpointing=kind == "plain-defaults")
    counter, timer = BatchCounter(trainer.data_collator), step_timer()
    trainer.data_collator = counter
    trainer.add_callback(timer)
    cost = model_cost(trainer.model, checkpointing=bool(trainer.args.gradient_checkpointing))
    # The peaks right before training, in the same process and thread settings, so the load matches.
    peaks = {name: matmul_peak(getattr(torch, name), seconds=2.0) for name in ("float32", "bfloat16")}
    trainer.train()
    measured = counter.batches[WARMUP_STEPS:steps]
    seconds = timer.ends[steps] - timer.ends[WARMUP_STEPS]
    return {
        "kind": kind,
        "seconds": seconds,
        "warmup_seconds": timer.ends[WARMUP_STEPS] - timer.ends[0],
        # CPU seconds a timed step takes: other processes' load stretches wall time far more than this.
        "cpu_per_step": (timer.cpu[steps] - timer.cpu[WARMUP_STEPS]) / len(measured),
        "steps": len(measured),
        "tokens_per_s": sum(answers for answers, _ in measured) / seconds,
        "input_tokens_per_s": sum(sum(lengths) for _, lengths in measured) / seconds,
        "examples_per_s": sum(len(lengths) for _, lengths in measured) / seconds,
        "flops_per_s": sum(cost.flops(lengths, answers) for answers, lengths in measured) / seconds,
        "peaks": peaks,
        "bf16": bool(trainer.args.bf16),
        "packed": bool(getattr(trainer.args, "packing", False)),
        "checkpointing": bool(trainer.args.gradient_checkpointing),
    }


def job_child(data_parallel: str, base: str, steps: int, work: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """A whole job through the console's local backend (`run_local`: the process rule, the ranks it spawns, the job
    folder), timed from the call to its return (processes' start, model load and tokenizing included), with the
    job's own figures as the card shows them (rates summed over its processes)."""
    from training.data_parallel import run_local

    config = bench_config(base, steps, data_parallel=data_parallel, **overrides)
    started = time.perf_counter()
    result = run_local(config, work / "job", stop=threading.Event(), resume=False)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in (work / "job" / "metrics.jsonl").read_text().splitlines()]
    last = [line for line in lines if "loss" in line][-1]
    log = (work / "job" / "train.log").read_text(encoding="utf-8")
    return {
        "kind": f"job-{data_parallel}",
        "wall_seconds": wall,
        "train_seconds": result.train_seconds,
        "tokens_per_second": result.tokens_per_second,
        "flops_per_second": last["flops_per_second"],
        "efficiency": last["efficiency"],
        "decision": next(line.split(" ", 2)[2] for line in log.splitlines() if "Data parallel is" in line),
    }


def memory_child(quantization: str, base: str, steps: int, work: Path, **overrides: Any) -> dict[str, Any]:
    """Peak RSS during train(), with the RSS at start, after the imports, with the model loaded and its peak
    while loading (the whole mapped checkpoint is resident then, even for 4-bit; those pages are clean and
    reclaimable, so loading does not need that much free RAM)."""
    import resource

    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    import bitsandbytes  # noqa: F401  # imported by quantized loading; counted as fixed cost for both runs
    import peft  # noqa: F401
    import trl  # noqa: F401

    import training.worker  # noqa: F401

    imports = process.memory_info().rss
    # Full precision means fp32 weights: on a CPU with native bf16 the default loads the frozen base in bf16.
    precision = {"precision": "fp32"} if quantization == "none" else {}
    started = time.perf_counter()
    trainer = our_trainer(base, steps, work / "job", quantization=quantization, **{**MEMORY, **precision, **overrides})
    load_seconds = time.perf_counter() - started
    loaded = process.memory_info().rss
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # transformers maps full-precision weights lazily: they become resident when first read, i.e. in the first
    # step. Reading one value per page of every weight shows what holding the full-precision model costs.
    for param in trainer.model.parameters():
        float(param.data.reshape(-1)[:: max(4096 // param.element_size(), 1)].float().sum())
    resident = process.memory_info().rss
    peak = [loaded]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "kind": quantization,
        "peak_rss": peak[0],
        "before_model": before,
        "after_imports": imports,
        "loaded": loaded,
        "load_peak": load_peak,
        "weights_resident": resident,
        "process_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "load_seconds": load_seconds,
        "train_seconds": train_seconds,
    }


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="rmn-bench-train-") as folder:
        work = Path(folder)
        base = prepare(work / "home", args.tiny)
        if args.child.startswith("large-memory-"):
            kind = args.child.removeprefix("large-memory-")
            result = memory_child(kind, args.base, LARGE_STEPS, work, **LARGE_RUN)
        elif args.child.startswith("memory-"):
            result = memory_child(args.child.removeprefix("memory-"), base, args.memory_steps, work)
        elif args.child.startswith("job-"):
            result = job_child(args.child.removeprefix("job-"), base, args.steps, work, args.overrides)
        else:
            result = speed_child(args.child, base, args.steps, work, args.overrides)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(
    kind: str,
    args: argparse.Namespace,
    base: Path | None = None,
    threads: int | None = None,
    overrides: dict[str, Any] | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """One child run; with `processes` > 1, that many children train data-parallel (DDP over gloo on loopback, the
    global batch split evenly) and the result is their sum (rates, CPU time, peaks: the peaks of both cores)."""
    if processes > 1:
        overrides = {**(overrides or {}), "batch_size": HYPER["batch_size"] // processes}
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--steps",
        str(args.steps),
        "--memory-steps",
        str(args.memory_steps),
        *(["--tiny"] if args.tiny else []),
        *(["--base", str(base)] if base else []),
        *(["--overrides", json.dumps(overrides)] if overrides else []),
        "--lora-dropout",
        str(HYPER["lora_dropout"]),
    ]
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
    }
    if processes > 1:
        with socket.socket() as probe:  # a free loopback port for the process group
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ranks = [
            {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(processes),
                "LOCAL_WORLD_SIZE": str(processes),
            }
            for rank in range(processes)
        ]
        group = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        children = [
            subprocess.Popen(
                command, env={**env, **rank, **group}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for rank in ranks
        ]
        results = [_child_result(kind, child.returncode, *child.communicate()) for child in children]
        summed = ("tokens_per_s", "input_tokens_per_s", "examples_per_s", "flops_per_s", "cpu_per_step")
        return {
            **results[0],
            **{key: sum(result[key] for result in results) for key in summed},
            "warmup_seconds": max(result["warmup_seconds"] for result in results),
            "peaks": {name: sum(result["peaks"][name] for result in results) for name in results[0]["peaks"]},
        }
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return _child_result(kind, done.returncode, done.stdout, done.stderr)


def _child_result(kind: str, returncode: int | None, stdout: str, stderr: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if returncode or not lines:
        raise SystemExit(f"{kind} run failed ({returncode}):\n{stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows in a log file while the long runs go on
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per speed run")
    parser.add_argument("--memory-steps", type=int, default=6, help="optimizer steps per memory run")
    parser.add_argument("--trl-defaults", action="store_true", help="also time the plain script with TRL's defaults")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of SmolLM2 (quick check)")
    parser.add_argument(
        "--memory-model",
        choices=("135m", "1.7b", "7b"),
        default="135m",
        help="1.7b: also compare memory on a random-weight Llama of SmolLM2-1.7B's shape (~15 min, 6.4 GB of disk); "
        "7b: also train 2 QLoRA steps on one of Llama-2-7B's shape (bf16, 13.8 GB of disk; ~1 h on 2 cores)",
    )
    parser.add_argument("--memory-only", action="store_true", help="skip the speed runs")
    parser.add_argument("--speed-only", action="store_true", help="skip the memory runs")
    parser.add_argument(
        "--model-cache",
        help="folder that keeps the random-weight 1.7B / 7B builds between invocations (default: a temp folder "
        "removed after the run); delete it when done",
    )
    parser.add_argument(
        "--ab",
        choices=tuple(AB),
        help="only time ours under two settings, alternating, and print their ratio: threads (2 against 1), dropout "
        "(lora_dropout 0.05 against 0), compile (torch.compile against eager; compile-processes: both in two "
        "single-thread processes, as data_parallel trains), processes (two single-thread DDP "
        "processes, batch split between them, against one process of two threads), precision (bf16 against fp32, in "
        "two single-thread processes), local-processes (whole jobs through the console's local backend, data_parallel "
        "on against off)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --ab: runs of each setting")
    parser.add_argument("--threads", type=int, help="with --ab dropout or compile: torch threads (default: all cores)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--overrides",
        type=json.loads,
        default={},
        help='with --ab: JobConfig settings for both sides, as JSON (e.g. \'{"torch_compile": "on"}\')',
    )
    parser.add_argument(
        "--lora-dropout",
        type=float,
        default=HYPER["lora_dropout"],
        help="LoRA dropout of every run, plain, tuned TRL and ours (default 0.0, PEFT's and JobConfig's default; the "
        "presets that make several passes use 0.05)",
    )
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    HYPER["lora_dropout"] = args.lora_dropout
    if args.child:
        child(args)
        return
    model = "tiny random Llama" if args.tiny else "SmolLM2-135M-Instruct"
    if args.ab == "local-processes":
        local_processes(model, args)
        return
    if args.ab:
        ab(model, args)
        return
    if not args.memory_only:
        speed(model, args)
    if args.speed_only:
        return
    if args.memory_model != "7b":  # the 7B run is long enough on its own
        report_memory(
            model,
            {kind: run_child(f"memory-{kind}", args) for kind in ("none", "4bit")},
            f"{args.memory_steps} steps, batch {MEMORY['batch_size']}, max_len {HYPER['max_seq_length']}",
        )
    if args.memory_model == "1.7b":
        with large_model("1.7b", args.model_cache) as base:
            runs = {kind: run_child(f"large-memory-{kind}", args, base) for kind in ("none", "4bit")}
        setup = f"{LARGE_STEPS} steps, batch {MEMORY['batch_size']}, max_len {LARGE_RUN['max_seq_length']}"
        report_memory("Llama of SmolLM2-1.7B's shape, random weights", runs, setup)
        report_load(runs)
    if args.memory_model == "7b":
        with large_model("7b", args.model_cache) as base:
            run = run_child("large-memory-4bit", args, base)
        report_7b(run)


@contextlib.contextmanager
def large_model(size: str, cache: str | None) -> Iterator[Path]:
    """A random-weight Llama of LARGE_SHAPES[size]: in a temp folder removed afterwards (it takes GBs of disk), or
    in `cache`/<size>, built once and kept for the next invocation (delete that folder when done)."""
    if cache:
        folder = Path(cache) / size
        if not (folder / "config.json").is_file():  # written last: a folder without it is an interrupted build
            shutil.rmtree(folder, ignore_errors=True)
            _build_and_report(folder, size)
        else:
            print(f"using the random-weight {size}-shape Llama built before in {folder}")
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"rmn-bench-{size}-") as temp:
        yield _build_and_report(Path(temp) / "model", size)


def _build_and_report(folder: Path, size: str) -> Path:
    started = time.perf_counter()
    base = build_large_model(folder, size)
    size_gb = sum(file.stat().st_size for file in base.glob("*.safetensors")) / 1e9
    print(
        f"built the random-weight {size}-shape Llama ({LARGE_DTYPES[size]}, {size_gb:.1f} GB in "
        f"{len(list(base.glob('*.safetensors')))} shards) in {time.perf_counter() - started:.0f} s"
    )
    return base


def speed(model: str, args: argparse.Namespace) -> None:
    print(
        f"{model}, {DATASET}, r={HYPER['lora_r']} alpha={HYPER['lora_alpha']} lora_dropout={HYPER['lora_dropout']} "
        f"lr={HYPER['learning_rate']} "
        f"batch={HYPER['batch_size']} max_len={HYPER['max_seq_length']}, {args.steps} steps "
        f"(first {WARMUP_STEPS} not timed)"
    )
    kinds = ("plain", "tuned-packed", "tuned-grouped", "ours", *(("plain-defaults",) if args.trl_defaults else ()))
    # Ours as torch_compile's auto trains the jobs long enough to repay compiling (the preset jobs): decoder layers
    # compiled, where a C++ compiler exists; the compile falls in the untimed first steps and is printed apart.
    from training.regional_compile import compiler_missing

    compiled = compiler_missing() is None
    as_auto = {"torch_compile": "on" if compiled else "off"}
    runs = {kind: run_child(kind, args, overrides=as_auto if kind == "ours" else None) for kind in kinds}
    # Ours as data_parallel trains it: one single-thread process per core, the batch split (the same rank setup as
    # training.data_parallel), figures summed over the processes.
    cores = min(len(os.sched_getaffinity(0)), HYPER["batch_size"])
    if cores > 1:
        kinds += ("ours-parallel",)
        runs["ours-parallel"] = run_child("ours", args, threads=1, processes=cores, overrides=as_auto)
    precision = {kind: "bf16" if run["bf16"] else "fp32" for kind, run in runs.items()}
    mode = "compiled" if compiled else "eager"
    labels = {
        "plain": "plain, no checkpointing, fp32",
        "tuned-packed": f"tuned TRL, packed padding-free, {precision['tuned-packed']}",
        "tuned-grouped": f"tuned TRL, length-grouped, {precision['tuned-grouped']}",
        "ours": f"ours (length-grouped, {precision['ours']}, {mode})",
        "ours-parallel": f"ours, {cores} single-thread processes, {mode}",
        "plain-defaults": "plain TRL defaults (activation checkpointing on), fp32",
    }
    for kind in kinds:
        run, label = runs[kind], labels[kind]
        peak = run["peaks"]["bfloat16" if run["bf16"] else "float32"]
        print(
            f"  {label:<48} {run['tokens_per_s']:7.1f} answer tok/s {run['input_tokens_per_s']:7.1f} input tok/s"
            f" {run['examples_per_s']:5.2f} ex/s  {run['flops_per_s'] / 1e9:6.1f} GFLOP/s = "
            f"{run['flops_per_s'] / peak:4.0%} of the {precision[kind]} matmul peak {peak / 1e9:.1f} "
            f"(fp32 {run['peaks']['float32'] / 1e9:.1f}, bf16 {run['peaks']['bfloat16'] / 1e9:.1f})"
            + (f"; first {WARMUP_STEPS} steps {run['warmup_seconds']:.0f} s" if kind.startswith("ours") else "")
        )
    ours = runs["ours"]["tokens_per_s"]
    tuned = max(runs["tuned-packed"]["tokens_per_s"], runs["tuned-grouped"]["tokens_per_s"])
    if "ours-parallel" in runs:
        parallel = runs["ours-parallel"]
        peak = parallel["peaks"]["bfloat16" if parallel["bf16"] else "float32"]
        print(
            f"speed, data parallel: ours in {cores} processes / the faster tuned TRL run = "
            f"{parallel['tokens_per_s'] / tuned:.2f}x, / ours in one process = {parallel['tokens_per_s'] / ours:.2f}x; "
            f"efficiency {parallel['flops_per_s'] / 1e9:.1f} GFLOP/s = {parallel['flops_per_s'] / peak:.0%} of the "
            f"processes' summed {precision['ours-parallel']} matmul peak {peak / 1e9:.1f} (the dtype it computes in)"
        )
    print(
        f"speed: ours / the faster tuned TRL run = {ours / tuned:.2f}x (goal >= 1.2x, never < 0.95x); "
        f"ours / plain = {ours / runs['plain']['tokens_per_s']:.2f}x"
        + (
            f"; ours / plain TRL defaults = {ours / runs['plain-defaults']['tokens_per_s']:.2f}x"
            if args.trl_defaults
            else ""
        )
    )
    ours_run = runs["ours"]
    dtype = "bfloat16" if ours_run["bf16"] else "float32"
    peaks = ours_run["peaks"]
    print(
        f"efficiency: ours {ours_run['flops_per_s'] / 1e9:.1f} GFLOP/s = {ours_run['flops_per_s'] / peaks[dtype]:.0%} "
        f"of the {precision['ours']} matmul peak it computes in, {peaks[dtype] / 1e9:.1f} GFLOP/s (goal >= 60%): useful "
        "FLOPs (decoder on non-padding tokens, LM head on answer tokens, frozen base) per second over the best "
        "1024x1024 matmul measured in the same process right before training"
    )
    if not ours_run["bf16"]:
        print(
            f"  this CPU has no native bf16 (no AVX512-BF16, no AMX): its bf16 matmul peak, {peaks['bfloat16'] / 1e9:.1f} "
            f"GFLOP/s, is emulated and below fp32's {peaks['float32'] / 1e9:.1f}, every run trained in fp32, so the fp32 "
            "peak is the like-for-like one"
        )


# A/B comparisons of our run: each names its two settings as (label, threads, JobConfig overrides, processes),
# reference first.
AB = {
    "threads": (("1 thread", 1, {}, 1), ("2 threads", 2, {}, 1)),
    "dropout": (
        ("lora_dropout 0", None, {"lora_dropout": 0.0}, 1),
        ("lora_dropout 0.05", None, {"lora_dropout": 0.05}, 1),
    ),
    "compile": (("eager", None, {"torch_compile": "off"}, 1), ("compiled", None, {"torch_compile": "on"}, 1)),
    "compile-processes": (
        ("eager, 2 processes", 1, {"torch_compile": "off"}, 2),
        ("compiled, 2 processes", 1, {"torch_compile": "on"}, 2),
    ),
    "processes": (("1 process x 2 threads", 2, {}, 1), ("2 processes x 1 thread", 1, {}, 2)),
    "precision": (("fp32", 1, {"precision": "fp32"}, 2), ("bf16", 1, {"precision": "bf16"}, 2)),
    "local-processes": (),  # whole jobs through the local backend: `local_processes`
}


def ab(model: str, args: argparse.Namespace) -> None:
    """Ours under two settings, alternating so that both see the same drift in the machine's load; each run's share
    is of the matmul peak in the dtype it computes in, measured with its own thread count, in its own process. Compile
    time falls in the untimed first steps: the figures are steady-state ones."""
    settings = AB[args.ab]
    print(
        f"{model}, {DATASET}, ours, lora_dropout {HYPER['lora_dropout']} unless set, {args.steps} steps (first "
        f"{WARMUP_STEPS} not timed): "
        f"{settings[1][0]} against {settings[0][0]}, {args.rounds} rounds"
    )
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _, _ in settings}
    for _ in range(args.rounds):
        for label, threads, overrides, processes in settings:
            load = os.getloadavg()[0]
            overrides = {**args.overrides, **overrides}
            run = run_child("ours", args, threads=threads or args.threads, overrides=overrides, processes=processes)
            dtype = "bfloat16" if run["bf16"] else "float32"
            peak = run["peaks"][dtype]
            runs[label].append(run)
            print(
                f"  {label:<18} {run['tokens_per_s']:6.1f} answer tok/s {run['flops_per_s'] / 1e9:6.1f} GFLOP/s = "
                f"{run['flops_per_s'] / peak:4.0%} of its {dtype} peak {peak / 1e9:6.1f}, {run['cpu_per_step']:.2f} CPU "
                f"s/step; first {WARMUP_STEPS} steps {run['warmup_seconds']:.0f} s (load average {load:.2f} at start, "
                f"{os.getloadavg()[0]:.2f} at end)"
            )
    pairs = list(zip(*(runs[label] for label, _, _, _ in settings), strict=True))
    speed = sorted(b["tokens_per_s"] / a["tokens_per_s"] for a, b in pairs)
    work = sorted(a["cpu_per_step"] / b["cpu_per_step"] for a, b in pairs)
    print(
        f"{args.ab}: {settings[1][0]} / {settings[0][0]} = {statistics.median(speed):.2f}x answer tok/s (median of "
        f"{len(pairs)} pairs, range {speed[0]:.2f}-{speed[-1]:.2f}x)"
        + (
            ""
            if args.ab in ("threads", "processes")  # more cores spend more CPU by design: only wall time compares them
            else f"; {statistics.median(work):.2f}x by CPU seconds per step (range {work[0]:.2f}-{work[-1]:.2f}x), "
            "which the machine's load moves less"
        )
    )


def local_processes(model: str, args: argparse.Namespace) -> None:
    """Whole jobs through the console's local backend, data_parallel off (one process) against on (one single-thread
    process per core), alternating: wall time of the whole job and the job's own tokens/s and efficiency."""
    print(
        f"{model}, {DATASET}, whole {args.steps}-step jobs through the local backend: data_parallel on against off, "
        f"{args.rounds} rounds"
    )
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            load = os.getloadavg()[0]
            run = run_child(f"job-{mode}", args, overrides=args.overrides)
            runs[mode].append(run)
            print(
                f"  {mode:<4} {run['wall_seconds']:6.1f} s whole job ({run['train_seconds']:6.1f} s training) "
                f"{run['tokens_per_second']:6.1f} tok/s {run['flops_per_second'] / 1e9:6.1f} GFLOP/s = "
                f"{run['efficiency']:4.0%} of the summed peak; {run['decision']} (load average {load:.2f} at start, "
                f"{os.getloadavg()[0]:.2f} at end)"
            )
    pairs = list(zip(runs["off"], runs["on"], strict=True))
    wall = sorted(a["wall_seconds"] / b["wall_seconds"] for a, b in pairs)
    speed = sorted(b["tokens_per_second"] / a["tokens_per_second"] for a, b in pairs)
    print(
        f"local-processes: on / off = {statistics.median(wall):.2f}x faster whole job (range {wall[0]:.2f}-"
        f"{wall[-1]:.2f}x), {statistics.median(speed):.2f}x tokens/s while training (range {speed[0]:.2f}-"
        f"{speed[-1]:.2f}x), medians of {len(pairs)} pairs"
    )


def report_memory(model: str, memory: dict[str, dict[str, Any]], setup: str) -> None:
    """Print both memory runs and the 4-bit / full ratios, whole process and above the after-imports baseline."""
    mib = 1024 * 1024
    print(f"memory on {model} ({setup}, activation checkpointing):")
    for kind, label in (("none", "LoRA, fp32"), ("4bit", "QLoRA, 4-bit NF4")):
        run = memory[kind]
        print(
            f"  {label:<22} peak RSS in training {run['peak_rss'] / mib:6.0f} MiB, "
            f"{(run['peak_rss'] - run['after_imports']) / mib:6.0f} above the baseline; baseline after imports "
            f"{run['after_imports'] / mib:4.0f} MiB (at start {run['before_model'] / mib:4.0f}); model loaded "
            f"{run['loaded'] / mib:5.0f} MiB (peak while loading {run['load_peak'] / mib:5.0f})"
        )
    full, quant = memory["none"], memory["4bit"]
    print(
        f"  (LoRA fp32: weights resident before training {full['weights_resident'] / mib:5.0f} MiB; transformers "
        "maps full-precision weights lazily, so 'model loaded' is before any weight was read)"
    )
    print(
        f"memory: 4-bit / full = {quant['peak_rss'] / full['peak_rss']:.2f}x whole process (goal <= 0.5x), "
        f"{(quant['peak_rss'] - quant['after_imports']) / (full['peak_rss'] - full['after_imports']):.2f}x above "
        "the after-imports baseline"
    )


def report_load(memory: dict[str, dict[str, Any]]) -> None:
    """The 4-bit load against what it produced and against holding the full-precision model."""
    gib = 1024**3
    full, quant = memory["none"], memory["4bit"]
    full_load = max(full["load_peak"], full["weights_resident"])
    print(
        f"load: 4-bit peak while loading {quant['load_peak'] / gib:.2f} GiB (in {quant['load_seconds']:.0f} s) = "
        f"{quant['load_peak'] / quant['loaded']:.2f}x the loaded 4-bit model's resident {quant['loaded'] / gib:.2f} "
        f"GiB (goal <= 1.5x) and {quant['load_peak'] / full_load:.2f}x the full-precision load with its weights "
        f"resident, {full_load / gib:.2f} GiB (goal <= 0.6x; its lazy memory-mapped load returns at "
        f"{full['load_peak'] / gib:.2f} GiB, before any weight is read); whole process"
    )


def report_7b(run: dict[str, Any]) -> None:
    gib = 1024**3
    print(
        f"7B: Llama-2-7B shape (6.9B parameters, bf16 shards), QLoRA 4-bit NF4, {LARGE_STEPS} steps, batch "
        f"{MEMORY['batch_size']}, max_len {LARGE_RUN['max_seq_length']}, activation checkpointing:"
    )
    print(
        f"  whole-process peak {run['process_peak'] / gib:.2f} GiB (goal < 12 GB = {12e9 / gib:.2f} GiB); "
        f"loading peak {run['load_peak'] / gib:.2f} GiB, loaded {run['loaded'] / gib:.2f} GiB "
        f"({run['load_peak'] / run['loaded']:.2f}x), training peak {run['peak_rss'] / gib:.2f} GiB; baseline after "
        f"imports {run['after_imports'] / gib:.2f} GiB; load {run['load_seconds']:.0f} s, "
        f"{LARGE_STEPS} steps {run['train_seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
