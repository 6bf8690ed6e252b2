"""Errors as JSON: a ConsoleError's message (written for the person using the console) with a 4xx status.

The body has OpenAI's error shape, `{"error": {"message", "type", "code"}}`, on every route, so the `openai`
client and plain HTTP callers read the same thing.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import AuthError, ConsoleError, Forbidden, JobError, NotFound, RunError


def status_of(error: ConsoleError) -> int:
    """401 unauthenticated, 403 for a role that may not, 404 for what does not exist, 409 for an action the
    job's or evaluation's state refuses, 400 for any other bad input."""
    if isinstance(error, AuthError):
        return 401
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, JobError | RunError):
        return 409
    return 400


def error_body(status: int, kind: str, message: str, **extra: object) -> dict:
    return {"error": {"message": message, "type": kind, "code": status, **extra}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConsoleError)
    async def console_error(request: Request, error: ConsoleError) -> JSONResponse:
        status = status_of(error)
        return JSONResponse(error_body(status, type(error).__name__, str(error)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in item['loc'] if part != 'body')}: {item['msg']}" for item in error.errors()
        ]
        message = "The request is not valid: " + "; ".join(problems)
        return JSONResponse(error_body(422, "InvalidRequest", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "NotFound" if error.status_code == 404 else "HTTPError"
        return JSONResponse(
            error_body(error.status_code, kind, str(error.detail)), status_code=error.status_code, headers=error.headers
        )
