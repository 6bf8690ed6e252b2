"""The inference engine: loaded models cached and shared, LoRA deltas switched per request, answers streamed.

One `LoadedModel` per base model holds every adapter a request has needed so far (PEFT keeps several adapters in
one model and switches between them without copying weights), so a federation, its members and the plain base
share one copy of the base weights (a model is keyed by its weights' fingerprint and its tokenizer files; an adapter
by its name, version and the folder it was loaded from, so two registries or a re-saved adapter never share a stale
copy). A merged additive federation is the exception: its summed delta is folded
into its own copy of the weights, so it runs at exactly the base model's cost. Both caches are bounded and
evict the least recently used entry. Generation on one model is serialised by that model's lock (switching
adapters mutates it); different models generate in parallel.

Every generation served (streamed, or one prompt of a batch) appends one record to the registry's request log,
with its caller, tokens, latencies and outcome; failures are recorded with their error before they are raised.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from federation.errors import InferenceError
from federation.request_log import RequestRecord, request_log
from federation.spec import BaseRef, Federation, Member
from registry.errors import ConsoleError
from training.adapters import get_adapter
from training.base_models import MODEL_LOAD_LOCK, fingerprint, tokenizer_fingerprint
from training.stack import import_stack

CHARS_PER_TOKEN_CAP = 16  # prompts longer than 16 characters per context token are refused before tokenizing


class GenerationSettings(BaseModel):
    """Decoding settings; temperature 0 means greedy (deterministic) decoding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Greedy answers stop at end-of-sequence; a campaign plan with its working line runs to ~130 tokens.
    max_new_tokens: int = Field(default=160, ge=1, le=2048, description="Longest answer, in tokens.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 is greedy; higher is more varied.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling: keep this much probability mass.")
    repetition_penalty: float = Field(default=1.0, ge=1.0, le=2.0, description="Above 1 discourages repeating.")
    system: str = Field(default="", max_length=4000, description="Optional system message before the prompt.")
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="Sampling seed, so a sampled answer can be reproduced."
    )


class Generation(BaseModel):
    """One answer and what it cost; load time is kept apart from generation time."""

    response: str
    tokens: int
    prompt_tokens: int
    latency_ms: float
    load_ms: float
    first_token_ms: float | None

    @property
    def ms_per_token(self) -> float:
        return self.latency_ms / self.tokens if self.tokens else 0.0


@dataclass(frozen=True)
class Activation:
    """Which LoRA deltas act on a request: none (the base), members with scales, or a federation's summed delta."""

    members: tuple[Member, ...] = ()
    scales: tuple[float, ...] = ()
    federation: Federation | None = None

    @property
    def merged(self) -> bool:
        return self.federation is not None and self.federation.merged


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    # loaded adapter name -> where its weights came from (folder and file stat; "" for a federation's sum)
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)
    merged_key: str | None = None


