"""How errors become HTTP answers and log lines: one WARNING line per client error, tracebacks for 5xx.

kserve 0.21's handlers log every error, a 400 included, at ERROR with the full traceback (~2 KB a
request), so a client sending bad requests fills the disk. Here a 4xx is logged as one line at
WARNING (status, method, path, reason, request id) and answered with ``{"error": reason}``; only
5xx (our bugs, not the client's) carry a traceback. FastAPI's own 4xx (422 for a body that does not
match the V2 schema, 404/405 for unknown routes) get the same one line, keeping their bodies.

Two answers kserve does not give:

- ``GET /v1/models/<name>:predict`` matched kserve's model-readiness route and answered 404 "Model
  with name <name>:predict does not exist"; :func:`method_not_allowed_router` answers 405 naming
  the method, with ``Allow: POST``, on every inference path.
- :class:`UnsupportedMediaType` (415) for a V2 body that is neither JSON nor the binary extension.

The request id is the client's ``x-request-id`` header, else a new one; it is sent back in that
header so a client can find its line in the log.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from texinspect.serving.kserve_import import import_kserve

import_kserve()
from kserve.errors import (  # noqa: E402
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
)

log = logging.getLogger("texinspect.serving.http")

REQUEST_ID_HEADER = "x-request-id"
POST_ONLY_PATHS = (
    "/v1/models/{model_name}:predict",
    "/v1/models/{model_name}:explain",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
)
_OTHER_METHODS = ["GET", "PUT", "PATCH", "DELETE"]  # HEAD comes with GET


class UnsupportedMediaType(InvalidInput):
    """The request body's content type is not one the endpoint reads (HTTP 415)."""


class MethodNotAllowed(Exception):
    """An inference path was called with a method other than POST (HTTP 405)."""

    def __init__(self, method: str) -> None:
        super().__init__(f"method {method} is not allowed on this endpoint; send the request with POST")


# exception class -> HTTP status (kserve's mapping, plus the two above); the first match in the MRO wins
STATUS: dict[type[BaseException], int] = {
    UnsupportedMediaType: 415,
    MethodNotAllowed: 405,
    InvalidInput: 400,
    ModelNotFound: 404,
    ModelNotReady: 503,
    ServerNotLive: 503,
    ServerNotReady: 503,
    NotImplementedError: 501,
    UnsupportedProtocol: 501,
    InferenceError: 500,
}
HANDLED = tuple(STATUS)  # errors that already carry their status (the dataplane lets them through)


def status_of(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def request_id(request: Request) -> str:
    """The client's ``x-request-id`` (one word, at most 128 characters: it goes into the log), else a new one."""
    sent = "".join(request.headers.get(REQUEST_ID_HEADER, "").split())[:128]
    return sent or uuid.uuid4().hex[:16]


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def log_error(request: Request, status: int, reason: str, rid: str, exc: BaseException | None = None) -> None:
    """4xx: one WARNING line; 5xx: ERROR with the traceback of ``exc``."""
    line = "%d %s %s: %s [request id %s]"
    args = (status, request.method, request.url.path, one_line(reason), rid)
    if status >= 500:
        log.error(line, *args, exc_info=exc)
    else:
        log.warning(line, *args)


async def kserve_error_handler(request: Request, exc: Exception) -> Response:
    """kserve's errors (and ours, and any other exception): ``{"error": reason}`` with its status."""
    status = status_of(exc)
    rid = request_id(request)
    log_error(request, status, str(exc), rid, exc)
    headers = {REQUEST_ID_HEADER: rid}
    if isinstance(exc, MethodNotAllowed):
        headers["allow"] = "POST"
    known = any(cls in STATUS for cls in type(exc).__mro__)
    message = str(exc) if known else f"{type(exc).__name__} : {exc}"  # kserve's text for the unexpected
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


async def validation_error_handler(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's 422 body, plus the one log line."""
    errors = exc.errors()
    reason = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors[:3])
    rid = request_id(request)
    log_error(request, 422, reason or "request does not match the schema", rid)
    return JSONResponse(
        status_code=422, content={"detail": jsonable_encoder(errors)}, headers={REQUEST_ID_HEADER: rid}
    )


async def http_exception_handler(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's 404/405 for unknown routes and methods, plus the one log line."""
    rid = request_id(request)
    log_error(request, exc.status_code, str(exc.detail), rid, exc)
    headers = {**(getattr(exc, "headers", None) or {}), REQUEST_ID_HEADER: rid}
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def install_handlers(app: FastAPI) -> None:
    """Replace kserve's and FastAPI's exception handlers on ``app`` with the ones above."""
    for cls in (*STATUS, Exception):
        app.add_exception_handler(cls, kserve_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)  # type: ignore[arg-type]


def method_not_allowed_router() -> APIRouter:
    """Routes answering 405 for every method but POST on the inference paths; include it before
    kserve's routes, whose ``GET /v1/models/{model_name}`` would otherwise match ``tile:predict``."""
    router = APIRouter()

    async def refuse(request: Request) -> Any:
        raise MethodNotAllowed(request.method)

    for path in POST_ONLY_PATHS:
        router.add_api_route(path, refuse, methods=_OTHER_METHODS, include_in_schema=False)
    return router
