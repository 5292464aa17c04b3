"""What the HTML pages (the dashboard, the console) share: headers that keep them to
themselves, and the admin login cookie.

A page logs in with the admin token posted by its form; the cookie then holds an HMAC of
the token for that page's purpose (a stolen cookie is not the API token), HttpOnly,
SameSite=Strict, scoped to the page's path. No token ever travels in a URL.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Response, request

#: Pages load nothing from elsewhere and run no script.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
COOKIE_MAX_AGE = 8 * 3600
#: The largest login form body read (a token and little else).
MAX_LOGIN_BYTES = 4096


def signed(token: str, purpose: bytes) -> str:
    """An HMAC of the admin token for one purpose (a cookie, a CSRF field)."""
    return hmac.new(token.encode("utf-8"), purpose, hashlib.sha256).hexdigest()


def secure(response: Response) -> Response:
    """No framing, no caching, no sniffing, no referrer; the strict CSP above."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def set_login_cookie(response: Response, name: str, value: str, path: str) -> Response:
    response.set_cookie(
        name, value, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Strict", secure=request.is_secure, path=path
    )
    return secure(response)
