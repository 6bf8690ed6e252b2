"""Serving endpoints: OpenAI-compatible servers (vLLM, SGLang, another console) adapters can be deployed to.

One JSON file, `<registry>/serving_endpoints.json`, written atomically under the registry's lock. A server's
API key is never stored: an endpoint names the environment variable that holds it.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from registry.errors import ConsoleError, NotFound
from registry.layout import Registry, open_registry
from registry.storage import atomic_write_json, locked, read_json, validate_name

ENDPOINTS_FILE = "serving_endpoints.json"


class ServingEndpoint(BaseModel):
    """Where an OpenAI-compatible server listens and how it sees this registry's adapter folders."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="A short name to pick the endpoint by.")
    url: HttpUrl = Field(description="Base URL, e.g. http://gpu-box:8000 (without /v1).")
    engine: Literal["vllm", "sglang", "console"] = Field(
        default="vllm", description="vLLM and SGLang load adapters with --enable-lora; 'console' is another console."
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the server's API key (the key is never stored)."
    )
    adapter_root: str | None = Field(
        default=None,
        description="Where that server sees this registry's adapters folder (shared storage); "
        "the same path as here when left out.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_name(value, "endpoint name")

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")


def _file(registry: Registry):
    return registry.root / ENDPOINTS_FILE


def list_endpoints(registry: Registry | None = None) -> list[ServingEndpoint]:
    registry = registry or open_registry()
    path = _file(registry)
    if not path.is_file():
        return []
    try:
        return [ServingEndpoint.model_validate(item) for item in read_json(path)]
    except (ValidationError, TypeError, ValueError) as error:
        raise ConsoleError(f"{path} is not a valid endpoints file ({error}); fix or delete it.") from None


def get_endpoint(name: str, registry: Registry | None = None) -> ServingEndpoint:
    for endpoint in list_endpoints(registry):
        if endpoint.name == name:
            return endpoint
    raise NotFound(f"No serving endpoint named {name!r}. Add it under Settings (or POST /serving/endpoints).")


def save_endpoint(endpoint: ServingEndpoint, registry: Registry | None = None) -> ServingEndpoint:
    """Add an endpoint, or replace the one with the same name."""
    registry = registry or open_registry()
    with locked(registry.locks, "endpoints"):
        others = [e for e in list_endpoints(registry) if e.name != endpoint.name]
        atomic_write_json(_file(registry), [e.model_dump(mode="json") for e in [*others, endpoint]])
    return endpoint


def delete_endpoint(name: str, registry: Registry | None = None) -> None:
    registry = registry or open_registry()
    with locked(registry.locks, "endpoints"):
        endpoints = list_endpoints(registry)
        if not any(e.name == name for e in endpoints):
            raise NotFound(f"No serving endpoint named {name!r}.")
        atomic_write_json(_file(registry), [e.model_dump(mode="json") for e in endpoints if e.name != name])
