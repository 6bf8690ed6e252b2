"""LoRA layers' fused CPU forward (`training.lora_forward`) against PEFT's own: same outputs, gradients and adapters."""

import pytest

from tests.tiny_model import in_memory_llama_config


def tiny_peft_model(dtype, dropout=0.0):
    """A 2-layer Llama with LoRA on every linear layer, B initialised away from zero so the branch counts."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = in_memory_llama_config()
    model = LlamaForCausalLM(config).to(dtype)
    lora = LoraConfig(r=4, lora_alpha=12, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model


def peft_forward(model):
    """Back to PEFT's own forward on every layer `use_fused_lora` changed."""
    for module in model.modules():
        module.__dict__.pop("forward", None)


def loss_and_grads(model, autocast: bool):
    import torch

    model.zero_grad()
    ids = torch.arange(40).reshape(2, 20) % 64
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids).logits
    logits.float().square().mean().backward()
    grads = {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}
    return logits.detach().float(), grads


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fused_forward_gives_peft_s_logits_and_gradients(precision):
    import torch

    from training.lora_forward import use_fused_lora

    bf16 = precision == "bf16"
    model = tiny_peft_model(torch.bfloat16 if bf16 else torch.float32)
    assert use_fused_lora(model) == 14  # 7 linear layers per decoder layer
    calls = []  # PEFT calls lora_B as a module; the fused path uses its weight inside addmm
    next(module for name, module in model.named_modules() if name.endswith("lora_B.default")).register_forward_hook(
        lambda *_: calls.append(1)
    )
    fused_logits, fused_grads = loss_and_grads(model, autocast=bf16)
    assert calls == []
    peft_forward(model)
    logits, grads = loss_and_grads(model, autocast=bf16)
    assert calls == [1]
    assert set(fused_grads) == set(grads) and len(grads) == 28  # every LoRA A and B
    tolerance = 3e-2 if bf16 else 1e-5
    assert torch.allclose(fused_logits, logits, rtol=tolerance, atol=tolerance * logits.abs().max().item())
    for name, grad in grads.items():
        scale = grad.abs().max().item()
        assert scale > 0 and torch.allclose(fused_grads[name], grad, rtol=tolerance, atol=tolerance * scale), name


def test_the_fused_forward_folds_lora_dropout_s_scale_into_b():
    """With our LoRA dropout the fused path zeroes the dropped inputs and leaves their 1 / (1 - p) to B's scaling
    (the dropout module itself is never called): the same masks from the same seed give PEFT's logits and gradients."""
    import torch

    from training.lora_dropout import LoraDropout, use_lora_dropout
    from training.lora_forward import use_fused_lora

    model = tiny_peft_model(torch.float32, dropout=0.3)
    assert use_lora_dropout(model) == 14 and use_fused_lora(model) == 14
    calls = []
    for module in model.modules():
        if isinstance(module, LoraDropout):
            module.register_forward_hook(lambda *_: calls.append(1))
    torch.manual_seed(1)
    fused_logits, fused_grads = loss_and_grads(model, autocast=False)
    assert calls == []
    peft_forward(model)
    torch.manual_seed(1)
    logits, grads = loss_and_grads(model, autocast=False)
    assert len(calls) == 14
    torch.manual_seed(2)
    assert not torch.allclose(loss_and_grads(model, autocast=False)[0], logits, atol=1e-3)  # the masks do drop
    assert torch.allclose(fused_logits, logits, atol=1e-5 * logits.abs().max().item())
    assert set(fused_grads) == set(grads) and len(grads) == 28
    for name, grad in grads.items():
        scale = grad.abs().max().item()
        assert scale > 0 and torch.allclose(fused_grads[name], grad, rtol=1e-5, atol=1e-5 * scale), name


def test_training_with_the_fused_forward_saves_the_adapter_peft_s_forward_does(tmp_path):
    """Three AdamW steps each way from the same start: the saved adapters (B unscaled, the scaling in the config)
    agree, so the scaling folded into B at run time never reaches the files."""
    import json

    import torch
    from safetensors.torch import load_file

    from training.lora_forward import use_fused_lora

    saved = {}
    for name in ("peft", "fused"):
        model = tiny_peft_model(torch.float32)
        if name == "fused":
            use_fused_lora(model)
        optimizer = torch.optim.AdamW([param for param in model.parameters() if param.requires_grad], lr=1e-2)
        for _ in range(3):
            loss_and_grads(model, autocast=False)
            optimizer.step()
        model.save_pretrained(tmp_path / name)
        saved[name] = load_file(tmp_path / name / "adapter_model.safetensors")
    assert saved["fused"].keys() == saved["peft"].keys() and len(saved["peft"]) == 28
    for key, tensor in saved["peft"].items():
        assert torch.allclose(saved["fused"][key], tensor, atol=1e-5), key
    configs = [json.loads((tmp_path / name / "adapter_config.json").read_text()) for name in ("peft", "fused")]
    assert configs[0] == configs[1] and configs[0]["lora_alpha"] == 12


def test_disabled_adapters_run_the_base_alone():
    """Disabled adapters (as when a reference model's logits are computed) bypass the fused path."""
    import torch

    from training.lora_forward import use_fused_lora

    model = tiny_peft_model(torch.float32)
    use_fused_lora(model)
    ids = torch.arange(20).reshape(1, 20)
    with torch.no_grad():
        with_adapter = model(input_ids=ids).logits
        with model.disable_adapter():
            disabled = model(input_ids=ids).logits
        peft_forward(model)
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    assert torch.equal(disabled, base) and not torch.allclose(with_adapter, base, atol=1e-3)
