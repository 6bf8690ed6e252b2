"""The CPU LM head (`training.lm_head`) against TRL's chunked function it replaces: same outputs and gradients."""

import pytest

OUTPUTS = ("log_probs", "entropy", "is_top1")


def heads(monkeypatch, dtype, temperature=1.0, logit_scale=1.0, chunk_rows=4, softmaxes=None):
    """Both functions' outputs and gradients for the same random answer positions: ours in chunks of `chunk_rows` rows
    (by default several chunks and a short last one; 37 or more: one chunk, whose log-probabilities are kept), counting
    its log-softmax passes in `softmaxes`."""
    import torch
    from trl.kernels import ChunkedLogProbFunction

    from training import lm_head

    monkeypatch.setattr(lm_head, "CHUNK_ELEMENTS", chunk_rows * 301)
    counted = softmaxes if softmaxes is not None else []
    log_softmax = lm_head._log_softmax
    monkeypatch.setattr(lm_head, "_log_softmax", lambda *a: counted.append(1) or log_softmax(*a))
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 24, generator=generator).to(dtype)
    weight = torch.randn(301, 24, generator=generator).to(dtype)
    targets = torch.randint(0, 301, (37,), generator=generator)
    weight[targets[0]] = hidden[0] * 3  # one row whose label is surely its top token
    results = {}
    for name, function in (("trl", ChunkedLogProbFunction), ("ours", lm_head.CpuOrTrlLogProbs)):
        lm_head.CpuOrTrlLogProbs.trl_function = ChunkedLogProbFunction
        leaf = hidden.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            log_probs, entropy, _, _, top1 = function.apply(
                leaf, weight, None, targets, temperature, 64, None, logit_scale, OUTPUTS
            )
        (-log_probs.sum() + 0.3 * entropy.sum()).backward()
        results[name] = (log_probs.detach(), entropy.detach(), top1, leaf.grad.float())
    return results


@pytest.mark.parametrize("temperature, logit_scale", [(1.0, 1.0), (0.7, 1.5)])
@pytest.mark.parametrize("chunk_rows, passes", [(4, 20), (64, 1)])
def test_the_cpu_head_matches_trls_in_fp32(monkeypatch, temperature, logit_scale, chunk_rows, passes):
    """In chunks of 4 rows the backward recomputes each chunk's log-softmax (10 forward, 10 backward); with every row
    in one chunk it reuses the forward's."""
    import torch

    softmaxes = []
    results = heads(monkeypatch, torch.float32, temperature, logit_scale, chunk_rows, softmaxes)
    assert len(softmaxes) == passes
    (trl_lp, trl_h, trl_top, trl_grad), (lp, h, top, grad) = results["trl"], results["ours"]
    assert torch.allclose(lp, trl_lp, atol=1e-5) and torch.allclose(h, trl_h, atol=1e-5)
    assert torch.equal(top, trl_top) and top[0]
    assert torch.allclose(grad, trl_grad, atol=1e-5) and grad.abs().max() > 0.1


@pytest.mark.parametrize("chunk_rows", [4, 64])
def test_the_cpu_head_matches_trls_under_bf16_autocast(monkeypatch, chunk_rows):
    import torch

    results = heads(monkeypatch, torch.bfloat16, chunk_rows=chunk_rows)
    (trl_lp, trl_h, trl_top, trl_grad), (lp, h, top, grad) = results["trl"], results["ours"]
    # Both round the logits to bf16 before the fp32 softmax: the forward agrees closely, the gradient to bf16's rounding.
    assert torch.allclose(lp, trl_lp, atol=1e-4) and torch.allclose(h, trl_h, atol=1e-4)
    assert torch.equal(top, trl_top)
    assert torch.allclose(grad, trl_grad, rtol=2e-2, atol=2e-2 * trl_grad.abs().max().item())


def test_a_head_with_a_bias_goes_to_trls_function(monkeypatch):
    import torch

    from training import lm_head

    calls = []
    monkeypatch.setattr(lm_head.CpuOrTrlLogProbs, "trl_function", type("T", (), {"apply": lambda *a: calls.append(a)}))
    lm_head.CpuOrTrlLogProbs.apply(
        torch.zeros(2, 4),
        torch.zeros(5, 4),
        torch.zeros(5),
        torch.zeros(2, dtype=torch.long),
        1.0,
        8,
        None,
        1.0,
        OUTPUTS,
    )
    assert len(calls) == 1
