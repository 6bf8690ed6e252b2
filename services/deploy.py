"""Deploy adapters to OpenAI-compatible servers (vLLM, SGLang, another console) and ask them for answers.

Deploying is vLLM's and SGLang's runtime call, `POST /v1/load_lora_adapter {"lora_name", "lora_path"}`: the
server reads the adapter folder itself, so `lora_path` is where *that* server sees it (an endpoint's
`adapter_root` maps this registry's adapters folder onto shared storage). vLLM needs `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; SGLang needs `--enable-lora`.
"""

import os
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import httpx
from pydantic import BaseModel

from federation.engine import GenerationSettings
from registry.activity import log_event
from registry.endpoints import ServingEndpoint, delete_endpoint, get_endpoint, list_endpoints, save_endpoint
from registry.errors import ConsoleError
from training.adapters import get_adapter

__all__ = [
    "Deployment",
    "RemoteAnswer",
    "ServingEndpoint",
    "complete_on_endpoint",
    "delete_endpoint",
    "deploy_adapter",
    "get_endpoint",
    "list_endpoints",
    "remote_models",
    "save_endpoint",
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


def complete_on_endpoint(
    endpoint: str, model: str, prompt: str, settings: GenerationSettings | None = None
) -> RemoteAnswer:
    """One chat completion on the endpoint's server, with the Playground's generation settings."""
    settings = settings or GenerationSettings()
    messages = ([{"role": "system", "content": settings.system}] if settings.system.strip() else []) + [
        {"role": "user", "content": prompt}
    ]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
    }
    reply = _call(get_endpoint(endpoint), "POST", "/v1/chat/completions", json=body)
    choice, usage = reply["choices"][0], reply.get("usage") or {}
    return RemoteAnswer(
        text=choice["message"]["content"] or "",
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        finish_reason=choice.get("finish_reason"),
    )


def _call(endpoint: ServingEndpoint, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    headers = {}
    if endpoint.api_key_env:
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise ConsoleError(
                f"Endpoint {endpoint.name} reads its API key from ${endpoint.api_key_env}, which is unset."
            )
        headers["Authorization"] = f"Bearer {key}"
    url = endpoint.base_url + path
    try:
        response = httpx.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
    except httpx.HTTPError as error:
        raise ConsoleError(
            f"Could not reach {endpoint.name} at {endpoint.base_url} ({type(error).__name__}: {error}). "
            "Check that the server is running and the URL is right."
        ) from None
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
