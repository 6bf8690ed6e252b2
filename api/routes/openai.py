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
import collections
import contextlib
import contextvars
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.errors import error_body, status_of
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


_END = object()
# Answers are generated in pooled threads, each in its request's context (the acting user): a thread started per
# request cost each streamed request its start-up, and anyio's worker threads (FastAPI's run_in_threadpool) cost
# each answer ~0.1 ms more server CPU than a plain executor (measured through ASGI, 1-token answers).
_GENERATORS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="openai-generate")


def _in_thread(call: Callable[[], Any]) -> asyncio.Future[Any]:
    return asyncio.get_running_loop().run_in_executor(_GENERATORS, contextvars.copy_context().run, call)


class _Refused(NamedTuple):
    error: ConsoleError


class EventStream(Response):
    """Server-sent events of a blocking stream, with as few hops and writes as the generation allows.

    The stream is opened (the model named, resolved) and generated in one pooled thread, which hands each piece to
    the event loop; a stream that cannot be opened is answered with the JSON error and status any route gives.
    Pieces that arrived together (the generation ran ahead of the network) go out in one write, and the end's
    events (finish, usage, [DONE]) with the last piece when it came with them, else in one write of their own;
    each piece is still its own event. Starlette's StreamingResponse costs a task group per request to hear a
    client hang up (uvicorn's h11 server speaks ASGI 2.3); here one plain task waits for the disconnect, after
    which the generating thread closes the stream, so the engine stops and releases the model.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        open_stream: Callable[[], CompletionStream],
        render: Callable[[CompletionStream], Callable[[list[Any], bool], bytes]],
    ):
        # Response.__init__ would declare the length of an empty body: a stream's length is unknown (chunked)
        self.status_code, self.background = 200, None
        self.init_headers({"Cache-Control": "no-cache"})
        self.open_stream, self.render_stream = open_stream, render

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        arrived: collections.deque[Any] = collections.deque()
        ready = asyncio.Event()
        gone = threading.Event()

        def land(item: Any) -> None:
            arrived.append(item)
            ready.set()

        def hand_over(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the server stopped and closed its loop: nobody is listening
                loop.call_soon_threadsafe(land, item)

        def produce() -> None:
            try:
                stream = self.open_stream()
            except ConsoleError as error:
                hand_over(_Refused(error))
                return
            hand_over(stream)
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

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def arrivals() -> list[Any]:
            await ready.wait()
            ready.clear()
            pieces = list(arrived)
            arrived.clear()
            return pieces

        listener = loop.create_task(listen())
        _GENERATORS.submit(contextvars.copy_context().run, produce)
        try:
            pieces = await arrivals()
            opened = pieces.pop(0)
            if isinstance(opened, _Refused):
                status = status_of(opened.error)
                body = error_body(status, type(opened.error).__name__, str(opened.error))
                await JSONResponse(body, status_code=status)(scope, receive, send)
                return
            events = self.render_stream(opened)
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            done = False
            while not done:
                pieces = pieces or await arrivals()
                done = pieces[-1] is _END or any(isinstance(piece, ConsoleError) for piece in pieces)
                body = events([piece for piece in pieces if piece is not _END], done)
                await send({"type": "http.response.body", "body": body, "more_body": not done})
                pieces = []
        finally:
            gone.set()
            listener.cancel()


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
async def chat_completions(request: ChatRequest) -> Response:
    history, prompt, system = request.conversation()
    settings = request.settings(system)

    def open_stream() -> CompletionStream:
        return stream_completion(request.model, prompt, settings, history)

    if request.stream:
        return _sse(open_stream, "chat.completion.chunk", request.include_usage, chat=True)
    stream, text = await _in_thread(lambda: _whole(open_stream))
    return _json(
        {
            **_envelope("chat.completion", stream),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": stream.finish_reason}
            ],
            "usage": _usage(stream.usage),
        }
    )


@router.post("/completions", response_model=None)
async def completions(request: CompletionRequest) -> Response:
    prompt, settings = request.text(), request.settings()

    def open_stream() -> CompletionStream:
        return stream_completion(request.model, prompt, settings)

    if request.stream:
        return _sse(open_stream, "text_completion", request.include_usage, chat=False)
    stream, text = await _in_thread(lambda: _whole(open_stream))
    return _json(
        {
            **_envelope("text_completion", stream),
            "choices": [{"index": 0, "text": text, "finish_reason": stream.finish_reason, "logprobs": None}],
            "usage": _usage(stream.usage),
        }
    )


def _whole(open_stream: Callable[[], CompletionStream]) -> tuple[CompletionStream, str]:
    """A whole answer, in a pooled thread (the routes are async, so that a streamed answer hops to no thread but
    the one that generates it)."""
    stream = open_stream()
    return stream, "".join(stream)


def _json(body: dict[str, Any]) -> Response:
    """An answer's JSON, encoded once: FastAPI would walk a returned dict with jsonable_encoder and then encode it
    (~0.1 ms more server CPU per answer), for a body that holds only JSON types already."""
    return Response(orjson.dumps(body), media_type="application/json")


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


def _sse(open_stream: Callable[[], CompletionStream], kind: str, include_usage: bool, *, chat: bool) -> EventStream:
    def render(stream: CompletionStream) -> Callable[[list[Any], bool], bytes]:
        """The events of one opened stream."""
        envelope = _envelope(kind, stream)
        opened = False  # a chat's first event names the assistant's role

        def choice(text: str | None, finish: str | None) -> dict[str, Any]:
            nonlocal opened
            if not chat:
                return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
            delta: dict[str, Any] = {} if opened else {"role": "assistant", "content": ""}
            opened = True
            if text is not None:
                delta["content"] = text
            return {"index": 0, "delta": delta, "finish_reason": finish}

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        def events(pieces: list[str | ConsoleError], done: bool) -> bytes:
            """The events of the pieces handed over together; at the end, the finish (and usage) events and [DONE]."""
            out = []
            for piece in pieces:
                if isinstance(piece, ConsoleError):
                    return b"".join(out) + event(
                        {"error": {"message": str(piece), "type": type(piece).__name__, "code": 500}}
                    )
                out.append(event({**envelope, "choices": [choice(piece, None)]}))
            if done:
                out.append(event({**envelope, "choices": [choice(None, stream.finish_reason)]}))
                if include_usage:
                    out.append(event({**envelope, "choices": [], "usage": _usage(stream.usage)}))
                out.append(b"data: [DONE]\n\n")
            return b"".join(out)

        return events

    return EventStream(open_stream, render)
