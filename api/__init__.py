"""The console's HTTP API (FastAPI on uvicorn): the same `services` the pages call, over HTTP, for scripts and
other machines' tools, plus an OpenAI-compatible inference endpoint.

The top layer beside `views/`: it imports `services` only, so every rule (validation, naming, job preflight)
has one implementation. `python -m api` (or `make api`) serves it on 127.0.0.1:8502; OpenAPI docs at `/docs`.
"""
