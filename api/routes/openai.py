"""OpenAI-compatible inference under /v1: models, chat completions and completions, streamed or not.

`model` names a base model, an adapter (`name` or `name@v2`) or a saved federation (`fed_...`); GET /v1/models
lists them. Answers go through the console's inference engine, so a model loaded for the Playground is the one
the API uses. A chat's whole `messages` list goes through the model's chat template: system (and developer)
messages first, then the user and assistant turns in order, ending with a user turn. Differences from OpenAI,
each refused with a 400 rather than silently ignored: one choice per request (`n` = 1), no `stop` sequences, no
tools (nor tool messages), text content only. A completion's prompt is sent through the model's chat template as
one user turn, as the adapters were trained. Without `temperature` decoding is greedy (deterministic).
"""

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from services.errors import ConsoleError
from services.federation import GenerationSettings
from services.serving import (
    CompletionStream,
    Usage,
    list_served_models,
    load_lora_adapter,
    stream_completion,
    unload_lora_adapter,
)

router = APIRouter(prefix="/v1", tags=["openai"])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class SamplingRequest(BaseModel):
    """The OpenAI fields this server honours; other fields (user, metadata, ...) do not change an answer."""

    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: Annotated[int | None, Field(ge=1, le=2048)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1, le=2048)] = None
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0)] = None
    top_p: Annotated[float | None, Field(gt=0.0, le=1.0)] = None
    seed: Annotated[int | None, Field(ge=0)] = None
    repetition_penalty: Annotated[float | None, Field(ge=1.0, le=2.0)] = Field(
        default=None, description="vLLM's and SGLang's extension: above 1 discourages repeating."
    )
    n: int = 1
    stop: str | list[str] | None = None

    def settings(self, system: str = "") -> GenerationSettings:
        refused = [
            name
            for name, given in [
                ("n other than 1", self.n != 1),
                ("stop sequences", bool(self.stop)),
                ("tools", bool(getattr(self, "tools", None) or getattr(self, "functions", None))),
                ("logprobs", bool(getattr(self, "logprobs", None))),
            ]
            if given
        ]
        if refused:
            raise ConsoleError(f"This server does not support {', '.join(refused)}; leave them out of the request.")
        values: dict[str, Any] = {"system": system}
        tokens = self.max_completion_tokens or self.max_tokens
        for key, value in [
            ("max_new_tokens", tokens),
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("repetition_penalty", self.repetition_penalty),
        ]:
            if value is not None:
                values[key] = value
        if self.seed is not None:
            values["seed"] = self.seed
        return GenerationSettings(**values)

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)

    def conversation(self) -> tuple[list[dict[str, str]], str, str]:
        """(earlier turns, the last user message, the system text): system and developer messages are joined,
        in order, into the system message the template puts first."""
        system = [_text(m) for m in self.messages if m.role in {"system", "developer"}]
        turns = [m for m in self.messages if m.role not in {"system", "developer"}]
        tools = [str(i + 1) for i, m in enumerate(self.messages) if m.role == "tool" or getattr(m, "tool_calls", None)]
        if tools:
            raise ConsoleError(f"This server does not run tools; message(s) {', '.join(tools)} are tool messages.")
        if not turns or turns[-1].role != "user":
            raise ConsoleError(
                "The last message must be the user's (the one to answer); this request ends with "
                f"{turns[-1].role if turns else 'no user or assistant message'}."
            )
        history = [{"role": m.role, "content": _text(m)} for m in turns[:-1]]
        return history, _text(turns[-1]), "\n\n".join(system)


class CompletionRequest(SamplingRequest):
    prompt: str | list[str]

    def text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise ConsoleError(f"Send one prompt per request; this one has {len(self.prompt)}.")
            return self.prompt[0]
        return self.prompt


class LoadLoraRequest(BaseModel):
    lora_name: str
    lora_path: str


class UnloadLoraRequest(BaseModel):
    lora_name: str


def _text(message: ChatMessage) -> str:
    if isinstance(message.content, list):
        parts = [part.get("text", "") for part in message.content if part.get("type") == "text"]
        if len(parts) != len(message.content):
            raise ConsoleError("Only text content parts are supported (no images, audio or files).")
        return "".join(parts)
    return message.content or ""


