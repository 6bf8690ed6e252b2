"""What a federation is: a base model, adapters with roles and weights, and a method. One pydantic model, one file.

A federation file (`federations/fed_YYYYMMDD_HHMMSS_xxxx.json`) is self-contained: a gated federation carries its
router's weights inside it (safetensors bytes, base64), so copying the file copies the whole federation.
"""

import string
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from training.base_models import BaseModelInfo

# `cat` stacks the adapters' low-rank factors: the composed delta is exactly sum(w_i * scale_i * B_i A_i).
# The others are PEFT's merging heuristics; they are not that sum (cross terms, pruning, SVD truncation).
Combination = Literal["cat", "linear", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "magnitude_prune"]
EXACT_COMBINATION = "cat"
APPROXIMATIONS: dict[str, str] = {
    "linear": "Weighted average of the A and B factors: adds cross terms B_i A_j, so it is not the sum of deltas.",
    "svd": "Exact sum, then truncated to the largest rank by SVD: drops whatever lies beyond that rank.",
    "ties": "TIES: trims small weights and elects a sign per parameter before averaging (needs equal ranks).",
    "ties_svd": "TIES on the full deltas, then an SVD truncation.",
    "dare_linear": "DARE: randomly drops and rescales weights, then averages linearly (needs equal ranks).",
    "dare_ties": "DARE drop-and-rescale followed by TIES sign election (needs equal ranks).",
    "magnitude_prune": "Keeps only the largest-magnitude weights of each adapter, then averages (needs equal ranks).",
}
Routing = Literal["top", "weighted"]
DEFAULT_TEMPLATE = "{input}"
CHAIN_TEMPLATE = "{previous}"
TEMPLATE_FIELDS = ("input", "previous")
MAX_TEMPLATE_CHARS = 4000


def template_problem(template: str) -> str | None:
    """Why a sequential stage's template cannot be used, or None. Only plain {input} and {previous} are placeholders:
    a format spec such as {input:>999999999} would make one stage compose a gigabyte-long prompt."""
    if not isinstance(template, str):
        return f"a template is text, not {type(template).__name__}"
    if len(template) > MAX_TEMPLATE_CHARS:
        return f"it is {len(template):,} characters long; at most {MAX_TEMPLATE_CHARS:,} are allowed"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        return f"{error} (write {{{{ and }}}} for literal braces)"
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            return f"{{{field}}} is not a placeholder (only {{input}} and {{previous}} are)"
        if spec or conversion:
            return f"{{{field}}} takes no format spec or conversion; write it as {{{field}}}"
    return None


def fill_template(template: str, request: str, previous: str) -> str:
    """The stage's prompt: literal text with {input} and {previous} replaced, nothing else evaluated."""
    values = {"input": request, "previous": previous}
    return "".join(
        literal + (values[field] if field else "") for literal, field, _, _ in string.Formatter().parse(template)
    )


class Member(BaseModel):
    """One adapter version in a federation, with what the stack view shows (size, rank) copied from its lineage."""

    model_config = ConfigDict(frozen=True)

    adapter: str
    version: int
    role: str
    weight: float = 1.0
    rank: int
    alpha: float
    size_bytes: int
    target_modules: list[str] | str
    template: str = Field(
        default=DEFAULT_TEMPLATE,
        description="Sequential only: this stage's prompt; "
        "{input} is the request, {previous} the previous stage's output.",
    )

    @property
    def key(self) -> str:
        """The adapter's name inside a loaded PeftModel: unique per version, free of PEFT's '.' separator."""
        return f"{self.adapter}__v{self.version}".replace(".", "_")

    @property
    def label(self) -> str:
        return f"{self.adapter} v{self.version}"


class RouterSpec(BaseModel):
    """A gated federation's router: hashed n-gram features into a softmax layer, with how well it held out."""

    model_config = ConfigDict(frozen=True)

    features: int
    weights: str = Field(
        description="safetensors bytes of {'weight': [adapters, features], 'bias': [adapters]}, base64."
    )
    train_examples: dict[str, int]
    holdout_accuracy: float
    holdout_examples: int


class BaseRef(BaseModel):
    """The base model every member was trained on, identified by its weights' fingerprint."""

    model_config = ConfigDict(frozen=True)

    id: str
    path: str
    fingerprint: str
    architecture: str
    parameters: int
    size_bytes: int

    @classmethod
    def from_info(cls, info: "BaseModelInfo") -> "BaseRef":
        return cls(
            id=info.id,
            path=str(info.path),
            fingerprint=info.fingerprint,
            architecture=info.architecture,
            parameters=info.parameters,
            size_bytes=info.size_bytes,
        )


class Federation(BaseModel):
    """A composed model: base + members + method; `id` is also the file name."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created: datetime
    base: BaseRef
    method: str = Field(description="The composition method: a name in federation.methods.METHODS.")
    members: list[Member]
    combination: Combination = EXACT_COMBINATION
    merged: bool = Field(
        default=False,
        description="Additive: fold the summed delta into the base weights, so "
        "inference costs what the base model costs.",
    )
    routing: Routing = "top"
    router: RouterSpec | None = None

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from federation.methods import method_of

        return method_of(value).name

    @property
    def label(self) -> str:
        """The name with its method, once: a default name already ends with it ("a + b (gated)")."""
        suffix = f"({self.method})"
        return self.name if self.name.endswith(suffix) else f"{self.name} {suffix}"

    @property
    def exact(self) -> bool:
        from federation.methods import method_of

        return method_of(self.method).exact(self)

    @property
    def rank(self) -> int:
        """The composed adapter's rank, as its method counts it."""
        from federation.methods import method_of

        return method_of(self.method).rank(self)
