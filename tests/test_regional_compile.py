"""torch.compile of the decoder layers: a compiled job trains as the eager one does, and needs a C++ compiler."""

import json
import re
import threading

import pytest

from tests.test_training_worker import make_config


def test_compile_is_refused_with_what_to_do_where_there_is_no_cxx_compiler(tiny_base, datasets, monkeypatch):
    from registry.errors import ConsoleError
    from training.worker import preflight

    monkeypatch.setenv("CXX", "no-such-compiler-rmn")
    with pytest.raises(ConsoleError, match="builds C\\+\\+ kernels with no-such-compiler-rmn.*turn Compile off"):
        preflight(make_config(tiny_base, torch_compile=True))
    assert preflight(make_config(tiny_base)).config.torch_compile == "auto"  # auto trains eager without a compiler


def _losses(job_dir):
    lines = (job_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def _adapter(path):
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


@pytest.mark.parametrize(
    "settings",
    [{"lora_dropout": 0.0}, {"lora_dropout": 0.1, "gradient_checkpointing": True}],
    ids=["no-dropout", "dropout-and-checkpointing"],
)
def test_a_compiled_job_trains_exactly_like_the_eager_one_without_a_graph_break(
    tiny_base, datasets, tmp_path, settings
):
    import torch
    from torch._dynamo.utils import counters

    from training.worker import run_training

    runs = {}
    for mode in (False, True):
        counters.clear()
        # fp32, as compile's auto rule compiles: on a CPU with native bf16 the default trains under bf16 autocast, where
        # inductor's fused kernels round differently from eager ones (adapters 1e-2 apart after 6 steps, measured).
        config = make_config(tiny_base, max_steps=6, torch_compile=mode, precision="fp32", **settings)
        runs[mode] = run_training(config, tmp_path / str(mode), stop=threading.Event())
        assert runs[mode].status == "completed"
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] >= 1  # the compiled run did compile
    log = (tmp_path / "True" / "train.log").read_text()
    assert "Compiling the 2 decoder layers with torch.compile" in log
    assert re.search(r"First step in [\d.]+ s, compiling the decoder layers included", log)  # its warm-up, shown
    eager_log = (tmp_path / "False" / "train.log").read_text()
    assert "Compiling" not in eager_log and "First step in" not in eager_log
    compiled_losses, eager_losses = _losses(tmp_path / "True"), _losses(tmp_path / "False")
    if not settings["lora_dropout"]:
        # Same seed, same batches, no randomness: the losses and the trained adapter agree up to the order inductor
        # sums in (which Adam's normalised steps of 3e-3 can carry to ~1e-5 in a weight).
        assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
        eager, compiled = _adapter(runs[False].adapter_path), _adapter(runs[True].adapter_path)
        assert eager.keys() == compiled.keys()
        for name, tensor in eager.items():
            assert torch.allclose(compiled[name], tensor, atol=3e-4, rtol=1e-3), name
        return
    # With dropout, the first step draws the same masks from the same generator (same loss); compiling the backward
    # graph then draws from that generator too, so later masks differ from the eager run's: same distribution, so
    # the losses stay close without being equal.
    assert compiled_losses[0] == pytest.approx(eager_losses[0], rel=1e-5)
    assert compiled_losses == pytest.approx(eager_losses, rel=2e-2)


def test_compiled_dropout_under_checkpointing_drops_the_same_elements_forward_and_backward():
    """The backward pass recomputes the checkpointed forward: it must reuse the mask the forward drew, not a new one."""
    import torch
    from torch.utils.checkpoint import checkpoint

    from training.lora_dropout import LoraDropout

    torch.manual_seed(5)
    dropout = LoraDropout(0.2).train()
    weights = torch.randn(64, 96)
    region = torch.compile(lambda v: dropout(v) * weights, dynamic=False)
    x = (torch.rand(64, 96) + 1.0).requires_grad_()
    out = checkpoint(region, x, use_reentrant=False)
    out.sum().backward()
    kept = out.detach() != 0
    assert 0.7 < kept.float().mean().item() < 0.9
    assert torch.allclose(x.grad, torch.where(kept, weights / 0.8, 0.0), rtol=1e-5)


def test_compiled_dropouts_on_one_input_draw_masks_of_their_own():
    """q, k and v's LoRA inputs are one tensor: compiled for training, their dropouts still draw independent masks
    (the compiler merged the identical mask calls into one, so all three shared a mask, until each passed its role)."""
    import torch

    from training.lora_dropout import LoraDropout

    torch.manual_seed(0)
    dropouts = [LoraDropout(0.3, draw).train() for draw in range(3)]
    region = torch.compile(lambda v: [dropout(v) for dropout in dropouts], dynamic=False)
    kept = [out != 0 for out in region(torch.ones(64, 96, requires_grad=True))]
    for first, second in ((0, 1), (0, 2), (1, 2)):  # independent masks differ on 2 x 0.3 x 0.7 = 42% of elements
        assert 0.3 < (kept[first] != kept[second]).float().mean().item() < 0.55
