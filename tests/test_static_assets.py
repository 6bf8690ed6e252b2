"""serve.py's static asset middleware: Streamlit's own files from memory, byte for byte, and nothing else."""

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from streamlit import file_util

from views.static_assets import StaticAssets


def streamlit_answers(request):
    return PlainTextResponse(f"streamlit {request.method} {request.url.path}")


def client() -> TestClient:
    app = Starlette(
        routes=[Route("/{path:path}", streamlit_answers, methods=["GET", "HEAD", "POST"])],
        middleware=[Middleware(StaticAssets)],
    )
    return TestClient(app)


def shipped(suffix: str) -> Path:
    return next((Path(file_util.get_static_dir()) / "static").rglob(f"*{suffix}"))


def test_a_shipped_file_comes_from_memory_byte_for_byte_with_streamlits_cache_headers():
    browser = client()
    for suffix, kind in ((".js", "javascript"), (".css", "text/css"), (".woff2", "font/woff2")):
        file = shipped(suffix)
        path = "/" + file.relative_to(file_util.get_static_dir()).as_posix()
        first = browser.get(path)
        assert first.status_code == 200 and first.content == file.read_bytes()
        assert kind in first.headers["content-type"]
        assert first.headers["content-length"] == str(file.stat().st_size)
        assert first.headers["cache-control"] == "public, immutable, max-age=31536000"
        again = browser.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
        head = browser.head(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(file.stat().st_size)
        assert browser.get(path, headers={"If-None-Match": '"another"'}).status_code == 200


def test_anything_else_goes_on_to_streamlit():
    browser = client()
    real = "/" + shipped(".js").relative_to(file_util.get_static_dir()).as_posix()
    for path in ("/", "/models", "/static/js/missing.js", "/index.html", "/static/js/../../index.html", real + "x"):
        assert browser.get(path).text.startswith("streamlit GET")
    assert browser.post(real).text == f"streamlit POST {real}"
