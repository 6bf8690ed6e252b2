"""Training worker tests: real PEFT + TRL training of tiny local models, in a temp registry."""

import io
import json
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest

ALPACA = [
    {
        "instruction": f"Map field 'adType' with value '{code}' from {retailer} to RMIS.",
        "input": "",
        "output": f"placement_type: {target}",
    }
    for code, target in [("sp", "sponsored_product"), ("sd", "sponsored_display")]
    for retailer in ["Amazon", "Walmart", "Target", "Instacart"]
]
PREFERENCES = [
    {
        "prompt": f"Is this {retailer} creative compliant: 'Best price, guaranteed'?",
        "chosen": "No: 'guaranteed' is an unverified claim.",
        "rejected": "Yes, it is compliant.",
    }
    for retailer in ["Amazon", "Walmart", "Target", "Instacart", "Kroger", "Costco"]
]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_config(base: Path, **overrides):
    from training.config import build_config

    values = {
        "adapter_name": "amazon_schema",
        "base_model": str(base),
        "train_dataset": "amazon_sft",
        "max_steps": 30,
        "batch_size": 4,
        "learning_rate": 3e-3,
        "lora_r": 16,
        "lora_alpha": 64,
        "save_steps": 10,
        "max_seq_length": 128,
        "warmup_ratio": 0.0,
        **overrides,
    }
    return build_config(**values)


def metric_lines(job_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]


