"""Admin endpoints for A/B experiments, under ``/v1/admin/``.

Protected by ``RECSYS_ADMIN_TOKEN`` (``Authorization: Bearer <token>``, compared in constant
time). Without the variable the admin API is off and every admin URL answers the same
plain 404 as an unknown URL, so a deployment that never configured a token does not even
reveal that it exists. A wrong or missing token gets 401.

=======  ====================================  ==============================================
method   path                                  answer
=======  ====================================  ==============================================
GET      /v1/admin/experiments                 200 ``{"experiments": [definition + active]}``
POST     /v1/admin/experiments                 201 the stored definition; 400 invalid (body
                                               ``{"name", "variants": {"control": {...},
                                               NAME: {...}}, ...}``, see
                                               ``recsys.abtest.experiments.ExperimentRequest``);
                                               409 a variant model the live version does not
                                               publish (``available`` lists the user models),
                                               name taken, or another experiment still
                                               running on the placement
GET      /v1/admin/experiments/{name}          200 the definition; 404 unknown
DELETE   /v1/admin/experiments/{name}          204 deleted; 404 unknown
POST     /v1/admin/experiments/{name}/stop     200 the stopped definition (routes nobody)
GET      /v1/admin/experiments/{name}/report   200 the report (see ``recsys.abtest.report``)
GET      /v1/admin/audiences/{name}            200 a published propensity audience (meta and
                                               ``users`` best first; ``?limit=`` 1..1000,
                                               default 100, ``?offset=``); 404 unknown
=======  ====================================  ==============================================
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson
import redis
from flask import Blueprint, Response, request

from recsys.abtest.experiments import ExperimentStore, check_published, live_published, parse_request
from recsys.abtest.report import build_report
from recsys.marketing.audiences import NAME as AUDIENCE_NAME
from recsys.marketing.audiences import read_audience
from recsys.errors import ConfigError, RecsysError
from recsys.store.keys import KeyLayout
from serving import services
from serving.errors import NOT_FOUND_MESSAGE, error_response, json_response

MAX_DEFINITION_BYTES = 64 * 1024
AUDIENCE_DEFAULT_LIMIT = 100
AUDIENCE_MAX_LIMIT = 1000
AUDIENCE_MAX_OFFSET = 10_000_000

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")


# ------------------------------------------------------------ shared helpers
def redis_client() -> redis.Redis:
    """This process's Redis client (shared with the rest of the API)."""
    return services().client


def key_layout() -> KeyLayout:
    return services().layout


def invalidate_router() -> None:
    """Make this process's router reload experiments on its next request (other worker
    processes pick the change up within ``RECSYS_ROUTER_REFRESH_SECONDS``)."""
    services().router.invalidate()


def api_error(status: int, message: str, **fields: Any) -> Response:
    """The API's JSON error ``{"error": {"status", "message", ...}}``."""
    return error_response(status, message, **fields)


def admin_token() -> str | None:
    """The configured admin token (``RECSYS_ADMIN_TOKEN``), or None when admin endpoints are off."""
    return services().settings.admin_token or None


def token_matches(candidate: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), expected.encode("utf-8"))


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@bp.before_request
def _require_admin() -> Response | None:
    expected = admin_token()
    if expected is None:
        return api_error(404, NOT_FOUND_MESSAGE)
    if not token_matches(bearer_token(), expected):
        response = api_error(401, "admin endpoints need 'Authorization: Bearer <RECSYS_ADMIN_TOKEN>'")
        response.headers["WWW-Authenticate"] = 'Bearer realm="recsys-admin"'
        return response
    return None


def _store() -> ExperimentStore:
    return ExperimentStore(redis_client(), key_layout())


def _public(experiment: Any, now: float) -> dict[str, Any]:
    return {**experiment.model_dump(mode="json"), "active": experiment.is_active(now)}


def _checked_store() -> ExperimentStore:
    """The store, after marking experiments whose models the live version lacks as broken."""
    store = _store()
    store.mark_broken(live_published(store.client, store.layout))
    return store


def _get_or_404(store: ExperimentStore, name: str) -> Any:
    try:
        return store.get(name)
    except KeyError:
        return None


