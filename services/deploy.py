"""Deploy adapters to OpenAI-compatible servers (vLLM, SGLang, another console) and ask them for answers.

Deploying is vLLM's and SGLang's runtime call, `POST /v1/load_lora_adapter {"lora_name", "lora_path"}`: the
server reads the adapter folder itself, so `lora_path` is where *that* server sees it (an endpoint's
`adapter_root` maps this registry's adapters folder onto shared storage). vLLM needs `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; SGLang needs `--enable-lora`.
"""

from datetime import UTC, datetime
from pathlib import PurePosixPath

from pydantic import BaseModel

from federation.engine import GenerationSettings
from federation.remote import RemoteAnswer, RemoteStream, call, chat_messages, complete
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


class Deployment(BaseModel):
    endpoint: str
    lora_name: str
    lora_path: str
    adapter: str
    time: datetime


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
    call(target, "POST", "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
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
    return [item["id"] for item in call(get_endpoint(endpoint), "GET", "/v1/models").get("data", [])]


def complete_on_endpoint(
    endpoint: str, model: str, prompt: str, settings: GenerationSettings | None = None
) -> RemoteAnswer:
    """One chat completion on the endpoint's server, with the Playground's generation settings."""
    settings = settings or GenerationSettings()
    return complete(get_endpoint(endpoint), model, chat_messages(prompt, settings), settings)


def stream_on_endpoint(
    endpoint: str, model: str, prompt: str, settings: GenerationSettings | None = None
) -> RemoteStream:
    """A streamed chat completion on the endpoint's server (the Playground's remote target); nothing is sent
    until it is iterated. An unknown endpoint fails here."""
    if not prompt.strip():
        raise ConsoleError("The prompt is empty: type what the model should answer.")
    settings = settings or GenerationSettings()
    return RemoteStream(get_endpoint(endpoint), model, chat_messages(prompt, settings), settings)
