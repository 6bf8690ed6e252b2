"""serve.py's static asset middleware: Streamlit's own files from memory, byte for byte, and nothing else."""

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from streamlit import file_util
from streamlit.web.server.starlette.starlette_static_routes import create_streamlit_static_handler

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


def streamlit_page_app(gzipped: bool) -> TestClient:
    """Streamlit's own answer for a page's URL (its static handler: index.html for any path that is not a file),
    behind its gzip middleware or not, then ours."""
    static = create_streamlit_static_handler(file_util.get_static_dir(), None)
    inner = GZipMiddleware(static, minimum_size=500) if gzipped else static
    return TestClient(StaticAssets(inner))


def test_the_apps_page_is_streamlits_own_plain_or_gzipped_at_any_url():
    """No script added to the page: preloading the table's code on load made every page draw later (measured)."""
    index = (Path(file_util.get_static_dir()) / "index.html").read_text()
    for gzipped in (False, True):
        browser = streamlit_page_app(gzipped)
        for path in ("/", "/models", "/dataset_library?x=1"):
            answer = browser.get(path, headers={"Accept-Encoding": "gzip"})
            assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
            assert answer.headers.get("content-encoding") == ("gzip" if gzipped else None)
            assert answer.text == index
            assert int(answer.headers["content-length"]) == answer.num_bytes_downloaded


def test_other_html_passes_through_unchanged():
    own = "<html><head><title>ours</title></head><body></body></html>"
    app = Starlette(routes=[Route("/mine", lambda request: HTMLResponse(own))], middleware=[Middleware(StaticAssets)])
    answer = TestClient(app).get("/mine")
    assert answer.text == own and answer.headers["content-length"] == str(len(own))
