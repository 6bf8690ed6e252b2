"""The training worker: one LoRA/QLoRA job through TRL's SFTTrainer, DPOTrainer or KTOTrainer.

`run_training` runs in a job's training process (`training.data_parallel`; a Ray worker on that backend, or the
calling thread in tests and benches). It never imports streamlit and talks to the console only
through files in the job folder, which other processes may read while it runs:
metrics.jsonl, train.log, checkpoints/ (the last 2), adapter/ and result.json (`training.job_folder` owns
their names and formats).
Cancellation is cooperative: setting `stop` ends training after the current optimizer step and saves a
checkpoint there, so the job can be resumed later.
"""

import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from registry.errors import ConsoleError
from registry.shapes import DatasetKind
from registry.storage import atomic_write_text
from training.adapters import check_adapter_name
from training.base_models import (
    BaseModelInfo,
    resolve_base_model,
    suggested_target_modules,
    unknown_target_modules,
)
from training.config import JobConfig
from training.data_parallel import summed_over_ranks, world_size
from training.errors import TrainingRefused
from training.flops import FlopRecorder, dataset_flops, matmul_peak, model_cost
from training.formatting import (
    DatasetSource,
    build_dataset,
    check_fits,
    iter_canonical,
    resolve_dataset,
    template_renders_tools,
)
from training.job_folder import JobFolder, Status, TrainingResult
from training.models import load_model, load_tokenizer
from training.regional_compile import compile_decoder_layers, compiler_missing, is_compiled, release_compiled
from training.sampling import EpochSampler, seeded_order
from training.stack import import_stack

TrainerCallback = import_stack("trl").TrainerCallback

LINEAR_OUTPUTS = {"lm_head", "embed_out"}


MAX_EVAL_PROMPTS = 200
MAX_LOGGED_MISSES = 12  # wrong held-out answers written to the job log, each beside its reference
HELD_OUT_MISS = "miss: answered"  # how a logged wrong answer starts (bench/retailer_adapter_quality.py reads it)


@dataclass(frozen=True)
class Preflight:
    """Everything checked before a model is loaded; the queue runs this at submission so the form can refuse early."""

    config: JobConfig
    base: BaseModelInfo
    train: DatasetSource
    eval: DatasetSource | None
    device: str
    bf16: bool


def preflight(config: JobConfig) -> Preflight:
    """Resolve the base model and datasets and check that the combination can train here; raise ConsoleError if not."""
    check_adapter_name(config.adapter_name)
    base = resolve_base_model(config.base_model)
    if config.target_modules != "all-linear":
        unknown = unknown_target_modules(base, config.target_modules)
        if unknown:
            raise TrainingRefused(
                f"Target module(s) {', '.join(unknown)} do not exist in {base.id}. Choose from: "
                f"{', '.join(suggested_target_modules(base))} (or 'all-linear')."
            )
        heads = sorted(LINEAR_OUTPUTS & {name.rsplit(".", 1)[-1] for name in config.target_modules})
        if heads:
            raise TrainingRefused(
                f"{heads[0]} is the output layer; TRL cannot train LoRA on it. Remove it from target modules."
            )
    if config.objective == "kto" and config.batch_size < 2:
        raise TrainingRefused(
            "KTO needs a batch size of 2 or more: it estimates its KL term by pairing each answer with another "
            "prompt's in the same batch. Raise the batch size."
        )
    if config.torch_compile == "on" and (missing := compiler_missing()):
        raise TrainingRefused(f"Compile is on, but {missing}. Install a C++ compiler or turn Compile off.")
    train = resolve_dataset(config.train_dataset)
    check_fits(train, config.objective)
    evaluation = resolve_dataset(config.eval_dataset) if config.eval_dataset else None
    if evaluation is not None:
        check_fits(evaluation, config.objective, "eval")
    device = "cuda" if _cuda_available() else "cpu"
    if config.quantization != "none":
        reason = quantization_unsupported(config.quantization, device)
        if reason:
            raise TrainingRefused(reason)
    return Preflight(config, base, train, evaluation, device, use_bf16(config, device))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def native_bf16(device: str) -> bool:
    """True where bf16 matmuls run in hardware (AVX512-BF16 or AMX on CPU, Ampere+ GPUs), so autocast speeds up."""
    import torch

    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_bf16(config: JobConfig, device: str) -> bool:
    if config.precision == "auto":
        return native_bf16(device)
    return config.precision == "bf16"


