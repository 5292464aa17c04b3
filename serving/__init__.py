"""The recommendation API: a thin Flask app reading the lists the batch job published.

``create_app()`` builds the app; ``recsys serve`` runs it under gunicorn. Blueprints are
listed in :data:`BLUEPRINTS` as ``"module:attribute"`` and registered in that order.

Shared with every blueprint (import them from here):

* :func:`services` / ``app.extensions["recsys"]``: the :class:`Services` of the app: its
  :class:`Settings`, the :class:`~recsys.store.keys.KeyLayout`, one Redis client per
  process (:func:`redis_client`), the A/B :class:`~recsys.abtest.router.ExperimentRouter`
  and the list :class:`~serving.reader.Reader`;
* :mod:`serving.errors`: ``ApiError(status, message, **fields)``, ``json_response``;
* :mod:`serving.metrics`: ``REGISTRY`` for the blueprint's own Prometheus metrics.

Configuration: defaults, then environment variables ``RECSYS_*`` (Flask's
``from_prefixed_env``: ``RECSYS_MAX_N=50`` sets ``MAX_N``), then ``test_config``.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import weakref
from typing import Any

import redis
from flask import Flask, current_app
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.data.schema import EVENT_TYPES
from recsys.errors import ConfigError
from recsys.store.keys import DEFAULT_PREFIX, KeyLayout

log = logging.getLogger(__name__)

#: Blueprints registered by create_app, in order: "module:attribute".
BLUEPRINTS: list[str] = [
    "serving.api:bp",
    "serving.health:bp",
    "serving.openapi:bp",
    "serving.events:bp",
    "serving.admin:bp",
    "serving.admin_data:bp",
    "serving.dashboard:bp",
    "serving.console:bp",
]

EXTENSION = "recsys"
ENV_PREFIX = "RECSYS"
TEXT_SETTINGS = ("redis_url", "key_prefix", "admin_token", "ingest_token")


class Settings(BaseModel):
    """The API's configuration (``app.config`` keys in capitals, env ``RECSYS_<KEY>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    redis_url: str | None = Field(None, description="Redis URL; unset: the embedded Redis (RECSYS_HOME)")
    key_prefix: str = Field(DEFAULT_PREFIX, max_length=200, description="prefix of every Redis key")
    redis_timeout: float = Field(0.5, gt=0, le=30, description="Redis connect and read timeout, seconds")
    default_n: int = Field(10, ge=1, description="list length when the request gives no n")
    max_n: int = Field(100, ge=1, le=1000, description="largest n a request may ask for")
    max_id_length: int = Field(256, ge=1, le=4096, description="longest user, item or session id")
    max_exclude: int = Field(100, ge=0, description="most ids in exclude=")
    max_basket_items: int = Field(50, ge=1, description="most ids in items= of a basket")
    router_refresh_seconds: float = Field(2.0, ge=0, description="how often A/B definitions are re-read")
    max_content_length: int = Field(1024 * 1024, ge=1024, description="largest request body, bytes")
    admin_token: str | None = Field(None, description="bearer token of /v1/admin (unset: admin off)")
    ingest_token: str | None = Field(None, description="bearer token of POST /v1/events (unset: open)")
    event_types: dict[str, str] = Field(
        default_factory=dict,
        description='the shop\'s event names -> ours, as [data.event_types] (JSON, e.g. {"pv": "view"})',
    )

    @field_validator("event_types")
    @classmethod
    def _known_event_types(cls, mapping: dict[str, str]) -> dict[str, str]:
        bad = sorted(target for target in mapping.values() if target not in EVENT_TYPES)
        if bad:
            raise ValueError(f"{bad[0]!r} is not an event type (allowed: {', '.join(EVENT_TYPES)})")
        return mapping

    @model_validator(mode="after")
    def _default_within_max(self) -> Settings:
        if self.default_n > self.max_n:
            raise ValueError(f"DEFAULT_N ({self.default_n}) must not exceed MAX_N ({self.max_n})")
        return self

    @classmethod
    def from_mapping(cls, config: Any) -> Settings:
        """Settings from a Flask config (capitalised keys); ConfigError names the variable."""
        values = {name: config[name.upper()] for name in cls.model_fields if config.get(name.upper()) is not None}
        try:
            return cls(**values)
        except ValidationError as error:
            problems = "; ".join(
                f"{ENV_PREFIX}_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"].removeprefix("Value error, ")
                for e in error.errors()
            )
            raise ConfigError(f"invalid API configuration: {problems}") from None


