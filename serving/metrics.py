"""Prometheus metrics of the API, correct under gunicorn with several worker processes.

Every metric lives in :data:`REGISTRY`. Other blueprints define theirs the same way, at
module level::

    from prometheus_client import Counter
    from serving.metrics import REGISTRY
    EVENTS = Counter("recsys_events_total", "Events accepted.", ["type"], registry=REGISTRY)

When ``PROMETHEUS_MULTIPROC_DIR`` is set (``recsys serve`` sets it) before
``prometheus_client`` is first imported, each process writes its values to files in that
folder and ``/metrics`` adds up the files of all workers; otherwise (tests, one process)
``/metrics`` renders :data:`REGISTRY` directly.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Label of requests that matched no route (a fixed label keeps cardinality bounded).
UNMATCHED = "<unmatched>"

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "recsys_api_requests_total",
    "HTTP requests by url rule, method and status.",
    ["endpoint", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "recsys_api_request_duration_seconds",
    "Time from request start to response, by url rule.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
ERRORS = Counter(
    "recsys_api_errors_total",
    "Responses with status >= 400, by url rule and status.",
    ["endpoint", "status"],
    registry=REGISTRY,
)
FALLBACKS = Counter(
    "recsys_api_fallbacks_total",
    "Lists served (partly) from a fallback: unknown_user, segment, top_up, empty_basket.",
    ["endpoint", "reason"],
    registry=REGISTRY,
)
REDIS_WRITES = Counter(
    "recsys_api_redis_pipelined_writes_total",
    "Writes of pipelined list-read commands to Redis (gevent workers); commands / writes = batch size.",
    registry=REGISTRY,
)
REDIS_COMMANDS = Counter(
    "recsys_api_redis_pipelined_commands_total",
    "List-read commands sent in those writes.",
    registry=REGISTRY,
)
ROUTER_ERRORS = Counter(
    "recsys_api_router_errors_total",
    "A/B routing failures (the request was served by the default model).",
    registry=REGISTRY,
)


AB_BROKEN = Gauge(
    "recsys_ab_experiment_broken",
    "1 while an A/B experiment that is not over is broken (a variant's model is not published), else 0.",
    ["experiment"],
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
AB_BROKEN_SERVED = Counter(
    "recsys_ab_broken_requests_total",
    "Requests of a broken experiment's units, served by the default model.",
    ["experiment"],
    registry=REGISTRY,
)
_BROKEN_LABELS: set[str] = set()
_REGISTERED: list[Any] = []


def set_experiment_gauges(experiments: list[Any]) -> None:
    """After each refresh of the A/B definitions: one ``recsys_ab_experiment_broken`` per experiment."""
    now = time.time()
    names = set()
    for experiment in experiments:
        names.add(experiment.name)
        AB_BROKEN.labels(experiment.name).set(1 if experiment.broken is not None and not experiment.is_over(now) else 0)
    for gone in _BROKEN_LABELS - names:
        AB_BROKEN.remove(gone)
    _BROKEN_LABELS.clear()
    _BROKEN_LABELS.update(names)


def endpoint_label() -> str:
    """The url rule of the current request (``/v1/users/<path:user_id>/recommendations``)."""
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def _start_timer() -> None:
    g.recsys_started = time.perf_counter()


# (endpoint, method, status) -> the metric children of that label set; label sets are few
# (url rules x methods x statuses), and labels() is slow enough to matter per request.
_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}


def _children(endpoint: str, method: str, status: int) -> tuple[Any, Any, Any]:
    key = (endpoint, method, status)
    found = _CHILDREN.get(key)
    if found is None:
        errors = ERRORS.labels(endpoint, str(status)) if status >= 400 else None
        found = _CHILDREN[key] = (REQUESTS.labels(endpoint, method, str(status)), LATENCY.labels(endpoint), errors)
    return found


def _observe(response: Response) -> Response:
    started = g.get("recsys_started")
    requests, latency, errors = _children(endpoint_label(), request.method, response.status_code)
    requests.inc()
    if started is not None:
        latency.observe(time.perf_counter() - started)
    if errors is not None:
        errors.inc()
    return response


def install(app: Flask) -> None:
    """Count and time every request of ``app``; follow the A/B experiments' state."""
    from recsys.abtest.router import on_refresh

    if set_experiment_gauges not in _REGISTERED:
        on_refresh(set_experiment_gauges)
        _REGISTERED.append(set_experiment_gauges)
    app.before_request(_start_timer)
    app.after_request(_observe)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render() -> tuple[bytes, str]:
    """Prometheus text exposition of every metric (all workers in multiprocess mode)."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Gunicorn ``child_exit`` hook: drop a dead worker's live-gauge files."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)