def quantization_unsupported(kind: str, device: str) -> str | None:
    """Why `kind` quantization cannot train on `device`, or None when a real forward/backward probe succeeded."""
    error = _probe_bitsandbytes(kind, device)
    if error is None:
        return None
    label = "8-bit" if kind == "8bit" else "4-bit (QLoRA)"
    return (
        f"{label} quantization does not work on this {device.upper()} with the installed bitsandbytes "
        f"({error}). Choose quantization 'none'{' or 4bit' if kind == '8bit' else ''}."
    )


@lru_cache(maxsize=4)
def _probe_bitsandbytes(kind: str, device: str) -> str | None:
    """Quantize one small layer and run forward + backward through it: the cheapest honest answer to 'does it work'."""
    try:
        import bitsandbytes as bnb
        import torch

        torch_device = torch.device(device)
        if kind == "4bit":
            layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        else:
            layer = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False)
        layer = layer.to(torch_device)
        inputs = torch.randn(2, 64, device=torch_device, requires_grad=True)
        output = layer(inputs)
        output.float().sum().backward()
        if inputs.grad is None or not torch.isfinite(inputs.grad).all():
            return "the backward pass gave no usable gradient"
    except Exception as error:  # any failure means "not supported here"; the message goes to the user
        return f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else 'no message'}"
    return None


