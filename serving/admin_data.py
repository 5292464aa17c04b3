"""Admin endpoints for users' data and live item changes, under ``/v1/admin/``.

Same protection as the other admin endpoints (:mod:`serving.admin`: the admin token; 404
when admin is off, 401 without the token).

=======  ==============================  ===================================================
method   path                            answer
=======  ==============================  ===================================================
DELETE   /v1/admin/users/{user_id}       200 the erasure receipt (see :mod:`recsys.privacy.forget`);
                                         an unknown user is not an error (counts 0)
PATCH    /v1/admin/items/{item_id}       200 receipt; body ``{"in_stock", "price", "hidden"}``
PATCH    /v1/admin/items                 200 receipt; body a JSON array of
                                         ``{"item_id", "in_stock", "price", "hidden"}``,
                                         applied atomically (all or none); 400 names the entry
=======  ==============================  ===================================================

Run folders and the event archive are scrubbed at once when the API knows where they are
(``RECSYS_FORGET_RUNS``, ``RECSYS_FORGET_ARCHIVE``; only readable from the API's host);
otherwise the erasure is queued and the next pipeline run scrubs them.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from recsys.catalog.overlay import apply_updates, parse_updates
from recsys.errors import ConfigError
from recsys.privacy.forget import forget_users
from serving import admin, services
from serving.errors import error_response, json_response

MAX_BODY_BYTES = 2 * 1024 * 1024

bp = Blueprint("admin_data", __name__, url_prefix="/v1/admin")
bp.before_request(admin._require_admin)


def _json_body() -> Any:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ConfigError(f"the request body is at most {MAX_BODY_BYTES} bytes")
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY_BYTES:
        raise ConfigError(f"the request body is at most {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"request body is not valid JSON: {error}") from None


def _folder(name: str) -> str | None:
    value = current_app.config.get(name)
    return str(value) if value else None


@bp.delete("/users/<path:user_id>")
def forget_user(user_id: str) -> Response:
    runs, archive = _folder("FORGET_RUNS"), _folder("FORGET_ARCHIVE")
    state = services()
    try:
        receipt = forget_users(
            state.client, state.layout, [user_id], runs_root=runs, archive_root=archive, disk_known=runs is not None
        )
    except ConfigError as error:
        return error_response(400, str(error))
    return json_response(receipt)


def _patch(document_item: str | None) -> Response:
    state = services()
    try:
        document = _json_body()
        if document_item is not None and not isinstance(document, dict):
            raise ConfigError("expected a JSON object with in_stock, price or hidden")
        if document_item is None and not isinstance(document, list):
            raise ConfigError("expected a JSON array of item updates (or PATCH /v1/admin/items/{item_id})")
        updates = parse_updates(document, item_id=document_item)
    except ConfigError as error:
        return error_response(400, str(error))
    return json_response(apply_updates(state.client, state.layout, updates))


@bp.patch("/items/<path:item_id>")
def patch_item(item_id: str) -> Response:
    return _patch(item_id)


@bp.patch("/items")
def patch_items() -> Response:
    return _patch(None)
