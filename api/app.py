"""The FastAPI application: routers, JSON errors and the access policy, built by one factory."""

from fastapi import Depends, FastAPI

from api.access import AccessPolicy, console_access
from api.errors import install_error_handlers
from api.routes import adapters, datasets, evaluations, experiments, federations, mappings, models, openai, serving

# Requests are matched against the routers in this order: inference, the hot path, first
# (bench/openai_overhead.py: matching a /v1 request against every other router first cost it ~0.5 ms).
ROUTERS = (
    openai.router,
    datasets.router,
    models.router,
    experiments.router,
    evaluations.router,
    adapters.router,
    federations.router,
    mappings.router,
    serving.router,
)


def create_app(access: AccessPolicy = console_access) -> FastAPI:
    """`access` runs before every route (see api.access): by default per-user API tokens with the console's
    roles, and an open console (no accounts) answers this machine."""
    app = FastAPI(
        title="RMN LoRA Console API",
        version="1",
        description="Datasets, training jobs (experiments), evaluations, adapters, federations and mappings over the same "
        "services as the console, plus OpenAI-compatible inference under /v1. Errors are JSON "
        '`{"error": {"message", "type", "code"}}` with a 4xx status.',
        dependencies=[Depends(access)],
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
