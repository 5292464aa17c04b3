"""``GET /openapi.json``: the OpenAPI 3.1 description of every endpoint of the app.

The document holds the paths of the routes the app really has (``app.url_map``): a path
described here whose blueprint is not registered is left out, and a test fails when a
route has no description. A blueprint module may describe its own routes with a
module-level ``OPENAPI_PATHS`` dict (OpenAPI path items keyed by ``/path/{param}``), which
takes precedence over the descriptions below.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from recsys import __version__
from recsys.data.schema import EVENT_TYPES
from recsys.abtest.experiments import BROKEN, CONTROL, FALLBACKS, MAX_DURATION, MAX_START, MAX_VARIANTS, MAX_WEIGHT, NAME_PATTERN
from recsys.abtest.events import MAX_BATCH_EVENTS, MAX_FUTURE_SECONDS, MAX_JSON_INTEGER, MIN_TIMESTAMP, TIMESTAMP_PATTERN
from recsys.data.ids import MAX_ID_LENGTH
from serving.admin import AUDIENCE_MAX_LIMIT, AUDIENCE_MAX_OFFSET
from serving.errors import json_response

bp = Blueprint("openapi", __name__)

_RULE_PARAM = re.compile(r"<(?:[a-z]+:)?(\w+)>")
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
_CACHE = "recsys.openapi"


def openapi_path(rule: str) -> str:
    """``/v1/items/<path:item_id>/similar`` -> ``/v1/items/{item_id}/similar``."""
    return _RULE_PARAM.sub(r"{\1}", rule)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _param(name: str, where: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "description": description, "schema": schema}


# The one id rule (recsys.data.ids) as a pattern: no control characters, line breaks or
# surrounding whitespace, 1..MAX_ID_LENGTH characters. ``_ID_IN_LIST`` also has no comma.
_BAD = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_EDGE = rf"[^\s{_BAD}]"
_ID_CORE = rf"{_EDGE}(?:[^{_BAD}]{{0,{MAX_ID_LENGTH - 2}}}{_EDGE})?"
_EDGE_IN_LIST = rf"[^,\s{_BAD}]"
_ID_IN_LIST = rf"{_EDGE_IN_LIST}(?:[^,{_BAD}]{{0,{MAX_ID_LENGTH - 2}}}{_EDGE_IN_LIST})?"
ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": f"^{_ID_CORE}$"}
OPTIONAL_ID_SCHEMA = {"type": "string", "maxLength": MAX_ID_LENGTH, "pattern": f"^(?:{_ID_CORE})?$"}
NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": f"^[^{_BAD}]+$"}
ENTITY_NAME = {"type": "string", "pattern": NAME_PATTERN}


def id_list_schema(most: int, required: bool) -> dict[str, Any]:
    """Comma-separated ids, at most ``most`` of them (empty parts are skipped by the API)."""
    head = f"(?:{_ID_IN_LIST})" + ("" if required else "?")
    return {"type": "string", "pattern": f"^,*{head}(?:,(?:{_ID_IN_LIST})?){{0,{most - 1}}}$"}


N_PARAM = _param("n", "query", "List length (default RECSYS_DEFAULT_N, at most RECSYS_MAX_N).", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10})
BAD_REQUEST = _error("Invalid parameter (the message and `field` name it).")
UNAVAILABLE = _error("Redis unreachable or too slow, or no version published yet.")
NOT_FOUND = _error("Unknown item.")
#: Every path parameter is checked before routing (serving.errors.check_path).
BAD_PATH = _error("Path not valid UTF-8 or with control characters or line breaks (`field` names the parameter).")
UNPUBLISHED = "a well-formed name the live version does not publish (`available` lists the published ones)"
# Optional event fields: null is the same as leaving the field out.
# Whole numbers as every JSON parser holds them exactly (doubles: up to 2**53 - 1), so that
# 42 and 42.0, the same number to JSON Schema, are the same id "42" (larger ids: strings).
_NULLABLE = {"type": ["string", "integer", "null"], "minimum": -MAX_JSON_INTEGER, "maximum": MAX_JSON_INTEGER}
# Event ids may be whole numbers too (recsys.abtest.events._check_id): 42 is stored as "42".
_EVENT_ID = {**ID_SCHEMA, **_NULLABLE, "type": ["string", "integer"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "the parameter at fault"},
                    "available": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": True,
            }
        },
    },
    "Entry": {
        "type": "object",
        "required": ["item_id", "score", "title", "category", "price"],
        "properties": {
            "item_id": {"type": "string"},
            "score": {"type": ["number", "null"]},
            "title": {"type": ["string", "null"]},
            "category": {"type": ["string", "null"]},
            "price": {"type": ["number", "null"]},
        },
    },
    "Reason": {
        "description": "Why a user-list entry is recommended (docs/api.md)",
        "oneOf": [
            {
                "type": "object",
                "required": ["type", "item_id", "title"],
                "properties": {
                    "type": {"const": "because"},
                    "item_id": {"type": "string", "description": "the item of the user's history that contributes most to the score"},
                    "title": {"type": ["string", "null"], "description": "its catalogue title (null: no catalogue entry)"},
                },
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["type", "category"],
                "properties": {
                    "type": {"enum": ["popular", "trending"]},
                    "category": {"type": ["string", "null"], "description": "the category the popularity is counted in (the request's), null overall"},
                    "segment": {"type": "string", "description": "present for entries of the user's segment list: the segment's name"},
                },
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["similar_users", "personalized"]}},
                "additionalProperties": False,
            },
        ],
    },
    "UserEntry": {
        "allOf": [_ref("Entry"), {"type": "object", "required": ["reason"], "properties": {"reason": _ref("Reason")}}]
    },
    "RuleEntry": {
        "allOf": [
            _ref("Entry"),
            {
                "type": "object",
                "required": ["confidence", "lift"],
                "properties": {
                    "confidence": {"type": ["number", "null"], "description": "P(item | basket item)"},
                    "lift": {"type": ["number", "null"], "description": "confidence / P(item)"},
                },
            },
        ]
    },
    "ListAnswer": {
        "type": "object",
        "required": ["model", "version", "recommendation_id", "items"],
        "properties": {
            "model": {"type": "string", "description": "model or list that served (popular or segment on fallback)"},
            "version": {"type": "string", "description": "published version read"},
            "recommendation_id": {"type": "string", "description": "quote it in events about this list"},
            "items": {"type": "array", "items": _ref("Entry")},
        },
    },
    "UserRecommendations": {
        "allOf": [
            _ref("ListAnswer"),
            {
                "type": "object",
                "required": ["user_id", "fallback", "topped_up"],
                "properties": {
                    "user_id": {"type": "string"},
                    "fallback": {
                        "type": ["string", "null"],
                        "enum": ["popular", "segment", None],
                        "description": "popular: unknown user; segment: known user without a list of the model, "
                        "served the popular list of their customer segment",
                    },
                    "topped_up": {"type": "boolean", "description": "the list was filled up from the segment or popular list"},
                    "segment": {
                        "type": "string",
                        "description": "present when the user's segment list was used (fallback or top-up): the segment's name",
                    },
                    "experiment": {"type": "string", "description": "present while an A/B experiment routes this user"},
                    "variant": {"type": "string", "description": f"the user's variant; {BROKEN!r} when the experiment is broken (default model served)"},
                    "items": {"type": "array", "items": _ref("UserEntry")},
                },
            },
        ]
    },
    "ItemList": {
        "allOf": [_ref("ListAnswer"), {"type": "object", "required": ["item_id"], "properties": {"item_id": {"type": "string"}}}]
    },
    "RuleList": {
        "allOf": [
            _ref("ListAnswer"),
            {
                "type": "object",
                "required": ["item_id"],
                "properties": {"item_id": {"type": "string"}, "items": {"type": "array", "items": _ref("RuleEntry")}},
            },
        ]
    },
    "BasketRecommendations": {
        "allOf": [
            _ref("ListAnswer"),
            {
                "type": "object",
                "required": ["basket", "unknown_items", "fallback"],
                "properties": {
                    "basket": {"type": "array", "items": {"type": "string"}},
                    "unknown_items": {"type": "array", "items": {"type": "string"}},
                    "fallback": {"type": ["string", "null"], "enum": ["popular", None]},
                    "items": {"type": "array", "items": {"anyOf": [_ref("RuleEntry"), _ref("Entry")]}},
                },
            },
        ]
    },
    "PopularList": {
        "allOf": [_ref("ListAnswer"), {"type": "object", "properties": {"category": {"type": ["string", "null"]}}}]
    },
    "Event": {
        "type": "object",
        "required": ["type", "item_id"],
        "properties": {
            "type": {"type": "string", "enum": list(EVENT_TYPES), "description": "or a shop name mapped by RECSYS_EVENT_TYPES"},
            "user_id": {**ID_SCHEMA, **_NULLABLE},
            "session_id": {**ID_SCHEMA, **_NULLABLE},
            "item_id": _EVENT_ID,
            "value": {"type": ["number", "null"], "minimum": 0, "description": "revenue or quantity (>= 0), or a rating (0..10)"},
            "timestamp": {
                "type": ["number", "string", "null"], "minimum": MIN_TIMESTAMP, "pattern": TIMESTAMP_PATTERN,
                "description": (
                    "unix seconds from 2000-01-01 (a number, or a string of digits), or an ISO-8601 date or "
                    "date-time (no zone: UTC) from 2000-01-01T00:00Z; default (and null) the time of arrival. "
                    f"A time more than {MAX_FUTURE_SECONDS:.0f} s ahead of the server's clock is replaced by the "
                    "time of arrival (counted in `adjusted`)"
                ),
            },
            "recommendation_id": {**_NULLABLE, "minLength": 1, "maxLength": 64, "pattern": f"^{_ID_CORE}$"},
            "event_id": {
                **_NULLABLE, "minLength": 1, "maxLength": 128, "pattern": f"^{_ID_CORE}$",
                "description": "the client's id of this event: an event whose id was stored before is not stored again",
            },
        },
        "additionalProperties": False,
        # user_id or session_id, not null
        "anyOf": [
            {"required": ["user_id"], "properties": {"user_id": {"type": ["string", "integer"]}}},
            {"required": ["session_id"], "properties": {"session_id": {"type": ["string", "integer"]}}},
        ],
        # a rating has a value of 0..10
        "if": {"required": ["type"], "properties": {"type": {"const": "rating"}}},
        "then": {"required": ["value"], "properties": {"value": {"type": "number", "maximum": 10}}},
        "description": "user_id or session_id is required; an optional field that is null counts as left out",
    },
    "Variant": {
        "type": "object",
        "description": "One arm of an experiment; its name is its key in `variants`.",
        "required": ["model"],
        "properties": {
            "model": {**ENTITY_NAME, "description": "a user model of the live version"},
            "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WEIGHT, "default": 1, "description": "relative share of the units"},
            "options": {
                "type": "object",
                "properties": {
                    "exclude_recent": {"type": "boolean", "default": True, "description": "leave out items the user just interacted with"},
                    "fallback": {"enum": list(FALLBACKS), "default": "popular", "description": "none: no popular list for users without one"},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "Experiment": {
        "type": "object",
        "description": (
            f"`variants` maps each variant's name to its definition and holds the control arm under `{CONTROL}`: "
            "names are unique and the control is a variant by construction. The experiment runs from `start` for "
            "`duration` seconds (null or absent: until stopped). Variants are stored control first, then by name."
        ),
        "required": ["name", "variants"],
        "properties": {
            "name": ENTITY_NAME,
            "placement": {**ENTITY_NAME, "default": "default", "description": "one running experiment per placement"},
            "variants": {
                "type": "object",
                "required": [CONTROL],
                "minProperties": 2,
                "maxProperties": MAX_VARIANTS,
                "propertyNames": {"pattern": NAME_PATTERN, "not": {"const": BROKEN}},
                "additionalProperties": _ref("Variant"),
            },
            "salt": {"type": "string", "minLength": 1, "maxLength": 64, "description": "default random; the same salt gives the same split"},
            "unit": {"type": "string", "enum": ["user", "session"], "default": "user"},
            "start": {"type": "number", "minimum": 0, "maximum": MAX_START, "description": "unix seconds; default now"},
            "duration": {"type": ["number", "null"], "minimum": 1, "maximum": MAX_DURATION, "description": "seconds from start; default until stopped"},
            "description": {"type": "string", "maxLength": 500},
        },
        "additionalProperties": False,
    },
    "StoredVariant": {
        "type": "object",
        "required": ["name", "model", "weight", "options"],
        "properties": {
            "name": {"type": "string"},
            "model": {"type": "string"},
            "weight": {"type": "number"},
            "options": {"type": "object"},
        },
    },
}

SCHEMAS["StoredExperiment"] = {
    "type": "object",
    "description": (
        "An experiment as stored: the definition and what the server keeps about it. `variants` is in "
        "assignment order, `control` names the control arm and `end` is start plus duration."
    ),
    "required": ["name", "placement", "variants", "control", "salt", "unit", "start", "end", "status", "created_at", "active"],
    "properties": {
        "name": {"type": "string"},
        "placement": {"type": "string"},
        "variants": {"type": "array", "items": _ref("StoredVariant")},
        "control": {"type": "string"},
        "salt": {"type": "string"},
        "unit": {"type": "string", "enum": ["user", "session"]},
        "start": {"type": "number"},
        "end": {"type": ["number", "null"]},
        "description": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "stopped"]},
        "created_at": {"type": "number"},
        "stopped_at": {"type": ["number", "null"]},
        "broken": {"type": ["string", "null"], "description": "why it is broken (a variant model is not published)"},
        "broken_at": {"type": ["number", "null"]},
        "active": {"type": "boolean"},
    },
}

API_PATHS: dict[str, Any] = {
    "/v1/users/{user_id}/recommendations": {
        "get": {
            "summary": "Top-N recommendations for a user",
            "description": (
                "Model: `model` when given, else the user's A/B variant, else the version's default model. "
                "Unknown users get the popular list (of `category`) with `fallback: popular`. When the version "
                "has customer segments (`[segments]`), a user of a segment without a list of the model gets "
                "the segment's popular list with `fallback: segment` and `segment` (its name). Items in `exclude` "
                "and items the user just interacted with (events) are left out; lists short of `n` after "
                "filtering are filled up from the segment's list, then the popular list."
            ),
            "operationId": "userRecommendations",
            "parameters": [
                _param("user_id", "path", "User id.", ID_SCHEMA),
                N_PARAM,
                _param("model", "query", "A published user model (404 lists the available ones).", NAME_SCHEMA),
                _param("category", "query", "Keep only items of this catalogue category (404 lists the known ones).", NAME_SCHEMA),
                _param("exclude", "query", "Comma-separated item ids to leave out (at most 100).", id_list_schema(100, False)),
                _param("session_id", "query", "Session id, for experiments randomised by session.", OPTIONAL_ID_SCHEMA),
                _param("placement", "query", "Where the list is shown (home, product...): the experiment running there routes the user.", ENTITY_NAME),
            ],
            "responses": {
                "200": _json(_ref("UserRecommendations"), "The list."),
                "400": BAD_REQUEST,
                "404": _error(f"`model` or `category` is {UNPUBLISHED}."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/items/{item_id}/similar": {
        "get": {
            "summary": "Items similar to an item",
            "description": "Collaborative lists first; content-based lists cover items without interactions.",
            "operationId": "similarItems",
            "parameters": [
                _param("item_id", "path", "Item id.", ID_SCHEMA),
                N_PARAM,
                _param("model", "query", "A model with published similar-items lists.", NAME_SCHEMA),
            ],
            "responses": {
                "200": _json(_ref("ItemList"), "The list."),
                "400": BAD_REQUEST,
                "404": _error(f"Unknown item, or `model` is {UNPUBLISHED} as similar-items lists."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/items/{item_id}/bought-together": {
        "get": {
            "summary": "Items bought together with an item (association rules)",
            "operationId": "boughtTogether",
            "parameters": [_param("item_id", "path", "Item id.", ID_SCHEMA), N_PARAM],
            "responses": {
                "200": _json(_ref("RuleList"), "The list (empty for a known item without rules)."),
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/baskets/recommendations": {
        "get": {
            "summary": "What to add to a basket",
            "description": (
                "The basket items' bought-together lists merged (best confidence per candidate, basket items "
                "left out); the popular list with `fallback: popular` when no rule applies."
            ),
            "operationId": "basketRecommendations",
            "parameters": [
                _param("items", "query", "Comma-separated item ids of the basket (1..50).", id_list_schema(50, True), required=True),
                N_PARAM,
            ],
            "responses": {
                "200": _json(_ref("BasketRecommendations"), "The list."),
                "400": BAD_REQUEST,
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/popular": {
        "get": {
            "summary": "Most popular items, overall or of a category",
            "operationId": "popularItems",
            "parameters": [N_PARAM, _param("category", "query", "A catalogue category.", NAME_SCHEMA)],
            "responses": {
                "200": _json(_ref("PopularList"), "The list."),
                "400": BAD_REQUEST,
                "404": _error(f"`category` is {UNPUBLISHED}."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process answers",
            "operationId": "healthz",
            "responses": {"200": _json({"type": "object", "properties": {"status": {"const": "ok"}}}, "Alive.")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: Redis reachable and a live version published",
            "operationId": "readyz",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "status": {"const": "ready"},
                            "version": {"type": "string"},
                            "default_model": {"type": ["string", "null"]},
                            "user_models": {"type": "array", "items": {"type": "string"}},
                            "similar_models": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "Ready.",
                ),
                "503": UNAVAILABLE,
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (all worker processes)",
            "operationId": "metrics",
            "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
        }
    },
}

SCHEMAS["Audience"] = {
    "type": "object",
    "required": ["name", "target", "horizon_days", "cutoff", "auc", "created_at", "size", "offset", "limit", "users"],
    "properties": {
        "name": {"type": "string"},
        "target": {"type": "string", "description": "category=NAME, item=ID or title=WORD"},
        "horizon_days": {"type": "number"},
        "k": {"type": "integer", "description": "audience size asked for"},
        "cutoff": {"type": "string", "description": "when the customers were scored (end of the log, ISO time)"},
        "cutoffs": {"type": "object", "description": "training and evaluation cut-offs"},
        "auc": {"type": ["number", "null"], "description": "the model's AUC at the evaluation cut-off"},
        "baseline_auc": {"type": ["number", "null"]},
        "created_at": {"type": "number", "description": "publish time (unix s)"},
        "size": {"type": "integer", "description": "customers in the audience"},
        "offset": {"type": "integer"},
        "limit": {"type": "integer"},
        "users": {
            "type": "array",
            "description": "best score first, from rank `offset`",
            "items": {
                "type": "object",
                "required": ["user_id", "score"],
                "properties": {"user_id": {"type": "string"}, "score": {"type": "number"}},
            },
        },
    },
}

_ADMIN_AUTH = [{"bearerAuth": []}]
_ADMIN_ERRORS = {
    "401": _error("Missing or wrong admin token."),
    "404": _error("Admin API disabled (RECSYS_ADMIN_TOKEN unset) or unknown experiment."),
    "503": UNAVAILABLE,
}
_NAME = _param("name", "path", "Experiment name.", ENTITY_NAME)
_EXPERIMENT_ANSWER = _json(_ref("StoredExperiment"), "The experiment.")

#: Routes of the events, admin and dashboard blueprints (serving/events.py, admin.py, dashboard.py).
AB_PATHS: dict[str, Any] = {
    "/v1/events": {
        "post": {
            "summary": "Log events (views, clicks, carts, purchases, ratings, impressions)",
            "description": (
                f"One event, an array, or `{{\"events\": [...]}}`, at most {MAX_BATCH_EVENTS} events; validated whole, "
                "stored whole (one Lua script) or not at all. Events with an `event_id` stored before, or earlier in "
                "the same batch, are skipped, so a batch may be sent again after any 503 (which carries "
                "`Retry-After`) or lost answer. Needs `Authorization: Bearer "
                "<RECSYS_INGEST_TOKEN>`; without that token only when the server runs with RECSYS_INGEST_OPEN=1."
            ),
            "operationId": "postEvents",
            "security": [{"bearerAuth": []}, {}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                _ref("Event"),
                                {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_EVENTS, "items": _ref("Event")},
                                {
                                    "type": "object",
                                    "required": ["events"],
                                    "properties": {
                                        "events": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_EVENTS, "items": _ref("Event")},
                                    },
                                    "additionalProperties": False,
                                },
                            ]
                        }
                    }
                },
            },
            "responses": {
                "202": _json(
                    {"type": "object", "required": ["accepted", "stored", "duplicates", "adjusted"], "properties": {
                        "accepted": {"type": "integer", "description": "valid events in the request"},
                        "stored": {"type": "integer", "description": "events stored now"},
                        "duplicates": {"type": "integer", "description": "events whose event_id was stored before (or earlier in the batch)"},
                        "adjusted": {
                            "type": "integer",
                            "description": f"events stamped more than {MAX_FUTURE_SECONDS:.0f} s ahead of the server's clock, stored with their time of arrival",
                        },
                    }},
                    "Stored.",
                ),
                "400": _error(f"Invalid events (`problems` lists index, field and reason), or more than {MAX_BATCH_EVENTS}."),
                "401": _error("Ingestion token missing or wrong."),
                "403": _error("Ingestion closed: no RECSYS_INGEST_TOKEN and not RECSYS_INGEST_OPEN."),
                "413": _error("Body over 256 KiB."),
                "415": _error("Content-Type is not application/json."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/admin/experiments": {
        "get": {
            "summary": "List experiments",
            "operationId": "listExperiments",
            "security": _ADMIN_AUTH,
            "responses": {
                "200": _json({"type": "object", "properties": {"experiments": {"type": "array", "items": _ref("StoredExperiment")}}}, "Experiments."),
                **_ADMIN_ERRORS,
            },
        },
        "post": {
            "summary": "Create an experiment",
            "operationId": "createExperiment",
            "security": _ADMIN_AUTH,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Experiment")}}},
            "responses": {
                "201": _EXPERIMENT_ANSWER,
                "400": _error("Invalid definition (the message names the field)."),
                "409": _error(
                    "A variant model the live version does not publish, or nothing published (`available` lists the "
                    "user models); the name taken; or another experiment still running on the placement."
                ),
                "413": _error("Definition too large."),
                **_ADMIN_ERRORS,
            },
        },
    },
    "/v1/admin/experiments/{name}": {
        "get": {
            "summary": "One experiment",
            "operationId": "getExperiment",
            "security": _ADMIN_AUTH,
            "parameters": [_NAME],
            "responses": {"200": _EXPERIMENT_ANSWER, **_ADMIN_ERRORS},
        },
        "delete": {
            "summary": "Delete an experiment (its events stay)",
            "operationId": "deleteExperiment",
            "security": _ADMIN_AUTH,
            "parameters": [_NAME],
            "responses": {"204": {"description": "Deleted."}, **_ADMIN_ERRORS},
        },
    },
    "/v1/admin/experiments/{name}/stop": {
        "post": {
            "summary": "Stop an experiment (it routes nobody from then on)",
            "operationId": "stopExperiment",
            "security": _ADMIN_AUTH,
            "parameters": [_NAME],
            "responses": {"200": _EXPERIMENT_ANSWER, **_ADMIN_ERRORS},
        }
    },
    "/v1/admin/experiments/{name}/report": {
        "get": {
            "summary": "Statistical report of an experiment",
            "operationId": "experimentReport",
            "security": _ADMIN_AUTH,
            "parameters": [_NAME],
            "responses": {"200": _json({"type": "object"}, "Per-variant metrics, differences from control, SRM check."), **_ADMIN_ERRORS},
        }
    },
    "/v1/admin/audiences/{name}": {
        "get": {
            "summary": "A published propensity audience (recsys propensity --publish NAME)",
            "operationId": "getAudience",
            "security": _ADMIN_AUTH,
            "parameters": [
                _param("name", "path", "Audience name.", ENTITY_NAME),
                _param("limit", "query", "Customers returned (default 100).", {"type": "integer", "minimum": 1, "maximum": AUDIENCE_MAX_LIMIT}),
                _param("offset", "query", "Rank of the first customer returned (default 0).", {"type": "integer", "minimum": 0, "maximum": AUDIENCE_MAX_OFFSET}),
            ],
            "responses": {
                "200": _json(_ref("Audience"), "The audience's meta and one page of its customers."),
                "400": _error("Invalid limit or offset, or an unknown parameter."),
                "401": _error("Missing or wrong admin token."),
                "404": _error("Admin API disabled (RECSYS_ADMIN_TOKEN unset) or no audience of that name."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/dashboard": {
        "get": {
            "summary": "HTML dashboard of the experiments (admin token as bearer header or login cookie)",
            "operationId": "dashboard",
            "parameters": [_param("experiment", "query", "Experiment to show (empty: all; an unknown name: none).", {"type": "string"})],
            "responses": {
                "200": {"description": "HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "400": {"description": "A token in the URL: refused (it would be logged); login page (HTML)."},
                "401": {"description": "Login page (HTML): a form that POSTs the token to /dashboard/login."},
                "404": _error("Admin disabled (RECSYS_ADMIN_TOKEN unset)."),
            },
        }
    },
    "/dashboard/login": {
        "post": {
            "summary": "Dashboard sign-in: the admin token in a form body, exchanged for a cookie",
            "operationId": "dashboardLogin",
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["token"], "properties": {"token": {"type": "string"}},
                }}},
            },
            "responses": {
                "303": {"description": "Token accepted: HttpOnly SameSite=Strict cookie set, redirect to /dashboard."},
                "401": {"description": "Wrong token: login page (HTML)."},
                "404": _error("Admin disabled (RECSYS_ADMIN_TOKEN unset)."),
            },
        }
    },
}


def app_routes(app: Flask) -> dict[str, set[str]]:
    """OpenAPI path -> lower-case methods of every route of ``app`` (static files aside)."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = {m.lower() for m in (rule.methods or set()) - IGNORED_METHODS}
        routes.setdefault(openapi_path(rule.rule), set()).update(methods)
    return routes


def _with_path_check(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """The operation, with the 400 of :data:`BAD_PATH` when its path has a parameter."""
    if "{" not in path or "400" in operation.get("responses", {}):
        return operation
    return {**operation, "responses": {**operation["responses"], "400": BAD_PATH}}


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app``: described routes that exist in its url map."""
    from serving import BLUEPRINTS

    described: dict[str, Any] = {**API_PATHS, **AB_PATHS}
    for spec in BLUEPRINTS:
        module = importlib.import_module(spec.partition(":")[0])
        described.update(getattr(module, "OPENAPI_PATHS", {}))
    routes = app_routes(app)
    paths = {}
    for path in sorted(routes):
        item = described.get(path)
        if item is None:
            continue
        operations = {method: _with_path_check(path, op) for method, op in item.items() if method in routes[path]}
        if operations:
            paths[path] = operations
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "recsys API",
            "version": __version__,
            "description": "Recommendations for e-commerce, read from lists published to Redis by the batch job.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The document, built once per app."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get(_CACHE)
    if document is None:
        document = app.extensions[_CACHE] = build_document(app)
    return json_response(document)
