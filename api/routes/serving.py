"""Serving endpoints (vLLM, SGLang, another console) and deploying adapter versions to them."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel

from api.pagination import Page, Paging, page_of, paging
from services import deploy

router = APIRouter(tags=["serving"])


class DeployRequest(BaseModel):
    endpoint: str
    lora_name: str | None = None


@router.get("/serving/endpoints")
def list_endpoints(page: Annotated[Paging, Depends(paging)]) -> Page[deploy.ServingEndpoint]:
    return page_of(deploy.list_endpoints(), page)


@router.post("/serving/endpoints", status_code=201)
def save_endpoint(endpoint: deploy.ServingEndpoint) -> deploy.ServingEndpoint:
    """Add an endpoint, or replace the one with the same name."""
    return deploy.save_endpoint(endpoint)


@router.delete("/serving/endpoints/{name}", status_code=204, response_class=Response)
def delete_endpoint(name: str) -> Response:
    deploy.delete_endpoint(name)
    return Response(status_code=204)


@router.post("/adapters/{name}/versions/{version}/deploy")
def deploy_adapter(name: str, version: int, request: DeployRequest) -> deploy.Deployment:
    """Load the version into the endpoint's server (`POST /v1/load_lora_adapter`) as `lora_name`."""
    return deploy.deploy_adapter(name, version, endpoint=request.endpoint, lora_name=request.lora_name)
