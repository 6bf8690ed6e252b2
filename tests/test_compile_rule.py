"""torch_compile's auto rule: which jobs compile their decoder layers, decided in one place (JobConfig.compiles)."""

import pytest

from tests.test_training_worker import make_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**values):
    from training.config import build_config

    return build_config(adapter_name="rule", train_dataset="amazon_sft", **values)


def test_auto_compiles_only_long_unquantized_cpu_sft_jobs():
    from training.config import COMPILE_MIN_TFLOP

    auto = _config()
    assert auto.torch_compile == "auto"
    enough, short = COMPILE_MIN_TFLOP * 1e12, COMPILE_MIN_TFLOP * 1e12 * 0.99
    for dtype, bf16 in (("fp32", False), ("bf16", True)):  # both measured to repay it (bench/compile_rule.py)
        assert auto.compiles(device="cpu", bf16=bf16, planned_flops=enough)[0]
        compiles, why = auto.compiles(device="cpu", bf16=bf16, planned_flops=short)
        assert not compiles and f"of {dtype} training planned, under {COMPILE_MIN_TFLOP:.0f}" in why
    refused = {
        "cuda": (auto, {"device": "cuda", "bf16": True}),
        "4-bit": (_config(quantization="4bit"), {"device": "cpu", "bf16": False}),
        "dpo": (_config(objective="dpo"), {"device": "cpu", "bf16": True}),
        "two Ray workers": (_config(workers=2), {"device": "cpu", "bf16": False}),
    }
    for case, (config, where) in refused.items():
        compiles, why = config.compiles(planned_flops=100 * enough, **where)
        assert not compiles and "only" in why, case
    # on / off decide alone, whatever the job; the switch's old saved values still load.
    assert _config(torch_compile="on").compiles(device="cpu", bf16=True, planned_flops=0.0)[0]
    assert not _config(torch_compile="off").compiles(device="cpu", bf16=False, planned_flops=100 * enough)[0]
    assert _config(torch_compile=True).torch_compile == "on" and _config(torch_compile=False).torch_compile == "off"


def test_the_retailer_preset_on_the_demo_data_compiles_in_bf16(registry, tmp_path):
    """The whole retailer job (1.2 passes over the demo Amazon set on the embedded model) is one of the long bf16 jobs
    bench/compile_rule.py timed faster compiled: auto compiles it. Building the trainer compiles nothing yet."""
    from services.demo import seed_demo
    from training.config import COMPILE_MIN_TFLOP, build_config
    from training.worker import build_trainer, planned_flops, preflight

    seed_demo(registry)
    config = build_config("retailer mapping (fast)", adapter_name="rule", train_dataset="retailer_amazon_sft")
    trainer, _ = build_trainer(preflight(config), tmp_path / "job")
    planned = planned_flops(trainer, config)
    assert planned > 2 * COMPILE_MIN_TFLOP * 1e12  # about 46 TFLOP
    assert config.compiles(device="cpu", bf16=True, planned_flops=planned)[0]


def test_the_planned_work_is_what_the_flop_recorder_counts_over_the_same_pass(tiny_base, datasets, tmp_path):
    from training.flops import FlopRecorder, model_cost
    from training.worker import build_trainer, planned_flops, preflight

    config = make_config(tiny_base, max_steps=None, epochs=1.0, batch_size=4)
    trainer, _ = build_trainer(preflight(config), tmp_path / "job")
    cost = model_cost(trainer.model, checkpointing=False)
    recorder = FlopRecorder(trainer.data_collator, cost)
    trainer.data_collator = recorder
    for _ in trainer.get_train_dataloader():
        pass
    assert len(recorder.batches) == 4  # 16 examples in batches of 4
    counted = sum(recorder.batches)
    assert planned_flops(trainer, config) == pytest.approx(counted, rel=0.02)
    # max_steps plans that share of the passes: 2 steps of 4 are half of these 16 examples.
    halved = make_config(tiny_base, max_steps=2, batch_size=4)
    assert planned_flops(trainer, halved) == pytest.approx(counted / 2, rel=0.02)


