"""Deploy adapters to OpenAI-compatible servers (vLLM, SGLang, another console) and ask them for answers.

Deploying is vLLM's and SGLang's runtime call, `POST /v1/load_lora_adapter {"lora_name", "lora_path"}`: the
server reads the adapter folder itself, so `lora_path` is where *that* server sees it (an endpoint's
`adapter_root` maps this registry's adapters folder onto shared storage). vLLM needs `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; SGLang needs `--enable-lora`.
"""

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import httpx
from pydantic import BaseModel

from federation.engine import GenerationSettings
from registry.access import Role, requires
from registry.activity import log_event
from registry.endpoints import ServingEndpoint, get_endpoint, list_endpoints
from registry.endpoints import delete_endpoint as _delete_endpoint
from registry.endpoints import save_endpoint as _save_endpoint
from registry.errors import ConsoleError
from training.adapters import get_adapter

__all__ = [
    "Deployment",
    "RemoteAnswer",
    "RemoteStream",
    "ServingEndpoint",
    "complete_on_endpoint",
    "delete_endpoint",
    "deploy_adapter",
    "get_endpoint",
    "list_endpoints",
    "remote_models",
    "save_endpoint",
    "stream_on_endpoint",
]

TIMEOUT = httpx.Timeout(30.0, read=600.0)


class Deployment(BaseModel):
    endpoint: str
    lora_name: str
    lora_path: str
    adapter: str
    time: datetime


class RemoteAnswer(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    latency_ms: float = 0.0
    first_token_ms: float | None = None


# Endpoints are console configuration (admins, as Settings); deploying changes what a server answers (practitioners).
save_endpoint = requires(Role.ADMIN, "serving.save_endpoint")(_save_endpoint)
delete_endpoint = requires(Role.ADMIN, "serving.delete_endpoint")(_delete_endpoint)


@requires(Role.PRACTITIONER, "serving.deploy")
def deploy_adapter(
    adapter: str, version: int | None = None, *, endpoint: str, lora_name: str | None = None
) -> Deployment:
    """Load one adapter version into the endpoint's server as model `lora_name` (default `name@vN`)."""
    target = get_endpoint(endpoint)
    record = get_adapter(adapter, version)
    name = lora_name or f"{record.name}@v{record.version}"
    path = (
        str(PurePosixPath(target.adapter_root) / record.name / f"v{record.version}")
        if target.adapter_root
        else str(record.path)
    )
    _call(target, "POST", "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
    log_event(
        "adapter.deployed",
        f"Deployed {record.label} to {target.name} as {name}",
        adapter=record.name,
        version=record.version,
        endpoint=target.name,
    )
    return Deployment(
        endpoint=target.name, lora_name=name, lora_path=path, adapter=record.label, time=datetime.now(UTC)
    )


def remote_models(endpoint: str) -> list[str]:
    """The model ids the endpoint's server lists (`GET /v1/models`)."""
    return [item["id"] for item in _call(get_endpoint(endpoint), "GET", "/v1/models").get("data", [])]


def _chat_body(model: str, prompt: str, settings: GenerationSettings) -> dict[str, Any]:
    messages = ([{"role": "system", "content": settings.system}] if settings.system.strip() else []) + [
        {"role": "user", "content": prompt}
    ]
    return {
        "model": model,
        "messages": messages,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
    }


def complete_on_endpoint(
    endpoint: str, model: str, prompt: str, settings: GenerationSettings | None = None
) -> RemoteAnswer:
    """One chat completion on the endpoint's server, with the Playground's generation settings."""
    body = _chat_body(model, prompt, settings or GenerationSettings())
    reply = _call(get_endpoint(endpoint), "POST", "/v1/chat/completions", json=body)
    choice, usage = reply["choices"][0], reply.get("usage") or {}
    return RemoteAnswer(
        text=choice["message"]["content"] or "",
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        finish_reason=choice.get("finish_reason"),
    )


class RemoteStream:
    """Iterate for the answer's text as the server streams it (OpenAI server-sent events); `.answer` follows."""

    def __init__(self, endpoint: ServingEndpoint, model: str, prompt: str, settings: GenerationSettings):
        self.endpoint, self.model = endpoint, model
        self.body = {**_chat_body(model, prompt, settings), "stream": True, "stream_options": {"include_usage": True}}
        self.answer: RemoteAnswer | None = None

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish: str | None = None
        first: float | None = None
        started = time.perf_counter()
        try:
            with httpx.stream(
                "POST",
                self.endpoint.base_url + "/v1/chat/completions",
                headers=_headers(self.endpoint),
                json=self.body,
                timeout=TIMEOUT,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ConsoleError(
                        f"{self.endpoint.name} refused the chat completion ({response.status_code}): "
                        f"{_message(response)}"
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
            raise _unreachable(self.endpoint, error) from None
        self.answer = RemoteAnswer(
            text="".join(parts),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=finish,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            first_token_ms=round(first, 2) if first is not None else None,
        )


def stream_on_endpoint(
    endpoint: str, model: str, prompt: str, settings: GenerationSettings | None = None
) -> RemoteStream:
    """A streamed chat completion on the endpoint's server (the Playground's remote target); nothing is sent
    until it is iterated. An unknown endpoint fails here."""
    if not prompt.strip():
        raise ConsoleError("The prompt is empty: type what the model should answer.")
    return RemoteStream(get_endpoint(endpoint), model, prompt, settings or GenerationSettings())


def _headers(endpoint: ServingEndpoint) -> dict[str, str]:
    if not endpoint.api_key_env:
        return {}
    key = os.environ.get(endpoint.api_key_env)
    if not key:
        raise ConsoleError(f"Endpoint {endpoint.name} reads its API key from ${endpoint.api_key_env}, which is unset.")
    return {"Authorization": f"Bearer {key}"}


def _unreachable(endpoint: ServingEndpoint, error: Exception) -> ConsoleError:
    return ConsoleError(
        f"Could not reach {endpoint.name} at {endpoint.base_url} ({type(error).__name__}: {error}). "
        "Check that the server is running and the URL is right."
    )


def _call(endpoint: ServingEndpoint, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    url = endpoint.base_url + path
    try:
        response = httpx.request(method, url, headers=_headers(endpoint), timeout=TIMEOUT, **kwargs)
    except httpx.HTTPError as error:
        raise _unreachable(endpoint, error) from None
    if response.status_code >= 400:
        raise ConsoleError(f"{endpoint.name} refused {method} {path} ({response.status_code}): {_message(response)}")
    if not response.content or not response.headers.get("content-type", "").startswith("application/json"):
        return {"text": response.text}
    return response.json()


def _message(response: httpx.Response) -> str:
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
