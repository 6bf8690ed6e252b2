"""The CPU LoRA dropout: the same Bernoulli mask PEFT's nn.Dropout applies, drawn from 16 random bits per element."""

import json
import threading

import pytest

from tests.test_training_worker import make_config


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_every_element_is_kept_with_probability_one_minus_p_and_scaled_like_torchs_dropout(p):
    import torch

    from training.lora_dropout import LoraDropout

    torch.manual_seed(0)
    # Odd sizes: the element count is not a multiple of the four 16-bit lanes one 64-bit draw gives.
    x = torch.rand(1001, 1003) + 1.0
    dropout = LoraDropout(p).train()
    out = dropout(x)
    kept = out != 0
    # 1M Bernoulli draws: the rate's standard deviation is <= 0.0005, so 0.004 is 8 of them.
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.004)
    # Each of the four lanes of a 64-bit draw on its own (a lane stuck on the sign bit keeps ~1 - 2p, or all).
    lanes = kept.reshape(-1)[: 1001 * 1000].reshape(-1, 4).float().mean(dim=0)
    assert torch.allclose(lanes, torch.full((4,), 1 - p), atol=0.008), lanes
    # Kept values are scaled by 1 / (1 - p), as nn.Dropout does; dropped ones are exactly zero.
    assert torch.allclose(out[kept], x[kept] / (1 - p), rtol=1e-4)
    assert (out[~kept] == 0).all()
    # Masks are independent draws: neighbouring elements and successive calls do not repeat each other.
    again = dropout(x) != 0
    assert 0 < (again != kept).float().mean().item() < 2.5 * p


def test_the_gradient_goes_through_the_kept_elements_only_and_eval_is_the_identity():
    import torch

    from training.lora_dropout import LoraDropout

    torch.manual_seed(1)
    x = torch.randn(64, 96, requires_grad=True)
    dropout = LoraDropout(0.2).train()
    out = dropout(x)
    weights = torch.randn(64, 96)
    (out * weights).sum().backward()
    kept = out.detach() != 0
    assert torch.allclose(x.grad, torch.where(kept, weights / 0.8, 0.0), rtol=1e-5)
    dropout.eval()
    assert dropout(x) is x


def test_the_same_seed_draws_the_same_masks():
    import torch

    from training.lora_dropout import LoraDropout

    x = torch.ones(37, 53)
    dropout = LoraDropout(0.1).train()
    torch.manual_seed(7)
    first = dropout(x)
    torch.manual_seed(7)
    assert torch.equal(dropout(x), first)


def test_each_lora_input_of_a_layer_has_its_own_draw_and_every_layer_the_same_ones():
    """The role number keeps dropouts on one input apart in a compiled graph; equal across layers, one graph serves
    them all."""
    import torch

    from tests.test_lora_forward import tiny_peft_model
    from training.lora_dropout import LoraDropout, use_lora_dropout

    model = tiny_peft_model(torch.float32, dropout=0.1)
    assert use_lora_dropout(model) == 14
    draws: dict[str, set[int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraDropout):
            layer, role = name.split(".layers.")[1].split(".", 1)
            draws.setdefault(role, set()).add(module.draw)
    assert len(draws) == 7 and all(len(numbers) == 1 for numbers in draws.values())
    assert len(set.union(*draws.values())) == 7


def test_a_cpu_job_trains_with_it_and_no_dropout_stays_peft_s_identity(tiny_base, datasets, tmp_path):
    import torch

    from training.lora_dropout import LoraDropout
    from training.worker import build_trainer, preflight

    trainer, _ = build_trainer(preflight(make_config(tiny_base, lora_dropout=0.1)), tmp_path / "drop")
    dropouts = [m for name, m in trainer.model.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(isinstance(m, LoraDropout) and m.p == 0.1 for m in dropouts)
    trainer, _ = build_trainer(preflight(make_config(tiny_base, lora_dropout=0.0)), tmp_path / "none")
    dropouts = [m for name, m in trainer.model.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(isinstance(m, torch.nn.Identity) for m in dropouts)


def test_a_job_with_it_learns_and_its_adapter_loads_in_peft(tiny_base, datasets, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.worker import run_training

    config = make_config(tiny_base, lora_dropout=0.1, max_steps=12)
    result = run_training(config, tmp_path / "job", stop=threading.Event())
    assert result.status == "completed"
    lines = [line for line in (tmp_path / "job" / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    losses = [json.loads(line)["loss"] for line in lines]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), result.adapter_path)
    assert type(model.base_model.model.model.layers[0].self_attn.q_proj.lora_dropout["default"]).__name__ == "Dropout"