def load_config(app: Flask, test_config: dict[str, Any] | None = None) -> Settings:
    """Fill ``app.config``: defaults, ``RECSYS_*`` environment variables, ``test_config``."""
    app.config.from_mapping({name.upper(): field.default for name, field in Settings.model_fields.items()})
    app.config.from_prefixed_env(ENV_PREFIX)
    # from_prefixed_env parses values as JSON: keep text settings (tokens!) as written.
    for name in TEXT_SETTINGS:
        raw = os.environ.get(f"{ENV_PREFIX}_{name.upper()}")
        if raw is not None:
            app.config[name.upper()] = raw
    if test_config:
        app.config.from_mapping(test_config)
    settings = Settings.from_mapping(app.config)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    return settings


class Services:
    """Per-app state shared by the blueprints: settings, key layout, and per-process
    Redis client, A/B router and list reader (created on first use, again after a fork)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = KeyLayout(settings.key_prefix)
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._router: Any = None
        self._reader: Any = None
        os.register_at_fork(after_in_child=_forget_in_child(weakref.ref(self)))

    def _forget(self) -> None:
        """Drop the parent's connections and caches: a forked worker makes its own."""
        self._lock = threading.Lock()
        self._client = self._router = self._reader = None

    def _ensure(self) -> None:
        with self._lock:
            if self._reader is not None:
                return
            from recsys.abtest.router import ExperimentRouter
            from serving.reader import Reader

            client = self._connect()
            self._client = client
            self._router = ExperimentRouter(client, self.layout, self.settings.router_refresh_seconds)
            self._reader = Reader(client, self.layout)  # last: it marks the set as made

    def _connect(self) -> redis.Redis:
        from recsys.store.connection import resolve_url

        timeout = self.settings.redis_timeout
        url = resolve_url(self.settings.redis_url)
        try:
            # One retry on a broken connection (e.g. Redis restarted: the pooled socket
            # is dead, a new one works); none on timeouts, so a slow Redis costs one timeout.
            return redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                health_check_interval=0,
            )
        except ValueError as error:
            raise ConfigError(f"RECSYS_REDIS_URL: invalid Redis URL: {error}") from None

    @property
    def client(self) -> redis.Redis:
        """The Redis client of this process (binary responses, bounded timeouts)."""
        if self._reader is None:
            self._ensure()
        assert self._client is not None
        return self._client

    @property
    def router(self) -> Any:
        """The :class:`~recsys.abtest.router.ExperimentRouter` of this process."""
        if self._reader is None:
            self._ensure()
        return self._router

    @property
    def reader(self) -> Any:
        """The :class:`~serving.reader.Reader` of this process."""
        reader = self._reader
        if reader is None:
            self._ensure()
            reader = self._reader
        return reader


def _forget_in_child(ref: weakref.ref[Services]) -> Any:
    """An at-fork hook that does not keep its app alive."""

    def forget() -> None:
        services_ = ref()
        if services_ is not None:
            services_._forget()

    return forget


def services(app: Flask | None = None) -> Services:
    """The :class:`Services` of ``app`` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION]


def redis_client() -> redis.Redis:
    """The current app's Redis client (one per process)."""
    return services().client


def _load_blueprint(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute or "bp")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The API app; ``test_config`` overrides settings (keys as in ``app.config``)."""
    from serving import metrics
    from serving.errors import register_error_handlers

    app = Flask(__name__)
    settings = load_config(app, test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.merge_slashes = False
    app.extensions[EXTENSION] = Services(settings)
    register_error_handlers(app)
    metrics.install(app)
    for spec in BLUEPRINTS:
        app.register_blueprint(_load_blueprint(spec))
    return app
