"""Streamlit's own script, style and font files, answered from memory ahead of Streamlit's middleware.

A first visit loads about 125 of these files (4 MB) for a page with a table, and Streamlit answers each one through
its whole stack: path checks, the session cookie middleware, the gzip middleware's skip, routing, then Starlette's
static files (a stat, a thread-pool hop per 64 KB read). That is 2-3 ms of the server's CPU per file, measured: about
a third of a second per first visit, spent while the browser needs both cores to compile the same files. Here a
request for one of the files the installed Streamlit ships (an exact path: nothing else can be named) is answered
from bytes read once, with the headers Streamlit gives them (long-lived and immutable: every name carries its
content's hash), and a 304 to a browser that already holds that version. Every other request goes on to Streamlit.

The app's page itself is Streamlit's index.html, untouched. It used to preload the table's code (about 30 files,
1.7 MB) once it had loaded; the browser then compiled that code while it started the app, and every page drew later
for it, table pages too (first render 0.83-0.91x without it on 5 pages, bench/first_render.py --compare).
"""

import hashlib
import mimetypes
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send
from streamlit import file_util

CACHE_CONTROL = b"public, immutable, max-age=31536000"


class StaticAssets:
    """ASGI middleware: GET and HEAD of `/static/...` files of the installed Streamlit, from memory."""

    def __init__(self, app: ASGIApp, directory: Path | None = None) -> None:
        self.app = app
        root = directory or Path(file_util.get_static_dir())
        self.files = {
            "/" + path.relative_to(root).as_posix(): path for path in root.glob("static/**/*") if path.is_file()
        }
        self.loaded: dict[str, tuple[bytes, list[tuple[bytes, bytes]], bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or path not in self.files:
            await self.app(scope, receive, send)
            return
        body, headers, etag = self.loaded.get(path) or self.load(path)
        if etag in _header(scope.get("headers", []), b"if-none-match"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(b"etag", etag), (b"cache-control", CACHE_CONTROL)],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def load(self, path: str) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        body = self.files[path].read_bytes()
        etag = etag_of(body)
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        headers = [
            (b"content-type", kind.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"etag", etag),
            (b"cache-control", CACHE_CONTROL),
        ]
        self.loaded[path] = (body, headers, etag)
        return self.loaded[path]


def etag_of(body: bytes) -> bytes:
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'.encode()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    """A request's or a response's header (its values joined; empty when it has none)."""
    return b",".join(value for key, value in headers if key.lower() == name)