@bp.get("/experiments")
def list_experiments() -> Response:
    now = time.time()
    return json_response({"experiments": [_public(e, now) for e in _checked_store().list()]})


@bp.post("/experiments")
def create_experiment() -> Response:
    if (request.content_length or 0) > MAX_DEFINITION_BYTES:
        return api_error(413, f"an experiment definition is at most {MAX_DEFINITION_BYTES} bytes")
    body = request.get_data(cache=False)
    if len(body) > MAX_DEFINITION_BYTES:
        return api_error(413, f"an experiment definition is at most {MAX_DEFINITION_BYTES} bytes")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return api_error(400, f"request body is not valid JSON: {error}")
    if not isinstance(document, dict):
        return api_error(400, "expected a JSON object with the experiment definition")
    for server_owned in ("status", "stopped_at", "created_at"):
        if server_owned in document:
            return api_error(400, f"{server_owned}: set by the server, not by the request")
    try:
        experiment = parse_request(document)
    except ConfigError as error:
        return api_error(400, str(error))
    store = _store()
    published = live_published(store.client, store.layout)
    try:
        check_published(experiment, published)
    except RecsysError as error:
        # A well-formed definition the live version cannot serve: a conflict with the
        # server's state (publishing the model resolves it), as a taken name is.
        available = list(published.user_models) if published is not None else []
        return api_error(409, str(error), field="variants", available=available)
    try:
        store.create(experiment)
    except RecsysError as error:
        return api_error(409, str(error))
    invalidate_router()
    response = json_response(_public(experiment, time.time()), status=201)
    response.headers["Location"] = f"{bp.url_prefix}/experiments/{experiment.name}"
    return response


@bp.get("/experiments/<name>")
def get_experiment(name: str) -> Response:
    experiment = _get_or_404(_checked_store(), name)
    if experiment is None:
        return api_error(404, f"no experiment named {name!r}")
    return json_response(_public(experiment, time.time()))


@bp.delete("/experiments/<name>")
def delete_experiment(name: str) -> Response:
    if not _store().delete(name):
        return api_error(404, f"no experiment named {name!r}")
    invalidate_router()
    return Response(status=204)


@bp.post("/experiments/<name>/stop")
def stop_experiment(name: str) -> Response:
    store = _store()
    if _get_or_404(store, name) is None:
        return api_error(404, f"no experiment named {name!r}")
    experiment = store.stop(name)
    invalidate_router()
    return json_response(_public(experiment, time.time()))


@bp.get("/experiments/<name>/report")
def experiment_report(name: str) -> Response:
    store = _store()
    store.mark_broken(live_published(store.client, store.layout))
    experiment = _get_or_404(store, name)
    if experiment is None:
        return api_error(404, f"no experiment named {name!r}")
    return json_response(build_report(store.client, store.layout, experiment))


def _int_param(name: str, default: int, low: int, high: int) -> int | Response:
    values = request.args.getlist(name)
    if not values:
        return default
    raw = values[0]
    if len(values) > 1 or not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not low <= int(raw) <= high:
        return api_error(400, f"{name} must be one integer between {low} and {high}", field=name)
    return int(raw)


@bp.get("/audiences/<name>")
def get_audience(name: str) -> Response:
    """A published audience (``recsys propensity --publish NAME``), paged by limit/offset."""
    unknown = [key for key in request.args if key not in ("limit", "offset")]
    if unknown:
        return api_error(400, f"unknown parameter {unknown[0][:60]!r}; allowed: limit, offset", field=unknown[0][:60])
    limit = _int_param("limit", AUDIENCE_DEFAULT_LIMIT, 1, AUDIENCE_MAX_LIMIT)
    if isinstance(limit, Response):
        return limit
    offset = _int_param("offset", 0, 0, AUDIENCE_MAX_OFFSET)
    if isinstance(offset, Response):
        return offset
    document = read_audience(redis_client(), key_layout(), name, offset, limit) if AUDIENCE_NAME.fullmatch(name) else None
    if document is None:
        return api_error(404, f"no audience named {name[:60]!r}")
    return json_response(document)