def test_sft_job_trains_saves_a_reloadable_adapter_and_registers_it(tiny_base, datasets, tmp_path, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training import adapters, worker

    probe = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 8]])
    in_memory: dict[str, torch.Tensor] = {}
    save_adapter = worker.save_adapter

    def spy(trainer, tokenizer, base, target):
        # accelerate wraps forward in autocast for training; compare the plain forward
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval()
        with torch.no_grad():
            in_memory["logits"] = model(input_ids=probe).logits
        return save_adapter(trainer, tokenizer, base, target)

    monkeypatch.setattr(worker, "save_adapter", spy)
    # fp32, so the reloaded fp32 model must give the very same logits (a bf16 base would round them)
    config = make_config(tiny_base, eval_dataset="amazon_eval", precision="fp32")
    job_dir = tmp_path / "job"
    result = worker.run_training(config, job_dir, stop=threading.Event())

    assert result.status == "completed" and result.steps == 30
    lines = [line for line in metric_lines(job_dir) if "loss" in line]
    losses = [line["loss"] for line in lines]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert lines[-1]["mean_token_accuracy"] > lines[0]["mean_token_accuracy"] + 0.3
    assert "eval_loss" in result.metrics and result.tokens > 0 and result.tokens_per_second > 0
    assert all(line["flops_per_second"] > 0 and line["efficiency"] > 0 for line in lines)
    log = (job_dir / "train.log").read_text()
    assert "Adapter saved" in log and "Matrix-multiply peak of this machine" in log and "of the matmul peak" in log

    adapter_dir = result.adapter_path
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter_dir.iterdir()}
    assert not list(adapter_dir.glob("*.bin"))
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    # the base as users name it (a local model's registered name), not a path of this machine; lineage has the path
    assert adapter_config["base_model_name_or_path"] == "tiny-llama" and result.base_model.path == tiny_base
    assert adapter_config["r"] == 16 and adapter_config["lora_alpha"] == 64
    base = AutoModelForCausalLM.from_pretrained(result.base_model.path, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = reloaded(input_ids=probe).logits
    assert torch.allclose(logits, in_memory["logits"], atol=1e-5)
    with torch.no_grad(), reloaded.disable_adapter():
        assert not torch.allclose(reloaded(input_ids=probe).logits, logits, atol=1e-3)  # the adapter changed something

    record = adapters.register_adapter(result, config, job_id="job-1")
    assert (record.name, record.version) == ("amazon_schema", 1)
    assert record.base_model["fingerprint"] == result.base_model.fingerprint and record.base_model["path"] == str(
        tiny_base
    )
    assert (
        record.dataset["name"] == "amazon_sft"
        and record.dataset["version"] == 1
        and len(record.dataset["content_hash"]) == 64
    )
    assert record.config["lora_r"] == 16 and "train_loss" in record.metrics and record.size_bytes > 0
    assert adapters.register_adapter(result, config).version == 2
    assert [a.version for a in adapters.list_adapters()] == [2]
    assert adapters.get_adapter("amazon_schema", 1).job_id == "job-1"
    commands = record.usage_commands()
    assert commands["Serve with vLLM (OpenAI-compatible API)"] == (
        f"vllm serve tiny-llama --enable-lora --lora-modules amazon_schema-v1={record.path}"
    )
    assert commands["Convert for llama.cpp (LoRA GGUF)"] == (
        f"python convert_lora_to_gguf.py {record.path} --base {tiny_base} --outfile amazon_schema-v1.gguf --outtype f16"
    )
    with zipfile.ZipFile(io.BytesIO(adapters.adapter_archive("amazon_schema", 1))) as archive:
        assert {"amazon_schema-v1/adapter_model.safetensors", "amazon_schema-v1/lineage.json"} <= set(
            archive.namelist()
        )
    adapters.delete_adapter("amazon_schema", 2)
    assert adapters.get_adapter("amazon_schema").version == 1
    adapters.delete_adapter("amazon_schema")
    assert adapters.list_adapters() == []


def test_dpo_job_completes(tiny_base, datasets, tmp_path):
    from training.worker import run_training

    config = make_config(
        tiny_base, adapter_name="policy", objective="dpo", train_dataset="policy_dpo", max_steps=12, learning_rate=5e-3
    )
    result = run_training(config, tmp_path / "job", stop=threading.Event())
    assert result.status == "completed" and result.steps == 12
    assert (result.adapter_path / "adapter_model.safetensors").is_file()
    lines = metric_lines(tmp_path / "job")
    assert any("rewards_margins" in line for line in lines)
    assert lines[-1]["loss"] < lines[0]["loss"]


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_job_completes_or_is_refused_clearly(tiny_base, datasets, tmp_path, quantization):
    from training.errors import TrainingRefused
    from training.worker import quantization_unsupported, run_training

    config = make_config(tiny_base, quantization=quantization, max_steps=8)
    if quantization_unsupported(quantization, "cpu"):
        with pytest.raises(TrainingRefused, match="quantization does not work on this CPU"):
            run_training(config, tmp_path / "job", stop=threading.Event())
        return
    result = run_training(config, tmp_path / "job", stop=threading.Event())
    assert result.status == "completed" and result.steps == 8
    adapter_config = json.loads((result.adapter_path / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "tiny-llama"


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc/self/maps")
def test_a_4bit_model_does_not_keep_its_full_precision_checkpoint_mapped(tiny_base, datasets, tmp_path):
    """Unquantized tensors loaded as views of the memory-mapped checkpoint keep the whole fp32 file resident
    (6.4 GiB of RSS for a 1.7B model, bench/training_throughput.py --memory-model 1.7b) unless copied out."""
    from training.worker import load_base, preflight, quantization_unsupported

    if quantization_unsupported("4bit", "cpu"):
        pytest.skip("bitsandbytes 4-bit does not work on this CPU")
    base = Path(shutil.copytree(tiny_base, tmp_path / "own-copy"))
    model = load_base(preflight(make_config(base, quantization="4bit")))
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if str(base) in line]
    assert model.get_input_embeddings().weight.dtype.is_floating_point
    assert mapped == []


def test_stop_event_cancels_mid_training_with_a_checkpoint(tiny_base, datasets, tmp_path):
    from training.worker import run_training

    job_dir = tmp_path / "job"
    stop = threading.Event()

    def cancel_after_three_steps():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            path = job_dir / "metrics.jsonl"
            if path.exists() and any(json.loads(line)["step"] >= 3 for line in path.read_text().splitlines()):
                stop.set()
            time.sleep(0.005)

    watcher = threading.Thread(target=cancel_after_three_steps, daemon=True)
    watcher.start()
    result = run_training(make_config(tiny_base, max_steps=2000, save_steps=1000), job_dir, stop=stop)
    watcher.join()
    assert result.status == "cancelled"
    assert 3 <= result.steps < 2000 and result.adapter_path is None
    assert result.checkpoint is not None and result.checkpoint.name == f"checkpoint-{result.steps}"
    assert not (job_dir / "adapter").exists()
    assert "Cancelled at step" in (job_dir / "train.log").read_text()


class StopAfterSteps(threading.Event):
    """A stop event that sets itself once the worker has checked it `steps` times (once per optimizer step)."""

    def __init__(self, steps: int):
        super().__init__()
        self.remaining = steps + 1  # the worker checks once before the first step

    def is_set(self) -> bool:
        self.remaining -= 1
        if self.remaining <= 0:
            self.set()
        return super().is_set()


def test_resume_continues_from_the_checkpoint(tiny_base, datasets, tmp_path):
    from training.job_folder import JobFolder
    from training.worker import run_training

    job_dir = tmp_path / "job"
    config = make_config(tiny_base, max_steps=20, save_steps=4)
    first = run_training(config, job_dir, stop=StopAfterSteps(7))
    assert first.status == "cancelled" and first.steps == 7
    assert JobFolder(job_dir).latest_checkpoint().name == "checkpoint-7"

    resumed = run_training(config, job_dir, stop=threading.Event(), resume=True)
    assert resumed.status == "completed" and resumed.steps == 20
    steps = [line["step"] for line in metric_lines(job_dir) if "loss" in line]
    assert steps == list(range(1, 21))  # no restart at 0, no duplicated steps
    assert "resuming at step 7" in (job_dir / "train.log").read_text()


def test_loraplus_trains_the_b_matrices_at_ratio_times_the_rate(tiny_base, datasets, tmp_path):
    from training.worker import build_trainer, preflight

    trainer, _ = build_trainer(
        preflight(make_config(tiny_base, loraplus_lr_ratio=16, max_steps=3, scheduler="constant")), tmp_path / "job"
    )
    trainer.train()
    names = {id(param): name for name, param in trainer.model.named_parameters()}
    rates: dict[str, set[float]] = {"lora_A": set(), "lora_B": set()}
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            rates["lora_B" if "lora_B" in names[id(param)] else "lora_A"].add(group["lr"])
    (a_rate,), (b_rate,) = rates["lora_A"], rates["lora_B"]
    assert a_rate == pytest.approx(3e-3) and b_rate == pytest.approx(16 * 3e-3)


@pytest.mark.parametrize(
    ("cancel_after", "grouped", "dropout"),
    [(4, True, 0.0), (6, True, 0.0), (6, True, 0.1), (6, False, 0.0)],
    ids=["epoch-end", "mid-epoch", "mid-epoch-dropout", "mid-epoch-random-batches"],
)
def test_a_resumed_loraplus_job_ends_where_an_uninterrupted_one_does(
    tiny_base, datasets, tmp_path, cancel_after, grouped, dropout
):
    """The checkpoint holds both LoRA+ groups' Adam state, the schedule and the generators' state, and each epoch's
    batch order follows from the seed and the epoch alone, so a resume continues the same run wherever the cancel
    fell: 16 rows in batches of 4 are 4 steps an epoch, so step 6 is mid-epoch (there the length-grouped order once
    came from the generator as it stood after loading, and the B matrices ended 2-4% away)."""
    from safetensors.torch import load_file

    from training.worker import run_training

    config = make_config(
        tiny_base,
        loraplus_lr_ratio=16,
        max_steps=8,
        save_steps=100,
        lora_dropout=dropout,
        precision="fp32",
        scheduler="cosine",
        group_by_length=grouped,
    )
    whole = run_training(config, tmp_path / "whole", stop=threading.Event())
    first = run_training(config, tmp_path / "split", stop=StopAfterSteps(cancel_after))
    assert first.status == "cancelled" and first.steps == cancel_after
    resumed = run_training(config, tmp_path / "split", stop=threading.Event(), resume=True)
    assert resumed.status == "completed" and resumed.steps == 8
    expected = load_file(whole.adapter_path / "adapter_model.safetensors")
    got = load_file(resumed.adapter_path / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert (got[name] - tensor).abs().max().item() < 1e-5, name


def test_the_lm_head_projects_only_answer_positions_and_gives_the_models_own_loss(
    tiny_base, datasets, tmp_path, monkeypatch
):
    import torch
    import trl.trainer.utils as trl_utils

    from training.worker import build_trainer, preflight

    trainer, _ = build_trainer(preflight(make_config(tiny_base, precision="fp32", batch_size=4)), tmp_path / "job")
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    projected = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(
        trl_utils._ChunkedLogProbFunction,
        "apply",
        lambda hidden, *rest: projected.append(hidden.shape[0]) or apply(hidden, *rest),
    )
    with torch.no_grad():
        fused = trainer.compute_loss(trainer.model, dict(batch))
        reference = trainer.model(**batch).loss
    answer_positions = int((batch["labels"][:, 1:] != -100).sum())
    assert projected == [answer_positions] < [batch["labels"][:, 1:].numel()]
    assert fused.item() == pytest.approx(reference.item(), rel=1e-5)


def test_bf16_trains_lora_weights_in_fp32_over_a_bf16_base(tiny_base, datasets, tmp_path):
    import torch

    from training.worker import build_trainer, preflight

    trainer, _ = build_trainer(preflight(make_config(tiny_base, precision="bf16")), tmp_path / "job")
    dtypes: dict[bool, set] = {True: set(), False: set()}
    for name, param in trainer.model.named_parameters():
        dtypes["lora_" in name].add(param.dtype)
    assert dtypes == {True: {torch.float32}, False: {torch.bfloat16}} and trainer.args.bf16


def test_sft_labels_cover_only_the_answer(tiny_base, datasets, tmp_path):
    from training.worker import build_trainer, preflight

    trainer, tokenizer = build_trainer(preflight(make_config(tiny_base)), tmp_path / "job")
    for example in trainer.train_dataset.select(range(3)):
        ids, labels = example["input_ids"], example["labels"]
        trained = [i for i, label in enumerate(labels) if label != -100]
        assert trained and trained == list(range(trained[0], len(ids)))  # one contiguous span at the end
        assert [ids[i] for i in trained] == [labels[i] for i in trained]
        prompt, answer = tokenizer.decode(ids[: trained[0]]), tokenizer.decode(ids[trained[0] :])
        assert prompt.startswith("<|im_start|>user\nMap field") and prompt.endswith("<|im_start|>assistant\n")
        assert answer.startswith("placement_type: sponsored_") and answer.endswith("<|im_end|>\n")


def test_a_default_system_prompt_is_not_trained_on(tiny_base, datasets, tmp_path):
    """SmolLM2's template injects "You are a helpful AI assistant named SmolLM..." into every conversation
    without a system turn: the worker trains (and saves the adapter's tokenizer) with an empty system turn instead."""
    from transformers import AutoTokenizer

    from tests.tiny_model import CHATML
    from training.models import injects_default_system_prompt, load_tokenizer
    from training.worker import build_trainer, preflight

    chatty = tmp_path / "chatty-base"
    shutil.copytree(tiny_base, chatty)
    tokenizer = AutoTokenizer.from_pretrained(chatty)
    tokenizer.chat_template = CHATML.replace(
        "{% for message in messages %}",
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant for retail media.<|im_end|>\n' }}{% endif %}",
        1,
    )
    tokenizer.save_pretrained(chatty)
    assert injects_default_system_prompt(AutoTokenizer.from_pretrained(chatty))
    assert not injects_default_system_prompt(load_tokenizer(chatty))
    assert not injects_default_system_prompt(AutoTokenizer.from_pretrained(tiny_base))

    trainer, loaded = build_trainer(preflight(make_config(chatty)), tmp_path / "job")
    text = loaded.decode(trainer.train_dataset[0]["input_ids"])
    assert text.startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nMap field") and "helpful" not in text
    rendered = loaded.apply_chat_template(
        [{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    plain, _ = build_trainer(preflight(make_config(tiny_base)), tmp_path / "plain")
    assert plain.processing_class.chat_template == CHATML  # a template without a default prompt is left as is


def test_records_with_nothing_to_learn_are_skipped_and_malformed_ones_refused():
    from registry.errors import InvalidFile
    from registry.shapes import DatasetKind
    from training.formatting import format_records

    records = [
        {"instruction": "a", "input": "", "output": "x"},
        {"instruction": "b", "input": "", "output": " "},
        {"instruction": "c", "input": "", "output": "y"},
    ]
    formatted = format_records(records, DatasetKind.ALPACA, "sft")
    assert len(formatted.examples) == 2 and formatted.skipped == [2]
    pairs = [
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"prompt": "p", "chosen": "good", "rejected": "bad"},
    ]
    assert format_records(pairs, DatasetKind.DPO, "dpo").skipped == [1]
    with pytest.raises(InvalidFile, match=r"no records to train on \(record 1: the answer is empty"):
        format_records(records[1:2], DatasetKind.ALPACA, "sft")
    with pytest.raises(InvalidFile, match="prompt is empty") as refused:
        format_records([{"prompt": " ", "chosen": "a", "rejected": "b"}], DatasetKind.DPO, "dpo")
    assert refused.value.line == 1


def test_every_sft_shape_becomes_a_conversational_prompt_completion():
    from registry.shapes import DatasetKind
    from training.formatting import dpo_example, sft_example

    alpaca = sft_example(
        {"instruction": "Map it", "input": "adType=sp", "output": "placement_type: x"}, DatasetKind.ALPACA
    )
    assert alpaca == {
        "prompt": [{"role": "user", "content": "Map it\n\nadType=sp"}],
        "completion": [{"role": "assistant", "content": "placement_type: x"}],
    }
    chat = sft_example(
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a2"},
            ]
        },
        DatasetKind.CHAT,
    )
    assert [m["content"] for m in chat["prompt"]] == ["s", "q1", "a1", "q2"] and chat["completion"][0][
        "content"
    ] == "a2"
    evaluation = sft_example({"prompt": "p", "reference": "r"}, DatasetKind.EVALUATION)
    assert evaluation["completion"] == [{"role": "assistant", "content": "r"}]
    pair = dpo_example({"prompt": "p", "chosen": "good", "rejected": "bad"})
    assert pair == {
        "prompt": [{"role": "user", "content": "p"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }


BAD_CONFIGS = [
    ({"lora_alpha": 0}, "lora alpha"),
    ({"lora_alpha": -8}, "lora alpha"),
    ({"lora_r": 0}, "lora r"),
    ({"lora_r": 512}, "lora r"),
    ({"learning_rate": 0}, "learning rate"),
    ({"learning_rate": 1.5}, "learning rate"),
    ({"batch_size": 0}, "batch size"),
    ({"max_seq_length": 8}, "max seq length"),
    ({"lora_dropout": 1.0}, "lora dropout"),
    ({"lora_dropout": -0.1}, "lora dropout"),
    ({"epochs": None, "max_steps": None}, "Set epochs or max steps"),
    ({"warmup_ratio": 1.0}, "warmup ratio"),
    ({"adapter_name": "../escape"}, "adapter name"),
    ({"quantization": "3bit"}, "quantization"),
    ({"objective": "ppo"}, "objective"),
    ({"target_modules": []}, "target modules"),
    ({"lora_rank": 8}, "lora rank is not a setting"),
    ({"eval_dataset": "amazon_sft"}, "eval dataset is the training dataset"),
]


@pytest.mark.parametrize(("change", "message"), BAD_CONFIGS, ids=[str(c) for c, _ in BAD_CONFIGS])
def test_impossible_configs_are_refused_with_a_clear_message(change, message):
    from training.config import build_config
    from training.errors import InvalidConfig

    values = {"adapter_name": "ok", "train_dataset": "amazon_sft", **change}
    with pytest.raises(InvalidConfig, match=message) as refused:
        build_config(**values)
    assert str(refused.value).startswith("Invalid training settings")


def test_model_and_data_mismatches_are_refused_before_loading(tiny_base, datasets, tmp_path):
    from registry.errors import ConsoleError, InvalidFile
    from training.base_models import resolve_base_model
    from training.errors import BaseModelError, TrainingRefused
    from training.worker import preflight

    with pytest.raises(TrainingRefused, match=r"qkv_proj do not exist .* q_proj"):
        preflight(make_config(tiny_base, target_modules=["q_proj", "qkv_proj"]))
    with pytest.raises(TrainingRefused, match="output layer"):
        preflight(make_config(tiny_base, target_modules=["lm_head"]))
    with pytest.raises(InvalidFile, match="DPO needs preference pairs"):
        preflight(make_config(tiny_base, objective="dpo"))
    with pytest.raises(InvalidFile, match="SFT needs"):
        preflight(make_config(tiny_base, train_dataset="policy_dpo"))
    with pytest.raises(ConsoleError, match="No dataset named 'missing'"):
        preflight(make_config(tiny_base, train_dataset="missing"))
    with pytest.raises(BaseModelError, match="not available offline"):
        resolve_base_model("some-org/never-downloaded-model")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_base / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(BaseModelError, match="only from safetensors"):
        resolve_base_model(str(pickled))
    assert preflight(make_config(tiny_base, target_modules="q_proj, v_proj")).base.source == "local"


def test_seed_api_keys_presets_and_spellings_are_accepted():
    from training.config import PRESETS, build_config, field_help

    config = build_config(
        "qlora low memory",
        adapter_type="Retailer",
        adapter_name="amazon_v3",
        dataset_path="datasets/amazon_v3.jsonl",
        objective="SFT",
        config={"lora_r": 16, "lora_alpha": 32, "batch_size": 4, "learning_rate": 0.0002, "quantization": "4-bit"},
    )
    assert (config.adapter_type, config.objective, config.quantization) == ("retailer", "sft", "4bit")
    assert config.train_dataset == "datasets/amazon_v3.jsonl" and config.batch_size == 4
    assert config.gradient_checkpointing and config.gradient_accumulation == 8
    assert build_config("quick demo", adapter_name="a", train_dataset="d").max_steps == 30
    assert {"quick demo", "balanced", "qlora low memory"} <= set(PRESETS)
    fast = build_config("retailer mapping (fast)", adapter_name="a", train_dataset="d")
    assert fast.loraplus_lr_ratio == 12 and fast.max_steps is None and fast.lora_dropout == 0
    # the preset's 10-minute figure is measured with one single-thread process per core on the 135M model
    amazon = fast.planned_examples(rows=1270)  # the demo Amazon set, 1.2 passes
    assert fast.processes(device="cpu", cores=2, parameters=134_515_008, examples=amazon)[0] == 2
    assert fast.processes(device="cpu", cores=2, parameters=1_000_000, examples=amazon)[0] == 1  # a tiny model: one
    assert "alpha / r" in field_help("lora_alpha")


def test_local_base_model_info_is_cheap_and_stable(tiny_base, tmp_path, monkeypatch):
    from training.base_models import list_base_models, resolve_base_model

    first = resolve_base_model(str(tiny_base))
    assert first.source == "local" and first.architecture == "LlamaForCausalLM" and first.dtype == "float32"
    assert first.parameters > 10_000 and first.size_bytes > 0 and len(first.fingerprint) == 64
    copy = tmp_path / "models" / "tiny-copy"
    shutil.copytree(tiny_base, copy)
    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path / "models"))
    assert resolve_base_model("tiny-copy").fingerprint == first.fingerprint
    listed = {info.id: info for info in list_base_models()}
    assert listed["tiny-copy"].ready and listed["SmolLM2-135M-Instruct"].source == "embedded"


def test_an_adapter_names_its_base_as_users_look_it_up(tiny_base):
    from training.base_models import describe_folder
    from training.embedded_model import HUB_ID

    local = describe_folder(tiny_base, str(tiny_base), "local")
    assert local.public_name == "tiny-llama"
    assert (
        local.model_copy(update={"source": "embedded"}).public_name == HUB_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert local.model_copy(update={"source": "hub", "id": "org/model"}).public_name == "org/model"


def test_the_efficiency_counts_the_batches_of_the_steps_done_not_those_built_ahead(tiny_base, datasets, tmp_path):
    """The data loader builds the next batch before it hands over the current one: a job's FLOP rate counts only
    the batches its finished optimizer steps trained on (it counted one batch too many, 2x at the first step)."""
    from transformers import TrainerState

    from training.flops import answer_tokens, sequence_lengths
    from training.job_folder import JobFolder
    from training.worker import JobMonitor, build_trainer, preflight

    checks = preflight(make_config(tiny_base, precision="fp32", batch_size=2, gradient_accumulation_steps=2))
    trainer, _ = build_trainer(checks, tmp_path / "job")
    (tmp_path / "job").mkdir(exist_ok=True)
    monitor = JobMonitor(threading.Event(), JobFolder(tmp_path / "job"))
    monitor.count_flops(trainer, checks)
    monitor.on_train_begin(trainer.args, TrainerState(global_step=0, max_steps=30), None)
    monitor.started -= 10.0  # a long elapsed time, so the rounding of the rates does not matter
    loader = iter(trainer.get_train_dataloader())
    trained = [next(loader) for _ in range(trainer.args.gradient_accumulation_steps)]  # what step 1 trains on
    assert len(monitor.recorder.batches) > len(trained)  # the next batch is already built
    progress = monitor.progress(TrainerState(global_step=1, max_steps=30))
    expected = sum(monitor.recorder.cost.flops(sequence_lengths(b), answer_tokens(b)) for b in trained)
    assert progress["flops_per_second"] * progress["elapsed"] == pytest.approx(expected, rel=1e-3)
    assert progress["efficiency"] == pytest.approx(progress["flops_per_second"] / monitor.peak, abs=1e-4)


def test_batches_grouped_by_length_bring_a_retailer_set_field_by_field_so_its_preset_draws_them_at_random(registry):
    """Every timestamp prompt is as long as the next, so length-grouped batches (Transformers' sampler, as the
    trainer draws them) bring the demo Amazon set's fields in long runs of one field; the retailer preset turns
    grouping off and its batches mix fields. Packing always draws at random."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from registry.datasets import iter_dataset
    from services.demo import seed_demo
    from training.config import build_config
    from training.worker import sampling_strategy

    seed_demo(registry)
    records = list(iter_dataset("retailer_amazon_sft"))
    lengths = [len(r["instruction"]) + len(r["output"]) for r in records]

    def longest_run_of_one_field(order: list[int]) -> int:
        fields = [frozenset(records[i]["task"] for i in order[k : k + 4]) for k in range(0, len(order), 4)]
        longest = run = 1
        for previous, current in zip(fields, fields[1:]):
            run = run + 1 if len(current) == 1 and current == previous else 1
            longest = max(longest, run)
        return longest

    grouped = get_length_grouped_indices(lengths, 4, generator=torch.Generator().manual_seed(7))
    shuffled = torch.randperm(len(records), generator=torch.Generator().manual_seed(7)).tolist()
    assert longest_run_of_one_field(grouped) >= 10
    assert longest_run_of_one_field(shuffled) <= 5

    settings = {"adapter_name": "a", "train_dataset": "retailer_amazon_sft"}
    assert sampling_strategy(build_config(**settings)) == "group_by_length"
    assert sampling_strategy(build_config("retailer mapping (fast)", **settings)) == "random"
    assert sampling_strategy(build_config(**settings, packing=True)) == "random"
