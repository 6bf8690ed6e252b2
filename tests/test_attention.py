"""CPU training's attention (`training.attention`): grouped heads or SDPA's math kernel on short sequences, the same
attention as SDPA."""

import pytest

from tests.tiny_model import in_memory_llama_config


def tiny_llama(kv_heads):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = in_memory_llama_config()
    config.num_key_value_heads = kv_heads
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa")


def logits_and_grads(model, length):
    """A padded batch (the second row's first 5 tokens are padding) through the model: the logits of its real tokens,
    and the gradients."""
    import torch

    model.zero_grad()
    ids = torch.arange(2 * length).reshape(2, length) % 64
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, :5] = 0
    logits = model(input_ids=ids, attention_mask=mask).logits[mask.bool()]
    logits.square().mean().backward()
    return logits.detach(), [param.grad.clone() for param in model.parameters()]


@pytest.mark.parametrize("kv_heads, short", [(2, "grouped"), (4, False)])
def test_short_and_long_sequences_attend_as_sdpa_does_and_leave_the_kernel_flags_as_they_were(
    monkeypatch, kv_heads, short
):
    """4 query heads over 2 key-value heads go to the grouped product on short sequences, 4 over 4 to SDPA's math
    kernel; long sequences to SDPA with its flash kernel allowed."""
    import torch
    import transformers.integrations.sdpa_attention as sdpa_module

    from training import attention

    monkeypatch.setattr(attention, "MATH_MAX_LENGTH", 24)
    model = tiny_llama(kv_heads)
    chosen = []  # (query length, the grouped product or whether SDPA's flash kernel was allowed) of each call
    sdpa_attention_forward = sdpa_module.sdpa_attention_forward
    grouped_attention = attention.grouped_attention

    def recording(module, query, *args, **kwargs):
        if model.config._attn_implementation == attention.NAME:
            chosen.append((query.shape[2], torch.backends.cuda.flash_sdp_enabled()))
        return sdpa_attention_forward(module, query, *args, **kwargs)

    def recording_grouped(module, query, *args, **kwargs):
        chosen.append((query.shape[2], "grouped"))
        return grouped_attention(module, query, *args, **kwargs)

    monkeypatch.setattr(sdpa_module, "sdpa_attention_forward", recording)
    monkeypatch.setattr(attention, "grouped_attention", recording_grouped)
    for length in (20, 30):  # under and over MATH_MAX_LENGTH
        reference, reference_grads = logits_and_grads(model, length)
        attention.use_short_sequence_attention(model)
        logits, grads = logits_and_grads(model, length)
        model.set_attn_implementation("sdpa")
        assert torch.allclose(logits, reference, atol=1e-5) and not torch.isnan(logits).any()
        for grad, reference_grad in zip(grads, reference_grads, strict=True):
            assert torch.allclose(grad, reference_grad, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"
    assert chosen == [(20, short)] * 2 + [(30, True)] * 2  # a call per layer
    assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()


@pytest.mark.parametrize("masked", [True, False])
def test_grouped_attention_matches_sdpa_in_bf16(masked):
    """The grouped product against SDPA with grouped-query attention on bf16 inputs (9 query heads over 3, the
    embedded model's), with a right-padded causal mask or none (causal): outputs and gradients to bf16's rounding."""
    import torch

    from training.attention import grouped_attention

    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, heads, 12, 16, generator=generator).bfloat16() for heads in (9, 3, 3)]
    keep = torch.ones(12, 12, dtype=torch.bool).tril()[None, None].repeat(2, 1, 1, 1)
    keep[1, :, :, 9:] = False  # the second row's last 3 tokens are padding
    mask = keep if masked else None
    module = torch.nn.Module()
    results = []
    for grouped in (True, False):
        leaves = [tensor.clone().requires_grad_() for tensor in inputs]
        if grouped:
            output = grouped_attention(module, *leaves, mask, scaling=0.25, dropout=0.0)[0]
        else:
            output = torch.nn.functional.scaled_dot_product_attention(
                *leaves, attn_mask=mask, is_causal=not masked, scale=0.25, enable_gqa=True
            ).transpose(1, 2)
        output[:, :9].float().square().sum().backward()  # the real tokens of both rows
        results.append((output[:, :9].detach().float(), [leaf.grad.float() for leaf in leaves]))
    (output, grads), (reference, reference_grads) = results
    assert torch.allclose(output, reference, rtol=2e-2, atol=2e-2)
    for grad, reference_grad in zip(grads, reference_grads, strict=True):
        assert reference_grad.abs().max() > 0
        assert torch.allclose(grad, reference_grad, rtol=3e-2, atol=3e-2 * reference_grad.abs().max().item())


def test_a_compiled_model_takes_the_grouped_product_on_short_sequences():
    """Under torch.compile short grouped-head sequences go to the grouped product too (SDPA's default there is the
    flash kernel, whose backward took a third of a compiled training step of the embedded model): no SDPA call in the
    traced graph, and SDPA's logits and gradients."""
    import torch

    from training import attention

    model = tiny_llama(2)
    reference, reference_grads = logits_and_grads(model, 20)
    attention.use_short_sequence_attention(model)
    graphs = []

    def capture(graph, _inputs):
        graphs.append(graph)
        return graph.forward

    compiled = torch.compile(model, backend=capture, dynamic=False)
    logits, grads = logits_and_grads(compiled, 20)
    targets = [str(node.target) for graph in graphs for node in graph.graph.nodes]
    assert graphs and not [target for target in targets if "scaled_dot_product" in target]
    assert torch.allclose(logits, reference, atol=1e-5)
    for grad, reference_grad in zip(grads, reference_grads, strict=True):
        assert torch.allclose(grad, reference_grad, atol=1e-5)