def test_a_data_parallel_rank_plans_the_whole_job_s_work(tiny_base, datasets, tmp_path):
    """A rank builds its trainer from its share of the batch (`split_batch`): the job it plans for auto's rule is still
    the whole one, set by max_steps or by passes, so a job compiles or not whatever number of processes trains it."""
    from training.data_parallel import split_batch
    from training.worker import build_trainer, planned_flops, preflight

    trainer, _ = build_trainer(preflight(make_config(tiny_base, max_steps=None, epochs=1.0)), tmp_path / "job")
    for whole in (
        make_config(tiny_base, max_steps=2, batch_size=4),
        make_config(tiny_base, max_steps=None, epochs=1.0),
    ):
        rank = split_batch(whole, 2)
        assert planned_flops(trainer, rank, ranks=2) == pytest.approx(planned_flops(trainer, whole, ranks=1))


def test_a_job_compiles_where_the_rule_says_and_its_log_says_why(tiny_base, datasets, tmp_path, monkeypatch):
    """The decision in the worker follows JobConfig.compiles (building the trainer compiles nothing yet: inductor runs at
    the first step, so this stays quick)."""
    import training.config
    from training.job_folder import JobFolder
    from training.regional_compile import decoder_layers
    from training.worker import build_trainer, preflight

    def build(name, **values):
        folder = JobFolder(tmp_path / name)
        # fp32, the jobs auto compiles: "auto" precision trains bf16 where the CPU computes it natively
        config = make_config(tiny_base, precision="fp32", **values)
        trainer, _ = build_trainer(preflight(config), folder.path, folder=folder)
        compiled = [layer._compiled_call_impl is not None for layer in decoder_layers(trainer.model)]
        return compiled, (folder.path / "train.log").read_text()

    compiled, log = build("short")
    assert compiled == [False, False]
    assert (
        f"Compile is auto: about 0.0 TFLOP of fp32 training planned, under {training.config.COMPILE_MIN_TFLOP:.0f}"
        in log
    )
    assert "Compiling" not in log
    monkeypatch.setattr(training.config, "COMPILE_MIN_TFLOP", 1e-9)  # this tiny job is now long enough
    compiled, log = build("long")
    assert compiled == [True, True]
    assert "Compiling the 2 decoder layers with torch.compile" in log
    compiled, log = build("off", torch_compile="off")
    assert compiled == [False, False] and "Compile is off: training eager." in log
    monkeypatch.setenv("CXX", "no-such-compiler-rmn")  # auto is never refused: without a compiler it stays eager
    compiled, log = build("no-compiler")
    assert compiled == [False, False] and "but torch.compile builds C++ kernels with no-such-compiler-rmn" in log


def test_the_quick_demo_never_compiles_on_the_embedded_model_whatever_its_data():
    """The most the quick demo can train (every sequence at its max length, every token an answer) on SmolLM2-135M's
    shape stays under the threshold, so auto keeps the demo eager."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.config import COMPILE_MIN_TFLOP, build_config
    from training.flops import model_cost

    demo = build_config("quick demo", adapter_name="demo", train_dataset="any")
    smollm2 = LlamaConfig(  # SmolLM2-135M-Instruct's config.json
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(smollm2)
    lora = LoraConfig(r=demo.lora_r, lora_alpha=demo.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    cost = model_cost(get_peft_model(model, lora), checkpointing=demo.gradient_checkpointing)
    rows = [demo.max_seq_length] * (demo.max_steps * demo.effective_batch_size)
    most = cost.flops(rows, sum(rows))
    assert 5e12 < most < COMPILE_MIN_TFLOP * 1e12
    assert not demo.compiles(device="cpu", bf16=False, planned_flops=most)[0]
    assert not demo.compiles(device="cpu", bf16=True, planned_flops=most)[0]
