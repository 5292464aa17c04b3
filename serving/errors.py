"""JSON errors for every blueprint: ``raise ApiError(400, "...", field="n")`` and forget it.

Every error response has one shape::

    {"error": {"status": 400, "message": "n must be an integer between 1 and 100", "field": "n"}}

:func:`register_error_handlers` makes Flask render ``ApiError``, HTTP errors raised by
Werkzeug (unknown route 404, wrong method 405, body too large 413...), Redis failures
(503) and, as the very last resort, any other exception (500) in that shape, never as an
HTML page or a traceback.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from recsys.data.ids import FORBIDDEN, utf8_problem
from recsys.errors import StoreError

log = logging.getLogger(__name__)

JSON_MIMETYPE = "application/json"
#: The message of every 404 for a URL that is not served (unknown, or a disabled part).
NOT_FOUND_MESSAGE = "no such endpoint; see /openapi.json"


class ApiError(Exception):
    """An error meant for the client: HTTP ``status``, a ``message`` naming the culprit,
    and optional extra fields for the JSON body (e.g. ``field="n"``, ``available=[...]``).

    ``headers`` (e.g. ``{"WWW-Authenticate": "Bearer"}``) are added to the response.
    """

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def to_response(self) -> Response:
        response = error_response(self.status, self.message, **self.fields)
        response.headers.update(self.headers)
        return response


class ServiceUnavailable(ApiError):
    """503: Redis unreachable, too slow, or nothing published yet."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(503, message, headers={"Retry-After": "1"}, **fields)


def json_response(document: Any, status: int = 200) -> Response:
    """A response holding ``document`` encoded with orjson (numpy-free, non-str keys allowed)."""
    return Response(orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS), status=status, mimetype=JSON_MIMETYPE)


def error_response(status: int, message: str, **fields: Any) -> Response:
    """The JSON error body ``{"error": {"status", "message", **fields}}`` with that status."""
    return json_response({"error": {"status": status, "message": message, **fields}}, status)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        message = NOT_FOUND_MESSAGE
    elif status == 405:
        allowed = sorted(error.valid_methods or []) if hasattr(error, "valid_methods") else []
        message = f"method not allowed; allowed: {', '.join(allowed)}" if allowed else "method not allowed"
    else:
        message = error.description or error.name
    response = error_response(status, message)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _redis_error(error: Exception) -> Response:
    if isinstance(error, redis.TimeoutError):
        message = "Redis did not answer in time; retry shortly"
    elif isinstance(error, redis.ConnectionError):
        message = "Redis is unreachable; retry shortly"
    else:
        log.warning("Redis error: %s", error)
        message = f"Redis error: {error}"
    return ServiceUnavailable(message).to_response()


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal error")


RETRY_AFTER_SECONDS = "1"
#: Path prefixes whose next segment is an id, and the id's name in error messages.
PATH_ID_FIELDS = (
    ("/v1/users/", "user_id"),
    ("/v1/items/", "item_id"),
    ("/v1/admin/experiments/", "name"),
    ("/v1/admin/users/", "user_id"),
    ("/v1/admin/items/", "item_id"),
)


def retry_after_on_503(response: Response) -> Response:
    """Every 503 says when to retry (``Retry-After``), whichever part of the API made it."""
    if response.status_code == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def check_path(path_info: str | None = None) -> Response | None:
    """400 for a path that is not valid UTF-8 or holds control characters or line breaks.

    Werkzeug would decode invalid bytes to U+FFFD (a different id) and route a newline
    nowhere (404); neither is what the client sent. The path is read as sent: the raw
    request URI (gunicorn's ``RAW_URI``, else ``REQUEST_URI``) percent-decoded to bytes,
    else ``PATH_INFO`` (the raw bytes as latin-1, the WSGI rule)."""
    if path_info is None:
        environ = request.environ
        uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if uri:
            raw = unquote_to_bytes(uri.split("?", 1)[0].split("#", 1)[0])
        else:
            raw = environ.get("PATH_INFO", "").encode("latin-1", "replace")
    else:
        raw = path_info.encode("latin-1", "replace")
    problem = utf8_problem(raw)
    if problem is None and FORBIDDEN.search(raw.decode("utf-8")):
        problem = "contains control characters or line breaks"
    if problem is None:
        return None
    text = raw.decode("utf-8", "replace")
    field = next((name for prefix, name in PATH_ID_FIELDS if text.startswith(prefix)), "path")
    return error_response(400, f"{field} is {problem}" if problem.startswith("not") else f"{field} {problem}", field=field)


def register_error_handlers(app: Flask) -> None:
    """Render every error of ``app`` as JSON (see the module docstring)."""
    app.register_error_handler(ApiError, lambda error: error.to_response())
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(redis.RedisError, _redis_error)
    app.register_error_handler(StoreError, lambda error: ServiceUnavailable(str(error)).to_response())
    app.register_error_handler(Exception, _unexpected)
