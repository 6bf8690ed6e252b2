"""The gated federation's router: which adapter should answer this request?

Each adapter's lineage names the dataset it was trained on, so its training prompts are labelled examples of
"requests this adapter is for". A multinomial logistic regression over hashed word and character n-grams learns
that split; it is trained in well under a second, costs microseconds per request (no model forward pass), and is
stored as safetensors inside the federation file. A fifth of the prompts (chosen by hash, so reproducibly) is held
out to report how often the router picks the right adapter.
"""

import base64
import itertools
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from federation.errors import RouterError
from registry.errors import ConsoleError
from registry.shapes import prompt_of
from training.formatting import iter_canonical, resolve_dataset

FEATURES = 1 << 12
MAX_PROMPTS_PER_ADAPTER = 1000
_WORD = re.compile(r"\w+")


def featurize(texts: Sequence[str]) -> Any:
    """Hashed, sublinear-tf, L2-normalised word unigrams, bigrams and character trigrams: [len(texts), FEATURES]."""
    import torch

    rows = torch.zeros(len(texts), FEATURES)
    for row, text in enumerate(texts):
        words = _WORD.findall(text.casefold())
        grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        grams += [f"#{w[i : i + 3]}" for w in (f"<{w}>" for w in words) for i in range(max(len(w) - 2, 1))]
        for gram in grams:
            rows[row, zlib.crc32(gram.encode()) % FEATURES] += 1.0
    rows = torch.log1p(rows)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-8)


class Router:
    """A trained softmax layer over `featurize`; `weights(prompt)` is the gate: one probability per adapter."""

    def __init__(self, weight: Any, bias: Any):
        self.weight, self.bias = weight, bias

    def probabilities(self, texts: Sequence[str]) -> Any:
        import torch

        with torch.no_grad():
            return torch.softmax(featurize(texts) @ self.weight.T + self.bias, dim=-1)

    def to_base64(self) -> str:
        from safetensors.torch import save

        return base64.b64encode(save({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()})).decode()

    @classmethod
    def from_base64(cls, text: str) -> "Router":
        from safetensors.torch import load

        tensors = load(base64.b64decode(text))
        return cls(tensors["weight"], tensors["bias"])


def training_prompts(dataset: dict[str, Any]) -> list[str]:
    """The prompts of the dataset an adapter's lineage names (a library dataset, or a file that still exists)."""
    ref = dataset.get("path") if dataset.get("origin") == "file" else dataset.get("name")
    if not ref:
        raise RouterError("An adapter's lineage names no training dataset, so the router has nothing to learn from.")
    try:
        source = resolve_dataset(str(ref))
    except ConsoleError as error:
        raise RouterError(
            f"The router learns from each adapter's training data, but dataset {ref!r} cannot be read: {error}"
        ) from None
    prompts = (prompt_of(r, source.kind) for r in iter_canonical(source))
    return [p for p in itertools.islice(prompts, MAX_PROMPTS_PER_ADAPTER) if p.strip()]


def _held_out(text: str) -> bool:
    return zlib.crc32(text.encode()) % 5 == 0


def train_router(prompts_per_adapter: Sequence[Iterable[str]]) -> tuple[Router, float, int]:
    """Fit the router; returns it with its held-out accuracy and the number of held-out prompts.

    Deterministic without a seed (zero start, full-batch L-BFGS), so it never touches torch's global generator,
    which a training job in another thread is using.
    """
    import torch

    labelled = [(text, label) for label, texts in enumerate(prompts_per_adapter) for text in texts]
    counts = [sum(1 for _, label in labelled if label == k) for k in range(len(prompts_per_adapter))]
    if any(count == 0 for count in counts):
        raise RouterError("Every adapter needs training prompts for the router; one of them has none.")
    train = [(t, y) for t, y in labelled if not _held_out(t)] or labelled
    test = [(t, y) for t, y in labelled if _held_out(t)]
    features, labels = featurize([t for t, _ in train]), torch.tensor([y for _, y in train])
    classes = len(prompts_per_adapter)
    balance = torch.tensor([len(train) / max(1, int((labels == k).sum())) for k in range(classes)])
    weight = torch.zeros(classes, FEATURES, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=100, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.CrossEntropyLoss(weight=balance / balance.sum() * classes)

    def closure() -> Any:
        optimizer.zero_grad()
        loss = loss_fn(features @ weight.T + bias, labels) + 1e-4 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    router = Router(weight.detach(), bias.detach())
    if not test:
        return router, 1.0, 0
    predicted = router.probabilities([t for t, _ in test]).argmax(dim=-1)
    accuracy = float((predicted == torch.tensor([y for _, y in test])).float().mean())
    return router, accuracy, len(test)
