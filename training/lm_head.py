"""The LM head of SFT training on CPU: log-probabilities of the answer tokens only, over the whole vocabulary at once.

TRL's fused head (`trl.kernels.ChunkedLogProbFunction`) projects every prompt and padding position outside Triton
devices, and on CPU folds each vocabulary tile into its statistics with a dozen fp32 passes, then in the backward
converts each tile of the frozen head to fp32 for an fp32 product: on the embedded model that was a fifth of a training
step (profile of a rank's step, batch 4). Here, on CPU, only the positions that carry a label are projected, in the
compute dtype (bf16 under autocast), with one matrix product per row chunk over the whole vocabulary, a log-softmax
and the backward's product in the same dtype (its fp32 accumulation inside the kernel). When every row fits one chunk
(at most `CHUNK_ELEMENTS` logits, as a rank's batch of answer tokens on the embedded model does) the fp32
log-probabilities are kept for the backward; larger batches recompute them chunk by chunk there rather than hold them
all. Same outputs as TRL's (log-probabilities, entropy, whether the label is the top token),
same loss and gradients up to rounding; a test compares them. Other devices, a head with a bias, softcapped logits or
a trained head keep TRL's function.
"""

from typing import Any

import torch

# Rows of logits (x the vocabulary) computed at once: 64 MB of fp32 logits per buffer.
CHUNK_ELEMENTS = 2**24


class AnswerLogProbs(torch.autograd.Function):
    """Per-row log-probability of `targets` under softmax(scale * hidden @ weight.T), with the entropy and top-1 flag."""

    @staticmethod
    def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, scale: float) -> tuple[Any, Any, Any]:
        ctx.set_materialize_grads(False)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype
        head = weight.to(dtype)
        log_probs = torch.empty(hidden.shape[0], dtype=torch.float32)
        entropy = torch.empty_like(log_probs)
        top1 = torch.empty(hidden.shape[0], dtype=torch.bool)
        log_z = torch.empty_like(log_probs)
        chunks = _chunks(hidden.shape[0], weight.shape[0])
        for rows in chunks:
            log_p = _log_softmax(hidden[rows].to(dtype), head, scale, log_z[rows])
            log_probs[rows] = log_p.gather(1, targets[rows, None]).squeeze(1)
            top1[rows] = log_probs[rows] >= log_p.amax(dim=1)  # a tenth of argmax's time
            entropy[rows] = -(log_p.exp() * log_p).sum(dim=1)
        kept = log_p if len(chunks) == 1 else None  # one chunk: its log-probabilities serve the backward as they are
        ctx.save_for_backward(hidden, weight, targets, log_z, entropy, kept)
        ctx.scale, ctx.dtype = scale, dtype
        ctx.mark_non_differentiable(top1)
        return log_probs, entropy, top1

    @staticmethod
    def backward(ctx: Any, grad_log_probs: Any, grad_entropy: Any, _: Any) -> tuple[Any, None, None, None]:
        hidden, weight, targets, log_z, entropy, kept = ctx.saved_tensors
        if grad_log_probs is None and grad_entropy is None:
            return None, None, None, None
        head = weight.to(ctx.dtype)
        grad_hidden = torch.empty_like(hidden)
        for rows in _chunks(hidden.shape[0], weight.shape[0]):
            log_p = kept if kept is not None else _log_softmax(hidden[rows].to(ctx.dtype), head, ctx.scale, log_z[rows])
            # d log p_t / dz = onehot(t) - p and d H / dz = -p (log p + H): the gradient of the logits z is
            # scale * (g onehot(t) - p (g + h (log p + H))), made in place over the probabilities.
            g = None if grad_log_probs is None else grad_log_probs[rows].float()[:, None] * ctx.scale
            coefficient = 0.0 if g is None else -g
            if grad_entropy is not None:
                h = grad_entropy[rows].float()[:, None] * -ctx.scale
                coefficient = (log_p + entropy[rows, None]).mul_(h).add_(coefficient)
            grad = log_p.exp_().mul_(coefficient)  # kept log-probabilities serve once: a second backward raises
            if g is not None:
                grad.scatter_add_(1, targets[rows, None], g)
            grad_hidden[rows] = torch.mm(grad.to(ctx.dtype), head).to(hidden.dtype)
        return grad_hidden, None, None, None


def _chunks(count: int, vocabulary: int) -> list[slice]:
    step = max(1, CHUNK_ELEMENTS // vocabulary)
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


def _log_softmax(hidden: Any, head: Any, scale: float, log_z: Any) -> Any:
    """fp32 log-softmax of the logits `scale * hidden @ head.T` (the product in the inputs' dtype, as TRL's tiles),
    writing each row's log-normaliser into `log_z`."""
    logits = torch.mm(hidden, head.t()).float()
    if scale != 1.0:
        logits.mul_(scale)
    log_z.copy_(torch.logsumexp(logits, dim=1))
    return logits.sub_(log_z[:, None])


class CpuOrTrlLogProbs:
    """Stands in for TRL's `ChunkedLogProbFunction` in its fused LM head: `AnswerLogProbs` where it applies, TRL's
    function elsewhere. The extra outputs it does not compute (log of summed squared probabilities, mean logit) are
    those SFT does not ask for; a request for them goes to TRL's."""

    trl_function: Any = None

    @classmethod
    def apply(
        cls,
        hidden: Any,
        weight: Any,
        bias: Any,
        targets: Any,
        temperature: float,
        chunk_size: int,
        final_logit_softcapping: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = ("log_probs",),
    ) -> tuple[Any, Any, Any, Any, Any]:
        plain = bias is None and final_logit_softcapping is None and not weight.requires_grad
        if hidden.device.type != "cpu" or not plain or set(outputs) - {"log_probs", "entropy", "is_top1"}:
            return cls.trl_function.apply(
                hidden,
                weight,
                bias,
                targets,
                temperature,
                chunk_size,
                final_logit_softcapping,
                logit_scale,
                outputs,
            )
        log_probs, entropy, top1 = AnswerLogProbs.apply(hidden, weight, targets, logit_scale / temperature)
        return (
            log_probs,
            entropy if "entropy" in outputs else None,
            None,
            None,
            top1 if "is_top1" in outputs else None,
        )


def project_answer_positions_only() -> None:
    """Let TRL's fused LM head project only the positions that carry a label on CPU too, with `AnswerLogProbs`.

    TRL compacts to those positions on Triton devices only; elsewhere it projects every prompt and padding position
    so that compilers such as Neuron's see fixed tile shapes. Eager CPU compiles nothing, and with answer-only loss
    most positions are prompt: the loss and gradients are the same, the steps of the retailer preset 1.3x faster.
    It replaces two private TRL names (TRL is pinned); tests check that only answer positions are projected and that
    the outputs and gradients match TRL's function.
    """
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton

    trl_utils._use_triton = lambda device: device.type == "cpu" or _use_triton(device)
    if trl_utils._ChunkedLogProbFunction is not CpuOrTrlLogProbs:
        CpuOrTrlLogProbs.trl_function = trl_utils._ChunkedLogProbFunction
        trl_utils._ChunkedLogProbFunction = CpuOrTrlLogProbs
