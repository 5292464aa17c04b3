"""Property test: no request, however malformed, makes the API answer 500 (or HTML errors).

Malformed ids (unicode, huge, control characters, '/', '%00'), random parameters, methods,
headers and bodies are sent to every route, with a live version published.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("published")

ADMIN_TOKEN = "fuzz-admin-token"
ROUTES = [
    "/v1/users/{}/recommendations",
    "/v1/items/{}/similar",
    "/v1/items/{}/bought-together",
    "/v1/baskets/recommendations",
    "/v1/popular",
    "/v1/events",
    "/v1/admin/experiments",
    "/v1/admin/experiments/{}",
    "/v1/admin/experiments/{}/stop",
    "/v1/admin/experiments/{}/report",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/{}",
    "/v1/{}/{}",
]
#: Routes that answer HTML by design (the dashboard); all others must answer JSON errors.
HTML_ROUTES = ("/dashboard",)

SPECIAL_IDS = ["/", "%00", "%2F", "..", "%", "%%", "%zz", "\x00", "\n", " ", "?", "#", "a?n=1", "u1", "i1", "\ud7ff", "x" * 5000]
ids = st.one_of(
    st.sampled_from(SPECIAL_IDS),
    st.text(max_size=40),
    st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=5),
    st.text(min_size=250, max_size=600),
)
param_names = st.one_of(st.sampled_from(["n", "model", "category", "exclude", "items", "session_id", "experiment", "token"]), st.text(max_size=10))
param_values = st.one_of(
    st.sampled_from(["", "0", "1", "100", "101", "-1", "1e9", "als", "i1,i2", ",,,", "books", "%00", "\x00"]),
    st.text(max_size=60),
    st.integers().map(str),
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=2000),
    st.sampled_from([b"{}", b"[]", b"null", b'{"type": "click"}', b'[{"type":"click","item_id":"i1","user_id":"u1"}]',
                     b'{"name": "x", "variants": []}', b'{"events": 5}', b"\xff\xfe", b"[" * 5000]),
    st.text(max_size=300).map(str.encode),
)


def encode(value: str, raw: bool) -> str:
    return value if raw else quote(value, safe="")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(ROUTES),
    path_ids=st.lists(ids, min_size=2, max_size=2),
    raw=st.booleans(),
    params=st.lists(st.tuples(param_names, param_values), max_size=4),
    method=st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
    body=bodies,
    authorised=st.booleans(),
    content_type=st.sampled_from([None, "application/json", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded"]),
)
def test_no_request_gets_a_500(
    make_app: Any,
    route: str,
    path_ids: list[str],
    raw: bool,
    params: list[tuple[str, str]],
    method: str,
    body: bytes | None,
    authorised: bool,
    content_type: str | None,
) -> None:
    app = _app(make_app)
    path = route.format(*(encode(i, raw) for i in path_ids[: route.count("{}")]))
    query = urlencode(params)
    url = f"{path}?{query}" if query else path
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if authorised else {}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        response = app.test_client().open(url, method=method, data=body, headers=headers)
    except (ValueError, UnicodeError):
        return  # the test client itself refuses to build this request; no server involved
    assert response.status_code < 500, (method, url, response.status_code, response.get_data(as_text=True)[:500])
    if response.status_code >= 400 and method != "HEAD" and not path.startswith(HTML_ROUTES):
        assert response.mimetype == "application/json", (url, response.get_data(as_text=True)[:200])
        document = response.get_json()
        assert document["error"]["status"] == response.status_code


_APPS: dict[int, Any] = {}


def _app(make_app: Any) -> Any:
    """One app per test run (per fixture instance): building it per example is slow."""
    key = id(make_app)
    if key not in _APPS:
        _APPS.clear()
        _APPS[key] = make_app(admin_token=ADMIN_TOKEN)
    return _APPS[key]