@router.get("/models")
def models() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": m.id,
                "object": "model",
                "created": m.created,
                "owned_by": "rmn-lora-console",
                "root": m.name,
                "parent": m.parent,
                "kind": m.kind,
            }
            for m in list_served_models()
        ],
    }


@router.post("/chat/completions", response_model=None)
def chat_completions(request: ChatRequest) -> dict[str, Any] | StreamingResponse:
    history, prompt, system = request.conversation()
    stream = stream_completion(request.model, prompt, request.settings(system), history)
    if request.stream:
        return _sse(stream, "chat.completion.chunk", request.include_usage, chat=True)
    text = "".join(stream)
    return {
        **_envelope("chat.completion", stream),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": stream.finish_reason}
        ],
        "usage": _usage(stream.usage),
    }


@router.post("/completions", response_model=None)
def completions(request: CompletionRequest) -> dict[str, Any] | StreamingResponse:
    stream = stream_completion(request.model, request.text(), request.settings())
    if request.stream:
        return _sse(stream, "text_completion", request.include_usage, chat=False)
    text = "".join(stream)
    return {
        **_envelope("text_completion", stream),
        "choices": [{"index": 0, "text": text, "finish_reason": stream.finish_reason, "logprobs": None}],
        "usage": _usage(stream.usage),
    }


@router.post("/load_lora_adapter")
def load_lora(request: LoadLoraRequest) -> dict[str, str]:
    """vLLM / SGLang's call: serve the adapter version at `lora_path` (a folder of this registry) as `lora_name`."""
    target = load_lora_adapter(request.lora_name, request.lora_path)
    return {"status": "loaded", "lora_name": request.lora_name, "adapter": f"{target.ref}@v{target.version}"}


@router.post("/unload_lora_adapter")
def unload_lora(request: UnloadLoraRequest) -> dict[str, str]:
    unload_lora_adapter(request.lora_name)
    return {"status": "unloaded", "lora_name": request.lora_name}


def _envelope(kind: str, stream: CompletionStream) -> dict[str, Any]:
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": stream.model}


def _usage(usage: Usage | None) -> dict[str, int] | None:
    return usage.model_dump() if usage is not None else None


def _sse(stream: CompletionStream, kind: str, include_usage: bool, *, chat: bool) -> StreamingResponse:
    envelope = _envelope(kind, stream)

    def choice(text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "finish_reason": finish}

    def event(payload: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(payload)}\n\n".encode()

    async def events() -> AsyncIterator[bytes]:
        if chat:
            yield event({**envelope, "choices": [choice(None, None, first=True)]})
        async for text in _in_thread(stream):
            if isinstance(text, ConsoleError):
                yield event({"error": {"message": str(text), "type": type(text).__name__, "code": 500}})
                return
            yield event({**envelope, "choices": [choice(text, None)]})
        yield event({**envelope, "choices": [choice(None, stream.finish_reason)]})
        if include_usage:
            yield event({**envelope, "choices": [], "usage": _usage(stream.usage)})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


_END = object()


async def _in_thread(stream: CompletionStream) -> AsyncIterator[str | ConsoleError]:
    """Run the blocking stream in its own thread, which hands each piece to the event loop directly (a worker
    thread hop per piece cost a streamed request ~1 ms more: bench/openai_overhead.py). If the client goes
    away, that thread closes the stream itself, so the engine stops generating and releases the model."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[Any] = asyncio.Queue()
    gone = threading.Event()

    def hand_over(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the server stopped and closed its loop: nobody is listening
            loop.call_soon_threadsafe(chunks.put_nowait, item)

    def produce() -> None:
        iterator: Iterator[str] = iter(stream)
        try:
            for text in iterator:
                if gone.is_set():
                    iterator.close()  # type: ignore[attr-defined]
                    return
                hand_over(text)
        except ConsoleError as error:
            hand_over(error)
        except Exception as error:  # noqa: BLE001 — the client must hear why its stream ended
            hand_over(ConsoleError(f"Generation failed ({type(error).__name__}): {error}"))
        finally:
            hand_over(_END)

    threading.Thread(target=produce, name="openai-stream", daemon=True).start()
    try:
        while (item := await chunks.get()) is not _END:
            yield item
    finally:
        gone.set()
