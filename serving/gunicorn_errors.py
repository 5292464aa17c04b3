"""Gunicorn's own error answers (request line too long 414, headers too large 431, a
malformed request 400...) in the API's JSON shape instead of gunicorn's HTML page.

Gunicorn answers these before the app sees the request, through ``gunicorn.util.write_error``;
:func:`install` replaces that function in the server process (before the workers fork) with
one that writes ``{"error": {"status", "message"}}``. The limits themselves are set by
``recsys serve`` as high as gunicorn allows (request line 8190 bytes), so that every
request within the API's own limits reaches Flask, which answers it in JSON.
"""

from __future__ import annotations

import socket

import orjson

#: Gunicorn's largest allowed request line (``limit_request_line``), in bytes.
MAX_REQUEST_LINE = 8190


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Gunicorn's ``write_error`` with a JSON body (same signature)."""
    from gunicorn import util

    body = orjson.dumps({"error": {"status": status_int, "message": f"{reason}: {mesg}" if mesg else reason}})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    """Make gunicorn write its error answers as JSON (idempotent)."""
    from gunicorn import util

    util.write_error = write_json_error
