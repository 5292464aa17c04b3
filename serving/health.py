"""Operations endpoints: ``/healthz`` (process alive), ``/readyz`` (Redis reachable and a
live version published), ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import time

import redis
from flask import Blueprint, Response

from recsys.errors import StoreError
from serving import services
from serving import metrics as api_metrics
from serving.errors import ServiceUnavailable, json_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: answers without touching Redis."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: Redis answers and a live version with metadata is published; else 503."""
    state = services()
    try:
        live = state.client.get(state.layout.live)
        if live is None:
            raise ServiceUnavailable(f"no version is published under prefix {state.layout.prefix!r} yet", ready=False)
        meta = state.reader.meta(live.decode())
    except redis.TimeoutError:
        raise ServiceUnavailable("Redis did not answer in time", ready=False) from None
    except redis.RedisError as error:
        raise ServiceUnavailable(f"Redis is unreachable: {error}", ready=False) from None
    except StoreError as error:
        raise ServiceUnavailable(str(error), ready=False) from None
    return json_response(
        {
            "status": "ready",
            "version": meta.version,
            "default_model": meta.default_model,
            "user_models": list(meta.user_models),
            "similar_models": list(meta.similar_models),
        }
    )


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition (all gunicorn workers added up), plus the live version's age."""
    body, content_type = api_metrics.render()
    return Response(body + live_version_age_text(), content_type=content_type)


def live_version_age_text() -> bytes:
    """``recsys_live_version_age_seconds``, computed at scrape time from Redis.

    Left out when Redis does not answer or nothing is published: an ``absent()`` alert then
    fires, and the scrape itself never fails because of Redis.
    """
    state = services()
    try:
        live = state.client.get(state.layout.live)
        published = state.client.zscore(state.layout.versions, live) if live is not None else None
    except (redis.RedisError, StoreError):
        return b""
    if published is None:
        return b""
    age = max(0.0, time.time() - float(published))
    return (
        b"# HELP recsys_live_version_age_seconds Seconds since the live version was published.\n"
        b"# TYPE recsys_live_version_age_seconds gauge\n"
        b"recsys_live_version_age_seconds %.3f\n" % age
    )
