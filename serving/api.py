"""Recommendation endpoints (``/v1``): per user, similar items, bought together, baskets,
popular. Each reads the live version in one Redis round trip (see :mod:`serving.reader`).

Every list entry is ``{"item_id", "score", "title", "category", "price"}`` (bought-together
entries add ``confidence`` and ``lift``); out-of-stock items are left out. Every answer
names the ``model`` and ``version`` that served it and carries a ``recommendation_id``
for events to quote.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import orjson
import redis
from flask import Blueprint, Response, request

from recsys.abtest.experiments import BROKEN, DEFAULT_PLACEMENT, NAME_PATTERN
from recsys.abtest.router import Routing, new_recommendation_id
from recsys.data.ids import FORBIDDEN, text_problem
from serving import Services, services
from serving.errors import JSON_MIMETYPE, ApiError, ServiceUnavailable
from serving.metrics import AB_BROKEN_SERVED, FALLBACKS, ROUTER_ERRORS, endpoint_label
from serving.reader import ListResult, Meta, NoLiveVersion

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

_CONTROL = FORBIDDEN  # control characters, line breaks and lone surrogates
_INTEGER = re.compile(r"[0-9]{1,6}")
PLACEMENT = re.compile(NAME_PATTERN.strip("^$"))
MAX_PARAM_LENGTH = 64  # model names, categories are short; ids use max_id_length
SHOWN = 60  # characters of a bad value quoted back in an error message


# ---------------------------------------------------------------------------- parameters
def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN else value[:SHOWN] + "...")


def _params(allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters, refusing unknown and repeated ones (a typo must not pass)."""
    args = request.args
    out: dict[str, str] = {}
    for key in args:
        if key not in allowed:
            raise ApiError(400, f"unknown parameter {_shown(key)}; allowed: {', '.join(allowed)}", field=key[:SHOWN])
        values = args.getlist(key)
        if len(values) > 1:
            raise ApiError(400, f"parameter {key!r} given {len(values)} times", field=key)
        out[key] = values[0]
    return out


def _identifier(value: str, name: str, settings: Any) -> str:
    """A user, item or session id, by the one id rule of :mod:`recsys.data.ids`."""
    problem = text_problem(value, settings.max_id_length)
    if problem is not None:
        raise ApiError(400, f"{name} {problem}", field=name)
    return value


def _count(params: dict[str, str], settings: Any) -> int:
    """``n``: an integer in 1..max_n (default default_n)."""
    raw = params.get("n")
    if raw is None:
        return int(settings.default_n)
    if not _INTEGER.fullmatch(raw) or not 1 <= int(raw) <= settings.max_n:
        raise ApiError(400, f"n must be an integer between 1 and {settings.max_n}, got {_shown(raw)}", field="n")
    return int(raw)


def _name(params: dict[str, str], key: str, pattern: re.Pattern[str] | None = None) -> str | None:
    """A short name parameter (model, category, placement); None when absent."""
    raw = params.get(key)
    if raw is None:
        return None
    if not raw or len(raw) > MAX_PARAM_LENGTH * 4 or _CONTROL.search(raw):
        raise ApiError(400, f"{key} must be 1..{MAX_PARAM_LENGTH * 4} printable characters", field=key)
    if pattern is not None and not pattern.fullmatch(raw):
        raise ApiError(400, f"{key} must match {pattern.pattern}, got {_shown(raw)}", field=key)
    return raw


def _id_list(params: dict[str, str], key: str, limit: int, settings: Any) -> list[str]:
    """A comma-separated id list, duplicates removed (order kept), at most ``limit`` ids."""
    raw = params.get(key)
    if not raw:
        return []
    ids = [part for part in raw.split(",") if part]
    if len(ids) > limit:
        raise ApiError(400, f"{key} holds {len(ids)} ids, at most {limit} allowed", field=key)
    for value in ids:
        _identifier(value, key, settings)
    return list(dict.fromkeys(ids))


def _category(meta: Meta, category: str) -> str:
    """``category`` when the version knows it; 404 naming the known ones otherwise (a
    well-formed name of a list that is not published, like an unknown model)."""
    if category in meta.categories:
        return category
    if not meta.categories:
        raise ApiError(404, "this version has no per-category lists", field="category")
    raise ApiError(
        404,
        f"unknown category {_shown(category)}; available: {', '.join(meta.category_list[:100])}",
        field="category",
        available=list(meta.category_list),
    )


# ---------------------------------------------------------------------------- answers
def _answer(result: ListResult, document: dict[str, Any]) -> Response:
    """``document`` plus model, version, recommendation id and the entries, which the
    script already encoded as JSON (spliced in, not decoded and encoded again)."""
    document["model"] = result.source
    document["version"] = result.version
    document["recommendation_id"] = new_recommendation_id()
    head = orjson.dumps(document)
    return Response(head[:-1] + b',"items":' + result.items_json + b"}", mimetype=JSON_MIMETYPE)


def _read(call: Any) -> ListResult:
    """Run a reader call, turning "nothing published" and Redis failures into 503."""
    try:
        return call()
    except NoLiveVersion as error:
        raise ServiceUnavailable(str(error)) from None


def _routing(state: Services, user_id: str, session_id: str | None, placement: str) -> Routing | None:
    """The A/B routing of this request; a failing router never fails the request."""
    try:
        return state.router.route(user_id, session_id, placement=placement)
    except redis.RedisError:
        return None  # the list read reports the outage
    except Exception:
        ROUTER_ERRORS.inc()
        log.warning("A/B routing failed; serving the default model", exc_info=True)
        return None