class InferenceEngine:
    """Process-wide model cache (the UI holds one in st.cache_resource; the API uses `default_engine()`)."""

    def __init__(self, max_models: int = 2, max_adapters: int = 16):
        self.max_models, self.max_adapters = max_models, max_adapters
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def loaded(self) -> list[str]:
        """What is in memory now, most recently used last, for the page's cache panel."""
        with self._lock:
            return [f"{kind}: {name}" for kind, name in self._models]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def resize(self, max_models: int) -> None:
        """A new cache bound (Settings page), applied now: the least recently used models beyond it are dropped."""
        with self._lock:
            self.max_models = max_models
            while len(self._models) > max_models:
                self._models.popitem(last=False)

    def stream(
        self,
        base: BaseRef,
        prompt: str,
        settings: GenerationSettings | None = None,
        activation: Activation | None = None,
        *,
        caller: str = "api",
        target: str | None = None,
        history: Sequence[dict[str, str]] = (),
    ) -> "GenerationStream":
        """Start generating `prompt`'s answer; iterate the result for text chunks, then read `.result`.

        `history` holds a chat's earlier turns (user and assistant messages, oldest first) that the chat template
        places between the system message and `prompt`, the last user turn. `caller` and `target` (default: what
        the activation names) go into the request log."""
        activation = activation or Activation()
        return GenerationStream(
            self,
            base,
            prompt,
            settings or GenerationSettings(),
            activation,
            caller,
            target or _target(base, activation),
            _checked_history(history),
        )

    def generate(
        self,
        base: BaseRef,
        prompt: str,
        settings: GenerationSettings | None = None,
        activation: Activation | None = None,
        *,
        caller: str = "api",
        target: str | None = None,
    ) -> Generation:
        stream = self.stream(base, prompt, settings, activation, caller=caller, target=target)
        for _ in stream:
            pass
        return stream.result

    def generate_batch(
        self,
        base: BaseRef,
        conversations: Sequence[Sequence[dict[str, str]]],
        settings: GenerationSettings | None = None,
        activation: Activation | None = None,
        *,
        caller: str = "api",
        target: str | None = None,
    ) -> list[Generation]:
        """Greedy answers to several chat conversations in one `generate` call (left padding), one log record each.

        Each answer's latency is the batch's (every prompt waited for it); its tokens are its own."""
        import torch

        settings = settings or GenerationSettings()
        activation = activation or Activation()
        target = target or _target(base, activation)
        started = time.perf_counter()
        first = _FirstStep(started)
        prompt_lengths: list[int] = [0] * len(conversations)
        try:
            entry, load_ms = self._acquire(base, activation)
            with entry.lock:
                load_ms += self._prepare(entry, activation)
                tokenizer, model = entry.tokenizer, entry.model
                texts = [_chat_text(tokenizer, conversation) for conversation in conversations]
                side, tokenizer.padding_side = tokenizer.padding_side, "left"
                try:
                    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                finally:
                    tokenizer.padding_side = side
                prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
                kwargs = _generate_kwargs(settings.model_copy(update={"temperature": 0.0}), tokenizer)
                generating = time.perf_counter()
                first.started = generating
                with torch.inference_mode(), _active(entry, activation):
                    output = model.generate(**inputs, stopping_criteria=[first], **kwargs)
                latency = (time.perf_counter() - generating) * 1000
        except Exception as error:
            for length in prompt_lengths:
                _log(target, activation, caller, length, 0, None, (time.perf_counter() - started) * 1000, error)
            raise _as_inference_error(error) from error
        width = inputs["input_ids"].shape[1]
        results = []
        for row, length in zip(output, prompt_lengths, strict=True):
            answer = row[width:]
            tokens = _answer_length(answer, tokenizer)
            results.append(
                Generation(
                    response=tokenizer.decode(answer[:tokens], skip_special_tokens=True).strip(),
                    tokens=tokens,
                    prompt_tokens=int(length),
                    latency_ms=round(latency, 2),
                    load_ms=round(load_ms, 2),
                    first_token_ms=first.ms,
                )
            )
            _log(target, activation, caller, int(length), tokens, first.ms, latency, None)
        return results

    def loglikelihoods(
        self,
        base: BaseRef,
        pairs: Sequence[tuple[Sequence[dict[str, str]], str]],
        activation: Activation | None = None,
        batch_size: int = 8,
    ) -> list[tuple[float, int]]:
        """For each (conversation, answer): the summed log-probability of the answer's tokens and end-of-sequence
        token after the chat-templated conversation, and how many tokens that is (perplexity, preference)."""
        import torch

        activation = activation or Activation()
        entry, _ = self._acquire(base, activation)
        results: list[tuple[float, int]] = []
        with entry.lock:
            self._prepare(entry, activation)
            tokenizer, model = entry.tokenizer, entry.model
            encoded = [answer_ids(tokenizer, conversation, answer) for conversation, answer in pairs]
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            for start in range(0, len(encoded), batch_size):
                batch = encoded[start : start + batch_size]
                width = max(len(p) + len(a) for p, a in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (prompt, answer) in enumerate(batch):
                    ids[row, : len(prompt) + len(answer)] = torch.tensor(prompt + answer)
                    mask[row, : len(prompt) + len(answer)] = 1
                with torch.inference_mode(), _active(entry, activation):
                    logits = model(input_ids=ids, attention_mask=mask).logits.float()
                logprobs = torch.log_softmax(logits, dim=-1)
                for row, (prompt, answer) in enumerate(batch):
                    positions = torch.arange(len(prompt) - 1, len(prompt) + len(answer) - 1)
                    picked = logprobs[row, positions, torch.tensor(answer)]
                    results.append((float(picked.sum()), len(answer)))
        return results

    def logits(self, base: BaseRef, input_ids: Any, activation: Activation | None = None) -> Any:
        """Next-token logits for `input_ids` under an activation: what exactness tests and perplexity read."""
        import torch

        activation = activation or Activation()
        entry, _ = self._acquire(base, activation)
        with entry.lock:
            self._prepare(entry, activation)
            with torch.inference_mode(), _active(entry, activation):
                return entry.model(input_ids=input_ids).logits.float().clone()

    def _acquire(self, base: BaseRef, activation: Activation) -> tuple[LoadedModel, float]:
        """The loaded model for this request (loading it if needed) and how long loading took."""
        started = time.perf_counter()
        if activation.merged:
            key = ("merged", activation.federation.id)
        else:
            key = ("base", f"{base.fingerprint}+{tokenizer_fingerprint(Path(base.path))[:16]}")
        with self._lock:
            entry = self._models.get(key)
            if entry is not None:
                self._models.move_to_end(key)
        if entry is None:
            with MODEL_LOAD_LOCK:  # one load at a time; a request that waited finds the model another one loaded
                with self._lock:
                    entry = self._models.get(key)
                if entry is None:
                    entry = _load_merged(base, activation.federation) if activation.merged else _load_base(base)
            with self._lock:
                entry = self._models.setdefault(key, entry)
                self._models.move_to_end(key)
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
        return entry, (time.perf_counter() - started) * 1000

    def _prepare(self, entry: LoadedModel, activation: Activation) -> float:
        """Load the adapters this activation needs into `entry` (caller holds entry.lock); returns load ms."""
        started = time.perf_counter()
        if activation.merged:
            return 0.0
        if activation.federation is not None:
            _ensure_sum(entry, activation.federation, self.max_adapters)
        for member in activation.members:
            _ensure_adapter(entry, member, self.max_adapters)
        return (time.perf_counter() - started) * 1000


class GenerationStream:
    """Iterating yields the answer as it is generated (a worker thread runs `generate`); `.result` follows."""

    def __init__(
        self,
        engine: InferenceEngine,
        base: BaseRef,
        prompt: str,
        settings: GenerationSettings,
        activation: Activation,
        caller: str = "api",
        target: str = "",
        history: tuple[dict[str, str], ...] = (),
    ):
        self.engine, self.base, self.prompt, self.settings, self.activation = engine, base, prompt, settings, activation
        self.caller, self.target, self.history = caller, target or _target(base, activation), history
        self._result: Generation | None = None

    @property
    def result(self) -> Generation:
        if self._result is None:
            raise InferenceError("The answer is still being generated; read the stream to the end first.")
        return self._result

    def __iter__(self) -> Iterator[str]:
        started = time.perf_counter()
        try:
            yield from self._generate()
        except Exception as error:
            ms = (time.perf_counter() - started) * 1000
            _log(self.target, self.activation, self.caller, 0, 0, None, ms, error)
            raise
        result = self.result
        _log(
            self.target,
            self.activation,
            self.caller,
            result.prompt_tokens,
            result.tokens,
            result.first_token_ms,
            result.latency_ms,
            None,
        )

    def _generate(self) -> Iterator[str]:
        import torch

        import_stack()
        from transformers import TextIteratorStreamer

        entry, load_ms = self.engine._acquire(self.base, self.activation)
        with entry.lock:
            load_ms += self.engine._prepare(entry, self.activation)
            tokenizer, model = entry.tokenizer, entry.model
            _check_length(self.prompt + "".join(turn["content"] for turn in self.history), model)
            inputs = _encode(tokenizer, self.prompt, self.settings.system, self.history)
            _check_context(inputs["input_ids"].shape[1], self.settings.max_new_tokens, model)
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
            output: dict[str, Any] = {}
            kwargs = _generate_kwargs(self.settings, tokenizer)

            stop = threading.Event()

            def run() -> None:
                try:
                    with torch.inference_mode(), _active(entry, self.activation):
                        output["ids"] = model.generate(
                            **inputs, streamer=streamer, stopping_criteria=[_StopWhenSet(stop)], **kwargs
                        )
                except Exception as error:  # re-raised in the reading thread with its message
                    output["error"] = error
                    streamer.end()

            started = time.perf_counter()
            first: float | None = None
            worker = threading.Thread(target=run, name="rmn-generate", daemon=True)
            worker.start()
            try:
                for text in streamer:
                    if text:
                        first = first if first is not None else (time.perf_counter() - started) * 1000
                        yield text
            finally:
                # A reader that stops early (a page rerun) must not leave generation running on a model
                # the next request is about to switch: stop it and wait before the lock is released.
                stop.set()
                worker.join()
            latency = (time.perf_counter() - started) * 1000
        if "error" in output:
            raise InferenceError(f"Generation failed: {type(output['error']).__name__}: {output['error']}")
        prompt_tokens = inputs["input_ids"].shape[1]
        answer = output["ids"][0, prompt_tokens:]
        self._result = Generation(
            response=tokenizer.decode(answer, skip_special_tokens=True).strip(),
            tokens=_answer_length(answer, tokenizer),
            prompt_tokens=prompt_tokens,
            latency_ms=round(latency, 2),
            load_ms=round(load_ms, 2),
            first_token_ms=round(first, 2) if first is not None else None,
        )


class _FirstStep:
    """A stopping criterion that never stops: it notes when the first token of a batch was produced."""

    def __init__(self, started: float):
        self.started, self.ms = started, None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.ms is None:
            self.ms = round((time.perf_counter() - self.started) * 1000, 2)
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


def _target(base: BaseRef, activation: Activation) -> str:
    """What a request log record names when the caller names nothing: the federation, the adapters, or the base."""
    if activation.federation is not None:
        return activation.federation.id
    if activation.members:
        return " + ".join(m.label for m in activation.members)
    return base.id


def _log(
    target: str,
    activation: Activation,
    caller: str,
    prompt_tokens: int,
    completion_tokens: int,
    first_token_ms: float | None,
    latency_ms: float,
    error: BaseException | None,
) -> None:
    from registry.settings import get_settings

    if not get_settings().request_log:
        return
    members = activation.federation.members if activation.federation is not None else activation.members
    request_log().append(
        RequestRecord(
            target=target,
            adapters=[m.label for m in members],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            first_token_ms=first_token_ms,
            latency_ms=round(latency_ms, 2),
            ok=error is None,
            error=None if error is None else f"{type(error).__name__}: {error}"[:500],
            caller=caller,
        )
    )


def _as_inference_error(error: Exception) -> Exception:
    if isinstance(error, ConsoleError):
        return error
    return InferenceError(f"Generation failed: {type(error).__name__}: {error}")


class _StopWhenSet:
    """A stopping criterion that ends generation as soon as the reader has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _context(model: Any) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def _check_length(prompt: str, model: Any) -> str:
    """Refuse a prompt far beyond any context before spending time tokenizing it."""
    context = _context(model) or 32_768
    limit = context * CHARS_PER_TOKEN_CAP
    if len(prompt) > limit:
        raise InferenceError(
            f"The prompt is {len(prompt):,} characters long; this model reads at most {context:,} tokens "
            f"(about {limit:,} characters at most). Shorten the prompt."
        )
    return prompt


def _check_context(prompt_tokens: int, max_new_tokens: int, model: Any) -> None:
    """Prompt plus answer must fit the model's context: past it the model degrades and the work grows without end."""
    context = _context(model)
    if context and prompt_tokens + max_new_tokens > context:
        raise InferenceError(
            f"The prompt is {prompt_tokens:,} tokens and the answer may take {max_new_tokens:,} more; this model's "
            f"context holds {context:,}. Shorten the prompt (or the system message) or lower Max new tokens."
        )


def _checked_history(history: Sequence[dict[str, str]]) -> tuple[dict[str, str], ...]:
    turns = tuple({"role": turn.get("role", ""), "content": turn.get("content")} for turn in history)
    for index, turn in enumerate(turns):
        if turn["role"] not in {"user", "assistant"} or not isinstance(turn["content"], str):
            raise InferenceError(
                f"Chat turn {index + 1} must be a user or assistant message with text content "
                f"(it is {turn['role'] or 'without a role'}); system messages go into the system setting."
            )
    return turns


def _encode(tokenizer: Any, prompt: str, system: str, history: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """The conversation in the chat template the adapters were trained with: system, earlier turns, the prompt."""
    messages = (
        ([{"role": "system", "content": system}] if system.strip() else [])
        + list(history)
        + [{"role": "user", "content": prompt}]
    )
    return dict(tokenizer(_chat_text(tokenizer, messages), return_tensors="pt", add_special_tokens=False))


def _chat_text(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def answer_ids(tokenizer: Any, conversation: Sequence[dict[str, str]], answer: str) -> tuple[list[int], list[int]]:
    """Token ids of the templated conversation (ready for the answer) and of the answer plus end-of-sequence."""
    prompt = tokenizer(_chat_text(tokenizer, conversation), add_special_tokens=False)["input_ids"]
    return prompt, tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def _generate_kwargs(settings: GenerationSettings, tokenizer: Any) -> dict[str, Any]:
    """Greedy decoding; with a temperature, `SeededSampler` picks each token from its own generator.

    `generate(do_sample=True)` draws from torch's global generator, which training threads in the same process
    use too: reseeding it would change a running job, and not reseeding it makes a seeded answer unrepeatable.
    """
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": tokenizer.pad_token_id,
        "repetition_penalty": settings.repetition_penalty,
    }
    if settings.temperature > 0:
        kwargs["logits_processor"] = [SeededSampler(settings.temperature, settings.top_p, settings.seed)]
    return kwargs


class SeededSampler:
    """Temperature and nucleus (top-p) sampling with a private `torch.Generator`, as a logits processor.

    It leaves only the sampled token with a finite score, so greedy decoding emits exactly that token.
    """

    def __init__(self, temperature: float, top_p: float, seed: int):
        import torch

        self.temperature, self.top_p = temperature, top_p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probabilities = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            ordered, order = probabilities.sort(dim=-1, descending=True)
            outside = ordered.cumsum(dim=-1) - ordered > self.top_p  # always keeps the most likely token
            probabilities = probabilities.scatter(-1, order, ordered.masked_fill(outside, 0.0))
        picked = torch.multinomial(probabilities.cpu(), 1, generator=self.generator).to(scores.device)
        return torch.full_like(scores, float("-inf")).scatter(-1, picked, 0.0)


def _answer_length(ids: Any, tokenizer: Any) -> int:
    """Generated tokens up to and including the end-of-sequence token (padding after it is not an answer)."""
    values = ids.tolist()
    eos = tokenizer.eos_token_id
    return values.index(eos) + 1 if eos in values else len(values)


def _load_base(base: BaseRef) -> LoadedModel:
    import torch

    from training.models import load_model, load_tokenizer

    path = Path(base.path)
    if not path.is_dir():
        raise InferenceError(f"The base model {base.id} is no longer at {path}. Restore it or compose again.")
    if fingerprint(path) != base.fingerprint:
        raise InferenceError(
            f"The weights at {path} changed since this was composed (fingerprint differs), so its "
            "adapters no longer fit. Compose the federation again on the current base model."
        )
    model = load_model(path, dtype=torch.float32)
    model.eval()
    return LoadedModel(model=model, tokenizer=load_tokenizer(path))


def _adapter_folder(member: Member) -> Path:
    path = get_adapter(member.adapter, member.version).path
    if not (path / "adapter_model.safetensors").is_file():
        raise InferenceError(f"{member.label} has no adapter_model.safetensors; weights load only from safetensors.")
    return path


def _ensure_adapter(entry: LoadedModel, member: Member, limit: int) -> None:
    from peft import PeftModel

    folder = _adapter_folder(member)
    source = _source(folder)
    if entry.adapters.get(member.key) == source:
        entry.adapters.move_to_end(member.key)
        return
    if member.key in entry.adapters:  # same name and version from another registry, or its weights were re-saved
        for key in [member.key, *(k for k in entry.adapters if k.startswith("sum__"))]:  # sums were built from it
            _unload(entry, key)
    _merge_only(entry, None)
    if isinstance(entry.model, PeftModel):
        entry.model.load_adapter(folder, adapter_name=member.key, is_trainable=False)
    else:
        entry.model = PeftModel.from_pretrained(entry.model, folder, adapter_name=member.key, is_trainable=False)
    entry.model.eval()
    entry.adapters[member.key] = source
    _evict(entry, limit)


def sum_key(federation: Federation) -> str:
    return f"sum__{federation.id}"


def add_weighted(model: Any, federation: Federation, key: str) -> None:
    """PEFT's weighted combination under `key`; refused when `key` exists (PEFT would keep the old weights)."""
    if key in model.peft_config:
        raise InferenceError(f"An adapter named {key} is already loaded; PEFT would silently keep its old weights.")
    model.add_weighted_adapter(
        [m.key for m in federation.members],
        [m.weight for m in federation.members],
        key,
        combination_type=federation.combination,
    )


def _ensure_sum(entry: LoadedModel, federation: Federation, limit: int) -> None:
    key = sum_key(federation)
    for member in federation.members:  # first: a member loaded anew drops the sums built from its old weights
        _ensure_adapter(entry, member, limit + len(federation.members))
    if key in entry.adapters:
        entry.adapters.move_to_end(key)
        return
    _merge_only(entry, None)
    add_weighted(entry.model, federation, key)
    entry.adapters[key] = ""
    _evict(entry, limit, keep={key, *(m.key for m in federation.members)})


def _evict(entry: LoadedModel, limit: int, keep: set[str] | None = None) -> None:
    for key in list(entry.adapters):
        if len(entry.adapters) <= limit:
            return
        if keep and key in keep:
            continue
        _unload(entry, key)


def _unload(entry: LoadedModel, key: str) -> None:
    if key == entry.merged_key:
        _merge_only(entry, None)
    entry.model.delete_adapter(key)
    del entry.adapters[key]


def _source(folder: Path) -> str:
    """Where an adapter's weights come from: its folder and the weights file's size and modification time."""
    weights = (folder / "adapter_model.safetensors").stat()
    return f"{folder.resolve()}:{weights.st_size}:{weights.st_mtime_ns}"


def _load_merged(base: BaseRef, federation: Federation) -> LoadedModel:
    """A private copy of the base with the federation's summed delta folded into its weights."""
    entry = _load_base(base)
    for member in federation.members:
        _ensure_adapter(entry, member, len(federation.members))
    key = sum_key(federation)
    add_weighted(entry.model, federation, key)
    entry.model.set_adapter(key, inference_mode=True)
    entry.model = entry.model.merge_and_unload(adapter_names=[key])
    entry.model.eval()
    entry.adapters.clear()
    return entry


def _merge_only(entry: LoadedModel, key: str | None) -> None:
    """Leave exactly `key` (or nothing) folded into the base weights.

    A LoRA layer whose adapter is merged costs what the plain layer costs; unmerged, every linear layer runs two
    more small matmuls per token, which on CPU is most of the overhead. So a single adapter at scale 1 (a gated
    federation's top adapter, a chain's stage, a Playground adapter) stays merged while consecutive requests use
    it, and is unmerged only when a request needs something else.
    """
    if entry.merged_key == key:
        return
    if entry.merged_key is not None:
        entry.model.unmerge_adapter()
        entry.merged_key = None
    if key is not None:
        entry.model.merge_adapter(adapter_names=[key])
        entry.merged_key = key


@contextmanager
def _active(entry: LoadedModel, activation: Activation) -> Iterator[None]:
    """Switch the entry's model to the activation's deltas for one forward or generate call."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    model = entry.model
    if activation.merged or not isinstance(model, PeftModel):
        if activation.members or (activation.federation is not None and not activation.merged):
            raise InferenceError("The adapters of this request were not loaded.")
        yield
        return
    single = len(activation.members) == 1 and tuple(activation.scales or (1.0,)) == (1.0,)
    _merge_only(entry, activation.members[0].key if single else None)
    if single:
        yield
        return
    if activation.federation is not None:
        model.set_adapter(sum_key(activation.federation), inference_mode=True)
        yield
        return
    if not activation.members:
        with model.disable_adapter():
            yield
        return
    keys = [m.key for m in activation.members]
    model.base_model.set_adapter(keys, inference_mode=True)
    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    try:
        for layer in layers:
            for key, scale in zip(keys, activation.scales, strict=True):
                layer.set_scale(key, scale)
        yield
    finally:
        for layer in layers:
            for key in keys:
                layer.set_scale(key, 1.0)


_default: InferenceEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> InferenceEngine:
    """The engine the Python API shares across calls in this process."""
    global _default
    with _default_lock:
        if _default is None:
            from registry.settings import get_settings

            _default = InferenceEngine(max_models=get_settings().max_loaded_models)
        return _default