class JobMonitor(TrainerCallback):
    """Writes progress to metrics.jsonl / train.log and turns the stop event into a clean, checkpointed stop."""

    def __init__(self, stop: Any, folder: JobFolder):
        self.stop = stop
        self.folder = folder
        self.cancelled = False
        self.started = time.monotonic()
        self.start_step = 0
        self.start_tokens = 0
        self.last: dict[str, float] = {}
        self.recorder: FlopRecorder | None = None
        self.peak = 0.0
        self.start_batch = 0
        self.accumulation = 1
        self.compiled = False  # the decoder layers are compiled: the first step's time is logged (it holds the compile)

    def count_flops(self, trainer: Any, checks: Preflight) -> None:
        """Count the useful FLOPs of SFT batches and measure this machine's matmul peak in the job's compute dtype,
        so progress can say how close training runs to what the hardware does (DPO's batches are not counted)."""
        import torch

        if checks.config.objective != "sft":
            return
        cost = model_cost(trainer.model, checkpointing=bool(trainer.args.gradient_checkpointing))
        self.recorder = FlopRecorder(trainer.data_collator, cost)
        trainer.data_collator = self.recorder
        (self.peak,) = summed_over_ranks(matmul_peak(torch.bfloat16 if checks.bf16 else torch.float32))
        ranks = f" (the sum of its {ranks} training processes' own)" if (ranks := world_size()) > 1 else ""
        self.folder.log(f"Matrix-multiply peak of this machine: {self.peak / 1e9:.1f} GFLOP/s{ranks}.")

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.start_step = state.global_step
        self.start_tokens = state.num_input_tokens_seen
        self.start_batch = len(self.recorder.batches) if self.recorder else 0
        self.accumulation = args.gradient_accumulation_steps
        where = f"resuming at step {state.global_step}" if state.global_step else "starting"
        self.folder.log(f"Training {where}: {state.max_steps} optimizer steps planned.")

    def on_step_end(self, args, state, control, **kwargs):
        if self.compiled and state.global_step == self.start_step + 1:
            self.folder.log(
                f"First step in {time.monotonic() - self.started:.1f} s, compiling the decoder layers included (the "
                "job's tokens/s and efficiency count it)."
            )
        if self.stop.is_set() and not self.cancelled:
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = True
            self.folder.log(f"Cancel requested: stopping after step {state.global_step} and saving a checkpoint.")
        if self.recorder is not None and control.should_evaluate:
            self.recorder.paused = True
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        if self.recorder is not None:
            self.recorder.paused = False

    def progress(self, state) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        steps_done = state.global_step - self.start_step
        tokens = state.num_input_tokens_seen - self.start_tokens
        remaining = max(state.max_steps - state.global_step, 0)
        speed = {}
        if self.recorder is not None:
            # Every rank counts its own batches; their sum is the job's rate (every rank calls this at the same step).
            (trained,) = summed_over_ranks(
                self.recorder.trained(self.start_batch, max(steps_done, 0) * self.accumulation)
            )
        if self.recorder is not None and elapsed > 0:
            flops_per_second = trained / elapsed
            speed = {
                "flops_per_second": round(flops_per_second),
                "efficiency": round(flops_per_second / self.peak, 4) if self.peak else None,
            }
        return {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": round(state.epoch or 0.0, 4),
            "tokens": state.num_input_tokens_seen,
            "tokens_per_second": round(tokens / elapsed, 2) if elapsed > 0 else 0.0,
            "elapsed": round(elapsed, 2),
            "eta_seconds": round(elapsed / steps_done * remaining, 1) if steps_done else None,
            **speed,
        }

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "train_loss" in logs:  # the end-of-training summary, not a step
            return
        line = {"time": datetime.now(UTC).isoformat(timespec="seconds"), **self.progress(state)}
        for key in (
            "loss",
            "eval_loss",
            "learning_rate",
            "grad_norm",
            "mean_token_accuracy",
            "rewards/accuracies",
            "rewards/margins",
        ):
            if key in logs:
                line[key.replace("/", "_")] = float(logs[key])
        self.folder.append_metrics(line)
        self.last.update({k: v for k, v in line.items() if isinstance(v, float) and k not in ("elapsed",)})
        if "loss" in line:
            self.folder.log(
                f"step {line['step']}/{line['max_steps']} loss {line['loss']:.4f} lr {line.get('learning_rate', 0):.2e} "
                f"{line['tokens_per_second']:.0f} tok/s"
                + (f", {line['efficiency']:.0%} of the matmul peak" if line.get("efficiency") is not None else "")
            )
        if "eval_loss" in line:
            self.folder.log(f"step {line['step']} eval loss {line['eval_loss']:.4f}")

    def on_save(self, args, state, control, **kwargs):
        self.folder.log(f"Checkpoint saved at step {state.global_step}.")