# ---------------------------------------------------------------------------- endpoints
@bp.get("/v1/users/<path:user_id>/recommendations")
def user_recommendations(user_id: str) -> Response:
    """Top-N for a user: explicit model > A/B variant (of the experiment on ``placement``) >
    the version's default model. A broken experiment's units get the default model,
    labelled ``variant: broken``."""
    state = services()
    settings = state.settings
    params = _params(("n", "model", "category", "exclude", "session_id", "placement"))
    _identifier(user_id, "user_id", settings)
    n = _count(params, settings)
    explicit = _name(params, "model")
    category = _name(params, "category")
    exclude = _id_list(params, "exclude", settings.max_exclude, settings)
    session_id = params.get("session_id") or None
    if session_id is not None:
        _identifier(session_id, "session_id", settings)

    placement = _name(params, "placement", pattern=PLACEMENT) or DEFAULT_PLACEMENT

    routing = None if explicit is not None else _routing(state, user_id, session_id, placement)
    options = routing.options if routing is not None and not routing.broken else {}
    missing: list[str] = []

    def model(meta: Meta) -> str:
        if category is not None:
            _category_if_listed(meta, category)
        if explicit is not None:
            if explicit not in meta.user_models:
                raise ApiError(
                    404,
                    f"model {_shown(explicit)} is not published; available: {', '.join(meta.user_models)}",
                    field="model",
                    available=list(meta.user_models),
                )
            return explicit
        if routing is not None:
            missing[:] = routing.missing(meta.user_models)
            if not routing.broken and not missing:
                return routing.model
        return meta.default_model or ""

    result = _read(
        lambda: state.reader.user(
            user_id,
            n,
            model,
            category=category,
            exclude=exclude,
            exclude_recent=bool(options.get("exclude_recent", True)),
            fallback=options.get("fallback", "popular") != "none",
        )
    )
    document: dict[str, Any] = {"user_id": user_id}
    if result.fallback == "popular":
        FALLBACKS.labels(endpoint_label(), "unknown_user").inc()
    elif result.fallback == "segment":
        FALLBACKS.labels(endpoint_label(), "segment").inc()
    elif result.fallback == "top_up":
        FALLBACKS.labels(endpoint_label(), "top_up").inc()
    document["fallback"] = result.fallback if result.fallback in ("popular", "segment") else None
    document["topped_up"] = result.fallback == "top_up"
    if result.segment is not None:
        document["segment"] = result.segment_name
    if routing is not None:
        broken = routing.broken or bool(missing)
        document["experiment"] = routing.experiment
        document["variant"] = BROKEN if broken else routing.variant
        if broken:
            AB_BROKEN_SERVED.labels(routing.experiment).inc()
        if missing and not routing.broken:
            try:
                state.router.mark_broken(routing.experiment, result.version, missing)
            except redis.RedisError:
                log.warning("could not mark experiment %s broken", routing.experiment, exc_info=True)
    return _answer(result, document)


def _category_if_listed(meta: Meta, category: str) -> None:
    """Refuse a category the version does not know (any goes when it lists none)."""
    if meta.categories and category not in meta.categories:
        _category(meta, category)


@bp.get("/v1/items/<path:item_id>/similar")
def similar_items(item_id: str) -> Response:
    """Similar items: the first model (default order, or ``model``) with a list for the item."""
    state = services()
    settings = state.settings
    params = _params(("n", "model"))
    _identifier(item_id, "item_id", settings)
    n = _count(params, settings)
    explicit = _name(params, "model")

    def models(meta: Meta) -> list[str]:
        if explicit is None:
            return list(meta.similar_order)
        if explicit not in meta.similar_models:
            raise ApiError(
                404,
                f"model {_shown(explicit)} has no similar-items lists; available: {', '.join(meta.similar_models)}",
                field="model",
                available=list(meta.similar_models),
            )
        return [explicit]

    result = _read(lambda: state.reader.similar(item_id, n, models))
    if result.known != "1":
        raise ApiError(404, f"unknown item {_shown(item_id)}", field="item_id")
    return _answer(result, {"item_id": item_id})


@bp.get("/v1/items/<path:item_id>/bought-together")
def bought_together(item_id: str) -> Response:
    """Association-rule entries with confidence and lift; 200 with [] for an item without rules."""
    state = services()
    settings = state.settings
    params = _params(("n",))
    _identifier(item_id, "item_id", settings)
    n = _count(params, settings)
    result = _read(lambda: state.reader.together(item_id, n))
    if result.known != "1":
        raise ApiError(404, f"unknown item {_shown(item_id)}", field="item_id")
    return _answer(result, {"item_id": item_id})


@bp.get("/v1/baskets/recommendations")
def basket_recommendations() -> Response:
    """What to add to a basket: bought-together lists of its items merged (best confidence)."""
    state = services()
    settings = state.settings
    params = _params(("items", "n"))
    basket = _id_list(params, "items", settings.max_basket_items, settings)
    if not basket:
        raise ApiError(400, "items must list at least one item id (items=ID,ID)", field="items")
    n = _count(params, settings)
    result = _read(lambda: state.reader.basket(basket, n))
    unknown = [item for item, flag in zip(basket, result.known) if flag != "1"]
    if result.fallback == "popular":
        FALLBACKS.labels(endpoint_label(), "empty_basket").inc()
    document = {"basket": basket, "unknown_items": unknown, "fallback": result.fallback}
    return _answer(result, document)


@bp.get("/v1/popular")
def popular_items() -> Response:
    """Most popular items overall or of one category."""
    state = services()
    settings = state.settings
    params = _params(("n", "category"))
    n = _count(params, settings)
    category = _name(params, "category")
    result = _read(lambda: state.reader.popular(n, lambda meta: "" if category is None else _category(meta, category)))
    return _answer(result, {"category": category})
