"""Streamlit's own script, style and font files, answered from memory ahead of Streamlit's middleware.

A first visit loads about 125 of these files (4 MB) for a page with a table, and Streamlit answers each one through
its whole stack: path checks, the session cookie middleware, the gzip middleware's skip, routing, then Starlette's
static files (a stat, a thread-pool hop per 64 KB read). That is 2-3 ms of the server's CPU per file, measured: about
a third of a second per first visit, spent while the browser needs both cores to compile the same files. Here a
request for one of the files the installed Streamlit ships (an exact path: nothing else can be named) is answered
from bytes read once, with the headers Streamlit gives them (long-lived and immutable: every name carries its
content's hash), and a 304 to a browser that already holds that version. Every other request goes on to Streamlit.

The app's page (Streamlit's index.html, whatever URL path it answers) also preloads the table's code (`PRELOADED`)
once it has loaded: Streamlit loads an element's code only when a run draws one, so a page with a table waited after
its run for the table's ~30 files (1.7 MB) to arrive and compile (about 0.45 s of a first visit, measured).
Preloaded, they arrive and compile while the browser waits for the websocket and the script run.
"""

import gzip
import hashlib
import json
import mimetypes
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from streamlit import file_util

CACHE_CONTROL = b"public, immutable, max-age=31536000"
# The elements (their names in Streamlit's build manifest) whose code the app's page preloads: those most pages
# draw in their first run and that load the most code.
PRELOADED = ("DataFrame",)
RESIZED = (b"content-length", b"etag")  # the page's headers that change with its body


class StaticAssets:
    """ASGI middleware: GET and HEAD of `/static/...` files of the installed Streamlit, from memory, and the app's
    page with its preloads."""

    def __init__(self, app: ASGIApp, directory: Path | None = None) -> None:
        self.app = app
        root = directory or Path(file_util.get_static_dir())
        self.files = {
            "/" + path.relative_to(root).as_posix(): path for path in root.glob("static/**/*") if path.is_file()
        }
        self.loaded: dict[str, tuple[bytes, list[tuple[bytes, bytes]], bytes]] = {}
        self.index = (root / "index.html").read_bytes()
        page = with_preloads(self.index, element_code(root, PRELOADED))
        # by whether the response is gzipped: the page and its etag, made once
        self.pages = {
            zipped: (body, etag_of(body)) for zipped, body in ((False, page), (True, gzip.compress(page, mtime=0)))
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if path not in self.files:
            await self.app(scope, receive, self.preloading(send) if scope["method"] == "GET" else send)
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

    def preloading(self, send: Send) -> Send:
        """`send`, with Streamlit's index.html (found by its bytes, plain or gzipped, whatever the URL path) answered
        as the page that preloads; every other response passes through as it comes."""
        held: list[Message] = []

        async def send_page(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200 and _is_html(message):
                held.append(message)
                return
            if not held:
                await send(message)
                return
            held.append(message)
            if message.get("more_body"):
                return
            body = b"".join(part.get("body", b"") for part in held[1:])
            zipped = _header(held[0]["headers"], b"content-encoding") == b"gzip"
            if body and (gzip.decompress(body) if zipped else body) == self.index:
                page, etag = self.pages[zipped]
                kept = [(key, value) for key, value in held[0]["headers"] if key.lower() not in RESIZED]
                headers = [*kept, (b"content-length", str(len(page)).encode()), (b"etag", etag)]
                held[:] = [{**held[0], "headers": headers}, {"type": "http.response.body", "body": page}]
            for part in held:
                await send(part)

        return send_page


def etag_of(body: bytes) -> bytes:
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'.encode()


def element_code(root: Path, elements: tuple[str, ...]) -> list[str]:
    """The files (paths under Streamlit's static folder) that the code of `elements` loads and the app's page does
    not already load, read from the build's manifest: the names carry content hashes that change with every
    Streamlit release."""
    manifest = json.loads((root / "manifest.json").read_text())
    page = manifest["index.html"]

    def closure(key: str, seen: set[str]) -> set[str]:
        if key not in seen:
            seen.add(key)
            for imported in manifest[key].get("imports", []):
                closure(imported, seen)
        return seen

    loaded = closure("index.html", set())
    wanted: set[str] = set()
    for key in page.get("dynamicImports", []):
        if manifest[key].get("name") in elements:
            closure(key, wanted)
    chunks = sorted(wanted - loaded)
    return [manifest[key]["file"] for key in chunks] + sorted(
        {css for key in chunks for css in manifest[key].get("css", [])}
    )


def with_preloads(index: bytes, files: list[str]) -> bytes:
    """Streamlit's index.html with a script at the end of its head that, once the page has loaded, adds a preload
    link for each of `files` (scripts as modules, stylesheets as styles). Links in the head itself, or prefetches,
    competed with the app's own code: every page drew later, measured."""
    script = f"""<script>
addEventListener("load", () => {{
  for (const href of {json.dumps([f"./{file}" for file in files])}) {{
    const link = Object.assign(document.createElement("link"), {{href, crossOrigin: ""}});
    if (href.endsWith(".css")) Object.assign(link, {{rel: "preload", as: "style"}});
    else link.rel = "modulepreload";
    document.head.append(link);
  }}
}});
</script>
"""
    return index.replace(b"</head>", script.encode() + b"</head>", 1)


def _is_html(start: Message) -> bool:
    return _header(start["headers"], b"content-type").startswith(b"text/html")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    """A request's or a response's header (its values joined; empty when it has none)."""
    return b",".join(value for key, value in headers if key.lower() == name)
