"""Answers from an OpenAI-compatible server (vLLM, SGLang, another console) over HTTP: the remote counterpart of
the inference engine, for the Playground, evaluations and deploy checks.

One chat completion per prompt, streamed as server-sent events so latency and first-token time are measured the
way the engine measures them; usage comes from `stream_options.include_usage`. The API key is read from the
environment variable the endpoint names, at each request, and never stored. A server that cannot be reached, or
that refuses a request, is a ConsoleError in the server's own words and says what to check.
"""

import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from federation.engine import GenerationSettings
from registry.endpoints import ServingEndpoint
from registry.errors import ConsoleError

TIMEOUT = httpx.Timeout(30.0, read=600.0)


class RemoteAnswer(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    latency_ms: float = 0.0
    first_token_ms: float | None = None


def chat_messages(prompt: str, settings: GenerationSettings) -> list[dict[str, str]]:
    """A prompt as a chat, with the settings' system message first (as the engine templates it)."""
    return ([{"role": "system", "content": settings.system}] if settings.system.strip() else []) + [
        {"role": "user", "content": prompt}
    ]


def _chat_body(model: str, messages: Sequence[dict[str, str]], settings: GenerationSettings) -> dict[str, Any]:
    """The settings as OpenAI fields; a repetition penalty (vLLM's and SGLang's extension, which OpenAI itself
    does not take) only when one is set."""
    penalty = {"repetition_penalty": settings.repetition_penalty} if settings.repetition_penalty != 1.0 else {}
    return {
        "model": model,
        "messages": list(messages),
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
    } | penalty


def complete(
    endpoint: ServingEndpoint, model: str, messages: Sequence[dict[str, str]], settings: GenerationSettings
) -> RemoteAnswer:
    """One chat completion, not streamed."""
    reply = call(endpoint, "POST", "/v1/chat/completions", json=_chat_body(model, messages, settings))
    choice, usage = reply["choices"][0], reply.get("usage") or {}
    return RemoteAnswer(
        text=choice["message"]["content"] or "",
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        finish_reason=choice.get("finish_reason"),
    )


class RemoteStream:
    """Iterate for the answer's text as the server streams it (OpenAI server-sent events); `.answer` follows."""

    def __init__(
        self,
        endpoint: ServingEndpoint,
        model: str,
        messages: Sequence[dict[str, str]],
        settings: GenerationSettings,
        client: httpx.Client | None = None,
    ):
        self.endpoint, self.model, self.client = endpoint, model, client
        self.body = {**_chat_body(model, messages, settings), "stream": True, "stream_options": {"include_usage": True}}
        self.answer: RemoteAnswer | None = None

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish: str | None = None
        first: float | None = None
        started = time.perf_counter()
        send = self.client.stream if self.client is not None else httpx.stream
        try:
            with send(
                "POST",
                self.endpoint.base_url + "/v1/chat/completions",
                headers=headers(self.endpoint),
                json=self.body,
                timeout=TIMEOUT,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ConsoleError(
                        f"{self.endpoint.name} refused the chat completion ({response.status_code}): "
                        f"{message(response)}"
                    )
                for line in response.iter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        raise ConsoleError(f"{self.endpoint.name} stopped the answer: {event['error'].get('message')}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            first = first if first is not None else (time.perf_counter() - started) * 1000
                            parts.append(text)
                            yield text
        except httpx.HTTPError as error:
            raise unreachable(self.endpoint, error) from None
        self.answer = RemoteAnswer(
            text="".join(parts),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=finish,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            first_token_ms=round(first, 2) if first is not None else None,
        )


class EndpointModel(BaseModel):
    """One model of an endpoint's server, answering prompts the way a federation does: one side of an A/B."""

    model_config = ConfigDict(frozen=True)

    endpoint: ServingEndpoint
    model: str
    label: str

    def stream(self, prompt: str, settings: GenerationSettings, client: httpx.Client | None = None) -> RemoteStream:
        return RemoteStream(self.endpoint, self.model, chat_messages(prompt, settings), settings, client)


def headers(endpoint: ServingEndpoint) -> dict[str, str]:
    if not endpoint.api_key_env:
        return {}
    key = os.environ.get(endpoint.api_key_env)
    if not key:
        raise ConsoleError(
            f"Endpoint {endpoint.name} reads its API key from ${endpoint.api_key_env}, which is unset in the "
            "console's environment: set it where the console runs (the key itself is never stored)."
        )
    return {"Authorization": f"Bearer {key}"}


def unreachable(endpoint: ServingEndpoint, error: Exception) -> ConsoleError:
    return ConsoleError(
        f"Could not reach {endpoint.name} at {endpoint.base_url} ({type(error).__name__}: {error}). "
        "Check that the server is running and the URL is right."
    )


def call(endpoint: ServingEndpoint, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One JSON request to the endpoint's server; its error message, or why it could not be reached, otherwise."""
    url = endpoint.base_url + path
    try:
        response = httpx.request(method, url, headers=headers(endpoint), timeout=TIMEOUT, **kwargs)
    except httpx.HTTPError as error:
        raise unreachable(endpoint, error) from None
    if response.status_code >= 400:
        raise ConsoleError(f"{endpoint.name} refused {method} {path} ({response.status_code}): {message(response)}")
    if not response.content or not response.headers.get("content-type", "").startswith("application/json"):
        return {"text": response.text}
    return response.json()


def message(response: httpx.Response) -> str:
    """The server's own words: OpenAI-style `error.message`, FastAPI's `detail`, or the text (vLLM answers
    load_lora_adapter with plain text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message") or body.get("detail"):
            return str(body.get("message") or body.get("detail"))
    return response.text[:500]
