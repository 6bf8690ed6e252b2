"""A real uvicorn server on a free loopback port, in a thread of the test process (same registry env)."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn


def free_port() -> int:
    """A port nothing listens on now, for a server started in another process (which binds it itself; a server in
    this process gets a socket bound here instead, see `serve`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound here and never listened on,
    so no other server (another test's, another process's) can take it meanwhile, as it could a `free_port()`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def serve(app) -> Iterator[str]:
    """Yield the base URL while uvicorn serves `app`; the server is stopped and joined on exit. The socket is bound
    before uvicorn starts, so no other process can take the port between choosing it and listening on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # generous: a loaded 2-core machine starts it late
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def api_client(app) -> Iterator[httpx.Client]:
    with serve(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client
