"""CPU training's attention (`training.attention`): SDPA's math kernel on short sequences, the same attention."""

from tests.tiny_model import in_memory_llama_config


def tiny_llama():
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = in_memory_llama_config()
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa")


def logits_and_grads(model, length):
    """A padded batch (the second row's first 5 tokens are padding) through the model, and the gradients."""
    import torch

    model.zero_grad()
    ids = torch.arange(2 * length).reshape(2, length) % 64
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, :5] = 0
    logits = model(input_ids=ids, attention_mask=mask).logits
    logits[mask.bool()].square().mean().backward()
    return logits.detach(), [param.grad.clone() for param in model.parameters()]


def test_short_and_long_sequences_attend_as_sdpa_does_and_leave_the_kernel_flags_as_they_were(monkeypatch):
    import torch
    import transformers.integrations.sdpa_attention as sdpa_module

    from training import attention

    monkeypatch.setattr(attention, "MATH_MAX_LENGTH", 24)
    model = tiny_llama()
    chosen = []  # (query length, whether SDPA's flash kernel was allowed) of each call through the new attention
    sdpa_attention_forward = sdpa_module.sdpa_attention_forward

    def recording(module, query, *args, **kwargs):
        if model.config._attn_implementation == attention.NAME:
            chosen.append((query.shape[2], torch.backends.cuda.flash_sdp_enabled()))
        return sdpa_attention_forward(module, query, *args, **kwargs)

    monkeypatch.setattr(sdpa_module, "sdpa_attention_forward", recording)
    for length in (20, 30):  # under and over MATH_MAX_LENGTH
        reference, reference_grads = logits_and_grads(model, length)
        attention.use_short_sequence_attention(model)
        logits, grads = logits_and_grads(model, length)
        model.set_attn_implementation("sdpa")
        assert torch.allclose(logits, reference, atol=1e-5) and not torch.isnan(logits).any()
        for grad, reference_grad in zip(grads, reference_grads, strict=True):
            assert torch.allclose(grad, reference_grad, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"
    assert chosen == [(20, False)] * 2 + [(30, True)] * 2  # a call per layer: the math kernel alone under 24 tokens
    assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