def run_training(
    config: JobConfig, job_dir: Path, *, stop: Any, resume: bool = False, writer: bool = True
) -> TrainingResult:
    """Train one adapter; returns completed or cancelled, raises ConsoleError for bad input and re-raises crashes.

    With resume=True training continues from the newest checkpoint in job_dir/checkpoints (fresh if there is none).
    `stop` is anything with `is_set()` (a threading.Event here; the Ray backend's agrees across workers);
    `writer=False` is a second worker of the same job: it shares the checkpoints and writes nothing else.
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    folder = JobFolder(job_dir, writer=writer)
    try:
        return _run(config, folder, stop, resume)
    except ConsoleError as error:
        folder.log(f"Refused: {error}")
        raise
    except Exception as error:
        folder.log(f"Failed: {type(error).__name__}: {error}")
        raise


def _run(config: JobConfig, folder: JobFolder, stop: Any, resume: bool) -> TrainingResult:
    checks = preflight(config)
    folder.log(
        f"Job {config.adapter_name}: {config.objective.upper()} on {checks.base.id} ({checks.base.parameters / 1e6:.1f}M "
        f"params, {config.quantization}), {checks.device}, {'bf16' if checks.bf16 else 'fp32'}; "
        f"data {checks.train.name} ({checks.train.rows} rows)."
    )
    checkpoint = folder.latest_checkpoint() if resume else None
    if resume and checkpoint is None:
        folder.log("Resume requested but no checkpoint exists yet: starting from step 0.")
    if checkpoint is not None:
        folder.trim_metrics(_checkpoint_step(checkpoint))
    else:
        folder.reset_metrics()
    monitor = JobMonitor(stop, folder)
    trainer, tokenizer = build_trainer(checks, folder.path, callbacks=[monitor], folder=folder)
    monitor.count_flops(trainer, checks)
    monitor.compiled = is_compiled(trainer.model)
    if stop.is_set():
        folder.log("Cancelled before the first step.")
        return _result(checks, trainer, monitor, "cancelled", None, folder, {})
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    release_compiled(trainer.model)
    if monitor.cancelled:
        folder.log(f"Cancelled at step {trainer.state.global_step}.")
        return _result(checks, trainer, monitor, "cancelled", None, folder, {})
    metrics = {"train_loss": float(output.training_loss), "train_runtime": float(output.metrics["train_runtime"])}
    if "loss" in monitor.last:
        metrics["final_loss"] = monitor.last["loss"]
    if trainer.eval_dataset is not None:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
        folder.log(f"Final eval loss {metrics['eval_loss']:.4f}.")
    if checks.eval is not None and checks.eval.kind == DatasetKind.EVALUATION and not stop.is_set():
        metrics.update(_held_out_scores(trainer.model, tokenizer, checks.eval, folder))
    adapter = save_adapter(trainer, tokenizer, checks.base, folder.adapter) if folder.writer else None
    folder.log(f"Adapter saved to {adapter}.")
    return _result(checks, trainer, monitor, "completed", adapter, folder, metrics)


def _held_out_scores(model: Any, tokenizer: Any, source: DatasetSource, folder: JobFolder) -> dict[str, float]:
    """Generate answers for the held-out prompts (first 200) and judge them against the references.

    `eval_accuracy` is the judged pass rate (for plans: channel, split and uplift all right), with each plan
    criterion's rate beside it and, when the prompts cover several fields, each field's accuracy.
    """
    from training.evaluation import score_generations

    records = list(itertools.islice(iter_canonical(source), MAX_EVAL_PROMPTS))
    score = score_generations(model, tokenizer, records)
    judged = "judged pass rate" if score.criteria else "accuracy"
    details = ", ".join(f"{name} {rate:.1%}" for name, rate in score.criteria.items())
    folder.log(
        f"Held-out generation on {score.count} prompts: {judged} {score.accuracy:.1%}"
        + (f" ({details})" if details else "")
        + f", token F1 {score.token_f1:.3f}."
    )
    if score.by_task:
        folder.log("Held-out accuracy by field: " + ", ".join(f"{t} {a:.1%}" for t, a in score.by_task.items()) + ".")
    shown = score.misses[:MAX_LOGGED_MISSES]
    if shown:
        more = f", the first {len(shown)}" if len(shown) < len(score.misses) else ""
        folder.log(f"Held-out misses ({len(score.misses)} of {score.count}{more}):")
    for miss in shown:
        folder.log(f"  {HELD_OUT_MISS} {miss['answer']!r}, reference {miss['reference']!r}")
    return {
        "eval_accuracy": score.accuracy,
        "eval_token_f1": score.token_f1,
        "eval_prompts": float(score.count),
        **{f"eval_plan_{name}": rate for name, rate in score.criteria.items()},
        **{f"eval_accuracy_{task}": rate for task, rate in score.by_task.items()},
    }


def build_trainer(
    checks: Preflight, job_dir: Path, callbacks: list | None = None, folder: JobFolder | None = None
) -> tuple[Any, Any]:
    """The configured SFTTrainer, DPOTrainer or KTOTrainer (datasets already tokenized), and its tokenizer."""
    from peft import LoraConfig
    from peft.optimizers import create_loraplus_optimizer
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    import datasets
    from training.lm_head import project_answer_positions_only

    datasets.disable_progress_bars()
    project_answer_positions_only()
    config = checks.config
    tokenizer = load_tokenizer(checks.base.path)
    model = load_base(checks)
    template_tools = template_renders_tools(tokenizer.chat_template)
    train, skipped = build_dataset(checks.train, config.objective, template_tools=template_tools)
    _note_skipped(folder, checks.train, skipped)
    evaluation = None
    if checks.eval is not None:
        evaluation, skipped = build_dataset(checks.eval, config.objective, "eval", template_tools=template_tools)
        _note_skipped(folder, checks.eval, skipped)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    common = _trainer_args(config, job_dir, checks, has_eval=evaluation is not None)
    if config.objective in ("kto", "dpo"):
        if config.objective == "kto":
            # The KL estimate pairs each example with its neighbour in a fixed-order batch, so batches are not shuffled.
            args, trainer_class = (
                KTOConfig(**common, beta=config.dpo_beta, train_sampling_strategy="sequential"),
                KTOTrainer,
            )
        else:
            args, trainer_class = DPOConfig(**common, beta=config.dpo_beta), DPOTrainer
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=callbacks,
        )
    else:
        args = SFTConfig(
            **common,
            packing=config.packing,
            completion_only_loss=True,
            train_sampling_strategy=sampling_strategy(config),
        )
        trainer = seeded_order(SFTTrainer)(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=callbacks,
        )
    _note_truncated(folder, checks.train, len(train), len(trainer.train_dataset))
    if checks.device == "cpu":
        from training.lora_dropout import use_lora_dropout
        from training.lora_forward import use_fused_lora

        use_lora_dropout(trainer.model)
        use_fused_lora(trainer.model)
    compiles, why = config.compiles(
        device=checks.device, bf16=checks.bf16, planned_flops=planned_flops(trainer, config)
    )
    if compiles and config.torch_compile == "auto" and (missing := compiler_missing()):
        compiles, why = False, f"{why}, but {missing}"
    if compiles:
        layers = compile_decoder_layers(trainer.model)
        why += f". Compiling the {layers} decoder layers with torch.compile: the first steps take longer."
    if folder is not None:
        folder.log(why + ("" if compiles else ": training eager."))
    if config.loraplus_lr_ratio:
        # The Trainer's own optimizer (class, lr, betas, eps) in LoRA+ groups: it keeps it, schedules both groups and
        # restores their state on resume.
        optimizer_cls, optimizer_kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
        trainer.optimizer = create_loraplus_optimizer(
            trainer.model, optimizer_cls, loraplus_lr_ratio=config.loraplus_lr_ratio, **optimizer_kwargs
        )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(EpochSampler)
    return trainer, tokenizer


def planned_flops(trainer: Any, config: JobConfig, ranks: int | None = None) -> float:
    """The useful FLOPs an SFT job plans to train (its passes over the tokenized data), for torch_compile's auto rule;
    0 where nothing asks for it (compile forced on or off, or another objective). In a data-parallel rank `config` is
    that rank's share of the batch: a job set by max_steps trains `ranks` (the job's processes) times its batch."""
    if config.torch_compile != "auto" or config.objective != "sft":
        return 0.0
    cost = model_cost(trainer.model, checkpointing=bool(trainer.args.gradient_checkpointing))
    rows = max(len(trainer.train_dataset), 1)
    if config.max_steps:
        passes = config.max_steps * config.effective_batch_size * (ranks or world_size()) / rows
    else:
        passes = config.epochs or 1.0
    return dataset_flops(cost, trainer.train_dataset, config.max_seq_length) * passes


def _note_skipped(folder: JobFolder | None, source: DatasetSource, skipped: list[int]) -> None:
    """Say which records were left out, so a smaller-than-expected run is explained in the job log."""
    if folder is not None and skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        folder.log(
            f"Skipped {len(skipped)} of {source.rows} records of {source.name} with nothing to learn "
            f"(no answer, or chosen == rejected): record {shown}."
        )


def _note_truncated(folder: JobFolder | None, source: DatasetSource, given: int, kept: int) -> None:
    """TRL drops examples whose answer lies wholly past max_length; say so rather than train on fewer in silence."""
    if folder is not None and kept < given:
        folder.log(
            f"{given - kept} of {given} examples of {source.name} are longer than the max sequence length with "
            "their whole answer past it, so the trainer left them out: raise the max sequence length to keep them."
        )


def sampling_strategy(config: JobConfig) -> str:
    """How SFT batches are drawn: grouped by length (little padding) unless packed or the config asks for random."""
    return "group_by_length" if config.group_by_length and not config.packing else "random"


def _trainer_args(config: JobConfig, job_dir: Path, checks: Preflight, has_eval: bool) -> dict[str, Any]:
    """Arguments SFTConfig and DPOConfig share."""
    padding_free = config.objective == "sft" and config.packing
    return {
        "output_dir": str(JobFolder(job_dir).checkpoints),
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.scheduler,
        "warmup_steps": config.warmup_ratio,
        "num_train_epochs": config.epochs or 1.0,
        "max_steps": config.max_steps or -1,
        "max_length": config.max_seq_length,
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": config.eval_steps or config.save_steps,
        "report_to": "none",
        "use_cpu": checks.device == "cpu",
        "bf16": checks.bf16,
        "seed": config.seed,
        "data_seed": config.seed,
        "activation_checkpointing": config.gradient_checkpointing,
        # Padding-free packed batches have no attention mask and no padding, so every token counts.
        "include_num_input_tokens_seen": "all" if padding_free else "non_padding",
        "disable_tqdm": True,
        # Data-parallel ranks train every LoRA weight each step: no extra autograd traversal looking for unused ones.
        "ddp_find_unused_parameters": False,
    }


def load_base(checks: Preflight) -> Any:
    """The base model as this job trains it: quantized while loading when asked, and prepared for k-bit training."""
    import torch
    from peft import prepare_model_for_kbit_training

    config = checks.config
    on_gpu = checks.device == "cuda"
    # A bf16 base is not cast on every step under autocast (1.3x faster on a 2-core AMX CPU); bitsandbytes'
    # CPU kernels want fp32 around their own quantized weights.
    dtype = torch.bfloat16 if checks.bf16 and (on_gpu or config.quantization == "none") else torch.float32
    model = load_model(
        checks.base.path,
        dtype=dtype,
        quantization=config.quantization,
        compute_dtype=torch.bfloat16 if checks.bf16 else torch.float32,
        device_map={"": torch.cuda.current_device()} if on_gpu and config.quantization != "none" else None,
    )
    if config.quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if not on_gpu:
        from training.attention import use_short_sequence_attention

        use_short_sequence_attention(model)
    return model


def save_adapter(trainer: Any, tokenizer: Any, base: BaseModelInfo, target: Path) -> Path:
    """Write the adapter in PEFT layout (safetensors) next to `target`, name its base as users look it up, then swap in.

    `base_model_name_or_path` is the base's public name (a Hub id where there is one), so tools outside the
    console find it; the job's lineage keeps the exact local path and the weights' fingerprint.
    """
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    config_file = staging / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = base.public_name
    atomic_write_text(config_file, json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    if not (staging / "adapter_model.safetensors").is_file():
        raise RuntimeError("PEFT did not write adapter_model.safetensors")
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def _result(
    checks: Preflight,
    trainer: Any,
    monitor: JobMonitor,
    status: Status,
    adapter: Path | None,
    folder: JobFolder,
    metrics: dict[str, float],
) -> TrainingResult:
    state = trainer.state
    progress = monitor.progress(state)
    result = TrainingResult(
        status=status,
        steps=state.global_step,
        max_steps=state.max_steps,
        epoch=float(state.epoch or 0.0),
        adapter_path=adapter,
        checkpoint=folder.latest_checkpoint(),
        metrics=metrics,
        tokens=state.num_input_tokens_seen,
        tokens_per_second=progress["tokens_per_second"],
        train_seconds=progress["elapsed"],
        device=checks.device,
        precision="bf16" if checks.bf16 else "fp32",
        base_model=checks.base,
        train_dataset=checks.train.lineage(),
        eval_dataset=checks.eval.lineage() if checks.eval else None,
    )
    folder.write_result(result)
    return result


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])
